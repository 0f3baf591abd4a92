//! What runs in a container and what it uses: `top` (the processes of its cgroup, shown as `ps -ef` shows them, or
//! through the host's `ps` for other `ps_args`, as dockerd does) and `stats` (Docker's statistics JSON from the
//! container's cgroup, through polis-host's cgroup readers, and its network namespace's /proc/net/dev).

use super::Core;
use super::error::{Error, Result};
use super::record::ContainerRecord;
use bollard_stubs::models::{
    ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage,
    ContainerMemoryStats, ContainerNetworkStats, ContainerPidsStats, ContainerStatsResponse,
    ContainerStorageStats, ContainerThrottlingData, ContainerTopResponse,
};
use polis_host::cgroup::{self, BlkioEntry, Cgroup, Stats, UNLIMITED};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Go's zero time, which dockerd sends for a sample it does not have.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

// ---------------------------------------------------------------------------------------------------------------
// top

/// The processes of a container: every pid in its cgroup and the cgroups below it, sorted.
fn container_pids(init: u32) -> Result<Vec<u32>> {
    let cg = cgroup::locate(init).map_err(|e| Error::failed("locate the container's cgroup", e))?;
    let dir = match &cg {
        Cgroup::V2(d) => Some(d.as_path()),
        Cgroup::V1(_) => [
            "pids",
            "devices",
            "freezer",
            "memory",
            "cpu",
            "name=systemd",
        ]
        .iter()
        .find_map(|c| cg.dir(c)),
    };
    let mut pids = BTreeSet::new();
    pids.insert(init);
    if let Some(dir) = dir {
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
            if let Ok(entries) = std::fs::read_dir(&d) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(e.path());
                    }
                }
            }
        }
    }
    Ok(pids.into_iter().collect())
}

/// The fields of /proc/PID/stat that `ps -ef` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub comm: String,
    pub ppid: u32,
    pub tty_nr: u64,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Since boot, in clock ticks.
    pub start_ticks: u64,
}

/// Parses /proc/PID/stat (the command name may hold spaces and parentheses: it ends at the last `)`).
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    let f: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // f[0] is the state, field 3 of the file.
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        pid,
        comm,
        ppid: field(4)? as u32,
        tty_nr: field(7)?,
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
    })
}

/// The terminal of a `tty_nr`, as ps names it: `pts/N`, `ttyN`, `ttySN`, or `?`.
pub fn tty_name(tty_nr: u64) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        5 if minor == 1 => "console".into(),
        5 if minor == 0 => "tty".into(),
        _ => "?".into(),
    }
}

/// CPU time as ps's TIME column: `HH:MM:SS`, with `D-` before it past a day.
pub fn cpu_time(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// ps's STIME: the time of day for a process started in the last 24 hours, the month and day within a year,
/// else the year.
pub fn start_time(
    start: chrono::DateTime<chrono::Local>,
    now: chrono::DateTime<chrono::Local>,
) -> String {
    let age = now.signed_duration_since(start).num_seconds();
    if age < 86400 {
        start.format("%H:%M").to_string()
    } else if age < 365 * 86400 {
        start.format("%b%d").to_string()
    } else {
        start.format("%Y").to_string()
    }
}

/// ps's C: the CPU used over the process's life, in percent, at most 99.
pub fn cpu_percent(cpu_ticks: u64, elapsed_ticks: u64) -> u64 {
    (cpu_ticks * 100)
        .checked_div(elapsed_ticks)
        .map_or(0, |c| c.min(99))
}

fn boot_time() -> i64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

fn uptime_ticks(hz: u64) -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .map(|s| (s * hz as f64) as u64)
        .unwrap_or(0)
}

/// One `ps -ef` row of a process, None when it is gone.
fn ps_ef_row(pid: u32, hz: u64, boot: i64, uptime: u64) -> Option<Vec<String>> {
    let dir = Path::new("/proc").join(pid.to_string());
    let stat = parse_proc_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
    let euid = std::fs::read_to_string(dir.join("status"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("Uid:")
                    .and_then(|v| v.split_whitespace().nth(1)?.parse::<u32>().ok())
            })
        })
        .unwrap_or(0);
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(euid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| euid.to_string());
    let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cmd = if args.is_empty() {
        format!("[{}]", stat.comm)
    } else {
        args.join(" ")
    };
    let started = chrono::DateTime::from_timestamp(boot + (stat.start_ticks / hz) as i64, 0)
        .unwrap_or_default()
        .with_timezone(&chrono::Local);
    Some(vec![
        user,
        stat.pid.to_string(),
        stat.ppid.to_string(),
        cpu_percent(stat.cpu_ticks, uptime.saturating_sub(stat.start_ticks)).to_string(),
        start_time(started, chrono::Local::now()),
        tty_name(stat.tty_nr),
        cpu_time(stat.cpu_ticks / hz),
        cmd,
    ])
}

