//! polis.v1.Containers over the core's container operations (core/containers.rs, core/logs.rs): a ContainerSpec
//! becomes the Docker create request the core takes, records become typed Containers. Attach, Exec and Stats are in
//! `stdio`.

mod stdio;

use super::{RpcStream, status, time_of, unix_nanos};
use crate::core::containers::WaitCondition;
use crate::core::logs::{Chunk, LogFilter, Stream as LogStream};
use crate::core::record::{ContainerRecord, Status as RecordStatus};
use crate::core::{Core, Error};
use bollard_stubs::models::{
    ContainerCreateBody, HostConfig, Mount, MountType, PortBinding, RestartPolicy,
    RestartPolicyNameEnum,
};
use futures_util::StreamExt;
use polis_client::proto::{self, containers_server::Containers};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct ContainersApi(pub Arc<Core>);

fn invalid(m: String) -> Status {
    Status::invalid_argument(m)
}

/// A ContainerSpec as the Docker create request the core takes.
fn create_body(spec: proto::ContainerSpec) -> Result<ContainerCreateBody, Status> {
    let some_vec = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let some_str = |s: String| (!s.is_empty()).then_some(s);
    let mut mounts = Vec::new();
    for m in spec.mounts {
        let kind = proto::mount::Kind::try_from(m.kind)
            .map_err(|_| invalid(format!("mount {}: unknown kind {}", m.target, m.kind)))?;
        mounts.push(Mount {
            typ: Some(match kind {
                proto::mount::Kind::Bind => MountType::BIND,
                proto::mount::Kind::Volume => MountType::VOLUME,
                proto::mount::Kind::Tmpfs => MountType::TMPFS,
            }),
            source: some_str(m.source),
            target: Some(m.target),
            read_only: Some(m.read_only),
            ..Default::default()
        });
    }
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in spec.ports {
        let protocol = match p.protocol.as_str() {
            "" | "tcp" => "tcp",
            "udp" => "udp",
            other => {
                return Err(invalid(format!(
                    "port {}: unknown protocol {other:?} (tcp or udp)",
                    p.container_port
                )));
            }
        };
        if p.container_port == 0 || p.container_port > 65535 || p.host_port > 65535 {
            return Err(invalid(format!(
                "invalid port mapping {}:{}",
                p.host_port, p.container_port
            )));
        }
        let key = format!("{}/{protocol}", p.container_port);
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        bindings
            .entry(key)
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: some_str(p.host_ip),
                host_port: Some(if p.host_port == 0 {
                    String::new()
                } else {
                    p.host_port.to_string()
                }),
            });
    }
    let resources = spec.resources.unwrap_or_default();
    let restart = spec.restart_policy.unwrap_or_default();
    let restart_name = match proto::RestartPolicyKind::try_from(restart.kind) {
        Ok(proto::RestartPolicyKind::No) => RestartPolicyNameEnum::NO,
        Ok(proto::RestartPolicyKind::Always) => RestartPolicyNameEnum::ALWAYS,
        Ok(proto::RestartPolicyKind::UnlessStopped) => RestartPolicyNameEnum::UNLESS_STOPPED,
        Ok(proto::RestartPolicyKind::OnFailure) => RestartPolicyNameEnum::ON_FAILURE,
        Err(_) => {
            return Err(invalid(format!(
                "unknown restart policy kind {}",
                restart.kind
            )));
        }
    };
    let positive = |v: i64| (v != 0).then_some(v);
    let host_config = HostConfig {
        mounts: (!mounts.is_empty()).then_some(mounts),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        network_mode: some_str(spec.network),
        memory: positive(resources.memory_bytes),
        nano_cpus: positive(resources.nano_cpus),
        pids_limit: positive(resources.pids_limit),
        cpu_shares: positive(resources.cpu_shares),
        restart_policy: Some(RestartPolicy {
            name: Some(restart_name),
            maximum_retry_count: Some(restart.max_retries),
        }),
        auto_remove: Some(spec.auto_remove),
        privileged: Some(spec.privileged),
        readonly_rootfs: Some(spec.read_only_rootfs),
        ..Default::default()
    };
    Ok(ContainerCreateBody {
        image: some_str(spec.image),
        cmd: some_vec(spec.command),
        entrypoint: some_vec(spec.entrypoint),
        env: some_vec(spec.env),
        working_dir: some_str(spec.working_dir),
        user: some_str(spec.user),
        hostname: some_str(spec.hostname),
        labels: (!spec.labels.is_empty()).then_some(spec.labels),
        tty: Some(spec.tty),
        open_stdin: Some(spec.open_stdin),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        stop_signal: some_str(spec.stop_signal),
        stop_timeout: spec.stop_timeout_seconds,
        host_config: Some(host_config),
        ..Default::default()
    })
}

