//! polis.v1.Containers' Attach, Exec and Stats over the core operations the REST API calls: `Core::attach` (REST's
//! hijacked attach), `exec_create`, `exec_claim` and `exec_start` (REST's exec create and start), `stats_sample` and
//! `stats_stream` (REST's stats).
//!
//! Attach and Exec read the client's first message in the handler, so that the output is subscribed to (or the
//! process started) before the client has its answer; the client's later messages (stdin, terminal sizes, the end
//! of stdin) are read by a task of the call's own, which ends with the response stream: a client that goes away
//! leaves nothing behind but what Docker leaves (a running container, or an exec's process).

use super::log_entry;
use crate::core::containers::{AttachInput, AttachOptions};
use crate::core::exec::ExecStdin;
use crate::core::logs::{Chunk, Stream as LogStream};
use crate::core::{Core, Error};
use crate::grpc::{RpcStream, status, unix_nanos};
use bollard_stubs::models::{ContainerStatsResponse, ExecConfig};
use futures_util::StreamExt;
use polis_client::proto;
use std::sync::Arc;
use tokio::sync::oneshot;
use tonic::{Status, Streaming};

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// What a client sends after its first message, from either stream.
enum Command {
    Stdin(Vec<u8>),
    Resize { width: u32, height: u32 },
    CloseStdin,
}

/// The `Command` of a message of the attach or exec input stream (their `input` oneofs have the same variants); a
/// second `start` names nothing new.
macro_rules! command_of {
    ($message:expr, $input:ident) => {{
        use proto::$input::Input;
        match $message.input? {
            Input::Stdin(data) => Some(Command::Stdin(data)),
            Input::Resize(size) => Some(Command::Resize {
                width: size.width,
                height: size.height,
            }),
            Input::CloseStdin(close) => close.then_some(Command::CloseStdin),
            Input::Start(_) => None,
        }
    }};
}

fn attach_command(m: proto::AttachInput) -> Option<Command> {
    command_of!(m, attach_input)
}

fn exec_command(m: proto::ExecInput) -> Option<Command> {
    command_of!(m, exec_input)
}

/// Where a client's input goes.
enum Target {
    /// The container's stdin and terminal, once the run the client attached to started.
    Container(AttachInput),
    /// An exec's stdin and terminal.
    Exec {
        core: Arc<Core>,
        exec_id: String,
        tty: bool,
        stdin: Option<ExecStdin>,
    },
}

impl Target {
    async fn command(&mut self, command: Command) {
        match (self, command) {
            (Target::Container(input), Command::Stdin(data)) => {
                input.write(&data).await;
            }
            (Target::Container(input), Command::Resize { width, height }) => {
                if let Err(e) = input.resize(width, height).await {
                    tracing::debug!(error = %e, "attach: resize");
                }
            }
            (Target::Container(input), Command::CloseStdin) => input.close().await,
            (Target::Exec { stdin, .. }, Command::Stdin(data)) => {
                if let Some(s) = stdin
                    && s.write_all(&data).await.is_err()
                {
                    *stdin = None;
                }
            }
            (Target::Exec { core, exec_id, .. }, Command::Resize { width, height }) => {
                if let Err(e) = core.exec_resize(exec_id, width, height).await {
                    tracing::debug!(error = %e, "exec: resize");
                }
            }
            (Target::Exec { stdin, .. }, Command::CloseStdin) => {
                if let Some(s) = stdin.take() {
                    s.close().await;
                }
            }
        }
    }

    /// The client's input ended (or the client went away): as when a REST client's connection ends, a container
    /// with `StdinOnce` has its stdin closed, and so has an exec without a terminal; an exec with one keeps running.
    async fn end(self) {
        match self {
            Target::Container(input) => input.end().await,
            Target::Exec { tty, stdin, .. } => {
                if let (false, Some(s)) = (tty, stdin) {
                    s.close().await;
                }
            }
        }
    }
}

