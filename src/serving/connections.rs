//! The client connections open on the listeners, by how they carry requests. A request on the
//! server's only connection, when that connection carries one request at a time (HTTP/1.1), has
//! nobody behind it who could wait for its thread: the inference path may then run it where it
//! was received instead of handing it to a worker thread and back (see `Batcher::run_here`).
//! An HTTP/2 connection may hold many calls at once, so one open anywhere rules that out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carries {
    /// One request at a time (HTTP/1.1).
    OneAtATime,
    /// Concurrent streams (HTTP/2, gRPC).
    Many,
}

#[derive(Debug, Default)]
pub struct Connections {
    one_at_a_time: AtomicUsize,
    many: AtomicUsize,
}

impl Connections {
    /// Counts a connection until the returned guard is dropped.
    pub fn open(self: &Arc<Self>, carries: Carries) -> Open {
        self.count(carries).fetch_add(1, Ordering::Relaxed);
        Open {
            connections: Arc::clone(self),
            carries,
        }
    }

    /// The server holds exactly one connection, and it carries one request at a time: a request
    /// being handled is then the only one the server has.
    pub fn alone(&self) -> bool {
        self.many.load(Ordering::Relaxed) == 0 && self.one_at_a_time.load(Ordering::Relaxed) == 1
    }

    fn count(&self, carries: Carries) -> &AtomicUsize {
        match carries {
            Carries::OneAtATime => &self.one_at_a_time,
            Carries::Many => &self.many,
        }
    }
}

/// An open connection; closing it (dropping this) takes it out of the count.
#[derive(Debug)]
pub struct Open {
    connections: Arc<Connections>,
    carries: Carries,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.connections
            .count(self.carries)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_only_with_a_single_one_at_a_time_connection() {
        let c = Arc::new(Connections::default());
        assert!(!c.alone());
        let first = c.open(Carries::OneAtATime);
        assert!(c.alone());
        let second = c.open(Carries::OneAtATime);
        assert!(!c.alone());
        drop(second);
        assert!(c.alone());
        let grpc = c.open(Carries::Many);
        assert!(!c.alone());
        drop(grpc);
        assert!(c.alone());
        drop(first);
        assert!(!c.alone());
    }
}
