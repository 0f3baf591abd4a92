//! Restart policies (`no`, `on-failure[:N]`, `always`, `unless-stopped`), applied when a container exits and when
//! polisd starts, with Docker's back-off: 100 ms before the first restart, doubling up to a minute, back to 100 ms
//! once a run lasted 10 seconds.

use super::Core;
use super::record::{ContainerRecord, Status};
use bollard_stubs::models::RestartPolicyNameEnum;
use std::sync::Arc;
use std::time::Duration;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
const RESET_AFTER: Duration = Duration::from_secs(10);

fn policy(record: &ContainerRecord) -> (RestartPolicyNameEnum, i64) {
    let p = record
        .host_config
        .restart_policy
        .clone()
        .unwrap_or_default();
    (
        p.name.unwrap_or(RestartPolicyNameEnum::NO),
        p.maximum_retry_count.unwrap_or(0),
    )
}

/// Whether the policy restarts a container that just exited with `code`.
pub fn restarts_after_exit(record: &ContainerRecord, code: i64) -> bool {
    if record.stopped_by_user || record.host_config.auto_remove.unwrap_or(false) {
        return false;
    }
    match policy(record) {
        (RestartPolicyNameEnum::ALWAYS | RestartPolicyNameEnum::UNLESS_STOPPED, _) => true,
        (RestartPolicyNameEnum::ON_FAILURE, max) => {
            code != 0 && (max <= 0 || record.restart_count < max)
        }
        _ => false,
    }
}

/// Whether polisd starts the container when it starts itself: `always`, and `unless-stopped` unless a user
/// stopped it.
pub fn starts_with_daemon(record: &ContainerRecord) -> bool {
    if record.state.status.is_live() || record.state.status == Status::Created {
        return false;
    }
    match policy(record).0 {
        RestartPolicyNameEnum::ALWAYS => true,
        RestartPolicyNameEnum::UNLESS_STOPPED => !record.stopped_by_user,
        _ => false,
    }
}

/// The delay before the next restart, from the previous one and how long the last run lasted.
pub fn next_delay(previous: Option<Duration>, ran_for: Duration) -> Duration {
    match previous {
        Some(d) if ran_for < RESET_AFTER => (d * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

fn ran_for(record: &ContainerRecord) -> Duration {
    let parse = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    match (
        parse(&record.state.started_at),
        parse(&record.state.finished_at),
    ) {
        (Some(s), Some(f)) => (f - s).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

impl Core {
    /// After an exit: schedules the restart the policy asks for.
    pub fn apply_restart_policy(self: &Arc<Self>, record: &ContainerRecord) {
        if !restarts_after_exit(record, record.state.exit_code) {
            return;
        }
        let h = self.handle(record);
        let delay = {
            let mut last = h.restart_delay.lock().unwrap_or_else(|e| e.into_inner());
            let d = next_delay(*last, ran_for(record));
            *last = Some(d);
            d
        };
        let core = self.clone();
        let id = record.id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // A user may have stopped or removed it meanwhile.
            let Ok(Some(mut record)) = core.db.get(&id) else {
                return;
            };
            if record.stopped_by_user || record.state.status.is_live() {
                return;
            }
            record.restart_count += 1;
            if core.db.update(&record).is_err() {
                return;
            }
            if let Err(e) = core.start(&id).await {
                tracing::warn!(container = id, error = %e, "restart");
            } else {
                core.events.publish(
                    bollard_stubs::models::EventMessageTypeEnum::CONTAINER,
                    "restart",
                    &id,
                    [("name".to_string(), record.name.clone())].into(),
                );
            }
        });
    }

    /// When polisd starts: starts the containers whose policy says so.
    pub async fn start_by_policy(self: &Arc<Self>) {
        let Ok(records) = self.db.all() else { return };
        for record in records.iter().filter(|r| starts_with_daemon(r)) {
            if let Err(e) = self.start(&record.id).await {
                tracing::warn!(container = record.id, error = %e, "start by restart policy");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{HostConfig, RestartPolicy};

    fn with(name: RestartPolicyNameEnum, max: i64) -> ContainerRecord {
        ContainerRecord {
            host_config: HostConfig {
                restart_policy: Some(RestartPolicy {
                    name: Some(name),
                    maximum_retry_count: Some(max),
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn policies_decide_as_docker_does() {
        assert!(!restarts_after_exit(&with(RestartPolicyNameEnum::NO, 0), 1));
        assert!(restarts_after_exit(
            &with(RestartPolicyNameEnum::ALWAYS, 0),
            0
        ));
        let mut r = with(RestartPolicyNameEnum::ON_FAILURE, 2);
        assert!(!restarts_after_exit(&r, 0));
        assert!(restarts_after_exit(&r, 1));
        r.restart_count = 2;
        assert!(!restarts_after_exit(&r, 1), "the retry count is used up");
        let mut u = with(RestartPolicyNameEnum::UNLESS_STOPPED, 0);
        u.state.status = Status::Exited;
        assert!(starts_with_daemon(&u));
        u.stopped_by_user = true;
        assert!(!restarts_after_exit(&u, 1));
        assert!(!starts_with_daemon(&u));
        let mut a = with(RestartPolicyNameEnum::ALWAYS, 0);
        a.state.status = Status::Exited;
        a.stopped_by_user = true;
        assert!(
            starts_with_daemon(&a),
            "always starts with the daemon even after a stop"
        );
    }

    #[test]
    fn back_off_doubles_and_resets() {
        let short = Duration::from_secs(1);
        assert_eq!(next_delay(None, short), FIRST_DELAY);
        assert_eq!(next_delay(Some(FIRST_DELAY), short), FIRST_DELAY * 2);
        assert_eq!(next_delay(Some(MAX_DELAY), short), MAX_DELAY);
        assert_eq!(next_delay(Some(MAX_DELAY), RESET_AFTER), FIRST_DELAY);
    }
}
