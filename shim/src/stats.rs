//! Container cgroup metrics for the Task API `Stats` call.
//!
//! polis-host's `cgroup` module finds the cgroup of the container's init process and reads its files; this file
//! encodes what it read as the protobuf `Any` that containerd's Go runc shim returns, so `ctr task metrics` and
//! CRI `ContainerStats` decode them unchanged:
//!
//! - cgroup v1 and hybrid hosts: `io.containerd.cgroups.v1.Metrics`, filled like
//!   `github.com/containerd/cgroups/v3/cgroup1` (`Cgroup.Stat`);
//! - pure cgroup v2 (cgroup2 mounted at `/sys/fs/cgroup`): `io.containerd.cgroups.v2.Metrics`,
//!   filled like `github.com/containerd/cgroups/v3/cgroup2` (`Manager.Stat`).
//!
//! A controller that is not mounted, or a file the kernel does not provide, is left out of the message; only an
//! unreadable or malformed file that does exist is an error.

use std::collections::BTreeMap;

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{self, Message, MessageField};
use polis_host::cgroup::{self, Cgroup, Stats, UNLIMITED};

/// Why the metrics of a container could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Cgroup(#[from] cgroup::Error),
    #[error("encoding the {message} message failed")]
    Encode {
        message: String,
        #[source]
        source: protobuf::Error,
    },
}

/// Collects the cgroup metrics of the container whose init process is `pid` and returns them as the `Any` of the
/// Task API `StatsResponse`: `io.containerd.cgroups.v1.Metrics` on cgroup v1 and hybrid hosts,
/// `io.containerd.cgroups.v2.Metrics` on pure cgroup v2 hosts.
///
/// Reads `/proc/<pid>/cgroup`, `/proc/self/mountinfo` and the container's cgroup files.
pub fn container_metrics(pid: u32) -> Result<Any, StatsError> {
    let cgroup = cgroup::locate(pid)?;
    let stats = cgroup::read(&cgroup)?;
    match cgroup {
        Cgroup::V2(_) => encode_any(V2_METRICS, &v2_metrics(&stats)),
        Cgroup::V1(_) => encode_any(V1_METRICS, &v1_metrics(&stats)),
    }
}

/// The proto full names of the two Metrics messages, which containerd's typeurl uses as the type URL. Written out
/// rather than asked of protobuf's reflection, which would build every descriptor of the file in memory.
const V1_METRICS: &str = "io.containerd.cgroups.v1.Metrics";
const V2_METRICS: &str = "io.containerd.cgroups.v2.Metrics";

/// Wraps a message in an `Any` whose type URL is the bare proto full name, as containerd's
/// `typeurl.MarshalAny` does.
fn encode_any<M: Message>(type_url: &str, message: &M) -> Result<Any, StatsError> {
    let type_url = type_url.to_owned();
    let value = message
        .write_to_bytes()
        .map_err(|source| StatsError::Encode {
            message: type_url.clone(),
            source,
        })?;
    let mut any = Any::new();
    any.type_url = type_url;
    any.value = value;
    Ok(any)
}

// ---------------------------------------------------------------------------------------------
// cgroup v1: io.containerd.cgroups.v1.Metrics
// ---------------------------------------------------------------------------------------------

fn v1_metrics(stats: &Stats) -> v1::Metrics {
    let mut metrics = v1::Metrics::new();
    metrics.pids = stats.pids.as_ref().map(v1_pids).into();
    metrics.cpu = stats.cpu.as_ref().map(v1_cpu).into();
    if let Some(memory) = &stats.memory {
        // containerd sends the memory section when memory.stat or the usage files exist, and oom_control apart.
        if memory.stat.is_some() || memory.usage.is_some() {
            metrics.memory = MessageField::some(v1_memory(memory));
        }
        metrics.memory_oom_control = memory.oom_control.as_ref().map(v1_oom_control).into();
    }
    metrics.blkio = stats.io.as_ref().map(|io| v1_blkio(&io.blkio)).into();
    metrics.hugetlb = stats.hugetlb.iter().map(v1_hugetlb).collect();
    metrics
}

fn v1_pids(pids: &cgroup::Pids) -> v1::PidsStat {
    let mut stat = v1::PidsStat::new();
    stat.current = pids.current;
    // containerd's cgroup1 reports an unlimited (or missing) `pids.max` as 0.
    stat.limit = match pids.limit {
        Some(UNLIMITED) | None => 0,
        Some(limit) => limit,
    };
    stat
}

