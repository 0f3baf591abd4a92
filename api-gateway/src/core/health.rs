//! Docker's HEALTHCHECK: the check's settings (the image's `Healthcheck` merged with the create request's, as
//! dockerd merges them), and one task per running container that sleeps until its next check, runs the test as an
//! exec in the container (`CMD` as given, `CMD-SHELL` through the container's shell, `/bin/sh -c` by default) with
//! its timeout, and keeps the result in the container's record (`state.health`): starting until the first success
//! or until `retries` consecutive failures after the start period, healthy, unhealthy; the failing streak and the
//! last five results. A change of status is a `health_status: healthy` / `health_status: unhealthy` event, and, when
//! polisd's `restart_unhealthy` is set, a container with a restart policy that turns unhealthy is killed and
//! restarted by its policy (restart.rs).
//!
//! Nothing polls: each task sleeps for its interval (tokio's timer wheel), and the record is written once per check.

use super::Core;
use super::error::{Error, Result};
use super::record::{ContainerRecord, Status};
use bollard_stubs::models::{
    ContainerConfig, EventMessageTypeEnum, HealthConfig, RestartPolicyNameEnum,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Docker's defaults (daemon/health.go).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRIES: i64 = 3;
/// Results kept in `State.Health.Log`.
pub const MAX_LOG_ENTRIES: usize = 5;
/// Bytes of a check's output kept, as dockerd's `maxOutputLen`.
pub const MAX_OUTPUT_LEN: usize = 4096;
/// The shortest non-zero duration dockerd accepts (`MinimumDuration`).
const MINIMUM_DURATION_NS: i64 = 1_000_000;

/// A container's health (Docker's `State.Health.Status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One check's result (Docker's `HealthcheckResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    /// RFC 3339, nanoseconds.
    pub start: String,
    pub end: String,
    /// 0 healthy, 1 unhealthy, -1 the check could not run or exceeded its timeout.
    pub exit_code: i64,
    /// stdout and stderr together, at most [`MAX_OUTPUT_LEN`] bytes (then `...`).
    pub output: String,
}

/// A running container's health-check state (Docker's `State.Health`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    /// Consecutive failures counted (those in the start period are not).
    pub failing_streak: i64,
    /// The last [`MAX_LOG_ENTRIES`] results, oldest first.
    pub log: Vec<HealthResult>,
}

impl Health {
    /// Adds a result as dockerd's `handleProbeResult` does; the new status when it changed. `in_start_period`: the
    /// check started within the start period (a failure then does not count while the container is starting).
    pub fn record(
        &mut self,
        result: HealthResult,
        retries: i64,
        in_start_period: bool,
    ) -> Option<HealthStatus> {
        let old = self.status;
        let success = result.exit_code == 0;
        self.log.push(result);
        if self.log.len() > MAX_LOG_ENTRIES {
            let extra = self.log.len() - MAX_LOG_ENTRIES;
            self.log.drain(..extra);
        }
        if success {
            self.failing_streak = 0;
            self.status = HealthStatus::Healthy;
        } else if !(self.status == HealthStatus::Starting && in_start_period) {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = HealthStatus::Unhealthy;
            }
        }
        (self.status != old).then_some(self.status)
    }
}

/// A container's check, resolved: the command and the durations with Docker's defaults for what is zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub command: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: i64,
    pub start_period: Duration,
    pub start_interval: Duration,
}

