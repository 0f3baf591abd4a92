//! Alert rules (`[alerts]` of polisd.toml) and their state: each rule is checked for each container at every
//! evaluation, and an alert goes pending when its condition holds, fires once it has held for the rule's `for`,
//! and resolves when it no longer holds (or the container is gone), as Prometheus's alerting rules behave. A
//! transition is reported once: an alert fires once until it resolves.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, SystemTime};

/// `[alerts]`: the rules, where notifications go, and how often rules are checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How often the rules are evaluated (`15s`, `1m`).
    #[serde(with = "duration_text")]
    pub interval: Duration,
    /// http:// URLs that get each firing and resolved alert, in Alertmanager's webhook JSON (version 4).
    pub webhooks: Vec<String>,
    /// Attempts per notification before it is given up (with a doubling delay from 1 s between them).
    pub attempts: u32,
    pub rules: Vec<Rule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            interval: Duration::from_secs(15),
            webhooks: Vec::new(),
            attempts: 5,
            rules: Vec::new(),
        }
    }
}

/// One rule: `condition` over each container, true for `for` before it fires.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The alert's name (`alertname`).
    pub name: String,
    pub condition: Condition,
    /// The threshold of `memory_working_set_ratio` (0 to 1) and of `restarts` (a count).
    #[serde(default)]
    pub above: Option<f64>,
    /// How long the condition must hold before the alert fires (`0s` by default: at once).
    #[serde(rename = "for", default, with = "duration_text")]
    pub for_: Duration,
    /// The window of `restarts` and `oom_kill` (by default: one evaluation interval).
    #[serde(default, with = "optional_duration_text")]
    pub within: Option<Duration>,
    /// Labels added to the alert's (for example `severity = "critical"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the alert (for example `summary`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// The working set over the memory limit is above `above` (containers with a limit only), as
    /// `container_memory_working_set_bytes / container_spec_memory_limit_bytes`.
    MemoryWorkingSetRatio,
    /// The container's health check says unhealthy (`polis_container_health == 0`).
    Unhealthy,
    /// More than `above` restarts within `within` (`increase(polis_container_restarts_total[within])`).
    Restarts,
    /// The OOM killer killed a process of the container within `within` (`increase(container_oom_events_total)`,
    /// or the container's own init, which ends it).
    OomKill,
}

