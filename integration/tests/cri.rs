//! Kubernetes through containerd's CRI: a test that talks to containerd's CRI gRPC socket as the kubelet does
//! (k8s-cri's v1 RuntimeService and ImageService), with the runtime handler "polis" mapped to
//! `io.containerd.polis.v2` exactly as deploy/containerd-polis.toml maps it, and the shim's settings read from the
//! file that the runtime's ConfigPath names.
//!
//! Everything runs in a network namespace the test creates: containerd (so the CNI bridge and the pod's veth live
//! there), and a docker-registry on 127.0.0.1:5000 that serves the busybox and pause images (CRI always pulls).
//! The pod network is polis-netplug (with Debian's `loopback` plugin, which CRI runs for `lo`), on 198.18.200.0/24:
//! a pod created through CRI gets its address from polis-netplug.

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use polis_integration::containerd::*;
use polis_integration::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

const BUSYBOX: &str = "127.0.0.1:5000/polis/busybox:latest";
const PAUSE: &str = "127.0.0.1:5000/polis/pause:latest";
const POD_SUBNET: &str = "198.18.200.0/24";

/// The CRI part of containerd's config: the "polis" handler as deploy/containerd-polis.toml has it, the pause
/// image from the loopback registry, CNI plugins from the test's bin dir, and `restrict_oom_score_adj` (this machine lacks
/// CAP_SYS_RESOURCE; docs/ARCHITECTURE.md).
fn cri_config() -> String {
    format!(
        r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.polis]
      runtime_type = "io.containerd.polis.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.polis.options]
        ConfigPath = "{{dir}}/polis-shim.toml"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.polis-misconfigured]
      runtime_type = "io.containerd.polis.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.polis-misconfigured.options]
        ConfigPath = "{{dir}}/misspelt-shim.toml"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{dir}}/cni-bin"
    conf_dir = "{{dir}}/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{{dir}}/certs.d"
"#
    )
}

/// The test's world: network namespace, registry with both images, containerd with CRI. On drop (also when the
/// test fails half-way) containerd's tasks are killed and the daemon stopped, then the pod network namespaces CRI
/// made (/run/netns/cni-*) and the pods' cgroups are removed.
struct CriWorld {
    ctrd: Option<Containerd>,
    /// CRI tests run one at a time: each removes the pod network namespaces that appeared while it ran.
    _serial: std::sync::MutexGuard<'static, ()>,
    _registry: Registry,
    _netns: NetNs,
    runtime_root: PathBuf,
    netns_before: Vec<String>,
}

/// `$POLIS_NETPLUG`, else `<workspace>/target/release/polis-netplug`.
fn netplug_path() -> PathBuf {
    workspace_binary("POLIS_NETPLUG", "polis-netplug")
}

fn pod_netns() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cni-"))
        .collect()
}

fn pod_cgroup_parent() -> String {
    format!("/{CGROUP_PARENT}/cri-{}", std::process::id())
}

/// Removes `dir` and the cgroups below it, deepest first.
fn remove_cgroup_tree(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            remove_cgroup_tree(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for CriWorld {
    fn drop(&mut self) {
        drop(self.ctrd.take());
        for name in pod_netns() {
            if !self.netns_before.contains(&name) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &name])
                    .status();
            }
        }
        let parent = pod_cgroup_parent();
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            remove_cgroup_tree(&e.path().join(parent.trim_start_matches('/')));
        }
    }
}

