//! The endpoint the shims publish task events to (containerd's Events service over ttrpc, at the shims'
//! `TTRPC_ADDRESS`). Exits reach polisd through the Task API's Wait; this endpoint records OOM kills. The server is
//! ttrpc's async one: a connected shim costs a task on polisd's runtime, not threads.

use super::Core;
use containerd_shim_protos::api::Empty;
use containerd_shim_protos::events::task::TaskOOM;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{Events, create_events};
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::asynchronous::{Server, TtrpcContext};
use std::sync::{Arc, Weak};

struct Receiver(Weak<Core>);

#[async_trait::async_trait]
impl Events for Receiver {
    async fn forward(&self, _ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let envelope = req.envelope.into_option().unwrap_or_default();
        if envelope.topic == "/tasks/oom"
            && let Some(core) = self.0.upgrade()
            && let Ok(oom) = TaskOOM::parse_from_bytes(&envelope.event.value)
            && let Ok(Some(mut record)) = core.db.get(&oom.container_id)
        {
            record.state.oom_killed = true;
            let _ = core.db.update(&record);
            core.events.publish(
                bollard_stubs::models::EventMessageTypeEnum::CONTAINER,
                "oom",
                &record.id,
                [("name".to_string(), record.name.clone())].into(),
            );
        }
        Ok(Empty::new())
    }
}

/// Serves the events endpoint at the configured socket until polisd exits.
pub async fn serve(core: &Arc<Core>) -> super::Result<Server> {
    let path = core.config.events_socket();
    let _ = std::fs::remove_file(&path);
    let service = create_events(Arc::new(Receiver(Arc::downgrade(core))));
    let mut server = Server::new()
        .bind(&format!("unix://{}", path.display()))
        .map_err(|e| super::Error::failed(path.display(), e))?
        .register_service(service);
    server
        .start()
        .await
        .map_err(|e| super::Error::failed("start the events endpoint", e))?;
    Ok(server)
}
