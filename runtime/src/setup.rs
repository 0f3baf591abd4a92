//! `create`: build a container from a bundle and leave it in the "created" state.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use oci_spec::runtime::{Hook, LinuxCapabilities, LinuxSeccomp};

use crate::bundle::{CheckedBundle, check_bundle};
use crate::cgroups::{manager_for, resolve_cgroup_path};
use crate::console::ConsoleTarget;
use crate::container_mounts::MountFixups;
use crate::error::{Error, Result};
use crate::executor::{PolisExecutor, grant_executor_caps};
use crate::hooks::StartContainerHooks;
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

/// What libcontainer is given, where it differs from the user's config.json.
struct LibcontainerConfig {
    raw: serde_json::Value,
    /// Seccomp profile the executor loads right before execve.
    seccomp: Option<LinuxSeccomp>,
    /// Capabilities to end with, when CAP_SYS_ADMIN was granted to the executor.
    final_caps: Option<LinuxCapabilities>,
    /// Whether `raw` differs from the user's config.json.
    rewritten: bool,
    /// startContainer hooks, which the executor runs (hooks.rs).
    start_container_hooks: Option<Vec<Hook>>,
}

fn libcontainer_config(
    checked: &CheckedBundle,
    cgroup_path: &Path,
    cgroup_v1_host: bool,
) -> Result<LibcontainerConfig> {
    let mut raw = checked.raw.clone();
    let mut rewritten = false;
    // container_mounts.rs: libcontainer knows only the plain rootfsPropagation words; polis-runc
    // applies the rest of runc's meaning itself.
    if let Some(value) = raw["linux"]["rootfsPropagation"].as_str() {
        let plain = crate::container_mounts::libcontainer_rootfs_propagation(value);
        if plain != value {
            raw["linux"]["rootfsPropagation"] = serde_json::Value::String(plain.to_string());
            rewritten = true;
        }
    }
    // cgroup_mount.rs: polis-runc makes `cgroup` mounts itself on v1 and hybrid hosts.
    if let Some(mounts) = raw["mounts"].as_array_mut() {
        let before = mounts.len();
        mounts.retain(|m| {
            serde_json::from_value::<oci_spec::runtime::Mount>(m.clone()).map_or(true, |m| {
                !crate::container_mounts::is_cgroup_mount_made_here(&m, cgroup_v1_host)
            })
        });
        rewritten |= mounts.len() != before;
    }
    let given_path = checked
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_deref());
    rewritten |= checked.rewritten || given_path != Some(cgroup_path);
    raw["linux"]["cgroupsPath"] = serde_json::Value::String(cgroup_path.to_string_lossy().into());
    let seccomp = checked
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone())
        .filter(|s| !libcontainer::seccomp::is_notify(s));
    if seccomp.is_some() {
        rewritten = true;
        if let Some(linux) = raw["linux"].as_object_mut() {
            linux.remove("seccomp");
        }
    }
    let mut process = checked.spec.process().clone().unwrap_or_default();
    let nnp = process.no_new_privileges() == Some(true);
    let mut final_caps = None;
    if seccomp.is_some() && !nnp {
        rewritten = true;
        final_caps = grant_executor_caps(&mut process);
        raw["process"]["capabilities"] = serde_json::to_value(process.capabilities())
            .map_err(|e| Error::Invalid(e.to_string()))?;
    }
    let mut start_container_hooks = None;
    if let Some(hooks) = checked.spec.hooks() {
        #[allow(deprecated)]
        let before_start = [
            hooks.prestart(),
            hooks.create_runtime(),
            hooks.create_container(),
            hooks.start_container(),
        ];
        if before_start
            .iter()
            .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
        {
            rewritten = true;
            start_container_hooks =
                crate::hooks::route_hooks_for_libcontainer(&mut raw, hooks, &checked.bundle)?;
        }
    }
    Ok(LibcontainerConfig {
        raw,
        seccomp,
        final_caps,
        rewritten,
        start_container_hooks,
    })
}

