//! Reading a bundle (runtime-spec bundle.md) and checking its config.json before anything is
//! made, so that a bundle that cannot work is refused with a message that names the problem, and
//! leaves nothing behind.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use caps::CapSet;
use libcontainer::capabilities::CapabilityExt;
use oci_spec::runtime::{Capabilities, Capability, Hook, Process, Spec};

use crate::error::{Error, Result};

/// The values of `linux.rootfsPropagation` runc accepts (config-linux.md#rootfs-mount-propagation
/// names the plain four; runc and containerd's CRI also use the recursive forms).
pub const ROOTFS_PROPAGATIONS: [&str; 8] = [
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "unbindable",
    "runbindable",
];

/// A bundle whose config.json has been read and checked.
pub struct CheckedBundle {
    pub bundle: PathBuf,
    pub spec: Spec,
    pub raw: serde_json::Value,
    pub rootfs: PathBuf,
    /// Whether `raw` differs from the user's config.json.
    pub rewritten: bool,
}

/// Reads and checks a bundle's config.json, with errors that name the problem.
pub fn check_bundle(bundle: &Path) -> Result<CheckedBundle> {
    let bundle_err = |reason: String| Error::Bundle {
        path: bundle.to_path_buf(),
        reason,
    };
    let bundle = fs::canonicalize(bundle).map_err(|e| bundle_err(e.to_string()))?;
    if !bundle.is_dir() {
        return Err(bundle_err("not a directory".into()));
    }
    let config_path = bundle.join("config.json");
    let config_err = |reason: String| Error::Config {
        path: bundle.clone(),
        reason,
    };
    let data = fs::read(&config_path).map_err(|e| config_err(format!("cannot read: {e}")))?;
    let mut raw: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| config_err(format!("malformed JSON: {e}")))?;
    let mut rewritten = drop_unknown_capabilities(&mut raw);
    rewritten |= drop_capabilities_not_held(&mut raw, &held_capabilities());
    let spec: Spec = serde_path_to_error::deserialize(&raw).map_err(|e| {
        config_err(format!(
            "does not match the runtime spec at {}: {}",
            e.path(),
            e.inner()
        ))
    })?;
    let version = spec.version();
    if !version.starts_with("1.") {
        return Err(config_err(format!(
            "unsupported ociVersion {version:?}: polis-runc supports runtime-spec 1.x"
        )));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| config_err("process is missing".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(config_err("process.args must not be empty".into()));
    }
    if !process.cwd().is_absolute() {
        return Err(config_err(format!(
            "process.cwd {:?} must be an absolute path",
            process.cwd()
        )));
    }
    check_capability_sets(&spec).map_err(config_err)?;
    let Some(linux) = spec.linux() else {
        return Err(config_err("linux is missing".into()));
    };
    // config-linux.md#namespaces: "If a namespace type is specified more than once ... the
    // runtime MUST generate an error."
    let mut seen = std::collections::HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(config_err(format!(
                "namespace type {:?} is listed more than once in linux.namespaces",
                ns.typ()
            )));
        }
    }
    if let Some(value) = linux.rootfs_propagation()
        && !value.is_empty()
        && !ROOTFS_PROPAGATIONS.contains(&value.as_str())
    {
        return Err(config_err(format!(
            "linux.rootfsPropagation {value:?} is not one of {}",
            ROOTFS_PROPAGATIONS.join(", ")
        )));
    }
    for mount in spec.mounts().iter().flatten() {
        let is_bind = mount.typ().as_deref() == Some("bind")
            || mount
                .options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if let (true, Some(source)) = (is_bind, mount.source()) {
            let source = bundle.join(source);
            if fs::symlink_metadata(&source).is_err() {
                return Err(config_err(format!(
                    "source {} of the bind mount on {} does not exist",
                    source.display(),
                    mount.destination().display()
                )));
            }
        }
    }
    check_runtime_hooks(&spec).map_err(config_err)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| config_err("root is missing".into()))?;
    let rootfs = check_root_path(&bundle, root.path()).map_err(config_err)?;
    Ok(CheckedBundle {
        bundle,
        spec,
        raw,
        rootfs,
        rewritten,
    })
}

