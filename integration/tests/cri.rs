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
use polis_integration::containerd::{NetNs, Registry};
use polis_integration::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

const BUSYBOX: &str = "127.0.0.1:5000/polis/busybox:latest";
const PAUSE: &str = "127.0.0.1:5000/polis/pause:latest";
const POD_SUBNET: &str = "198.18.200.0/24";

/// The CRI part of containerd's config: the "polis" handler as deploy/containerd-polis.toml has it, the pause
/// image from the loopback registry, CNI plugins from the test's bin dir, and `restrict_oom_score_adj` (this machine lacks
/// CAP_SYS_RESOURCE; DESIGN.md).
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
    let channel = cri_channel(ctrd.socket()).await;
    let mut rt = RuntimeServiceClient::new(channel.clone());
    let mut images = ImageServiceClient::new(channel);

    let logs = ctrd.dir.path().join("pod-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let uid = format!("uid-{}", std::process::id());
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "polis-pod".into(),
            uid: uid.clone(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "polis-pod".into(),
        log_directory: logs.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: pod_cgroup_parent(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = call(
        "RunPodSandbox",
        ctrd,
        rt.run_pod_sandbox(RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: "polis".into(),
        }),
    )
    .await
    .pod_sandbox_id;

    let status = call(
        "PodSandboxStatus",
        ctrd,
        rt.pod_sandbox_status(PodSandboxStatusRequest {
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

    call(
        "PullImage",
        ctrd,
        images.pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: BUSYBOX.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .await;
    let container = call(
        "CreateContainer",
        ctrd,
        rt.create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "app".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: BUSYBOX.into(),
                    ..Default::default()
                }),
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hello-from-the-pod; exec sleep 300".into(),
                ],
                log_path: "app.log".into(),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config.clone()),
        }),
    )
    .await
    .container_id;
    call(
        "StartContainer",
        ctrd,
        rt.start_container(StartContainerRequest {
            container_id: container.clone(),
        }),
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

    let exec = call(
        "ExecSync",
        ctrd,
        rt.exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "echo exec-ok; hostname; exit 3".into(),
            ],
            timeout: 30,
        }),
    )
    .await;
    assert_eq!(exec.exit_code, 3);
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        "exec-ok\npolis-pod\n"
    );

    let stats = call(
        "ContainerStats",
        ctrd,
        rt.container_stats(ContainerStatsRequest {
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
        rt.update_container_resources(UpdateContainerResourcesRequest {
            container_id: container.clone(),
            linux: Some(LinuxContainerResources {
                memory_limit_in_bytes: 64 << 20,
                ..Default::default()
            }),
            ..Default::default()
        }),
    )
    .await;
    let limit = call(
        "ExecSync",
        ctrd,
        rt.exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max".into(),
            ],
            timeout: 30,
        }),
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
        rt.stop_container(StopContainerRequest {
            container_id: container.clone(),
            timeout: 2,
        }),
    )
    .await;
    let cstatus = call(
        "ContainerStatus",
        ctrd,
        rt.container_status(ContainerStatusRequest {
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
    call(
        "RemoveContainer",
        ctrd,
        rt.remove_container(RemoveContainerRequest {
            container_id: container.clone(),
        }),
    )
    .await;
    call(
        "StopPodSandbox",
        ctrd,
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }),
    )
    .await;
    call(
        "RemovePodSandbox",
        ctrd,
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }),
    )
    .await;

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
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "misconfigured".into(),
            uid: format!("uid-bad-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: pod_cgroup_parent(),
            ..Default::default()
        }),
        ..Default::default()
    };
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