impl AlertsConfig {
    /// Refuses rules that cannot work, naming the rule.
    pub fn check(&self) -> Result<(), String> {
        if self.interval < Duration::from_secs(1) {
            return Err("alerts.interval must be at least 1s".into());
        }
        for url in &self.webhooks {
            super::webhook::Target::parse(url).map_err(|e| format!("alerts.webhooks: {e}"))?;
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.rules {
            if r.name.is_empty()
                || !r
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(format!(
                    "alert rule {:?}: the name must be letters, digits and underscores",
                    r.name
                ));
            }
            if !names.insert(&r.name) {
                return Err(format!("alert rule {}: defined twice", r.name));
            }
            let needs_threshold = matches!(
                r.condition,
                Condition::MemoryWorkingSetRatio | Condition::Restarts
            );
            match (needs_threshold, r.above) {
                (true, None) => {
                    return Err(format!(
                        "alert rule {}: `above` is required for this condition",
                        r.name
                    ));
                }
                (false, Some(_)) => {
                    return Err(format!(
                        "alert rule {}: `above` means nothing for this condition",
                        r.name
                    ));
                }
                (_, Some(a)) if !a.is_finite() || a < 0.0 => {
                    return Err(format!(
                        "alert rule {}: `above` must be a number of 0 or more",
                        r.name
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What an evaluation knows of one container.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub id: String,
    pub name: String,
    pub image: String,
    /// Working set and limit (0: none), while it runs.
    pub memory: Option<(u64, u64)>,
    /// `Some(true)` when its health check says unhealthy.
    pub unhealthy: Option<bool>,
    pub restarts: u64,
    /// OOM kills counted in its cgroup while it ran, plus one if its init was OOM-killed.
    pub oom_kills: u64,
    /// When it (last) started: a container first seen that started within a window counts its counters from 0.
    pub started: Option<SystemTime>,
}

/// One alert as the webhook and `GET /polis/alerts` show it (Alertmanager's alert fields).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: SystemTime,
    /// Set when it resolved.
    pub ends_at: Option<SystemTime>,
}

impl Alert {
    /// Alertmanager's fingerprint stand-in: a stable hash of the labels (FNV-1a 64, hex).
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf29ce484222325;
        for (k, v) in &self.labels {
            for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100000001b3);
            }
        }
        format!("{h:016x}")
    }
}

/// A change to report.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Firing(Alert),
    Resolved(Alert),
}

#[derive(Debug, Default)]
struct Tracked {
    /// Since when the condition holds.
    pending_since: Option<SystemTime>,
    firing: Option<Alert>,
}

/// The rules and what each alert is doing.
#[derive(Debug, Default)]
pub struct Evaluator {
    rules: Vec<Rule>,
    interval: Duration,
    /// By (rule, container ID).
    tracked: HashMap<(String, String), Tracked>,
    /// Per container: (time, restarts, OOM kills) of past evaluations, for `within` windows.
    history: HashMap<String, VecDeque<(SystemTime, u64, u64)>>,
}

impl Evaluator {
    pub fn new(config: &AlertsConfig) -> Evaluator {
        Evaluator {
            rules: config.rules.clone(),
            interval: config.interval,
            ..Default::default()
        }
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self
            .tracked
            .values()
            .filter_map(|t| t.firing.clone())
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// One evaluation at `now` over the containers that exist: the transitions to report.
    pub fn evaluate(&mut self, now: SystemTime, containers: &[Observation]) -> Vec<Transition> {
        let longest = self
            .rules
            .iter()
            .map(|r| r.within.unwrap_or(self.interval))
            .max()
            .unwrap_or(self.interval);
        for c in containers {
            let h = self.history.entry(c.id.clone()).or_default();
            h.push_back((now, c.restarts, c.oom_kills));
            // Keep what the longest window needs, and one sample before it.
            while h.len() > 2 && h.get(1).is_some_and(|(t, ..)| elapsed(*t, now) > longest) {
                h.pop_front();
            }
        }
        self.history
            .retain(|id, _| containers.iter().any(|c| &c.id == id));

        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for rule in &self.rules {
            for c in containers {
                let key = (rule.name.clone(), c.id.clone());
                seen.insert(key.clone());
                let holds = self.holds(rule, c, now);
                let t = self.tracked.entry(key).or_default();
                if holds {
                    let since = *t.pending_since.get_or_insert(now);
                    if t.firing.is_none() && elapsed(since, now) >= rule.for_ {
                        let alert = Alert {
                            labels: labels(rule, c),
                            annotations: rule.annotations.clone(),
                            starts_at: now,
                            ends_at: None,
                        };
                        t.firing = Some(alert.clone());
                        out.push(Transition::Firing(alert));
                    }
                } else {
                    t.pending_since = None;
                    if let Some(mut alert) = t.firing.take() {
                        alert.ends_at = Some(now);
                        out.push(Transition::Resolved(alert));
                    }
                }
            }
        }
        // Containers that are gone: their firing alerts resolve.
        let gone: Vec<_> = self
            .tracked
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(mut alert) = self.tracked.remove(&key).and_then(|t| t.firing) {
                alert.ends_at = Some(now);
                out.push(Transition::Resolved(alert));
            }
        }
        out
    }

