//! The cgroup v2 reader: one directory with every enabled controller's files, read as containerd's `cgroup2`
//! package (`Manager.Stat`) reads them.

use std::collections::BTreeMap;
use std::path::Path;

use super::error::Result;
use super::files;
use super::parse::{self, flat_keyed, nested_keyed};
use super::stats::{
    self, Cpu, CpuUsage, Detail, Hugetlb, Io, IoDevice, Memory, MemoryCounter, MemoryEvents, Pids,
    Psi, PsiData, Stats, Throttling,
};

const NANOS_PER_MICRO: u64 = 1000;

/// The statistics of the cgroup directory `dir`.
pub fn read(dir: &Path) -> Result<Stats> {
    read_with(dir, Detail::Full)
}

/// [`read`], of as much as `detail` asks for.
pub fn read_with(dir: &Path, detail: Detail) -> Result<Stats> {
    let full = detail == Detail::Full;
    let pressure = |file: &str| -> Result<Option<Psi>> {
        Ok(if full {
            files::read(dir, file)?.map(|text| psi(&text))
        } else {
            None
        })
    };
    let pids_current = files::read_u64(dir, "pids.current")?;
    let pids_max = files::read_u64(dir, "pids.max")?;
    let pids = (pids_current.is_some() || pids_max.is_some()).then(|| Pids {
        current: pids_current.unwrap_or_default(),
        limit: pids_max,
    });

    let cpu_psi = pressure("cpu.pressure")?;
    let cpu = files::read(dir, "cpu.stat")?.map(|text| {
        let (usage, throttling) = cpu_stat(&text);
        Cpu {
            usage,
            throttling,
            psi: cpu_psi,
        }
    });

    let mut memory = memory(dir, full)?;
    if let Some(text) = files::read(dir, "memory.events")? {
        memory.get_or_insert_with(Memory::default).events = Some(memory_events(&text));
    }

    let io_stat = files::read(dir, "io.stat")?;
    let io_psi = pressure("io.pressure")?;
    let io = (io_stat.is_some() || io_psi.is_some()).then(|| Io {
        devices: io_stat.as_deref().map(io_stat_devices).unwrap_or_default(),
        blkio: Default::default(),
        psi: io_psi,
    });

    Ok(Stats {
        pids,
        cpu,
        memory,
        io,
        hugetlb: if full { hugetlb(dir)? } else { Vec::new() },
    })
}

/// `cpu.stat`: usage and throttling, the microsecond counters in nanoseconds (the kernel derives each of them
/// from a 64-bit nanosecond count, so none it writes saturates here).
pub fn cpu_stat(text: &str) -> (CpuUsage, Throttling) {
    let mut usage = CpuUsage::default();
    let mut throttling = Throttling::default();
    for (key, value) in flat_keyed(text) {
        let nanos = value.saturating_mul(NANOS_PER_MICRO);
        match key {
            "usage_usec" => usage.total_ns = nanos,
            "user_usec" => usage.user_ns = nanos,
            "system_usec" => usage.system_ns = nanos,
            "nr_periods" => throttling.periods = value,
            "nr_throttled" => throttling.throttled_periods = value,
            "throttled_usec" => throttling.throttled_ns = nanos,
            "nr_bursts" => throttling.bursts = value,
            "burst_usec" => throttling.burst_ns = nanos,
            _ => {}
        }
    }
    (usage, throttling)
}

