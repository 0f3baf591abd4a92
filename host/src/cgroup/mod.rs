//! cgroups: finding a process's cgroup on cgroup v1, v2 and hybrid hosts, and reading its statistics (CPU,
//! memory with the working set, pids, I/O, huge pages, OOM events, pressure) into plain values.
//!
//! - `locate`: /proc/PID/cgroup and the mount table to the cgroup's directories;
//! - `v1`, `v2`: the readers of each version's files;
//! - `parse`: the file formats (flat-keyed, nested-keyed, single values), pure functions over text;
//! - `stats`: the values read, the same types for both versions.
//!
//! A controller that is not mounted, or a file the kernel does not provide, is left out of the result; only a file
//! that exists and cannot be read, or that a reader cannot parse, is an error.

mod error;
mod files;
pub mod locate;
pub mod parse;
mod stats;
pub mod v1;
pub mod v2;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixture;

use std::path::PathBuf;

pub use error::{Error, Result};
pub use locate::{Cgroup, Layout};
pub use stats::*;

/// Where the cgroup code looks for the host: /proc and /sys/fs/cgroup, or a fixture tree's stand-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// /proc: PID/cgroup, self/mountinfo and partitions are read from it.
    pub proc: PathBuf,
    /// Where the cgroup file systems are mounted; cgroup2 here makes the host unified.
    pub cgroup_root: PathBuf,
}

impl Paths {
    /// The host's own paths.
    pub fn host() -> Paths {
        Paths {
            proc: PathBuf::from("/proc"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }

    /// The cgroup of process `pid`, from `PROC/PID/cgroup` and the mount table of this process's mount namespace
    /// (`PROC/self/mountinfo`).
    pub fn locate(&self, pid: u32) -> Result<Cgroup> {
        let proc_cgroup = self.proc.join(pid.to_string()).join("cgroup");
        let text = std::fs::read_to_string(&proc_cgroup)
            .map_err(|source| Error::io("read", &proc_cgroup, source))?;
        let mountinfo = self.proc.join("self/mountinfo");
        let mounts = std::fs::read_to_string(&mountinfo)
            .map_err(|source| Error::io("read", &mountinfo, source))?;
        locate::resolve(
            &proc_cgroup,
            &locate::parse_proc_cgroup(&text),
            &crate::mountinfo::parse(&mounts),
            &self.cgroup_root,
        )
    }

    /// The statistics of `cgroup` (v1 names block devices from `PROC/partitions`).
    pub fn read(&self, cgroup: &Cgroup) -> Result<Stats> {
        self.read_with(cgroup, Detail::Full)
    }

    /// The statistics of `cgroup`, as much of them as `detail` asks for.
    pub fn read_with(&self, cgroup: &Cgroup, detail: Detail) -> Result<Stats> {
        match cgroup {
            Cgroup::V1(dirs) => v1::read_with(dirs, &self.proc.join("partitions"), detail),
            Cgroup::V2(dir) => v2::read_with(dir, detail),
        }
    }
}

/// The cgroup of process `pid` on this host.
pub fn locate(pid: u32) -> Result<Cgroup> {
    Paths::host().locate(pid)
}

/// The statistics of a cgroup on this host.
pub fn read(cgroup: &Cgroup) -> Result<Stats> {
    Paths::host().read(cgroup)
}

/// The statistics of a cgroup on this host, as much of them as `detail` asks for.
pub fn read_with(cgroup: &Cgroup, detail: Detail) -> Result<Stats> {
    Paths::host().read_with(cgroup, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo;

    /// Reads this test process's own cgroup on the host.
    #[test]
    fn reads_this_process() {
        let cgroup = locate(std::process::id()).expect("locate this process's cgroup");
        let stats = read(&cgroup).expect("read its statistics");
        let mounts = mountinfo::read(None).unwrap();
        match (&cgroup, locate::layout(&mounts, &Paths::host().cgroup_root)) {
            (Cgroup::V1(dirs), Layout::Legacy | Layout::Hybrid) => {
                if dirs
                    .get("cpuacct")
                    .is_some_and(|d| d.join("cpuacct.usage").exists())
                {
                    let cpu = stats.cpu.as_ref().expect("cpu");
                    assert!(cpu.usage.total_ns > 0);
                    assert!(!cpu.usage.per_cpu_ns.is_empty());
                }
                if dirs
                    .get("memory")
                    .is_some_and(|d| d.join("memory.usage_in_bytes").exists())
                {
                    let memory = stats.memory.as_ref().expect("memory");
                    let usage = memory.usage.as_ref().expect("memory usage");
                    assert!(usage.usage > 0 && usage.limit > 0);
                    assert!(memory.working_set <= usage.usage);
                    assert!(memory.stat.as_ref().is_some_and(|s| !s.is_empty()));
                }
            }
            (Cgroup::V2(_), Layout::Unified) => {
                assert!(stats.cpu.as_ref().is_some_and(|c| c.usage.total_ns > 0));
            }
            (cgroup, layout) => panic!("{cgroup:?} on a {layout:?} host"),
        }
    }

    /// A summary read has what a full one has of CPU, memory usage and OOM counts, I/O per device and pids, and
    /// leaves out swap and kernel memory counters, huge pages and pressure.
    #[test]
    fn a_summary_read_is_a_subset() {
        for tree in [fixture::Tree::v1(), fixture::Tree::v2()] {
            let paths = tree.paths();
            let cgroup = paths.locate(fixture::PID).unwrap();
            let full = paths.read(&cgroup).unwrap();
            let summary = paths.read_with(&cgroup, Detail::Summary).unwrap();
            assert_eq!(
                summary.cpu.as_ref().map(|c| &c.usage),
                full.cpu.as_ref().map(|c| &c.usage)
            );
            assert_eq!(summary.pids, full.pids);
            let (fm, sm) = (
                full.memory.clone().unwrap(),
                summary.memory.clone().unwrap(),
            );
            assert_eq!(
                (sm.working_set, sm.rss, sm.cache),
                (fm.working_set, fm.rss, fm.cache)
            );
            assert_eq!(
                sm.usage.as_ref().map(|u| u.usage),
                fm.usage.as_ref().map(|u| u.usage)
            );
            assert_eq!(sm.oom_control, fm.oom_control);
            assert_eq!(sm.events, fm.events);
            assert!(sm.kernel.is_none() && sm.psi.is_none());
            assert!(summary.hugetlb.is_empty() && !full.hugetlb.is_empty());
            let devices = |s: &Stats| {
                s.io.as_ref().map(|io| {
                    io.devices
                        .iter()
                        .map(|d| (d.major, d.minor, d.read_bytes))
                        .collect::<Vec<_>>()
                })
            };
            assert_eq!(devices(&summary), devices(&full));
        }
    }

    /// The hybrid fixture end to end: locate, then read, as the shim and polisd do.
    #[test]
    fn locate_then_read_a_hybrid_tree() {
        let tree = fixture::Tree::hybrid();
        let paths = tree.paths();
        let cgroup = paths.locate(fixture::PID).unwrap();
        let stats = paths.read(&cgroup).unwrap();
        assert_eq!(stats.pids.as_ref().map(|p| p.current), Some(3));
        assert!(stats.cpu.is_some() && stats.memory.is_some() && stats.io.is_some());
        assert!(
            stats.hugetlb.is_empty(),
            "no v1 hierarchy mounts hugetlb on this host"
        );
        // The blkio entries are named from the tree's own /proc/partitions.
        let io = stats.io.unwrap();
        assert_eq!(io.blkio.io_serviced_recursive[0].device, "/dev/vda");
    }
}