/// Passes the client's messages after the first to `target` until the client's input ends or the response stream
/// is dropped (`gone` resolves: the call ended or the client went away).
async fn forward_input<M>(
    mut inbound: Streaming<M>,
    mut gone: oneshot::Receiver<()>,
    command: fn(M) -> Option<Command>,
    mut target: Target,
) where
    M: Send + 'static,
{
    loop {
        let message = tokio::select! {
            m = inbound.message() => m,
            _ = &mut gone => break,
        };
        let Ok(Some(message)) = message else {
            break;
        };
        let Some(c) = command(message) else {
            continue;
        };
        tokio::select! {
            _ = target.command(c) => {}
            _ = &mut gone => break,
        }
    }
    target.end().await;
}

fn output(stream: LogStream, data: Vec<u8>, time_unix_nano: i64) -> proto::AttachOutput {
    proto::AttachOutput {
        kind: Some(proto::attach_output::Kind::Output(log_entry(
            stream,
            data,
            time_unix_nano,
        ))),
    }
}

fn not_running(name: &str) -> Status {
    Status::failed_precondition(format!(
        "Container {name} is not running: start it to attach to it"
    ))
}

/// Attach: the first message names the container; the answer is its logged output (with `logs`), its output from
/// the attach on, and the exit code of its run.
pub async fn attach(
    core: &Arc<Core>,
    mut inbound: Streaming<proto::AttachInput>,
) -> Result<RpcStream<proto::AttachOutput>, Status> {
    let start = match inbound.message().await? {
        Some(proto::AttachInput {
            input: Some(proto::attach_input::Input::Start(start)),
        }) => start,
        _ => {
            return Err(Status::invalid_argument(
                "the first message of Attach must be `start`",
            ));
        }
    };
    let options = AttachOptions {
        logs: start.logs,
        stdout: true,
        stderr: true,
        stdin: start.stdin,
    };
    let mut attachment = match core.attach(&start.id, options) {
        Ok(a) if a.live => a,
        Ok(a) => return Err(not_running(&a.name)),
        Err(Error::Conflict(_)) => return Err(not_running(&start.id)),
        Err(e) => return Err(status(e)),
    };
    // Dropped with the response stream: the input task ends then.
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    if let Some(input) = attachment.input() {
        tokio::spawn(forward_input(
            inbound,
            gone_rx,
            attach_command,
            Target::Container(input),
        ));
    }
    let backlog: Vec<_> = std::mem::take(&mut attachment.backlog)
        .into_iter()
        .map(|e| {
            let time = unix_nanos(Some(&e.time));
            Ok(output(e.stream, e.log.into_bytes(), time))
        })
        .collect();
    let live = attachment
        .output()
        .map(|Chunk { stream, data }| Ok(output(stream, data.to_vec(), now_nanos())));
    let exit_code = attachment.exit_code();
    let name = attachment.name.clone();
    let end = futures_util::stream::once(async move {
        let _gone = gone_tx;
        match exit_code.await {
            Some(code) => Ok(proto::AttachOutput {
                kind: Some(proto::attach_output::Kind::ExitCode(code)),
            }),
            None => Err(Status::aborted(format!(
                "container {name} was removed before it ran"
            ))),
        }
    });
    Ok(Box::pin(
        futures_util::stream::iter(backlog).chain(live).chain(end),
    ))
}

fn exec_output(kind: proto::exec_output::Kind) -> Result<proto::ExecOutput, Status> {
    Ok(proto::ExecOutput { kind: Some(kind) })
}

