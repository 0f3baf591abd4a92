//! Alert rules (`[alerts]` of polisd.toml) end to end: a failing health check and a memory working set near its
//! limit fire their alerts after their `for`, to a webhook receiver the test runs (Alertmanager's webhook JSON,
//! version 4), to the event stream (`alert: firing`) and to `GET /polis/alerts`; fixed, they resolve. The
//! receiver refuses the first delivery (503): polisd retries it, and each alert arrives firing once and resolved
//! once. An OOM kill fires its rule too.

use super::{assert_nothing_left, run_detached, run_oom_child};
use polis_integration::eventually_some;
use polis_integration::polisd::{IMAGE, Polisd};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

/// An HTTP receiver on 127.0.0.1:PORT of polisd's network namespace: it keeps each POSTed JSON body it answered
/// 200, and answers 503 to the first `refuse_first` requests.
struct Receiver {
    received: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(d: &Polisd, port: u16, refuse_first: usize) -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let ns = std::fs::File::open(d.netns().path()).expect("open the netns");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (received, refused, stop) = (received.clone(), refused.clone(), stop.clone());
            std::thread::spawn(move || {
                // SAFETY: setns on an open namespace file changes only this thread's network namespace.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
                let listener =
                    std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
                ready_tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    // Wait up to 100 ms for a connection, so that `stop` is seen.
                    let mut pfd = libc::pollfd {
                        fd: listener.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                        continue;
                    }
                    let Ok((stream, _)) = listener.accept() else {
                        continue;
                    };
                    let body = read_request(&stream);
                    let mut n = refused.lock().unwrap();
                    let mut stream = stream;
                    if *n < refuse_first {
                        *n += 1;
                        let _ = stream.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    } else {
                        let _ = stream.write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                        if let Ok(v) = serde_json::from_slice(&body) {
                            received.lock().unwrap().push(v);
                        }
                    }
                }
            })
        };
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the receiver listens");
        Receiver {
            received,
            refused,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// The notifications received for `alertname` on container `name`, as their statuses in order.
    fn statuses(&self, alertname: &str, name: &str) -> Vec<String> {
        self.received()
            .iter()
            .filter(|v| {
                v["commonLabels"]["alertname"] == alertname && v["commonLabels"]["name"] == name
            })
            .map(|v| v["status"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.1 request's body (by its Content-Length).
fn read_request(stream: &std::net::TcpStream) -> Vec<u8> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return Vec::new();
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    body
}

const CONFIG: &str = r#"
[alerts]
interval = "1s"
webhooks = ["http://127.0.0.1:9099/hook"]

[[alerts.rules]]
name = "ContainerUnhealthy"
condition = "unhealthy"
for = "2s"
labels = { severity = "critical" }
annotations = { summary = "a health check fails" }

[[alerts.rules]]
name = "ContainerMemoryHigh"
condition = "memory_working_set_ratio"
above = 0.9
for = "1s"

[[alerts.rules]]
name = "ContainerOomKilled"
condition = "oom_kill"
within = "5s"
"#;

#[track_caller]
fn wait_statuses(r: &Receiver, alertname: &str, name: &str, want: &[&str]) {
    eventually_some(
        &format!("{alertname} on {name} arrives as {want:?}"),
        LIMIT,
        || (r.statuses(alertname, name) == want).then_some(()),
    );
}

#[test]
fn alerts_fire_to_a_webhook_and_resolve() {
    let d = Polisd::start_with_config("pd-alerts", CONFIG);
    let receiver = Receiver::start(&d, 9099, 1);
    d.pull();
    run_detached(
        &d,
        &[
            "--name",
            "sick",
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    run_detached(
        &d,
        &[
            "--name",
            "full",
            "--memory",
            "64m",
            "--tmpfs",
            "/big:size=128m",
            IMAGE,
            "sh",
            "-c",
            "dd if=/dev/zero of=/big/f bs=1M count=60 && sleep 300",
        ],
    );

    // Firing: the unhealthy container (the first delivery was refused and retried) and the full one.
    wait_statuses(&receiver, "ContainerUnhealthy", "sick", &["firing"]);
    wait_statuses(&receiver, "ContainerMemoryHigh", "full", &["firing"]);
    assert_eq!(
        *receiver.refused.lock().unwrap(),
        1,
        "one delivery was refused, then retried"
    );
    let firing = receiver
        .received()
        .into_iter()
        .find(|v| v["commonLabels"]["alertname"] == "ContainerUnhealthy")
        .unwrap();
    assert_eq!(firing["version"], "4", "{firing}");
    assert_eq!(firing["receiver"], "polisd");
    let alert = &firing["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["image"], IMAGE);
    assert_eq!(alert["annotations"]["summary"], "a health check fails");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");

    let listed = d.http("GET", "/polis/alerts", None).json();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["labels"]["alertname"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"ContainerUnhealthy") && names.contains(&"ContainerMemoryHigh"),
        "{listed}"
    );
    assert_eq!(listed[0]["status"]["state"], "active", "{listed}");
    let metrics = d.http("GET", "/metrics", None).body;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("polis_container_health{")
                && l.contains(r#"name="sick""#)
                && l.ends_with(" 0")),
        "unhealthy is 0:\n{metrics}"
    );

    // Fixed: both resolve, once.
    d.docker(&["exec", "sick", "touch", "/tmp/ok"]).ok();
    d.docker(&["exec", "full", "rm", "/big/f"]).ok();
    wait_statuses(
        &receiver,
        "ContainerUnhealthy",
        "sick",
        &["firing", "resolved"],
    );
    wait_statuses(
        &receiver,
        "ContainerMemoryHigh",
        "full",
        &["firing", "resolved"],
    );
    let resolved = receiver
        .received()
        .into_iter()
        .rfind(|v| v["commonLabels"]["alertname"] == "ContainerUnhealthy")
        .unwrap();
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");

    // An OOM kill in a container's cgroup fires its rule.
    run_oom_child(&d, "oom");
    eventually_some("the OOM kill's alert", LIMIT, || {
        receiver
            .statuses("ContainerOomKilled", "oom")
            .first()
            .filter(|s| *s == "firing")
            .cloned()
    });

    // The event stream has the transitions.
    let events = d.docker(&[
        "events",
        "--since",
        "0",
        "--until",
        &format!("{}", super::unix_now() + 1),
        "--filter",
        "container=sick",
        "--format",
        "{{.Action}}",
    ]);
    events.ok();
    assert!(events.stdout.contains("alert: firing"), "{events}");
    assert!(events.stdout.contains("alert: resolved"), "{events}");
    // No duplicates after a few more evaluations: still one firing and one resolved for sick.
    d.docker(&["exec", "sick", "true"]).ok();
    assert_eq!(
        receiver.statuses("ContainerUnhealthy", "sick"),
        ["firing", "resolved"]
    );

    d.docker(&["rm", "-f", "sick", "full", "oom"]).ok();
    drop(receiver);
    assert_nothing_left(&d);
}
