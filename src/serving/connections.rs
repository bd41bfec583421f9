//! The client connections open on the listeners, by how they carry requests. A request on the
//! server's only connection, when that connection carries one request at a time (HTTP/1.1), has
//! nobody behind it who could wait for its thread: the inference path may then run it where it
//! was received instead of handing it to a worker thread and back (see `Batcher::run_here`).
//! An HTTP/2 connection may hold many calls at once, so one open anywhere rules that out, unless
//! it is the server's only connection and the call is the only one on it ([`Streams`]): a gRPC
//! client making one call at a time on its channel.

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

    /// A request being handled is the only one the server has: the server holds exactly one
    /// connection, and either it carries one request at a time (`streams` None: HTTP/1.1) or it
    /// is the HTTP/2 connection whose calls are `streams` and the asking call is the only one.
    pub fn alone(&self, streams: Option<&Streams>) -> bool {
        let (one_at_a_time, many) = (
            self.one_at_a_time.load(Ordering::Relaxed),
            self.many.load(Ordering::Relaxed),
        );
        match streams {
            None => many == 0 && one_at_a_time == 1,
            Some(streams) => {
                one_at_a_time == 0 && many == 1 && streams.0.load(Ordering::Relaxed) == 1
            }
        }
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

/// The calls in flight on one HTTP/2 connection: each counted from the moment the connection
/// hands its stream to the service (before any of them runs, for every stream read together)
/// until its answer is ready.
#[derive(Debug, Default)]
pub struct Streams(AtomicUsize);

impl Streams {
    /// Counts a call until the returned guard is dropped (answered, or cancelled by the client).
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }
}

/// A call in flight on its connection.
#[derive(Debug)]
pub struct InFlight(Arc<Streams>);

impl InFlight {
    pub fn streams(&self) -> &Streams {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_only_with_a_single_one_at_a_time_connection() {
        let c = Arc::new(Connections::default());
        assert!(!c.alone(None));
        let first = c.open(Carries::OneAtATime);
        assert!(c.alone(None));
        let second = c.open(Carries::OneAtATime);
        assert!(!c.alone(None));
        drop(second);
        assert!(c.alone(None));
        let grpc = c.open(Carries::Many);
        assert!(!c.alone(None));
        drop(grpc);
        assert!(c.alone(None));
        drop(first);
        assert!(!c.alone(None));
    }

    #[test]
    fn alone_on_http2_only_with_one_connection_and_one_call_on_it() {
        let c = Arc::new(Connections::default());
        let streams = Arc::new(Streams::default());
        let grpc = c.open(Carries::Many);
        let call = streams.enter();
        assert!(c.alone(Some(&streams)));
        assert!(
            !c.alone(None),
            "HTTP/1.1's rule still counts an HTTP/2 connection against it"
        );
        let second = streams.enter();
        assert!(!c.alone(Some(&streams)));
        drop(second);
        assert!(c.alone(Some(&streams)));
        let rest = c.open(Carries::OneAtATime);
        assert!(!c.alone(Some(&streams)));
        drop(rest);
        let other = c.open(Carries::Many);
        assert!(!c.alone(Some(&streams)));
        drop(other);
        assert!(c.alone(Some(&streams)));
        drop(call);
        assert!(!c.alone(Some(&streams)));
        drop(grpc);
    }
}
