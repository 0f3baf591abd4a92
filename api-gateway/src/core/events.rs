//! Docker's event stream (`/events`): what happened to containers, images, volumes and networks, for every
//! listener. The last [`HISTORY`] events are kept in memory (as dockerd keeps them) for `since`.

use bollard_stubs::models::{EventActor, EventMessage, EventMessageTypeEnum};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// How many past events `since` can replay.
pub const HISTORY: usize = 1024;

pub struct Events {
    tx: broadcast::Sender<EventMessage>,
    history: Mutex<VecDeque<EventMessage>>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    pub fn new() -> Events {
        let (tx, _) = broadcast::channel(1024);
        Events {
            tx,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    fn history(&self) -> std::sync::MutexGuard<'_, VecDeque<EventMessage>> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventMessage> {
        self.tx.subscribe()
    }

    /// The kept events at or after `since` (Unix nanoseconds), and a receiver of every later one: taken under one
    /// lock, so that none is missed or given twice.
    pub fn subscribe_since(
        &self,
        since_nanos: i64,
    ) -> (Vec<EventMessage>, broadcast::Receiver<EventMessage>) {
        let history = self.history();
        let past = history
            .iter()
            .filter(|e| e.time_nano.unwrap_or(0) >= since_nanos)
            .cloned()
            .collect();
        (past, self.tx.subscribe())
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
        let mut history = self.history();
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(message.clone());
        let _ = self.tx.send(message);
    }
}

/// A broadcast receiver as a stream; a listener that falls behind skips what it missed.
pub fn broadcast_stream<T: Clone + Send + 'static>(
    rx: tokio::sync::broadcast::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(item) => return Some((item, rx)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(events: &Events, action: &str) {
        events.publish(
            EventMessageTypeEnum::CONTAINER,
            action,
            "c1",
            HashMap::new(),
        );
    }

    #[test]
    fn since_replays_kept_events_then_live_ones() {
        let events = Events::new();
        publish(&events, "create");
        let (past, mut rx) = events.subscribe_since(0);
        assert_eq!(past.len(), 1);
        publish(&events, "start");
        assert_eq!(rx.try_recv().unwrap().action.as_deref(), Some("start"));
        let (past, _) = events.subscribe_since(i64::MAX);
        assert!(past.is_empty());
    }

    #[test]
    fn history_is_bounded() {
        let events = Events::new();
        for _ in 0..HISTORY + 5 {
            publish(&events, "x");
        }
        assert_eq!(events.subscribe_since(0).0.len(), HISTORY);
    }
}