/// Writes the config.json libcontainer reads, when it differs from the user's. libcontainer
/// reads config.json from a directory only, so the copy lives in the container's private
/// directory, with the rootfs made absolute; the state keeps the user's bundle.
fn write_libcontainer_bundle(
    store: &Store,
    id: &str,
    checked: &CheckedBundle,
    config: &LibcontainerConfig,
) -> Result<PathBuf> {
    let dir = store.private_dir(id);
    let mut raw = config.raw.clone();
    raw["root"]["path"] = serde_json::Value::String(checked.rootfs.to_string_lossy().into());
    let data = serde_json::to_vec(&raw).map_err(|e| Error::Invalid(e.to_string()))?;
    let path = dir.join("config.json");
    fs::write(&path, data).map_err(|e| Error::io("write", &path, e))?;
    Ok(dir)
}

/// A container just created.
pub struct CreatedContainer {
    /// The init process, a child of this process.
    pub pid: i32,
    /// The pty master of the init process, when polis-runc allocated its terminal (a `run` that
    /// stays attached, with `process.terminal` and no `--console-socket`).
    pub terminal: Option<OwnedFd>,
}

/// Creates the container: namespaces, cgroups, rootfs, and an init process waiting for `start`.
/// On failure nothing is left behind.
pub fn create_container(store: &Store, opts: &CreateOptions) -> Result<CreatedContainer> {
    validate_container_id(&opts.id)?;
    let checked = check_bundle(&opts.bundle)?;
    let id = opts.id.as_str();
    let terminal = checked
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    // runc: a terminal without a console socket is proxied by the caller that stays attached;
    // a detached container's terminal has nowhere to go.
    let own_terminal = terminal && opts.console_socket.is_none();
    if own_terminal && opts.detach {
        return Err(Error::Invalid(
            "process.terminal is true but no --console-socket was given: the terminal of a \
             detached container must go to a console socket"
                .into(),
        ));
    }
    if store.container_dir(id).exists() {
        return Err(Error::AlreadyExists { id: id.into() });
    }
    let _lock = store.lock_new(id)?;
    if store.container_dir(id).exists() {
        return Err(Error::AlreadyExists { id: id.into() });
    }
    let given_path = checked
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_deref());
    let cgroup_path = match resolve_cgroup_path(given_path, id, opts.systemd_cgroup) {
        Ok(p) => p,
        Err(err) => {
            store.remove_lock(id);
            return Err(err);
        }
    };
    let cgroup_v1_host = crate::cgroup_mount::made_by_polis_runc()
        && !crate::container_mounts::mounts_below_a_cgroup_mount(&checked.spec);
    let result = libcontainer_config(&checked, &cgroup_path, cgroup_v1_host).and_then(|config| {
        crate::cwd::make_cwd_in_rootfs(&checked)?;
        let exec_fifo = make_exec_fifo(store, id)?;
        let linux = checked.spec.linux().as_ref();
        let ranges = |m: Option<&Vec<_>>| m.map_or(0, |m| m.len());
        if linux.is_some_and(|l| {
            ranges(l.uid_mappings().as_ref()) > 1 || ranges(l.gid_mappings().as_ref()) > 1
        }) {
            crate::idmap::install_map_helpers(&store.private_dir(id))?;
        }
        let lib_bundle = if config.rewritten {
            Some(write_libcontainer_bundle(store, id, &checked, &config)?)
        } else {
            None
        };
        let start_hooks = config
            .start_container_hooks
            .map(|hooks| StartContainerHooks {
                hooks,
                id: id.to_string(),
                bundle: checked.bundle.clone(),
                annotations: checked.spec.annotations().clone(),
            });
        let executor = PolisExecutor::for_init(
            (!opts.no_new_keyring).then(|| id.to_string()),
            config.seccomp,
            config.final_caps,
            exec_fifo.as_raw_fd(),
            start_hooks,
        );
        let console = ConsoleTarget::new(
            own_terminal,
            opts.console_socket.as_ref(),
            &store.private_dir(id),
            "console.sock",
        )?;
        crate::cgroups::make_parent_cgroups_on_host(&cgroup_path)?;
        let pid = build(
            store,
            opts,
            lib_bundle.as_deref().unwrap_or(&checked.bundle),
            executor,
            console.path(),
        )?;
        let resources = checked
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref());
        crate::cgroups::apply_device_rules_on_host(&cgroup_path, resources)?;
        let terminal = console.receive_own_master()?;
        MountFixups::from_spec(&checked.spec, cgroup_v1_host)
            .apply_to_container(pid)
            .map_err(|reason| Error::Invalid(format!("container {id}: {reason}")))?;
        crate::cgroups::apply_disable_oom_killer_on_host(id, &cgroup_path, resources)?;
        let meta = ContainerMeta {
            bundle: checked.bundle.clone(),
            rootfs: checked.rootfs.clone(),
            init_start_time: process_start_time(pid),
            cgroup_path: cgroup_path.clone(),
        };
        record_created(store, id, &meta, &checked.raw)?;
        Ok(CreatedContainer { pid, terminal })
    });
    if result.is_err() {
        clean_up_failed_create(store, id, &cgroup_path);
    }
    result
}

