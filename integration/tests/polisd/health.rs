//! Docker's HEALTHCHECK through polisd, driven by the docker CLI: `docker run --health-*`, an image's HEALTHCHECK,
//! `--no-healthcheck`, `docker inspect`'s `State.Health`, `docker ps`'s status and `health` filter, the
//! `health_status` events, and polisd's `restart_unhealthy`. Docker's documented behaviour quoted below is from the
//! Dockerfile reference (HEALTHCHECK), the `docker run` reference and the Engine API reference (v1.41).

use super::{assert_nothing_left, lines, run_detached, unix_now};
use polis_integration::containerd::build_image_with_config;
use polis_integration::polisd::{IMAGE, Polisd};
use polis_integration::{eventually, eventually_some};
use serde_json::{Value, json};
use std::time::Duration;

/// Long enough for a few one-second checks on a loaded machine.
const LIMIT: Duration = Duration::from_secs(30);

/// `docker inspect --format '{{json .State.Health}}' NAME` (`null` without a health check).
#[track_caller]
fn health(d: &Polisd, name: &str) -> Value {
    let text = d.inspect(name, "{{json .State.Health}}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("State.Health is not JSON ({e}): {text}"))
}

/// Waits until the container's `State.Health.Status` is `status`; returns `State.Health` then.
#[track_caller]
fn wait_for_health(d: &Polisd, name: &str, status: &str) -> Value {
    eventually_some(
        &format!("{name}'s State.Health.Status is {status}"),
        LIMIT,
        || {
            let h = health(d, name);
            (h["Status"] == status).then_some(h)
        },
    )
}

/// `docker ps --filter NAME --format {{.Status}}`.
#[track_caller]
fn ps_status(d: &Polisd, name: &str) -> String {
    let out = d.docker(&[
        "ps",
        "--filter",
        &format!("name={name}"),
        "--format",
        "{{.Status}}",
    ]);
    out.ok();
    out.stdout.trim().to_string()
}

/// The names `docker ps --filter health=STATUS` lists.
#[track_caller]
fn with_health(d: &Polisd, status: &str) -> Vec<String> {
    let out = d.docker(&[
        "ps",
        "--filter",
        &format!("health={status}"),
        "--format",
        "{{.Names}}",
    ]);
    out.ok();
    lines(&out)
}

/// A check's results as Docker shows them: `Log` holds `{Start, End, ExitCode, Output}`, oldest first, at most
/// five ("the last 5 results are kept", Engine API `Health.Log`: "the last few results").
#[track_caller]
fn exit_codes(h: &Value) -> Vec<i64> {
    let log = h["Log"].as_array().unwrap_or_else(|| panic!("no Log: {h}"));
    assert!(log.len() <= 5, "Docker keeps the last five results: {h}");
    for entry in log {
        for key in ["Start", "End"] {
            let t = entry[key].as_str().unwrap_or_default();
            assert!(
                t.contains('T') && t.len() > 20,
                "{key} should be an RFC 3339 time with nanoseconds: {h}"
            );
        }
        assert!(entry["Output"].is_string(), "{h}");
    }
    log.iter()
        .map(|e| e["ExitCode"].as_i64().unwrap())
        .collect()
}

/// The Dockerfile reference: "When a container has a healthcheck specified, it has a health status in addition to
/// its normal status. This status is initially `starting`. Whenever a health check passes, it becomes `healthy`
/// (whatever state it was previously in). After a certain number of consecutive failures, it becomes
/// `unhealthy`." `--health-retries 2`: two failed checks in a row; "The command's exit status indicates the health
/// status of the container ... 0: success ... 1: unhealthy". `docker ps` shows the health beside the status
/// (`Up 3 seconds (health: starting)`, `(unhealthy)`, `(healthy)`), its `health` filter selects by it, and "When the
/// health status of a container changes, a `health_status` event is generated with the new status". When polisd
/// restarts under the running container, the checks go on.
#[test]
fn health_goes_starting_unhealthy_healthy() {
    let mut d = Polisd::start("pd-health");
    d.pull();
    // A check a minute away: the container stays `starting` for the whole test.
    run_detached(
        &d,
        &[
            "--name",
            "slowcheck",
            "--health-cmd",
            "true",
            "--health-interval",
            "60s",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let h = health(&d, "slowcheck");
    assert_eq!(h["Status"], "starting", "{h}");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    let status = ps_status(&d, "slowcheck");
    assert!(
        status.starts_with("Up ") && status.ends_with("(health: starting)"),
        "docker ps: {status:?}"
    );
    assert_eq!(with_health(&d, "starting"), ["slowcheck"]);

    let since = unix_now();
    run_detached(
        &d,
        &[
            "--name",
            "hc",
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "1s",
            "--health-retries",
            "2",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let config = d.inspect("hc", "{{json .Config.Healthcheck}}");
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["Test"],
        json!(["CMD-SHELL", "test -f /tmp/ok"]),
        "{config}"
    );
    assert_eq!(config["Interval"], 1_000_000_000i64, "{config}");
    assert_eq!(config["Retries"], 2, "{config}");

    let h = wait_for_health(&d, "hc", "unhealthy");
    assert!(h["FailingStreak"].as_i64().unwrap() >= 2, "{h}");
    let codes = exit_codes(&h);
    assert!(
        codes.len() >= 2 && codes.iter().all(|c| *c == 1),
        "`test -f` of a missing file exits 1: {h}"
    );
    let status = ps_status(&d, "hc");
    assert!(status.ends_with("(unhealthy)"), "docker ps: {status:?}");
    assert_eq!(with_health(&d, "unhealthy"), ["hc"]);

    d.docker(&["exec", "hc", "touch", "/tmp/ok"]).ok();
    let h = wait_for_health(&d, "hc", "healthy");
    assert_eq!(h["FailingStreak"], 0, "{h}");
    assert_eq!(exit_codes(&h).last(), Some(&0), "{h}");
    let status = ps_status(&d, "hc");
    assert!(status.ends_with("(healthy)"), "docker ps: {status:?}");
    assert_eq!(with_health(&d, "healthy"), ["hc"]);
    assert_eq!(
        with_health(&d, "none"),
        Vec::<String>::new(),
        "both containers have checks"
    );

    let events = d.docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &(unix_now() + 1).to_string(),
        "--filter",
        "event=health_status",
        "--filter",
        "container=hc",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(
        lines(&events),
        ["health_status: unhealthy", "health_status: healthy"],
        "{events}"
    );

    // polisd restarts under the running container: its checks resume.
    d.kill_daemon();
    d.start_daemon();
    assert_eq!(health(&d, "hc")["Status"], "healthy");
    d.docker(&["exec", "hc", "rm", "/tmp/ok"]).ok();
    wait_for_health(&d, "hc", "unhealthy");

    // A stopped container keeps its last health; its checks stop with it.
    d.docker(&["stop", "-t", "0", "hc"]).ok();
    let after_stop = health(&d, "hc");
    assert_eq!(after_stop["Status"], "unhealthy", "{after_stop}");
    d.docker(&["rm", "-f", "hc", "slowcheck"]).ok();
    assert_nothing_left(&d);
}

/// The Dockerfile reference: "HEALTHCHECK [OPTIONS] CMD command (check container health by running a command
/// inside the container)" — an image's check runs in its containers; the `docker run` reference: `--health-*`
/// options override the image's ("Any of these options can be set ... overriding the image's HEALTHCHECK") and
/// `--no-healthcheck` "Disable any container-specified HEALTHCHECK" (the create request's Test `["NONE"]`): such a
/// container has no `State.Health` and `docker ps` shows no health. A container of an image without a check has
/// none either (`health=none`).
#[test]
fn image_healthcheck_is_honoured_and_can_be_disabled() {
    let d = Polisd::start("pd-health-image");
    d.pull();
    let dir = d.scratch().join("hc-image");
    let image = build_image_with_config(
        &dir,
        json!({
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sleep", "300"],
            "Healthcheck": {
                "Test": ["CMD-SHELL", "echo checked; exit 3"],
                "Interval": 1_000_000_000i64,
                "Retries": 1
            }
        }),
    );
    d.registry().push(&image.oci_archive, "healthy:latest");
    let _ = std::fs::remove_dir_all(&dir);
    let hc_image = IMAGE.replace("busybox", "healthy");
    d.docker(&["pull", &hc_image]).ok();

    run_detached(&d, &["--name", "fromimage", &hc_image]);
    let h = wait_for_health(&d, "fromimage", "unhealthy");
    let last = h["Log"].as_array().and_then(|l| l.last()).cloned().unwrap();
    assert_eq!(last["ExitCode"], 3, "any non-zero exit is a failure: {h}");
    assert_eq!(
        last["Output"], "checked\n",
        "the check's output is kept: {h}"
    );

    run_detached(
        &d,
        &["--name", "overridden", "--health-cmd", "true", &hc_image],
    );
    let config = d.inspect("overridden", "{{json .Config.Healthcheck}}");
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["Test"], json!(["CMD-SHELL", "true"]), "{config}");
    assert_eq!(
        config["Interval"], 1_000_000_000i64,
        "what the request leaves unset comes from the image: {config}"
    );
    wait_for_health(&d, "overridden", "healthy");

    run_detached(&d, &["--name", "disabled", "--no-healthcheck", &hc_image]);
    run_detached(&d, &["--name", "plain", IMAGE, "sleep", "300"]);
    for name in ["disabled", "plain"] {
        assert_eq!(health(&d, name), Value::Null, "{name} has no health check");
        let status = ps_status(&d, name);
        assert!(
            status.starts_with("Up ") && !status.contains('('),
            "docker ps shows no health for {name}: {status:?}"
        );
    }
    let mut none = with_health(&d, "none");
    none.sort();
    assert_eq!(none, ["disabled", "plain"]);
    assert_eq!(
        d.inspect("disabled", "{{json .Config.Healthcheck.Test}}"),
        "[\"NONE\"]"
    );
    d.docker(&["rm", "-f", "fromimage", "overridden", "disabled", "plain"])
        .ok();
    assert_nothing_left(&d);
}

/// dockerd's `validateHealthCheck`: "Interval in Healthcheck cannot be less than 1ms" (the Engine API: "It should
/// be 0 or at least 1000000 (1 ms). 0 means inherit."), "Retries in Healthcheck cannot be negative"; a bad request
/// is 400 and makes no container.
#[test]
fn bad_health_settings_are_refused() {
    let d = Polisd::start("pd-health-bad");
    d.pull();
    for (healthcheck, message) in [
        (
            json!({"Test": ["CMD", "true"], "Interval": 1000}),
            "Interval in Healthcheck cannot be less than 1ms",
        ),
        (
            json!({"Test": ["CMD", "true"], "Timeout": -1}),
            "Timeout in Healthcheck cannot be less than 1ms",
        ),
        (
            json!({"Test": ["CMD", "true"], "Retries": -2}),
            "Retries in Healthcheck cannot be negative",
        ),
        (
            json!({"Test": ["SHELL", "true"]}),
            "Unknown Healthcheck test type",
        ),
    ] {
        let body = json!({"Image": IMAGE, "Cmd": ["true"], "Healthcheck": healthcheck});
        let reply = d.http(
            "POST",
            "/v1.41/containers/create",
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(reply.status, 400, "{reply:?}");
        let text = reply.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(text.contains(message), "{message:?} in {reply:?}");
    }
    assert_nothing_left(&d);
}

/// polisd's `restart_unhealthy = true` (deploy/polisd.toml): a container with a restart policy other than `no`
/// that turns unhealthy is killed and restarted by its policy (`RestartCount` rises, as after any restart of the
/// policy: the Engine API's "RestartCount: the number of times the container was restarted"); a container without a
/// policy stays running, unhealthy, as dockerd leaves it.
#[test]
fn restart_unhealthy_restarts_by_policy() {
    let d = Polisd::start_with_config("pd-health-restart", "restart_unhealthy = true\n");
    d.pull();
    let since = unix_now();
    for (name, policy) in [("restarted", "always"), ("kept", "no")] {
        run_detached(
            &d,
            &[
                "--name",
                name,
                "--restart",
                policy,
                "--health-cmd",
                "false",
                "--health-interval",
                "1s",
                "--health-retries",
                "1",
                IMAGE,
                "sleep",
                "300",
            ],
        );
    }
    eventually(
        "the unhealthy container with --restart always was restarted",
        Duration::from_secs(60),
        || {
            d.inspect("restarted", "{{.RestartCount}}")
                .parse::<i64>()
                .is_ok_and(|n| n >= 1)
        },
    );
    eventually("the restarted container runs again", LIMIT, || {
        d.inspect("restarted", "{{.State.Running}}") == "true"
    });
    wait_for_health(&d, "kept", "unhealthy");
    assert_eq!(d.inspect("kept", "{{.RestartCount}}"), "0");
    assert_eq!(d.inspect("kept", "{{.State.Running}}"), "true");
    let events = d.docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &(unix_now() + 1).to_string(),
        "--filter",
        "container=restarted",
        "--format",
        "{{.Action}}",
    ]);
    let actions = lines(&events);
    let unhealthy = actions
        .iter()
        .position(|a| a == "health_status: unhealthy")
        .unwrap_or_else(|| panic!("no health_status: unhealthy: {events}"));
    assert!(
        actions[unhealthy..].iter().any(|a| a == "kill")
            && actions[unhealthy..].iter().any(|a| a == "restart"),
        "unhealthy, then killed and restarted: {actions:?}"
    );
    d.docker(&["rm", "-f", "restarted", "kept"]).ok();
    assert_nothing_left(&d);
}
