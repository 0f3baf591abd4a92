//! The cgroup v1 reader: one directory per controller, read as containerd's `cgroup1` package (`Cgroup.Stat`)
//! reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::Result;
use super::files;
use super::parse::{self, flat_keyed};
use super::stats::{
    self, Blkio, BlkioEntry, Cpu, CpuUsage, Detail, Hugetlb, Io, IoDevice, Memory, MemoryCounter,
    OomControl, Pids, Stats, Throttling,
};

/// `cpuacct.stat` counts in USER_HZ ticks, which the kernel ABI fixes at 100 per second on every architecture
/// (containerd's Go code hard-codes the same value).
const USER_HZ: u64 = 100;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// The statistics of the controller directories `dirs` (as [`super::locate`] finds them); block devices are
/// named from `partitions` (/proc/partitions; entries stay unnamed if it cannot be read).
pub fn read(dirs: &BTreeMap<String, PathBuf>, partitions: &Path) -> Result<Stats> {
    read_with(dirs, partitions, Detail::Full)
}

/// [`read`], of as much as `detail` asks for.
pub fn read_with(
    dirs: &BTreeMap<String, PathBuf>,
    partitions: &Path,
    detail: Detail,
) -> Result<Stats> {
    let dir = |controller: &str| dirs.get(controller).map(PathBuf::as_path);
    let full = detail == Detail::Full;
    Ok(Stats {
        pids: dir("pids").map(pids).transpose()?.flatten(),
        cpu: cpu(dir("cpu"), dir("cpuacct"))?,
        memory: dir("memory")
            .map(|d| memory(d, full))
            .transpose()?
            .flatten(),
        io: dir("blkio")
            .map(|d| blkio(d, full.then_some(partitions)))
            .transpose()?
            .flatten(),
        hugetlb: match dir("hugetlb") {
            Some(d) if full => hugetlb(d)?,
            _ => Vec::new(),
        },
    })
}

fn pids(dir: &Path) -> Result<Option<Pids>> {
    let current = files::read_u64(dir, "pids.current")?;
    let limit = files::read_u64(dir, "pids.max")?;
    if current.is_none() && limit.is_none() {
        return Ok(None);
    }
    Ok(Some(Pids {
        current: current.unwrap_or_default(),
        limit,
    }))
}

fn cpu(cpu_dir: Option<&Path>, cpuacct_dir: Option<&Path>) -> Result<Option<Cpu>> {
    if cpu_dir.is_none() && cpuacct_dir.is_none() {
        return Ok(None);
    }
    let mut usage = CpuUsage::default();
    if let Some(dir) = cpuacct_dir {
        usage.total_ns = files::read_u64(dir, "cpuacct.usage")?.unwrap_or_default();
        if let Some(text) = files::read(dir, "cpuacct.stat")? {
            (usage.user_ns, usage.system_ns) = cpuacct_stat(&text);
        }
        if let Some(text) = files::read(dir, "cpuacct.usage_percpu")? {
            usage.per_cpu_ns = usage_percpu(&text);
        }
    }
    let cpu_stat = cpu_dir
        .map(|dir| files::read(dir, "cpu.stat"))
        .transpose()?
        .flatten();
    Ok(Some(Cpu {
        usage,
        throttling: cpu_stat.as_deref().map(throttling).unwrap_or_default(),
        psi: None,
    }))
}

/// Throttling counters from `cpu.stat` (`throttled_time` and `burst_time` are nanoseconds).
pub fn throttling(text: &str) -> Throttling {
    let mut throttling = Throttling::default();
    for (key, value) in flat_keyed(text) {
        let field = match key {
            "nr_periods" => &mut throttling.periods,
            "nr_throttled" => &mut throttling.throttled_periods,
            "throttled_time" => &mut throttling.throttled_ns,
            "nr_bursts" => &mut throttling.bursts,
            "burst_time" => &mut throttling.burst_ns,
            _ => continue,
        };
        *field = value;
    }
    throttling
}