/// dockerd's `parsePSOutput`: the titles from the first line, the rows whose PID is the container's (and the
/// thread lines, `-`, under them), their overhanging fields joined into the last column.
pub fn parse_ps_output(output: &str, pids: &[u32]) -> Result<ContainerTopResponse> {
    let mut lines = output.split('\n');
    let titles: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(String::from)
        .collect();
    let pid_index = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::Failed("Couldn't find PID field in ps output".into()))?;
    let mut processes = Vec::new();
    let mut previous_contained = false;
    let row = |fields: &[&str]| -> Vec<String> {
        let n = titles.len().saturating_sub(1).min(fields.len());
        let mut r: Vec<String> = fields[..n].iter().map(|s| s.to_string()).collect();
        r.push(fields[n..].join(" "));
        r
    };
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(field) = fields.get(pid_index) else {
            continue;
        };
        if *field == "-" {
            if previous_contained {
                processes.push(row(&fields));
            }
            continue;
        }
        let p: u32 = field
            .parse()
            .map_err(|e| Error::Failed(format!("Unexpected pid '{field}': {e}")))?;
        previous_contained = pids.contains(&p);
        if previous_contained {
            processes.push(row(&fields));
        }
    }
    Ok(ContainerTopResponse {
        titles: Some(titles),
        processes: Some(processes),
    })
}

fn top_of(pid: u32, ps_args: &str) -> Result<ContainerTopResponse> {
    let pids = container_pids(pid)?;
    let args: Vec<&str> = ps_args.split_whitespace().collect();
    if args.is_empty() || args == ["-ef"] {
        let (hz, boot) = (clock_ticks(), boot_time());
        let uptime = uptime_ticks(hz);
        let titles = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];
        return Ok(ContainerTopResponse {
            titles: Some(titles.iter().map(|t| t.to_string()).collect()),
            processes: Some(
                pids.iter()
                    .filter_map(|p| ps_ef_row(*p, hz, boot, uptime))
                    .collect(),
            ),
        });
    }
    // Other arguments: the host's ps, as dockerd runs it (with -q and the pids first, without them if ps refuses).
    let list = pids
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let run = |extra: &[&str]| {
        std::process::Command::new("ps")
            .args(&args)
            .args(extra)
            .stdin(std::process::Stdio::null())
            .output()
    };
    let output = match run(&["-q", &list]) {
        Ok(o) if o.status.success() => o,
        _ => match run(&[]) {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                return Err(Error::Failed(format!(
                    "Error running ps: {}: {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                )));
            }
            Err(e) => return Err(Error::failed("Error running ps", e)),
        },
    };
    parse_ps_output(&String::from_utf8_lossy(&output.stdout), &pids)
}

// ---------------------------------------------------------------------------------------------------------------
// stats

/// The host's CPU time (/proc/stat's `cpu` line, its first seven fields, in nanoseconds) and its online CPUs
/// (the `cpuN` lines), as dockerd reads them.
pub fn system_cpu(proc_stat: &str, hz: u64) -> (u64, u32) {
    let mut usage = 0;
    let mut cpus = 0;
    for line in proc_stat.lines() {
        let mut parts = line.split_whitespace();
        match parts.next() {
            Some("cpu") => {
                let ticks: u64 = parts.take(7).filter_map(|v| v.parse::<u64>().ok()).sum();
                usage = ticks.saturating_mul(1_000_000_000) / hz.max(1);
            }
            Some(k) if k.starts_with("cpu") => cpus += 1,
            _ => {}
        }
    }
    (usage, cpus)
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// /proc/net/dev's interfaces but `lo`, as Docker's per-interface network statistics.
pub fn parse_net_dev(text: &str) -> HashMap<String, ContainerNetworkStats> {
    let mut out = HashMap::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if v.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            ContainerNetworkStats {
                rx_bytes: Some(v[0]),
                rx_packets: Some(v[1]),
                rx_errors: Some(v[2]),
                rx_dropped: Some(v[3]),
                tx_bytes: Some(v[8]),
                tx_packets: Some(v[9]),
                tx_errors: Some(v[10]),
                tx_dropped: Some(v[11]),
                ..Default::default()
            },
        );
    }
    out
}

