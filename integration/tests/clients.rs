//! Real clients of the runtime: podman (through conmon) and containerd (through Debian's Go
//! `containerd-shim-runc-v2` with the runtime binary swapped in). These check runc's command-line contract as those
//! programs use it: flags, pid files, log format, exit codes, state JSON.
//!
//! Each test works in a private temp dir (podman's storage, containerd's root/state/socket) and cleans it all up,
//! daemons and mounts included, even when it fails.

use polis_integration::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PODMAN: &str = "/usr/bin/podman";
const CONTAINERD: &str = "/usr/bin/containerd";
const CTR: &str = "/usr/bin/ctr";
const IMAGE: &str = "localhost/polis-busybox:latest";

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("run sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Writes `data` as a blob of an OCI layout and returns its descriptor fields (digest, size).
fn put_blob(layout: &Path, data: &[u8]) -> (String, usize) {
    let tmp = layout.join("blob.tmp");
    std::fs::write(&tmp, data).unwrap();
    let hex = sha256_hex(&tmp);
    std::fs::rename(&tmp, layout.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), data.len())
}

/// A busybox image built from the test rootfs: `layer.tar` (for `podman import`) and `image.tar`, an OCI archive
/// (for `ctr images import --base-name localhost/polis-busybox`).
struct Image {
    layer_tar: PathBuf,
    oci_archive: PathBuf,
}

fn build_image(dir: &Path) -> Image {
    let rootfs = dir.join("rootfs");
    make_rootfs(&rootfs);
    let layer_tar = dir.join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer_tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar rootfs");
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let layer = std::fs::read(&layer_tar).unwrap();
    let (layer_digest, layer_size) = put_blob(&layout, &layer);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    });
    let (config_digest, config_size) = put_blob(&layout, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}]
    });
    let (manifest_digest, manifest_size) = put_blob(&layout, manifest.to_string().as_bytes());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": "latest"}
        }]
    });
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let oci_archive = dir.join("image.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&oci_archive)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar layout");
    Image {
        layer_tar,
        oci_archive,
    }
}

/// Unmounts everything mounted at or below `dir` (deepest first), for cleanup after a client that crashed.
fn unmount_below(dir: &Path) {
    let prefix = dir.display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(|p| p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(&p).status();
    }
}

/// Kills every process whose command line mentions `marker` (a path unique to this test), e.g. shims and conmon.
fn kill_processes_mentioning(marker: &str) {
    let me = std::process::id() as i32;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            // SAFETY: signalling a process this test started (its command line names this test's temp dir).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn run_with_timeout(cmd: Command, scratch: &Path, secs: u64) -> Output {
    run_command(cmd, scratch, Duration::from_secs(secs))
}

// ---------------------------------------------------------------------------------------------------------------
// podman

/// A private podman store (root, runroot, tmpdir) under a temp dir; cleaned up on drop.
struct Podman {
    dir: tempfile::TempDir,
    runtime: PathBuf,
}

