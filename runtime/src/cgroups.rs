//! Cgroup paths, stats and updates, straight over libcgroups.
//!
//! libcgroups 0.7 picks its v1 manager on hybrid and v1 hosts and ignores the systemd flag
//! there, so a systemd-style `cgroupsPath` (`slice:prefix:name`) would become a directory literally
//! named `slice:prefix:name`. polis-runc translates it into the path systemd would have made, as
//! runc does: `system.slice:polis:abc` becomes `/system.slice/polis-abc.scope`.

use std::path::{Path, PathBuf};

use libcgroups::common::{
    AnyCgroupManager, CgroupConfig, CgroupManager, CgroupSetup, ControllerOpt,
    create_cgroup_manager, get_cgroup_setup,
};

use crate::error::{Error, Result};

/// Expands a systemd slice name into its path: `a-b.slice` is `/a.slice/a-b.slice`.
pub fn expand_slice(slice: &str) -> Result<PathBuf> {
    let invalid = || Error::Invalid(format!("invalid systemd slice name {slice:?}"));
    if slice == "-.slice" {
        return Ok(PathBuf::from("/"));
    }
    let name = slice.strip_suffix(".slice").ok_or_else(invalid)?;
    if name.is_empty() || name.contains('/') || name.starts_with('-') || name.ends_with('-') {
        return Err(invalid());
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return Err(invalid());
        }
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

/// The cgroup path for a container, as a cgroupfs path below each hierarchy's root.
///
/// `systemd` is runc's `--systemd-cgroup`. Without a `cgroupsPath`, runc's defaults are used:
/// `/<id>` for cgroupfs, `system.slice:polis:<id>` for systemd.
pub fn resolve_cgroup_path(
    cgroups_path: Option<&Path>,
    id: &str,
    systemd: bool,
) -> Result<PathBuf> {
    let raw = match cgroups_path {
        Some(p) => p.to_string_lossy().into_owned(),
        None if systemd => format!("system.slice:polis:{id}"),
        None => return Ok(PathBuf::from("/").join(id)),
    };
    if !systemd {
        if raw.contains(':') && !raw.starts_with('/') {
            return Err(Error::Invalid(format!(
                "cgroupsPath {raw:?} is systemd-style: pass --systemd-cgroup to use it"
            )));
        }
        let p = PathBuf::from(&raw);
        return Ok(if p.is_absolute() {
            p
        } else {
            PathBuf::from("/").join(p)
        });
    }
    let parts: Vec<&str> = raw.split(':').collect();
    let [slice, prefix, name] = parts.as_slice() else {
        return Err(Error::Invalid(format!(
            "cgroupsPath {raw:?} must be slice:prefix:name with --systemd-cgroup"
        )));
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut path = expand_slice(slice)?;
    let unit = if name.ends_with(".slice") {
        // runc: a name ending in .slice is a slice of its own below the parent.
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

/// What kind of cgroup host this is.
pub fn host_setup() -> Result<CgroupSetup> {
    get_cgroup_setup().map_err(|e| Error::Invalid(format!("detect cgroup setup: {e}")))
}

/// A cgroupfs manager for the container's cgroup path (never systemd: the path is resolved).
pub fn manager_for(id: &str, cgroup_path: &Path) -> Result<AnyCgroupManager> {
    create_cgroup_manager(CgroupConfig {
        cgroup_path: cgroup_path.to_path_buf(),
        systemd_cgroup: false,
        container_name: id.to_string(),
    })
    .map_err(|e| Error::Cgroup {
        id: id.to_string(),
        reason: e.to_string(),
    })
}

/// config-linux.md#memory `disableOOMKiller`, which libcgroups 0.7 is never asked to apply
/// (cgroup v1 `memory.oom_control`; cgroup v2 has no such switch). Touches the host's cgroups.
pub fn apply_disable_oom_killer_on_host(
    id: &str,
    cgroup_path: &Path,
    resources: Option<&oci_spec::runtime::LinuxResources>,
) -> Result<()> {
    let disable = resources
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.disable_oom_killer())
        .unwrap_or(false);
    if !disable || matches!(host_setup()?, CgroupSetup::Unified) {
        return Ok(());
    }
    let file = Path::new("/sys/fs/cgroup/memory")
        .join(cgroup_path.strip_prefix("/").unwrap_or(cgroup_path))
        .join("memory.oom_control");
    std::fs::write(&file, "1").map_err(|e| Error::Cgroup {
        id: id.to_string(),
        reason: format!("disable the OOM killer in {}: {e}", file.display()),
    })
}

pub fn pids(id: &str, cgroup_path: &Path) -> Result<Vec<i32>> {
    let manager = manager_for(id, cgroup_path)?;
    let pids = manager.get_all_pids().map_err(|e| Error::Cgroup {
        id: id.to_string(),
        reason: format!("list processes: {e}"),
    })?;
    Ok(pids.into_iter().map(|p| p.as_raw()).collect())
}

pub fn stats(id: &str, cgroup_path: &Path) -> Result<libcgroups::stats::Stats> {
    manager_for(id, cgroup_path)?
        .stats()
        .map_err(|e| Error::Cgroup {
            id: id.to_string(),
            reason: format!("read stats: {e}"),
        })
}

pub fn update_resources(
    id: &str,
    cgroup_path: &Path,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    manager_for(id, cgroup_path)?
        .apply(&ControllerOpt {
            resources,
            disable_oom_killer: resources
                .memory()
                .as_ref()
                .and_then(|m| m.disable_oom_killer())
                .unwrap_or(false),
            oom_score_adj: None,
            freezer_state: None,
        })
        .map_err(|e| Error::Cgroup {
            id: id.to_string(),
            reason: format!("update resources: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_like_systemd() {
        assert_eq!(expand_slice("-.slice").unwrap(), PathBuf::from("/"));
        assert_eq!(
            expand_slice("system.slice").unwrap(),
            PathBuf::from("/system.slice")
        );
        assert_eq!(
            expand_slice("kubepods-besteffort-pod1.slice").unwrap(),
            PathBuf::from(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"
            )
        );
        assert!(expand_slice("a--b.slice").is_err());
        assert!(expand_slice("nodot").is_err());
    }

    #[test]
    fn systemd_paths_translate_as_runc_does() {
        let p = |s: &str| resolve_cgroup_path(Some(Path::new(s)), "c1", true).unwrap();
        assert_eq!(
            p("system.slice:polis:c1"),
            PathBuf::from("/system.slice/polis-c1.scope")
        );
        assert_eq!(p(":cri:c1"), PathBuf::from("/system.slice/cri-c1.scope"));
        assert_eq!(
            p("kubepods-pod1.slice:cri-containerd:abc"),
            PathBuf::from("/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope")
        );
        assert!(resolve_cgroup_path(Some(Path::new("/a/b")), "c1", true).is_err());
    }

    #[test]
    fn cgroupfs_paths_and_defaults() {
        assert_eq!(
            resolve_cgroup_path(None, "c1", false).unwrap(),
            PathBuf::from("/c1")
        );
        assert_eq!(
            resolve_cgroup_path(None, "c1", true).unwrap(),
            PathBuf::from("/system.slice/polis-c1.scope")
        );
        assert_eq!(
            resolve_cgroup_path(Some(Path::new("/default/c1")), "c1", false).unwrap(),
            PathBuf::from("/default/c1")
        );
        assert!(resolve_cgroup_path(Some(Path::new("a:b:c")), "c1", false).is_err());
    }
}