fn start_world() -> Option<CriWorld> {
    if !containerd_available() {
        return None;
    }
    if !Path::new(REGISTRY).is_file() {
        return missing_peer("docker-registry (/usr/bin/docker-registry)");
    }
    if !Path::new("/usr/lib/cni/loopback").is_file() {
        return missing_peer("the CNI reference plugins (/usr/lib/cni)");
    }
    if !netplug_path().is_file() {
        return missing_peer("polis-netplug (make build)");
    }
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let netns_before = pod_netns();
    let netns = NetNs::new("cri");
    let registry = Registry::start(&netns);
    let images = temp_dir("polis-it-cri-images-");
    let busybox = build_image(&images.path().join("busybox"));
    registry.push(&busybox.oci_archive, "polis/busybox:latest");
    // The pause container only has to stay alive; CRI stops it with SIGKILL.
    let pause = build_image_running(&images.path().join("pause"), &["/bin/sleep", "2147483647"]);
    registry.push(&pause.oci_archive, "polis/pause:latest");
    let ctrd = Containerd::start_cri_prepared(&cri_config(), &netns, |dir| {
        // The shim's settings, through the ConfigPath CRI hands over (runtimeoptions.v1.Options).
        let runtime_root = dir.join("polis-runc-root");
        std::fs::write(
            dir.join("polis-shim.toml"),
            format!(
                "runtime = \"{}\"\nroot = \"{}\"\nlog_level = \"debug\"\n",
                polis_runc_path().display(),
                runtime_root.display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("misspelt-shim.toml"),
            "runtim = \"/usr/local/bin/polis-runc\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("cni")).unwrap();
        let bin = dir.join("cni-bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink("/usr/lib/cni/loopback", bin.join("loopback")).unwrap();
        std::os::unix::fs::symlink(netplug_path(), bin.join("polis-netplug")).unwrap();
        std::fs::write(
            dir.join("cni/10-polis-test.conflist"),
            serde_json::to_string_pretty(&json!({
                "cniVersion": "1.0.0",
                "name": "polis-cri-test",
                "plugins": [{
                    "type": "polis-netplug",
                    "bridge": "cni-polis0",
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "polis",
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "dataDir": dir.join("ipam").display().to_string()
                    }
                }]
            }))
            .unwrap(),
        )
        .unwrap();
        let hosts = dir.join("certs.d").join(Registry::ADDRESS);
        std::fs::create_dir_all(&hosts).unwrap();
        std::fs::write(
            hosts.join("hosts.toml"),
            format!(
                "server = \"http://{a}\"\n\n[host.\"http://{a}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                a = Registry::ADDRESS
            ),
        )
        .unwrap();
    });
    let runtime_root = ctrd.dir.path().join("polis-runc-root");
    Some(CriWorld {
        ctrd: Some(ctrd),
        _serial: serial,
        _registry: registry,
        _netns: netns,
        runtime_root,
        netns_before,
    })
}

async fn cri_channel(socket: PathBuf) -> Channel {
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to containerd's CRI socket")
}

/// Awaits a CRI call, failing the test with containerd's log when it errs or takes over a minute.
async fn call<T>(
    what: &str,
    ctrd: &Containerd,
    fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    match tokio::time::timeout(Duration::from_secs(60), fut).await {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => panic!("{what}: {status}\ncontainerd log:\n{}", ctrd.log()),
        Err(_) => panic!(
            "{what}: no answer within 60 s\nprocesses:\n{}\ncontainerd log:\n{}",
            runtime_processes(),
            ctrd.log()
        ),
    }
}

/// The shims, runtimes and containers running now, with what they wait in, for a hang's report.
fn runtime_processes() -> String {
    let out = std::process::Command::new("ps")
        .args(["-eo", "pid,ppid,stat,wchan:24,args"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter(|l| l.contains("polis") || l.contains("containerd") || l.contains("sleep"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn shim_pids(ctrd: &Containerd) -> Vec<i32> {
    let marker = ctrd.dir.path().display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
            let cmd = String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).ok()?)
                .replace('\0', " ");
            (cmd.contains("containerd-shim-polis-v2") && cmd.contains(&marker)).then_some(pid)
        })
        .collect()
}

/// The kubelet's side of CRI: one connection to containerd's RuntimeService and ImageService, and the calls the pod
/// tests repeat; each call fails the test with containerd's log (see [`call`]).
struct Kubelet<'a> {
    ctrd: &'a Containerd,
    rt: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

impl<'a> Kubelet<'a> {
    async fn connect(ctrd: &'a Containerd) -> Kubelet<'a> {
        let channel = cri_channel(ctrd.socket()).await;
        Kubelet {
            ctrd,
            rt: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }

    async fn pull(&mut self, image: &str) {
        call(
            "PullImage",
            self.ctrd,
            self.images.pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        )
        .await;
    }

    /// RunPodSandbox; returns the sandbox's ID.
    async fn run_pod(&mut self, config: &PodSandboxConfig, handler: &str) -> String {
        call(
            "RunPodSandbox",
            self.ctrd,
            self.rt.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.into(),
            }),
        )
        .await
        .pod_sandbox_id
    }

    /// CreateContainer and StartContainer, as the kubelet starts a pod's container; returns the container's ID.
    async fn run_container(
        &mut self,
        pod: &str,
        pod_config: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> String {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let id = call(
            &format!("CreateContainer {name}"),
            self.ctrd,
            self.rt.create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(pod_config.clone()),
            }),
        )
        .await
        .container_id;
        call(
            &format!("StartContainer {name}"),
            self.ctrd,
            self.rt.start_container(StartContainerRequest {
                container_id: id.clone(),
            }),
        )
        .await;
        id
    }

    /// ExecSync of `cmd` in `container` (30 s timeout).
    async fn exec(&mut self, container: &str, cmd: &[&str]) -> ExecSyncResponse {
        call(
            &format!("ExecSync {cmd:?}"),
            self.ctrd,
            self.rt.exec_sync(ExecSyncRequest {
                container_id: container.into(),
                cmd: cmd.iter().map(|a| a.to_string()).collect(),
                timeout: 30,
            }),
        )
        .await
    }

    /// The host PID of a container's process, from containerd's verbose ContainerStatus.
    async fn container_pid(&mut self, container: &str) -> i32 {
        let info = call(
            "ContainerStatus (verbose)",
            self.ctrd,
            self.rt.container_status(ContainerStatusRequest {
                container_id: container.into(),
                verbose: true,
            }),
        )
        .await
        .info;
        let info: Value = serde_json::from_str(info.get("info").map_or("", String::as_str))
            .unwrap_or_else(|e| panic!("verbose status of {container}: {e}: {info:?}"));
        info["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|&p| p > 0)
            .unwrap_or_else(|| panic!("no pid in the verbose status of {container}: {info}"))
    }

    /// Takes a pod down as the kubelet does: StopContainer and RemoveContainer for each of its containers, then
    /// StopPodSandbox and RemovePodSandbox.
    async fn remove_pod(&mut self, pod: &str) {
        let containers = call(
            "ListContainers",
            self.ctrd,
            self.rt.list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    pod_sandbox_id: pod.into(),
                    ..Default::default()
                }),
            }),
        )
        .await
        .containers;
        for c in containers {
            call(
                "StopContainer",
                self.ctrd,
                self.rt.stop_container(StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: 2,
                }),
            )
            .await;
            call(
                "RemoveContainer",
                self.ctrd,
                self.rt
                    .remove_container(RemoveContainerRequest { container_id: c.id }),
            )
            .await;
        }
        call(
            "StopPodSandbox",
            self.ctrd,
            self.rt.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod.into(),
            }),
        )
        .await;
        call(
            "RemovePodSandbox",
            self.ctrd,
            self.rt.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod.into(),
            }),
        )
        .await;
    }
}

