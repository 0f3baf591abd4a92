//! Per-container metrics with cAdvisor's names, types, help texts and label names (`id`: the cgroup path, `name`,
//! `image`; `container_label_KEY` for the container labels the config lists in `[metrics] container_labels`),
//! so that Grafana dashboards and alert rules written for cAdvisor and kubelet work unchanged. Each running
//! container's cgroup is read once per scrape (v1, v2 and hybrid hosts alike, through polis-host's readers), with
//! its network namespace's /proc/net/dev, its cgroup's process and thread counts and its shim's RSS.
//!
//! Polis's own per-container families ride along: `polis_container_health`, `polis_container_restarts_total`,
//! `polis_shim_processes` and `polis_shim_rss_bytes`.

use super::register;
use crate::core::Core;
use crate::core::health::HealthStatus;
use crate::core::record::ContainerRecord;
use polis_host::cgroup::{self, Cgroup, Detail, Stats, UNLIMITED};
use prometheus::{CounterVec, GaugeVec, IntGauge, Opts, Registry};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Where the running containers' cgroups are, by container ID, with the init pid they were found for.
#[derive(Default)]
pub struct Locations(Mutex<HashMap<String, (u32, Cgroup)>>);

impl Locations {
    fn find(&self, id: &str, pid: u32) -> Option<Cgroup> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, cg)) = map.get(id)
            && *known == pid
        {
            return Some(cg.clone());
        }
        let cg = cgroup::locate(pid).ok()?;
        map.insert(id.to_string(), (pid, cg.clone()));
        Some(cg)
    }

    /// Forgets the containers that are no longer running.
    fn keep(&self, running: &[&str]) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|id, _| running.contains(&id.as_str()));
    }
}

/// The families of one scrape, each with the same label names.
struct Families {
    labels: Vec<String>,
    counters: HashMap<&'static str, CounterVec>,
    gauges: HashMap<&'static str, GaugeVec>,
}

/// cAdvisor's counters: name, help, the extra label beside the container's.
const COUNTERS: &[(&str, &str, Option<&str>)] = &[
    (
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        Some("cpu"),
    ),
    (
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        None,
    ),
    (
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        None,
    ),
    (
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        None,
    ),
    (
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        None,
    ),
    (
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        None,
    ),
    (
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        None,
    ),
    (
        "container_fs_reads_bytes_total",
        "Cumulative count of bytes read",
        Some("device"),
    ),
    (
        "container_fs_writes_bytes_total",
        "Cumulative count of bytes written",
        Some("device"),
    ),
    (
        "container_fs_reads_total",
        "Cumulative count of reads completed",
        Some("device"),
    ),
    (
        "container_fs_writes_total",
        "Cumulative count of writes completed",
        Some("device"),
    ),
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        Some("interface"),
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        Some("interface"),
    ),
    (
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        Some("interface"),
    ),
    (
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        Some("interface"),
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        Some("interface"),
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        Some("interface"),
    ),
    (
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        Some("interface"),
    ),
    (
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        Some("interface"),
    ),
    (
        "polis_container_restarts_total",
        "Times polisd restarted the container under its restart policy.",
        None,
    ),
];

/// cAdvisor's gauges (and Polis's per-container ones).
const GAUGES: &[(&str, &str)] = &[
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
    ),
    ("container_memory_rss", "Size of RSS in bytes."),
    (
        "container_memory_cache",
        "Number of bytes of page cache memory.",
    ),
    ("container_memory_swap", "Container swap usage in bytes."),
    (
        "container_memory_failcnt",
        "Number of memory usage hits limits",
    ),
    (
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
    ),
    ("container_spec_cpu_shares", "CPU share of the container."),
    (
        "container_processes",
        "Number of processes running inside the container.",
    ),
    (
        "container_threads",
        "Number of threads running inside the container",
    ),
    (
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
    ),
    (
        "container_last_seen",
        "Last time a container was seen by the exporter",
    ),
    (
        "polis_container_health",
        "The container's health check state: 0 unhealthy, 1 starting, 2 healthy (no sample without a health check).",
    ),
    (
        "polis_shim_rss_bytes",
        "Resident memory of the container's containerd-shim-polis-v2 process.",
    ),
];

