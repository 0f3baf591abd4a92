//! Alerts: rules over the containers' metrics in polisd's config (`[alerts]`, `rules.rs`), evaluated every
//! `interval`; firing and resolved alerts go to the event stream (`alert: firing` / `alert: resolved` on the
//! container) and to webhook receivers in Alertmanager's format (`webhook.rs`), once per transition. The alerts
//! firing now are served at `GET /polis/alerts` (the dashboard's list).

pub mod rules;
pub mod webhook;

use crate::core::Core;
use bollard_stubs::models::EventMessageTypeEnum;
use rules::{Alert, Evaluator, Observation, Transition};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use rules::AlertsConfig;

/// The rules' state, one per polisd.
#[derive(Default)]
pub struct Alerts {
    evaluator: Mutex<Evaluator>,
}

impl Alerts {
    pub fn new(config: &AlertsConfig) -> Alerts {
        Alerts {
            evaluator: Mutex::new(Evaluator::new(config)),
        }
    }

    fn evaluator(&self) -> std::sync::MutexGuard<'_, Evaluator> {
        self.evaluator.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<Alert> {
        self.evaluator().firing()
    }
}

/// What the rules see of each container (blocking: it reads the running containers' cgroups).
fn observe(core: &Core) -> Vec<Observation> {
    let Ok(records) = core.db.all() else {
        return Vec::new();
    };
    records
        .iter()
        .map(|r| {
            let memory = crate::metrics::global().memory_of(r);
            Observation {
                id: r.id.clone(),
                name: r.name.clone(),
                image: r.config.image.clone().unwrap_or_else(|| r.image.clone()),
                memory: memory.map(|m| (m.working_set, m.limit)),
                // A stopped container keeps its last health; only a running one can be unhealthy now.
                unhealthy: r
                    .state
                    .health
                    .as_ref()
                    .filter(|_| r.state.status.is_live())
                    .map(|h| h.status == crate::core::health::HealthStatus::Unhealthy),
                restarts: r.restart_count.max(0) as u64,
                oom_kills: memory.map_or(0, |m| m.oom_kills) + u64::from(r.state.oom_killed),
                started: r
                    .state
                    .started_at
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(SystemTime::from),
            }
        })
        .collect()
}

/// Evaluates the rules every `interval` until polisd stops; nothing when no rule is configured.
pub async fn run(core: Arc<Core>) {
    let config = core.config.alerts.clone();
    if config.rules.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let c = core.clone();
        let Ok(observations) = tokio::task::spawn_blocking(move || observe(&c)).await else {
            continue;
        };
        let transitions = core
            .alerts
            .evaluator()
            .evaluate(SystemTime::now(), &observations);
        for t in transitions {
            notify(&core, &config, t);
        }
    }
}

fn notify(core: &Core, config: &AlertsConfig, transition: Transition) {
    let (action, alert) = match &transition {
        Transition::Firing(a) => ("alert: firing", a),
        Transition::Resolved(a) => ("alert: resolved", a),
    };
    tracing::info!(
        alert = alert
            .labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or(""),
        container = alert.labels.get("name").map(String::as_str).unwrap_or(""),
        action,
        "alert"
    );
    let mut attributes: HashMap<String, String> = alert
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "id")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &alert.annotations {
        attributes.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let id = alert.labels.get("id").cloned().unwrap_or_default();
    core.events
        .publish(EventMessageTypeEnum::CONTAINER, action, &id, attributes);
    let body = serde_json::to_vec(&webhook::payload(alert)).unwrap_or_default();
    for url in &config.webhooks {
        tokio::spawn(webhook::deliver(url.clone(), body.clone(), config.attempts));
    }
}