    fn holds(&self, rule: &Rule, c: &Observation, now: SystemTime) -> bool {
        let above = rule.above.unwrap_or(0.0);
        match rule.condition {
            Condition::MemoryWorkingSetRatio => c
                .memory
                .is_some_and(|(ws, limit)| limit > 0 && ws as f64 / limit as f64 > above),
            Condition::Unhealthy => c.unhealthy == Some(true),
            Condition::Restarts => self.increase(c, rule, now, |(_, r, _)| r) as f64 > above,
            Condition::OomKill => self.increase(c, rule, now, |(_, _, o)| o) > 0,
        }
    }

    /// How much a counter grew within the rule's window: from the last sample at least as old as the window to
    /// now.
    fn increase(
        &self,
        c: &Observation,
        rule: &Rule,
        now: SystemTime,
        value: impl Fn((SystemTime, u64, u64)) -> u64,
    ) -> u64 {
        let window = rule.within.unwrap_or(self.interval);
        let Some(h) = self.history.get(&c.id) else {
            return 0;
        };
        let latest = h.back().copied().map(&value).unwrap_or(0);
        let base = match h.iter().rev().find(|(t, ..)| elapsed(*t, now) >= window) {
            Some(sample) => value(*sample),
            // No sample as old as the window: a container that started within it counts from nothing, any other
            // from its first sample.
            None => match c.started {
                Some(t) if elapsed(t, now) <= window => 0,
                _ => h.front().copied().map(&value).unwrap_or(latest),
            },
        };
        latest.saturating_sub(base)
    }
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}

fn labels(rule: &Rule, c: &Observation) -> BTreeMap<String, String> {
    let mut l = rule.labels.clone();
    l.insert("alertname".into(), rule.name.clone());
    l.insert("id".into(), c.id.clone());
    l.insert("name".into(), c.name.clone());
    l.insert("image".into(), c.image.clone());
    l
}

/// Durations as people write them in the config: `500ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 30s, 5m, 1h)"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{text:?} is not a duration (like 30s, 5m, 1h)")),
    })
}

mod duration_text {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

mod optional_duration_text {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> AlertsConfig {
        let c: AlertsConfig = toml::from_str(text).unwrap();
        c.check().unwrap();
        c
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn web(ws: u64) -> Observation {
        Observation {
            id: "abc".into(),
            name: "web".into(),
            image: "busybox".into(),
            memory: Some((ws, 100)),
            ..Default::default()
        }
    }

    /// A memory rule with `for = "60s"`: pending first, firing once after a minute however often it is checked,
    /// resolved once when the working set falls.
    #[test]
    fn fires_after_for_once_and_resolves_once() {
        let c = rule(
            "interval = \"15s\"\n[[rules]]\nname = \"MemoryHigh\"\ncondition = \"memory_working_set_ratio\"\nabove = 0.9\nfor = \"60s\"\nlabels = { severity = \"warning\" }\n",
        );
        let mut e = Evaluator::new(&c);
        assert!(e.evaluate(at(0), &[web(95)]).is_empty(), "pending");
        assert!(e.evaluate(at(30), &[web(95)]).is_empty(), "still pending");
        let t = e.evaluate(at(60), &[web(96)]);
        let [Transition::Firing(a)] = t.as_slice() else {
            panic!("{t:?}")
        };
        assert_eq!(a.labels["alertname"], "MemoryHigh");
        assert_eq!(a.labels["severity"], "warning");
        assert_eq!(a.labels["name"], "web");
        assert!(e.evaluate(at(75), &[web(97)]).is_empty(), "no duplicate");
        assert_eq!(e.firing().len(), 1);
        let t = e.evaluate(at(90), &[web(10)]);
        assert!(matches!(t.as_slice(), [Transition::Resolved(a)] if a.ends_at == Some(at(90))));
        assert!(e.evaluate(at(105), &[web(10)]).is_empty());
        assert!(e.firing().is_empty());
    }