fn v1_cpu(cpu: &cgroup::Cpu) -> v1::CPUStat {
    let mut usage = v1::CPUUsage::new();
    usage.total = cpu.usage.total_ns;
    usage.user = cpu.usage.user_ns;
    usage.kernel = cpu.usage.system_ns;
    usage.per_cpu = cpu.usage.per_cpu_ns.clone();
    let mut throttling = v1::Throttle::new();
    throttling.periods = cpu.throttling.periods;
    throttling.throttled_periods = cpu.throttling.throttled_periods;
    throttling.throttled_time = cpu.throttling.throttled_ns;
    // containerd always sends both sub-messages once the CPU section exists.
    let mut stat = v1::CPUStat::new();
    stat.usage = MessageField::some(usage);
    stat.throttling = MessageField::some(throttling);
    stat
}

fn v1_memory_entry(counter: &cgroup::MemoryCounter) -> v1::MemoryEntry {
    let mut entry = v1::MemoryEntry::new();
    entry.usage = counter.usage;
    entry.max = counter.max_usage;
    entry.failcnt = counter.failcnt;
    entry.limit = counter.limit;
    entry
}

fn v1_memory(memory: &cgroup::Memory) -> v1::MemoryStat {
    let mut stat = memory.stat.as_ref().map(v1_memory_stat).unwrap_or_default();
    stat.usage = memory.usage.as_ref().map(v1_memory_entry).into();
    stat.swap = memory.swap.as_ref().map(v1_memory_entry).into();
    stat.kernel = memory.kernel.as_ref().map(v1_memory_entry).into();
    stat.kernel_tcp = memory.kernel_tcp.as_ref().map(v1_memory_entry).into();
    stat
}

/// The keys of a v1 `memory.stat` that containerd's message has a field for.
fn v1_memory_stat(keys: &BTreeMap<String, u64>) -> v1::MemoryStat {
    let mut stat = v1::MemoryStat::new();
    for (key, &value) in keys {
        let field = match key.as_str() {
            "cache" => &mut stat.cache,
            "rss" => &mut stat.rss,
            "rss_huge" => &mut stat.rss_huge,
            "mapped_file" => &mut stat.mapped_file,
            "dirty" => &mut stat.dirty,
            "writeback" => &mut stat.writeback,
            "pgpgin" => &mut stat.pg_pg_in,
            "pgpgout" => &mut stat.pg_pg_out,
            "pgfault" => &mut stat.pg_fault,
            "pgmajfault" => &mut stat.pg_maj_fault,
            "inactive_anon" => &mut stat.inactive_anon,
            "active_anon" => &mut stat.active_anon,
            "inactive_file" => &mut stat.inactive_file,
            "active_file" => &mut stat.active_file,
            "unevictable" => &mut stat.unevictable,
            "hierarchical_memory_limit" => &mut stat.hierarchical_memory_limit,
            "hierarchical_memsw_limit" => &mut stat.hierarchical_swap_limit,
            "total_cache" => &mut stat.total_cache,
            "total_rss" => &mut stat.total_rss,
            "total_rss_huge" => &mut stat.total_rss_huge,
            "total_mapped_file" => &mut stat.total_mapped_file,
            "total_dirty" => &mut stat.total_dirty,
            "total_writeback" => &mut stat.total_writeback,
            "total_pgpgin" => &mut stat.total_pg_pg_in,
            "total_pgpgout" => &mut stat.total_pg_pg_out,
            "total_pgfault" => &mut stat.total_pg_fault,
            "total_pgmajfault" => &mut stat.total_pg_maj_fault,
            "total_inactive_anon" => &mut stat.total_inactive_anon,
            "total_active_anon" => &mut stat.total_active_anon,
            "total_inactive_file" => &mut stat.total_inactive_file,
            "total_active_file" => &mut stat.total_active_file,
            "total_unevictable" => &mut stat.total_unevictable,
            _ => continue,
        };
        *field = value;
    }
    stat
}

fn v1_oom_control(control: &cgroup::OomControl) -> v1::MemoryOomControl {
    let mut message = v1::MemoryOomControl::new();
    message.oom_kill_disable = u64::from(control.oom_kill_disable);
    message.under_oom = u64::from(control.under_oom);
    message.oom_kill = control.oom_kill;
    message
}

fn v1_blkio(blkio: &cgroup::Blkio) -> v1::BlkIOStat {
    let entries = |entries: &[cgroup::BlkioEntry]| -> Vec<v1::BlkIOEntry> {
        entries
            .iter()
            .map(|e| {
                let mut entry = v1::BlkIOEntry::new();
                entry.device = e.device.clone();
                entry.major = e.major;
                entry.minor = e.minor;
                entry.op = e.op.clone();
                entry.value = e.value;
                entry
            })
            .collect()
    };
    let mut stat = v1::BlkIOStat::new();
    stat.io_service_bytes_recursive = entries(&blkio.io_service_bytes_recursive);
    stat.io_serviced_recursive = entries(&blkio.io_serviced_recursive);
    stat.io_queued_recursive = entries(&blkio.io_queued_recursive);
    stat.io_service_time_recursive = entries(&blkio.io_service_time_recursive);
    stat.io_wait_time_recursive = entries(&blkio.io_wait_time_recursive);
    stat.io_merged_recursive = entries(&blkio.io_merged_recursive);
    stat.io_time_recursive = entries(&blkio.io_time_recursive);
    stat.sectors_recursive = entries(&blkio.sectors_recursive);
    stat
}

