//! containerd-shim-polis-v2: the containerd shim v2 for polis-runc (runtime `io.containerd.polis.v2`).
//!
//! containerd starts it with `start`, talks to it over ttrpc (the Task API), and runs it with `delete` to clean up
//! after a shim that died. Every container operation is one polis-runc command, as containerd's runc shim runs runc.

mod bundle;
mod events;
mod lifecycle;
mod oom;
mod process;
mod runc;
mod service;
mod settings;
mod stats;
mod stdio;

fn main() {
    containerd_shim::run::<lifecycle::PolisShim>("io.containerd.polis.v2", None);
}