impl Podman {
    fn new(runtime: &Path) -> Podman {
        let dir = temp_dir("polis-it-podman-");
        for d in ["root", "runroot", "tmp", "scratch"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        Podman {
            dir,
            runtime: runtime.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new(PODMAN);
        cmd.arg("--runtime")
            .arg(&self.runtime)
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .args(args)
            .env("TMPDIR", d.join("tmp"));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        run_with_timeout(self.command(args), &self.dir.path().join("scratch"), 120)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Never panic in Drop (a panic during a failing test's unwinding aborts the test binary).
        let _ = try_run_command(
            self.command(&["rm", "--all", "--force"]),
            &self.dir.path().join("scratch"),
            Duration::from_secs(60),
        );
        kill_processes_mentioning(&self.dir.path().display().to_string());
        unmount_below(self.dir.path());
        // vfs layers hold read-only files; make them removable.
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+w")
            .arg(self.dir.path())
            .status();
    }
}

fn podman_available() -> bool {
    Path::new(PODMAN).is_file() || missing_peer::<()>("podman (/usr/bin/podman)").is_some()
}

conformance_test!(
    /// User behaviour: `podman --runtime R run --rm IMAGE echo hi` prints hi and exits 0 (conmon drives
    /// create/start/state/delete with --log-format json and a pid file).
    podman_run_echo,
    |rt| {
        if !podman_available() {
            return;
        }
        let podman = Podman::new(&rt.path);
        let img = build_image(&podman.dir.path().join("image"));
        podman.run(&["import", img.layer_tar.to_str().unwrap(), IMAGE]).ok();
        let out = podman.run(&[
            "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", IMAGE,
            "echo", "hi",
        ]);
        out.ok();
        assert_eq!(out.stdout.trim(), "hi", "{out}");
        let ps = podman.run(&["ps", "--all", "--format", "{{.ID}}"]);
        ps.ok();
        assert!(ps.stdout.trim().is_empty(), "--rm left a container: {ps}");
    }
);

conformance_test!(
    /// User behaviour: podman reports the container process's exit code.
    podman_exit_code,
    |rt| {
        if !podman_available() {
            return;
        }
        let podman = Podman::new(&rt.path);
        let img = build_image(&podman.dir.path().join("image"));
        podman.run(&["import", img.layer_tar.to_str().unwrap(), IMAGE]).ok();
        let out = podman.run(&[
            "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", IMAGE,
            "sh", "-c", "exit 7",
        ]);
        assert_eq!(out.code, Some(7), "{out}");
    }
);

conformance_test!(
    /// User behaviour: a detached podman container can be exec'd into, then stopped and removed.
    podman_detached_exec_stop,
    |rt| {
        if !podman_available() {
            return;
        }
        let podman = Podman::new(&rt.path);
        let img = build_image(&podman.dir.path().join("image"));
        podman.run(&["import", img.layer_tar.to_str().unwrap(), IMAGE]).ok();
        let out = podman.run(&[
            "run", "--detach", "--name", "polis-detached", "--network", "none", "--ulimit", "nofile=1024:1024",
            "--ulimit", "nproc=1024:1024", IMAGE, "sleep", "60",
        ]);
        out.ok();
        let exec = podman.run(&["exec", "polis-detached", "cat", "/etc/hostname"]);
        exec.ok();
        assert!(!exec.stdout.trim().is_empty(), "{exec}");
        podman.run(&["stop", "--time", "1", "polis-detached"]).ok();
        let inspect = podman.run(&["inspect", "--format", "{{.State.Status}}", "polis-detached"]);
        inspect.ok();
        assert_eq!(inspect.stdout.trim(), "exited", "{inspect}");
        podman.run(&["rm", "polis-detached"]).ok();
    }
);

// ---------------------------------------------------------------------------------------------------------------
// containerd

/// A private containerd daemon (config v2, CRI disabled) under a temp dir; on drop the daemon and its shims are
/// killed, everything under the dir is unmounted, and the dir removed.
struct Containerd {
    dir: tempfile::TempDir,
    daemon: Option<std::process::Child>,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = temp_dir("polis-it-containerd-");
        let d = dir.path();
        for sub in ["root", "state", "opt", "scratch"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{ttrpc}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
            ttrpc = d.join("containerd.sock.ttrpc").display(),
            opt = d.join("opt").display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let daemon = Command::new(CONTAINERD)
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut c = Containerd {
            dir,
            daemon: Some(daemon),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = c.ctr(&["version"]);
            if out.success() {
                break;
            }
            if let Some(d) = c.daemon.as_mut() {
                if let Ok(Some(st)) = d.try_wait() {
                    panic!("containerd exited with {st}: {}", c.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "containerd never answered: {}",
                c.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CTR);
        cmd.arg("--address")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["--namespace", CGROUP_PARENT])
            .args(args);
        cmd
    }

    fn ctr(&self, args: &[&str]) -> Output {
        run_with_timeout(
            self.ctr_command(args),
            &self.dir.path().join("scratch"),
            120,
        )
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let scratch = self.dir.path().join("scratch");
        let secs = Duration::from_secs(20);
        // Never panic in Drop (a panic during a failing test's unwinding aborts the test binary).
        let tasks = try_run_command(
            self.ctr_command(&["tasks", "list", "--quiet"]),
            &scratch,
            secs,
        )
        .unwrap_or_else(|o| o);
        for id in tasks.stdout.lines().filter(|l| !l.trim().is_empty()) {
            let _ = try_run_command(
                self.ctr_command(&["tasks", "kill", "--all", "--signal", "SIGKILL", id]),
                &scratch,
                secs,
            );
            let _ = try_run_command(
                self.ctr_command(&["tasks", "delete", "--force", id]),
                &scratch,
                secs,
            );
        }
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: signalling the daemon this test started.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = d.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        kill_processes_mentioning(&self.dir.path().display().to_string());
        unmount_below(self.dir.path());
        let _ = std::fs::remove_dir_all(self.dir.path().join("root"));
    }
}

fn containerd_available() -> bool {
    (Path::new(CONTAINERD).is_file() && Path::new(CTR).is_file())
        || missing_peer::<()>("containerd and ctr (/usr/bin)").is_some()
}

/// `ctr run --rm` of the imported image with the test's runtime binary and a private runtime root.
fn ctr_run(ctrd: &Containerd, rt: &Runtime, id: &str, args: &[&str]) -> Output {
    let mut a = vec![
        "run",
        "--rm",
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-binary",
        rt.path.to_str().unwrap(),
        "--runc-root",
    ];
    let root = rt.root();
    a.push(root.to_str().unwrap());
    a.extend_from_slice(&[IMAGE, id]);
    a.extend_from_slice(args);
    ctrd.ctr(&a)
}

fn ctr_import(ctrd: &Containerd) {
    let img = build_image(&ctrd.dir.path().join("image"));
    ctrd.ctr(&[
        "images",
        "import",
        "--base-name",
        "localhost/polis-busybox",
        img.oci_archive.to_str().unwrap(),
    ])
    .ok();
    let list = ctrd.ctr(&["images", "list", "--quiet"]);
    list.ok();
    assert!(
        list.stdout.lines().any(|l| l == IMAGE),
        "image not imported: {list}"
    );
}

conformance_test!(
    /// User behaviour: `ctr run --rm --runc-binary R IMAGE ID echo hi` through containerd's runc v2 shim prints hi
    /// and exits 0; the container is gone afterwards (no task, no state, no cgroup).
    containerd_run_echo,
    |rt| {
        if !containerd_available() {
            return;
        }
        let ctrd = Containerd::start();
        ctr_import(&ctrd);
        // The guard kills what is left in the container's cgroup (/<namespace>/<id>) and deletes it from the
        // runtime root the shim used.
        let c = rt.container();
        let out = ctr_run(&ctrd, rt, &c.id, &["echo", "hi"]);
        out.ok();
        assert_eq!(out.stdout.trim(), "hi", "{out}\ncontainerd log:\n{}", ctrd.log());
        let tasks = ctrd.ctr(&["tasks", "list", "--quiet"]);
        tasks.ok();
        assert!(tasks.stdout.trim().is_empty(), "task left: {tasks}");
        let containers = ctrd.ctr(&["containers", "list", "--quiet"]);
        assert!(containers.stdout.trim().is_empty(), "container left: {containers}");
        // The shim runs the runtime with --root <runc-root>/<namespace>.
        let left = state_entries(&rt.root().join(CGROUP_PARENT));
        assert!(left.is_empty(), "runtime state left: {left:?}");
        assert!(c.cgroup_dirs().is_empty(), "cgroup left: {:?}", c.cgroup_dirs());
    }
);

conformance_test!(
    /// User behaviour: ctr run reports the container process's exit code.
    containerd_exit_code,
    |rt| {
        if !containerd_available() {
            return;
        }
        let ctrd = Containerd::start();
        ctr_import(&ctrd);
        let c = rt.container();
        let out = ctr_run(&ctrd, rt, &c.id, &["sh", "-c", "exit 7"]);
        assert_eq!(out.code, Some(7), "{out}\ncontainerd log:\n{}", ctrd.log());
    }
);

conformance_test!(
    /// User behaviour: a detached containerd task can be exec'd into and killed; its exit status is SIGKILL's.
    containerd_detached_exec_kill,
    |rt| {
        if !containerd_available() {
            return;
        }
        let ctrd = Containerd::start();
        ctr_import(&ctrd);
        let root = rt.root();
        let c = rt.container();
        let id = c.id.as_str();
        ctrd.ctr(&[
            "run", "--detach", "--runtime", "io.containerd.runc.v2", "--runc-binary", rt.path.to_str().unwrap(),
            "--runc-root", root.to_str().unwrap(), IMAGE, id, "sleep", "60",
        ])
        .ok();
        let exec = ctrd.ctr(&["tasks", "exec", "--exec-id", "e1", id, "cat", "/etc/hostname"]);
        exec.ok();
        let tasks = ctrd.ctr(&["tasks", "list"]);
        assert!(tasks.stdout.contains("RUNNING"), "{tasks}");
        ctrd.ctr(&["tasks", "kill", "--signal", "SIGKILL", id]).ok();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let t = ctrd.ctr(&["tasks", "list"]);
            if t.stdout.contains("STOPPED") {
                break;
            }
            assert!(Instant::now() < deadline, "task never stopped: {t}");
            std::thread::sleep(Duration::from_millis(100));
        }
        ctrd.ctr(&["tasks", "delete", id]).ok();
        ctrd.ctr(&["containers", "delete", id]).ok();
        // The shim runs the runtime with --root <runc-root>/<namespace>.
        let left = state_entries(&rt.root().join(CGROUP_PARENT));
        assert!(left.is_empty(), "runtime state left: {left:?}");
    }
);