/// A pod's sandbox config as the kubelet writes it: metadata unique to this test process, the hostname `name`, the
/// containers' logs under `logs`, the pod's cgroups below [`pod_cgroup_parent`].
fn pod_config(name: &str, logs: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: pod_cgroup_parent(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A busybox container named `name` running `command`, logging to `<name>.log` in the pod's log directory.
fn busybox_container(name: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: BUSYBOX.into(),
            ..Default::default()
        }),
        command: command.iter().map(|a| a.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}

/// A directory for pods' log files under containerd's test dir.
fn log_dir(ctrd: &Containerd, pod: &str) -> PathBuf {
    let dir = ctrd.dir.path().join("pod-logs").join(pod);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "current_thread")]
/// Kubernetes behaviour: a pod with runtime_handler "polis" goes through RunPodSandbox, PullImage,
/// CreateContainer, StartContainer, ExecSync, ContainerStats, UpdateContainerResources, the container's log file,
/// StopContainer, RemoveContainer, StopPodSandbox and RemovePodSandbox, all served by containerd-shim-polis-v2
/// (one shim for the pod), with the pod's address from CNI; nothing is left afterwards.
async fn cri_pod_lifecycle_through_the_polis_handler() {
    let Some(world) = start_world() else {
        return;
    };
    let ctrd = world.ctrd.as_ref().expect("containerd runs");
    let mut k = Kubelet::connect(ctrd).await;

    let logs = log_dir(ctrd, "polis-pod");
    let sandbox_config = pod_config("polis-pod", &logs);
    let pod = k.run_pod(&sandbox_config, "polis").await;

    let status = call(
        "PodSandboxStatus",
        ctrd,
        k.rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        }),
    )
    .await
    .status
    .expect("sandbox status");
    assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
    assert_eq!(status.runtime_handler, "polis");
    let ip = status.network.map(|n| n.ip).unwrap_or_default();
    assert!(
        ip.starts_with("198.18.200."),
        "the pod's address comes from the CNI pool: {ip:?}"
    );
    // polis-netplug's address store names the sandbox as the owner of that address.
    let owner = std::fs::read_to_string(ctrd.dir.path().join("ipam/polis-cri-test").join(&ip))
        .unwrap_or_default();
    assert!(
        owner.starts_with(&pod),
        "{ip} belongs to the pod sandbox {pod}: {owner:?}"
    );

    k.pull(BUSYBOX).await;
    let container = k
        .run_container(
            &pod,
            &sandbox_config,
            busybox_container(
                "app",
                &["sh", "-c", "echo hello-from-the-pod; exec sleep 300"],
            ),
        )
        .await;

    // The pod (sandbox and container) is served by one polis shim.
    assert_eq!(
        shim_pids(ctrd).len(),
        1,
        "one containerd-shim-polis-v2 for the pod"
    );
    // polis-runc ran them, with the root from the ConfigPath file.
    for id in [&pod, &container] {
        assert!(
            world.runtime_root.join(id).is_dir(),
            "polis-runc state for {id} under {}",
            world.runtime_root.display()
        );
    }

    let exec = k
        .exec(&container, &["sh", "-c", "echo exec-ok; hostname; exit 3"])
        .await;
    assert_eq!(exec.exit_code, 3);
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        "exec-ok\npolis-pod\n"
    );

    let stats = call(
        "ContainerStats",
        ctrd,
        k.rt.container_stats(ContainerStatsRequest {
            container_id: container.clone(),
        }),
    )
    .await
    .stats
    .expect("container stats");
    let memory = stats
        .memory
        .and_then(|m| m.working_set_bytes)
        .map(|v| v.value)
        .unwrap_or(0);
    assert!(memory > 0, "working set of the container: {memory}");
    let cpu = stats
        .cpu
        .and_then(|c| c.usage_core_nano_seconds)
        .map(|v| v.value)
        .unwrap_or(0);
    assert!(cpu > 0, "CPU time of the container: {cpu}");

    call(
        "UpdateContainerResources",
        ctrd,
        k.rt.update_container_resources(UpdateContainerResourcesRequest {
            container_id: container.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .await;
    let limit = k
        .exec(
            &container,
            &[
                "sh",
                "-c",
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
            ],
        )
        .await;
    assert_eq!(
        String::from_utf8_lossy(&limit.stdout).trim(),
        (64u64 << 20).to_string()
    );

    // The kubelet's log file: CRI's format, "<time> stdout F <line>".
    let log_file = logs.join("app.log");
    eventually(
        "the container's output reaches its log file",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&log_file)
                .unwrap_or_default()
                .contains(" stdout F hello-from-the-pod")
        },
    );

    call(
        "StopContainer",
        ctrd,
        k.rt.stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 2,
        }),
    )
    .await;
    let cstatus = call(
        "ContainerStatus",
        ctrd,
        k.rt.container_status(ContainerStatusRequest {
            container_id: container.clone(),
            verbose: false,
        }),
    )
    .await
    .status
    .expect("container status");
    assert_eq!(cstatus.state, ContainerState::ContainerExited as i32);
    // StopContainer's SIGTERM, sent from outside the container's PID namespace, ends its init: 128 + 15.
    assert_eq!(cstatus.exit_code, 143, "exit status after StopContainer");
    // RemoveContainer, StopPodSandbox, RemovePodSandbox.
    k.remove_pod(&pod).await;

    eventually("the pod's shim exits", Duration::from_secs(20), || {
        shim_pids(ctrd).is_empty()
    });
    let left = state_entries(&world.runtime_root);
    assert!(left.is_empty(), "polis-runc state left: {left:?}");
    let cgroup_parent =
        Path::new("/sys/fs/cgroup/memory").join(pod_cgroup_parent().trim_start_matches('/'));
    let children: Vec<_> = std::fs::read_dir(&cgroup_parent)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    assert!(
        children.is_empty(),
        "cgroups left under {}: {children:?}",
        cgroup_parent.display()
    );
    let _ = std::fs::remove_dir(&cgroup_parent);
}

