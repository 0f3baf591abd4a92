//! Driving containerd-shim-polis-v2 as containerd does (containerd's shim v2 protocol): `start` in the bundle
//! spawns the serving shim and prints its ttrpc address; the Task API over that address creates, starts, waits for,
//! signals and deletes the task; Shutdown ends the shim. Each container has its own shim, so a running container
//! outlives polisd. The Task API client is ttrpc's async one: a running container's pending Wait is a future on
//! polisd's runtime, not a thread.

use super::error::{Error, Result};
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use containerd_shim_protos::shim_async::{Client, TaskClient};
use containerd_shim_protos::ttrpc::context::Context;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The containerd namespace polisd's containers are in (the shim derives its socket and runtime root from it).
pub const NAMESPACE: &str = "polis";
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Shim {
    pub address: String,
    client: TaskClient,
}

/// The paths of a task's stdio (fifos polisd reads and writes) and whether it has a terminal.
pub struct TaskIo<'a> {
    pub stdin: Option<&'a Path>,
    pub stdout: &'a Path,
    pub stderr: Option<&'a Path>,
    pub terminal: bool,
}

/// The runtime the shim runs and its root (containerd.runc.v1.Options, which the shim accepts).
pub struct Runtime<'a> {
    pub binary: &'a Path,
    pub root: &'a Path,
}

fn ctx() -> Context {
    containerd_shim_protos::ttrpc::context::with_timeout(CALL_TIMEOUT.as_nanos() as i64)
}

fn call_err(what: &str, id: &str, e: impl std::fmt::Display) -> Error {
    Error::Failed(format!("{what} container {id}: {e}"))
}

/// The fifo in the bundle the serving shim writes its log to (containerd-shim opens `log` in its working
/// directory): made here and read by [`forward_shim_log`] before the shim starts.
pub fn make_log_fifo(bundle: &Path) -> Result<tokio::net::unix::pipe::Receiver> {
    let path = bundle.join("log");
    let _ = std::fs::remove_file(&path);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::failed(format!("mkfifo {}", path.display()), e))?;
    open_log_fifo(bundle)
}

pub fn open_log_fifo(bundle: &Path) -> Result<tokio::net::unix::pipe::Receiver> {
    let path = bundle.join("log");
    tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(&path)
        .map_err(|e| Error::failed(format!("open {}", path.display()), e))
}

/// Copies the shim's log lines into polisd's log until the shim exits.
pub async fn forward_shim_log(fifo: tokio::net::unix::pipe::Receiver, id: String) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(fifo).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        if line.contains("level=error") || line.contains("level=warn") {
            tracing::warn!(container = id, "shim: {line}");
        } else {
            tracing::debug!(container = id, "shim: {line}");
        }
    }
}