fn v1_hugetlb(hugetlb: &cgroup::Hugetlb) -> v1::HugetlbStat {
    let mut stat = v1::HugetlbStat::new();
    stat.usage = hugetlb.usage;
    stat.max = hugetlb.max_usage;
    stat.failcnt = hugetlb.failcnt;
    stat.pagesize = hugetlb.page_size.clone();
    stat
}

// ---------------------------------------------------------------------------------------------
// cgroup v2: io.containerd.cgroups.v2.Metrics
// ---------------------------------------------------------------------------------------------

/// polis-host reads v2's microsecond counters as nanoseconds; the message carries microseconds.
const NANOS_PER_MICRO: u64 = 1000;

fn v2_metrics(stats: &Stats) -> v2::Metrics {
    let mut metrics = v2::Metrics::new();
    metrics.pids = stats
        .pids
        .as_ref()
        .map(|pids| {
            let mut stat = v2::PidsStat::new();
            stat.current = pids.current;
            // `max` is u64::MAX (math.MaxUint64 in containerd), a missing file 0.
            stat.limit = pids.limit.unwrap_or_default();
            stat
        })
        .into();
    metrics.cpu = stats.cpu.as_ref().map(v2_cpu).into();
    if let Some(memory) = &stats.memory {
        if memory.stat.is_some() || memory.usage.is_some() || memory.swap.is_some() {
            metrics.memory = MessageField::some(v2_memory(memory));
        }
        metrics.memory_events = memory.events.as_ref().map(v2_memory_events).into();
    }
    metrics.io = stats.io.as_ref().map(v2_io).into();
    metrics.hugetlb = stats
        .hugetlb
        .iter()
        .map(|hugetlb| {
            let mut stat = v2::HugeTlbStat::new();
            stat.current = hugetlb.usage;
            stat.max = hugetlb.limit;
            stat.pagesize = hugetlb.page_size.clone();
            stat
        })
        .collect();
    metrics
}

fn v2_cpu(cpu: &cgroup::Cpu) -> v2::CPUStat {
    let mut stat = v2::CPUStat::new();
    stat.usage_usec = cpu.usage.total_ns / NANOS_PER_MICRO;
    stat.user_usec = cpu.usage.user_ns / NANOS_PER_MICRO;
    stat.system_usec = cpu.usage.system_ns / NANOS_PER_MICRO;
    stat.nr_periods = cpu.throttling.periods;
    stat.nr_throttled = cpu.throttling.throttled_periods;
    stat.throttled_usec = cpu.throttling.throttled_ns / NANOS_PER_MICRO;
    stat.nr_bursts = cpu.throttling.bursts;
    stat.burst_usec = cpu.throttling.burst_ns / NANOS_PER_MICRO;
    stat.psi = cpu.psi.as_ref().map(v2_psi).into();
    stat
}

fn v2_memory(memory: &cgroup::Memory) -> v2::MemoryStat {
    let mut stat = memory.stat.as_ref().map(v2_memory_stat).unwrap_or_default();
    let usage = memory.usage.clone().unwrap_or_default();
    stat.usage = usage.usage;
    stat.usage_limit = usage.limit;
    stat.max_usage = usage.max_usage;
    let swap = memory.swap.clone().unwrap_or_default();
    stat.swap_usage = swap.usage;
    stat.swap_limit = swap.limit;
    stat.swap_max_usage = swap.max_usage;
    stat.psi = memory.psi.as_ref().map(v2_psi).into();
    stat
}

/// The keys of a v2 `memory.stat` that containerd's message has a field for.
fn v2_memory_stat(keys: &BTreeMap<String, u64>) -> v2::MemoryStat {
    let mut stat = v2::MemoryStat::new();
    for (key, &value) in keys {
        let field = match key.as_str() {
            "anon" => &mut stat.anon,
            "file" => &mut stat.file,
            "kernel_stack" => &mut stat.kernel_stack,
            "slab" => &mut stat.slab,
            "sock" => &mut stat.sock,
            "shmem" => &mut stat.shmem,
            "file_mapped" => &mut stat.file_mapped,
            "file_dirty" => &mut stat.file_dirty,
            "file_writeback" => &mut stat.file_writeback,
            "anon_thp" => &mut stat.anon_thp,
            "inactive_anon" => &mut stat.inactive_anon,
            "active_anon" => &mut stat.active_anon,
            "inactive_file" => &mut stat.inactive_file,
            "active_file" => &mut stat.active_file,
            "unevictable" => &mut stat.unevictable,
            "slab_reclaimable" => &mut stat.slab_reclaimable,
            "slab_unreclaimable" => &mut stat.slab_unreclaimable,
            "pgfault" => &mut stat.pgfault,
            "pgmajfault" => &mut stat.pgmajfault,
            "workingset_refault" => &mut stat.workingset_refault,
            "workingset_activate" => &mut stat.workingset_activate,
            "workingset_nodereclaim" => &mut stat.workingset_nodereclaim,
            "pgrefill" => &mut stat.pgrefill,
            "pgscan" => &mut stat.pgscan,
            "pgsteal" => &mut stat.pgsteal,
            "pgactivate" => &mut stat.pgactivate,
            "pgdeactivate" => &mut stat.pgdeactivate,
            "pglazyfree" => &mut stat.pglazyfree,
            "pglazyfreed" => &mut stat.pglazyfreed,
            "thp_fault_alloc" => &mut stat.thp_fault_alloc,
            "thp_collapse_alloc" => &mut stat.thp_collapse_alloc,
            _ => continue,
        };
        *field = value;
    }
    stat
}

