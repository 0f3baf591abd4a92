//! Finding the cgroup of a process from /proc/PID/cgroup and the mount table, on the three layouts a host can
//! have (containerd's `cgroups.Mode()`):
//! - legacy: one cgroup v1 hierarchy per controller (or group of controllers) under /sys/fs/cgroup;
//! - hybrid: the same, plus a cgroup2 hierarchy (usually at /sys/fs/cgroup/unified) that holds no controller, or
//!   only those v1 does not mount;
//! - unified: cgroup2 at /sys/fs/cgroup, one directory with every controller.
//!
//! On legacy and hybrid hosts the statistics come from the v1 directories, as containerd reads them.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::error::{Error, Result};
use crate::mountinfo::Mount;

/// Where a process's cgroup is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// Legacy and hybrid hosts: each v1 controller (`cpu`, `memory`, ..., `name=systemd`) and its directory.
    V1(BTreeMap<String, PathBuf>),
    /// Unified hosts: the one directory.
    V2(PathBuf),
}

impl Cgroup {
    /// The directory that holds `controller`'s files: on v1 that controller's, on v2 the one directory.
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        match self {
            Cgroup::V1(dirs) => dirs.get(controller).map(PathBuf::as_path),
            Cgroup::V2(dir) => Some(dir),
        }
    }
}

/// How the host mounts its cgroup file systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// v1 hierarchies only.
    Legacy,
    /// v1 hierarchies and a cgroup2 one beside them.
    Hybrid,
    /// cgroup2 at the cgroup root.
    Unified,
    /// No cgroup file system at all.
    Unmounted,
}

/// One line of /proc/PID/cgroup: `hierarchy-ID:controller-list:cgroup-path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub hierarchy_id: u32,
    /// Empty for the cgroup v2 line (`0::/path`); may hold `name=systemd` for a named hierarchy.
    pub controllers: Vec<String>,
    pub path: String,
}

/// Parses /proc/PID/cgroup; malformed lines are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
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
            Some(Membership {
                hierarchy_id,
                controllers,
                path,
            })
        })
        .collect()
}

fn is_v2(mount: &Mount) -> bool {
    mount.fstype == "cgroup2"
}

/// The controllers (and `name=...`) of a v1 hierarchy, from its super options; none for any other mount.
fn v1_controllers(mount: &Mount) -> impl Iterator<Item = &str> {
    let options: &[String] = if mount.fstype == "cgroup" {
        &mount.super_options
    } else {
        &[]
    };
    options
        .iter()
        .map(String::as_str)
        .filter(|o| *o != "rw" && *o != "ro")
}

/// The layout, decided the way containerd's `cgroups.Mode()` does: cgroup2 visible at `cgroup_root` is unified;
/// anything with v1 hierarchies is legacy or hybrid.
pub fn layout(mounts: &[Mount], cgroup_root: &Path) -> Layout {
    // The last mount on a mount point is the visible one.
    let at_root = mounts.iter().rev().find(|m| m.mount_point == cgroup_root);
    if at_root.is_some_and(is_v2) {
        return Layout::Unified;
    }
    let v1 = mounts.iter().any(|m| m.fstype == "cgroup");
    let v2 = mounts.iter().any(is_v2);
    match (v1, v2) {
        (true, true) => Layout::Hybrid,
        (true, false) => Layout::Legacy,
        (false, true) => Layout::Unified,
        (false, false) => Layout::Unmounted,
    }
}

/// `cgroup_path` relative to a mount's root, if the mount shows it.
fn relative_to_mount_root<'a>(cgroup_path: &'a str, root: &Path) -> Option<&'a Path> {
    let rest = Path::new(cgroup_path).strip_prefix(root).ok()?;
    // A path that climbs out of the mount (cgroup namespaces show `/..`) is not visible here.
    if rest.components().any(|c| matches!(c, Component::ParentDir)) {
        return None;
    }
    Some(rest)
}

/// Each v1 controller of the process mapped to its directory: the mount point of that controller's hierarchy
/// joined with the cgroup path. A controller whose hierarchy is not mounted (or does not show the path) is left
/// out.
pub fn v1_dirs(memberships: &[Membership], mounts: &[Mount]) -> BTreeMap<String, PathBuf> {
    let mut dirs = BTreeMap::new();
    for membership in memberships {
        for controller in &membership.controllers {
            if dirs.contains_key(controller) {
                continue;
            }
            let dir = mounts.iter().find_map(|mount| {
                v1_controllers(mount)
                    .any(|c| c == controller)
                    .then(|| relative_to_mount_root(&membership.path, &mount.root))
                    .flatten()
                    .map(|rest| mount.mount_point.join(rest))
            });
            if let Some(dir) = dir {
                dirs.insert(controller.clone(), dir);
            }
        }
    }
    dirs
}

