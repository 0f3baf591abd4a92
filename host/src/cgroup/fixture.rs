//! Fixture trees for the tests: a temporary directory with its own `proc/` (PID/cgroup, self/mountinfo,
//! partitions) and `sys/fs/cgroup/`, laid out as a legacy v1, a hybrid or a unified v2 host, with the files a
//! 6.x kernel writes for a container's cgroup `/polis/abc`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Paths;

/// The process whose /proc/PID/cgroup each tree has.
pub const PID: u32 = 4242;

/// /proc/PID/cgroup of a process in `/polis/abc` on a hybrid host.
pub const HYBRID_PROC_CGROUP: &str = "\
12:hugetlb:/polis/abc
9:name=systemd:/polis/abc
8:pids:/polis/abc
7:blkio:/polis/abc
4:memory:/polis/abc
2:cpu,cpuacct:/polis/abc
0::/polis/abc
";

/// The cgroup mounts of a hybrid host (hugetlb left to the cgroup2 side), at /sys/fs/cgroup.
pub const HYBRID_MOUNTINFO: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 22 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

pub const PARTITIONS: &str = "\
major minor  #blocks  name

 253        0   52428800 vda
 253        1   52427759 vda1
   8        0   10485760 sda
";

/// memory.stat of a v1 memory cgroup (kernel 6.x, swap accounting on).
pub const V1_MEMORY_STAT: &str = "\
cache 4096
rss 8192
rss_huge 0
shmem 0
mapped_file 1024
dirty 12
writeback 3
swap 0
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
total_rss_huge 0
total_shmem 0
total_mapped_file 10240
total_dirty 120
total_writeback 30
total_swap 2048
total_pgpgin 1000
total_pgpgout 500
total_pgfault 7000
total_pgmajfault 70
total_inactive_anon 110
total_active_anon 220
total_inactive_file 30000
total_active_file 440
total_unevictable 50
";

/// memory.stat of a v2 cgroup (a subset of a 6.x kernel's keys, in its order).
pub const V2_MEMORY_STAT: &str = "\
anon 4096
file 8192
kernel 20000
kernel_stack 16384
pagetables 0
sock 0
shmem 12
file_mapped 13
file_dirty 14
file_writeback 15
swapcached 0
anon_thp 0
inactive_anon 1
active_anon 2
inactive_file 3000
active_file 4
unevictable 5
slab_reclaimable 60
slab_unreclaimable 40
slab 100
workingset_refault_anon 1
workingset_refault_file 8
workingset_activate_anon 0
workingset_activate_file 0
workingset_nodereclaim 0
pgscan 0
pgsteal 0
pgrefill 0
pgactivate 0
pgdeactivate 0
pglazyfree 0
pglazyfreed 0
thp_fault_alloc 9
thp_collapse_alloc 0
pgfault 77
pgmajfault 7
";

/// A fixture host in a temporary directory (removed when the tree is dropped).
pub struct Tree {
    dir: tempfile::TempDir,
    /// The controllers of /proc/PID/cgroup on v1 and hybrid trees, to their directories.
    v1_dirs: BTreeMap<String, PathBuf>,
}

impl Tree {
    fn new(proc_cgroup: &str, mountinfo: impl Fn(&Path) -> String) -> Tree {
        let tree = Tree {
            dir: tempfile::tempdir().expect("create a fixture tree"),
            v1_dirs: BTreeMap::new(),
        };
        let root = tree.root();
        tree.write(&format!("proc/{PID}/cgroup"), proc_cgroup);
        tree.write("proc/self/mountinfo", &mountinfo(&root));
        tree.write("proc/partitions", PARTITIONS);
        std::fs::create_dir_all(&root).unwrap();
        tree
    }