fn blkio_entries(entries: &[BlkioEntry]) -> Vec<ContainerBlkioStatEntry> {
    entries
        .iter()
        .map(|e| ContainerBlkioStatEntry {
            major: Some(e.major),
            minor: Some(e.minor),
            op: Some(e.op.clone()),
            value: Some(e.value),
        })
        .collect()
}

/// The CPU part of a sample.
fn cpu_stats(stats: &Stats, system: (u64, u32)) -> ContainerCpuStats {
    let cpu = stats.cpu.clone().unwrap_or_default();
    ContainerCpuStats {
        cpu_usage: Some(ContainerCpuUsage {
            total_usage: Some(cpu.usage.total_ns),
            percpu_usage: (!cpu.usage.per_cpu_ns.is_empty()).then(|| cpu.usage.per_cpu_ns.clone()),
            usage_in_kernelmode: Some(cpu.usage.system_ns),
            usage_in_usermode: Some(cpu.usage.user_ns),
        }),
        system_cpu_usage: Some(system.0),
        online_cpus: Some(system.1),
        throttling_data: Some(ContainerThrottlingData {
            periods: Some(cpu.throttling.periods),
            throttled_periods: Some(cpu.throttling.throttled_periods),
            throttled_time: Some(cpu.throttling.throttled_ns),
        }),
    }
}

/// Docker's statistics of a cgroup's values: `v1` keeps the fields only cgroup v1 has (max_usage, failcnt, the
/// blkio files besides the bytes).
pub fn docker_stats(
    stats: &Stats,
    v1: bool,
    system: (u64, u32),
    machine_memory: u64,
) -> ContainerStatsResponse {
    let memory = stats.memory.as_ref().map(|m| {
        let usage = m.usage.clone().unwrap_or_default();
        let mut limit = usage.limit;
        if machine_memory > 0 && (limit == UNLIMITED || limit > machine_memory) {
            limit = machine_memory;
        }
        ContainerMemoryStats {
            usage: Some(usage.usage),
            max_usage: v1.then_some(usage.max_usage),
            stats: m
                .stat
                .as_ref()
                .map(|s| s.iter().map(|(k, v)| (k.clone(), *v)).collect()),
            failcnt: v1.then_some(usage.failcnt),
            limit: Some(limit),
            ..Default::default()
        }
    });
    let blkio = stats.io.as_ref().map(|io| {
        if v1 {
            let b = &io.blkio;
            ContainerBlkioStats {
                io_service_bytes_recursive: Some(blkio_entries(&b.io_service_bytes_recursive)),
                io_serviced_recursive: Some(blkio_entries(&b.io_serviced_recursive)),
                io_queue_recursive: Some(blkio_entries(&b.io_queued_recursive)),
                io_service_time_recursive: Some(blkio_entries(&b.io_service_time_recursive)),
                io_wait_time_recursive: Some(blkio_entries(&b.io_wait_time_recursive)),
                io_merged_recursive: Some(blkio_entries(&b.io_merged_recursive)),
                io_time_recursive: Some(blkio_entries(&b.io_time_recursive)),
                sectors_recursive: Some(blkio_entries(&b.sectors_recursive)),
            }
        } else {
            // dockerd on cgroup v2: io.stat's bytes, lowercase operations.
            let mut entries = Vec::new();
            for d in &io.devices {
                for (op, value) in [("read", d.read_bytes), ("write", d.write_bytes)] {
                    entries.push(ContainerBlkioStatEntry {
                        major: Some(d.major),
                        minor: Some(d.minor),
                        op: Some(op.into()),
                        value: Some(value),
                    });
                }
            }
            ContainerBlkioStats {
                io_service_bytes_recursive: Some(entries),
                ..Default::default()
            }
        }
    });
    ContainerStatsResponse {
        pids_stats: Some(ContainerPidsStats {
            current: stats.pids.as_ref().map(|p| p.current),
            limit: stats
                .pids
                .as_ref()
                .and_then(|p| p.limit)
                .map(|l| if l == UNLIMITED { 0 } else { l }),
        }),
        blkio_stats: Some(blkio.unwrap_or_default()),
        num_procs: Some(0),
        storage_stats: Some(ContainerStorageStats::default()),
        cpu_stats: Some(cpu_stats(stats, system)),
        memory_stats: Some(memory.unwrap_or_default()),
        ..Default::default()
    }
}

