//! Prometheus metrics (`GET /metrics`): per-container families under cAdvisor's names and types, read from real
//! containers' cgroups on this (hybrid) host, Polis's own `polis_*` families and polisd's process metrics; and the
//! plain-HTTP listener of `[metrics] address`, which serves them and only the read-only API.
//!
//! The exposition format is Prometheus's text format 0.0.4 (`# HELP`, `# TYPE`, then `NAME{LABELS} VALUE` lines).

use super::{assert_nothing_left, run_detached, run_oom_child};
use polis_integration::eventually_some;
use polis_integration::polisd::{IMAGE, Polisd};
use std::time::Duration;

/// One scrape of the API socket's `/metrics`: 200, the text format's content type.
#[track_caller]
fn scrape(d: &Polisd) -> String {
    let reply = d.http("GET", "/metrics", None);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply
            .headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        reply.headers
    );
    reply.body
}

/// The value of the sample of `name` whose labels include each of `labels` (`name="web"`).
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = if let Some(r) = rest.strip_prefix('{') {
            let (set, value) = r.split_once("} ")?;
            (set, value)
        } else {
            ("", rest.strip_prefix(' ')?)
        };
        labels
            .iter()
            .all(|l| set.split(',').any(|p| p == *l))
            .then(|| value.trim().parse().ok())?
    })
}

/// cAdvisor's names and types of the per-container metrics this test expects (cAdvisor's
/// metrics/prometheus.go), each of which must be announced with `# TYPE NAME TYPE`. Not here:
/// `container_fs_{reads,writes}_bytes_total`, which have a sample only for a device with entries in the cgroup's
/// I/O statistics, and a v1 blkio hierarchy on a blk-mq kernel (this host) keeps none unless the cgroup has a
/// throttle limit; the unit tests read them from v1, hybrid and v2 fixture trees.
const CADVISOR: &[(&str, &str)] = &[
    ("container_cpu_usage_seconds_total", "counter"),
    ("container_cpu_user_seconds_total", "counter"),
    ("container_cpu_system_seconds_total", "counter"),
    ("container_cpu_cfs_periods_total", "counter"),
    ("container_cpu_cfs_throttled_periods_total", "counter"),
    ("container_cpu_cfs_throttled_seconds_total", "counter"),
    ("container_memory_usage_bytes", "gauge"),
    ("container_memory_working_set_bytes", "gauge"),
    ("container_memory_rss", "gauge"),
    ("container_memory_cache", "gauge"),
    ("container_memory_swap", "gauge"),
    ("container_memory_failcnt", "gauge"),
    ("container_spec_memory_limit_bytes", "gauge"),
    ("container_oom_events_total", "counter"),
    ("container_processes", "gauge"),
    ("container_threads", "gauge"),
    ("container_network_receive_bytes_total", "counter"),
    ("container_network_transmit_bytes_total", "counter"),
    ("container_network_receive_packets_total", "counter"),
    ("container_network_transmit_packets_total", "counter"),
    ("container_network_receive_errors_total", "counter"),
    ("container_network_transmit_errors_total", "counter"),
    ("container_start_time_seconds", "gauge"),
    ("container_last_seen", "gauge"),
];

