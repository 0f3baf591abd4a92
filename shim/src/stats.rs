//! Container cgroup metrics for the Task API `Stats` call.
//!
//! Reads the cgroup files of a container's init process from the host and encodes them as the
//! protobuf `Any` that containerd's Go runc shim returns, so `ctr task metrics` and CRI
//! `ContainerStats` decode them unchanged:
//!
//! - cgroup v1 and hybrid hosts: `io.containerd.cgroups.v1.Metrics`, filled like
//!   `github.com/containerd/cgroups/v3/cgroup1` (`Cgroup.Stat`);
//! - pure cgroup v2 (cgroup2 mounted at `/sys/fs/cgroup`): `io.containerd.cgroups.v2.Metrics`,
//!   filled like `github.com/containerd/cgroups/v3/cgroup2` (`Manager.Stat`).
//!
//! A controller that is not mounted, or a file the kernel does not provide, is left out of the
//! message; only an unreadable or malformed file that does exist is an error.
//!
//! The parsing is split into pure functions over file contents (unit-tested below); the functions
//! named `read_*` touch the host's `/proc` and `/sys/fs/cgroup`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use containerd_shim::protos::cgroups::metrics as v1;
use containerd_shim::protos::cgroups_v2::metrics as v2;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{self, Message, MessageField};

/// The mount table of the shim's own mount namespace.
const MOUNTINFO_PATH: &str = "/proc/self/mountinfo";
/// Block devices known to the kernel, used to name blkio entries (as containerd does).
const PARTITIONS_PATH: &str = "/proc/partitions";
/// Where the cgroup filesystems live; cgroup2 mounted here means a pure cgroup v2 host.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// `cpuacct.stat` counts in USER_HZ ticks, which the kernel ABI fixes at 100 per second on every
/// architecture containerd supports (containerd's Go code hard-codes the same value).
const USER_HZ: u64 = 100;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Why the metrics of a container could not be collected.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("reading /proc/{pid}/cgroup failed for pid {pid}")]
    ReadProcCgroup {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("reading the mount table {path} failed")]
    ReadMountinfo {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no cgroup filesystem is mounted in this mount namespace (per {path})")]
    NoCgroupMount { path: PathBuf },
    #[error("pid {pid} has no cgroup v2 entry (\"0::/path\") in /proc/{pid}/cgroup")]
    NoUnifiedCgroup { pid: u32 },
    #[error("cgroup v2 path {cgroup_path} of pid {pid} lies under no mounted cgroup2 filesystem")]
    UnifiedCgroupNotMounted { pid: u32, cgroup_path: String },
    #[error("reading cgroup file {path} failed")]
    ReadCgroupFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("listing cgroup directory {path} failed")]
    ListCgroupDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup file {path} holds {content:?}, which is not an unsigned integer")]
    ParseCgroupFile { path: PathBuf, content: String },
    #[error("encoding the {message} message failed")]
    Encode {
        message: String,
        #[source]
        source: protobuf::Error,
    },
}

/// Collects the cgroup metrics of the container whose init process is `pid` and returns them as
/// the `Any` of the Task API `StatsResponse`: `io.containerd.cgroups.v1.Metrics` on cgroup v1 and
/// hybrid hosts, `io.containerd.cgroups.v2.Metrics` on pure cgroup v2 hosts.
///
/// Reads `/proc/<pid>/cgroup`, `/proc/self/mountinfo` and the container's cgroup files.
pub fn container_metrics(pid: u32) -> Result<Any, StatsError> {
    match locate_cgroup(pid)? {
        ContainerCgroup::V2(dir) => encode_any(V2_METRICS, &read_cgroup_v2_metrics(&dir)?),
        ContainerCgroup::V1(dirs) => encode_any(V1_METRICS, &read_cgroup_v1_metrics(&dirs)?),
    }
}

/// Where a process's cgroup is: one directory on cgroup v2, one per controller on v1 and hybrid hosts.
pub enum ContainerCgroup {
    V2(PathBuf),
    /// Controller name to directory.
    V1(BTreeMap<String, PathBuf>),
}

/// Finds the cgroup of `pid` from `/proc/<pid>/cgroup` and `/proc/self/mountinfo`.
pub fn locate_cgroup(pid: u32) -> Result<ContainerCgroup, StatsError> {
    let proc_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|source| StatsError::ReadProcCgroup { pid, source })?;
    let mountinfo =
        fs::read_to_string(MOUNTINFO_PATH).map_err(|source| StatsError::ReadMountinfo {
            path: PathBuf::from(MOUNTINFO_PATH),
            source,
        })?;
    let memberships = parse_proc_cgroup(&proc_cgroup);
    let mounts = parse_mountinfo(&mountinfo);

    match cgroup_layout(&mounts) {
        CgroupLayout::Unified => {
            let membership = memberships
                .iter()
                .find(|m| m.hierarchy_id == 0 && m.controllers.is_empty())
                .ok_or(StatsError::NoUnifiedCgroup { pid })?;
            let dir = resolve_v2_dir(&membership.path, &mounts).ok_or_else(|| {
                StatsError::UnifiedCgroupNotMounted {
                    pid,
                    cgroup_path: membership.path.clone(),
                }
            })?;
            Ok(ContainerCgroup::V2(dir))
        }
        CgroupLayout::Legacy => Ok(ContainerCgroup::V1(resolve_v1_dirs(&memberships, &mounts))),
        CgroupLayout::Unmounted => Err(StatsError::NoCgroupMount {
            path: PathBuf::from(MOUNTINFO_PATH),
        }),
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
// Locating the cgroup: /proc/<pid>/cgroup and /proc/self/mountinfo
// ---------------------------------------------------------------------------------------------

/// One line of `/proc/<pid>/cgroup`: `hierarchy-ID:controller-list:cgroup-path`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMembership {
    hierarchy_id: u32,
    /// Empty for the cgroup v2 line (`0::/path`); may hold `name=systemd` for named hierarchies.
    controllers: Vec<String>,
    path: String,
}