fn nanos_or(value: Option<i64>, default: Duration) -> Duration {
    match value {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

impl Check {
    /// The check of a container's (merged) config; None without one, with `["NONE"]`, or with a test dockerd
    /// would not run (dockerd's `getProbe`).
    pub fn of(config: &ContainerConfig) -> Option<Check> {
        let hc = config.healthcheck.as_ref()?;
        let test = hc.test.as_deref().unwrap_or_default();
        let command = match test.first().map(String::as_str) {
            Some("CMD") if test.len() > 1 => test[1..].to_vec(),
            Some("CMD-SHELL") if test.len() > 1 => {
                let mut shell = config
                    .shell
                    .clone()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                shell.push(test[1..].join(" "));
                shell
            }
            _ => return None,
        };
        Some(Check {
            command,
            interval: nanos_or(hc.interval, DEFAULT_INTERVAL),
            timeout: nanos_or(hc.timeout, DEFAULT_TIMEOUT),
            retries: hc.retries.filter(|r| *r > 0).unwrap_or(DEFAULT_RETRIES),
            start_period: nanos_or(hc.start_period, Duration::ZERO),
            start_interval: nanos_or(hc.start_interval, DEFAULT_START_INTERVAL),
        })
    }

    /// The wait before the next check: the start interval while the container is starting within its start
    /// period, else the interval (dockerd's `getInterval`).
    pub fn next_interval(&self, since_start: Duration, status: HealthStatus) -> Duration {
        if since_start < self.start_period && status == HealthStatus::Starting {
            self.start_interval
        } else {
            self.interval
        }
    }
}

/// dockerd's checks of a create request's `Healthcheck` (daemon `validateHealthCheck`), plus the test's type.
pub fn validate(hc: &HealthConfig) -> Result<()> {
    for (name, value) in [
        ("Interval", hc.interval),
        ("Timeout", hc.timeout),
        ("StartPeriod", hc.start_period),
        ("StartInterval", hc.start_interval),
    ] {
        if let Some(v) = value
            && v != 0
            && v < MINIMUM_DURATION_NS
        {
            return Err(Error::Invalid(format!(
                "{name} in Healthcheck cannot be less than 1ms"
            )));
        }
    }
    if hc.retries.is_some_and(|r| r < 0) {
        return Err(Error::Invalid(
            "Retries in Healthcheck cannot be negative".into(),
        ));
    }
    let test = hc.test.as_deref().unwrap_or_default();
    match test.first().map(String::as_str) {
        None | Some("NONE") => Ok(()),
        Some("CMD" | "CMD-SHELL") if test.len() > 1 => Ok(()),
        Some(kind @ ("CMD" | "CMD-SHELL")) => Err(Error::Invalid(format!(
            "Healthcheck test {kind} needs a command: {test:?}"
        ))),
        Some(other) => Err(Error::Invalid(format!(
            "Unknown Healthcheck test type {other:?}: expected CMD, CMD-SHELL or NONE"
        ))),
    }
}

/// dockerd's merge of the request's `Healthcheck` with the image's (daemon `merge`): without one in the request,
/// the image's; else each field the request leaves empty or zero comes from the image.
pub fn merge(request: Option<HealthConfig>, image_config: &Value) -> Option<HealthConfig> {
    let image: Option<HealthConfig> = image_config
        .get("Healthcheck")
        .filter(|v| v.is_object())
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let Some(mut hc) = request else {
        return image;
    };
    let Some(image) = image else {
        return Some(hc);
    };
    if hc.test.as_ref().is_none_or(|t| t.is_empty()) {
        hc.test = image.test;
    }
    let zero = |v: &Option<i64>| v.is_none_or(|n| n == 0);
    if zero(&hc.interval) {
        hc.interval = image.interval;
    }
    if zero(&hc.timeout) {
        hc.timeout = image.timeout;
    }
    if zero(&hc.start_period) {
        hc.start_period = image.start_period;
    }
    if zero(&hc.start_interval) {
        hc.start_interval = image.start_interval;
    }
    if zero(&hc.retries) {
        hc.retries = image.retries;
    }
    Some(hc)
}

/// A duration as Go prints a `time.Duration` ("30s", "1m30s", "500ms"), for Docker's timeout message.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (unit, div) = if ns < 1_000 {
            ("ns", 1)
        } else if ns < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", trim_fraction(ns, div));
    }
    let h = ns / 3_600_000_000_000;
    let m = (ns / 60_000_000_000) % 60;
    let s = trim_fraction(ns % 60_000_000_000, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, m) => format!("{m}m{s}s"),
        (h, m) => format!("{h}h{m}m{s}s"),
    }
}

