//! Crash points, for the tests that kill polisd in the middle of an operation (integration/tests/polisd/crash.rs):
//! with `POLISD_CRASH_AT=<point>` in its environment, polisd kills itself with SIGKILL when it reaches that point,
//! exactly as a crash or `kill -9` would end it there. Without the variable a point costs one comparison.
//!
//! The points, each between two steps whose half-done state polisd must repair when it starts again
//! (core/leftovers.rs and `recover`):
//! - `create`: the container's files are made, its database row is not;
//! - `start`: the task runs under its shim, the database still says created;
//! - `stop`: the stop signal is sent, the exit is not yet recorded;
//! - `remove`: the container's files are gone, its database row is not.

use std::sync::OnceLock;

pub const VARIABLE: &str = "POLISD_CRASH_AT";

/// Kills polisd with SIGKILL if `POLISD_CRASH_AT` names `point`.
pub fn point(point: &str) {
    static AT: OnceLock<Option<String>> = OnceLock::new();
    if AT.get_or_init(|| std::env::var(VARIABLE).ok()).as_deref() == Some(point) {
        tracing::warn!(point, "{VARIABLE}: polisd kills itself here");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}