/// Samples one running container, each sample carrying the previous one's CPU as `precpu_stats` (dockerd's
/// `getStatJSON`).
pub struct Sampler {
    id: String,
    name: String,
    pid: u32,
    host_network: bool,
    cgroup: Option<Cgroup>,
    previous: Option<(String, ContainerCpuStats)>,
}

impl Sampler {
    pub fn new(record: &ContainerRecord) -> Sampler {
        Sampler {
            id: record.id.clone(),
            name: format!("/{}", record.name),
            pid: record.state.pid as u32,
            host_network: record.host_config.network_mode.as_deref() == Some("host"),
            cgroup: None,
            previous: None,
        }
    }

    /// dockerd's answer for a container that is not running: its name and ID, the rest zero.
    pub fn empty(record: &ContainerRecord) -> ContainerStatsResponse {
        let zero_cpu = ContainerCpuStats {
            cpu_usage: Some(ContainerCpuUsage {
                total_usage: Some(0),
                usage_in_kernelmode: Some(0),
                usage_in_usermode: Some(0),
                ..Default::default()
            }),
            throttling_data: Some(ContainerThrottlingData {
                periods: Some(0),
                throttled_periods: Some(0),
                throttled_time: Some(0),
            }),
            ..Default::default()
        };
        ContainerStatsResponse {
            id: Some(record.id.clone()),
            name: Some(format!("/{}", record.name)),
            read: Some(ZERO_TIME.into()),
            preread: Some(ZERO_TIME.into()),
            pids_stats: Some(Default::default()),
            blkio_stats: Some(Default::default()),
            num_procs: Some(0),
            storage_stats: Some(Default::default()),
            cpu_stats: Some(zero_cpu.clone()),
            precpu_stats: Some(zero_cpu),
            memory_stats: Some(Default::default()),
            ..Default::default()
        }
    }

    /// One sample (blocking: it reads the cgroup's files).
    pub fn sample(&mut self) -> Result<ContainerStatsResponse> {
        if self.cgroup.is_none() {
            self.cgroup = Some(
                cgroup::locate(self.pid)
                    .map_err(|e| Error::failed("locate the container's cgroup", e))?,
            );
        }
        let cg = self.cgroup.as_ref().expect("located above");
        let stats =
            cgroup::read(cg).map_err(|e| Error::failed("read the container's cgroup", e))?;
        let read = super::logs::now();
        let hz = clock_ticks();
        let system = system_cpu(
            &std::fs::read_to_string("/proc/stat").unwrap_or_default(),
            hz,
        );
        let mut out = docker_stats(&stats, matches!(cg, Cgroup::V1(_)), system, host_memory());
        out.id = Some(self.id.clone());
        out.name = Some(self.name.clone());
        if !self.host_network
            && let Ok(text) = std::fs::read_to_string(format!("/proc/{}/net/dev", self.pid))
        {
            let nets = parse_net_dev(&text);
            if !nets.is_empty() {
                out.networks = Some(nets);
            }
        }
        let (preread, precpu) = self.previous.take().unwrap_or_else(|| {
            (
                ZERO_TIME.to_string(),
                ContainerCpuStats {
                    cpu_usage: Some(ContainerCpuUsage {
                        total_usage: Some(0),
                        usage_in_kernelmode: Some(0),
                        usage_in_usermode: Some(0),
                        ..Default::default()
                    }),
                    throttling_data: Some(ContainerThrottlingData {
                        periods: Some(0),
                        throttled_periods: Some(0),
                        throttled_time: Some(0),
                    }),
                    ..Default::default()
                },
            )
        });
        out.preread = Some(preread);
        out.precpu_stats = Some(precpu);
        out.read = Some(read.clone());
        self.previous = Some((read, out.cpu_stats.clone().unwrap_or_default()));
        Ok(out)
    }
}