/// A label name from a container label's key, as cAdvisor makes them: `container_label_` and the key with every
/// character outside `[a-zA-Z0-9_]` made `_`.
pub fn container_label_name(key: &str) -> String {
    let clean: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("container_label_{clean}")
}

impl Families {
    fn new(scrape: &Registry, label_keys: &[String]) -> Families {
        let mut labels = vec!["id".to_string(), "name".to_string(), "image".to_string()];
        labels.extend(label_keys.iter().map(|k| container_label_name(k)));
        let names: Vec<&str> = labels.iter().map(String::as_str).collect();
        let mut counters = HashMap::new();
        for (name, help, extra) in COUNTERS {
            let mut l = names.clone();
            l.extend(extra.iter().copied());
            let c = CounterVec::new(Opts::new(*name, *help), &l).expect("valid counter");
            register(scrape, &c);
            counters.insert(*name, c);
        }
        let mut gauges = HashMap::new();
        for (name, help) in GAUGES {
            let g = GaugeVec::new(Opts::new(*name, *help), &names).expect("valid gauge");
            register(scrape, &g);
            gauges.insert(*name, g);
        }
        Families {
            labels,
            counters,
            gauges,
        }
    }

    fn count(&self, name: &str, base: &[&str], extra: Option<&str>, value: f64) {
        let mut l = base.to_vec();
        l.extend(extra);
        debug_assert_eq!(l.len(), self.labels.len() + usize::from(extra.is_some()));
        self.counters[name]
            .with_label_values(&l)
            .inc_by(value.max(0.0));
    }

    fn set(&self, name: &str, base: &[&str], value: f64) {
        self.gauges[name].with_label_values(base).set(value);
    }
}

/// Adds the containers' families to `scrape`: every running (or paused) container's, and, for all containers,
/// the restart counter and the health check's state.
pub fn collect(core: &Core, locations: &Locations, scrape: &Registry) {
    let label_keys = &core.config.metrics.container_labels;
    let families = Families::new(scrape, label_keys);
    let shims = IntGauge::new(
        "polis_shim_processes",
        "containerd-shim-polis-v2 processes serving running containers.",
    )
    .expect("valid gauge");
    register(scrape, &shims);
    let Ok(records) = core.db.all() else {
        return;
    };
    let scrape = Scrape {
        families: &families,
        shims: &shims,
        locations,
        label_keys,
        now: chrono::Utc::now().timestamp_millis() as f64 / 1000.0,
        devices: partitions(Path::new("/proc/partitions")),
    };
    // The files of a hundred cgroups are a few thousand opens, each a path walk in the kernel: read them on as
    // many threads as there are cores (at most four), each taking every Nth container.
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(records.len().max(1));
    std::thread::scope(|s| {
        for w in 0..workers {
            let (scrape, records) = (&scrape, &records);
            s.spawn(move || {
                for record in records.iter().skip(w).step_by(workers) {
                    scrape.container(record);
                }
            });
        }
    });
    let running: Vec<&str> = records
        .iter()
        .filter(|r| r.state.status.is_live() && r.state.pid > 0)
        .map(|r| r.id.as_str())
        .collect();
    locations.keep(&running);
}

/// What one scrape shares between its threads.
struct Scrape<'a> {
    families: &'a Families,
    shims: &'a IntGauge,
    locations: &'a Locations,
    label_keys: &'a [String],
    now: f64,
    devices: HashMap<(u64, u64), String>,
}