/// Exec: the first message describes the process, which is made and started as `docker exec` has it made and
/// started; the answer is the exec's ID, the process's output, and its exit code. A process that cannot start ends
/// at once with Docker's exit code (126 or 127) and polisd's message on stderr.
pub async fn exec(
    core: &Arc<Core>,
    mut inbound: Streaming<proto::ExecInput>,
) -> Result<RpcStream<proto::ExecOutput>, Status> {
    use proto::exec_output::Kind;
    let start = match inbound.message().await? {
        Some(proto::ExecInput {
            input: Some(proto::exec_input::Input::Start(start)),
        }) => start,
        _ => {
            return Err(Status::invalid_argument(
                "the first message of Exec must be `start`",
            ));
        }
    };
    let some_str = |s: String| (!s.is_empty()).then_some(s);
    let tty = start.tty;
    let config = ExecConfig {
        attach_stdin: Some(start.stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(tty),
        env: (!start.env.is_empty()).then_some(start.env),
        cmd: Some(start.command),
        privileged: Some(start.privileged),
        user: some_str(start.user),
        working_dir: some_str(start.working_dir),
        ..Default::default()
    };
    let exec_id = core
        .exec_create(&start.container_id, config)
        .map_err(status)?;
    let claim = core.exec_claim(&exec_id).map_err(status)?;
    let exec = claim.exec.clone();
    let (failure, output, stdin) = match core.exec_start(claim, true).await {
        Ok(session) => {
            if let Some(size) = start.size.filter(|_| tty)
                && let Err(e) = core.exec_resize(&exec_id, size.width, size.height).await
            {
                tracing::debug!(error = %e, "exec: initial terminal size");
            }
            (None, session.output, session.stdin)
        }
        Err(e) => {
            let text = format!("{e}\n").into_bytes();
            let entry = log_entry(LogStream::Stderr, text, now_nanos());
            (Some(exec_output(Kind::Output(entry))), None, None)
        }
    };
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    tokio::spawn(forward_input(
        inbound,
        gone_rx,
        exec_command,
        Target::Exec {
            core: core.clone(),
            exec_id: exec_id.clone(),
            tty,
            stdin,
        },
    ));
    let head = futures_util::stream::iter(
        std::iter::once(exec_output(Kind::ExecId(exec_id))).chain(failure),
    );
    let live = futures_util::stream::unfold(output, |rx| async move {
        let mut rx = rx?;
        let Chunk { stream, data } = rx.recv().await?;
        let entry = log_entry(stream, data.to_vec(), now_nanos());
        Some((exec_output(Kind::Output(entry)), Some(rx)))
    });
    let end = futures_util::stream::once(async move {
        let _gone = gone_tx;
        exec_output(Kind::ExitCode(exec.exit_code().await))
    });
    Ok(Box::pin(head.chain(live).chain(end)))
}

/// Docker's sample as the typed one: memory without the inactive page cache, as the docker CLI shows it; network
/// and block I/O summed over interfaces and devices.
fn container_stats(s: &ContainerStatsResponse) -> proto::ContainerStats {
    let cpu = s.cpu_stats.clone().unwrap_or_default();
    let memory = s.memory_stats.clone().unwrap_or_default();
    let usage = memory.usage.unwrap_or(0);
    let stat = |key: &str| memory.stats.as_ref().and_then(|m| m.get(key).copied());
    let memory_usage_bytes = match stat("total_inactive_file").or_else(|| stat("inactive_file")) {
        Some(inactive) if inactive < usage => usage - inactive,
        _ => usage,
    };
    let networks = s.networks.iter().flat_map(|n| n.values());
    let (mut rx, mut tx) = (0, 0);
    for n in networks {
        rx += n.rx_bytes.unwrap_or(0);
        tx += n.tx_bytes.unwrap_or(0);
    }
    let (mut read, mut write) = (0, 0);
    let entries = s
        .blkio_stats
        .as_ref()
        .and_then(|b| b.io_service_bytes_recursive.as_ref());
    for e in entries.into_iter().flatten() {
        let op = e.op.as_deref().unwrap_or("").to_ascii_lowercase();
        match op.as_str() {
            "read" => read += e.value.unwrap_or(0),
            "write" => write += e.value.unwrap_or(0),
            _ => {}
        }
    }
    proto::ContainerStats {
        time_unix_nano: unix_nanos(s.read.as_deref()),
        cpu_usage_nanos: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
        system_cpu_usage_nanos: cpu.system_cpu_usage.unwrap_or(0),
        online_cpus: cpu.online_cpus.unwrap_or(0),
        memory_usage_bytes,
        memory_limit_bytes: memory.limit.unwrap_or(0),
        pids: s.pids_stats.as_ref().and_then(|p| p.current).unwrap_or(0),
        network_rx_bytes: rx,
        network_tx_bytes: tx,
        block_read_bytes: read,
        block_write_bytes: write,
    }
}

/// Stats: one sample of a running container, or with `stream` one a second until it stops or the client goes
/// away (the stream is dropped, and sampling with it).
pub async fn stats(
    core: &Arc<Core>,
    request: proto::ContainerStatsRequest,
) -> Result<RpcStream<proto::ContainerStats>, Status> {
    let record = core.db.lookup(&request.id).map_err(status)?;
    if !record.state.status.is_live() {
        return Err(Status::failed_precondition(format!(
            "Container {} is not running",
            record.name
        )));
    }
    if !request.stream {
        let sample = core.stats_sample(&record, false).await.map_err(status)?;
        let one = Ok(container_stats(&sample));
        return Ok(Box::pin(futures_util::stream::iter([one])));
    }
    let samples = core
        .stats_stream(&record)
        .map(|sample| Ok(container_stats(&sample)));
    Ok(Box::pin(samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::{
        ContainerBlkioStatEntry, ContainerBlkioStats, ContainerMemoryStats, ContainerNetworkStats,
    };

    #[test]
    fn a_sample_shows_memory_without_the_inactive_cache_and_sums_devices() {
        let entry = |op: &str, value| ContainerBlkioStatEntry {
            op: Some(op.into()),
            value: Some(value),
            ..Default::default()
        };
        let net = |rx, tx| ContainerNetworkStats {
            rx_bytes: Some(rx),
            tx_bytes: Some(tx),
            ..Default::default()
        };
        let sample = ContainerStatsResponse {
            read: Some("2026-12-04T03:00:00.5Z".into()),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(1000),
                limit: Some(4000),
                stats: Some([("inactive_file".to_string(), 300)].into()),
                ..Default::default()
            }),
            networks: Some(
                [
                    ("eth0".to_string(), net(10, 20)),
                    ("eth1".into(), net(1, 2)),
                ]
                .into(),
            ),
            blkio_stats: Some(ContainerBlkioStats {
                io_service_bytes_recursive: Some(vec![
                    entry("Read", 5),
                    entry("read", 6),
                    entry("Write", 7),
                    entry("Total", 18),
                ]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = container_stats(&sample);
        assert_eq!(s.memory_usage_bytes, 700);
        assert_eq!(s.memory_limit_bytes, 4000);
        assert_eq!((s.network_rx_bytes, s.network_tx_bytes), (11, 22));
        assert_eq!((s.block_read_bytes, s.block_write_bytes), (11, 7));
        assert_eq!(s.time_unix_nano, 1_796_353_200_500_000_000);
    }

    #[test]
    fn later_messages_become_commands() {
        use proto::attach_input::Input;
        let m = |input| proto::AttachInput { input: Some(input) };
        assert!(matches!(
            attach_command(m(Input::Stdin(b"x".to_vec()))),
            Some(Command::Stdin(d)) if d == b"x"
        ));
        assert!(matches!(
            attach_command(m(Input::Resize(proto::TerminalSize {
                width: 80,
                height: 24
            }))),
            Some(Command::Resize {
                width: 80,
                height: 24
            })
        ));
        assert!(matches!(
            attach_command(m(Input::CloseStdin(true))),
            Some(Command::CloseStdin)
        ));
        assert!(attach_command(m(Input::CloseStdin(false))).is_none());
        assert!(attach_command(proto::AttachInput { input: None }).is_none());
    }
}