/// `memory.stat`, the usage and swap files and `memory.pressure`; `None` when there is neither memory.stat nor
/// any of the counter files.
/// `full`: also the peaks and the swap limit, and `memory.pressure`.
fn memory(dir: &Path, full: bool) -> Result<Option<Memory>> {
    let stat: Option<BTreeMap<String, u64>> =
        files::read(dir, "memory.stat")?.map(|text| parse::flat_keyed_map(&text));
    let usage = counter(dir, ["memory.current", "memory.max", "memory.peak"], full)?;
    let swap = counter(
        dir,
        ["memory.swap.current", "memory.swap.max", "memory.swap.peak"],
        full,
    )?;
    if stat.is_none() && usage.is_none() && swap.is_none() {
        return Ok(None);
    }
    let stat_value = |key: &str| stat.as_ref().and_then(|s| s.get(key).copied());
    let in_use = usage.as_ref().map_or(0, |u| u.usage);
    Ok(Some(Memory {
        working_set: stats::working_set(in_use, stat_value("inactive_file")),
        rss: stat_value("anon").unwrap_or_default(),
        cache: stat_value("file").unwrap_or_default(),
        swap_usage: swap.as_ref().map_or(0, |s| s.usage),
        usage,
        swap,
        kernel: None,
        kernel_tcp: None,
        stat,
        oom_control: None,
        events: None,
        psi: if full {
            files::read(dir, "memory.pressure")?.map(|text| psi(&text))
        } else {
            None
        },
    }))
}

/// The usage, limit and (with `full`) peak files of one counter, or `None` when none of them exists.
fn counter(
    dir: &Path,
    [usage, limit, peak]: [&str; 3],
    full: bool,
) -> Result<Option<MemoryCounter>> {
    let mut counter = MemoryCounter::default();
    let mut found = false;
    for (name, field) in [
        (usage, &mut counter.usage),
        (limit, &mut counter.limit),
        (peak, &mut counter.max_usage),
    ]
    .into_iter()
    .take(if full { 3 } else { 2 })
    {
        if let Some(value) = files::read_u64(dir, name)? {
            *field = value;
            found = true;
        }
    }
    Ok(found.then_some(counter))
}

/// `memory.events`.
pub fn memory_events(text: &str) -> MemoryEvents {
    let mut events = MemoryEvents::default();
    for (key, value) in flat_keyed(text) {
        let field = match key {
            "low" => &mut events.low,
            "high" => &mut events.high,
            "max" => &mut events.max,
            "oom" => &mut events.oom,
            "oom_kill" => &mut events.oom_kill,
            "oom_group_kill" => &mut events.oom_group_kill,
            _ => continue,
        };
        *field = value;
    }
    events
}

/// `io.stat`: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N` lines, parsed as containerd's
/// `readIoStats` does (unknown keys and values that are not numbers are ignored, lines without a device
/// skipped).
pub fn io_stat_devices(text: &str) -> Vec<IoDevice> {
    nested_keyed(text)
        .filter_map(|(device, fields)| {
            let (major, minor) = device.split_once(':')?;
            let mut entry = IoDevice {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                ..IoDevice::default()
            };
            for (key, value) in fields {
                let Ok(value) = value.parse() else {
                    continue;
                };
                match key {
                    "rbytes" => entry.read_bytes = value,
                    "wbytes" => entry.write_bytes = value,
                    "rios" => entry.reads = value,
                    "wios" => entry.writes = value,
                    _ => {}
                }
            }
            Some(entry)
        })
        .collect()
}

/// A pressure file (`cpu.pressure`, `memory.pressure`, `io.pressure`):
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and, except for CPU before 5.13, a `full ...` line.
pub fn psi(text: &str) -> Psi {
    let mut psi = Psi::default();
    for (kind, fields) in nested_keyed(text) {
        let target = match kind {
            "some" => &mut psi.some,
            "full" => &mut psi.full,
            _ => continue,
        };
        let mut data = PsiData::default();
        for (key, value) in fields {
            match key {
                "avg10" => data.avg10 = value.parse().unwrap_or_default(),
                "avg60" => data.avg60 = value.parse().unwrap_or_default(),
                "avg300" => data.avg300 = value.parse().unwrap_or_default(),
                "total" => data.total_us = value.parse().unwrap_or_default(),
                _ => {}
            }
        }
        *target = Some(data);
    }
    psi
}