fn v2_memory_events(events: &cgroup::MemoryEvents) -> v2::MemoryEvents {
    let mut message = v2::MemoryEvents::new();
    message.low = events.low;
    message.high = events.high;
    message.max = events.max;
    message.oom = events.oom;
    message.oom_kill = events.oom_kill;
    message.oom_group_kill = events.oom_group_kill;
    message
}

fn v2_io(io: &cgroup::Io) -> v2::IOStat {
    let mut stat = v2::IOStat::new();
    stat.usage = io
        .devices
        .iter()
        .map(|device| {
            let mut entry = v2::IOEntry::new();
            entry.major = device.major;
            entry.minor = device.minor;
            entry.rbytes = device.read_bytes;
            entry.wbytes = device.write_bytes;
            entry.rios = device.reads;
            entry.wios = device.writes;
            entry
        })
        .collect();
    stat.psi = io.psi.as_ref().map(v2_psi).into();
    stat
}

fn v2_psi(psi: &cgroup::Psi) -> v2::PSIStats {
    let data = |data: &cgroup::PsiData| {
        let mut message = v2::PSIData::new();
        message.avg10 = data.avg10;
        message.avg60 = data.avg60;
        message.avg300 = data.avg300;
        message.total = data.total_us;
        message
    };
    let mut stats = v2::PSIStats::new();
    stats.some = psi.some.as_ref().map(data).into();
    stats.full = psi.full.as_ref().map(data).into();
    stats
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use containerd_shim::protos::protobuf::MessageFull;
    use polis_host::cgroup::{
        Blkio, BlkioEntry, Cpu, CpuUsage, Hugetlb, Io, IoDevice, Layout, Memory, MemoryCounter,
        MemoryEvents, OomControl, Pids, Psi, PsiData, Throttling,
    };

    use super::*;

    #[test]
    fn type_urls_match_the_protobuf_descriptors() {
        assert_eq!(V1_METRICS, v1::Metrics::descriptor().full_name());
        assert_eq!(V2_METRICS, v2::Metrics::descriptor().full_name());
    }

    fn keys(text: &str) -> BTreeMap<String, u64> {
        cgroup::parse::flat_keyed_map(text)
    }

    #[test]
    fn v1_memory_stat_fields() {
        let stat = v1_memory_stat(&keys(
            "cache 4096\nrss 8192\nrss_huge 0\nshmem 0\nmapped_file 1024\ndirty 12\nwriteback 3\n\
             pgpgin 100\npgpgout 50\npgfault 700\npgmajfault 7\ninactive_anon 11\nactive_anon 22\n\
             inactive_file 33\nactive_file 44\nunevictable 5\n\
             hierarchical_memory_limit 9223372036854771712\n\
             hierarchical_memsw_limit 9223372036854771712\n\
             total_cache 40960\ntotal_rss 81920\ntotal_pgfault 7000\ntotal_unevictable 50\n\
             garbage line here\n",
        ));
        assert_eq!(stat.cache, 4096);
        assert_eq!(stat.rss, 8192);
        assert_eq!(stat.mapped_file, 1024);
        assert_eq!(stat.dirty, 12);
        assert_eq!(stat.writeback, 3);
        assert_eq!(stat.pg_pg_in, 100);
        assert_eq!(stat.pg_pg_out, 50);
        assert_eq!(stat.pg_fault, 700);
        assert_eq!(stat.pg_maj_fault, 7);
        assert_eq!(stat.inactive_anon, 11);
        assert_eq!(stat.active_anon, 22);
        assert_eq!(stat.inactive_file, 33);
        assert_eq!(stat.active_file, 44);
        assert_eq!(stat.unevictable, 5);
        assert_eq!(stat.hierarchical_memory_limit, 9_223_372_036_854_771_712);
        assert_eq!(stat.hierarchical_swap_limit, 9_223_372_036_854_771_712);
        assert_eq!(stat.total_cache, 40960);
        assert_eq!(stat.total_rss, 81920);
        assert_eq!(stat.total_pg_fault, 7000);
        assert_eq!(stat.total_unevictable, 50);
        assert!(stat.usage.is_none());
    }

    fn counter(usage: u64, limit: u64, max_usage: u64, failcnt: u64) -> Option<MemoryCounter> {
        Some(MemoryCounter {
            usage,
            limit,
            max_usage,
            failcnt,
        })
    }

    fn psi(total: u64, full: bool) -> Psi {
        let data = |total_us| PsiData {
            avg10: 1.5,
            avg60: 0.25,
            avg300: 0.0,
            total_us,
        };
        Psi {
            some: Some(data(total)),
            full: full.then(|| data(total + 1)),
        }
    }

    /// Every field of the v1 message, from a value that fills every field polis-host reads.
    #[test]
    fn v1_message_from_stats() {
        let entry = |op: &str, value| BlkioEntry {
            device: "/dev/vda".to_owned(),
            major: 253,
            minor: 0,
            op: op.to_owned(),
            value,
        };
        let stats = Stats {
            pids: Some(Pids {
                current: 3,
                limit: Some(100),
            }),
            cpu: Some(Cpu {
                usage: CpuUsage {
                    total_ns: 2_000_000_000,
                    user_ns: 1_500_000_000,
                    system_ns: 250_000_000,
                    per_cpu_ns: vec![1_500_000_000, 500_000_000],
                },
                throttling: Throttling {
                    periods: 10,
                    throttled_periods: 3,
                    throttled_ns: 123_456,
                    bursts: 1,
                    burst_ns: 500,
                },
                psi: None,
            }),
            memory: Some(Memory {
                usage: counter(131_072, 1 << 40, 262_144, 1),
                swap: counter(133_120, 1 << 41, 270_000, 2),
                kernel: counter(40960, 0, 50000, 3),
                kernel_tcp: counter(1, 2, 3, 4),
                stat: Some(keys("cache 4096\ntotal_rss 81920\nswap 0\n")),
                working_set: 7,
                rss: 8,
                cache: 9,
                swap_usage: 10,
                oom_control: Some(OomControl {
                    oom_kill_disable: true,
                    under_oom: false,
                    oom_kill: 2,
                }),
                events: None,
                psi: None,
            }),
            io: Some(Io {
                devices: vec![IoDevice::default()],
                blkio: Blkio {
                    io_service_bytes_recursive: vec![entry("Read", 1), entry("Write", 2)],
                    io_serviced_recursive: vec![entry("Read", 3)],
                    io_queued_recursive: vec![entry("Read", 4)],
                    io_service_time_recursive: vec![entry("Read", 5)],
                    io_wait_time_recursive: vec![entry("Read", 6)],
                    io_merged_recursive: vec![entry("Read", 7)],
                    io_time_recursive: vec![entry("", 8)],
                    sectors_recursive: vec![entry("", 9)],
                },
                psi: None,
            }),
            hugetlb: vec![Hugetlb {
                page_size: "2MB".to_owned(),
                usage: 4_194_304,
                limit: 1 << 50,
                max_usage: 8_388_608,
                failcnt: 1,
            }],
        };
        let m = v1_metrics(&stats);

        assert_eq!((m.pids.current, m.pids.limit), (3, 100));

        let usage = m.cpu.usage.as_ref().expect("cpu usage");
        assert_eq!(
            (usage.total, usage.user, usage.kernel),
            (2_000_000_000, 1_500_000_000, 250_000_000)
        );
        assert_eq!(usage.per_cpu, [1_500_000_000, 500_000_000]);
        let t = m.cpu.throttling.as_ref().expect("throttling");
        assert_eq!(
            (t.periods, t.throttled_periods, t.throttled_time),
            (10, 3, 123_456)
        );

        let memory = m.memory.as_ref().expect("memory");
        assert_eq!((memory.cache, memory.total_rss), (4096, 81920));
        let e = |e: &MessageField<v1::MemoryEntry>| {
            e.as_ref().map(|e| (e.usage, e.limit, e.max, e.failcnt))
        };
        assert_eq!(e(&memory.usage), Some((131_072, 1 << 40, 262_144, 1)));
        assert_eq!(e(&memory.swap), Some((133_120, 1 << 41, 270_000, 2)));
        assert_eq!(e(&memory.kernel), Some((40960, 0, 50000, 3)));
        assert_eq!(e(&memory.kernel_tcp), Some((1, 2, 3, 4)));
        let oom = m.memory_oom_control.as_ref().expect("oom_control");
        assert_eq!(
            (oom.oom_kill_disable, oom.under_oom, oom.oom_kill),
            (1, 0, 2)
        );

        let blkio = m.blkio.as_ref().expect("blkio");
        let values = |entries: &[v1::BlkIOEntry]| -> Vec<(String, u64, u64, String, u64)> {
            entries
                .iter()
                .map(|e| (e.device.clone(), e.major, e.minor, e.op.clone(), e.value))
                .collect()
        };
        let vda = |op: &str, v| ("/dev/vda".to_owned(), 253, 0, op.to_owned(), v);
        assert_eq!(
            values(&blkio.io_service_bytes_recursive),
            [vda("Read", 1), vda("Write", 2)]
        );
        assert_eq!(values(&blkio.io_serviced_recursive), [vda("Read", 3)]);
        assert_eq!(values(&blkio.io_queued_recursive), [vda("Read", 4)]);
        assert_eq!(values(&blkio.io_service_time_recursive), [vda("Read", 5)]);
        assert_eq!(values(&blkio.io_wait_time_recursive), [vda("Read", 6)]);
        assert_eq!(values(&blkio.io_merged_recursive), [vda("Read", 7)]);
        assert_eq!(values(&blkio.io_time_recursive), [vda("", 8)]);
        assert_eq!(values(&blkio.sectors_recursive), [vda("", 9)]);

        assert_eq!(m.hugetlb.len(), 1);
        let h = &m.hugetlb[0];
        assert_eq!(
            (h.pagesize.as_str(), h.usage, h.max, h.failcnt),
            ("2MB", 4_194_304, 8_388_608, 1)
        );
        assert!(m.rdma.is_none() && m.network.is_empty());
    }

    /// What is left out of the v1 message, and the values containerd reports differently from the files.
    #[test]
    fn v1_message_presence() {
        assert_eq!(v1_metrics(&Stats::default()), v1::Metrics::new());

        // An unlimited or missing pids.max is 0.
        for limit in [Some(UNLIMITED), None] {
            let stats = Stats {
                pids: Some(Pids { current: 1, limit }),
                ..Stats::default()
            };
            assert_eq!(v1_metrics(&stats).pids.limit, 0);
        }

        // A memory cgroup with oom_control only: no memory section, the oom_control one.
        let stats = Stats {
            memory: Some(Memory {
                oom_control: Some(OomControl::default()),
                ..Memory::default()
            }),
            ..Stats::default()
        };
        let m = v1_metrics(&stats);
        assert!(m.memory.is_none() && m.memory_oom_control.is_some());

        // memory.stat without the usage files: a memory section without usage.
        let stats = Stats {
            memory: Some(Memory {
                stat: Some(BTreeMap::new()),
                ..Memory::default()
            }),
            ..Stats::default()
        };
        let m = v1_metrics(&stats);
        let memory = m.memory.as_ref().expect("memory");
        assert!(memory.usage.is_none() && memory.swap.is_none());
        assert!(m.memory_oom_control.is_none());

        // A CPU section always has both sub-messages; an empty blkio section is still sent.
        let stats = Stats {
            cpu: Some(Cpu::default()),
            io: Some(Io::default()),
            ..Stats::default()
        };
        let m = v1_metrics(&stats);
        assert!(m.cpu.usage.is_some() && m.cpu.throttling.is_some());
        assert_eq!(m.blkio.as_ref(), Some(&v1::BlkIOStat::new()));
    }

    #[test]
    fn v2_memory_stat_fields() {
        let stat = v2_memory_stat(&keys(
            "anon 4096\nfile 8192\nkernel_stack 16384\nslab 100\nsock 0\nshmem 12\n\
             file_mapped 13\nfile_dirty 14\nfile_writeback 15\nanon_thp 0\ninactive_anon 1\n\
             active_anon 2\ninactive_file 3\nactive_file 4\nunevictable 5\n\
             slab_reclaimable 60\nslab_unreclaimable 40\npgfault 77\npgmajfault 7\n\
             workingset_refault_anon 1\nworkingset_refault 8\nthp_fault_alloc 9\n",
        ));
        assert_eq!((stat.anon, stat.file), (4096, 8192));
        assert_eq!(stat.kernel_stack, 16384);
        assert_eq!(
            (stat.file_mapped, stat.file_dirty, stat.file_writeback),
            (13, 14, 15)
        );
        assert_eq!((stat.slab_reclaimable, stat.slab_unreclaimable), (60, 40));
        assert_eq!((stat.pgfault, stat.pgmajfault), (77, 7));
        assert_eq!(stat.workingset_refault, 8);
        assert_eq!(stat.thp_fault_alloc, 9);
        assert_eq!(stat.usage, 0);
    }

    /// Every field of the v2 message, from a value that fills every field polis-host reads.
    #[test]
    fn v2_message_from_stats() {
        let stats = Stats {
            pids: Some(Pids {
                current: 3,
                limit: Some(UNLIMITED),
            }),
            cpu: Some(Cpu {
                usage: CpuUsage {
                    total_ns: 1_000_000,
                    user_ns: 600_000,
                    system_ns: 400_000,
                    per_cpu_ns: vec![],
                },
                throttling: Throttling {
                    periods: 5,
                    throttled_periods: 2,
                    throttled_ns: 300_000,
                    bursts: 1,
                    burst_ns: 9000,
                },
                psi: Some(psi(12345, true)),
            }),
            memory: Some(Memory {
                usage: counter(16384, UNLIMITED, 32768, 0),
                swap: counter(1024, 1 << 30, 2048, 0),
                stat: Some(keys("anon 4096\nfile 8192\n")),
                events: Some(MemoryEvents {
                    low: 1,
                    high: 2,
                    max: 3,
                    oom: 4,
                    oom_kill: 5,
                    oom_group_kill: 6,
                }),
                psi: Some(psi(5, false)),
                ..Memory::default()
            }),
            io: Some(Io {
                devices: vec![IoDevice {
                    major: 8,
                    minor: 16,
                    read_bytes: 1_459_200,
                    write_bytes: 314_773_504,
                    reads: 192,
                    writes: 353,
                }],
                blkio: Blkio::default(),
                psi: Some(psi(0, true)),
            }),
            hugetlb: vec![Hugetlb {
                page_size: "2MB".to_owned(),
                usage: 2_097_152,
                limit: UNLIMITED,
                max_usage: 0,
                failcnt: 0,
            }],
        };
        let m = v2_metrics(&stats);

        assert_eq!(
            m.pids.as_ref().map(|p| (p.current, p.limit)),
            Some((3, u64::MAX))
        );

        let cpu = m.cpu.as_ref().expect("cpu");
        assert_eq!(
            (cpu.usage_usec, cpu.user_usec, cpu.system_usec),
            (1000, 600, 400)
        );
        assert_eq!(
            (cpu.nr_periods, cpu.nr_throttled, cpu.throttled_usec),
            (5, 2, 300)
        );
        assert_eq!((cpu.nr_bursts, cpu.burst_usec), (1, 9));
        let some = cpu
            .psi
            .some
            .as_ref()
            .map(|d| (d.avg10, d.avg60, d.avg300, d.total));
        assert_eq!(some, Some((1.5, 0.25, 0.0, 12345)));
        assert_eq!(cpu.psi.full.as_ref().map(|d| d.total), Some(12346));

        let memory = m.memory.as_ref().expect("memory");
        assert_eq!((memory.anon, memory.file), (4096, 8192));
        assert_eq!(
            (memory.usage, memory.usage_limit, memory.max_usage),
            (16384, u64::MAX, 32768)
        );
        assert_eq!(
            (memory.swap_usage, memory.swap_limit, memory.swap_max_usage),
            (1024, 1 << 30, 2048)
        );
        assert_eq!(memory.psi.some.as_ref().map(|d| d.total), Some(5));
        assert!(memory.psi.full.is_none());
        let events = m.memory_events.as_ref().expect("memory events");
        assert_eq!(
            (
                events.low,
                events.high,
                events.max,
                events.oom,
                events.oom_kill,
                events.oom_group_kill
            ),
            (1, 2, 3, 4, 5, 6)
        );

        let io = m.io.as_ref().expect("io");
        let e = &io.usage[..];
        assert_eq!(e.len(), 1);
        assert_eq!(
            (
                e[0].major,
                e[0].minor,
                e[0].rbytes,
                e[0].wbytes,
                e[0].rios,
                e[0].wios
            ),
            (8, 16, 1_459_200, 314_773_504, 192, 353)
        );
        assert_eq!(io.psi.some.as_ref().map(|d| d.total), Some(0));

        assert_eq!(m.hugetlb.len(), 1);
        let h = &m.hugetlb[0];
        assert_eq!(
            (h.pagesize.as_str(), h.current, h.max),
            ("2MB", 2_097_152, u64::MAX)
        );
        assert!(m.rdma.is_none() && m.network.is_empty());
    }

    #[test]
    fn v2_message_presence() {
        assert_eq!(v2_metrics(&Stats::default()), v2::Metrics::new());

        // A missing pids.max is 0; memory.events alone sends no memory section.
        let stats = Stats {
            pids: Some(Pids {
                current: 1,
                limit: None,
            }),
            memory: Some(Memory {
                events: Some(MemoryEvents::default()),
                ..Memory::default()
            }),
            ..Stats::default()
        };
        let m = v2_metrics(&stats);
        assert_eq!(m.pids.as_ref().map(|p| p.limit), Some(0));
        assert!(m.memory.is_none() && m.memory_events.is_some());

        // Swap files alone make a memory section; no pressure file, no psi.
        let stats = Stats {
            memory: Some(Memory {
                swap: counter(5, 0, 0, 0),
                ..Memory::default()
            }),
            cpu: Some(Cpu::default()),
            ..Stats::default()
        };
        let m = v2_metrics(&stats);
        assert_eq!(
            m.memory.as_ref().map(|s| (s.usage, s.swap_usage)),
            Some((0, 5))
        );
        assert!(m.memory.psi.is_none() && m.cpu.psi.is_none());
    }

    #[test]
    fn reads_v2_metrics_from_a_directory() {
        let dir = tempfile::tempdir().expect("create scratch cgroup dir");
        let files = [
            ("pids.current", "3\n"),
            ("pids.max", "max\n"),
            ("cpu.stat", "usage_usec 42\nuser_usec 40\nsystem_usec 2\n"),
            ("memory.stat", "anon 4096\nfile 0\n"),
            ("memory.current", "8192\n"),
            ("memory.max", "max\n"),
            ("memory.events", "low 0\nhigh 0\nmax 1\noom 0\noom_kill 0\n"),
            ("io.stat", "8:0 rbytes=1 wbytes=2 rios=3 wios=4\n"),
            ("hugetlb.2MB.current", "0\n"),
            ("hugetlb.2MB.max", "max\n"),
        ];
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write scratch cgroup file");
        }
        let stats = cgroup::Paths::host()
            .read(&Cgroup::V2(dir.path().to_owned()))
            .expect("read v2 stats");
        let metrics = v2_metrics(&stats);

        assert_eq!(
            metrics.pids.as_ref().map(|p| (p.current, p.limit)),
            Some((3, u64::MAX))
        );
        assert_eq!(metrics.cpu.as_ref().map(|c| c.usage_usec), Some(42));
        assert!(metrics.cpu.as_ref().is_some_and(|c| c.psi.is_none()));
        let memory = metrics.memory.as_ref().expect("memory section");
        assert_eq!(
            (memory.usage, memory.usage_limit, memory.anon),
            (8192, u64::MAX, 4096)
        );
        assert_eq!(memory.swap_usage, 0, "no memory.swap.current: left at 0");
        assert_eq!(metrics.memory_events.as_ref().map(|e| e.max), Some(1));
        assert_eq!(metrics.io.as_ref().map(|io| io.usage.len()), Some(1));
        assert_eq!(metrics.hugetlb.len(), 1);
        assert_eq!(
            (metrics.hugetlb[0].pagesize.as_str(), metrics.hugetlb[0].max),
            ("2MB", u64::MAX)
        );
    }

    #[test]
    fn malformed_single_value_file_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("create scratch cgroup dir");
        std::fs::write(dir.path().join("pids.current"), "three\n")
            .expect("write scratch cgroup file");
        let result = cgroup::read(&Cgroup::V2(dir.path().to_owned())).map_err(StatsError::from);
        match result {
            Err(StatsError::Cgroup(cgroup::Error::NotANumber { path, content })) => {
                assert_eq!(path, dir.path().join("pids.current"));
                assert_eq!(content, "three");
            }
            other => panic!("expected NotANumber, got {other:?}"),
        }
    }

    #[test]
    fn missing_process_is_an_error_naming_the_pid() {
        // Pids are capped at 2^22 on Linux, so this one never exists.
        let err = container_metrics(u32::MAX).expect_err("no such process");
        assert!(matches!(err, StatsError::Cgroup(cgroup::Error::Io { .. })));
        assert!(
            err.to_string()
                .contains(&format!("/proc/{}/cgroup", u32::MAX))
        );
    }

    /// Reads this test process's own cgroup on the host and decodes the result like containerd.
    #[test]
    fn collects_metrics_of_this_process() {
        let mounts = polis_host::mountinfo::read(None).expect("read mountinfo");
        let any = container_metrics(std::process::id()).expect("collect metrics");
        let cgroup = cgroup::locate(std::process::id()).expect("locate this process's cgroup");
        match cgroup::locate::layout(&mounts, Path::new("/sys/fs/cgroup")) {
            Layout::Legacy | Layout::Hybrid => {
                assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
                let metrics = v1::Metrics::parse_from_bytes(&any.value).expect("decode v1 Metrics");
                if cgroup
                    .dir("cpuacct")
                    .is_some_and(|d| d.join("cpuacct.usage").exists())
                {
                    let usage = metrics.cpu.usage.as_ref().expect("cpu usage");
                    assert!(usage.total > 0, "cpu usage total is {}", usage.total);
                    assert!(!usage.per_cpu.is_empty());
                }
                if cgroup
                    .dir("memory")
                    .is_some_and(|d| d.join("memory.usage_in_bytes").exists())
                {
                    let usage = metrics.memory.usage.as_ref().expect("memory usage");
                    assert!(usage.usage > 0, "memory usage is {}", usage.usage);
                    assert!(usage.limit > 0);
                }
            }
            Layout::Unified => {
                assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
                let metrics = v2::Metrics::parse_from_bytes(&any.value).expect("decode v2 Metrics");
                assert!(metrics.cpu.as_ref().is_some_and(|c| c.usage_usec > 0));
            }
            Layout::Unmounted => panic!("this host has no cgroup filesystem mounted"),
        }
    }
}