impl Scrape<'_> {
    /// One container's samples.
    fn container(&self, record: &ContainerRecord) {
        let families = self.families;
        let mut base: Vec<String> = vec![
            cgroup_path(record),
            record.name.clone(),
            record
                .config
                .image
                .clone()
                .unwrap_or_else(|| record.image.clone()),
        ];
        let labels = record.config.labels.clone().unwrap_or_default();
        base.extend(
            self.label_keys
                .iter()
                .map(|k| labels.get(k).cloned().unwrap_or_default()),
        );
        let base: Vec<&str> = base.iter().map(String::as_str).collect();
        families.count(
            "polis_container_restarts_total",
            &base,
            None,
            record.restart_count as f64,
        );
        // A stopped container keeps its last health in its record; the gauge is for running ones.
        if let Some(health) = record
            .state
            .health
            .as_ref()
            .filter(|_| record.state.status.is_live())
        {
            families.set("polis_container_health", &base, health_value(health.status));
        }
        if !record.state.status.is_live() || record.state.pid <= 0 {
            return;
        }
        let pid = record.state.pid as u32;
        let Some(cg) = self.locations.find(&record.id, pid) else {
            return;
        };
        families.set("container_last_seen", &base, self.now);
        if let Some(started) = record
            .state
            .started_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            families.set(
                "container_start_time_seconds",
                &base,
                started.timestamp() as f64,
            );
        }
        let stats = cgroup::read_with(&cg, Detail::Summary).ok();
        if let Some(stats) = &stats {
            cgroup_families(families, &base, stats, &self.devices);
        }
        let (processes, threads) = process_counts(&cg, stats.as_ref());
        families.set("container_processes", &base, processes as f64);
        families.set("container_threads", &base, threads as f64);
        if record.host_config.network_mode.as_deref() != Some("host")
            && let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        {
            network_families(families, &base, &text);
        }
        if let Some(rss) = shim_rss(pid) {
            self.shims.inc();
            families.set("polis_shim_rss_bytes", &base, rss as f64);
        }
    }
}

/// A running container's memory as the alert rules see it.
#[derive(Debug, Clone, Copy)]
pub struct MemoryReading {
    pub working_set: u64,
    /// 0: no limit.
    pub limit: u64,
    pub oom_kills: u64,
}

/// The memory of a running container (None when it is not running or its cgroup cannot be read).
pub fn memory_of(locations: &Locations, record: &ContainerRecord) -> Option<MemoryReading> {
    if !record.state.status.is_live() || record.state.pid <= 0 {
        return None;
    }
    let cg = locations.find(&record.id, record.state.pid as u32)?;
    let memory = cgroup::read_with(&cg, Detail::Summary).ok()?.memory?;
    Some(MemoryReading {
        working_set: memory.working_set,
        limit: spec_limit(memory.usage.as_ref().map_or(UNLIMITED, |u| u.limit)),
        oom_kills: oom_kills(&memory),
    })
}

/// The OOM killer's kills in the cgroup: v1 memory.oom_control's oom_kill, v2 memory.events' oom_kill.
fn oom_kills(memory: &cgroup::Memory) -> u64 {
    memory
        .events
        .as_ref()
        .map(|e| e.oom_kill)
        .or(memory.oom_control.as_ref().map(|o| o.oom_kill))
        .unwrap_or(0)
}

/// `polis_container_health`'s number for a health status.
pub fn health_value(status: HealthStatus) -> f64 {
    match status {
        HealthStatus::Unhealthy => 0.0,
        HealthStatus::Starting => 1.0,
        HealthStatus::Healthy => 2.0,
    }
}

/// cAdvisor's `id`: the container's cgroup path (polisd's cgroupsPath).
fn cgroup_path(record: &ContainerRecord) -> String {
    format!("/polis/{}", record.id)
}

/// Nanoseconds as seconds (a division, so that 600000 ns prints as 0.0006).
fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

