//! The statistics of one cgroup, as plain values: what v1 and v2 share in one field, and what only one of them
//! has in a field that says so. A section is `None` (a list empty) when its controller is not there or the kernel
//! has none of its files; inside a section a value whose file is missing reads 0.
//!
//! CPU times are nanoseconds and sizes bytes, whatever unit the file uses (PSI totals stay in the kernel's
//! microseconds). A limit of `max` reads as [`UNLIMITED`].

use std::collections::BTreeMap;

/// A limit the kernel shows as `max` (no limit).
pub const UNLIMITED: u64 = u64::MAX;

/// How much of a cgroup to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Detail {
    /// Every file the readers know (`docker stats`, CRI and ctr metrics).
    #[default]
    Full,
    /// What a metrics scrape reports, for many cgroups at a time: CPU, the memory usage counter, memory.stat and
    /// the OOM counts, I/O per device (unnamed), pids. Left out: v1's swap and kernel memory counters, huge pages,
    /// v2's pressure files and peaks, and the device names of /proc/partitions.
    Summary,
}

/// Everything [`super::read`] found in one cgroup.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub pids: Option<Pids>,
    pub cpu: Option<Cpu>,
    pub memory: Option<Memory>,
    pub io: Option<Io>,
    /// One entry per huge page size, smallest name first (`1GB` before `2MB`).
    pub hugetlb: Vec<Hugetlb>,
}

/// `pids.current` and `pids.max`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pids {
    pub current: u64,
    /// [`UNLIMITED`] for `max`; `None` when there is no `pids.max` (a root cgroup).
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
    /// v2 `cpu.pressure`.
    pub psi: Option<Psi>,
}

/// CPU time used, in nanoseconds. v1: `cpuacct.usage`, `cpuacct.stat` (USER_HZ ticks), `cpuacct.usage_percpu`;
/// v2: `cpu.stat`'s `usage_usec`, `user_usec`, `system_usec`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuUsage {
    pub total_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    /// One counter per possible CPU (v1 only; empty on v2).
    pub per_cpu_ns: Vec<u64>,
}

/// CFS bandwidth throttling, from `cpu.stat` (v1 and v2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Throttling {
    /// Enforcement periods that have elapsed (`nr_periods`).
    pub periods: u64,
    /// Periods in which the cgroup was throttled (`nr_throttled`).
    pub throttled_periods: u64,
    /// v1 `throttled_time`, v2 `throttled_usec`.
    pub throttled_ns: u64,
    /// Periods in which the cgroup used its burst allowance (`nr_bursts`, kernel 5.14 and later).
    pub bursts: u64,
    /// v1 `burst_time`, v2 `burst_usec`.
    pub burst_ns: u64,
}

/// Memory. The counters keep the files as the kernel lays them out; `working_set`, `rss`, `cache` and
/// `swap_usage` are the summary kubelet and cAdvisor report, computed the way cAdvisor computes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Memory {
    /// v1 `memory.{usage_in_bytes,limit_in_bytes,max_usage_in_bytes,failcnt}`; v2 `memory.{current,max,peak}`
    /// (v2 has no failcnt: `events.max` counts the same). `None` when none of the files exists.
    pub usage: Option<MemoryCounter>,
    /// v1 `memory.memsw.*`: memory and swap together; v2 `memory.swap.{current,max,peak}`: swap alone.
    pub swap: Option<MemoryCounter>,
    /// v1 `memory.kmem.*` (kernel memory); `None` on v2.
    pub kernel: Option<MemoryCounter>,
    /// v1 `memory.kmem.tcp.*` (TCP buffers); `None` on v2.
    pub kernel_tcp: Option<MemoryCounter>,
    /// Every key of `memory.stat` (`None` when the file is missing).
    pub stat: Option<BTreeMap<String, u64>>,
    /// Usage minus inactive file pages (`total_inactive_file` on v1, `inactive_file` on v2), 0 if that is more
    /// than the usage: what the kernel could not easily reclaim, the value kubelet evicts on.
    pub working_set: u64,
    /// Anonymous memory: v1 `total_rss`, v2 `anon` of `memory.stat`.
    pub rss: u64,
    /// Page cache: v1 `total_cache`, v2 `file` of `memory.stat`.
    pub cache: u64,
    /// Swap in use: v1 `total_swap` of `memory.stat` (with swap accounting), v2 `memory.swap.current`.
    pub swap_usage: u64,
    /// v1 `memory.oom_control`.
    pub oom_control: Option<OomControl>,
    /// v2 `memory.events`.
    pub events: Option<MemoryEvents>,
    /// v2 `memory.pressure`.
    pub psi: Option<Psi>,
}