#[tokio::test(flavor = "current_thread")]
/// Bad settings get a clear error and leave nothing: a pod whose runtime handler's ConfigPath file has an unknown
/// key fails RunPodSandbox with a message naming the file and the key, and no sandbox, shim or state remains.
async fn cri_misconfigured_handler_is_refused_clearly() {
    let Some(world) = start_world() else {
        return;
    };
    let ctrd = world.ctrd.as_ref().expect("containerd runs");
    let mut rt = RuntimeServiceClient::new(cri_channel(ctrd.socket()).await);
    let config = pod_config("misconfigured", &log_dir(ctrd, "misconfigured"));
    let result = tokio::time::timeout(
        Duration::from_secs(60),
        rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: "polis-misconfigured".into(),
        }),
    )
    .await
    .expect("RunPodSandbox answers");
    let status = result.expect_err("a misconfigured handler must fail");
    assert!(status.message().contains("misspelt-shim.toml"), "{status}");
    assert!(status.message().contains("runtim"), "{status}");
    let pods = rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    assert!(pods.is_empty(), "no sandbox should remain: {pods:?}");
    eventually("no shim remains", Duration::from_secs(20), || {
        shim_pids(ctrd).is_empty()
    });
    assert!(state_entries(&world.runtime_root).is_empty());
}

