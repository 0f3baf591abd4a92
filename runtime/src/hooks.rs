//! Hooks: what polis-runc adds to libcontainer's.
//!
//! - poststart and poststop run here, because the runtime-spec says a failure must not stop the
//!   lifecycle (config.md#posix-platform-hooks: "If any poststart/poststop hook fails, the runtime
//!   MUST log a warning, but the remaining hooks and lifecycle continue"). libcontainer 0.7 stops
//!   at the first failing hook, so they are taken out of its copy of the config at create time and
//!   run here one by one.
//! - prestart, createRuntime and createContainer run through a trampoline. libcontainer hands
//!   hooks the bundle it read config.json from, and polis-runc gives it a rewritten copy in the
//!   container's private directory; the spec wants "the absolute path to the container's bundle
//!   directory" (runtime.md#state). Each such hook becomes polis-runc itself, started as
//!   `polis-runc-hook BUNDLE PATH ARGV...`: it puts the user's bundle into the state it reads on
//!   stdin and executes the real hook in its place, with the same environment, so the hook's
//!   exit status, timeout and process are the real hook's.
//! - startContainer hooks run in the container after pivot_root, where no host binary can be
//!   reached: polis-runc's executor runs them, at the point libcontainer would, with the user's
//!   bundle, status "created" and the process's own PID, as runc does.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcontainer::config::YoukiConfig;
use libcontainer::container::{ContainerStatus, State};
use oci_spec::runtime::{Hook, Hooks};

use crate::error::{Error, Result};

/// Removes poststart and poststop hooks from libcontainer's saved config of a container.
pub fn take_lifecycle_hooks_from_libcontainer(container_dir: &Path, id: &str) -> Result<()> {
    let mut config = YoukiConfig::load(container_dir)
        .map_err(|e| Error::Invalid(format!("load saved config of container {id}: {e}")))?;
    let Some(hooks) = config.hooks.as_mut() else {
        return Ok(());
    };
    if hooks.poststart().is_none() && hooks.poststop().is_none() {
        return Ok(());
    }
    hooks.set_poststart(None);
    hooks.set_poststop(None);
    config
        .save(container_dir)
        .map_err(|e| Error::Invalid(format!("save config of container {id}: {e}")))
}

/// Runs each hook with the container's state on stdin; a failure is a warning.
pub fn run_hooks_warning_on_failure(kind: &str, hooks: Option<&Vec<Hook>>, state: &State) {
    for (index, hook) in hooks.into_iter().flatten().enumerate() {
        let one = vec![hook.clone()];
        if let Err(e) = libcontainer::hooks::run_hooks(Some(&one), Some(state), None, None, None) {
            tracing::warn!(
                "{} of container {} failed: {}",
                crate::bundle::describe_hook(kind, index, hook),
                state.id,
                hook_failure(hook, &e)
            );
        }
    }
}

/// argv[0] under which polis-runc acts as the hook trampoline.
const TRAMPOLINE_ARGV0: &str = "polis-runc-hook";

/// The binary libcontainer starts for a trampolined hook. prestart and createRuntime hooks are
/// started by polis-runc itself, createContainer hooks by the container's init process before
/// pivot_root: both run polis-runc's sealed copy (seal.rs), which /proc/self/exe names.
const TRAMPOLINE_PATH: &str = "/proc/self/exe";

/// True when polis-runc was started as the hook trampoline.
pub fn invoked_as_trampoline(argv0: &str) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|n| n == TRAMPOLINE_ARGV0)
}

/// The hooks of a config, rewritten for libcontainer: those it runs before the container
/// starts go through the trampoline, startContainer hooks are taken out (the executor runs
/// them). Returns the startContainer hooks.
pub fn route_hooks_for_libcontainer(
    raw: &mut serde_json::Value,
    hooks: &Hooks,
    bundle: &Path,
) -> Result<Option<Vec<Hook>>> {
    let routed = |list: &Option<Vec<Hook>>| -> Result<serde_json::Value> {
        let list: Vec<Hook> = list
            .iter()
            .flatten()
            .map(|h| through_trampoline(h, bundle))
            .collect();
        serde_json::to_value(list).map_err(|e| Error::Invalid(format!("encode hooks: {e}")))
    };
    for (key, list) in [
        ("prestart", {
            #[allow(deprecated)]
            hooks.prestart()
        }),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
    ] {
        if list.is_some() {
            raw["hooks"][key] = routed(list)?;
        }
    }
    if let Some(obj) = raw["hooks"].as_object_mut() {
        obj.remove("startContainer");
    }
    Ok(hooks.start_container().clone().filter(|h| !h.is_empty()))
}

fn through_trampoline(hook: &Hook, bundle: &Path) -> Hook {
    let real_path = hook.path().to_string_lossy().into_owned();
    let mut args = vec![
        TRAMPOLINE_ARGV0.to_string(),
        bundle.to_string_lossy().into_owned(),
        real_path.clone(),
    ];
    match hook.args() {
        Some(real_args) if !real_args.is_empty() => args.extend(real_args.iter().cloned()),
        _ => args.push(real_path),
    }
    let mut routed = hook.clone();
    routed.set_path(PathBuf::from(TRAMPOLINE_PATH));
    routed.set_args(Some(args));
    routed
}

