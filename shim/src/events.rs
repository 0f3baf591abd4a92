//! Task events to containerd, sent in order from one thread so that a slow containerd never holds up a Task call.

use containerd_shim::Context;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant};

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

/// Starts the thread that forwards events to containerd's ttrpc address for `namespace`. When containerd restarts,
/// the connection breaks: the thread reconnects (to `TTRPC_ADDRESS`, where containerd listens again) and resends,
/// so a TaskExit that happens while containerd is down still reaches it when it is back.
pub fn start_publisher(publisher: RemotePublisher, namespace: String) -> EventSender {
    let (tx, rx) = channel::<Event>();
    let spawned = std::thread::Builder::new()
        .name("events".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let mut publisher = Some(publisher);
            for event in rx {
                publish_with_retry(&mut publisher, &namespace, event);
            }
        });
    if let Err(e) = spawned {
        containerd_shim::error!("start the events thread: {}", e);
    }
    EventSender(tx)
}

/// How long an event waits for containerd to come back before it is dropped.
const RETRY_LIMIT: Duration = Duration::from_secs(120);

fn publish_with_retry(publisher: &mut Option<RemotePublisher>, namespace: &str, event: Event) {
    let deadline = Instant::now() + RETRY_LIMIT;
    let mut delay = Duration::from_millis(50);
    loop {
        if publisher.is_none() {
            *publisher = std::env::var("TTRPC_ADDRESS")
                .ok()
                .and_then(|address| RemotePublisher::new(address).ok());
        }
        if let Some(p) = publisher.as_ref() {
            // publish consumes the event: send a copy, keep the original to resend.
            match p.publish(
                Context::default(),
                event.topic,
                namespace,
                event.body.clone_box(),
            ) {
                Ok(()) => return,
                Err(e) => {
                    containerd_shim::warn!("publish {}: {}; reconnecting", event.topic, e);
                    *publisher = None;
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