/// The cgroup v2 directory of `cgroup_path` (from the `0::` line): the cgroup2 mount that shows it, preferring
/// the one at `cgroup_root`.
pub fn v2_dir(cgroup_path: &str, mounts: &[Mount], cgroup_root: &Path) -> Option<PathBuf> {
    let v2 = |at_root: bool| {
        mounts
            .iter()
            .filter(move |m| is_v2(m) && (m.mount_point == cgroup_root) == at_root)
    };
    v2(true).chain(v2(false)).find_map(|mount| {
        relative_to_mount_root(cgroup_path, &mount.root).map(|rest| mount.mount_point.join(rest))
    })
}

/// The cgroup of the process whose /proc/PID/cgroup (read from `proc_cgroup`) holds `memberships`.
pub fn resolve(
    proc_cgroup: &Path,
    memberships: &[Membership],
    mounts: &[Mount],
    cgroup_root: &Path,
) -> Result<Cgroup> {
    match layout(mounts, cgroup_root) {
        Layout::Unified => {
            let membership = memberships
                .iter()
                .find(|m| m.hierarchy_id == 0 && m.controllers.is_empty())
                .ok_or_else(|| Error::NoUnifiedEntry {
                    path: proc_cgroup.to_owned(),
                })?;
            let dir = v2_dir(&membership.path, mounts, cgroup_root).ok_or_else(|| {
                Error::UnifiedNotMounted {
                    path: proc_cgroup.to_owned(),
                    cgroup: membership.path.clone(),
                }
            })?;
            Ok(Cgroup::V2(dir))
        }
        Layout::Legacy | Layout::Hybrid => Ok(Cgroup::V1(v1_dirs(memberships, mounts))),
        Layout::Unmounted => Err(Error::NotMounted {
            path: proc_cgroup.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::fixture::{self, HYBRID_MOUNTINFO, HYBRID_PROC_CGROUP};
    use crate::mountinfo;

    const ROOT: &str = "/sys/fs/cgroup";

    #[test]
    fn parses_proc_cgroup_lines() {
        let memberships = parse_proc_cgroup(HYBRID_PROC_CGROUP);
        assert_eq!(memberships.len(), 7);
        assert_eq!(
            memberships[5],
            Membership {
                hierarchy_id: 2,
                controllers: vec!["cpu".to_owned(), "cpuacct".to_owned()],
                path: "/polis/abc".to_owned(),
            }
        );
        assert_eq!(memberships[6].hierarchy_id, 0);
        assert!(memberships[6].controllers.is_empty());
        assert_eq!(parse_proc_cgroup("junk\nx:cpu:/a\n").len(), 0);
    }

    #[test]
    fn layouts() {
        let root = Path::new(ROOT);
        let hybrid = mountinfo::parse(HYBRID_MOUNTINFO);
        assert_eq!(layout(&hybrid, root), Layout::Hybrid);
        let legacy: Vec<Mount> = hybrid.iter().filter(|m| !is_v2(m)).cloned().collect();
        assert_eq!(layout(&legacy, root), Layout::Legacy);
        let unified = mountinfo::parse(
            "30 22 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(layout(&unified, root), Layout::Unified);
        assert_eq!(layout(&[], root), Layout::Unmounted);
        // A cgroup2 mount somewhere else, and no v1: still unified (containerd reads it as such).
        let elsewhere = mountinfo::parse("30 22 0:26 / /mnt/cg rw - cgroup2 cgroup2 rw\n");
        assert_eq!(layout(&elsewhere, root), Layout::Unified);
        // cgroup2 mounted over a v1 tmpfs at the root: the last mount there is the one that counts.
        let over = mountinfo::parse(&format!(
            "{HYBRID_MOUNTINFO}50 22 0:40 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
        ));
        assert_eq!(layout(&over, root), Layout::Unified);
    }

    #[test]
    fn v1_controller_dirs() {
        let dirs = v1_dirs(
            &parse_proc_cgroup(HYBRID_PROC_CGROUP),
            &mountinfo::parse(HYBRID_MOUNTINFO),
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
        // hugetlb is listed in /proc/PID/cgroup but not mounted: left out.
        assert_eq!(dir("hugetlb"), None);
    }

    #[test]
    fn dirs_under_a_non_root_mount_and_escaped_mount_points() {
        let mountinfo = "\
50 40 0:32 /polis /mnt/my\\040cgroups rw - cgroup cgroup rw,memory
51 40 0:33 /other /mnt/other rw - cgroup cgroup rw,pids
";
        let proc_cgroup = "4:memory:/polis/abc\n8:pids:/polis/abc\n";
        let dirs = v1_dirs(
            &parse_proc_cgroup(proc_cgroup),
            &mountinfo::parse(mountinfo),
        );
        assert_eq!(
            dirs.get("memory").map(PathBuf::as_path),
            Some(Path::new("/mnt/my cgroups/abc"))
        );
        assert_eq!(dirs.get("pids"), None, "/polis/abc is not under /other");
        let root = |r: &str| PathBuf::from(r);
        assert_eq!(relative_to_mount_root("/polisx/abc", &root("/polis")), None);
        assert_eq!(
            relative_to_mount_root("/polis", &root("/polis")),
            Some(Path::new(""))
        );
        assert_eq!(
            relative_to_mount_root("/polis/", &root("/polis/")),
            Some(Path::new(""))
        );
        assert_eq!(relative_to_mount_root("/../abc", &root("/")), None);
        assert_eq!(
            relative_to_mount_root("/a/b", &root("/")),
            Some(Path::new("a/b"))
        );
    }

    #[test]
    fn v2_dir_prefers_the_cgroup_root() {
        let mounts = mountinfo::parse(
            "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
             30 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        let root = Path::new(ROOT);
        assert_eq!(
            v2_dir("/system.slice/polis-abc.scope", &mounts, root),
            Some(PathBuf::from("/sys/fs/cgroup/system.slice/polis-abc.scope"))
        );
        assert_eq!(
            v2_dir("/", &mounts, root),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(v2_dir("/../x", &mounts, root), None);
    }

    #[test]
    fn resolve_errors_name_the_proc_file() {
        let proc_cgroup = Path::new("/proc/7/cgroup");
        let root = Path::new(ROOT);
        let err = resolve(proc_cgroup, &[], &[], root).unwrap_err();
        assert!(matches!(&err, Error::NotMounted { path } if path == proc_cgroup));
        let unified = mountinfo::parse("30 22 0:26 /a /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let err = resolve(
            proc_cgroup,
            &parse_proc_cgroup("1:cpu:/x\n"),
            &unified,
            root,
        )
        .unwrap_err();
        assert!(matches!(err, Error::NoUnifiedEntry { .. }));
        let err =
            resolve(proc_cgroup, &parse_proc_cgroup("0::/b/c\n"), &unified, root).unwrap_err();
        assert!(
            matches!(&err, Error::UnifiedNotMounted { cgroup, .. } if cgroup == "/b/c"),
            "{err}"
        );
        assert!(err.to_string().contains("/proc/7/cgroup"));
    }

    /// The three layouts, each a fixture tree with its own /proc: locate reads the files and finds the
    /// directories inside the tree.
    #[test]
    fn locates_in_fixture_trees() {
        let v1 = fixture::Tree::v1();
        let cgroup = v1.paths().locate(fixture::PID).unwrap();
        assert_eq!(cgroup, Cgroup::V1(v1.v1_dirs()));
        assert_eq!(
            cgroup.dir("hugetlb"),
            Some(v1.root().join("hugetlb/polis/abc").as_path())
        );

        let hybrid = fixture::Tree::hybrid();
        let cgroup = hybrid.paths().locate(fixture::PID).unwrap();
        assert_eq!(cgroup, Cgroup::V1(hybrid.v1_dirs()));
        assert_eq!(
            cgroup.dir("memory"),
            Some(hybrid.root().join("memory/polis/abc").as_path())
        );
        assert_eq!(
            cgroup.dir("hugetlb"),
            None,
            "no v1 hierarchy mounts hugetlb on this host"
        );

        let v2 = fixture::Tree::v2();
        let cgroup = v2.paths().locate(fixture::PID).unwrap();
        assert_eq!(cgroup, Cgroup::V2(v2.root().join("polis/abc")));
        assert_eq!(
            cgroup.dir("memory"),
            Some(v2.root().join("polis/abc").as_path())
        );

        let err = v2.paths().locate(fixture::PID + 1).unwrap_err();
        assert!(err.to_string().starts_with("read "), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("{}/cgroup", fixture::PID + 1)),
            "{err}"
        );
    }
}
