//! polisd's web dashboard (`/ui`, api-gateway/src/rest/ui.rs and api-gateway/ui/) in Debian's headless Chromium,
//! driven by this test over the DevTools protocol on Chromium's `--remote-debugging-pipe` (NUL-terminated JSON
//! messages on its file descriptors 3 and 4: nothing to install beyond the `chromium` package, no port to find).
//!
//! Chromium runs in the test's network namespace and opens the page on polisd's plain-HTTP monitoring listener
//! there ([`MONITORING_ADDRESS`], `[metrics] address`), which serves the read-only API the page reads.
//!
//! The page must list the running containers by name with their state, mark a container whose health check fails
//! as unhealthy and one whose check passes as healthy, show a busy container's CPU well above an idle one's on its
//! chart (the numbers read from the chart's data), its memory, the images, networks and volumes, the firing alert
//! of a `ContainerUnhealthy` rule (`[alerts]` in polisd's config) by name, and the events as they happen; the page
//! must load nothing the Content-Security-Policy refuses and throw no exception. The page's reading of the three
//! health states from `docker ps`-style list data (`starting` among them, which no container here stays in) is
//! checked on its own parser, with list entries written as dockerd words them.
//!
//! A screenshot of the page goes to target/dashboard.png on every run, and to docs/dashboard.png (the README's)
//! only with `POLIS_UPDATE_SCREENSHOT=1` in the environment.

