//! gRPC health follows readiness: it is set before the first call can arrive, then again on
//! every change of the lifecycle's phase or of a model's versions (no polling).

use std::sync::Arc;

use crate::api::grpc;
use crate::serving::InferenceService;

pub async fn follow_health(
    service: Arc<InferenceService>,
    health: tonic_health::server::HealthReporter,
) {
    let changed = Arc::new(tokio::sync::Notify::new());
    {
        let changed = Arc::clone(&changed);
        service.manager.subscribe(move |_| changed.notify_one());
    }
    let mut phase = service.lifecycle.watch();
    let mut last = None;
    loop {
        let ready = service.ready();
        if last != Some(ready) {
            grpc::set_health(&health, ready).await;
            last = Some(ready);
        }
        tokio::select! {
            _ = changed.notified() => {}
            moved = phase.changed() => {
                if moved.is_err() {
                    return;
                }
            }
        }
    }
}
