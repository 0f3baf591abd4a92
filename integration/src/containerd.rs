//! A private containerd for tests, and the busybox image they run: Debian's containerd 1.6 on its own socket, root
//! and state directory under a temp dir, found and killed again by that dir's path. Shared by the client tests
//! (containerd's Go runc shim with polis-runc) and the shim tests (containerd-shim-polis-v2).

use crate::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const CONTAINERD: &str = "/usr/bin/containerd";
pub const CTR: &str = "/usr/bin/ctr";
/// The busybox image every containerd test imports.
pub const IMAGE: &str = "localhost/polis-busybox:latest";

pub fn sha256_hex(path: &Path) -> String {
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
pub fn put_blob(layout: &Path, data: &[u8]) -> (String, usize) {
    let tmp = layout.join("blob.tmp");
    std::fs::write(&tmp, data).unwrap();
    let hex = sha256_hex(&tmp);
    std::fs::rename(&tmp, layout.join("blobs/sha256").join(&hex)).unwrap();
    (format!("sha256:{hex}"), data.len())
}

/// A busybox image built from the test rootfs: `layer.tar` (for `podman import`) and `image.tar`, an OCI archive
/// (for `ctr images import --base-name localhost/polis-busybox`).
pub struct Image {
    pub layer_tar: PathBuf,
    pub oci_archive: PathBuf,
}

pub fn build_image(dir: &Path) -> Image {
    build_image_running(dir, &["/bin/sh"])
}

/// Like [`build_image`], with `cmd` as the image's Cmd.
pub fn build_image_running(dir: &Path, cmd: &[&str]) -> Image {
    build_image_with_config(
        dir,
        json!({"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": cmd}),
    )
}

/// Like [`build_image`], with `image_config` as the image config's `config` object (Cmd, Env, Healthcheck...).
pub fn build_image_with_config(dir: &Path, image_config: serde_json::Value) -> Image {
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
        "config": image_config,
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
pub fn unmount_below(dir: &Path) {
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
pub fn kill_processes_mentioning(marker: &str) {
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

pub fn run_with_timeout(cmd: Command, scratch: &Path, secs: u64) -> Output {
    run_command(cmd, scratch, Duration::from_secs(secs))
}

// ---------------------------------------------------------------------------------------------------------------
// containerd

/// A private containerd daemon (config v2, CRI disabled) under a temp dir; on drop the daemon and its shims are
/// killed, everything under the dir is unmounted, and the dir removed.
pub struct Containerd {
    pub dir: tempfile::TempDir,
    daemon: Option<std::process::Child>,
    /// The containerd namespace `ctr` uses (CRI works in "k8s.io").
    pub namespace: String,
    /// A network namespace (/run/netns/NAME) the daemon runs in, for CRI pods' networks.
    netns: Option<String>,
}

impl Containerd {
    /// containerd without CRI, in the host's network namespace.
    pub fn start() -> Containerd {
        Containerd::start_with(
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
            None,
            CGROUP_PARENT,
            |_| {},
        )
    }

    /// containerd with its CRI plugin (`cri` is the `[plugins."io.containerd.grpc.v1.cri"]` part of the config,
    /// `{dir}` in it replaced by the test dir), running in the network namespace `netns`, so the pods' bridge and
    /// addresses never touch the host's network.
    /// `prepare` writes what the config refers to into the test dir before the daemon starts.
    pub fn start_cri_prepared(cri: &str, netns: &NetNs, prepare: impl FnOnce(&Path)) -> Containerd {
        Containerd::start_with(cri, Some(netns.name.clone()), "k8s.io", prepare)
    }

    fn start_with(
        extra: &str,
        netns: Option<String>,
        namespace: &str,
        prepare: impl FnOnce(&Path),
    ) -> Containerd {
        let dir = temp_dir("polis-it-containerd-");
        let d = dir.path();
        for sub in ["root", "state", "opt", "scratch"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
{extra}
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
            extra = extra.replace("{dir}", &d.display().to_string()),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        prepare(d);
        let mut c = Containerd {
            dir,
            daemon: None,
            namespace: namespace.to_string(),
            netns,
        };
        c.spawn_daemon();
        c
    }

    /// The gRPC socket (also CRI's).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// Starts the daemon on this dir's config and waits until it answers.
    fn spawn_daemon(&mut self) {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("containerd.log"))
            .unwrap();
        // containerd finds a runtime's shim binary on its PATH: put the workspace's build first.
        let path = format!(
            "{}:{}",
            workspace_root().join("target/release").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = match &self.netns {
            Some(ns) => crate::netns::command_in(ns, CONTAINERD),
            None => Command::new(CONTAINERD),
        };
        let daemon = cmd
            .env("PATH", path)
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        self.daemon = Some(daemon);
        let limit = Duration::from_secs(30);
        let answered = poll_until(limit, || {
            if self.ctr(&["version"]).success() {
                return Some(());
            }
            if let Some(Ok(Some(st))) = self.daemon.as_mut().map(|d| d.try_wait()) {
                panic!("containerd exited with {st}: {}", self.log());
            }
            None
        });
        assert!(
            answered.is_some(),
            "containerd never answered in {limit:?}: {}",
            self.log()
        );
    }

    /// Stops the daemon (SIGTERM; its shims and containers keep running) and starts it again.
    pub fn restart(&mut self) {
        self.stop_daemon();
        self.spawn_daemon();
    }

    fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: signalling the daemon this test started.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            // Waits for it to exit, and SIGKILLs it if it has not after 10 s.
            wait_until(&mut d, Instant::now() + Duration::from_secs(10));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CTR);
        cmd.arg("--address")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["--namespace", &self.namespace])
            .args(args);
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
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
        self.stop_daemon();
        kill_processes_mentioning(&self.dir.path().display().to_string());
        unmount_below(self.dir.path());
        let _ = std::fs::remove_dir_all(self.dir.path().join("root"));
    }
}

pub fn containerd_available() -> bool {
    (Path::new(CONTAINERD).is_file() && Path::new(CTR).is_file())
        || missing_peer::<()>("containerd and ctr (/usr/bin)").is_some()
}

/// `ctr run --rm` of the imported image with the test's runtime binary and a private runtime root.
pub fn ctr_run(ctrd: &Containerd, rt: &Runtime, id: &str, args: &[&str]) -> Output {
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

pub fn ctr_import(ctrd: &Containerd) {
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

/// Serves `reply` once on TCP port `port` inside `listener` (busybox nc) and returns what a client in `client` read
/// from `addr:connect_port`: empty when it could not connect.
pub fn tcp_round_trip(
    listener: &NetNs,
    port: u16,
    client: &NetNs,
    addr: &str,
    connect_port: u16,
    reply: &str,
) -> String {
    // nc is nsenter's process itself (no shell around it), so that killing it below ends the listener: a listener
    // left over from one call would answer the next on the same port.
    let mut server = listener.command(BUSYBOX);
    server
        .args(["nc", "-l", "-p", &port.to_string(), "-w", "5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut server = server.spawn().expect("start busybox nc -l");
    // The reply waits in the pipe until a client connects; closing the pipe ends nc's input after it.
    std::io::Write::write_all(
        &mut server.stdin.take().expect("nc's stdin"),
        format!("{reply}\n").as_bytes(),
    )
    .expect("give nc its reply");
    // Once nsenter has joined the namespace, /proc/PID/net of the server is the namespace's.
    let pid = server.id() as i32;
    let netns = listener.link();
    eventually(
        &format!("nc listens on port {port} in netns {}", listener.name),
        Duration::from_secs(10),
        || process_namespace(pid, "net") == netns && tcp_listening(pid, port),
    );
    let out = client
        .command(BUSYBOX)
        .args(["nc", "-w", "2", addr, &connect_port.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run busybox nc");
    let _ = server.kill();
    let _ = server.wait();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub const REGISTRY: &str = "/usr/bin/docker-registry";

/// What [`Registry::start_with`] configures: the port on 127.0.0.1 and, optionally, htpasswd (Basic) auth.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Port on 127.0.0.1 inside the namespace.
    pub port: u16,
    /// `(user, password)`: the registry then requires HTTP Basic auth (docker-registry's `auth: htpasswd`, with a
    /// bcrypt entry for this one user). docker-registry 2.8 accepts this over plain HTTP, without even a warning.
    pub htpasswd: Option<(String, String)>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            port: 5000,
            htpasswd: None,
        }
    }
}

/// Debian's docker-registry serving plain HTTP on 127.0.0.1:PORT (5000 by [`Registry::start`]) inside `netns`, its
/// storage under a temp dir; killed on drop.
pub struct Registry {
    dir: tempfile::TempDir,
    daemon: Option<std::process::Child>,
    netns: String,
    address: String,
    credentials: Option<(String, String)>,
}

impl Registry {
    /// The address of a registry started by [`Registry::start`].
    pub const ADDRESS: &'static str = "127.0.0.1:5000";

    /// An anonymous registry on 127.0.0.1:5000.
    pub fn start(netns: &NetNs) -> Registry {
        Registry::start_with(netns, RegistryOptions::default())
    }

    /// A registry on 127.0.0.1:`options.port`, with htpasswd auth when `options.htpasswd` is set.
    pub fn start_with(netns: &NetNs, options: RegistryOptions) -> Registry {
        let dir = temp_dir("polis-it-registry-");
        let address = format!("127.0.0.1:{}", options.port);
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {}\n",
            dir.path().join("storage").display(),
            address
        );
        if let Some((user, password)) = &options.htpasswd {
            // Cost 4, bcrypt's minimum: the registry checks the hash on every request.
            let hash = bcrypt::hash(password, 4).expect("bcrypt hash");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: polis-test\n    path: {}\n",
                file.display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let daemon = netns
            .command(REGISTRY)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut r = Registry {
            dir,
            daemon: Some(daemon),
            netns: netns.name.clone(),
            address,
            credentials: options.htpasswd,
        };
        let probe = format!("exec 3<>/dev/tcp/127.0.0.1/{}", options.port);
        let limit = Duration::from_secs(30);
        let answered = poll_until(limit, || {
            let up = netns
                .command("bash")
                .args(["-c", &probe])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if up {
                return Some(());
            }
            if let Some(Ok(Some(st))) = r.daemon.as_mut().map(|d| d.try_wait()) {
                panic!("docker-registry exited with {st}: {}", r.log());
            }
            None
        });
        assert!(
            answered.is_some(),
            "the registry never answered in {limit:?}: {}",
            r.log()
        );
        r
    }

    /// `127.0.0.1:PORT`, as a client inside the namespace reaches it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The htpasswd user and password, when the registry requires them.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Name of the network namespace the registry serves in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// What the registry logged (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes an OCI archive as `ADDRESS/NAME` (skopeo, plain HTTP, with the htpasswd credentials if any).
    pub fn push(&self, archive: &Path, name: &str) {
        let scratch = self.dir.path();
        let mut cmd = crate::netns::command_in(&self.netns, "skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some((user, password)) = self.credentials() {
            cmd.arg(format!("--dest-creds={user}:{password}"));
        }
        cmd.arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("docker://{}/{name}", self.address));
        run_command(cmd, scratch, Duration::from_secs(120)).ok();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}