/// Runs `shim start` in `bundle` and returns the address of the serving shim. `events` is polisd's socket the shim
/// publishes task events to.
pub fn start_shim(shim: &Path, bundle: &Path, id: &str, events: &Path) -> Result<String> {
    let output = Command::new(shim)
        .args(["-namespace", NAMESPACE, "-id", id, "-address"])
        .arg(events)
        .arg("start")
        .env("TTRPC_ADDRESS", events)
        .current_dir(bundle)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Failed(format!("run {}: {e}", shim.display())))?;
    if !output.status.success() {
        return Err(Error::Failed(format!(
            "{} start: {}: {}",
            shim.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let address = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if address.is_empty() {
        return Err(Error::Failed(format!(
            "{} start printed no address",
            shim.display()
        )));
    }
    Ok(address)
}

/// Cleans up after a shim that died, as containerd does: `shim delete` in the bundle deletes the container with
/// polis-runc (killing what is left of it) and unmounts the rootfs; the dead shim's socket is removed.
pub fn delete_dead_shim(shim: &Path, bundle: &Path, id: &str, events: &Path) -> Result<()> {
    let output = Command::new(shim)
        .args(["-namespace", NAMESPACE, "-id", id, "-address"])
        .arg(events)
        .arg("delete")
        .env("TTRPC_ADDRESS", events)
        .current_dir(bundle)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Failed(format!("run {}: {e}", shim.display())))?;
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        let path = address.trim().trim_start_matches("unix://").to_string();
        if !path.is_empty() {
            let _ = std::fs::remove_file(path);
        }
        let _ = std::fs::remove_file(bundle.join("address"));
    }
    if !output.status.success() {
        return Err(Error::Failed(format!(
            "{} delete: {}: {}",
            shim.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

impl Shim {
    pub async fn connect(address: &str) -> Result<Shim> {
        let client = Client::connect(address)
            .await
            .map_err(|e| Error::Failed(format!("connect to shim {address}: {e}")))?;
        Ok(Shim {
            address: address.to_string(),
            client: TaskClient::new(client),
        })
    }

    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        rootfs_options: &[String],
        io: &TaskIo<'_>,
        runtime: &Runtime<'_>,
    ) -> Result<u32> {
        let options = RuncOptions {
            binary_name: runtime.binary.display().to_string(),
            root: runtime.root.display().to_string(),
            ..Default::default()
        };
        let options = Any {
            type_url: format!("containerd.runc.v1.{}", "Options"),
            value: options
                .write_to_bytes()
                .map_err(|e| call_err("encode options for", id, e))?,
            ..Default::default()
        };
        let req = api::CreateTaskRequest {
            id: id.to_string(),
            bundle: bundle.display().to_string(),
            rootfs: vec![api::Mount {
                type_: "overlay".into(),
                source: "overlay".into(),
                options: rootfs_options.to_vec(),
                ..Default::default()
            }],
            terminal: io.terminal,
            stdin: io
                .stdin
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            stdout: io.stdout.display().to_string(),
            stderr: io
                .stderr
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            options: MessageField::some(options),
            ..Default::default()
        };
        let resp = self
            .client
            .create(ctx(), &req)
            .await
            .map_err(|e| call_err("create", id, rpc_message(e)))?;
        Ok(resp.pid)
    }

    pub async fn start(&self, id: &str) -> Result<u32> {
        let req = api::StartRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let resp = self
            .client
            .start(ctx(), &req)
            .await
            .map_err(|e| call_err("start", id, rpc_message(e)))?;
        Ok(resp.pid)
    }

    /// Blocks until the task exits; its exit status.
    pub async fn wait(&self, id: &str) -> Result<u32> {
        let req = api::WaitRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let resp = self
            .client
            .wait(Context::default(), &req)
            .await
            .map_err(|e| call_err("wait for", id, rpc_message(e)))?;
        Ok(resp.exit_status)
    }

    pub async fn kill(&self, id: &str, signal: u32) -> Result<()> {
        self.signal(id, "", signal).await
    }

    /// Signals an exec process of the task.
    pub async fn kill_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        self.signal(id, exec_id, signal).await
    }

    /// The task's init (`exec_id` empty) or one of its exec processes gets `signal`.
    async fn signal(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        let req = api::KillRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal,
            all: false,
            ..Default::default()
        };
        let what = if exec_id.is_empty() {
            "kill"
        } else {
            "kill an exec in"
        };
        self.client
            .kill(ctx(), &req)
            .await
            .map_err(|e| call_err(what, id, rpc_message(e)))?;
        Ok(())
    }

    pub async fn pause(&self, id: &str) -> Result<()> {
        let req = api::PauseRequest {
            id: id.to_string(),
            ..Default::default()
        };
        self.client
            .pause(ctx(), &req)
            .await
            .map_err(|e| call_err("pause", id, rpc_message(e)))?;
        Ok(())
    }

    pub async fn resume(&self, id: &str) -> Result<()> {
        let req = api::ResumeRequest {
            id: id.to_string(),
            ..Default::default()
        };
        self.client
            .resume(ctx(), &req)
            .await
            .map_err(|e| call_err("unpause", id, rpc_message(e)))?;
        Ok(())
    }

    /// The task's state: its status and, once it exited, its exit status.
    pub async fn state(&self, id: &str) -> Result<api::StateResponse> {
        let req = api::StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        self.client
            .state(ctx(), &req)
            .await
            .map_err(|e| call_err("state of", id, rpc_message(e)))
    }

    pub async fn resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let req = api::ResizePtyRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            width,
            height,
            ..Default::default()
        };
        self.client
            .resize_pty(ctx(), &req)
            .await
            .map_err(|e| call_err("resize", id, rpc_message(e)))?;
        Ok(())
    }

    pub async fn close_stdin(&self, id: &str) -> Result<()> {
        let req = api::CloseIORequest {
            id: id.to_string(),
            stdin: true,
            ..Default::default()
        };
        self.client
            .close_io(ctx(), &req)
            .await
            .map_err(|e| call_err("close stdin of", id, rpc_message(e)))?;
        Ok(())
    }

    /// Deletes the exited task (the shim unmounts the rootfs) and ends the shim.
    pub async fn delete_and_shutdown(&self, id: &str) -> Result<()> {
        let req = api::DeleteRequest {
            id: id.to_string(),
            ..Default::default()
        };
        if let Err(e) = self.client.delete(ctx(), &req).await {
            tracing::warn!(container = id, error = %rpc_message(e), "delete task");
        }
        let req = api::ShutdownRequest {
            id: id.to_string(),
            now: true,
            ..Default::default()
        };
        // The shim exits while answering: a broken connection is the expected end.
        let _ = self.client.shutdown(ctx(), &req).await;
        Ok(())
    }

    /// Adds an exec process to the task (containerd's `Exec`): `spec` is the runtime-spec Process as JSON, sent as
    /// containerd sends it (an Any of type `types.containerd.io/opencontainers/runtime-spec/1/Process`).
    pub async fn exec(&self, id: &str, exec_id: &str, spec: &[u8], io: &TaskIo<'_>) -> Result<()> {
        let req = api::ExecProcessRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            terminal: io.terminal,
            stdin: io
                .stdin
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            stdout: io.stdout.display().to_string(),
            stderr: io
                .stderr
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            spec: MessageField::some(Any {
                type_url: Self::PROCESS_SPEC_TYPE.to_string(),
                value: spec.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.client
            .exec(ctx(), &req)
            .await
            .map_err(|e| call_err("exec in", id, rpc_message(e)))?;
        Ok(())
    }

    /// Starts an added exec process; its pid.
    pub async fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32> {
        let req = api::StartRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let resp = self
            .client
            .start(ctx(), &req)
            .await
            .map_err(|e| call_err("start exec in", id, rpc_message(e)))?;
        Ok(resp.pid)
    }

    /// Blocks until the exec process exits (and its output is drained); its exit status.
    pub async fn wait_exec(&self, id: &str, exec_id: &str) -> Result<u32> {
        let req = api::WaitRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let resp = self
            .client
            .wait(Context::default(), &req)
            .await
            .map_err(|e| call_err("wait for exec in", id, rpc_message(e)))?;
        Ok(resp.exit_status)
    }

    /// Closes the stdin of an exec process (its client is done with it).
    pub async fn close_exec_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        let req = api::CloseIORequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: true,
            ..Default::default()
        };
        self.client
            .close_io(ctx(), &req)
            .await
            .map_err(|e| call_err("close exec stdin in", id, rpc_message(e)))?;
        Ok(())
    }

    /// Forgets an exec process (created but never started, or exited).
    pub async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<()> {
        let req = api::DeleteRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        self.client
            .delete(ctx(), &req)
            .await
            .map_err(|e| call_err("delete exec in", id, rpc_message(e)))?;
        Ok(())
    }

    /// The type containerd gives the process spec of an exec (its `typeurl` registration of specs.Process).
    pub const PROCESS_SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
}

/// The message of a ttrpc error: the shim's status message when it sent one.
fn rpc_message(e: containerd_shim_protos::ttrpc::Error) -> String {
    match e {
        containerd_shim_protos::ttrpc::Error::RpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    }
}
