//! `create`: build a container from a bundle and leave it in the "created" state.

use std::fs;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::Spec;

use crate::cgroups::{manager_for, resolve_cgroup_path};
use crate::error::{Error, Result};
use crate::executor::PolisExecutor;
use crate::id::validate_container_id;
use crate::store::{ContainerMeta, Store, process_start_time};
use libcgroups::common::CgroupManager;

/// Everything `create` and `run` take from the command line.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: i32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub systemd_cgroup: bool,
    /// Whether the caller will not stay attached to the container's stdio (create, run -d).
    pub detach: bool,
}

/// A bundle whose config.json has been read and checked.
pub struct CheckedBundle {
    pub bundle: PathBuf,
    pub spec: Spec,
    pub raw: serde_json::Value,
    pub rootfs: PathBuf,
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
    let raw: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| config_err(format!("malformed JSON: {e}")))?;
    let spec: Spec = serde_json::from_value(raw.clone())
        .map_err(|e| config_err(format!("does not match the runtime spec: {e}")))?;
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
    if spec.linux().is_none() {
        return Err(config_err("linux is missing".into()));
    }
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| config_err("root is missing".into()))?;
    let rootfs = bundle.join(root.path());
    let rootfs = fs::canonicalize(&rootfs)
        .map_err(|e| config_err(format!("root.path {}: {e}", rootfs.display())))?;
    if !rootfs.is_dir() {
        return Err(config_err(format!(
            "root.path {} is not a directory",
            rootfs.display()
        )));
    }
    Ok(CheckedBundle {
        bundle,
        spec,
        raw,
        rootfs,
    })
}

fn shadow_dir(store: &Store, id: &str) -> PathBuf {
    store.root().join(".bundles").join(id)
}

/// Removes what `create` keeps outside the container directory.
pub fn remove_shadow_bundle(store: &Store, id: &str) {
    let _ = fs::remove_dir_all(shadow_dir(store, id));
}

/// Writes the config.json libcontainer will read: the user's, with the cgroup path resolved and
/// the rootfs made absolute. libcontainer reads config.json from a directory only, so the copy
/// lives in `<root>/.bundles/<id>/`; the state keeps the user's bundle.
fn write_resolved_config(
    store: &Store,
    id: &str,
    checked: &CheckedBundle,
    cgroup_path: &Path,
) -> Result<PathBuf> {
    let dir = shadow_dir(store, id);
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let mut raw = checked.raw.clone();
    raw["root"]["path"] = serde_json::Value::String(checked.rootfs.to_string_lossy().into());
    raw["linux"]["cgroupsPath"] = serde_json::Value::String(cgroup_path.to_string_lossy().into());
    let data = serde_json::to_vec(&raw).map_err(|e| Error::Invalid(e.to_string()))?;
    let path = dir.join("config.json");
    fs::write(&path, data).map_err(|e| Error::io("write", &path, e))?;
    Ok(dir)
}

/// Creates the container: namespaces, cgroups, rootfs, and an init process waiting for `start`.
/// Returns the init PID. On failure nothing is left behind.
pub fn create_container(store: &Store, opts: &CreateOptions) -> Result<i32> {
    validate_container_id(&opts.id)?;
    let checked = check_bundle(&opts.bundle)?;
    let id = opts.id.as_str();
    let _lock = store.lock(id, true)?;
    if store.container_dir(id).exists() {
        return Err(Error::AlreadyExists { id: id.into() });
    }
    let linux = checked.spec.linux().as_ref();
    let given_path = linux.and_then(|l| l.cgroups_path().as_deref());
    let cgroup_path = resolve_cgroup_path(given_path, id, opts.systemd_cgroup)?;
    let lib_bundle = if given_path == Some(cgroup_path.as_path()) {
        None
    } else {
        Some(write_resolved_config(store, id, &checked, &cgroup_path)?)
    };
    let result = build(
        store,
        opts,
        lib_bundle.as_deref().unwrap_or(&checked.bundle),
    );
    let pid = match result {
        Ok(pid) => pid,
        Err(err) => {
            clean_up_failed_create(store, id, &cgroup_path);
            return Err(err);
        }
    };
    let meta = ContainerMeta {
        bundle: checked.bundle.clone(),
        rootfs: checked.rootfs.clone(),
        init_start_time: process_start_time(pid),
        cgroup_path,
        translated_config: lib_bundle.map(|d| d.join("config.json")),
    };
    if let Err(err) = record_created(store, id, &meta) {
        clean_up_failed_create(store, id, &meta.cgroup_path);
        return Err(err);
    }
    Ok(pid)
}

fn build(store: &Store, opts: &CreateOptions, lib_bundle: &Path) -> Result<i32> {
    let id = opts.id.as_str();
    let lib = |e| Error::lib("create", id, e);
    let keyring = (!opts.no_new_keyring).then(|| id.to_string());
    let container = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(PolisExecutor::for_init(keyring))
        .with_root_path(store.root())
        .map_err(lib)?
        .with_pid_file(opts.pid_file.as_ref())
        .map_err(lib)?
        .with_console_socket(opts.console_socket.as_ref())
        .with_preserved_fds(opts.preserve_fds)
        .as_init(lib_bundle)
        .with_systemd(false)
        .with_detach(opts.detach)
        .with_no_pivot(opts.no_pivot)
        .build()
        .map_err(lib)?;
    container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| Error::Invalid(format!("container {id} has no init process after create")))
}

/// Puts the user's bundle back into state.json and records polis-runc's own facts.
fn record_created(store: &Store, id: &str, meta: &ContainerMeta) -> Result<()> {
    let mut loaded = store.load(id)?;
    loaded.container.state.bundle = meta.bundle.clone();
    loaded
        .container
        .save()
        .map_err(|e| Error::lib("save state of", id, e))?;
    store.save_meta(id, meta)
}

/// After a failed create: kill whatever reached the cgroup, remove it and the state directory.
fn clean_up_failed_create(store: &Store, id: &str, cgroup_path: &Path) {
    if let Ok(manager) = manager_for(id, cgroup_path) {
        let _ = manager.remove();
    }
    let _ = fs::remove_dir_all(store.container_dir(id));
    remove_shadow_bundle(store, id);
}
