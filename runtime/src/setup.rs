//! `create`: build a container from a bundle and leave it in the "created" state.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupManager, ControllerOpt};
use libcontainer::container::{ContainerStatus, State};
use oci_spec::runtime::{LinuxResources, Spec};

use crate::bundle::{CheckedBundle, check_bundle};
use crate::cgroups::{manager_for, resolve_cgroup_path};
use crate::console::ConsoleTarget;
use crate::error::{Error, Result};
use crate::hooks::StartContainerHooks;
use crate::id::validate_container_id;
use crate::init::rootfs::CgroupHierarchy;
use crate::init::{Go, InitConfig, Parent};
use crate::store::{ContainerMeta, Store, process_start_time};

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
    if !terminal && opts.console_socket.is_some() {
        return Err(Error::Invalid(
            "--console-socket was given but process.terminal is false".into(),
        ));
    }
    crate::init::process::check_namespaced_settings(&checked.spec).map_err(Error::Invalid)?;
    let seccomp = crate::seccomp::profile_to_load(&checked.spec)?;
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
    let result = (|| {
        let dir = store.container_dir(id);
        fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let start_listener = bind_short(&dir, START_SOCKET)?;
        let console = ConsoleTarget::new(
            own_terminal,
            opts.console_socket.as_ref(),
            &dir,
            "console.sock",
        )?;
        let console_conn = console.path().map(connect_short).transpose()?;
        crate::cgroups::make_parent_cgroups_on_host(&cgroup_path)?;
        let process = checked.spec.process().clone().unwrap_or_default();
        let start_container_hooks = checked
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.start_container().clone())
            .filter(|h| !h.is_empty())
            .map(|hooks| StartContainerHooks {
                hooks,
                id: id.to_string(),
                bundle: checked.bundle.clone(),
                annotations: checked.spec.annotations().clone(),
                process_env: process.env().clone().unwrap_or_default(),
            });
        let cfg = InitConfig {
            id,
            spec: &checked.spec,
            bundle: &checked.bundle,
            rootfs: &checked.rootfs,
            no_pivot: opts.no_pivot,
            new_keyring: !opts.no_new_keyring,
            console: console_conn,
            start_listener,
            preserve_fds: opts.preserve_fds,
            seccomp,
            start_container_hooks,
        };
        let mut parent = CreateParent {
            id,
            spec: &checked.spec,
            bundle: &checked.bundle,
            cgroup_path: &cgroup_path,
        };
        let pid = crate::init::spawn_init(&cfg, &mut parent).map_err(|reason| Error::Setup {
            op: "create",
            id: id.to_string(),
            reason,
        })?;
        drop(cfg);
        let terminal = console.receive_own_master()?;
        let meta = ContainerMeta {
            bundle: checked.bundle.clone(),
            rootfs: checked.rootfs.clone(),
            init_start_time: process_start_time(pid),
            cgroup_path: cgroup_path.clone(),
        };
        record_created(store, id, &checked, pid, &meta)?;
        if let Some(pid_file) = &opts.pid_file {
            write_pid_file(pid_file, pid)?;
        }
        Ok(CreatedContainer { pid, terminal })
    })();
    if result.is_err() {
        clean_up_failed_create(store, id, &cgroup_path);
    }
    result
}

/// The socket in the container's private directory that `start` connects to.
pub const START_SOCKET: &str = "start.sock";

/// A path of `dir`'s entry that fits in a socket address however long `dir` is: through
/// /proc/self/fd (the directory's descriptor is returned with it and must outlive its use).
fn short_path(dir: &Path, name: &str) -> Result<(fs::File, String)> {
    let dir_fd = fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    let short = format!("/proc/self/fd/{}/{name}", dir_fd.as_raw_fd());
    Ok((dir_fd, short))
}

fn bind_short(dir: &Path, name: &str) -> Result<UnixListener> {
    let (_dir, short) = short_path(dir, name)?;
    let _ = fs::remove_file(dir.join(name));
    UnixListener::bind(&short).map_err(|e| Error::io("listen on", dir.join(name), e))
}

pub(crate) fn connect_short(path: &PathBuf) -> Result<UnixStream> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let (_dir, short) = short_path(dir, &name)?;
    UnixStream::connect(&short).map_err(|e| Error::io("connect to console socket", path, e))
}

/// runc contract: the PID file is complete when create returns (written atomically).
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("resolve", path, e))?
            .join(path)
    };
    crate::store::write_atomic(&path, pid.to_string().as_bytes())
}

/// `create`'s side of the hand-over with the init process.
struct CreateParent<'a> {
    id: &'a str,
    spec: &'a Spec,
    bundle: &'a Path,
    cgroup_path: &'a Path,
}