fn cgroup_families(
    f: &Families,
    base: &[&str],
    stats: &Stats,
    devices: &HashMap<(u64, u64), String>,
) {
    if let Some(cpu) = &stats.cpu {
        f.count(
            "container_cpu_usage_seconds_total",
            base,
            Some("total"),
            seconds(cpu.usage.total_ns),
        );
        f.count(
            "container_cpu_user_seconds_total",
            base,
            None,
            seconds(cpu.usage.user_ns),
        );
        f.count(
            "container_cpu_system_seconds_total",
            base,
            None,
            seconds(cpu.usage.system_ns),
        );
        let t = &cpu.throttling;
        f.count(
            "container_cpu_cfs_periods_total",
            base,
            None,
            t.periods as f64,
        );
        f.count(
            "container_cpu_cfs_throttled_periods_total",
            base,
            None,
            t.throttled_periods as f64,
        );
        f.count(
            "container_cpu_cfs_throttled_seconds_total",
            base,
            None,
            seconds(t.throttled_ns),
        );
    }
    if let Some(memory) = &stats.memory {
        let usage = memory.usage.clone().unwrap_or_default();
        f.set("container_memory_usage_bytes", base, usage.usage as f64);
        f.set(
            "container_memory_working_set_bytes",
            base,
            memory.working_set as f64,
        );
        f.set("container_memory_rss", base, memory.rss as f64);
        f.set("container_memory_cache", base, memory.cache as f64);
        f.set("container_memory_swap", base, memory.swap_usage as f64);
        f.set("container_memory_failcnt", base, usage.failcnt as f64);
        f.set(
            "container_spec_memory_limit_bytes",
            base,
            spec_limit(usage.limit) as f64,
        );
        f.count(
            "container_oom_events_total",
            base,
            None,
            oom_kills(memory) as f64,
        );
    }
    if let Some(io) = &stats.io {
        for d in &io.devices {
            let device = devices
                .get(&(d.major, d.minor))
                .cloned()
                .unwrap_or_else(|| format!("{}:{}", d.major, d.minor));
            let dev = Some(device.as_str());
            f.count(
                "container_fs_reads_bytes_total",
                base,
                dev,
                d.read_bytes as f64,
            );
            f.count(
                "container_fs_writes_bytes_total",
                base,
                dev,
                d.write_bytes as f64,
            );
            f.count("container_fs_reads_total", base, dev, d.reads as f64);
            f.count("container_fs_writes_total", base, dev, d.writes as f64);
        }
    }
}

/// A memory limit as cAdvisor reports it: 0 for none (v2 `max`, or v1's page-aligned stand-in for no limit).
fn spec_limit(limit: u64) -> u64 {
    if limit == UNLIMITED || limit >= (1u64 << 62) {
        0
    } else {
        limit
    }
}

/// `/dev/NAME` by (major, minor), from /proc/partitions (`path`).
fn partitions(path: &Path) -> HashMap<(u64, u64), String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                (f.first()?.parse().ok()?, f.get(1)?.parse().ok()?),
                format!("/dev/{}", f.get(3)?),
            ))
        })
        .collect()
}

fn network_families(f: &Families, base: &[&str], net_dev: &str) {
    for (interface, n) in crate::core::stats::parse_net_dev(net_dev) {
        let i = Some(interface.as_str());
        let v = |x: Option<u64>| x.unwrap_or(0) as f64;
        f.count(
            "container_network_receive_bytes_total",
            base,
            i,
            v(n.rx_bytes),
        );
        f.count(
            "container_network_transmit_bytes_total",
            base,
            i,
            v(n.tx_bytes),
        );
        f.count(
            "container_network_receive_packets_total",
            base,
            i,
            v(n.rx_packets),
        );
        f.count(
            "container_network_transmit_packets_total",
            base,
            i,
            v(n.tx_packets),
        );
        f.count(
            "container_network_receive_errors_total",
            base,
            i,
            v(n.rx_errors),
        );
        f.count(
            "container_network_transmit_errors_total",
            base,
            i,
            v(n.tx_errors),
        );
        f.count(
            "container_network_receive_packets_dropped_total",
            base,
            i,
            v(n.rx_dropped),
        );
        f.count(
            "container_network_transmit_packets_dropped_total",
            base,
            i,
            v(n.tx_dropped),
        );
    }
}