fn container_status(s: RecordStatus) -> proto::ContainerStatus {
    match s {
        RecordStatus::Created => proto::ContainerStatus::Created,
        RecordStatus::Running => proto::ContainerStatus::Running,
        RecordStatus::Paused => proto::ContainerStatus::Paused,
        RecordStatus::Restarting => proto::ContainerStatus::Restarting,
        RecordStatus::Removing => proto::ContainerStatus::Removing,
        RecordStatus::Exited => proto::ContainerStatus::Exited,
        RecordStatus::Dead => proto::ContainerStatus::Dead,
    }
}

/// A container's record as the typed Container.
fn container(r: &ContainerRecord) -> proto::Container {
    proto::Container {
        id: r.id.clone(),
        name: r.name.clone(),
        image: r.image.clone(),
        image_id: r.image_id.clone(),
        created_unix_nano: unix_nanos(Some(&r.created)),
        command: std::iter::once(r.path.clone())
            .chain(r.args.iter().cloned())
            .collect(),
        state: Some(proto::ContainerState {
            status: container_status(r.state.status).into(),
            pid: r.state.pid,
            exit_code: r.state.exit_code,
            started_at_unix_nano: unix_nanos(r.state.started_at.as_deref()),
            finished_at_unix_nano: unix_nanos(r.state.finished_at.as_deref()),
            error: r.state.error.clone(),
            oom_killed: r.state.oom_killed,
        }),
        labels: r.config.labels.clone().unwrap_or_default(),
        tty: r.tty(),
        restart_count: r.restart_count,
        log_path: r.log_path.display().to_string(),
        mounts: r
            .mounts
            .iter()
            .map(|m| proto::MountPoint {
                kind: m.kind.clone(),
                name: m.name.clone().unwrap_or_default(),
                source: m.source.display().to_string(),
                target: m.destination.clone(),
                read_write: m.rw,
            })
            .collect(),
        network: r
            .host_config
            .network_mode
            .clone()
            .filter(|m| !m.is_empty() && m != "default")
            .unwrap_or_else(|| "bridge".into()),
        hostname: r.hostname(),
    }
}

/// Whether a container passes List's filter: each non-empty list must match.
fn passes(c: &proto::Container, r: &ContainerRecord, f: &proto::ContainerFilter) -> bool {
    let any = |values: &[String], pass: &dyn Fn(&str) -> bool| {
        values.is_empty() || values.iter().any(|v| pass(v))
    };
    let status = c.state.as_ref().map_or(0, |s| s.status);
    let exited = status == proto::ContainerStatus::Exited as i32;
    any(&f.ids, &|v| r.id.starts_with(v))
        && any(&f.names, &|v| r.name.contains(v.trim_start_matches('/')))
        && (f.statuses.is_empty() || f.statuses.contains(&status))
        && any(&f.labels, &|v| super::system::label_matches(&c.labels, v))
        && any(&f.ancestors, &|v| {
            r.image == v
                || r.image_id
                    .trim_start_matches("sha256:")
                    .starts_with(v.trim_start_matches("sha256:"))
        })
        && (f.exit_codes.is_empty() || (exited && f.exit_codes.contains(&r.state.exit_code)))
        && any(&f.networks, &|v| c.network == v)
}

fn log_entry(stream: LogStream, data: Vec<u8>, time_unix_nano: i64) -> proto::LogEntry {
    proto::LogEntry {
        stream: match stream {
            LogStream::Stdout => proto::OutputStream::Stdout,
            LogStream::Stderr => proto::OutputStream::Stderr,
        }
        .into(),
        data,
        time_unix_nano,
    }
}

/// Docker answers 304 when there is nothing to do; for gRPC that is success.
fn done(r: crate::core::Result<()>) -> Result<(), Status> {
    match r {
        Ok(()) | Err(Error::NotModified(_)) => Ok(()),
        Err(e) => Err(status(e)),
    }
}