/// The rootfs a `root.path` names: an existing directory reached without a symbolic link, as runc
/// requires ("invalid rootfs: not an absolute path, or a symlink").
fn check_root_path(bundle: &Path, root_path: &Path) -> std::result::Result<PathBuf, String> {
    let given = lexically_normal(&bundle.join(root_path));
    let real =
        fs::canonicalize(&given).map_err(|e| format!("root.path {}: {e}", given.display()))?;
    if real != given {
        return Err(format!(
            "root.path {} goes through a symbolic link (to {}): name the directory itself",
            given.display(),
            real.display()
        ));
    }
    if !real.is_dir() {
        return Err(format!("root.path {} is not a directory", real.display()));
    }
    Ok(real)
}

/// `path` with `.` left out and `..` applied to the components before it, without the file
/// system.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The hooks polis-runc starts from the host before the container's program exists (prestart,
/// createRuntime, and createContainer, which runc and polis-runc start before pivot_root) must be
/// executable files: a missing one fails `create` with the hook's kind, index and path, before
/// anything is made. config.md#posix-platform-hooks: "path (string, REQUIRED) with similar
/// semantics to IEEE Std 1003.1-2008 execv's path. This specification extends the IEEE standard
/// in that path MUST be absolute."
fn check_runtime_hooks(spec: &Spec) -> std::result::Result<(), String> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    #[allow(deprecated)]
    let lists = [
        ("prestart", hooks.prestart()),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
    ];
    // startContainer hooks run inside the container, where their path is resolved, and
    // poststart and poststop failures are warnings, reported when they run.
    for (kind, list) in lists {
        for (index, hook) in list.iter().flatten().enumerate() {
            let name = describe_hook(kind, index, hook);
            let path = hook.path();
            if !path.is_absolute() {
                return Err(format!("{name}: the path must be absolute"));
            }
            match fs::metadata(path) {
                Err(e) => return Err(format!("{name}: {e}")),
                Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => {
                    return Err(format!("{name}: not an executable file"));
                }
                Ok(_) => {}
            }
        }
    }
    Ok(())
}

/// "createRuntime hook 0 (/usr/bin/setup)": how errors and warnings name a hook.
pub fn describe_hook(kind: &str, index: usize, hook: &Hook) -> String {
    format!("{kind} hook {index} ({})", hook.path().display())
}

/// The kernel refuses a process whose effective capabilities are not all permitted (capset(2):
/// "the effective set must be a subset of the new permitted set"): such a config is refused,
/// naming the capabilities.
fn check_capability_sets(spec: &Spec) -> std::result::Result<(), String> {
    let Some(caps) = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
    else {
        return Ok(());
    };
    let permitted = caps.permitted().clone().unwrap_or_default();
    let mut not_permitted: Vec<String> = caps
        .effective()
        .iter()
        .flatten()
        .filter(|c| !permitted.contains(c))
        .map(capability_name)
        .collect();
    if not_permitted.is_empty() {
        return Ok(());
    }
    not_permitted.sort();
    Err(format!(
        "process.capabilities: {} in the effective set but not in the permitted set, which the \
         kernel refuses (capset: the effective set must be a subset of the permitted set)",
        not_permitted.join(", ")
    ))
}

/// runtime-spec config.md#linux-process: a capability that cannot be mapped to the kernel "MUST
/// be logged as a warning", and runtimes "SHOULD NOT fail" for it. Unknown names are warned about
/// and left out. Returns whether anything was removed.
fn drop_unknown_capabilities(raw: &mut serde_json::Value) -> bool {
    let Some(caps) = raw
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return false;
    };
    let mut removed = false;
    for (set, names) in caps.iter_mut() {
        let Some(names) = names.as_array_mut() else {
            continue;
        };
        names.retain(|name| {
            let known = serde_json::from_value::<Capability>(name.clone()).is_ok();
            if !known {
                tracing::warn!("unknown capability {name} in process.capabilities.{set}: ignored");
                removed = true;
            }
            known
        });
    }
    removed
}

/// The capabilities polis-runc can give a container: those in its own bounding set.
fn held_capabilities() -> caps::CapsHashSet {
    caps::read(None, CapSet::Bounding).unwrap_or_else(|_| caps::all())
}

