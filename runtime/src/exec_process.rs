//! `exec`: start another process in a running container.
//!
//! runc builds the new process from the container's own `process` in config.json and applies the
//! command line on top (args, env, cwd, user, caps, no_new_privileges, terminal), so rlimits,
//! capabilities, apparmor and the user are the container's unless overridden; so does polis-runc.
//! The process joins every namespace and the cgroup of the container and gets its seccomp profile
//! (init/mod.rs, `spawn_exec`).

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::ContainerStatus;
use oci_spec::runtime::{Capabilities, Capability, Process, Spec};

use crate::console::ConsoleTarget;
use crate::error::{Error, Result};
use crate::store::{Store, status_name};

#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub id: String,
    /// `--process`: a process.json that replaces everything else.
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// `uid[:gid]` or a user name from the container's /etc/passwd.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserve_fds: i32,
}

/// `--user`: `uid[:gid]`, or names resolved through the container's /etc/passwd and /etc/group, as runc does.
/// The files are read inside the rootfs (polis_host::users, openat2 `RESOLVE_IN_ROOT`): a symbolic link the
/// container planted there, such as /etc/passwd -> /etc/shadow or a path out of the rootfs, is never followed
/// to a host file.
fn parse_user(rootfs: &Path, spec: &str) -> Result<(u32, Option<u32>)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let numeric_gid = g.map(str::parse::<u32>).transpose();
    if let (Ok(uid), Ok(gid)) = (u.parse::<u32>(), numeric_gid) {
        return Ok((uid, gid));
    }
    let user = polis_host::users::resolve_user(rootfs, spec)
        .map_err(|reason| Error::Invalid(format!("--user {spec:?}: {reason}")))?;
    Ok((user.uid, Some(user.gid)))
}

fn add_caps(process: &mut Process, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let mut extra = Capabilities::new();
    for name in names {
        let canonical = if name.to_ascii_uppercase().starts_with("CAP_") {
            name.to_ascii_uppercase()
        } else {
            format!("CAP_{}", name.to_ascii_uppercase())
        };
        let cap: Capability = serde_json::from_value(serde_json::Value::String(canonical))
            .map_err(|_| Error::Invalid(format!("unknown capability {name:?}")))?;
        extra.insert(cap);
    }
    let mut caps = process.capabilities().clone().unwrap_or_default();
    let merge = |set: &Option<Capabilities>| -> Option<Capabilities> {
        let mut s = set.clone().unwrap_or_default();
        s.extend(extra.iter().copied());
        Some(s)
    };
    caps.set_bounding(merge(caps.bounding()));
    caps.set_effective(merge(caps.effective()));
    caps.set_permitted(merge(caps.permitted()));
    caps.set_inheritable(merge(caps.inheritable()));
    process.set_capabilities(Some(caps));
    Ok(())
}

fn merge_env(base: Vec<String>, extra: &[String]) -> Vec<String> {
    let mut env = base;
    for e in extra {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|old| old.split('=').next() != Some(key));
        env.push(e.clone());
    }
    env
}

/// The process to run: `--process`, or the container's process with the flags applied.
fn build_process(opts: &ExecOptions, spec: &Spec, rootfs: &Path) -> Result<Process> {
    if let Some(path) = &opts.process_file {
        let data = fs::read(path).map_err(|e| Error::io("read process file", path, e))?;
        let mut process: Process = serde_json::from_slice(&data)
            .map_err(|e| Error::Invalid(format!("process file {}: {e}", path.display())))?;
        crate::bundle::drop_process_capabilities_not_held(&mut process);
        return Ok(process);
    }
    if opts.args.is_empty() {
        return Err(Error::Invalid("exec needs a command to run".into()));
    }
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(opts.args.clone()));
    let env = merge_env(process.env().clone().unwrap_or_default(), &opts.env);
    process.set_env(Some(env));
    if let Some(cwd) = &opts.cwd {
        if !cwd.is_absolute() {
            return Err(Error::Invalid(format!(
                "--cwd {} must be absolute",
                cwd.display()
            )));
        }
        process.set_cwd(cwd.clone());
    }
    if let Some(user) = &opts.user {
        let (uid, gid) = parse_user(rootfs, user)?;
        let mut u = process.user().clone();
        u.set_uid(uid);
        if let Some(gid) = gid {
            u.set_gid(gid);
        }
        process.set_user(u);
    }
    if !opts.additional_gids.is_empty() {
        let mut u = process.user().clone();
        u.set_additional_gids(Some(opts.additional_gids.clone()));
        process.set_user(u);
    }
    add_caps(&mut process, &opts.caps)?;
    crate::bundle::drop_process_capabilities_not_held(&mut process);
    if opts.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    process.set_terminal(Some(opts.tty));
    process.set_console_size(None);
    Ok(process)
}

