//! Task events to containerd, sent in order from one thread so that a slow containerd never holds up a Task call.
//!
//! Events are wrapped in containerd's Envelope by hand, with the type names written out (`containerd.events.*`):
//! containerd-shim's publisher asks protobuf's reflection for the name, which builds the descriptors of every
//! event type in memory, a cost a shim resident beside every container should not carry.

use containerd_shim::Context;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_sync::{Client, EventsClient};
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

/// A task event: containerd's topic, the event's protobuf type name and its encoding.
pub struct Event {
    topic: &'static str,
    type_name: &'static str,
    body: Vec<u8>,
}

/// The protobuf type of the event published on `topic` (containerd's api/events/task.proto).
fn type_name(topic: &str) -> &'static str {
    match topic {
        "/tasks/create" => "containerd.events.TaskCreate",
        "/tasks/start" => "containerd.events.TaskStart",
        "/tasks/exit" => "containerd.events.TaskExit",
        "/tasks/delete" => "containerd.events.TaskDelete",
        "/tasks/exec-added" => "containerd.events.TaskExecAdded",
        "/tasks/exec-started" => "containerd.events.TaskExecStarted",
        "/tasks/oom" => "containerd.events.TaskOOM",
        "/tasks/paused" => "containerd.events.TaskPaused",
        "/tasks/resumed" => "containerd.events.TaskResumed",
        "/tasks/checkpointed" => "containerd.events.TaskCheckpointed",
        _ => "",
    }
}

#[derive(Clone)]
pub struct EventSender(Sender<Event>);

impl EventSender {
    pub fn send(&self, topic: &'static str, body: impl Message) {
        let body = match body.write_to_bytes() {
            Ok(b) => b,
            Err(e) => {
                containerd_shim::error!("encode {}: {}", topic, e);
                return;
            }
        };
        // The publisher thread lives as long as the shim; a send can only fail during shutdown.
        let _ = self.0.send(Event {
            topic,
            type_name: type_name(topic),
            body,
        });
    }
}

/// Starts the thread that forwards events to containerd's ttrpc address (`TTRPC_ADDRESS`) for `namespace`. When
/// containerd restarts, the connection breaks: the thread reconnects (where containerd listens again) and resends,
/// so a TaskExit that happens while containerd is down still reaches it when it is back.
pub fn start_publisher(namespace: String) -> EventSender {
    let (tx, rx) = channel::<Event>();
    let spawned = std::thread::Builder::new()
        .name("events".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let mut client = None;
            for event in rx {
                publish_with_retry(&mut client, &namespace, event);
            }
        });
    if let Err(e) = spawned {
        containerd_shim::error!("start the events thread: {}", e);
    }
    EventSender(tx)
}

/// How long an event waits for containerd to come back before it is dropped.
const RETRY_LIMIT: Duration = Duration::from_secs(120);

fn connect() -> Option<EventsClient> {
    let address = std::env::var("TTRPC_ADDRESS").ok()?;
    let fd = containerd_shim::util::connect(&address).ok()?;
    Client::new(fd).ok().map(EventsClient::new)
}

fn publish_with_retry(client: &mut Option<EventsClient>, namespace: &str, event: Event) {
    let deadline = Instant::now() + RETRY_LIMIT;
    let mut delay = Duration::from_millis(50);
    let request = ForwardRequest {
        envelope: MessageField::some(Envelope {
            timestamp: MessageField::from_option(containerd_shim::util::timestamp().ok()),
            namespace: namespace.to_string(),
            topic: event.topic.to_string(),
            event: MessageField::some(Any {
                type_url: event.type_name.to_string(),
                value: event.body,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    loop {
        if client.is_none() {
            *client = connect();
        }
        if let Some(c) = client.as_ref() {
            match c.forward(Context::default(), &request) {
                Ok(_) => return,
                Err(e) => {
                    containerd_shim::warn!("publish {}: {}; reconnecting", event.topic, e);
                    *client = None;
                }
            }
        }
        if Instant::now() + delay > deadline {
            containerd_shim::error!(
                "publish {}: containerd did not come back; event dropped",
                event.topic
            );
            return;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::events::task::{TaskExit, TaskOOM, TaskStart};
    use containerd_shim::protos::protobuf::MessageFull;
    use containerd_shim::protos::topics;

    #[test]
    fn type_names_match_the_protobuf_descriptors() {
        assert_eq!(
            type_name(topics::TASK_EXIT_EVENT_TOPIC),
            TaskExit::descriptor().full_name()
        );
        assert_eq!(
            type_name(topics::TASK_OOM_EVENT_TOPIC),
            TaskOOM::descriptor().full_name()
        );
        assert_eq!(
            type_name(topics::TASK_START_EVENT_TOPIC),
            TaskStart::descriptor().full_name()
        );
    }
}