impl Parent for CreateParent<'_> {
    /// Puts the process into its cgroup with the configured limits and device rules, before it
    /// runs anything of the container's.
    fn place(&mut self, pid: i32) -> std::result::Result<Go, String> {
        place_in_cgroup(self.id, self.cgroup_path, self.spec, pid).map_err(|e| e.to_string())?;
        let has_cgroup_mount = self
            .spec
            .mounts()
            .iter()
            .flatten()
            .any(|m| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")));
        let mut go = Go {
            pid,
            ..Go::default()
        };
        if has_cgroup_mount {
            if crate::cgroup_mount::made_by_polis_runc() {
                let mountinfo = fs::read_to_string("/proc/self/mountinfo")
                    .map_err(|e| format!("read mountinfo: {e}"))?;
                let proc_cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .map_err(|e| format!("read /proc/{pid}/cgroup: {e}"))?;
                let binds = crate::cgroup_mount::hierarchies(&mountinfo, &proc_cgroup)?;
                go.cgroup_v1 = Some(
                    binds
                        .into_iter()
                        .map(|b| CgroupHierarchy {
                            name: b.name,
                            source: b.source,
                        })
                        .collect(),
                );
            } else {
                let rel = self
                    .cgroup_path
                    .strip_prefix("/")
                    .unwrap_or(self.cgroup_path);
                go.cgroup_v2_dir = Some(Path::new("/sys/fs/cgroup").join(rel));
            }
        }
        Ok(go)
    }

    fn runtime_hooks(&mut self, pid: i32) -> std::result::Result<(), String> {
        let Some(hooks) = self.spec.hooks() else {
            return Ok(());
        };
        let state = crate::hooks::creating_state(self.id, self.bundle, self.spec, pid);
        #[allow(deprecated)]
        let prestart = hooks.prestart();
        for (kind, list) in [
            ("prestart", prestart),
            ("createRuntime", hooks.create_runtime()),
        ] {
            if let Some(list) = list {
                crate::hooks::run_hooks_or_fail(kind, list, &state, None)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// config-linux.md#control-groups: the process joins the container's cgroup, which gets the
/// configured resources and device rules (runc's default device rules included). On v1 and hybrid
/// hosts polis-runc places the process and writes the device rules itself (`cgroups::place_v1`)
/// and asks libcgroups only for the other resources, when there are any.
pub fn place_in_cgroup(id: &str, cgroup_path: &Path, spec: &Spec, pid: i32) -> Result<()> {
    let given = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let rules = crate::device_filter::container_rules(Some(&given));
    let cgroup_err = |what: &str, e: &dyn std::fmt::Display| Error::Cgroup {
        id: id.to_string(),
        reason: format!("{what}: {e}"),
    };
    let unified = matches!(
        crate::cgroups::host_setup()?,
        libcgroups::common::CgroupSetup::Unified
    );
    let apply = |manager: &libcgroups::common::AnyCgroupManager, resources: &LinuxResources| {
        manager
            .apply(&ControllerOpt {
                resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| cgroup_err("apply resources", &e))
    };
    let mut rest = given.clone();
    if unified {
        rest.set_devices(Some(rules));
        let manager = manager_for(id, cgroup_path)?;
        manager
            .add_task(nix::unistd::Pid::from_raw(pid))
            .map_err(|e| cgroup_err("add the process", &e))?;
        apply(&manager, &rest)?;
        crate::cgroups::apply_device_rules_on_host(cgroup_path, Some(&given))?;
    } else {
        crate::cgroups::place_v1(id, cgroup_path, pid, &rules)?;
        rest.set_devices(None);
        if rest != LinuxResources::default() {
            apply(&manager_for(id, cgroup_path)?, &rest)?;
        }
    }
    crate::cgroups::apply_disable_oom_killer_on_host(id, cgroup_path, Some(&given))
}

/// Records the container: its state (runtime.md#state), polis-runc's own facts (the user's bundle
/// among them) and the config it was created from (`exec` builds its processes from it).
fn record_created(
    store: &Store,
    id: &str,
    checked: &CheckedBundle,
    pid: i32,
    meta: &ContainerMeta,
) -> Result<()> {
    let mut state = State::new(
        id,
        ContainerStatus::Created,
        Some(pid),
        checked.bundle.clone(),
    );
    state.annotations = checked.spec.annotations().clone();
    state.created = Some(chrono::Utc::now());
    state.creator = Some(nix::unistd::geteuid().as_raw());
    crate::store::save_state_file(&store.container_dir(id), &state, meta, Some(&checked.raw))
}

/// After a failed create: kill whatever reached the cgroup, remove it and the state directory.
fn clean_up_failed_create(store: &Store, id: &str, cgroup_path: &Path) {
    if let Ok(manager) = manager_for(id, cgroup_path) {
        let _ = manager.remove();
    }
    let _ = fs::remove_dir_all(store.container_dir(id));
    store.remove_lock(id);
}
