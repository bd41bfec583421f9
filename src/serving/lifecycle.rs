//! The server's lifecycle, the single truth for readiness and drain: REST's readiness routes,
//! gRPC health and the shutdown signal all read or move this one state.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Listeners are being set up; not ready.
    Starting,
    /// Accepting requests; ready once every model has a version.
    Serving,
    /// Shutting down: readiness off, no new connections, in-flight requests finishing.
    Draining,
}

pub struct Lifecycle {
    phase: watch::Sender<Phase>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: watch::Sender::new(Phase::Starting),
        }
    }
}

impl Lifecycle {
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    pub fn accepting(&self) -> bool {
        self.phase() == Phase::Serving
    }

    /// Starting -> Serving (a draining server stays draining).
    pub fn serve(&self) {
        self.phase.send_if_modified(|p| {
            let changed = *p == Phase::Starting;
            if changed {
                *p = Phase::Serving;
            }
            changed
        });
    }

    pub fn drain(&self) {
        self.phase.send_replace(Phase::Draining);
    }

    /// Follows the phase; `changed()` wakes on every move.
    pub fn watch(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Resolves once draining has begun.
    pub async fn draining(&self) {
        let mut rx = self.watch();
        let _ = rx.wait_for(|p| *p == Phase::Draining).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_move_forward_only() {
        let l = Lifecycle::default();
        assert!(!l.accepting());
        l.serve();
        assert!(l.accepting());
        l.drain();
        l.serve();
        assert_eq!(l.phase(), Phase::Draining);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(l.draining());
    }
}
