//! polisd killed with SIGKILL in the middle of create, start, stop and remove, then started again: the database and
//! the running shims agree, no container is lost or doubled, and nothing leaks (issue: "polisd killed with SIGKILL
//! in the middle of create, start, stop and remove"). Each test starts polisd with `POLISD_CRASH_AT` naming one of
//! its crash points (api-gateway/src/core/crash.rs), so the kill lands between the same two steps every time.

use super::{assert_nothing_left, lines, run_detached, wait_for_log};
use polis_integration::polisd::{IMAGE, Polisd};
use polis_integration::{eventually, process_alive};
use std::time::Duration;

/// The veth links in polisd's network namespace (the host ends of container interfaces).
fn veths(d: &Polisd) -> Vec<String> {
    let out = d
        .netns()
        .command("ip")
        .args(["-o", "link", "show", "type", "veth"])
        .output()
        .expect("run ip");
    assert!(out.status.success(), "ip link show failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn volumes(d: &Polisd) -> Vec<String> {
    let out = d.docker(&["volume", "ls", "-q"]);
    out.ok();
    lines(&out)
}

/// Restarts polisd set to crash at `point`, runs `args` (which fails: the connection drops), and waits for the
/// crash; then starts polisd normally.
fn crash_during(d: &mut Polisd, point: &str, args: &[&str]) {
    d.kill_daemon();
    d.start_daemon_crashing_at(point);
    let out = d.docker(args);
    assert!(
        !out.success(),
        "`docker {}` should fail when polisd dies in the middle: {out}",
        args.join(" ")
    );
    d.wait_for_crash();
    d.start_daemon();
}

/// Everything is gone once the test removed its containers: no container, directory, mount, shim, veth or
/// volume.
#[track_caller]
fn assert_nothing_leaked(d: &Polisd) {
    assert_nothing_left(d);
    eventually("no shim process is left", Duration::from_secs(10), || {
        d.shim_processes().is_empty()
    });
    assert_eq!(veths(d), Vec::<String>::new(), "no veth should be left");
    assert_eq!(volumes(d), Vec::<String>::new(), "no volume should be left");
}

/// A create cut short after its files are made but before its database row: after the restart there is no
/// container (`docker ps -a` is empty, its files and anonymous volume are gone), and its name is free again.
#[test]
fn crash_in_create_leaves_no_container_and_frees_the_name() {
    let mut d = Polisd::start("pd-crash-create");
    d.pull();
    crash_during(
        &mut d,
        "create",
        &["create", "--name", "half", "-v", "/data", IMAGE, "true"],
    );
    assert_nothing_leaked(&d);
    d.docker(&["create", "--name", "half", IMAGE, "true"]).ok();
    d.docker(&["rm", "half"]).ok();
    assert_nothing_leaked(&d);
}

/// A start cut short once the task runs under its shim but before the database says so: after the restart the
/// container is not running and has no shim or process left (containerd's rule: a task whose start was not
/// recorded is deleted), and it starts again normally on its network.
#[test]
fn crash_in_start_leaves_a_stopped_container_that_starts_again() {
    let mut d = Polisd::start("pd-crash-start");
    d.pull();
    d.docker(&["create", "--name", "halfstart", IMAGE, "sleep", "300"])
        .ok();
    crash_during(&mut d, "start", &["start", "halfstart"]);
    assert_eq!(d.inspect("halfstart", "{{.State.Running}}"), "false");
    assert_eq!(
        super::names(&d, &["-a"]),
        vec!["halfstart"],
        "exactly one container"
    );
    eventually(
        "the shim of the unfinished start is gone",
        Duration::from_secs(10),
        || d.shim_processes().is_empty(),
    );
    assert_eq!(
        veths(&d),
        Vec::<String>::new(),
        "no veth of the unfinished start"
    );
    d.docker(&["start", "halfstart"]).ok();
    assert_eq!(d.inspect("halfstart", "{{.State.Running}}"), "true");
    let ip = d.inspect("halfstart", "{{.NetworkSettings.IPAddress}}");
    assert!(!ip.is_empty(), "the restarted container has an address");
    d.docker(&["rm", "-f", "halfstart"]).ok();
    assert_nothing_leaked(&d);
}

/// A stop cut short after the stop signal was sent: the container, which exits on SIGTERM with 7, does so while
/// polisd is down; after the restart it shows as exited with 7 (the shim kept the exit for polisd), and nothing of
/// it runs.
#[test]
fn crash_in_stop_records_the_exit_that_happened_meanwhile() {
    let mut d = Polisd::start("pd-crash-stop");
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "halfstop",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done",
        ],
    );
    wait_for_log(&d, "halfstop", "ready");
    let pid: i32 = d.inspect("halfstop", "{{.State.Pid}}").parse().unwrap();
    crash_during(&mut d, "stop", &["stop", "-t", "30", "halfstop"]);
    eventually(
        "the container's process exits",
        Duration::from_secs(10),
        || !process_alive(pid),
    );
    eventually(
        "docker inspect shows the container exited",
        Duration::from_secs(10),
        || d.inspect("halfstop", "{{.State.Running}}") == "false",
    );
    assert_eq!(
        d.inspect("halfstop", "{{.State.ExitCode}}"),
        "7",
        "{}",
        d.inspect("halfstop", "{{.State.Error}}")
    );
    assert_eq!(
        super::names(&d, &["-a"]),
        vec!["halfstop"],
        "exactly one container"
    );
    d.docker(&["rm", "halfstop"]).ok();
    assert_nothing_leaked(&d);
}

/// A remove cut short after the container's files are gone but before its database row: after the restart the
/// container is listed once, as dead (dockerd's state for a container whose removal failed), and a second
/// `docker rm -v` removes it and its anonymous volume.
#[test]
fn crash_in_remove_leaves_a_dead_container_that_rm_removes() {
    let mut d = Polisd::start("pd-crash-remove");
    d.pull();
    d.docker(&["create", "--name", "halfrm", "-v", "/data", IMAGE, "true"])
        .ok();
    crash_during(&mut d, "remove", &["rm", "-v", "halfrm"]);
    assert_eq!(
        super::names(&d, &["-a"]),
        vec!["halfrm"],
        "exactly one container"
    );
    assert_eq!(d.inspect("halfrm", "{{.State.Status}}"), "dead");
    d.docker(&["rm", "-v", "halfrm"]).ok();
    assert_nothing_leaked(&d);
}