    /// A dip below the threshold restarts the `for` wait.
    #[test]
    fn a_dip_restarts_the_wait() {
        let c = rule(
            "[[rules]]\nname = \"M\"\ncondition = \"memory_working_set_ratio\"\nabove = 0.9\nfor = \"60s\"\n",
        );
        let mut e = Evaluator::new(&c);
        e.evaluate(at(0), &[web(95)]);
        e.evaluate(at(45), &[web(50)]);
        assert!(e.evaluate(at(70), &[web(95)]).is_empty());
        assert_eq!(e.evaluate(at(130), &[web(95)]).len(), 1);
    }

    /// Restarts counted within the window; a container that is gone resolves its alert.
    #[test]
    fn restarts_within_a_window_and_gone_containers() {
        let c = rule(
            "interval = \"10s\"\n[[rules]]\nname = \"Flapping\"\ncondition = \"restarts\"\nabove = 2\nwithin = \"60s\"\n",
        );
        let mut e = Evaluator::new(&c);
        let r = |n| Observation {
            id: "abc".into(),
            restarts: n,
            ..Default::default()
        };
        assert!(e.evaluate(at(0), &[r(5)]).is_empty(), "history starts at 5");
        assert!(e.evaluate(at(10), &[r(7)]).is_empty(), "2 is not above 2");
        assert_eq!(e.evaluate(at(20), &[r(8)]).len(), 1, "3 within a minute");
        assert!(e.evaluate(at(30), &[r(8)]).is_empty());
        // 60 s after the restarts stopped, the window holds none of them.
        let t = e.evaluate(at(85), &[r(8)]);
        assert!(matches!(t.as_slice(), [Transition::Resolved(_)]), "{t:?}");
        e.evaluate(at(90), &[r(20)]);
        let t = e.evaluate(at(95), &[]);
        assert!(matches!(t.as_slice(), [Transition::Resolved(_)]), "{t:?}");
    }

    /// An OOM kill fires at the first evaluation of a container that started within the window, and not for
    /// one that was already running (its old kills are history); it resolves when the window has passed.
    #[test]
    fn oom_kills_of_a_new_container() {
        let c = rule(
            "interval = \"5s\"\n[[rules]]\nname = \"Oom\"\ncondition = \"oom_kill\"\nwithin = \"30s\"\n",
        );
        let mut e = Evaluator::new(&c);
        let o = |id: &str, kills, started| Observation {
            id: id.into(),
            oom_kills: kills,
            started: Some(at(started)),
            ..Default::default()
        };
        let t = e.evaluate(at(100), &[o("new", 1, 98), o("old", 4, 0)]);
        assert!(
            matches!(t.as_slice(), [Transition::Firing(a)] if a.labels["id"] == "new"),
            "{t:?}"
        );
        assert_eq!(
            e.evaluate(at(105), &[o("new", 1, 98), o("old", 5, 0)])
                .len(),
            1,
            "old's new kill"
        );
        assert_eq!(
            e.evaluate(at(140), &[o("new", 1, 98), o("old", 5, 0)])
                .len(),
            2,
            "both resolve"
        );
    }

    #[test]
    fn bad_rules_are_refused_naming_them() {
        let c: AlertsConfig =
            toml::from_str("[[rules]]\nname = \"M\"\ncondition = \"memory_working_set_ratio\"\n")
                .unwrap();
        assert!(
            c.check()
                .unwrap_err()
                .contains("alert rule M: `above` is required")
        );
        let c: AlertsConfig =
            toml::from_str("[[rules]]\nname = \"U\"\ncondition = \"unhealthy\"\nabove = 1\n")
                .unwrap();
        assert!(c.check().unwrap_err().contains("alert rule U"));
        assert!(
            toml::from_str::<AlertsConfig>("[[rules]]\nname = \"X\"\ncondition = \"cpu\"\n")
                .is_err()
        );
        assert!(toml::from_str::<AlertsConfig>("interval = \"soon\"\n").is_err());
        let c: AlertsConfig = toml::from_str("webhooks = [\"https://example.com/\"]\n").unwrap();
        assert!(c.check().unwrap_err().contains("http://"));
    }
}