/// dockerd's collection interval: one sample a second while streaming.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One sample, read on a blocking thread; None when that thread failed.
async fn sample_blocking(sampler: Sampler) -> Option<(Sampler, Result<ContainerStatsResponse>)> {
    tokio::task::spawn_blocking(move || {
        let mut sampler = sampler;
        let r = sampler.sample();
        (sampler, r)
    })
    .await
    .ok()
}

impl Core {
    /// Whether a container's record says it is running (or paused) now.
    fn still_live(&self, id: &str) -> bool {
        self.db
            .get(id)
            .ok()
            .flatten()
            .is_some_and(|r| r.state.status.is_live())
    }

    /// One sample of a running container (`stats?stream=false`, gRPC Stats without `stream`): with `precpu`, the
    /// second of two a second apart, so that its `precpu_stats` is the first's (dockerd's answer unless
    /// `one-shot`). A container that stopped meanwhile is a conflict ("not running").
    pub async fn stats_sample(
        &self,
        record: &ContainerRecord,
        precpu: bool,
    ) -> Result<ContainerStatsResponse> {
        let failed = || Error::Failed("stats: the sampler failed".into());
        let (sampler, mut result) = sample_blocking(Sampler::new(record))
            .await
            .ok_or_else(failed)?;
        if precpu && result.is_ok() {
            tokio::time::sleep(INTERVAL).await;
            result = sample_blocking(sampler).await.ok_or_else(failed)?.1;
        }
        result.map_err(|e| {
            if self
                .db
                .get(&record.id)
                .ok()
                .flatten()
                .is_some_and(|r| !r.state.status.is_live())
            {
                Error::Conflict(format!("Container {} is not running", record.id))
            } else {
                e
            }
        })
    }

