//! Task events to containerd, sent in order from one thread so that a slow containerd never holds up a Task call.

use containerd_shim::Context;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use std::sync::mpsc::{Sender, channel};

pub struct Event {
    pub topic: &'static str,
    pub body: Box<dyn MessageDyn>,
}

#[derive(Clone)]
pub struct EventSender(Sender<Event>);

impl EventSender {
    pub fn send(&self, topic: &'static str, body: impl MessageDyn) {
        // The publisher thread lives as long as the shim; a send can only fail during shutdown.
        let _ = self.0.send(Event {
            topic,
            body: Box::new(body),
        });
    }
}

/// Starts the thread that forwards events to containerd's ttrpc address for `namespace`.
pub fn start_publisher(publisher: RemotePublisher, namespace: String) -> EventSender {
    let (tx, rx) = channel::<Event>();
    let spawned = std::thread::Builder::new()
        .name("events".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            for event in rx {
                if let Err(e) =
                    publisher.publish(Context::default(), event.topic, &namespace, event.body)
                {
                    containerd_shim::error!("publish {}: {}", event.topic, e);
                }
            }
        });
    if let Err(e) = spawned {
        containerd_shim::error!("start the events thread: {}", e);
    }
    EventSender(tx)
}