/// `n / div` with its fraction, trailing zeros dropped.
fn trim_fraction(n: u128, div: u128) -> String {
    let whole = n / div;
    let frac = n % div;
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// A check's output as dockerd keeps it: the first [`MAX_OUTPUT_LEN`] bytes, `...` when there was more.
#[derive(Debug, Default)]
pub struct LimitedOutput {
    bytes: Vec<u8>,
    truncated: bool,
}

impl LimitedOutput {
    pub fn push(&mut self, data: &[u8]) {
        let keep = (MAX_OUTPUT_LEN - self.bytes.len()).min(data.len());
        self.bytes.extend_from_slice(&data[..keep]);
        if keep < data.len() {
            self.truncated = true;
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated {
            s.push_str("...");
        }
        s
    }
}

fn parse_time(t: Option<&str>) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(t?).ok()
}

/// How long the container has run at `at`.
fn since_start(record: &ContainerRecord, at: chrono::DateTime<chrono::Utc>) -> Duration {
    parse_time(record.state.started_at.as_deref())
        .and_then(|s| (at - s.with_timezone(&chrono::Utc)).to_std().ok())
        .unwrap_or_default()
}

impl Core {
    /// Starts the checks of a container that just started (`fresh`: its health goes back to starting with no
    /// failures, its log kept, as dockerd's `initHealthMonitor`), or that polisd found running when it started
    /// (its health as recorded). A container without a check has none.
    pub fn start_health(self: &Arc<Self>, record: &ContainerRecord, fresh: bool) {
        self.stop_health(&record.id);
        let Some(check) = Check::of(&record.config) else {
            return;
        };
        let status = if fresh {
            let set = self.db.modify_health(&record.id, |_, health| {
                let h = health.get_or_insert_with(Health::default);
                h.status = HealthStatus::Starting;
                h.failing_streak = 0;
            });
            if let Err(e) = set {
                tracing::warn!(container = record.id, error = %e, "record the health check's start");
            }
            HealthStatus::Starting
        } else {
            record
                .state
                .health
                .as_ref()
                .map(|h| h.status)
                .unwrap_or_default()
        };
        let task = tokio::spawn(
            self.clone()
                .monitor_health(record.id.clone(), check, status),
        );
        self.health_tasks().insert(record.id.clone(), task);
    }

    /// Stops a container's checks (it stopped or is removed); its last health stays in the record.
    pub fn stop_health(&self, id: &str) {
        if let Some(task) = self.health_tasks().remove(id) {
            task.abort();
        }
    }

    async fn monitor_health(self: Arc<Self>, id: String, check: Check, mut status: HealthStatus) {
        let mut since = match self.db.get(&id) {
            Ok(Some(r)) => since_start(&r, chrono::Utc::now()),
            _ => return,
        };
        loop {
            tokio::time::sleep(check.next_interval(since, status)).await;
            let record = match self.db.get(&id) {
                Ok(Some(r)) if r.state.status.is_live() => r,
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(container = id, error = %e, "health check: read the record");
                    continue;
                }
            };
            if record.state.status == Status::Paused {
                since = since_start(&record, chrono::Utc::now());
                continue;
            }
            let started = chrono::Utc::now();
            let outcome = self
                .probe_exec(&id, check.command.clone(), check.timeout)
                .await;
            let ended = chrono::Utc::now();
            let result = HealthResult {
                start: started.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                end: ended.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                exit_code: outcome.exit_code,
                output: outcome.output,
            };
            let in_start_period = since_start(&record, started) < check.start_period;
            let changed = self.db.modify_health(&id, |r, health| {
                if !r.state.status.is_live() {
                    // Stopped while the check ran: its result is not recorded (dockerd drops it too).
                    return None;
                }
                let h = health.get_or_insert_with(Health::default);
                let changed = h.record(result, check.retries, in_start_period);
                Some((h.status, changed))
            });
            let changed = match changed {
                Ok(Some(Some((now, changed)))) => {
                    status = now;
                    changed
                }
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(container = id, error = %e, "health check: record the result");
                    None
                }
            };
            since = since_start(&record, chrono::Utc::now());
            if let Some(now) = changed {
                self.events.publish(
                    EventMessageTypeEnum::CONTAINER,
                    &format!("health_status: {}", now.as_str()),
                    &id,
                    super::containers::event_attributes(&record),
                );
                if now == HealthStatus::Unhealthy && self.restarts_when_unhealthy(&record) {
                    tracing::info!(
                        container = id,
                        "unhealthy: killed for its restart policy (restart_unhealthy)"
                    );
                    if let Err(e) = self.kill(&id, Some("SIGKILL")).await {
                        tracing::warn!(container = id, error = %e, "kill the unhealthy container");
                    }
                    // Its exit ends this task; the restart policy starts the next run and its checks.
                }
            }
        }
    }

    /// polisd's `restart_unhealthy` is set and the container has a restart policy other than `no`.
    fn restarts_when_unhealthy(&self, record: &ContainerRecord) -> bool {
        self.config.restart_unhealthy
            && record
                .host_config
                .restart_policy
                .as_ref()
                .and_then(|p| p.name)
                .is_some_and(|n| {
                    !matches!(n, RestartPolicyNameEnum::NO | RestartPolicyNameEnum::EMPTY)
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(code: i64) -> HealthResult {
        HealthResult {
            exit_code: code,
            ..Default::default()
        }
    }

    #[test]
    fn starting_until_a_success_or_retries_failures() {
        let mut h = Health::default();
        assert_eq!(h.record(result(1), 2, false), None);
        assert_eq!(h.failing_streak, 1);
        assert_eq!(h.record(result(1), 2, false), Some(HealthStatus::Unhealthy));
        assert_eq!(h.record(result(0), 2, false), Some(HealthStatus::Healthy));
        assert_eq!(h.failing_streak, 0);
        assert_eq!(h.record(result(2), 2, false), None, "one failure");
        assert_eq!(h.status, HealthStatus::Healthy);
    }

    #[test]
    fn failures_in_the_start_period_do_not_count_while_starting() {
        let mut h = Health::default();
        for _ in 0..5 {
            assert_eq!(h.record(result(1), 1, true), None);
        }
        assert_eq!(h.failing_streak, 0);
        assert_eq!(h.status, HealthStatus::Starting);
        h.record(result(0), 1, true);
        assert_eq!(
            h.record(result(1), 1, true),
            Some(HealthStatus::Unhealthy),
            "once healthy, failures count in the start period too"
        );
    }

    #[test]
    fn the_log_keeps_the_last_five() {
        let mut h = Health::default();
        for code in 0..8 {
            h.record(result(code), 3, false);
        }
        let codes: Vec<i64> = h.log.iter().map(|r| r.exit_code).collect();
        assert_eq!(codes, [3, 4, 5, 6, 7]);
    }

    #[test]
    fn checks_resolve_with_dockers_defaults() {
        let config = |test: &[&str]| ContainerConfig {
            healthcheck: Some(HealthConfig {
                test: Some(test.iter().map(|s| s.to_string()).collect()),
                interval: Some(1_000_000_000),
                retries: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Check::of(&config(&["CMD-SHELL", "test -f /tmp/ok"])).unwrap();
        assert_eq!(c.command, ["/bin/sh", "-c", "test -f /tmp/ok"]);
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.retries, DEFAULT_RETRIES);
        assert_eq!(c.start_interval, DEFAULT_START_INTERVAL);
        assert_eq!(
            Check::of(&config(&["CMD", "true", "x"])).unwrap().command,
            ["true", "x"]
        );
        assert!(Check::of(&config(&["NONE"])).is_none());
        assert!(Check::of(&ContainerConfig::default()).is_none());
        let mut shell = config(&["CMD-SHELL", "echo", "hi"]);
        shell.shell = Some(vec!["/bin/bash".into(), "-ec".into()]);
        assert_eq!(
            Check::of(&shell).unwrap().command,
            ["/bin/bash", "-ec", "echo hi"]
        );
        assert_eq!(
            c.next_interval(Duration::ZERO, HealthStatus::Starting),
            c.interval,
            "no start period"
        );
        let mut p = c.clone();
        p.start_period = Duration::from_secs(10);
        assert_eq!(
            p.next_interval(Duration::from_secs(1), HealthStatus::Starting),
            p.start_interval
        );
        assert_eq!(
            p.next_interval(Duration::from_secs(1), HealthStatus::Healthy),
            p.interval
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        let hc = |f: fn(&mut HealthConfig)| {
            let mut hc = HealthConfig {
                test: Some(vec!["CMD".into(), "true".into()]),
                ..Default::default()
            };
            f(&mut hc);
            validate(&hc).map_err(|e| e.to_string())
        };
        assert!(hc(|_| {}).is_ok());
        assert!(hc(|h| h.interval = Some(0)).is_ok());
        assert!(
            hc(|h| h.interval = Some(-1))
                .unwrap_err()
                .contains("Interval in Healthcheck cannot be less than 1ms")
        );
        assert!(
            hc(|h| h.timeout = Some(999_999))
                .unwrap_err()
                .contains("Timeout in Healthcheck")
        );
        assert!(
            hc(|h| h.retries = Some(-1))
                .unwrap_err()
                .contains("Retries in Healthcheck cannot be negative")
        );
        assert!(
            hc(|h| h.test = Some(vec!["CMD".into()]))
                .unwrap_err()
                .contains("needs a command")
        );
        assert!(
            hc(|h| h.test = Some(vec!["SHELL".into(), "x".into()]))
                .unwrap_err()
                .contains("Unknown Healthcheck test type")
        );
    }

    #[test]
    fn the_request_overrides_the_image_field_by_field() {
        let image = json!({"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000i64, "Retries": 7}});
        let merged = merge(
            Some(HealthConfig {
                interval: Some(1_000_000_000),
                ..Default::default()
            }),
            &image,
        )
        .unwrap();
        assert_eq!(merged.test.unwrap(), ["CMD-SHELL", "true"]);
        assert_eq!(merged.interval, Some(1_000_000_000));
        assert_eq!(merged.retries, Some(7));
        let none = merge(
            Some(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }),
            &image,
        )
        .unwrap();
        assert_eq!(none.test.unwrap(), ["NONE"]);
        assert_eq!(merge(None, &image).unwrap().retries, Some(7));
        assert!(merge(None, &json!({})).is_none());
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn output_is_cut_at_4096_bytes() {
        let mut o = LimitedOutput::default();
        o.push(b"hello ");
        o.push(&[b'x'; 5000]);
        let t = o.text();
        assert_eq!(t.len(), MAX_OUTPUT_LEN + 3);
        assert!(t.starts_with("hello x") && t.ends_with("x..."));
    }
}