    /// Samples of a running container, the first at once and then one every [`INTERVAL`], until it stops or its
    /// cgroup cannot be read (`stats?stream=true`, gRPC Stats with `stream`). Dropping the stream stops sampling.
    pub fn stats_stream(
        self: &Arc<Self>,
        record: &ContainerRecord,
    ) -> impl futures_util::Stream<Item = ContainerStatsResponse> + Send + 'static {
        let id = record.id.clone();
        let state = (self.clone(), Sampler::new(record), true);
        futures_util::stream::unfold(state, move |(core, sampler, first)| {
            let id = id.clone();
            async move {
                if !first {
                    tokio::time::sleep(INTERVAL).await;
                }
                if !core.still_live(&id) {
                    return None;
                }
                let (sampler, result) = sample_blocking(sampler).await?;
                match result {
                    Ok(stats) => Some((stats, (core, sampler, false))),
                    Err(e) => {
                        tracing::debug!(container = id, error = %e, "stats");
                        None
                    }
                }
            }
        })
    }

    /// `GET /containers/{id}/top?ps_args=`.
    pub async fn top(&self, reference: &str, ps_args: &str) -> Result<ContainerTopResponse> {
        let (record, _, _) = self.running(reference)?;
        let pid = record.state.pid as u32;
        let ps_args = ps_args.to_string();
        tokio::task::spawn_blocking(move || top_of(pid, &ps_args))
            .await
            .map_err(|e| Error::failed("background task", e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polis_host::cgroup::{Blkio, Cpu, CpuUsage, Io, IoDevice, Memory, MemoryCounter, Pids};

    #[test]
    fn proc_stat_parses_with_odd_command_names() {
        let text = "42 (my (odd) cmd) S 1 42 42 34816 42 4194560 100 0 0 0 250 50 0 0 20 0 1 0 12345 1000 100";
        let s = parse_proc_stat(text).unwrap();
        assert_eq!(s.pid, 42);
        assert_eq!(s.comm, "my (odd) cmd");
        assert_eq!(s.ppid, 1);
        assert_eq!(s.tty_nr, 34816);
        assert_eq!(s.cpu_ticks, 300);
        assert_eq!(s.start_ticks, 12345);
        assert_eq!(tty_name(34816), "pts/0");
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name(4 << 8 | 1), "tty1");
    }

    #[test]
    fn ps_columns_format_as_procps_formats_them() {
        assert_eq!(cpu_time(0), "00:00:00");
        assert_eq!(cpu_time(3723), "01:02:03");
        assert_eq!(cpu_time(90061), "1-01:01:01");
        assert_eq!(cpu_percent(50, 100), 50);
        assert_eq!(cpu_percent(500, 100), 99);
        assert_eq!(cpu_percent(5, 0), 0);
        use chrono::TimeZone;
        let now = chrono::Local
            .with_ymd_and_hms(2026, 6, 10, 12, 0, 0)
            .unwrap();
        let t = |y, m, d, h, min| chrono::Local.with_ymd_and_hms(y, m, d, h, min, 0).unwrap();
        assert_eq!(start_time(t(2026, 6, 10, 9, 5), now), "09:05");
        assert_eq!(start_time(t(2026, 1, 5, 9, 5), now), "Jan05");
        assert_eq!(start_time(t(2024, 1, 5, 9, 5), now), "2024");
    }

    #[test]
    fn ps_output_keeps_the_containers_rows() {
        let out = "UID PID PPID C STIME TTY TIME CMD\n\
                   root 1 0 0 10:00 ? 00:00:01 /sbin/init splash\n\
                   root 42 1 0 10:01 ? 00:00:00 sleep 100\n\
                   root - - 0 - - 00:00:00 -\n\
                   root 43 1 0 10:01 ? 00:00:00 other\n";
        let top = parse_ps_output(out, &[42]).unwrap();
        assert_eq!(top.titles.unwrap().len(), 8);
        let p = top.processes.unwrap();
        assert_eq!(p.len(), 2, "the row and its thread line");
        assert_eq!(p[0][7], "sleep 100");
        assert!(parse_ps_output("USER COMMAND\nroot x\n", &[1]).is_err());
    }

    #[test]
    fn system_cpu_is_read_as_dockerd_reads_it() {
        let text = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\ncpu1 50 0 50 350 50 0 0 0 0 0\nintr 1\n";
        assert_eq!(system_cpu(text, 100), (10_000_000_000, 2));
    }

    #[test]
    fn network_statistics_leave_out_loopback() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n  eth0: 2000 20 1 2 0 0 0 0 3000 30 3 4 0 0 0 0\n";
        let nets = parse_net_dev(text);
        assert_eq!(nets.len(), 1);
        let e = &nets["eth0"];
        assert_eq!(
            (e.rx_bytes, e.rx_dropped, e.tx_bytes, e.tx_errors),
            (Some(2000), Some(2), Some(3000), Some(3))
        );
    }

    #[test]
    fn cgroup_values_become_dockers_statistics() {
        let stats = Stats {
            pids: Some(Pids {
                current: 3,
                limit: Some(UNLIMITED),
            }),
            cpu: Some(Cpu {
                usage: CpuUsage {
                    total_ns: 900,
                    user_ns: 600,
                    system_ns: 300,
                    per_cpu_ns: vec![400, 500],
                },
                ..Default::default()
            }),
            memory: Some(Memory {
                usage: Some(MemoryCounter {
                    usage: 4096,
                    limit: UNLIMITED,
                    max_usage: 8192,
                    failcnt: 1,
                }),
                stat: Some([("cache".to_string(), 10u64)].into_iter().collect()),
                ..Default::default()
            }),
            io: Some(Io {
                devices: vec![IoDevice {
                    major: 8,
                    minor: 0,
                    read_bytes: 5,
                    write_bytes: 6,
                    ..Default::default()
                }],
                blkio: Blkio::default(),
                psi: None,
            }),
            hugetlb: Vec::new(),
        };
        let v1 = docker_stats(&stats, true, (1000, 2), 1 << 30);
        let m = v1.memory_stats.unwrap();
        assert_eq!(
            (m.usage, m.limit, m.max_usage, m.failcnt),
            (Some(4096), Some(1 << 30), Some(8192), Some(1))
        );
        assert_eq!(m.stats.unwrap()["cache"], 10);
        assert_eq!(v1.pids_stats.unwrap().limit, Some(0));
        let cpu = v1.cpu_stats.unwrap();
        assert_eq!(cpu.cpu_usage.unwrap().percpu_usage, Some(vec![400, 500]));
        assert_eq!(
            (cpu.system_cpu_usage, cpu.online_cpus),
            (Some(1000), Some(2))
        );
        let v2 = docker_stats(&stats, false, (1000, 2), 1 << 30);
        let m = v2.memory_stats.unwrap();
        assert_eq!((m.max_usage, m.failcnt), (None, None));
        let b = v2.blkio_stats.unwrap();
        let e = b.io_service_bytes_recursive.unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].op.as_deref(), e[0].value), (Some("read"), Some(5)));
        assert!(b.io_serviced_recursive.is_none());
    }
}