/// One family of memory counter files; a file the kernel does not provide reads 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryCounter {
    pub usage: u64,
    /// [`UNLIMITED`] for v2's `max`; v1 writes a large page-aligned number instead.
    pub limit: u64,
    /// The highest usage seen (v1 `max_usage_in_bytes`, v2 `peak`).
    pub max_usage: u64,
    /// How often the limit was hit (v1 only).
    pub failcnt: u64,
}

/// v1 `memory.oom_control`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OomControl {
    pub oom_kill_disable: bool,
    /// The cgroup is at its limit and its tasks are waiting (only with `oom_kill_disable`).
    pub under_oom: bool,
    /// Processes the OOM killer killed in the cgroup.
    pub oom_kill: u64,
}

/// v2 `memory.events`: how often each event happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
    pub oom_group_kill: u64,
}

/// Block I/O.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Io {
    /// Per device, in the order the kernel lists them: v2 `io.stat`; v1 the `Read` and `Write` entries of
    /// [`Blkio::io_service_bytes_recursive`] and [`Blkio::io_serviced_recursive`].
    pub devices: Vec<IoDevice>,
    /// The v1 blkio files (empty on v2).
    pub blkio: Blkio,
    /// v2 `io.pressure`.
    pub psi: Option<Psi>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoDevice {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// The v1 blkio files, named as containerd names them: the CFQ `blkio.*_recursive` files when the kernel has them
/// and they hold entries, otherwise `blkio.throttle.io_serviced` and `blkio.throttle.io_service_bytes` in
/// `io_serviced_recursive` and `io_service_bytes_recursive`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blkio {
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    pub io_serviced_recursive: Vec<BlkioEntry>,
    pub io_queued_recursive: Vec<BlkioEntry>,
    pub io_service_time_recursive: Vec<BlkioEntry>,
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    pub io_merged_recursive: Vec<BlkioEntry>,
    /// `blkio.time_recursive`.
    pub io_time_recursive: Vec<BlkioEntry>,
    pub sectors_recursive: Vec<BlkioEntry>,
}

/// One line of a v1 blkio file: `8:0 Read 4096`, or `8:0 2048` in the files without operations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    /// `/dev/NAME` from /proc/partitions; empty for a device it does not list.
    pub device: String,
    pub major: u64,
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard` or `Total`; empty in the files without operations.
    pub op: String,
    pub value: u64,
}

/// Huge pages of one size: v1 `hugetlb.SIZE.{usage_in_bytes,limit_in_bytes,max_usage_in_bytes,failcnt}`, v2
/// `hugetlb.SIZE.{current,max}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hugetlb {
    /// As the file names spell it: `2MB`, `1GB`.
    pub page_size: String,
    pub usage: u64,
    pub limit: u64,
    /// v1 only.
    pub max_usage: u64,
    /// v1 only.
    pub failcnt: u64,
}

/// Pressure stall information (`cpu.pressure`, `memory.pressure`, `io.pressure`, v2).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Psi {
    /// Some tasks stalled.
    pub some: Option<PsiData>,
    /// All non-idle tasks stalled at once (the kernel has no such line for CPU before 5.13).
    pub full: Option<PsiData>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PsiData {
    /// Percentages of wall time stalled over the last 10, 60 and 300 seconds.
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    /// Total time stalled, in microseconds.
    pub total_us: u64,
}

/// cAdvisor's working set: `usage` less the inactive file pages when memory.stat has them, floored at 0.
pub(super) fn working_set(usage: u64, inactive_file: Option<u64>) -> u64 {
    inactive_file.map_or(usage, |inactive| usage.saturating_sub(inactive))
}