/// `config` with the pod's security context `security` (the kubelet's pod-level securityContext).
fn pod_with(
    mut config: PodSandboxConfig,
    security: LinuxSandboxSecurityContext,
) -> PodSandboxConfig {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context = Some(security);
    config
}

/// `config` with the container's security context `security`.
fn container_with(
    config: ContainerConfig,
    security: LinuxContainerSecurityContext,
) -> ContainerConfig {
    ContainerConfig {
        linux: Some(LinuxContainerConfig {
            security_context: Some(security),
            ..Default::default()
        }),
        ..config
    }
}

#[tokio::test(flavor = "current_thread")]
/// Kubernetes behaviour: a hostPath volume's `mountPropagation`. In a privileged pod (Bidirectional needs one), three
/// privileged containers each mount a shared host directory of their own at /mnt/prop, as the kubelet passes
/// `mountPropagation` to CRI: with None (PROPAGATION_PRIVATE, "rprivate") no mount made later on either side crosses
/// over; with HostToContainer (PROPAGATION_HOST_TO_CONTAINER, rootfs "rslave") a mount the host makes below the
/// directory appears in the container but not the other way; with Bidirectional (PROPAGATION_BIDIRECTIONAL, rootfs
/// "rshared") both: a mount the container makes below /mnt/prop appears on the host too.
async fn cri_host_path_mount_propagation() {
    let Some(world) = start_world() else {
        return;
    };
    let ctrd = world.ctrd.as_ref().expect("containerd runs");
    let mut k = Kubelet::connect(ctrd).await;
    // (container, propagation, a host mount reaches the container, a container mount reaches the host)
    let cases = [
        (
            "private",
            MountPropagation::PropagationPrivate,
            false,
            false,
        ),
        (
            "host-to-container",
            MountPropagation::PropagationHostToContainer,
            true,
            false,
        ),
        (
            "bidirectional",
            MountPropagation::PropagationBidirectional,
            true,
            true,
        ),
    ];
    let dirs: Vec<SharedHostDir> = cases.iter().map(|_| SharedHostDir::new()).collect();

    // Privileged: all capabilities, so `mount` works in the containers; CRI runs a privileged container only in a
    // privileged pod.
    let config = pod_with(
        pod_config("propagation", &log_dir(ctrd, "propagation")),
        LinuxSandboxSecurityContext {
            privileged: true,
            ..Default::default()
        },
    );
    let pod = k.run_pod(&config, "polis").await;
    k.pull(BUSYBOX).await;
    let mut containers = Vec::new();
    for ((name, propagation, ..), dir) in cases.iter().zip(&dirs) {
        // A file in the directory itself, which every container sees, whatever its propagation.
        std::fs::write(dir.path().join("here"), format!("{name}\n")).unwrap();
        let container = ContainerConfig {
            mounts: vec![Mount {
                container_path: "/mnt/prop".into(),
                host_path: dir.path().display().to_string(),
                propagation: *propagation as i32,
                ..Default::default()
            }],
            ..busybox_container(name, &["sleep", "300"])
        };
        let container = container_with(
            container,
            LinuxContainerSecurityContext {
                privileged: true,
                ..Default::default()
            },
        );
        containers.push(k.run_container(&pod, &config, container).await);
    }

    // Mount propagation happens within mount(2), so each check holds, or not, as soon as the mount is made.
    let mut wrong = Vec::new();
    for ((name, _, from_host, to_host), (dir, container)) in
        cases.iter().zip(dirs.iter().zip(&containers))
    {
        dir.mount_tmpfs_below("fromhost");
        let seen = k
            .exec(
                container,
                &[
                    "sh",
                    "-c",
                    "cat /mnt/prop/here; cat /mnt/prop/fromhost/marker",
                ],
            )
            .await;
        let seen = String::from_utf8_lossy(&seen.stdout).into_owned();
        let want = if *from_host {
            format!("{name}\nfrom-host\n")
        } else {
            format!("{name}\n")
        };
        if seen != want {
            wrong.push(format!(
                "{name}: a host mount below the hostPath should {}reach the container; it read {seen:?}",
                if *from_host { "" } else { "not " }
            ));
        }

        let mounted = k
            .exec(
                container,
                &[
                    "sh",
                    "-c",
                    "mkdir -p /mnt/prop/fromctr && mount -t tmpfs polis-in /mnt/prop/fromctr \
                     && echo from-container > /mnt/prop/fromctr/marker",
                ],
            )
            .await;
        assert_eq!(
            mounted.exit_code,
            0,
            "{name}: mount in the privileged container: {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        let on_host = dir.mount_below("fromctr");
        let marker = std::fs::read_to_string(dir.path().join("fromctr/marker")).ok();
        if on_host.is_some() != *to_host || marker.is_some() != *to_host {
            wrong.push(format!(
                "{name}: a mount in the container below /mnt/prop should {}reach the host; host mount: {on_host:?}, \
                 marker: {marker:?}",
                if *to_host { "" } else { "not " }
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    k.remove_pod(&pod).await;
}

/// How many pods [`cri_pods_with_two_containers_sharing_namespaces`] runs one after another.
const POD_ROUNDS: usize = 30;

/// On drop during a failure: which pod round failed, and containerd's log from the round's start.
struct Round<'a> {
    n: usize,
    ctrd: &'a Containerd,
    log_from: usize,
}

impl<'a> Round<'a> {
    fn new(n: usize, ctrd: &'a Containerd) -> Round<'a> {
        Round {
            n,
            ctrd,
            log_from: ctrd.log().len(),
        }
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.ctrd.log();
            eprintln!(
                "pod {} of {POD_ROUNDS} failed; containerd's log during it:\n{}",
                self.n,
                log.get(self.log_from..).unwrap_or(&log)
            );
        }
    }
}

/// The PID that process `pid` has in its own PID namespace (the last field of NSpid), 0 if it is gone.
fn pid_in_its_namespace(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|ids| ids.split_whitespace().next_back()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "current_thread")]
/// Kubernetes behaviour: a pod's containers share its network namespace and, with `shareProcessNamespace`
/// (NamespaceMode POD for pid in the sandbox's and the containers' security context), its PID namespace, which the
/// second container joins while the first lives in it. Thirty pods one after another each start "web" (busybox httpd
/// on 8080) and then "client", which reads web's page over 127.0.0.1, and are taken down; every StartContainer must
/// succeed. Pod n forks n - 1 processes in web before client starts, so that client's processes get other PIDs of the
/// pod in each pod: polis-runc once looked such a PID up in the host's /proc, and failed to start the second container
/// (about 1 run in 6) when no host process had it.
async fn cri_pods_with_two_containers_sharing_namespaces() {
    let Some(world) = start_world() else {
        return;
    };
    let ctrd = world.ctrd.as_ref().expect("containerd runs");
    let mut k = Kubelet::connect(ctrd).await;
    k.pull(BUSYBOX).await;
    let pod_namespaces = NamespaceOption {
        pid: NamespaceMode::Pod as i32,
        network: NamespaceMode::Pod as i32,
        ..Default::default()
    };
    let in_pod_namespaces = |config| {
        container_with(
            config,
            LinuxContainerSecurityContext {
                namespace_options: Some(pod_namespaces.clone()),
                ..Default::default()
            },
        )
    };
    let started = std::time::Instant::now();
    let mut client_pids = Vec::new();
    for n in 1..=POD_ROUNDS {
        let _round = Round::new(n, ctrd);
        let name = format!("pair-{n}");
        let config = pod_with(
            pod_config(&name, &log_dir(ctrd, &name)),
            LinuxSandboxSecurityContext {
                namespace_options: Some(pod_namespaces.clone()),
                ..Default::default()
            },
        );
        let pod = k.run_pod(&config, "polis").await;
        let web = in_pod_namespaces(busybox_container(
            "web",
            &[
                "sh",
                "-c",
                "echo polis-pod-ok > /index.html && exec busybox httpd -f -p 8080 -h /",
            ],
        ));
        let web = k.run_container(&pod, &config, web).await;
        // In a real pod, probes and execs have used PIDs of the pod's namespace before a container starts; pod n forks
        // n - 1 processes in it first, so the next container's processes get other PIDs in each pod.
        let forks = format!("for i in $(seq {}); do /bin/true; done", n - 1);
        let forked = k.exec(&web, &["sh", "-c", &forks]).await;
        assert_eq!(
            forked.exit_code,
            0,
            "pod {n}: {forks}: {}",
            String::from_utf8_lossy(&forked.stderr)
        );
        let client = in_pod_namespaces(busybox_container("client", &["sleep", "300"]));
        let client = k.run_container(&pod, &config, client).await;

        let web_pid = k.container_pid(&web).await;
        let client_pid = k.container_pid(&client).await;
        client_pids.push(pid_in_its_namespace(client_pid));
        for ns in ["pid", "net"] {
            let (web_ns, client_ns) = (
                process_namespace(web_pid, ns),
                process_namespace(client_pid, ns),
            );
            assert!(
                !web_ns.is_empty() && web_ns == client_ns && web_ns != host_namespace(ns),
                "pod {n}: web and client share the pod's {ns} namespace: {web_ns:?} {client_ns:?}"
            );
        }
        eventually(
            &format!("httpd listens on 8080 in pod {n}"),
            Duration::from_secs(20),
            || tcp_listening(web_pid, 8080),
        );
        let page = k
            .exec(
                &client,
                &[
                    "busybox",
                    "wget",
                    "-qO-",
                    "http://127.0.0.1:8080/index.html",
                ],
            )
            .await;
        assert_eq!(
            (
                page.exit_code,
                String::from_utf8_lossy(&page.stdout).as_ref()
            ),
            (0, "polis-pod-ok\n"),
            "pod {n}: the client reads web's page; stderr: {}",
            String::from_utf8_lossy(&page.stderr)
        );
        k.remove_pod(&pod).await;
    }
    eprintln!(
        "{POD_ROUNDS} pods with two containers in {:.1?}; the client's PID in its pod: {client_pids:?}",
        started.elapsed()
    );
}
