//! Hooks (config.md#posix-platform-hooks), run at the points runtime.md#lifecycle names:
//! - prestart and createRuntime by `create` in the runtime's namespaces, once the container's
//!   mounts are made (init/mod.rs), createContainer by the init process in the container's
//!   namespaces before pivot_root, startContainer by the init process after `start`, right
//!   before the program; the first failure of any of them fails the operation.
//! - poststart and poststop: "If any poststart/poststop hook fails, the runtime MUST log a
//!   warning, but the remaining hooks and lifecycle continue", so they run one by one here.
//!
//! Each gets the container's state on stdin, with the user's bundle.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use libcontainer::container::{ContainerStatus, State};
use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

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

/// The state hooks get before the program runs: status "creating", the init process's host PID
/// and the user's bundle.
pub fn creating_state(id: &str, bundle: &Path, spec: &oci_spec::runtime::Spec, pid: i32) -> State {
    hook_state(
        id,
        ContainerStatus::Creating,
        pid,
        bundle,
        spec.annotations().clone(),
    )
}

/// runtime.md#state as hooks get it on stdin.
fn hook_state(
    id: &str,
    status: ContainerStatus,
    pid: i32,
    bundle: &Path,
    annotations: Option<HashMap<String, String>>,
) -> State {
    let mut state = State::new(id, status, Some(pid), bundle.to_path_buf());
    state.oci_version = crate::OCI_VERSION.to_string();
    state.annotations = annotations;
    state
}

/// Runs hooks in order; the first failure is the error (runtime.md#lifecycle: prestart,
/// createRuntime, createContainer and startContainer failures stop the container).
pub fn run_hooks_or_fail(
    kind: &str,
    hooks: &[Hook],
    state: &State,
    env: Option<&HashMap<String, String>>,
) -> Result<()> {
    for (index, hook) in hooks.iter().enumerate() {
        let one = vec![hook.clone()];
        libcontainer::hooks::run_hooks(Some(&one), Some(state), None, None, env).map_err(|e| {
            Error::Invalid(format!(
                "{} of container {}: {}",
                crate::bundle::describe_hook(kind, index, hook),
                state.id,
                hook_failure(hook, &e)
            ))
        })?;
    }
    Ok(())
}

/// createContainer hooks, from the init process in the container's namespaces.
pub fn run_in_container(
    kind: &str,
    hooks: &[Hook],
    id: &str,
    bundle: &Path,
    spec: &oci_spec::runtime::Spec,
    pid: i32,
) -> std::result::Result<(), String> {
    run_hooks_or_fail(kind, hooks, &creating_state(id, bundle, spec, pid), None)
        .map_err(|e| e.to_string())
}

/// startContainer hooks, run by the init process inside the container right before the user's
/// program (runtime.md#lifecycle step 7 of `start`).
#[derive(Clone)]
pub struct StartContainerHooks {
    pub hooks: Vec<Hook>,
    pub id: String,
    pub bundle: PathBuf,
    pub annotations: Option<HashMap<String, String>>,
    /// process.env: what hooks without an env of their own get.
    pub process_env: Vec<String>,
}

impl StartContainerHooks {
    /// Runs the hooks in order; the first failure is returned (runtime.md#lifecycle: "If any
    /// startContainer hook fails, the runtime MUST generate an error and stop the container").
    /// Hooks without an env get the process's environment, as runc gives them.
    pub fn run(&self) -> Result<()> {
        let state = hook_state(
            &self.id,
            ContainerStatus::Created,
            std::process::id() as i32,
            &self.bundle,
            self.annotations.clone(),
        );
        let env: HashMap<String, String> = self
            .process_env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect();
        run_hooks_or_fail("startContainer", &self.hooks, &state, Some(&env))
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