fn hugetlb(dir: &Path) -> Result<Vec<Hugetlb>> {
    let names = files::names(dir)?;
    let sizes = parse::hugetlb_page_sizes(names.iter().map(String::as_str), "current");
    let mut stats = Vec::with_capacity(sizes.len());
    for size in sizes {
        let value = |file: &str| -> Result<u64> {
            Ok(files::read_u64(dir, &format!("hugetlb.{size}.{file}"))?.unwrap_or_default())
        };
        stats.push(Hugetlb {
            usage: value("current")?,
            limit: value("max")?,
            max_usage: 0,
            failcnt: 0,
            page_size: size,
        });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fixture::Tree;
    use crate::cgroup::stats::UNLIMITED;

    #[test]
    fn cpu_stat_in_nanoseconds() {
        let (usage, throttling) = cpu_stat(
            "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 5\nnr_throttled 2\n\
             throttled_usec 300\nnr_bursts 1\nburst_usec 9\n",
        );
        assert_eq!(
            (usage.total_ns, usage.user_ns, usage.system_ns),
            (1_000_000, 600_000, 400_000)
        );
        assert!(usage.per_cpu_ns.is_empty());
        assert_eq!(
            throttling,
            Throttling {
                periods: 5,
                throttled_periods: 2,
                throttled_ns: 300_000,
                bursts: 1,
                burst_ns: 9000,
            }
        );
    }

    #[test]
    fn events_io_and_psi() {
        let events = memory_events("low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\noom_group_kill 6\n");
        assert_eq!(
            events,
            MemoryEvents {
                low: 1,
                high: 2,
                max: 3,
                oom: 4,
                oom_kill: 5,
                oom_group_kill: 6
            }
        );

        let io = io_stat_devices(
            "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
             253:0 rbytes=4096 wbytes=x rios=1 wios=0\nbogus\n8:x rbytes=1\n",
        );
        assert_eq!(
            io,
            [
                IoDevice {
                    major: 8,
                    minor: 16,
                    read_bytes: 1_459_200,
                    write_bytes: 314_773_504,
                    reads: 192,
                    writes: 353
                },
                IoDevice {
                    major: 253,
                    minor: 0,
                    read_bytes: 4096,
                    write_bytes: 0,
                    reads: 1,
                    writes: 0
                },
            ]
        );

        let pressure = psi("some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=678\n");
        assert_eq!(
            pressure.some,
            Some(PsiData {
                avg10: 1.5,
                avg60: 0.25,
                avg300: 0.0,
                total_us: 12345
            })
        );
        assert_eq!(pressure.full.map(|d| d.total_us), Some(678));
        assert!(
            psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
                .full
                .is_none()
        );
    }

    /// Every value of the unified tree.
    #[test]
    fn reads_a_unified_tree() {
        let tree = Tree::v2();
        let stats = read(&tree.root().join("polis/abc")).unwrap();

        assert_eq!(
            stats.pids,
            Some(Pids {
                current: 3,
                limit: Some(UNLIMITED)
            })
        );

        let cpu = stats.cpu.unwrap();
        assert_eq!(
            (cpu.usage.total_ns, cpu.usage.user_ns, cpu.usage.system_ns),
            (1_000_000, 600_000, 400_000)
        );
        assert_eq!(
            (cpu.throttling.periods, cpu.throttling.throttled_ns),
            (5, 300_000)
        );
        let cpu_psi = cpu.psi.unwrap();
        assert_eq!(
            cpu_psi.some.map(|d| (d.avg10, d.avg60, d.total_us)),
            Some((1.5, 0.25, 12345))
        );
        assert_eq!(cpu_psi.full.map(|d| d.total_us), Some(678));

        let memory = stats.memory.unwrap();
        assert_eq!(
            memory.usage,
            Some(MemoryCounter {
                usage: 16384,
                limit: UNLIMITED,
                max_usage: 32768,
                failcnt: 0
            })
        );
        assert_eq!(
            memory.swap,
            Some(MemoryCounter {
                usage: 1024,
                limit: UNLIMITED,
                max_usage: 0,
                failcnt: 0
            }),
            "no memory.swap.peak: 0"
        );
        assert_eq!((memory.kernel, memory.kernel_tcp), (None, None));
        let stat = memory.stat.as_ref().unwrap();
        assert_eq!(stat.len(), 36);
        assert_eq!(
            (stat["kernel_stack"], stat["workingset_refault_file"]),
            (16384, 8)
        );
        assert_eq!(memory.working_set, 16384 - 3000);
        assert_eq!(
            (memory.rss, memory.cache, memory.swap_usage),
            (4096, 8192, 1024)
        );
        assert_eq!(memory.oom_control, None);
        assert_eq!(
            memory.events.as_ref().map(|e| (e.max, e.oom_kill)),
            Some((3, 5))
        );
        assert_eq!(memory.psi.and_then(|p| p.full).map(|d| d.total_us), Some(4));

        let io = stats.io.unwrap();
        assert_eq!(io.devices.len(), 2);
        assert_eq!((io.devices[1].major, io.devices[1].read_bytes), (253, 4096));
        assert!(io.blkio.io_serviced_recursive.is_empty());
        assert!(io.psi.is_some_and(|p| p.some.is_some() && p.full.is_none()));

        assert_eq!(
            stats.hugetlb,
            [
                Hugetlb {
                    page_size: "1GB".into(),
                    usage: 0,
                    limit: 0,
                    max_usage: 0,
                    failcnt: 0
                },
                Hugetlb {
                    page_size: "2MB".into(),
                    usage: 2_097_152,
                    limit: UNLIMITED,
                    max_usage: 0,
                    failcnt: 0
                },
            ]
        );
    }

    #[test]
    fn missing_files() {
        let tree = Tree::v2();
        // The root cgroup: no pids, memory or io files of its own, cpu.stat only.
        let root = tree.cgroup(
            "",
            &[("cpu.stat", "usage_usec 7\n"), ("cgroup.procs", "1\n")],
        );
        let stats = read(&root).unwrap();
        assert_eq!(
            stats
                .cpu
                .as_ref()
                .map(|c| (c.usage.total_ns, c.psi.is_none())),
            Some((7000, true))
        );
        assert_eq!((stats.pids, stats.memory, stats.io), (None, None, None));
        assert!(stats.hugetlb.is_empty());

        // Only some files of a section: the section is there, the rest reads 0.
        let partial = tree.cgroup(
            "partial",
            &[
                ("pids.max", "10\n"),
                ("memory.swap.current", "5\n"),
                ("io.pressure", ""),
            ],
        );
        let stats = read(&partial).unwrap();
        assert_eq!(
            stats.pids,
            Some(Pids {
                current: 0,
                limit: Some(10)
            })
        );
        let memory = stats.memory.unwrap();
        assert_eq!(
            (memory.usage, memory.stat.is_none(), memory.swap_usage),
            (None, true, 5)
        );
        assert_eq!(memory.working_set, 0);
        let io = stats.io.unwrap();
        assert!(io.devices.is_empty());
        assert_eq!(
            io.psi,
            Some(Psi::default()),
            "an empty pressure file: neither line"
        );

        // memory.events without the other memory files.
        let events = tree.cgroup("events", &[("memory.events", "oom_kill 1\n")]);
        let memory = read(&events).unwrap().memory.unwrap();
        assert_eq!(memory.events.map(|e| e.oom_kill), Some(1));
        assert_eq!((memory.usage, memory.stat, memory.psi), (None, None, None));
    }

    #[test]
    fn a_bad_number_is_an_error_naming_the_file() {
        let tree = Tree::v2();
        let dir = tree.cgroup("bad", &[("memory.max", "lots\n")]);
        let err = read(&dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "cgroup file {} holds \"lots\", which is not an unsigned integer",
                dir.join("memory.max").display()
            )
        );
    }
}