#[tonic::async_trait]
impl Containers for ContainersApi {
    async fn create(
        &self,
        request: Request<proto::CreateContainerRequest>,
    ) -> Result<Response<proto::CreateContainerResponse>, Status> {
        let r = request.into_inner();
        let spec = r.spec.ok_or_else(|| invalid("spec is required".into()))?;
        let body = create_body(spec)?;
        let id = self.0.create(Some(&r.name), body).await.map_err(status)?;
        Ok(Response::new(proto::CreateContainerResponse {
            id,
            warnings: Vec::new(),
        }))
    }

    async fn start(
        &self,
        request: Request<proto::StartContainerRequest>,
    ) -> Result<Response<proto::StartContainerResponse>, Status> {
        done(self.0.start(&request.into_inner().id).await)?;
        Ok(Response::new(proto::StartContainerResponse {}))
    }

    async fn stop(
        &self,
        request: Request<proto::StopContainerRequest>,
    ) -> Result<Response<proto::StopContainerResponse>, Status> {
        let r = request.into_inner();
        done(self.0.stop(&r.id, r.timeout_seconds).await)?;
        Ok(Response::new(proto::StopContainerResponse {}))
    }

    async fn kill(
        &self,
        request: Request<proto::KillContainerRequest>,
    ) -> Result<Response<proto::KillContainerResponse>, Status> {
        let r = request.into_inner();
        let signal = (!r.signal.is_empty()).then_some(r.signal.as_str());
        self.0.kill(&r.id, signal).await.map_err(status)?;
        Ok(Response::new(proto::KillContainerResponse {}))
    }