/// A cgroup or cgroup2 mount from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupMount {
    /// The path inside the hierarchy that is mounted (usually `/`).
    root: String,
    mount_point: PathBuf,
    kind: CgroupMountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CgroupMountKind {
    /// A v1 hierarchy and the controllers (or `name=...`) named in its super options.
    V1 {
        controllers: Vec<String>,
    },
    V2,
}

/// Which kind of metrics the host's cgroup setup calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CgroupLayout {
    /// cgroup2 at `/sys/fs/cgroup` (containerd's `cgroups.Unified`).
    Unified,
    /// v1 controllers, possibly with an extra cgroup2 hierarchy (legacy or hybrid).
    Legacy,
    Unmounted,
}

/// Parses `/proc/<pid>/cgroup`; malformed lines are skipped.
fn parse_proc_cgroup(text: &str) -> Vec<CgroupMembership> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let hierarchy_id = fields.next()?.trim().parse().ok()?;
            let controllers = fields
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            let path = fields.next()?.to_owned();
            Some(CgroupMembership {
                hierarchy_id,
                controllers,
                path,
            })
        })
        .collect()
}

/// Parses the cgroup and cgroup2 mounts out of a mountinfo text, in mount order.
///
/// Line format (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNT-POINT OPTIONS [OPTIONAL...] - FSTYPE
/// SOURCE SUPER-OPTIONS`.
fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let mut pre = before.split_whitespace();
            let root = unescape_mountinfo(pre.nth(3)?);
            let mount_point = PathBuf::from(unescape_mountinfo(pre.next()?));
            let mut post = after.split_whitespace();
            let fs_type = post.next()?;
            let super_options = post.nth(1).unwrap_or("");
            let kind = match fs_type {
                "cgroup2" => CgroupMountKind::V2,
                "cgroup" => CgroupMountKind::V1 {
                    controllers: super_options
                        .split(',')
                        .filter(|o| !o.is_empty() && *o != "rw" && *o != "ro")
                        .map(str::to_owned)
                        .collect(),
                },
                _ => return None,
            };
            Some(CgroupMount {
                root,
                mount_point,
                kind,
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space and so on).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decides between v1 and v2 metrics the way containerd's `cgroups.Mode()` does: cgroup2 mounted
/// at `/sys/fs/cgroup` is unified; anything with v1 hierarchies is legacy or hybrid.
fn cgroup_layout(mounts: &[CgroupMount]) -> CgroupLayout {
    // The last mount on a mount point is the visible one.
    let at_root = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new(CGROUP_ROOT));
    if at_root.is_some_and(|m| m.kind == CgroupMountKind::V2) {
        return CgroupLayout::Unified;
    }
    if mounts
        .iter()
        .any(|m| matches!(m.kind, CgroupMountKind::V1 { .. }))
    {
        CgroupLayout::Legacy
    } else if mounts.iter().any(|m| m.kind == CgroupMountKind::V2) {
        CgroupLayout::Unified
    } else {
        CgroupLayout::Unmounted
    }
}

/// `cgroup_path` relative to a mount's `root`, if the mount shows it.
fn relative_to_mount_root<'a>(cgroup_path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let rest = cgroup_path.strip_prefix(root)?;
    if !rest.is_empty() && !rest.starts_with('/') {
        // `/a/bc` is not under `/a/b`.
        return None;
    }
    let rest = rest.trim_start_matches('/');
    // A path that climbs out of the mount (cgroup namespaces show `/..`) is not visible here.
    if Path::new(rest)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return None;
    }
    Some(rest)
}

/// Maps each v1 controller of the process (`cpu`, `memory`, ..., `name=systemd`) to its cgroup
/// directory: the mount point of that controller's hierarchy joined with the cgroup path.
fn resolve_v1_dirs(
    memberships: &[CgroupMembership],
    mounts: &[CgroupMount],
) -> BTreeMap<String, PathBuf> {
    let mut dirs = BTreeMap::new();
    for membership in memberships {
        for controller in &membership.controllers {
            if dirs.contains_key(controller) {
                continue;
            }
            let dir = mounts.iter().find_map(|mount| match &mount.kind {
                CgroupMountKind::V1 { controllers } if controllers.contains(controller) => {
                    relative_to_mount_root(&membership.path, &mount.root)
                        .map(|rest| mount.mount_point.join(rest))
                }
                _ => None,
            });
            if let Some(dir) = dir {
                dirs.insert(controller.clone(), dir);
            }
        }
    }
    dirs
}

/// The cgroup v2 directory of `cgroup_path` (from the `0::` line): the cgroup2 mount that shows
/// it, preferring the one at `/sys/fs/cgroup`.
fn resolve_v2_dir(cgroup_path: &str, mounts: &[CgroupMount]) -> Option<PathBuf> {
    let mut candidates: Vec<&CgroupMount> = mounts
        .iter()
        .filter(|m| m.kind == CgroupMountKind::V2)
        .collect();
    candidates.sort_by_key(|m| m.mount_point != Path::new(CGROUP_ROOT));
    candidates.into_iter().find_map(|mount| {
        relative_to_mount_root(cgroup_path, &mount.root).map(|rest| mount.mount_point.join(rest))
    })
}

// ---------------------------------------------------------------------------------------------
// Parsing file contents (shared)
// ---------------------------------------------------------------------------------------------