/// Processes and threads in the container's cgroup: the lines of `cgroup.procs` of the v2 directory or the v1 pids
/// (else cpu) hierarchy, and `pids.current` (the kernel counts tasks, that is threads), else the lines of v2
/// `cgroup.threads` or v1 `tasks`; the init alone when nothing can be read.
fn process_counts(cg: &Cgroup, stats: Option<&Stats>) -> (usize, usize) {
    let dir = match cg {
        Cgroup::V2(d) => Some(d.as_path()),
        Cgroup::V1(_) => cg.dir("pids").or_else(|| cg.dir("cpu")),
    };
    let lines = |file: &str| {
        dir.and_then(|d| std::fs::read_to_string(d.join(file)).ok())
            .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
    };
    let processes = lines("cgroup.procs").unwrap_or(1);
    let threads = stats
        .and_then(|s| s.pids.as_ref())
        .map(|p| p.current as usize)
        .or_else(|| match cg {
            Cgroup::V2(_) => lines("cgroup.threads"),
            Cgroup::V1(_) => lines("tasks"),
        })
        .unwrap_or(processes);
    (processes, threads)
}

/// The RSS of the shim serving a container: the parent of its init (the shim is the child subreaper that runs
/// polis-runc, so the init is reparented to it), when that parent is containerd-shim-polis-v2.
fn shim_rss(init: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).ok()?;
    let ppid: u32 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let status = std::fs::read_to_string(format!("/proc/{ppid}/status")).ok()?;
    let name = status.lines().find_map(|l| l.strip_prefix("Name:"))?.trim();
    // /proc's Name is the first 15 bytes of the command name.
    if !"containerd-shim-polis-v2".starts_with(name) {
        return None;
    }
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use polis_host::cgroup::fixture;
    use prometheus::Encoder;

    #[test]
    fn container_label_names_are_cadvisors() {
        assert_eq!(
            container_label_name("com.example/team-name"),
            "container_label_com_example_team_name"
        );
    }

    /// The families of one fixture host's container `/polis/abc`, as exposition text.
    fn exposition(tree: &fixture::Tree) -> String {
        let paths = tree.paths();
        let cg = paths.locate(fixture::PID).unwrap();
        let stats = paths.read_with(&cg, Detail::Summary).unwrap();
        let scrape = Registry::new();
        let f = Families::new(&scrape, &[]);
        let devices = partitions(&paths.proc.join("partitions"));
        cgroup_families(&f, &["/polis/abc", "web", "busybox"], &stats, &devices);
        let (processes, threads) = process_counts(&cg, Some(&stats));
        f.set(
            "container_processes",
            &["/polis/abc", "web", "busybox"],
            processes as f64,
        );
        f.set(
            "container_threads",
            &["/polis/abc", "web", "busybox"],
            threads as f64,
        );
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&scrape.gather(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[track_caller]
    fn has(text: &str, line: &str) {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }

    const L: &str = r#"id="/polis/abc",image="busybox",name="web""#;

    /// cgroup v1 (every controller in its own hierarchy): cpuacct.usage and cpuacct.stat (USER_HZ ticks) as
    /// seconds, cpu.stat's throttling, memory.usage_in_bytes, oom_control's oom_kill, the throttle blkio files
    /// per device named from /proc/partitions, and no limit as 0.
    #[test]
    fn cgroup_v1_fixture() {
        let text = exposition(&fixture::Tree::v1());
        has(
            &text,
            &format!(r#"container_cpu_usage_seconds_total{{cpu="total",{L}}} 2"#),
        );
        has(
            &text,
            &format!("container_cpu_user_seconds_total{{{L}}} 1.5"),
        );
        has(
            &text,
            &format!("container_cpu_system_seconds_total{{{L}}} 0.25"),
        );
        has(&text, &format!("container_cpu_cfs_periods_total{{{L}}} 10"));
        has(
            &text,
            &format!("container_cpu_cfs_throttled_periods_total{{{L}}} 3"),
        );
        has(
            &text,
            &format!("container_cpu_cfs_throttled_seconds_total{{{L}}} 0.000123456"),
        );
        has(
            &text,
            &format!("container_memory_usage_bytes{{{L}}} 131072"),
        );
        has(&text, &format!("container_memory_failcnt{{{L}}} 1"));
        has(
            &text,
            &format!("container_spec_memory_limit_bytes{{{L}}} 0"),
        );
        has(&text, &format!("container_oom_events_total{{{L}}} 2"));
        has(
            &text,
            &format!(r#"container_fs_reads_bytes_total{{device="/dev/vda",{L}}} 40960"#),
        );
        has(
            &text,
            &format!(r#"container_fs_writes_bytes_total{{device="/dev/vda",{L}}} 81920"#),
        );
        has(
            &text,
            &format!(r#"container_fs_reads_total{{device="/dev/vda",{L}}} 10"#),
        );
        has(&text, "# TYPE container_cpu_usage_seconds_total counter");
        has(&text, "# TYPE container_memory_working_set_bytes gauge");
    }

    /// cgroup v2: cpu.stat's microseconds as seconds, memory.current, memory.events' oom_kill, io.stat per
    /// device (a device /proc/partitions does not list keeps its numbers), cgroup.procs.
    #[test]
    fn cgroup_v2_fixture() {
        let text = exposition(&fixture::Tree::v2());
        has(
            &text,
            &format!(r#"container_cpu_usage_seconds_total{{cpu="total",{L}}} 0.001"#),
        );
        has(
            &text,
            &format!("container_cpu_user_seconds_total{{{L}}} 0.0006"),
        );
        has(
            &text,
            &format!("container_cpu_cfs_throttled_periods_total{{{L}}} 2"),
        );
        has(
            &text,
            &format!("container_cpu_cfs_throttled_seconds_total{{{L}}} 0.0003"),
        );
        has(&text, &format!("container_memory_usage_bytes{{{L}}} 16384"));
        has(&text, &format!("container_memory_swap{{{L}}} 1024"));
        has(&text, &format!("container_oom_events_total{{{L}}} 5"));
        has(
            &text,
            &format!(r#"container_fs_writes_bytes_total{{device="8:16",{L}}} 314773504"#),
        );
        has(
            &text,
            &format!(r#"container_fs_reads_bytes_total{{device="/dev/vda",{L}}} 4096"#),
        );
        has(&text, &format!("container_processes{{{L}}} 1"));
    }

    /// Hybrid (v1 controllers, an empty cgroup2 beside them): read from the v1 side, CFQ blkio files.
    #[test]
    fn cgroup_hybrid_fixture() {
        let text = exposition(&fixture::Tree::hybrid());
        has(
            &text,
            &format!(r#"container_cpu_usage_seconds_total{{cpu="total",{L}}} 2"#),
        );
        has(
            &text,
            &format!("container_memory_usage_bytes{{{L}}} 131072"),
        );
        has(
            &text,
            &format!(r#"container_fs_reads_bytes_total{{device="/dev/sda",{L}}} 512"#),
        );
    }

    #[test]
    fn unlimited_memory_is_a_zero_limit() {
        assert_eq!(spec_limit(UNLIMITED), 0);
        assert_eq!(spec_limit(9_223_372_036_854_771_712), 0);
        assert_eq!(spec_limit(64 << 20), 64 << 20);
    }
}