/// `(user, system)` CPU time in nanoseconds from `cpuacct.stat`, which counts USER_HZ ticks.
pub fn cpuacct_stat(text: &str) -> (u64, u64) {
    let ticks_to_nanos = |ticks: u64| {
        let nanos = u128::from(ticks) * u128::from(NANOS_PER_SECOND) / u128::from(USER_HZ);
        u64::try_from(nanos).unwrap_or(u64::MAX)
    };
    let (mut user, mut system) = (0, 0);
    for (key, value) in flat_keyed(text) {
        match key {
            "user" => user = ticks_to_nanos(value),
            "system" => system = ticks_to_nanos(value),
            _ => {}
        }
    }
    (user, system)
}

/// `cpuacct.usage_percpu`: one nanosecond counter per possible CPU, space-separated.
pub fn usage_percpu(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// `memory.oom_control`.
pub fn oom_control(text: &str) -> OomControl {
    let mut control = OomControl::default();
    for (key, value) in flat_keyed(text) {
        match key {
            "oom_kill_disable" => control.oom_kill_disable = value != 0,
            "under_oom" => control.under_oom = value != 0,
            "oom_kill" => control.oom_kill = value,
            _ => {}
        }
    }
    control
}

/// `memory.[MODULE.]{usage_in_bytes,limit_in_bytes,max_usage_in_bytes,failcnt}`, or `None` when none of them
/// exists (no swap accounting, no kmem).
fn counter(dir: &Path, module: &str) -> Result<Option<MemoryCounter>> {
    let prefix = if module.is_empty() {
        "memory.".to_owned()
    } else {
        format!("memory.{module}.")
    };
    let mut counter = MemoryCounter::default();
    let mut found = false;
    for (name, field) in [
        ("usage_in_bytes", &mut counter.usage),
        ("max_usage_in_bytes", &mut counter.max_usage),
        ("failcnt", &mut counter.failcnt),
        ("limit_in_bytes", &mut counter.limit),
    ] {
        if let Some(value) = files::read_u64(dir, &format!("{prefix}{name}"))? {
            *field = value;
            found = true;
        }
    }
    Ok(found.then_some(counter))
}

/// `full`: also the swap and kernel memory counters.
fn memory(dir: &Path, full: bool) -> Result<Option<Memory>> {
    let stat_text = files::read(dir, "memory.stat")?;
    let usage = counter(dir, "")?;
    let oom_control = files::read(dir, "memory.oom_control")?.map(|text| oom_control(&text));
    if stat_text.is_none() && usage.is_none() {
        // The swap and kernel counters are not read without the memory ones (as containerd does).
        return Ok(oom_control.is_some().then(|| Memory {
            oom_control,
            ..Memory::default()
        }));
    }
    let stat: Option<BTreeMap<String, u64>> = stat_text.map(|text| parse::flat_keyed_map(&text));
    let stat_value = |key: &str| stat.as_ref().and_then(|s| s.get(key).copied());
    let in_use = usage.as_ref().map_or(0, |u| u.usage);
    Ok(Some(Memory {
        working_set: stats::working_set(in_use, stat_value("total_inactive_file")),
        rss: stat_value("total_rss").unwrap_or_default(),
        cache: stat_value("total_cache").unwrap_or_default(),
        swap_usage: stat_value("total_swap").unwrap_or_default(),
        usage,
        swap: if full { counter(dir, "memsw")? } else { None },
        kernel: if full { counter(dir, "kmem")? } else { None },
        kernel_tcp: if full {
            counter(dir, "kmem.tcp")?
        } else {
            None
        },
        stat,
        oom_control,
        events: None,
        psi: None,
    }))
}

/// A blkio file (`8:0 Read 4096` lines, or `8:0 4096` in the files without operations, and a `Total N` line
/// that is skipped), parsed as containerd's `blkioController.readEntry` does. `devices` names the entries
/// (`/dev/sda`); malformed lines are skipped.
pub fn blkio_entries(text: &str, devices: &BTreeMap<(u64, u64), String>) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split([' ', ':']).filter(|f| !f.is_empty()).collect();
            let (major, minor, op, value) = match fields[..] {
                [major, minor, value] => (major, minor, "", value),
                [major, minor, op, value] => (major, minor, op, value),
                _ => return None,
            };
            let major = major.parse().ok()?;
            let minor = minor.parse().ok()?;
            Some(BlkioEntry {
                device: devices.get(&(major, minor)).cloned().unwrap_or_default(),
                major,
                minor,
                op: op.to_owned(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// Block I/O as containerd's cgroup1 reads it: the CFQ `*_recursive` files when the kernel has them and they
/// hold entries, otherwise `blkio.throttle.io_serviced` and `blkio.throttle.io_service_bytes`.
/// Devices are named from `partitions` when given.
fn blkio(dir: &Path, partitions: Option<&Path>) -> Result<Option<Io>> {
    let devices = match partitions.map(std::fs::read_to_string) {
        Some(Ok(text)) => parse::partitions(&text),
        // Device names are a nicety; entries without them are still complete.
        _ => BTreeMap::new(),
    };
    let mut blkio = Blkio::default();
    let mut found = false;

    if dir.join("blkio.io_serviced_recursive").exists() {
        let mut entries = 0;
        for (name, field) in [
            ("blkio.sectors_recursive", &mut blkio.sectors_recursive),
            (
                "blkio.io_service_bytes_recursive",
                &mut blkio.io_service_bytes_recursive,
            ),
            (
                "blkio.io_serviced_recursive",
                &mut blkio.io_serviced_recursive,
            ),
            ("blkio.io_queued_recursive", &mut blkio.io_queued_recursive),
            (
                "blkio.io_service_time_recursive",
                &mut blkio.io_service_time_recursive,
            ),
            (
                "blkio.io_wait_time_recursive",
                &mut blkio.io_wait_time_recursive,
            ),
            ("blkio.io_merged_recursive", &mut blkio.io_merged_recursive),
            ("blkio.time_recursive", &mut blkio.io_time_recursive),
        ] {
            if let Some(text) = files::read(dir, name)? {
                *field = blkio_entries(&text, &devices);
                entries += field.len();
                found = true;
            }
        }
        if entries > 0 {
            return Ok(Some(io(blkio)));
        }
    }

    for (name, field) in [
        (
            "blkio.throttle.io_serviced",
            &mut blkio.io_serviced_recursive,
        ),
        (
            "blkio.throttle.io_service_bytes",
            &mut blkio.io_service_bytes_recursive,
        ),
    ] {
        if let Some(text) = files::read(dir, name)? {
            *field = blkio_entries(&text, &devices);
            found = true;
        }
    }
    Ok(found.then(|| io(blkio)))
}

/// The per-device summary of the blkio files: bytes and operations read and written, in the order the devices
/// first appear.
fn io(blkio: Blkio) -> Io {
    let mut devices: Vec<IoDevice> = Vec::new();
    for (entries, bytes) in [
        (&blkio.io_service_bytes_recursive, true),
        (&blkio.io_serviced_recursive, false),
    ] {
        for entry in entries {
            let index = match devices
                .iter()
                .position(|d| (d.major, d.minor) == (entry.major, entry.minor))
            {
                Some(index) => index,
                None => {
                    devices.push(IoDevice {
                        major: entry.major,
                        minor: entry.minor,
                        ..IoDevice::default()
                    });
                    devices.len() - 1
                }
            };
            let device = &mut devices[index];
            let field = match (entry.op.as_str(), bytes) {
                ("Read", true) => &mut device.read_bytes,
                ("Write", true) => &mut device.write_bytes,
                ("Read", false) => &mut device.reads,
                ("Write", false) => &mut device.writes,
                _ => continue,
            };
            *field = entry.value;
        }
    }
    Io {
        devices,
        blkio,
        psi: None,
    }
}

fn hugetlb(dir: &Path) -> Result<Vec<Hugetlb>> {
    let names = files::names(dir)?;
    let sizes = parse::hugetlb_page_sizes(names.iter().map(String::as_str), "usage_in_bytes");
    let mut stats = Vec::with_capacity(sizes.len());
    for size in sizes {
        let value = |file: &str| -> Result<u64> {
            Ok(files::read_u64(dir, &format!("hugetlb.{size}.{file}"))?.unwrap_or_default())
        };
        stats.push(Hugetlb {
            usage: value("usage_in_bytes")?,
            max_usage: value("max_usage_in_bytes")?,
            failcnt: value("failcnt")?,
            limit: value("limit_in_bytes")?,
            page_size: size,
        });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fixture::{self, Tree};
    use crate::cgroup::stats::UNLIMITED;

    const HIGH: u64 = 9_223_372_036_854_771_712;

    #[test]
    fn cpu_files() {
        let t = throttling("nr_periods 10\nnr_throttled 3\nthrottled_time 123456\n");
        assert_eq!(
            (t.periods, t.throttled_periods, t.throttled_ns),
            (10, 3, 123_456)
        );
        // 150 ticks of 10 ms are 1.5 s.
        assert_eq!(
            cpuacct_stat("user 150\nsystem 25\n"),
            (1_500_000_000, 250_000_000)
        );
        assert_eq!(usage_percpu("123 0 456 789 \n"), [123, 0, 456, 789]);
        let oom = oom_control("oom_kill_disable 1\nunder_oom 0\noom_kill 4\n");
        assert_eq!(
            (oom.oom_kill_disable, oom.under_oom, oom.oom_kill),
            (true, false, 4)
        );
    }

    #[test]
    fn blkio_lines() {
        let devices = parse::partitions(fixture::PARTITIONS);
        let entries = blkio_entries(
            "253:0 Read 4096\n253:0 Write 8192\n253:0 Sync 0\n7:1 Read 1\nTotal 12289\n",
            &devices,
        );
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].device, "/dev/vda");
        let e = &entries[1];
        assert_eq!(
            (e.major, e.minor, e.op.as_str(), e.value),
            (253, 0, "Write", 8192)
        );
        assert_eq!(entries[3].device, "", "unknown devices have no name");
        // Files without operations, such as blkio.sectors_recursive.
        let sectors = blkio_entries("8:0 2048\n", &BTreeMap::new());
        assert_eq!((sectors[0].op.as_str(), sectors[0].value), ("", 2048));
    }

    /// Every value of the legacy tree.
    #[test]
    fn reads_a_legacy_tree() {
        let tree = Tree::v1();
        let stats = read(&tree.v1_dirs(), &tree.paths().proc.join("partitions")).unwrap();

        assert_eq!(
            stats.pids,
            Some(Pids {
                current: 3,
                limit: Some(UNLIMITED)
            })
        );

        let cpu = stats.cpu.unwrap();
        assert_eq!(
            cpu.usage,
            CpuUsage {
                total_ns: 2_000_000_000,
                user_ns: 1_500_000_000,
                system_ns: 250_000_000,
                per_cpu_ns: vec![1_500_000_000, 500_000_000],
            }
        );
        assert_eq!(
            cpu.throttling,
            Throttling {
                periods: 10,
                throttled_periods: 3,
                throttled_ns: 123_456,
                bursts: 1,
                burst_ns: 500,
            }
        );
        assert_eq!(cpu.psi, None);

        let memory = stats.memory.unwrap();
        let counter = |usage, limit, max_usage, failcnt| {
            Some(MemoryCounter {
                usage,
                limit,
                max_usage,
                failcnt,
            })
        };
        assert_eq!(memory.usage, counter(131_072, HIGH, 262_144, 1));
        assert_eq!(memory.swap, counter(133_120, HIGH, 270_000, 0));
        assert_eq!(
            memory.kernel,
            counter(40960, 0, 50000, 0),
            "no kmem.limit_in_bytes: 0"
        );
        assert_eq!(memory.kernel_tcp, counter(0, HIGH, 4096, 0));
        let stat = memory.stat.as_ref().unwrap();
        assert_eq!(stat.len(), 36);
        assert_eq!((stat["cache"], stat["total_pgmajfault"]), (4096, 70));
        assert_eq!(memory.working_set, 131_072 - 30_000);
        assert_eq!(
            (memory.rss, memory.cache, memory.swap_usage),
            (81920, 40960, 2048)
        );
        assert_eq!(
            memory.oom_control,
            Some(OomControl {
                oom_kill_disable: false,
                under_oom: false,
                oom_kill: 2
            })
        );
        assert_eq!((memory.events, memory.psi), (None, None));

        let io = stats.io.unwrap();
        let entry = |op: &str, value| BlkioEntry {
            device: "/dev/vda".to_owned(),
            major: 253,
            minor: 0,
            op: op.to_owned(),
            value,
        };
        let ops = ["Read", "Write", "Sync", "Async", "Discard", "Total"];
        let serviced: Vec<_> = ops
            .iter()
            .zip([10, 20, 30, 0, 0, 30])
            .map(|(o, v)| entry(o, v))
            .collect();
        let bytes: Vec<_> = ops
            .iter()
            .zip([40960, 81920, 122_880, 0, 0, 122_880])
            .map(|(o, v)| entry(o, v))
            .collect();
        assert_eq!(
            io.blkio,
            Blkio {
                io_serviced_recursive: serviced,
                io_service_bytes_recursive: bytes,
                ..Blkio::default()
            }
        );
        assert_eq!(
            io.devices,
            [IoDevice {
                major: 253,
                minor: 0,
                read_bytes: 40960,
                write_bytes: 81920,
                reads: 10,
                writes: 20
            }]
        );
        assert_eq!(io.psi, None);

        assert_eq!(
            stats.hugetlb,
            [
                Hugetlb {
                    page_size: "1GB".into(),
                    usage: 0,
                    limit: HIGH,
                    max_usage: 0,
                    failcnt: 0
                },
                Hugetlb {
                    page_size: "2MB".into(),
                    usage: 4_194_304,
                    limit: HIGH,
                    max_usage: 8_388_608,
                    failcnt: 1
                },
            ]
        );
    }

    /// The hybrid tree's v1 side: CFQ blkio files, no swap accounting, no kmem.tcp, no hugetlb.
    #[test]
    fn reads_a_hybrid_tree() {
        let tree = Tree::hybrid();
        let stats = read(&tree.v1_dirs(), &tree.paths().proc.join("partitions")).unwrap();
        assert_eq!(
            stats.pids,
            Some(Pids {
                current: 3,
                limit: Some(100)
            })
        );
        let memory = stats.memory.unwrap();
        assert_eq!((memory.swap, memory.kernel_tcp), (None, None));
        assert!(memory.kernel.is_some());

        let io = stats.io.unwrap();
        let blkio = &io.blkio;
        let values = |entries: &[BlkioEntry]| -> Vec<(String, u64, u64, String, u64)> {
            entries
                .iter()
                .map(|e| (e.device.clone(), e.major, e.minor, e.op.clone(), e.value))
                .collect()
        };
        let e = |d: &str, major, minor, op: &str, v| (d.to_owned(), major, minor, op.to_owned(), v);
        assert_eq!(
            values(&blkio.io_serviced_recursive),
            [
                e("/dev/vda", 253, 0, "Read", 10),
                e("/dev/vda", 253, 0, "Write", 20),
                e("/dev/sda", 8, 0, "Read", 1),
                e("/dev/sda", 8, 0, "Write", 0),
                e("", 7, 1, "Read", 2),
            ],
            "the CFQ file, not blkio.throttle.io_serviced"
        );
        assert_eq!(blkio.io_service_bytes_recursive.len(), 5);
        assert_eq!(
            values(&blkio.io_queued_recursive),
            [
                e("/dev/vda", 253, 0, "Read", 0),
                e("/dev/vda", 253, 0, "Write", 1)
            ]
        );
        assert_eq!(
            values(&blkio.io_service_time_recursive),
            [e("/dev/vda", 253, 0, "Read", 900)]
        );
        assert_eq!(
            values(&blkio.io_wait_time_recursive),
            [e("/dev/vda", 253, 0, "Read", 80)]
        );
        assert!(blkio.io_merged_recursive.is_empty());
        assert_eq!(
            values(&blkio.io_time_recursive),
            [e("/dev/vda", 253, 0, "", 77)]
        );
        assert_eq!(
            values(&blkio.sectors_recursive),
            [e("/dev/vda", 253, 0, "", 240), e("/dev/sda", 8, 0, "", 1)]
        );
        assert_eq!(
            io.devices,
            [
                IoDevice {
                    major: 253,
                    minor: 0,
                    read_bytes: 40960,
                    write_bytes: 81920,
                    reads: 10,
                    writes: 20
                },
                IoDevice {
                    major: 8,
                    minor: 0,
                    read_bytes: 512,
                    write_bytes: 0,
                    reads: 1,
                    writes: 0
                },
                IoDevice {
                    major: 7,
                    minor: 1,
                    read_bytes: 1024,
                    write_bytes: 0,
                    reads: 2,
                    writes: 0
                },
            ]
        );
        assert!(stats.hugetlb.is_empty());
    }

    #[test]
    fn empty_cfq_files_fall_back_to_the_throttle_files() {
        let tree = Tree::v1();
        let dir = tree.cgroup(
            "blkio/polis/abc",
            &[
                ("blkio.io_serviced_recursive", "Total 0\n"),
                ("blkio.sectors_recursive", ""),
            ],
        );
        let stats = read(
            &BTreeMap::from([("blkio".to_owned(), dir)]),
            Path::new("/nonexistent/partitions"),
        )
        .unwrap();
        let io = stats.io.unwrap();
        assert_eq!(
            io.blkio.io_serviced_recursive.len(),
            7 - 1,
            "the throttle file's, less its Total line"
        );
        assert_eq!(
            io.blkio.io_serviced_recursive[0].device, "",
            "no partitions: no names"
        );
        assert_eq!(io.blkio.io_service_bytes_recursive.len(), 6);
        assert!(stats.cpu.is_none() && stats.memory.is_none() && stats.pids.is_none());
    }

    #[test]
    fn missing_files_and_controllers() {
        let tree = Tree::v1();
        // A cpu hierarchy without cpuacct, and directories without files.
        let cpu = tree.cgroup("cpu-only", &[("cpu.stat", "nr_periods 1\n")]);
        let empty = tree.cgroup("empty", &[]);
        let oom_only = tree.cgroup("oom-only", &[("memory.oom_control", "under_oom 1\n")]);
        let dirs = BTreeMap::from([
            ("cpu".to_owned(), cpu),
            ("pids".to_owned(), empty.clone()),
            ("blkio".to_owned(), empty.clone()),
            ("hugetlb".to_owned(), empty),
            ("memory".to_owned(), oom_only),
        ]);
        let stats = read(&dirs, Path::new("/nonexistent")).unwrap();
        let cpu = stats.cpu.unwrap();
        assert_eq!(cpu.usage, CpuUsage::default());
        assert_eq!(cpu.throttling.periods, 1);
        assert_eq!((stats.pids, stats.io), (None, None));
        assert!(stats.hugetlb.is_empty());
        let memory = stats.memory.unwrap();
        assert_eq!(
            memory,
            Memory {
                oom_control: Some(OomControl {
                    under_oom: true,
                    ..OomControl::default()
                }),
                ..Memory::default()
            },
            "without memory.stat and usage files only oom_control is read"
        );
        assert_eq!(
            read(&BTreeMap::new(), Path::new("/nonexistent")).unwrap(),
            Stats::default()
        );
    }

    #[test]
    fn a_bad_number_is_an_error_naming_the_file() {
        let tree = Tree::v1();
        let dir = tree.cgroup("pids/polis/abc", &[("pids.current", "three\n")]);
        let err = read(
            &BTreeMap::from([("pids".to_owned(), dir.clone())]),
            Path::new("/x"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains(&dir.join("pids.current").display().to_string()),
            "{err}"
        );
    }
}