/// `polis-runc-hook BUNDLE PATH ARGV0 [ARG...]`: reads the state on stdin, sets its bundle,
/// and executes PATH with it on stdin. Returns only on error.
pub fn run_trampoline(args: &[String]) -> Error {
    let [bundle, path, argv @ ..] = args else {
        return Error::Invalid("usage: polis-runc-hook BUNDLE PATH ARGV0 [ARG...]".into());
    };
    let fail =
        |what: &str, e: &dyn std::fmt::Display| Error::Invalid(format!("hook {path}: {what}: {e}"));
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        return fail("read the state on stdin", &e);
    }
    let mut state: serde_json::Value = match serde_json::from_slice(&input) {
        Ok(v) => v,
        Err(e) => return fail("parse the state on stdin", &e),
    };
    state["bundle"] = serde_json::Value::String(bundle.clone());
    let stdin = match state_as_stdin(&state) {
        Ok(fd) => fd,
        Err(e) => return fail("pass the state on", &e),
    };
    if let Err(e) = nix::unistd::dup2(stdin.as_raw_fd(), 0) {
        return fail("pass the state on", &e);
    }
    drop(stdin);
    let to_c = |s: &String| CString::new(s.as_bytes()).unwrap_or_default();
    let argv: Vec<CString> = argv.iter().map(to_c).collect();
    let err = nix::unistd::execv(&to_c(path), &argv).unwrap_err();
    fail("execute", &err)
}

/// The state in an anonymous file, positioned at its start.
fn state_as_stdin(state: &serde_json::Value) -> std::io::Result<OwnedFd> {
    let fd =
        nix::sys::memfd::memfd_create(c"hook-state", nix::sys::memfd::MemFdCreateFlag::empty())
            .map_err(std::io::Error::from)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(state.to_string().as_bytes())?;
    std::io::Seek::rewind(&mut file)?;
    Ok(file.into())
}

/// startContainer hooks, run by the executor inside the container right before the user's
/// program (runtime.md#lifecycle step 7 of `start`).
#[derive(Clone)]
pub struct StartContainerHooks {
    pub hooks: Vec<Hook>,
    pub id: String,
    pub bundle: PathBuf,
    pub annotations: Option<HashMap<String, String>>,
}

impl StartContainerHooks {
    /// Runs the hooks in order; the first failure is returned (runtime.md#lifecycle: "If any
    /// startContainer hook fails, the runtime MUST generate an error and stop the container").
    /// Hooks without an env get the process's environment, as runc and libcontainer give them.
    pub fn run(&self) -> Result<()> {
        let state = State {
            oci_version: crate::OCI_VERSION.to_string(),
            id: self.id.clone(),
            status: ContainerStatus::Created,
            pid: Some(std::process::id() as i32),
            bundle: self.bundle.clone(),
            annotations: self.annotations.clone(),
            created: None,
            creator: None,
            use_systemd: false,
            clean_up_intel_rdt_subdirectory: None,
            intel_rdt_dir: None,
            intel_rdt_monitoring_dir: None,
        };
        let env: HashMap<String, String> = std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        for (index, hook) in self.hooks.iter().enumerate() {
            let one = vec![hook.clone()];
            libcontainer::hooks::run_hooks(Some(&one), Some(&state), None, None, Some(&env))
                .map_err(|e| {
                    Error::Invalid(format!(
                        "{} of container {}: {}",
                        crate::bundle::describe_hook("startContainer", index, hook),
                        self.id,
                        hook_failure(hook, &e)
                    ))
                })?;
        }
        Ok(())
    }
}

/// Why a hook failed, in words: libcontainer reports a hook it could not execute only as exit
/// code 127 (its child's execve failed), so a missing or non-executable path is named here.
fn hook_failure(hook: &Hook, err: &libcontainer::hooks::HookError) -> String {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(hook.path()) {
        Err(e) => format!("cannot execute it: {e}"),
        Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => {
            "cannot execute it: not an executable file".to_string()
        }
        Ok(_) => match std::error::Error::source(err) {
            Some(cause) => format!("{err}: {cause}"),
            None => err.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trampolined_hook_keeps_argv_env_and_timeout() {
        let hook: Hook = serde_json::from_value(serde_json::json!({
            "path": "/usr/bin/hook", "args": ["hook", "-x"], "env": ["A=1"], "timeout": 5
        }))
        .unwrap();
        let routed = through_trampoline(&hook, Path::new("/b"));
        assert_eq!(routed.path(), Path::new(TRAMPOLINE_PATH));
        assert_eq!(
            routed.args().as_deref(),
            Some(&["polis-runc-hook", "/b", "/usr/bin/hook", "hook", "-x"].map(String::from)[..])
        );
        assert_eq!(routed.env(), hook.env());
        assert_eq!(routed.timeout(), Some(5));
    }

    #[test]
    fn hook_without_args_gets_its_path_as_argv0() {
        let hook: Hook = serde_json::from_value(serde_json::json!({"path": "/h"})).unwrap();
        let routed = through_trampoline(&hook, Path::new("/b"));
        assert_eq!(
            routed.args().as_deref(),
            Some(&["polis-runc-hook", "/b", "/h", "/h"].map(String::from)[..])
        );
        assert!(invoked_as_trampoline("polis-runc-hook"));
        assert!(!invoked_as_trampoline("polis-runc"));
    }
}