/// Starts the process.
pub fn exec_process(store: &Store, opts: &ExecOptions) -> Result<ExecedProcess> {
    let id = opts.id.as_str();
    let _lock = store.lock(id, false)?;
    let loaded = store.load(id)?;
    let status = loaded.container.status();
    // runc runs processes in created containers too.
    if !matches!(status, ContainerStatus::Running | ContainerStatus::Created) {
        return Err(Error::WrongStatus {
            id: id.into(),
            op: "exec",
            status: status_name(status).into(),
            wanted: "a created or running container",
        });
    }
    let init_pid = loaded
        .container
        .pid()
        .ok_or(Error::NotRunning { id: id.into() })?
        .as_raw();
    let spec = loaded.spec()?;
    let mut process = build_process(opts, &spec, &loaded.meta.rootfs)?;
    // As for `run`: polis-runc proxies the terminal of a process it stays attached to.
    let own_terminal = process.terminal() == Some(true) && opts.console_socket.is_none();
    if own_terminal && let Some((rows, cols)) = crate::foreground::stdin_window_size() {
        // The process starts as soon as it is set up: the size must be there before it runs.
        let size = oci_spec::runtime::BoxBuilder::default()
            .height(u64::from(rows))
            .width(u64::from(cols))
            .build()
            .map_err(|e| Error::Invalid(format!("console size: {e}")))?;
        process.set_console_size(Some(size));
    }
    if own_terminal && opts.detach {
        return Err(Error::Invalid(
            "--tty without --console-socket: the terminal of a detached process must go to a \
             console socket"
                .into(),
        ));
    }
    if process.terminal() != Some(true) && opts.console_socket.is_some() {
        return Err(Error::Invalid(
            "--console-socket was given but the process has no terminal (--tty)".into(),
        ));
    }
    let console = ConsoleTarget::new(
        own_terminal,
        opts.console_socket.as_ref(),
        &store.container_dir(id),
        &format!("exec-console-{}.sock", std::process::id()),
    )?;
    let console_conn = console
        .path()
        .map(crate::setup::connect_short)
        .transpose()?;
    let cfg = crate::init::ExecConfig {
        spec: &spec,
        init_pid,
        process: &process,
        console: console_conn,
        preserve_fds: opts.preserve_fds,
        seccomp: crate::seccomp::profile_to_load(&spec)?,
        state: {
            let mut state = loaded.hook_state();
            state.status = status;
            state
        },
    };
    let mut place = |pid: i32| -> std::result::Result<(), String> {
        crate::cgroups::join_cgroups_of(id, init_pid, pid).map_err(|e| e.to_string())
    };
    let pid = crate::init::spawn_exec(&cfg, &mut place).map_err(|reason| Error::Setup {
        op: "exec in",
        id: id.to_string(),
        reason,
    })?;
    drop(cfg);
    let terminal = console.receive_own_master()?;
    if let Some(pid_file) = &opts.pid_file {
        crate::setup::write_pid_file(pid_file, pid)?;
    }
    Ok(ExecedProcess { pid, terminal })
}

/// A process started by `exec`.
pub struct ExecedProcess {
    /// Its PID; a child of this process.
    pub pid: i32,
    /// Its pty master, when polis-runc allocated its terminal (`exec --tty` that stays attached,
    /// without `--console-socket`).
    pub terminal: Option<OwnedFd>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_flags_override_config_env() {
        let env = merge_env(
            vec!["PATH=/bin".into(), "A=1".into()],
            &["A=2".into(), "B=3".into()],
        );
        assert_eq!(env, vec!["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn users_parse_numeric_and_by_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\npolis:x:1000:1001::/:/bin/sh\n",
        )
        .unwrap();
        assert_eq!(parse_user(dir.path(), "5").unwrap(), (5, None));
        assert_eq!(parse_user(dir.path(), "5:6").unwrap(), (5, Some(6)));
        assert_eq!(parse_user(dir.path(), "polis").unwrap(), (1000, Some(1001)));
        assert!(parse_user(dir.path(), "nobody-here").is_err());
        // A link the container planted to a host file is resolved inside the rootfs, where it leads nowhere.
        let host = tempfile::NamedTempFile::new().unwrap();
        fs::write(host.path(), "hostonly:x:4321:4321::/:/bin/sh\n").unwrap();
        fs::remove_file(dir.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(host.path(), dir.path().join("etc/passwd")).unwrap();
        let err = parse_user(dir.path(), "hostonly").unwrap_err().to_string();
        assert!(err.contains("hostonly"), "{err}");
    }
}
