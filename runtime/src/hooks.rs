//! The hooks polis-runc runs itself, because the runtime-spec says a failure must not stop the
//! lifecycle: poststart and poststop (config.md#posix-platform-hooks: "If any poststart/poststop
//! hook fails, the runtime MUST log a warning, but the remaining hooks and lifecycle continue").
//! libcontainer 0.7 stops at the first failing hook, so they are taken out of its copy of the
//! config at create time and run here one by one.

use std::path::Path;

use libcontainer::config::YoukiConfig;
use libcontainer::container::State;
use oci_spec::runtime::Hook;

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
    for hook in hooks.into_iter().flatten() {
        let one = vec![hook.clone()];
        if let Err(e) = libcontainer::hooks::run_hooks(Some(&one), Some(state), None, None, None) {
            tracing::warn!(
                "{kind} hook {} of container {} failed: {e}",
                hook.path().display(),
                state.id
            );
        }
    }
}