/// Three real containers on the default bridge: a CPU-bound one whose `container_cpu_usage_seconds_total` rises
/// between two scrapes; a memory hog (80 MiB written to a tmpfs, which is charged to its cgroup and cannot be
/// reclaimed) whose working set shows it, with its memory limit; and one whose child is killed by the OOM killer
/// at its 32 MiB limit, which increments `container_oom_events_total`. Every cAdvisor name is announced with
/// cAdvisor's type; network counters per interface; Polis's own families: request latency by route, pulled
/// bytes, addresses in use on `bridge`, one shim per container with its RSS, restarts, the health check's state
/// (2: healthy); polisd's process metrics.
#[test]
fn metrics_follow_real_containers() {
    let d = Polisd::start("pd-metrics");
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "busy",
            "--health-cmd",
            "true",
            "--health-interval",
            "1s",
            IMAGE,
            "sh",
            "-c",
            "while :; do :; done",
        ],
    );
    run_detached(
        &d,
        &[
            "--name",
            "hog",
            "--memory",
            "256m",
            "--tmpfs",
            "/big:size=128m",
            IMAGE,
            "sh",
            "-c",
            "dd if=/dev/zero of=/big/f bs=1M count=80 && sleep 3600",
        ],
    );
    run_oom_child(&d, "oom");

    let first = scrape(&d);
    let busy = [r#"name="busy""#, r#"cpu="total""#];
    let cpu0 = sample(&first, "container_cpu_usage_seconds_total", &busy)
        .unwrap_or_else(|| panic!("busy's CPU:\n{first}"));
    let cpu1 = eventually_some(
        "busy's CPU counter rises by 0.2 s",
        Duration::from_secs(30),
        || {
            sample(&scrape(&d), "container_cpu_usage_seconds_total", &busy)
                .filter(|c| *c > cpu0 + 0.2)
        },
    );
    assert!(cpu1 > cpu0);

    let working_set = eventually_some(
        "hog's working set shows its 80 MiB",
        Duration::from_secs(30),
        || {
            sample(
                &scrape(&d),
                "container_memory_working_set_bytes",
                &[r#"name="hog""#],
            )
            .filter(|w| *w >= 80.0 * 1024.0 * 1024.0)
        },
    );
    let text = scrape(&d);
    let usage = sample(&text, "container_memory_usage_bytes", &[r#"name="hog""#]).unwrap();
    assert!(
        usage >= working_set,
        "usage {usage} < working set {working_set}"
    );
    assert_eq!(
        sample(
            &text,
            "container_spec_memory_limit_bytes",
            &[r#"name="hog""#]
        ),
        Some(256.0 * 1024.0 * 1024.0)
    );
    assert_eq!(
        sample(
            &text,
            "container_spec_memory_limit_bytes",
            &[r#"name="busy""#]
        ),
        Some(0.0),
        "no limit is 0, as cAdvisor says it"
    );

    eventually_some(
        "the OOM killer's kill in `oom` is counted",
        Duration::from_secs(60),
        || {
            sample(
                &scrape(&d),
                "container_oom_events_total",
                &[r#"name="oom""#],
            )
            .filter(|n| *n >= 1.0)
        },
    );

    d.docker(&["ps"]).ok();
    let text = scrape(&d);
    for (name, kind) in CADVISOR {
        assert!(
            text.lines().any(|l| l == format!("# TYPE {name} {kind}")),
            "{name} should be a {kind}:\n{text}"
        );
    }
    for name in ["busy", "hog", "oom"] {
        let l = format!(r#"name="{name}""#);
        let rx = sample(
            &text,
            "container_network_receive_packets_total",
            &[&l, r#"interface="eth0""#],
        );
        assert!(rx.is_some(), "{name}'s eth0:\n{text}");
        assert!(
            sample(&text, "container_start_time_seconds", &[&l]).is_some_and(|t| t > 1.7e9),
            "{name}'s start time"
        );
        assert!(
            sample(&text, "container_processes", &[&l]).is_some_and(|n| n >= 1.0),
            "{name}'s processes"
        );
        assert!(
            sample(&text, "polis_shim_rss_bytes", &[&l]).is_some_and(|n| n > 100_000.0),
            "{name}'s shim RSS:\n{text}"
        );
        assert_eq!(
            sample(&text, "polis_container_restarts_total", &[&l]),
            Some(0.0)
        );
    }
    assert_eq!(sample(&text, "polis_shim_processes", &[]), Some(3.0));
    // busy's health check passes: 2 (healthy); the others have none, so no sample.
    eventually_some(
        "busy is healthy in the metrics",
        Duration::from_secs(30),
        || sample(&scrape(&d), "polis_container_health", &[r#"name="busy""#]).filter(|v| *v == 2.0),
    );
    assert_eq!(
        sample(&text, "polis_container_health", &[r#"name="hog""#]),
        None
    );
    assert_eq!(
        sample(
            &text,
            "polis_ipam_addresses_in_use",
            &[r#"network="bridge""#]
        ),
        Some(3.0)
    );
    // 172.17.0.0/16 less the network, broadcast and gateway addresses, less the three containers'.
    assert_eq!(
        sample(&text, "polis_ipam_addresses_free", &[r#"network="bridge""#]),
        Some(65536.0 - 3.0 - 3.0)
    );
    assert!(
        sample(
            &text,
            "polis_api_request_duration_seconds_count",
            &[r#"api="rest""#, r#"operation="GET /containers/json""#]
        )
        .is_some_and(|n| n >= 1.0),
        "docker ps is timed under its route:\n{text}"
    );
    assert!(
        sample(&text, "polis_image_pull_bytes_total", &[]).is_some_and(|b| b > 100_000.0),
        "the pull's layer bytes"
    );
    assert!(
        sample(&text, "process_resident_memory_bytes", &[]).is_some_and(|b| b > 1e6),
        "polisd's own process metrics"
    );

    d.docker(&["rm", "-f", "busy", "hog", "oom"]).ok();
    let text = scrape(&d);
    assert!(
        !text.contains(r#"name="busy""#),
        "removed containers leave the scrape"
    );
    assert_nothing_left(&d);
}

/// `[metrics] address`: a plain-HTTP listener (off by default) answers `/metrics` (with the container labels the
/// config lists as `container_label_*`, as cAdvisor's whitelist) and the read-only API, and refuses what would
/// change state or hand out a container's data (403, Docker's error shape).
#[test]
fn metrics_listener_serves_only_reads() {
    let d = Polisd::start_with_config(
        "pd-metrics-tcp",
        "[metrics]\naddress = \"127.0.0.1:9323\"\ncontainer_labels = [\"com.example.team\"]\n",
    );
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "labelled",
            "--label",
            "com.example.team=blue",
            "--label",
            "other=x",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let curl = |args: &[&str]| {
        let out = d
            .netns()
            .command("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("run curl in polisd's network namespace");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().to_string(), body.to_string())
    };
    let (code, body) = curl(&["http://127.0.0.1:9323/metrics"]);
    assert_eq!(code, "200", "{body}");
    assert!(
        sample(
            &body,
            "container_memory_usage_bytes",
            &[
                r#"name="labelled""#,
                r#"container_label_com_example_team="blue""#
            ]
        )
        .is_some(),
        "{body}"
    );
    assert!(
        !body.contains("container_label_other"),
        "only listed labels"
    );
    let (code, body) = curl(&["http://127.0.0.1:9323/v1.41/containers/json"]);
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"/labelled\""), "{body}");
    for (method, path) in [
        ("POST", "/containers/labelled/stop"),
        ("DELETE", "/containers/labelled?force=1"),
        ("GET", "/containers/labelled/logs?stdout=1"),
        ("GET", "/containers/labelled/archive?path=/etc"),
    ] {
        let (code, body) = curl(&["-X", method, &format!("http://127.0.0.1:9323{path}")]);
        assert_eq!(code, "403", "{method} {path}: {body}");
        assert!(body.contains("\"message\""), "{body}");
    }
    assert_eq!(
        d.inspect("labelled", "{{.State.Status}}"),
        "running",
        "nothing changed"
    );
    d.docker(&["rm", "-f", "labelled"]).ok();
    assert_nothing_left(&d);
}

/// polisd's own log as JSON (`log_format = "json"`): an API error's body names its request (`request_id` beside
/// Docker's `message`, and the `X-Request-Id` header), and polisd's log has a JSON line of that request.
#[test]
fn errors_name_their_request_in_a_json_log() {
    let d = Polisd::start_with_config("pd-log-json", "log_format = \"json\"\n");
    let reply = d.http("GET", "/containers/no-such-thing/json", None);
    assert_eq!(reply.status, 404, "{reply:?}");
    let body = reply.json();
    let id = body["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        body["message"].as_str().unwrap().contains("no-such-thing"),
        "{body}"
    );
    assert!(
        reply
            .headers
            .to_ascii_lowercase()
            .contains(&format!("x-request-id: {id}")),
        "{}",
        reply.headers
    );
    let reply = d.http("GET", "/_ping", None);
    assert!(
        reply
            .headers
            .to_ascii_lowercase()
            .contains("x-request-id: "),
        "every answer has one"
    );
    let log = eventually_some(
        "polisd logs the failed request",
        Duration::from_secs(10),
        || {
            let log = d.log();
            log.contains(id).then_some(log)
        },
    );
    let line = log.lines().find(|l| l.contains(id)).unwrap();
    let event: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(event["span"]["request_id"], id, "{event}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "every line of the log is JSON: {line}"
        );
    }
}