    /// The stand-in for /sys/fs/cgroup.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("sys/fs/cgroup")
    }

    pub fn paths(&self) -> Paths {
        Paths {
            proc: self.dir.path().join("proc"),
            cgroup_root: self.root(),
        }
    }

    pub fn v1_dirs(&self) -> BTreeMap<String, PathBuf> {
        self.v1_dirs.clone()
    }

    /// Writes `content` to `path` (relative to the tree), making its directory.
    pub fn write(&self, path: &str, content: &str) {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Writes `files` into the cgroup directory `dir` (relative to the cgroup root).
    pub fn cgroup(&self, dir: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.root().join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
        dir
    }

    fn v1_controller(&mut self, controllers: &[&str], hierarchy: &str, files: &[(&str, &str)]) {
        let dir = self.cgroup(&format!("{hierarchy}/polis/abc"), files);
        for controller in controllers {
            self.v1_dirs.insert((*controller).to_owned(), dir.clone());
        }
    }

    fn v1_memory_files() -> Vec<(&'static str, &'static str)> {
        vec![
            ("memory.stat", V1_MEMORY_STAT),
            ("memory.usage_in_bytes", "131072\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.max_usage_in_bytes", "262144\n"),
            ("memory.failcnt", "1\n"),
            ("memory.memsw.usage_in_bytes", "133120\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.max_usage_in_bytes", "270000\n"),
            ("memory.memsw.failcnt", "0\n"),
            // Kernel 6.x has no memory.kmem.limit_in_bytes any more.
            ("memory.kmem.usage_in_bytes", "40960\n"),
            ("memory.kmem.max_usage_in_bytes", "50000\n"),
            ("memory.kmem.failcnt", "0\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
            ("cgroup.procs", "4242\n"),
        ]
    }

    fn v1_cpu_files() -> Vec<(&'static str, &'static str)> {
        vec![
            ("cpuacct.usage", "2000000000\n"),
            ("cpuacct.stat", "user 150\nsystem 25\n"),
            ("cpuacct.usage_percpu", "1500000000 500000000 \n"),
            (
                "cpu.stat",
                "nr_periods 10\nnr_throttled 3\nthrottled_time 123456\n\
                 nr_bursts 1\nburst_time 500\n",
            ),
            ("cpu.cfs_quota_us", "50000\n"),
        ]
    }

    /// Legacy v1: every controller in its own hierarchy (cpu and cpuacct together), hugetlb among them; blkio
    /// with the throttle files only, as blk-mq kernels have it.
    pub fn v1() -> Tree {
        let mut tree = Tree::new(
            "11:hugetlb:/polis/abc\n10:name=systemd:/polis/abc\n8:pids:/polis/abc\n\
             7:blkio:/polis/abc\n\
             4:memory:/polis/abc\n2:cpu,cpuacct:/polis/abc\n",
            |root| {
                let r = root.display();
                format!(
                    "31 22 0:28 / {r} rw,relatime - tmpfs tmpfs rw,mode=755\n\
                     32 31 0:29 / {r}/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
                     35 31 0:32 / {r}/memory rw,relatime - cgroup cgroup rw,memory\n\
                     38 31 0:35 / {r}/blkio rw,relatime - cgroup cgroup rw,blkio\n\
                     39 31 0:36 / {r}/pids rw,relatime - cgroup cgroup rw,pids\n\
                     40 31 0:37 / {r}/hugetlb rw,relatime - cgroup cgroup rw,hugetlb\n\
                     41 31 0:38 / {r}/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
                )
            },
        );
        tree.v1_controller(&["cpu", "cpuacct"], "cpu,cpuacct", &Self::v1_cpu_files());
        let mut memory = Self::v1_memory_files();
        memory.extend([
            ("memory.kmem.tcp.usage_in_bytes", "0\n"),
            ("memory.kmem.tcp.limit_in_bytes", "9223372036854771712\n"),
            ("memory.kmem.tcp.max_usage_in_bytes", "4096\n"),
            ("memory.kmem.tcp.failcnt", "0\n"),
        ]);
        tree.v1_controller(&["memory"], "memory", &memory);
        tree.v1_controller(
            &["blkio"],
            "blkio",
            &[
                (
                    "blkio.throttle.io_serviced",
                    "253:0 Read 10\n253:0 Write 20\n253:0 Sync 30\n253:0 Async 0\n253:0 Discard 0\n\
                     253:0 Total 30\nTotal 30\n",
                ),
                (
                    "blkio.throttle.io_service_bytes",
                    "253:0 Read 40960\n253:0 Write 81920\n253:0 Sync 122880\n253:0 Async 0\n\
                     253:0 Discard 0\n253:0 Total 122880\nTotal 122880\n",
                ),
            ],
        );
        tree.v1_controller(
            &["pids"],
            "pids",
            &[("pids.current", "3\n"), ("pids.max", "max\n")],
        );
        tree.v1_controller(
            &["hugetlb"],
            "hugetlb",
            &[
                ("hugetlb.2MB.usage_in_bytes", "4194304\n"),
                ("hugetlb.2MB.limit_in_bytes", "9223372036854771712\n"),
                ("hugetlb.2MB.max_usage_in_bytes", "8388608\n"),
                ("hugetlb.2MB.failcnt", "1\n"),
                ("hugetlb.2MB.rsvd.usage_in_bytes", "0\n"),
                ("hugetlb.1GB.usage_in_bytes", "0\n"),
                ("hugetlb.1GB.limit_in_bytes", "9223372036854771712\n"),
                ("hugetlb.1GB.max_usage_in_bytes", "0\n"),
                ("hugetlb.1GB.failcnt", "0\n"),
            ],
        );
        tree.v1_controller(&["name=systemd"], "systemd", &[("cgroup.procs", "4242\n")]);
        tree
    }

    /// Hybrid, as systemd set hosts up before v2 became its default: the v1 hierarchies of [`HYBRID_MOUNTINFO`]
    /// and a cgroup2 one at `unified`; blkio with the CFQ `*_recursive` files; no swap accounting, no kmem.tcp.
    pub fn hybrid() -> Tree {
        let mut tree = Tree::new(HYBRID_PROC_CGROUP, |root| {
            HYBRID_MOUNTINFO.replace(" /sys/fs/cgroup", &format!(" {}", root.display()))
        });
        tree.v1_controller(&["cpu", "cpuacct"], "cpu,cpuacct", &Self::v1_cpu_files());
        let memory: Vec<_> = Self::v1_memory_files()
            .into_iter()
            .filter(|(name, _)| !name.starts_with("memory.memsw."))
            .collect();
        tree.v1_controller(&["memory"], "memory", &memory);
        tree.v1_controller(
            &["blkio"],
            "blkio",
            &[
                (
                    "blkio.io_serviced_recursive",
                    "253:0 Read 10\n253:0 Write 20\n8:0 Read 1\n8:0 Write 0\n\
                     7:1 Read 2\nTotal 33\n",
                ),
                (
                    "blkio.io_service_bytes_recursive",
                    "253:0 Read 40960\n253:0 Write 81920\n8:0 Read 512\n8:0 Write 0\n\
                     7:1 Read 1024\nTotal 124416\n",
                ),
                (
                    "blkio.io_queued_recursive",
                    "253:0 Read 0\n253:0 Write 1\nTotal 1\n",
                ),
                (
                    "blkio.io_service_time_recursive",
                    "253:0 Read 900\nTotal 900\n",
                ),
                ("blkio.io_wait_time_recursive", "253:0 Read 80\nTotal 80\n"),
                ("blkio.io_merged_recursive", "Total 0\n"),
                ("blkio.time_recursive", "253:0 77\n"),
                ("blkio.sectors_recursive", "253:0 240\n8:0 1\n"),
                // Present too, but the CFQ files win when they hold entries.
                ("blkio.throttle.io_serviced", "253:0 Read 999\n"),
            ],
        );
        tree.v1_controller(
            &["pids"],
            "pids",
            &[("pids.current", "3\n"), ("pids.max", "100\n")],
        );
        tree.v1_controller(&["name=systemd"], "systemd", &[("cgroup.procs", "4242\n")]);
        tree.cgroup(
            "unified/polis/abc",
            &[("cgroup.procs", "4242\n"), ("hugetlb.2MB.current", "0\n")],
        );
        tree
    }

    /// Unified v2: cgroup2 at the root, every controller in `polis/abc`.
    pub fn v2() -> Tree {
        let tree = Tree::new("0::/polis/abc\n", |root| {
            format!(
                "30 22 0:26 / {} rw,nosuid,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
                root.display()
            )
        });
        tree.cgroup(
            "polis/abc",
            &[
                ("cgroup.procs", "4242\n"),
                ("pids.current", "3\n"),
                ("pids.max", "max\n"),
                (
                    "cpu.stat",
                    "usage_usec 1000\nuser_usec 600\nsystem_usec 400\n\
                     core_sched.force_idle_usec 0\nnr_periods 5\n\
                     nr_throttled 2\nthrottled_usec 300\nnr_bursts 1\nburst_usec 9\n",
                ),
                (
                    "cpu.pressure",
                    "some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=678\n",
                ),
                ("memory.stat", V2_MEMORY_STAT),
                ("memory.current", "16384\n"),
                ("memory.max", "max\n"),
                ("memory.peak", "32768\n"),
                ("memory.swap.current", "1024\n"),
                ("memory.swap.max", "max\n"),
                (
                    "memory.events",
                    "low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\noom_group_kill 6\n",
                ),
                (
                    "memory.pressure",
                    "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n\
                     full avg10=0.00 avg60=0.00 avg300=0.00 total=4\n",
                ),
                (
                    "io.stat",
                    "8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
                     253:0 rbytes=4096 wbytes=0 rios=1 wios=0\nbogus\n",
                ),
                (
                    "io.pressure",
                    "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                ),
                ("hugetlb.2MB.current", "2097152\n"),
                ("hugetlb.2MB.max", "max\n"),
                ("hugetlb.2MB.rsvd.current", "0\n"),
                ("hugetlb.1GB.current", "0\n"),
                ("hugetlb.1GB.max", "0\n"),
            ],
        );
        tree
    }
}
