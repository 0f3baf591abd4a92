//! Docker's event stream (`/events`): what happened to containers and images, for every listener.

use bollard_stubs::models::{EventActor, EventMessage, EventMessageTypeEnum};
use std::collections::HashMap;
use tokio::sync::broadcast;

pub struct Events {
    tx: broadcast::Sender<EventMessage>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    pub fn new() -> Events {
        let (tx, _) = broadcast::channel(1024);
        Events { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventMessage> {
        self.tx.subscribe()
    }

    /// Publishes `action` on the object `id` of `kind`, with its attributes (Docker's `Actor.Attributes`).
    pub fn publish(
        &self,
        kind: EventMessageTypeEnum,
        action: &str,
        id: &str,
        attributes: HashMap<String, String>,
    ) {
        let now = chrono::Utc::now();
        let message = EventMessage {
            typ: Some(kind),
            action: Some(action.to_string()),
            actor: Some(EventActor {
                id: Some(id.to_string()),
                attributes: Some(attributes),
            }),
            scope: Some(bollard_stubs::models::EventMessageScopeEnum::LOCAL),
            time: Some(now.timestamp()),
            time_nano: Some(now.timestamp_nanos_opt().unwrap_or_default()),
        };
        let _ = self.tx.send(message);
    }
}