/// `key value` lines as in memory.stat, cpu.stat, cpuacct.stat, memory.events; malformed lines
/// are skipped.
fn key_values(text: &str) -> impl Iterator<Item = (&str, u64)> {
    text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let key = fields.next()?;
        let value = fields.next()?.parse().ok()?;
        match fields.next() {
            None => Some((key, value)),
            Some(_) => None,
        }
    })
}

/// A single-number file; `max` reads as `max_value` (0 for v1 `pids.max`, `u64::MAX` for v2
/// limits, as containerd does). `None` when the content is not a number.
fn parse_u64_or_max(text: &str, max_value: u64) -> Option<u64> {
    match text.trim() {
        "max" => Some(max_value),
        number => number.parse().ok(),
    }
}

/// `/proc/partitions`: `major minor #blocks name` after a header; maps a device number to
/// `/dev/<name>`, first occurrence winning (as containerd's `getDevices`).
fn parse_partitions(text: &str) -> BTreeMap<(u64, u64), String> {
    let mut devices = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [major, minor, _, name] = fields[..] else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        devices
            .entry((major, minor))
            .or_insert_with(|| format!("/dev/{name}"));
    }
    devices
}

/// The page sizes for which a hugetlb directory listing has `hugetlb.<size>.<suffix>` files
/// (`usage_in_bytes` on v1, `current` on v2), sorted. `hugetlb.2MB.rsvd.*` files are not sizes.
fn hugetlb_page_sizes<'a>(
    file_names: impl IntoIterator<Item = &'a str>,
    suffix: &str,
) -> Vec<String> {
    let mut sizes: Vec<String> = file_names
        .into_iter()
        .filter_map(|name| {
            let size = name
                .strip_prefix("hugetlb.")?
                .strip_suffix(suffix)?
                .strip_suffix('.')?;
            (!size.is_empty() && !size.contains('.')).then(|| size.to_owned())
        })
        .collect();
    sizes.sort();
    sizes.dedup();
    sizes
}

// ---------------------------------------------------------------------------------------------
// Parsing file contents: cgroup v1
// ---------------------------------------------------------------------------------------------

