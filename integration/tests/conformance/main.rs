//! The conformance suite: every file is one area of the OCI runtime-spec (or of runc's command-line contract that
//! containerd, podman and go-runc rely on), and each `conformance_test!` runs twice, `NAME::runc` against Debian's runc
//! (the control) and `NAME::polis` against polis-runc. One test binary for all of them: each binary links the whole
//! harness, and a release link is the slow part of a build on two cores.

mod badinput;
mod cgroup_v2;
mod cgroups;
mod cli;
mod clients;
mod delete;
mod devices;
mod exec;
mod flags;
mod hooks;
mod hostname;
mod idmap;
mod kill;
mod lifecycle;
mod mounts;
mod namespaces;
mod paths;
mod pidfile;
mod process;
mod reliability;
mod seccomp;
mod security;
mod sysctl;
mod terminal;