fn build(
    store: &Store,
    opts: &CreateOptions,
    lib_bundle: &Path,
    executor: PolisExecutor,
    console_socket: Option<&PathBuf>,
) -> Result<i32> {
    let id = opts.id.as_str();
    let capture = crate::logging::CauseCapture::start()?;
    let lib = |e| Error::lib_with_causes("create", id, e, capture.lines());
    let container = container_builder(
        store,
        id,
        executor,
        opts.pid_file.as_ref(),
        console_socket,
        opts.preserve_fds,
    )
    .map_err(lib)?
    .as_init(lib_bundle)
    .with_systemd(false)
    // libcontainer takes a console socket only from a detached caller; polis-runc's own
    // (for a terminal it proxies) is one too.
    .with_detach(opts.detach || console_socket.is_some())
    .with_no_pivot(opts.no_pivot)
    .build()
    .map_err(lib)?;
    container
        .pid()
        .map(|p| p.as_raw())
        .ok_or_else(|| Error::Invalid(format!("container {id} has no init process after create")))
}

/// libcontainer's builder with what `create`, `run` and `exec` share: the state root, the
/// executor, the PID file, the console socket and the descriptors to pass.
pub(crate) fn container_builder(
    store: &Store,
    id: &str,
    executor: PolisExecutor,
    pid_file: Option<&PathBuf>,
    console_socket: Option<&PathBuf>,
    preserve_fds: i32,
) -> std::result::Result<ContainerBuilder, libcontainer::error::LibcontainerError> {
    Ok(
        ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(executor)
            .with_root_path(store.root())?
            .with_pid_file(pid_file)?
            .with_console_socket(console_socket)
            .with_preserved_fds(preserve_fds),
    )
}

/// Records polis-runc's own facts (the user's bundle among them), with the config the container
/// was created from (`exec` builds its processes from it). libcontainer's state.json keeps the
/// bundle libcontainer read: `exec` loads the container's config.json from there, and only the
/// rewritten copy has the resolved cgroupsPath.
fn record_created(
    store: &Store,
    id: &str,
    meta: &ContainerMeta,
    created_from: &serde_json::Value,
) -> Result<()> {
    store.save_created_config(id, created_from)?;
    crate::hooks::take_lifecycle_hooks_from_libcontainer(&store.container_dir(id), id)?;
    store.save_meta(id, meta)
}

/// After a failed create: kill whatever reached the cgroup, remove it and the state directory.
fn clean_up_failed_create(store: &Store, id: &str, cgroup_path: &Path) {
    if let Ok(manager) = manager_for(id, cgroup_path) {
        let _ = manager.remove();
    }
    let _ = fs::remove_dir_all(store.container_dir(id));
    store.remove_private(id);
}

/// Makes the exec FIFO in the container's private directory, and opens it for the init process
/// to inherit (read and write, so opening never blocks).
fn make_exec_fifo(store: &Store, id: &str) -> Result<OwnedFd> {
    let dir = store.private_dir(id);
    fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
    let path = store.exec_fifo(id);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::sys("make the exec FIFO", e))?;
    let fd = nix::fcntl::open(
        &path,
        nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::sys("open the exec FIFO", e))?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