    async fn restart(
        &self,
        request: Request<proto::RestartContainerRequest>,
    ) -> Result<Response<proto::RestartContainerResponse>, Status> {
        let r = request.into_inner();
        self.0
            .restart(&r.id, r.timeout_seconds)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RestartContainerResponse {}))
    }

    async fn pause(
        &self,
        request: Request<proto::PauseContainerRequest>,
    ) -> Result<Response<proto::PauseContainerResponse>, Status> {
        self.0
            .pause(&request.into_inner().id, true)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::PauseContainerResponse {}))
    }

    async fn resume(
        &self,
        request: Request<proto::ResumeContainerRequest>,
    ) -> Result<Response<proto::ResumeContainerResponse>, Status> {
        self.0
            .pause(&request.into_inner().id, false)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::ResumeContainerResponse {}))
    }

    async fn remove(
        &self,
        request: Request<proto::RemoveContainerRequest>,
    ) -> Result<Response<proto::RemoveContainerResponse>, Status> {
        let r = request.into_inner();
        self.0
            .remove(&r.id, r.force, r.remove_volumes)
            .await
            .map_err(status)?;
        Ok(Response::new(proto::RemoveContainerResponse {}))
    }

    async fn inspect(
        &self,
        request: Request<proto::InspectContainerRequest>,
    ) -> Result<Response<proto::Container>, Status> {
        let record = self.0.db.lookup(&request.into_inner().id).map_err(status)?;
        Ok(Response::new(container(&record)))
    }

    async fn list(
        &self,
        request: Request<proto::ListContainersRequest>,
    ) -> Result<Response<proto::ListContainersResponse>, Status> {
        let r = request.into_inner();
        let filter = r.filter.unwrap_or_default();
        let all = r.all || !filter.statuses.is_empty();
        let mut records = self.0.db.all().map_err(status)?;
        records.sort_by(|a, b| b.created.cmp(&a.created));
        let mut containers: Vec<proto::Container> = records
            .iter()
            .filter(|rec| all || rec.state.status.is_live())
            .filter_map(|rec| {
                let c = container(rec);
                passes(&c, rec, &filter).then_some(c)
            })
            .collect();
        if r.limit > 0 {
            containers.truncate(r.limit as usize);
        }
        Ok(Response::new(proto::ListContainersResponse { containers }))
    }

    async fn wait(
        &self,
        request: Request<proto::WaitContainerRequest>,
    ) -> Result<Response<proto::WaitContainerResponse>, Status> {
        let r = request.into_inner();
        let condition = match proto::WaitCondition::try_from(r.condition) {
            Ok(proto::WaitCondition::NotRunning) => WaitCondition::NotRunning,
            Ok(proto::WaitCondition::NextExit) => WaitCondition::NextExit,
            Ok(proto::WaitCondition::Removed) => WaitCondition::Removed,
            Err(_) => {
                return Err(invalid(format!("unknown wait condition {}", r.condition)));
            }
        };
        let record = self.0.db.lookup(&r.id).map_err(status)?;
        let exit_code = self.0.wait(&record.id, condition).await.map_err(status)?;
        Ok(Response::new(proto::WaitContainerResponse { exit_code }))
    }

    type LogsStream = RpcStream<proto::LogEntry>;

    async fn logs(
        &self,
        request: Request<proto::ContainerLogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let r = request.into_inner();
        let core = &self.0;
        let record = core.db.lookup(&r.id).map_err(status)?;
        let (stdout, stderr) = match (r.stdout, r.stderr) {
            (false, false) => (true, true),
            both => both,
        };
        let filter = LogFilter {
            stdout,
            stderr,
            since: time_of(r.since_unix_nano),
            until: time_of(r.until_unix_nano),
            tail: r.tail.map(|t| t as usize),
        };
        let follow = r.follow && record.state.status.is_live() && filter.until.is_none();
        let (entries, live) = crate::core::logs::read_and_follow(core, &record, &filter, follow);
        let head = futures_util::stream::iter(entries.into_iter().map(|e| {
            let time = unix_nanos(Some(&e.time));
            Ok(log_entry(e.stream, e.log.into_bytes(), time))
        }));
        let live = live.map(|Chunk { stream, data }| {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
            Ok(log_entry(stream, data.to_vec(), now))
        });
        Ok(Response::new(Box::pin(head.chain(live))))
    }

    type AttachStream = RpcStream<proto::AttachOutput>;

    async fn attach(
        &self,
        request: Request<tonic::Streaming<proto::AttachInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        Ok(Response::new(
            stdio::attach(&self.0, request.into_inner()).await?,
        ))
    }

    type ExecStream = RpcStream<proto::ExecOutput>;

    async fn exec(
        &self,
        request: Request<tonic::Streaming<proto::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        Ok(Response::new(
            stdio::exec(&self.0, request.into_inner()).await?,
        ))
    }

    type StatsStream = RpcStream<proto::ContainerStats>;

    async fn stats(
        &self,
        request: Request<proto::ContainerStatsRequest>,
    ) -> Result<Response<Self::StatsStream>, Status> {
        Ok(Response::new(
            stdio::stats(&self.0, request.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_becomes_docker_s_create_request() {
        let body = create_body(proto::ContainerSpec {
            image: "busybox".into(),
            command: vec!["echo".into(), "hi".into()],
            ports: vec![proto::PortBinding {
                container_port: 80,
                protocol: String::new(),
                host_ip: String::new(),
                host_port: 8080,
            }],
            mounts: vec![proto::Mount {
                kind: proto::mount::Kind::Volume as i32,
                source: "data".into(),
                target: "/data".into(),
                read_only: true,
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(body.image.as_deref(), Some("busybox"));
        assert_eq!(body.cmd, Some(vec!["echo".to_string(), "hi".to_string()]));
        assert_eq!(body.entrypoint, None);
        assert_eq!(body.exposed_ports, Some(vec!["80/tcp".to_string()]));
        let host = body.host_config.unwrap();
        let binding = &host.port_bindings.unwrap()["80/tcp"].clone().unwrap()[0];
        assert_eq!(binding.host_port.as_deref(), Some("8080"));
        let mount = &host.mounts.unwrap()[0];
        assert_eq!(mount.typ, Some(MountType::VOLUME));
        assert_eq!(mount.read_only, Some(true));
    }

    #[test]
    fn a_bad_protocol_is_an_invalid_argument() {
        let e = create_body(proto::ContainerSpec {
            image: "busybox".into(),
            ports: vec![proto::PortBinding {
                container_port: 53,
                protocol: "sctp".into(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("sctp"), "{}", e.message());
    }

    #[test]
    fn core_errors_keep_their_message_under_their_code() {
        let s = status(Error::NotFound("No such container: x".into()));
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::NotFound, "No such container: x")
        );
        let s = status(Error::AlreadyExists(
            "Conflict. The container name \"/a\" is already in use by container \"b\"".into(),
        ));
        assert_eq!(s.code(), tonic::Code::AlreadyExists);
        let s = status(Error::Conflict("cannot remove a running container".into()));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            status(Error::Invalid("bad".into())).code(),
            tonic::Code::InvalidArgument
        );
    }
}