/// `memory.stat` of a v1 memory cgroup; the usage entries are filled separately.
fn parse_memory_stat_v1(text: &str) -> v1::MemoryStat {
    let mut stat = v1::MemoryStat::new();
    for (key, value) in key_values(text) {
        let field = match key {
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

/// `memory.oom_control` of a v1 memory cgroup.
fn parse_memory_oom_control(text: &str) -> v1::MemoryOomControl {
    let mut control = v1::MemoryOomControl::new();
    for (key, value) in key_values(text) {
        match key {
            "oom_kill_disable" => control.oom_kill_disable = value,
            "under_oom" => control.under_oom = value,
            "oom_kill" => control.oom_kill = value,
            _ => {}
        }
    }
    control
}

/// Throttling counters from a v1 `cpu.stat`.
fn parse_cpu_stat_v1(text: &str) -> v1::Throttle {
    let mut throttle = v1::Throttle::new();
    for (key, value) in key_values(text) {
        match key {
            "nr_periods" => throttle.periods = value,
            "nr_throttled" => throttle.throttled_periods = value,
            "throttled_time" => throttle.throttled_time = value,
            _ => {}
        }
    }
    throttle
}

/// `(user, kernel)` CPU time in nanoseconds from `cpuacct.stat` (`user` and `system` in USER_HZ
/// ticks).
fn parse_cpuacct_stat(text: &str) -> (u64, u64) {
    let ticks_to_nanos = |ticks: u64| {
        let nanos = u128::from(ticks) * u128::from(NANOS_PER_SECOND) / u128::from(USER_HZ);
        u64::try_from(nanos).unwrap_or(u64::MAX)
    };
    let (mut user, mut kernel) = (0, 0);
    for (key, value) in key_values(text) {
        match key {
            "user" => user = ticks_to_nanos(value),
            "system" => kernel = ticks_to_nanos(value),
            _ => {}
        }
    }
    (user, kernel)
}

/// `cpuacct.usage_percpu`: one nanosecond counter per possible CPU, space-separated.
fn parse_cpuacct_usage_percpu(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// A blkio statistics file (`8:0 Read 4096` lines, or `8:0 4096` for op-less ones, and a
/// `Total N` line that is skipped), parsed as containerd's `blkioController.readEntry` does.
/// `devices` names the entries (`/dev/sda`); malformed lines are skipped.
fn parse_blkio_entries(text: &str, devices: &BTreeMap<(u64, u64), String>) -> Vec<v1::BlkIOEntry> {
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
            let mut entry = v1::BlkIOEntry::new();
            entry.device = devices.get(&(major, minor)).cloned().unwrap_or_default();
            entry.major = major;
            entry.minor = minor;
            entry.op = op.to_owned();
            entry.value = value.parse().ok()?;
            Some(entry)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Parsing file contents: cgroup v2
// ---------------------------------------------------------------------------------------------

/// v2 `cpu.stat` (microsecond counters and throttling); PSI is filled separately.
fn parse_cpu_stat_v2(text: &str) -> v2::CPUStat {
    let mut stat = v2::CPUStat::new();
    for (key, value) in key_values(text) {
        let field = match key {
            "usage_usec" => &mut stat.usage_usec,
            "user_usec" => &mut stat.user_usec,
            "system_usec" => &mut stat.system_usec,
            "nr_periods" => &mut stat.nr_periods,
            "nr_throttled" => &mut stat.nr_throttled,
            "throttled_usec" => &mut stat.throttled_usec,
            "nr_bursts" => &mut stat.nr_bursts,
            "burst_usec" => &mut stat.burst_usec,
            _ => continue,
        };
        *field = value;
    }
    stat
}

/// v2 `memory.stat`; usage, limits and PSI are filled separately.
fn parse_memory_stat_v2(text: &str) -> v2::MemoryStat {
    let mut stat = v2::MemoryStat::new();
    for (key, value) in key_values(text) {
        let field = match key {
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

/// v2 `memory.events`.
fn parse_memory_events(text: &str) -> v2::MemoryEvents {
    let mut events = v2::MemoryEvents::new();
    for (key, value) in key_values(text) {
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

/// v2 `io.stat`: `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N` lines, parsed as
/// containerd's `readIoStats` does (unknown or malformed keys are ignored).
fn parse_io_stat(text: &str) -> Vec<v2::IOEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (major, minor) = fields.next()?.split_once(':')?;
            let mut entry = v2::IOEntry::new();
            entry.major = major.parse().ok()?;
            entry.minor = minor.parse().ok()?;
            for field in fields {
                let Some((key, value)) = field.split_once('=') else {
                    continue;
                };
                let Ok(value) = value.parse() else {
                    continue;
                };
                match key {
                    "rbytes" => entry.rbytes = value,
                    "wbytes" => entry.wbytes = value,
                    "rios" => entry.rios = value,
                    "wios" => entry.wios = value,
                    _ => {}
                }
            }
            Some(entry)
        })
        .collect()
}

/// A pressure file (`cpu.pressure`, `memory.pressure`, `io.pressure`):
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and optionally a `full ...` line.
fn parse_psi(text: &str) -> v2::PSIStats {
    let mut stats = v2::PSIStats::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let target = match fields.next() {
            Some("some") => &mut stats.some,
            Some("full") => &mut stats.full,
            _ => continue,
        };
        let mut data = v2::PSIData::new();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            match key {
                "avg10" => data.avg10 = value.parse().unwrap_or_default(),
                "avg60" => data.avg60 = value.parse().unwrap_or_default(),
                "avg300" => data.avg300 = value.parse().unwrap_or_default(),
                "total" => data.total = value.parse().unwrap_or_default(),
                _ => {}
            }
        }
        *target = MessageField::some(data);
    }
    stats
}

// ---------------------------------------------------------------------------------------------
// Reading the host's cgroup files
// ---------------------------------------------------------------------------------------------

/// The content of `dir/name`, or `None` when the kernel does not provide that file.
fn read_cgroup_file(dir: &Path, name: &str) -> Result<Option<String>, StatsError> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StatsError::ReadCgroupFile { path, source }),
    }
}

/// A single-number cgroup file (`max` reads as `max_value`), or `None` when it does not exist.
fn read_cgroup_u64(dir: &Path, name: &str, max_value: u64) -> Result<Option<u64>, StatsError> {
    let Some(text) = read_cgroup_file(dir, name)? else {
        return Ok(None);
    };
    parse_u64_or_max(&text, max_value)
        .map(Some)
        .ok_or_else(|| StatsError::ParseCgroupFile {
            path: dir.join(name),
            content: text.trim().to_owned(),
        })
}

/// The names of the files in a cgroup directory (empty if the directory is gone).
fn read_cgroup_dir_names(dir: &Path) -> Result<Vec<String>, StatsError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StatsError::ListCgroupDir {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| StatsError::ListCgroupDir {
            path: dir.to_owned(),
            source,
        })?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// v1 metrics from the controller directories found by [`resolve_v1_dirs`].
fn read_cgroup_v1_metrics(dirs: &BTreeMap<String, PathBuf>) -> Result<v1::Metrics, StatsError> {
    let mut metrics = v1::Metrics::new();
    if let Some(dir) = dirs.get("pids") {
        metrics.pids = read_v1_pids(dir)?.into();
    }
    metrics.cpu = read_v1_cpu(dirs.get("cpu"), dirs.get("cpuacct"))?.into();
    if let Some(dir) = dirs.get("memory") {
        let (memory, oom_control) = read_v1_memory(dir)?;
        metrics.memory = memory.into();
        metrics.memory_oom_control = oom_control.into();
    }
    if let Some(dir) = dirs.get("blkio") {
        metrics.blkio = read_v1_blkio(dir)?.into();
    }
    if let Some(dir) = dirs.get("hugetlb") {
        metrics.hugetlb = read_v1_hugetlb(dir)?;
    }
    Ok(metrics)
}

fn read_v1_pids(dir: &Path) -> Result<Option<v1::PidsStat>, StatsError> {
    let current = read_cgroup_u64(dir, "pids.current", 0)?;
    // containerd's cgroup1 reports an unlimited `pids.max` as 0.
    let limit = read_cgroup_u64(dir, "pids.max", 0)?;
    if current.is_none() && limit.is_none() {
        return Ok(None);
    }
    let mut pids = v1::PidsStat::new();
    pids.current = current.unwrap_or_default();
    pids.limit = limit.unwrap_or_default();
    Ok(Some(pids))
}

fn read_v1_cpu(
    cpu_dir: Option<&PathBuf>,
    cpuacct_dir: Option<&PathBuf>,
) -> Result<Option<v1::CPUStat>, StatsError> {
    if cpu_dir.is_none() && cpuacct_dir.is_none() {
        return Ok(None);
    }
    let mut usage = v1::CPUUsage::new();
    if let Some(dir) = cpuacct_dir {
        usage.total = read_cgroup_u64(dir, "cpuacct.usage", 0)?.unwrap_or_default();
        if let Some(text) = read_cgroup_file(dir, "cpuacct.stat")? {
            (usage.user, usage.kernel) = parse_cpuacct_stat(&text);
        }
        if let Some(text) = read_cgroup_file(dir, "cpuacct.usage_percpu")? {
            usage.per_cpu = parse_cpuacct_usage_percpu(&text);
        }
    }
    let mut throttling = v1::Throttle::new();
    let cpu_stat = cpu_dir
        .map(|dir| read_cgroup_file(dir, "cpu.stat"))
        .transpose()?
        .flatten();
    if let Some(text) = cpu_stat {
        throttling = parse_cpu_stat_v1(&text);
    }
    // containerd always sends both sub-messages once the CPU section exists.
    let mut cpu = v1::CPUStat::new();
    cpu.usage = MessageField::some(usage);
    cpu.throttling = MessageField::some(throttling);
    Ok(Some(cpu))
}

/// A v1 `MemoryEntry` from `memory.[<module>.]{usage_in_bytes,max_usage_in_bytes,failcnt,
/// limit_in_bytes}`, or `None` when none of them exists (no swap accounting, no kmem).
fn read_v1_memory_entry(dir: &Path, module: &str) -> Result<Option<v1::MemoryEntry>, StatsError> {
    let prefix = if module.is_empty() {
        "memory.".to_owned()
    } else {
        format!("memory.{module}.")
    };
    let mut entry = v1::MemoryEntry::new();
    let mut found = false;
    for (name, field) in [
        ("usage_in_bytes", &mut entry.usage),
        ("max_usage_in_bytes", &mut entry.max),
        ("failcnt", &mut entry.failcnt),
        ("limit_in_bytes", &mut entry.limit),
    ] {
        if let Some(value) = read_cgroup_u64(dir, &format!("{prefix}{name}"), u64::MAX)? {
            *field = value;
            found = true;
        }
    }
    Ok(found.then_some(entry))
}

fn read_v1_memory(
    dir: &Path,
) -> Result<(Option<v1::MemoryStat>, Option<v1::MemoryOomControl>), StatsError> {
    let stat_text = read_cgroup_file(dir, "memory.stat")?;
    let usage = read_v1_memory_entry(dir, "")?;
    let oom_control =
        read_cgroup_file(dir, "memory.oom_control")?.map(|text| parse_memory_oom_control(&text));
    if stat_text.is_none() && usage.is_none() {
        return Ok((None, oom_control));
    }
    let mut memory = stat_text
        .map(|text| parse_memory_stat_v1(&text))
        .unwrap_or_default();
    memory.usage = usage.into();
    memory.swap = read_v1_memory_entry(dir, "memsw")?.into();
    memory.kernel = read_v1_memory_entry(dir, "kmem")?.into();
    memory.kernel_tcp = read_v1_memory_entry(dir, "kmem.tcp")?.into();
    Ok((Some(memory), oom_control))
}

/// Block I/O as containerd's cgroup1 reads it: the CFQ `*_recursive` files when the kernel has
/// them and they hold entries, otherwise `blkio.throttle.io_serviced` and
/// `blkio.throttle.io_service_bytes`.
fn read_v1_blkio(dir: &Path) -> Result<Option<v1::BlkIOStat>, StatsError> {
    let partitions = match fs::read_to_string(PARTITIONS_PATH) {
        Ok(text) => parse_partitions(&text),
        // Device names are a nicety; entries without them are still complete.
        Err(_) => BTreeMap::new(),
    };
    let mut blkio = v1::BlkIOStat::new();
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
            if let Some(text) = read_cgroup_file(dir, name)? {
                *field = parse_blkio_entries(&text, &partitions);
                entries += field.len();
                found = true;
            }
        }
        if entries > 0 {
            return Ok(Some(blkio));
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
        if let Some(text) = read_cgroup_file(dir, name)? {
            *field = parse_blkio_entries(&text, &partitions);
            found = true;
        }
    }
    Ok(found.then_some(blkio))
}

fn read_v1_hugetlb(dir: &Path) -> Result<Vec<v1::HugetlbStat>, StatsError> {
    let names = read_cgroup_dir_names(dir)?;
    let sizes = hugetlb_page_sizes(names.iter().map(String::as_str), "usage_in_bytes");
    let mut stats = Vec::with_capacity(sizes.len());
    for size in sizes {
        let mut stat = v1::HugetlbStat::new();
        let prefix = format!("hugetlb.{size}");
        stat.usage = read_cgroup_u64(dir, &format!("{prefix}.usage_in_bytes"), u64::MAX)?
            .unwrap_or_default();
        stat.max = read_cgroup_u64(dir, &format!("{prefix}.max_usage_in_bytes"), u64::MAX)?
            .unwrap_or_default();
        stat.failcnt =
            read_cgroup_u64(dir, &format!("{prefix}.failcnt"), u64::MAX)?.unwrap_or_default();
        stat.pagesize = size;
        stats.push(stat);
    }
    Ok(stats)
}

/// v2 metrics from the container's cgroup directory.
fn read_cgroup_v2_metrics(dir: &Path) -> Result<v2::Metrics, StatsError> {
    let mut metrics = v2::Metrics::new();

    let pids_current = read_cgroup_u64(dir, "pids.current", u64::MAX)?;
    let pids_max = read_cgroup_u64(dir, "pids.max", u64::MAX)?;
    if pids_current.is_some() || pids_max.is_some() {
        let mut pids = v2::PidsStat::new();
        pids.current = pids_current.unwrap_or_default();
        pids.limit = pids_max.unwrap_or_default();
        metrics.pids = MessageField::some(pids);
    }

    let cpu_psi = read_cgroup_file(dir, "cpu.pressure")?.map(|text| parse_psi(&text));
    if let Some(text) = read_cgroup_file(dir, "cpu.stat")? {
        let mut cpu = parse_cpu_stat_v2(&text);
        cpu.psi = cpu_psi.into();
        metrics.cpu = MessageField::some(cpu);
    }

    metrics.memory = read_v2_memory(dir)?.into();
    if let Some(text) = read_cgroup_file(dir, "memory.events")? {
        metrics.memory_events = MessageField::some(parse_memory_events(&text));
    }

    let io_stat = read_cgroup_file(dir, "io.stat")?;
    let io_psi = read_cgroup_file(dir, "io.pressure")?.map(|text| parse_psi(&text));
    if io_stat.is_some() || io_psi.is_some() {
        let mut io = v2::IOStat::new();
        io.usage = io_stat.map(|text| parse_io_stat(&text)).unwrap_or_default();
        io.psi = io_psi.into();
        metrics.io = MessageField::some(io);
    }

    metrics.hugetlb = read_v2_hugetlb(dir)?;
    Ok(metrics)
}

fn read_v2_memory(dir: &Path) -> Result<Option<v2::MemoryStat>, StatsError> {
    let stat_text = read_cgroup_file(dir, "memory.stat")?;
    let mut memory = stat_text
        .as_deref()
        .map(parse_memory_stat_v2)
        .unwrap_or_default();
    let mut found = stat_text.is_some();
    for (name, field) in [
        ("memory.current", &mut memory.usage),
        ("memory.max", &mut memory.usage_limit),
        ("memory.peak", &mut memory.max_usage),
        ("memory.swap.current", &mut memory.swap_usage),
        ("memory.swap.max", &mut memory.swap_limit),
        ("memory.swap.peak", &mut memory.swap_max_usage),
    ] {
        // containerd reads an unlimited `max` as math.MaxUint64.
        if let Some(value) = read_cgroup_u64(dir, name, u64::MAX)? {
            *field = value;
            found = true;
        }
    }
    if !found {
        return Ok(None);
    }
    memory.psi = read_cgroup_file(dir, "memory.pressure")?
        .map(|text| parse_psi(&text))
        .into();
    Ok(Some(memory))
}

fn read_v2_hugetlb(dir: &Path) -> Result<Vec<v2::HugeTlbStat>, StatsError> {
    let names = read_cgroup_dir_names(dir)?;
    let sizes = hugetlb_page_sizes(names.iter().map(String::as_str), "current");
    let mut stats = Vec::with_capacity(sizes.len());
    for size in sizes {
        let mut stat = v2::HugeTlbStat::new();
        stat.current =
            read_cgroup_u64(dir, &format!("hugetlb.{size}.current"), u64::MAX)?.unwrap_or_default();
        stat.max =
            read_cgroup_u64(dir, &format!("hugetlb.{size}.max"), u64::MAX)?.unwrap_or_default();
        stat.pagesize = size;
        stats.push(stat);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::protobuf::MessageFull;

    use super::*;

    #[test]
    fn type_urls_match_the_protobuf_descriptors() {
        assert_eq!(V1_METRICS, v1::Metrics::descriptor().full_name());
        assert_eq!(V2_METRICS, v2::Metrics::descriptor().full_name());
    }

    const HYBRID_PROC_CGROUP: &str = "\
12:hugetlb:/polis/abc
9:name=systemd:/polis/abc
8:pids:/polis/abc
7:blkio:/polis/abc
4:memory:/polis/abc
2:cpu,cpuacct:/polis/abc
0::/polis/abc
";

    const HYBRID_MOUNTINFO: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 22 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn parses_proc_cgroup_lines() {
        let memberships = parse_proc_cgroup(HYBRID_PROC_CGROUP);
        assert_eq!(memberships.len(), 7);
        assert_eq!(
            memberships[5],
            CgroupMembership {
                hierarchy_id: 2,
                controllers: vec!["cpu".to_owned(), "cpuacct".to_owned()],
                path: "/polis/abc".to_owned(),
            }
        );
        assert_eq!(memberships[6].hierarchy_id, 0);
        assert!(memberships[6].controllers.is_empty());
    }

    #[test]
    fn parses_cgroup_mounts_and_layout() {
        let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
        assert_eq!(mounts.len(), 6, "tmpfs and sysfs are not cgroup mounts");
        assert_eq!(
            mounts[0],
            CgroupMount {
                root: "/".to_owned(),
                mount_point: PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                kind: CgroupMountKind::V1 {
                    controllers: vec!["cpu".to_owned(), "cpuacct".to_owned()]
                },
            }
        );
        assert_eq!(
            mounts[4].kind,
            CgroupMountKind::V1 {
                controllers: vec!["xattr".to_owned(), "name=systemd".to_owned()]
            }
        );
        assert_eq!(mounts[5].kind, CgroupMountKind::V2);
        assert_eq!(cgroup_layout(&mounts), CgroupLayout::Legacy);

        let unified = parse_mountinfo(
            "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(cgroup_layout(&unified), CgroupLayout::Unified);
        assert_eq!(cgroup_layout(&[]), CgroupLayout::Unmounted);
    }

    #[test]
    fn resolves_v1_controller_dirs() {
        let dirs = resolve_v1_dirs(
            &parse_proc_cgroup(HYBRID_PROC_CGROUP),
            &parse_mountinfo(HYBRID_MOUNTINFO),
        );
        let dir = |c: &str| dirs.get(c).map(PathBuf::as_path);
        assert_eq!(
            dir("cpu"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/polis/abc"))
        );
        assert_eq!(
            dir("cpuacct"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/polis/abc"))
        );
        assert_eq!(
            dir("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/polis/abc"))
        );
        assert_eq!(
            dir("pids"),
            Some(Path::new("/sys/fs/cgroup/pids/polis/abc"))
        );
        assert_eq!(
            dir("name=systemd"),
            Some(Path::new("/sys/fs/cgroup/systemd/polis/abc"))
        );
        // hugetlb is listed in /proc/<pid>/cgroup but not mounted: left out.
        assert_eq!(dir("hugetlb"), None);
    }

    #[test]
    fn resolves_dirs_under_a_non_root_mount_and_escaped_mount_points() {
        let mountinfo = "\
50 40 0:32 /polis /mnt/my\\040cgroups rw - cgroup cgroup rw,memory
51 40 0:33 /other /mnt/other rw - cgroup cgroup rw,pids
";
        let proc_cgroup = "4:memory:/polis/abc\n8:pids:/polis/abc\n";
        let dirs = resolve_v1_dirs(&parse_proc_cgroup(proc_cgroup), &parse_mountinfo(mountinfo));
        assert_eq!(
            dirs.get("memory").map(PathBuf::as_path),
            Some(Path::new("/mnt/my cgroups/abc"))
        );
        assert_eq!(dirs.get("pids"), None, "/polis/abc is not under /other");
        assert_eq!(relative_to_mount_root("/polisx/abc", "/polis"), None);
        assert_eq!(relative_to_mount_root("/polis", "/polis"), Some(""));
        assert_eq!(relative_to_mount_root("/../abc", "/"), None);
    }

    #[test]
    fn resolves_v2_dir() {
        let mounts = parse_mountinfo(
            "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(
            resolve_v2_dir("/system.slice/polis-abc.scope", &mounts),
            Some(PathBuf::from("/sys/fs/cgroup/system.slice/polis-abc.scope"))
        );
        assert_eq!(
            resolve_v2_dir("/", &mounts),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn parses_v1_memory_stat() {
        let text = "\
cache 4096
rss 8192
rss_huge 0
shmem 0
mapped_file 1024
dirty 12
writeback 3
pgpgin 100
pgpgout 50
pgfault 700
pgmajfault 7
inactive_anon 11
active_anon 22
inactive_file 33
active_file 44
unevictable 5
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 40960
total_rss 81920
total_pgfault 7000
total_unevictable 50
garbage line here
";
        let stat = parse_memory_stat_v1(text);
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

    #[test]
    fn parses_v1_cpu_files() {
        let throttle = parse_cpu_stat_v1("nr_periods 10\nnr_throttled 3\nthrottled_time 123456\n");
        assert_eq!(
            (
                throttle.periods,
                throttle.throttled_periods,
                throttle.throttled_time
            ),
            (10, 3, 123_456)
        );
        // 150 ticks of 10 ms are 1.5 s.
        assert_eq!(
            parse_cpuacct_stat("user 150\nsystem 25\n"),
            (1_500_000_000, 250_000_000)
        );
        assert_eq!(
            parse_cpuacct_usage_percpu("123 0 456 789 \n"),
            vec![123, 0, 456, 789]
        );
        let oom = parse_memory_oom_control("oom_kill_disable 1\nunder_oom 0\noom_kill 4\n");
        assert_eq!(
            (oom.oom_kill_disable, oom.under_oom, oom.oom_kill),
            (1, 0, 4)
        );
    }

    #[test]
    fn parses_v1_blkio_entries_and_partitions() {
        let partitions = parse_partitions(
            "major minor  #blocks  name\n\n 253        0   52428800 vda\n 253        1   52427759 vda1\n",
        );
        assert_eq!(
            partitions.get(&(253, 0)).map(String::as_str),
            Some("/dev/vda")
        );

        let entries = parse_blkio_entries(
            "253:0 Read 4096\n253:0 Write 8192\n253:0 Sync 0\n7:1 Read 1\nTotal 12289\n",
            &partitions,
        );
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].device, "/dev/vda");
        assert_eq!(
            (
                entries[1].major,
                entries[1].minor,
                entries[1].op.as_str(),
                entries[1].value
            ),
            (253, 0, "Write", 8192)
        );
        assert_eq!(entries[3].device, "", "unknown devices have no name");

        // Op-less files such as blkio.sectors_recursive.
        let sectors = parse_blkio_entries("8:0 2048\n", &BTreeMap::new());
        assert_eq!((sectors[0].op.as_str(), sectors[0].value), ("", 2048));
    }

    #[test]
    fn parses_single_values() {
        assert_eq!(parse_u64_or_max("42\n", 0), Some(42));
        assert_eq!(parse_u64_or_max("max\n", 0), Some(0));
        assert_eq!(parse_u64_or_max("max\n", u64::MAX), Some(u64::MAX));
        assert_eq!(parse_u64_or_max("-1\n", 0), None);
    }

    #[test]
    fn finds_hugetlb_page_sizes() {
        let names = [
            "hugetlb.2MB.usage_in_bytes",
            "hugetlb.2MB.rsvd.usage_in_bytes",
            "hugetlb.1GB.usage_in_bytes",
            "hugetlb.1GB.limit_in_bytes",
            "memory.usage_in_bytes",
        ];
        assert_eq!(
            hugetlb_page_sizes(names, "usage_in_bytes"),
            vec!["1GB", "2MB"]
        );
        assert_eq!(
            hugetlb_page_sizes(["hugetlb.2MB.current", "hugetlb.2MB.max"], "current"),
            vec!["2MB"]
        );
    }

    #[test]
    fn parses_v2_cpu_and_memory() {
        let cpu = parse_cpu_stat_v2(
            "usage_usec 1000\nuser_usec 600\nsystem_usec 400\nnr_periods 5\nnr_throttled 2\n\
             throttled_usec 300\nnr_bursts 1\nburst_usec 9\n",
        );
        assert_eq!(
            (cpu.usage_usec, cpu.user_usec, cpu.system_usec),
            (1000, 600, 400)
        );
        assert_eq!(
            (cpu.nr_periods, cpu.nr_throttled, cpu.throttled_usec),
            (5, 2, 300)
        );
        assert_eq!((cpu.nr_bursts, cpu.burst_usec), (1, 9));

        let memory = parse_memory_stat_v2(
            "anon 4096\nfile 8192\nkernel_stack 16384\nslab 100\nsock 0\nshmem 12\n\
             file_mapped 13\nfile_dirty 14\nfile_writeback 15\nanon_thp 0\ninactive_anon 1\n\
             active_anon 2\ninactive_file 3\nactive_file 4\nunevictable 5\n\
             slab_reclaimable 60\nslab_unreclaimable 40\npgfault 77\npgmajfault 7\n\
             workingset_refault_anon 1\nworkingset_refault 8\nthp_fault_alloc 9\n",
        );
        assert_eq!((memory.anon, memory.file), (4096, 8192));
        assert_eq!(memory.kernel_stack, 16384);
        assert_eq!(
            (memory.file_mapped, memory.file_dirty, memory.file_writeback),
            (13, 14, 15)
        );
        assert_eq!(
            (memory.slab_reclaimable, memory.slab_unreclaimable),
            (60, 40)
        );
        assert_eq!((memory.pgfault, memory.pgmajfault), (77, 7));
        assert_eq!(memory.workingset_refault, 8);
        assert_eq!(memory.thp_fault_alloc, 9);
    }

    #[test]
    fn parses_v2_events_io_and_psi() {
        let events =
            parse_memory_events("low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\noom_group_kill 6\n");
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

        let io = parse_io_stat(
            "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
             253:0 rbytes=4096 wbytes=0 rios=1 wios=0\nbogus\n",
        );
        assert_eq!(io.len(), 2);
        assert_eq!(
            (
                io[0].major,
                io[0].minor,
                io[0].rbytes,
                io[0].wbytes,
                io[0].rios,
                io[0].wios
            ),
            (8, 16, 1_459_200, 314_773_504, 192, 353)
        );
        assert_eq!((io[1].major, io[1].minor, io[1].rbytes), (253, 0, 4096));

        let psi = parse_psi(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=678\n",
        );
        let some = psi.some.as_ref().map(|d| (d.avg10, d.avg60, d.total));
        assert_eq!(some, Some((1.5, 0.25, 12345)));
        assert_eq!(psi.full.as_ref().map(|d| d.total), Some(678));
        assert!(
            parse_psi("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
                .full
                .is_none()
        );
    }

    #[test]
    fn reads_v2_metrics_from_a_directory() {
        let dir = std::env::temp_dir().join(format!("polis-shim-stats-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create scratch cgroup dir");
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
            fs::write(dir.join(name), content).expect("write scratch cgroup file");
        }
        let result = read_cgroup_v2_metrics(&dir);
        fs::remove_dir_all(&dir).expect("remove scratch cgroup dir");
        let metrics = result.expect("read v2 metrics");

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
        let dir = std::env::temp_dir().join(format!("polis-shim-stats-bad-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create scratch cgroup dir");
        fs::write(dir.join("pids.current"), "three\n").expect("write scratch cgroup file");
        let result = read_cgroup_v2_metrics(&dir);
        fs::remove_dir_all(&dir).expect("remove scratch cgroup dir");
        match result {
            Err(StatsError::ParseCgroupFile { path, content }) => {
                assert_eq!(path, dir.join("pids.current"));
                assert_eq!(content, "three");
            }
            other => panic!("expected ParseCgroupFile, got {other:?}"),
        }
    }

    #[test]
    fn missing_process_is_an_error_naming_the_pid() {
        // Pids are capped at 2^22 on Linux, so this one never exists.
        let err = container_metrics(u32::MAX).expect_err("no such process");
        assert!(matches!(
            err,
            StatsError::ReadProcCgroup { pid: u32::MAX, .. }
        ));
        assert!(
            err.to_string()
                .contains(&format!("/proc/{}/cgroup", u32::MAX))
        );
    }

    /// Reads this test process's own cgroup on the host and decodes the result like containerd.
    #[test]
    fn collects_metrics_of_this_process() {
        let mountinfo = fs::read_to_string(MOUNTINFO_PATH).expect("read mountinfo");
        let mounts = parse_mountinfo(&mountinfo);
        let proc_cgroup = fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
        let any = container_metrics(std::process::id()).expect("collect metrics");

        match cgroup_layout(&mounts) {
            CgroupLayout::Legacy => {
                assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
                let metrics = v1::Metrics::parse_from_bytes(&any.value).expect("decode v1 Metrics");
                let dirs = resolve_v1_dirs(&parse_proc_cgroup(&proc_cgroup), &mounts);
                if dirs
                    .get("cpuacct")
                    .is_some_and(|d| d.join("cpuacct.usage").exists())
                {
                    let usage = metrics.cpu.usage.as_ref().expect("cpu usage");
                    assert!(usage.total > 0, "cpu usage total is {}", usage.total);
                    assert!(!usage.per_cpu.is_empty());
                }
                if dirs
                    .get("memory")
                    .is_some_and(|d| d.join("memory.usage_in_bytes").exists())
                {
                    let usage = metrics.memory.usage.as_ref().expect("memory usage");
                    assert!(usage.usage > 0, "memory usage is {}", usage.usage);
                    assert!(usage.limit > 0);
                }
            }
            CgroupLayout::Unified => {
                assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
                let metrics = v2::Metrics::parse_from_bytes(&any.value).expect("decode v2 Metrics");
                assert!(metrics.cpu.as_ref().is_some_and(|c| c.usage_usec > 0));
            }
            CgroupLayout::Unmounted => panic!("this host has no cgroup filesystem mounted"),
        }
    }
}