use super::run_detached;
use polis_integration::polisd::{IMAGE, Polisd};
use polis_integration::{NetNs, missing_peer, poll_until, temp_dir, workspace_root};
use serde_json::{Value, json};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where the browser reaches polisd: the plain-HTTP monitoring listener (`[metrics] address`: /metrics and the
/// read-only routes of the REST router, /ui among them), on loopback in the test's network namespace.
const MONITORING_ADDRESS: &str = "127.0.0.1:9323";

/// polisd's config: the monitoring listener, and one alert rule that the unhealthy container sets off.
fn config() -> String {
    format!(
        r#"[metrics]
address = "{MONITORING_ADDRESS}"

[alerts]
interval = "1s"

[[alerts.rules]]
name = "ContainerUnhealthy"
condition = "unhealthy"
for = "1s"
labels = {{ severity = "critical" }}
annotations = {{ summary = "a health check fails" }}
"#
    )
}

/// Debian's chromium (hack/install-deps installs it).
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long one DevTools command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------------------------
// Chromium over the DevTools protocol

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: the descriptors are new and owned by nothing else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// Headless Chromium with a private profile, one page, and the DevTools protocol on a pipe.
struct Chromium {
    child: Option<Child>,
    commands: Option<File>,
    messages: mpsc::Receiver<Value>,
    reader: Option<JoinHandle<()>>,
    next_id: u64,
    /// The page's session (Target.attachToTarget with `flatten`).
    session: String,
    /// Exceptions the page threw (Runtime.exceptionThrown).
    exceptions: Vec<String>,
    profile: Option<tempfile::TempDir>,
    log: PathBuf,
}

impl Chromium {
    /// Starts Chromium in `ns` with a user data dir of its own and attaches to a new blank page of `width`.
    fn start(ns: &NetNs, log: PathBuf, width: u32, height: u32) -> Chromium {
        let profile = temp_dir("polis-it-chromium-");
        // Chromium reads commands on its descriptor 3 and writes replies and events on 4.
        let (commands_in, commands) = pipe();
        let (replies_in, messages_out) = pipe();
        let log_file = File::create(&log).expect("chromium's log");
        let mut cmd = ns.command(CHROMIUM);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--remote-debugging-pipe",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-sync",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-default-apps",
            "--hide-scrollbars",
            "--mute-audio",
            "--password-store=basic",
            &format!("--window-size={width},{height}"),
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("chromium's log"))
        .stderr(log_file)
        // Its own process group, for cleanup: Chromium's helper processes stay in it.
        .process_group(0);
        let (read_fd, write_fd) = (commands_in.as_raw_fd(), messages_out.as_raw_fd());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. The pipe ends are first copied
        // above 10 so that neither dup2 overwrites the other's source; dup2's copies are not close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::fcntl(read_fd, libc::F_DUPFD_CLOEXEC, 10);
                let w = libc::fcntl(write_fd, libc::F_DUPFD_CLOEXEC, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop(commands_in);
        drop(messages_out);

        let (tx, messages) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut from = BufReader::new(replies_in);
            loop {
                let mut buf = Vec::new();
                match from.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        let Ok(v) = serde_json::from_slice::<Value>(&buf) else {
                            continue;
                        };
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        let mut browser = Chromium {
            child: Some(child),
            commands: Some(commands),
            messages,
            reader: Some(reader),
            next_id: 0,
            session: String::new(),
            exceptions: Vec::new(),
            profile: Some(profile),
            log,
        };
        let target = browser.command(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"]
            .as_str()
            .expect("a target ID")
            .to_string();
        let attached = browser.command(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session ID")
            .to_string();
        browser.page("Runtime.enable", json!({}));
        browser.page("Page.enable", json!({}));
        browser.resize(width, height);
        browser
    }

    /// The end of Chromium's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Sends one command (to the page's session, or to the browser with `None`) and returns its result; panics
    /// with the protocol's error or after [`COMMAND_LIMIT`]. Events that arrive meanwhile are noted.
    fn command(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        let commands = self.commands.as_mut().expect("the command pipe is open");
        if let Err(e) = commands.write_all(&bytes) {
            panic!(
                "send {method} to chromium: {e}; its log:\n{}",
                self.log_tail()
            );
        }
        let deadline = Instant::now() + COMMAND_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = match self.messages.recv_timeout(left) {
                Ok(m) => m,
                Err(e) => panic!(
                    "no answer from chromium to {method} ({e}); its log:\n{}",
                    self.log_tail()
                ),
            };
            if m["id"] == json!(id) {
                if let Some(err) = m.get("error") {
                    panic!("chromium refused {method}: {err}");
                }
                return m["result"].clone();
            }
            self.note(&m);
        }
    }

    /// An event: exceptions the page throws are kept.
    fn note(&mut self, m: &Value) {
        if m["method"] == "Runtime.exceptionThrown" {
            let details = &m["params"]["exceptionDetails"];
            self.exceptions.push(format!(
                "{} {}",
                details["text"].as_str().unwrap_or_default(),
                details["exception"]["description"]
                    .as_str()
                    .unwrap_or_default()
            ));
        }
    }

    /// A command to the page.
    fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.command(Some(&session), method, params)
    }

    fn resize(&mut self, width: u32, height: u32) {
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    fn navigate(&mut self, url: &str) {
        let r = self.page("Page.navigate", json!({"url": url}));
        assert!(
            r.get("errorText").is_none(),
            "chromium could not open {url}: {r}"
        );
    }

    /// The value of a JavaScript expression in the page (a promise's result when it is one); panics when it
    /// throws.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.page(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// A PNG of the whole page.
    fn screenshot(&mut self, width: u32) -> Vec<u8> {
        use base64::Engine;
        let height = self
            .eval("document.documentElement.scrollHeight")
            .as_u64()
            .unwrap_or(900)
            .clamp(600, 4000) as u32;
        self.resize(width, height);
        let r = self.page("Page.captureScreenshot", json!({"format": "png"}));
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot")
    }

    /// PIDs of Chromium's processes: its process group, and anything naming its profile directory.
    fn processes(&self) -> Vec<i32> {
        let Some(pgid) = self.child.as_ref().map(|c| c.id() as i32) else {
            return Vec::new();
        };
        let profile = self
            .profile
            .as_ref()
            .map(|p| p.path().display().to_string())
            .unwrap_or_default();
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| {
                // SAFETY: getpgid only reads another process's group.
                let group = unsafe { libc::getpgid(pid) };
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                group == pgid
                    || (!profile.is_empty()
                        && String::from_utf8_lossy(&cmdline).contains(profile.as_str()))
            })
            .collect()
    }
}

impl Drop for Chromium {
    /// Closes the browser (Browser.close, then SIGKILL for whatever is left of it), waits until none of its
    /// processes is left, and removes its profile. Never panics.
    fn drop(&mut self) {
        if let Some(commands) = self.commands.as_mut() {
            self.next_id += 1;
            let mut close =
                serde_json::to_vec(&json!({"id": self.next_id, "method": "Browser.close"}))
                    .unwrap();
            close.push(0);
            let _ = commands.write_all(&close);
        }
        let closed = poll_until(Duration::from_secs(10), || {
            self.child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
        });
        if let (None, Some(c)) = (closed, self.child.as_ref()) {
            // SAFETY: the process group Chromium was started in (process_group(0): its own PID).
            unsafe { libc::kill(-(c.id() as i32), libc::SIGKILL) };
        }
        let _ = poll_until(Duration::from_secs(10), || {
            for pid in self.processes() {
                // SAFETY: a process of this test's Chromium (its group, or its private profile on the command line).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let reaped = self
                .child
                .as_mut()
                .is_some_and(|c| c.try_wait().ok().flatten().is_some());
            (reaped && self.processes().is_empty()).then_some(())
        });
        self.child = None;
        self.commands = None;
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if let Some(p) = self.profile.take() {
            let _ = p.close();
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The test

const WIDTH: u32 = 1280;

/// Polls a JavaScript expression until `accept` takes its value; panics with the last value after `limit`.
#[track_caller]
fn page_until(
    browser: &mut Chromium,
    what: &str,
    limit: Duration,
    expression: &str,
    mut accept: impl FnMut(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let found = poll_until(limit, || {
        last = browser.eval(expression);
        accept(&last).then(|| last.clone())
    });
    found.unwrap_or_else(|| {
        panic!("timed out after {limit:?} waiting until {what}; the page shows {last}")
    })
}

/// The numbers of a chart's data (null entries are gaps).
fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// The containers table as the page shows it: name, state and health of each row, and each chart's data.
const ROWS: &str = r#"[...document.querySelectorAll('#containers tbody tr')].map(tr => ({
    name: tr.querySelector('td.name').textContent,
    state: tr.dataset.state,
    health: tr.dataset.health,
    classes: tr.className,
    healthText: tr.querySelector('.badge.health').textContent,
    cpu: JSON.parse(tr.querySelector('canvas.chart-cpu').dataset.values || '[]'),
    cpuLatest: tr.querySelector('canvas.chart-cpu').dataset.latest,
    memory: JSON.parse(tr.querySelector('canvas.chart-memory').dataset.values || '[]'),
    cpuText: tr.querySelector('td.chart-cell .chart-value').textContent,
}))"#;

fn row<'a>(rows: &'a Value, name: &str) -> Option<&'a Value> {
    rows.as_array()?.iter().find(|r| r["name"] == name)
}

/// The first column of a table's rows.
fn first_column(browser: &mut Chromium, table: &str) -> Vec<String> {
    let v = browser.eval(&format!(
        "[...document.querySelectorAll('#{table} tbody tr td:first-child')].map(td => td.textContent)"
    ));
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The PNG's width and height (its IHDR chunk), or `None` when `png` is not a PNG.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if !png.starts_with(b"\x89PNG\r\n\x1a\n") || png.get(12..16) != Some(b"IHDR") {
        return None;
    }
    let be = |at: usize| Some(u32::from_be_bytes(png.get(at..at + 4)?.try_into().ok()?));
    Some((be(16)?, be(20)?))
}

/// The dashboard in Chromium: containers with state, health and live CPU and memory charts (a busy container's
/// CPU well above an idle one's, read from the chart), images, networks, volumes, the firing alert, the events
/// stream live, no policy violation and no exception. Its screenshot goes to target/dashboard.png, and to
/// docs/dashboard.png with `POLIS_UPDATE_SCREENSHOT=1`.
#[test]
fn the_dashboard_shows_containers_charts_and_events_live() {
    if !Path::new(CHROMIUM).exists() {
        return missing_peer::<()>("chromium (hack/install-deps installs it)").unwrap_or(());
    }
    let d = Polisd::start_with_config("dashboard", &config());
    d.pull();
    let origin = format!("http://{MONITORING_ADDRESS}");

    d.docker(&["volume", "create", "dashboard-data"]).ok();
    // One core's worth of work: the docker CLI shows it as about 100%.
    run_detached(
        &d,
        &["--name", "busy", IMAGE, "sh", "-c", "while :; do :; done"],
    );
    run_detached(&d, &["--name", "idle", IMAGE, "sleep", "600"]);
    d.docker(&["create", "--name", "resting", IMAGE, "true"])
        .ok();
    // Health checks every second: one that always fails (unhealthy after the first), one that always passes.
    let checked = |name: &str, check: &str| {
        run_detached(
            &d,
            &[
                "--name",
                name,
                "--health-cmd",
                check,
                "--health-interval",
                "1s",
                "--health-retries",
                "1",
                IMAGE,
                "sleep",
                "600",
            ],
        );
    };
    checked("sick", "false");
    checked("well", "true");

    let mut browser = Chromium::start(d.netns(), d.scratch().join("chromium.log"), WIDTH, 900);
    // `/ui` redirects to `/ui/`, the page's own URL.
    browser.navigate(&format!("{origin}/ui"));
    page_until(
        &mut browser,
        "the page has loaded its script at /ui/",
        Duration::from_secs(30),
        "location.pathname === '/ui/' && typeof window.polisDashboard === 'object' && polisDashboard.refreshes() > 0",
        |v| v == &json!(true),
    );

    // The containers, by name, with their state.
    let rows = page_until(
        &mut browser,
        "the page lists busy, idle, resting, sick and well",
        Duration::from_secs(30),
        ROWS,
        |rows| {
            ["busy", "idle", "resting", "sick", "well"]
                .iter()
                .all(|n| row(rows, n).is_some())
        },
    );
    for name in ["busy", "idle", "sick", "well"] {
        assert_eq!(row(&rows, name).unwrap()["state"], "running", "{rows}");
    }
    assert_eq!(row(&rows, "resting").unwrap()["state"], "created", "{rows}");

    // Health: the failing check's container is marked unhealthy (its row's class, data-health and badge), the
    // passing one's healthy; a container without a check has no health.
    let rows = page_until(
        &mut browser,
        "sick is marked unhealthy and well healthy",
        Duration::from_secs(60),
        ROWS,
        |rows| {
            row(rows, "sick").is_some_and(|r| r["health"] == "unhealthy")
                && row(rows, "well").is_some_and(|r| r["health"] == "healthy")
        },
    );
    let sick = row(&rows, "sick").unwrap();
    assert!(
        sick["classes"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|c| c == "health-unhealthy"),
        "sick's row has the class health-unhealthy: {sick}"
    );
    assert_eq!(sick["healthText"], "⚠ unhealthy", "{sick}");
    let well = row(&rows, "well").unwrap();
    assert!(
        well["classes"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|c| c == "health-healthy"),
        "well's row has the class health-healthy: {well}"
    );
    assert_eq!(well["healthText"], "healthy", "{well}");
    let busy = row(&rows, "busy").unwrap();
    assert_eq!(busy["health"], "", "{busy}");
    assert_eq!(busy["healthText"], "—", "{busy}");

    // CPU: the busy container's chart climbs to about a core while the idle one stays near zero. The values are
    // the chart's own data (data-values), computed by the page as the docker CLI does.
    let rows = page_until(
        &mut browser,
        "busy's CPU chart shows it well above zero and above idle's",
        Duration::from_secs(60),
        ROWS,
        |rows| {
            let (Some(busy), Some(idle)) = (row(rows, "busy"), row(rows, "idle")) else {
                return false;
            };
            let busy_cpu = numbers(&busy["cpu"]);
            let idle_cpu = numbers(&idle["cpu"]);
            let (Some(&b), Some(&i)) = (busy_cpu.last(), idle_cpu.last()) else {
                return false;
            };
            busy_cpu.len() >= 3 && b > 25.0 && b > i + 20.0
        },
    );
    let busy = row(&rows, "busy").unwrap();
    let latest: f64 = busy["cpuLatest"].as_str().unwrap().parse().unwrap();
    let last_point = *numbers(&busy["cpu"]).last().unwrap();
    assert!(
        (latest - last_point).abs() < 0.001,
        "data-latest is the chart's last point: {busy}"
    );
    assert!(
        busy["cpuText"].as_str().unwrap().ends_with('%'),
        "the CPU figure beside the chart: {busy}"
    );
    let idle = row(&rows, "idle").unwrap();
    assert!(
        numbers(&idle["cpu"]).last().unwrap() < &10.0,
        "an idle container stays near 0%: {idle}"
    );
    // Memory: the busy shell's working set, in bytes.
    let memory = numbers(&busy["memory"]);
    assert!(
        memory.last().is_some_and(|&m| m > 0.0),
        "busy's memory chart has data: {busy}"
    );
    // The same numbers through the page's own view of its data.
    let view = browser.eval("polisDashboard.container('busy')");
    assert_eq!(view["state"], "running", "{view}");
    assert!(
        numbers(&view["cpu"]).last().is_some_and(|&c| c > 25.0),
        "{view}"
    );
    // A stopped container has no charts.
    assert!(row(&rows, "resting").unwrap()["cpu"] == json!([]), "{rows}");

    // Images, networks, volumes.
    page_until(
        &mut browser,
        "the image, network and volume tables are filled",
        Duration::from_secs(20),
        "document.querySelectorAll('#images tbody tr, #networks tbody tr, #volumes tbody tr').length",
        |v| v.as_u64().unwrap_or(0) >= 3,
    );
    let images = first_column(&mut browser, "images");
    assert!(
        images.iter().any(|i| i.contains(IMAGE)),
        "images: {images:?}"
    );
    let networks = first_column(&mut browser, "networks");
    assert!(
        networks.iter().any(|n| n == "bridge"),
        "networks: {networks:?}"
    );
    let volumes = first_column(&mut browser, "volumes");
    assert!(
        volumes.iter().any(|v| v == "dashboard-data"),
        "volumes: {volumes:?}"
    );

    // Alerts: the ContainerUnhealthy rule fires for sick, on the page and in polisd's list (Alertmanager's API v2
    // shape) that the page reads.
    let alerts = page_until(
        &mut browser,
        "the alerts section lists ContainerUnhealthy for sick",
        Duration::from_secs(30),
        "[polisDashboard.alerts(), document.getElementById('alerts-status').textContent,
          [...document.querySelectorAll('#alerts li')].map(li => [li.dataset.alertname, li.textContent])]",
        |v| {
            v[2].as_array().is_some_and(|items| {
                items.iter().any(|i| {
                    i[0] == "ContainerUnhealthy"
                        && i[1].as_str().is_some_and(|t| t.contains("name=sick"))
                })
            })
        },
    );
    assert_eq!(alerts[0], 1, "one alert fires, sick's: {alerts}");
    assert_eq!(alerts[1], "1 firing", "{alerts}");
    let reply = d.http("GET", "/polis/alerts", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let listed = reply.json();
    let firing = listed.as_array().into_iter().flatten().find(|a| {
        a["labels"]["alertname"] == "ContainerUnhealthy" && a["labels"]["name"] == "sick"
    });
    let firing = firing.unwrap_or_else(|| panic!("ContainerUnhealthy fires for sick: {listed}"));
    assert_eq!(firing["status"]["state"], "active", "{listed}");

    // Health as the page reads it from `docker ps`-style list data (the Status strings dockerd writes) and from
    // inspect's State.Health.
    let health = browser.eval(
        "[{Status: 'Up 3 minutes (healthy)'}, {Status: 'Up 5 seconds (health: starting)'},
          {Status: 'Up 2 minutes (unhealthy)'}, {Status: 'Up 2 minutes'},
          {State: {Health: {Status: 'unhealthy'}}, Status: ''}].map(polisDashboard.healthOf)",
    );
    assert_eq!(
        health,
        json!(["healthy", "starting", "unhealthy", "", "unhealthy"])
    );

    // The screenshot, once the charts have a few more points to show.
    page_until(
        &mut browser,
        "busy's CPU chart has 8 points",
        Duration::from_secs(60),
        "polisDashboard.container('busy').cpu.filter(v => typeof v === 'number').length",
        |v| v.as_u64().unwrap_or(0) >= 8,
    );
    let png = browser.screenshot(WIDTH);
    let size = png_size(&png);
    assert!(
        size.is_some_and(|(w, h)| w == WIDTH && (600..=4000).contains(&h)) && png.len() > 10_000,
        "not a PNG of the page: {} bytes, size {size:?}",
        png.len()
    );
    let mut shots = vec![workspace_root().join("target")];
    if std::env::var_os("POLIS_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        shots.push(workspace_root().join("docs"));
    }
    for dir in shots {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let shot = dir.join("dashboard.png");
        std::fs::write(&shot, &png).unwrap_or_else(|e| panic!("write {}: {e}", shot.display()));
    }

    // Live: what happens now shows in the events list and in the tables without reloading the page.
    let before = browser
        .eval("polisDashboard.events().seen")
        .as_u64()
        .unwrap();
    assert!(
        browser.eval("polisDashboard.events().live") == json!(true),
        "the events stream is connected"
    );
    d.docker(&["volume", "create", "dashboard-live"]).ok();
    run_detached(&d, &["--name", "late", IMAGE, "sleep", "600"]);
    d.docker(&["kill", "idle"]).ok();
    let shown = page_until(
        &mut browser,
        "the events list shows the new volume, late's start and idle's death",
        Duration::from_secs(30),
        "[...document.querySelectorAll('#events li')].map(li => li.dataset.type + ' ' + li.dataset.action + ' ' + li.dataset.name)",
        |v| {
            let events: Vec<&str> = v
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            ["container start late", "container die idle"]
                .iter()
                .all(|e| events.contains(e))
                && events.iter().any(|e| e.starts_with("volume create"))
        },
    );
    assert!(
        browser
            .eval("polisDashboard.events().seen")
            .as_u64()
            .unwrap()
            > before,
        "{shown}"
    );
    page_until(
        &mut browser,
        "the containers table shows late running and idle exited",
        Duration::from_secs(30),
        ROWS,
        |rows| {
            row(rows, "late").is_some_and(|r| r["state"] == "running")
                && row(rows, "idle").is_some_and(|r| r["state"] == "exited")
        },
    );
    let volumes = first_column(&mut browser, "volumes");
    assert!(
        volumes.iter().any(|v| v == "dashboard-live"),
        "volumes: {volumes:?}"
    );

    // Nothing refused by the Content-Security-Policy, no exception, no failed refresh.
    assert_eq!(browser.eval("polisDashboard.violations()"), json!([]));
    assert_eq!(browser.eval("polisDashboard.errors()"), json!([]));
    assert!(
        browser.exceptions.is_empty(),
        "the page threw: {:?}",
        browser.exceptions
    );
    drop(browser);
}