/// runtime-spec config.md#linux-process: "Runtimes SHOULD NOT fail if the container configuration
/// requests capabilities that cannot be granted, for example, if the runtime operates in a
/// restricted environment with limited capabilities", and such values "MUST be logged as a
/// warning". A capability outside polis-runc's own bounding set (this host's lacks
/// CAP_SYS_RESOURCE, say) is left out of every set, with one warning that names them all.
/// Returns whether anything was removed.
fn drop_capabilities_not_held(raw: &mut serde_json::Value, held: &caps::CapsHashSet) -> bool {
    let Some(caps) = raw
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return false;
    };
    let mut dropped = BTreeSet::new();
    for names in caps.values_mut().filter_map(|n| n.as_array_mut()) {
        names.retain(|name| {
            let Ok(cap) = serde_json::from_value::<Capability>(name.clone()) else {
                return true;
            };
            let keep = held.contains(&cap.to_cap());
            if !keep {
                dropped.insert(capability_name(&cap));
            }
            keep
        });
    }
    warn_capabilities_not_held(dropped)
}

/// The same rule for a process that `exec` starts (containerd passes the container's own
/// capabilities in the process it execs).
pub fn drop_process_capabilities_not_held(process: &mut Process) {
    let Some(mut caps) = process.capabilities().clone() else {
        return;
    };
    let held = held_capabilities();
    let mut dropped = BTreeSet::new();
    let mut keep = |set: &Option<Capabilities>| -> Option<Capabilities> {
        set.as_ref().map(|set| {
            set.iter()
                .filter(|cap| {
                    let keep = held.contains(&cap.to_cap());
                    if !keep {
                        dropped.insert(capability_name(cap));
                    }
                    keep
                })
                .copied()
                .collect()
        })
    };
    caps.set_bounding(keep(caps.bounding()));
    caps.set_effective(keep(caps.effective()));
    caps.set_permitted(keep(caps.permitted()));
    caps.set_inheritable(keep(caps.inheritable()));
    caps.set_ambient(keep(caps.ambient()));
    if warn_capabilities_not_held(dropped) {
        process.set_capabilities(Some(caps));
    }
}

/// A capability as config.json names it ("CAP_NET_ADMIN").
fn capability_name(cap: &Capability) -> String {
    serde_json::to_value(cap)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("CAP_{cap}"))
}

/// One warning naming every capability left out; returns whether there was any.
fn warn_capabilities_not_held(dropped: BTreeSet<String>) -> bool {
    if dropped.is_empty() {
        return false;
    }
    let names: Vec<String> = dropped.into_iter().collect();
    tracing::warn!(
        "capabilities {} cannot be granted (they are not in polis-runc's bounding set): left out \
         of the process's capability sets",
        names.join(", ")
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_not_held_leave_every_set() {
        let mut raw = serde_json::json!({"process": {"capabilities": {
            "bounding": ["CAP_CHOWN", "CAP_SYS_RESOURCE"],
            "effective": ["CAP_SYS_RESOURCE"],
            "permitted": ["CAP_CHOWN", "CAP_SYS_RESOURCE"],
        }}});
        let held: caps::CapsHashSet = [caps::Capability::CAP_CHOWN].into_iter().collect();
        assert!(drop_capabilities_not_held(&mut raw, &held));
        let caps = &raw["process"]["capabilities"];
        assert_eq!(caps["bounding"], serde_json::json!(["CAP_CHOWN"]));
        assert_eq!(caps["effective"], serde_json::json!([]));
        assert_eq!(caps["permitted"], serde_json::json!(["CAP_CHOWN"]));
        assert!(!drop_capabilities_not_held(&mut raw, &held));
    }

    #[test]
    fn lexical_normalisation_keeps_symlinks_visible() {
        assert_eq!(
            lexically_normal(Path::new("/b/./x/../rootfs")),
            PathBuf::from("/b/rootfs")
        );
    }

    #[test]
    fn a_root_path_through_a_symlink_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir(bundle.join("real")).unwrap();
        std::os::unix::fs::symlink("real", bundle.join("link")).unwrap();
        assert_eq!(
            check_root_path(&bundle, Path::new("real")).unwrap(),
            bundle.join("real")
        );
        let err = check_root_path(&bundle, Path::new("link")).unwrap_err();
        assert!(
            err.contains(&bundle.join("link").display().to_string()),
            "{err}"
        );
        assert!(err.contains("symbolic link"), "{err}");
    }
}
