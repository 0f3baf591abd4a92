//! Exec instances (`docker exec`): a process run in a running container beside its init, through the container's
//! shim with the Task API's Exec, Start, Wait, ResizePty, CloseIO and Delete naming the exec ID, as containerd
//! drives them. An instance is made by `create`, started once, and inspected until its container stops or is
//! removed: instances live in polisd's memory only, as dockerd's do.
//!
//! The process is the container's own (config.json's `process`: user, capabilities, noNewPrivileges, AppArmor
//! profile, rlimits) with the exec's command, environment, user, working directory and terminal, as dockerd builds
//! it from the container's spec (daemon/exec.go, `execSetPlatformOpt`). Its output goes to the client that started
//! it through fifos of its own, never to the container's log.

use super::Core;
use super::error::{Error, Result};
use super::logs::{Chunk, Stream};
use super::record::{ContainerRecord, Status};
use super::shim::{Shim, TaskIo};
use bollard_stubs::models::{EventMessageTypeEnum, ExecConfig, ExecInspectResponse, ProcessConfig};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

/// dockerd's default PATH of a Linux container (oci.DefaultPathEnv).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// dockerd's default detach keys: ctrl-p, ctrl-q.
const DEFAULT_DETACH_KEYS: [u8; 2] = [16, 17];
/// Finished instances kept for `inspect` before the oldest are forgotten (a container probed by `docker exec`
/// every second would otherwise grow the table for ever).
const MAX_FINISHED: usize = 1024;
/// How long an exited process's output may still be read (a background process can hold it open).
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// Where an instance is in its life.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecState {
    /// A start was asked for: a second one is refused.
    pub claimed: bool,
    pub running: bool,
    pub pid: u32,
    /// Set once the process exited (or could not start).
    pub exit_code: Option<i64>,
}

/// An exec instance.
pub struct Exec {
    pub id: String,
    pub container_id: String,
    /// The request, with User and WorkingDir defaulted to the container's as dockerd does.
    pub config: ExecConfig,
    pub detach_keys: Vec<u8>,
    /// The process's environment: the container's with the request's applied.
    pub env: Vec<String>,
    pub state: watch::Sender<ExecState>,
    seq: u64,
}

impl Exec {
    pub fn tty(&self) -> bool {
        self.config.tty.unwrap_or(false)
    }

    pub fn cmd(&self) -> &[String] {
        self.config.cmd.as_deref().unwrap_or_default()
    }

    fn command_line(&self) -> String {
        self.cmd().join(" ")
    }

    /// Waits until the process exited, or failed to start; its exit code (what the client reads once the output
    /// ended).
    pub async fn exit_code(&self) -> i64 {
        let mut state = self.state.subscribe();
        let code = state
            .wait_for(|s| s.exit_code.is_some())
            .await
            .ok()
            .and_then(|s| s.exit_code);
        // The instance holds the sender, so the wait only ends with the code.
        code.unwrap_or(255)
    }

    fn set_state(&self, f: impl FnOnce(&mut ExecState)) {
        self.state.send_modify(f);
    }
}

/// The instances of this polisd, by ID.
static EXECS: LazyLock<Mutex<HashMap<String, Arc<Exec>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
static SEQ: AtomicU64 = AtomicU64::new(0);

fn execs() -> std::sync::MutexGuard<'static, HashMap<String, Arc<Exec>>> {
    EXECS.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a health check's exec returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub exit_code: i64,
    pub output: String,
}

/// A start that passed dockerd's checks: the instance is claimed for it.
pub struct Claim {
    pub exec: Arc<Exec>,
    record: ContainerRecord,
    shim: Arc<Shim>,
}

/// A started instance's streams, for the client that attached to it.
pub struct Session {
    pub exec: Arc<Exec>,
    /// The output, until the process's side is drained; None when detached or nothing is attached.
    pub output: Option<mpsc::Receiver<Chunk>>,
    pub stdin: Option<ExecStdin>,
}

/// The writer of an exec's stdin.
pub struct ExecStdin {
    sender: pipe::Sender,
    shim: Arc<Shim>,
    container_id: String,
    exec_id: String,
}

impl ExecStdin {
    pub async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.sender.write_all(data).await
    }

    /// Closes the process's stdin: the client sent all it had.
    pub async fn close(self) {
        drop(self.sender);
        let _ = self
            .shim
            .close_exec_stdin(&self.container_id, &self.exec_id)
            .await;
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::failed("background task", e))?
}

fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    let mut f =
        std::fs::File::open("/dev/urandom").map_err(|e| Error::failed("/dev/urandom", e))?;
    std::io::Read::read_exact(&mut f, &mut bytes).map_err(|e| Error::failed("/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("No such exec instance: {id}"))
}

/// Docker's detach keys (`ctrl-p,ctrl-q`, `a`): a single character, or `ctrl-` and one of `a`-`z`, `@`, `[`, `\`,
/// `]`, `^`, `_`, comma separated (moby/term `ToBytes`).
pub fn parse_detach_keys(keys: &str) -> std::result::Result<Vec<u8>, String> {
    const CTRL: &[u8] = b"@abcdefghijklmnopqrstuvwxyz[\\]^_";
    let mut codes = Vec::new();
    for key in keys.split(',') {
        if key.len() == 1 {
            codes.push(key.as_bytes()[0]);
            continue;
        }
        let code = key
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("ctrl-"))
            .and_then(|_| {
                let rest = &key.as_bytes()[5..];
                (rest.len() == 1).then(|| rest[0].to_ascii_lowercase())
            })
            .and_then(|c| CTRL.iter().position(|x| *x == c));
        match code {
            Some(c) => codes.push(c as u8),
            None => return Err(format!("Unknown character: '{key}'")),
        }
    }
    Ok(codes)
}

/// Finds the detach sequence in what a terminal client types: bytes that start the sequence are held back until
/// it is complete (the client detaches) or broken (they are passed on).
#[derive(Debug, Clone)]
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub fn new(keys: &[u8]) -> DetachScanner {
        DetachScanner {
            keys: keys.to_vec(),
            matched: 0,
        }
    }

    /// The bytes to pass on, and whether the sequence completed (what follows it is dropped).
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        if self.keys.is_empty() {
            return (data.to_vec(), false);
        }
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            if self.matched > 0 {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                    continue;
                }
            }
            out.push(b);
        }
        (out, false)
    }
}

/// dockerd's `ReplaceOrAppendEnvValues`: each override replaces the default of the same name or is appended; a
/// name without `=` removes the default.
pub fn replace_or_append_env(mut defaults: Vec<String>, overrides: &[String]) -> Vec<String> {
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, e) in defaults.iter().enumerate() {
        let name = e.split_once('=').map_or(e.as_str(), |(n, _)| n);
        index.insert(name.to_string(), i);
    }
    for value in overrides {
        match value.split_once('=') {
            None => {
                if let Some(&i) = index.get(value.as_str()) {
                    defaults[i].clear();
                }
            }
            Some((name, _)) => match index.get(name) {
                Some(&i) => defaults[i] = value.clone(),
                None => defaults.push(value.clone()),
            },
        }
    }
    defaults.retain(|e| !e.is_empty());
    defaults
}

/// The environment of an exec as dockerd makes it (`CreateDaemonEnvironment`, then the request's Env): PATH,
/// HOSTNAME and, with a terminal, TERM, then the container's Env over them, then the exec's.
pub fn exec_env(
    hostname: &str,
    tty: bool,
    container_env: &[String],
    exec_env: &[String],
) -> Vec<String> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".into());
    }
    let env = replace_or_append_env(env, container_env);
    replace_or_append_env(env, exec_env)
}

/// What the exec changes in the container's process.
pub struct ProcessChanges<'a> {
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub terminal: bool,
    /// The exec's user resolved in the container, when it names one.
    pub user: Option<polis_host::users::User>,
    /// Every capability, for a privileged exec.
    pub privileged_caps: Option<Vec<String>>,
}

/// The runtime-spec Process of an exec: the container's process (`base`, config.json's `process`) with the exec's
/// command, environment, working directory, terminal and user; a privileged exec gets every capability and, where
/// the container is confined by AppArmor, the `unconfined` profile (dockerd's `execSetPlatformOpt`).
pub fn process_spec(base: &Value, changes: &ProcessChanges) -> Value {
    let mut p = if base.is_object() {
        base.clone()
    } else {
        json!({})
    };
    p["args"] = json!(changes.args);
    p["env"] = json!(changes.env);
    p["cwd"] = json!(if changes.cwd.is_empty() {
        "/"
    } else {
        changes.cwd
    });
    p["terminal"] = json!(changes.terminal);
    if let Some(u) = &changes.user {
        let mut user = p["user"].as_object().cloned().unwrap_or_default();
        user.insert("uid".into(), json!(u.uid));
        user.insert("gid".into(), json!(u.gid));
        user.insert("additionalGids".into(), json!(u.additional_gids));
        user.remove("username");
        p["user"] = Value::Object(user);
    }
    if let Some(caps) = &changes.privileged_caps {
        p["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
        if p["apparmorProfile"].as_str().is_some_and(|s| !s.is_empty()) {
            p["apparmorProfile"] = json!("unconfined");
        }
    }
    if let Some(o) = p.as_object_mut() {
        o.remove("consoleSize");
    }
    p
}

/// The exit code dockerd records for an exec that could not start (`translateContainerdStartErr`): 127 when the
/// command was not found, 126 otherwise.
pub fn start_failure_code(cmd: &str, message: &str) -> i64 {
    let m = message.to_lowercase();
    let mut code = 126;
    if m.contains(&cmd.to_lowercase())
        && (m.contains("executable file not found") || m.contains("no such file or directory"))
    {
        code = 127;
    }
    if m.contains("permission denied") {
        code = 126;
    }
    if m.contains("not a directory") {
        code = 127;
    }
    code
}

/// Reads one output fifo of an exec into the session's channel until the shim closes it.
async fn pump(mut fifo: pipe::Receiver, stream: Stream, tx: mpsc::Sender<Chunk>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match fifo.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                let chunk = Chunk {
                    stream,
                    data: Arc::from(&buf[..n]),
                };
                if tx.send(chunk).await.is_err() {
                    // The client is gone: keep draining so that the process never blocks on its output.
                    continue;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "read exec output");
                return;
            }
        }
    }
}

fn mkfifo(path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::failed(format!("mkfifo {}", path.display()), e))
}

fn open_receiver(path: &Path) -> Result<pipe::Receiver> {
    pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(|e| Error::failed(format!("open {}", path.display()), e))
}

impl Core {
    fn exec_event(&self, record: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
        let mut a: HashMap<String, String> = record.config.labels.clone().unwrap_or_default();
        a.insert("name".into(), record.name.clone());
        a.insert("image".into(), record.image.clone());
        for (k, v) in extra {
            a.insert(k.to_string(), v.clone());
        }
        self.events
            .publish(EventMessageTypeEnum::CONTAINER, action, &record.id, a);
    }

    /// The container of an exec, which must be running (dockerd's `getActiveContainer`).
    fn active(&self, reference: &str) -> Result<(ContainerRecord, Arc<Shim>)> {
        let (record, _, shim) = self.running(reference)?;
        if record.state.status == Status::Paused {
            return Err(Error::Conflict(format!(
                "Container {} is paused, unpause the container before exec",
                record.id
            )));
        }
        Ok((record, shim))
    }

    /// Forgets the instances of containers that stopped or are gone, and the oldest finished ones past
    /// [`MAX_FINISHED`].
    fn prune_execs(&self) {
        let all: Vec<Arc<Exec>> = execs().values().cloned().collect();
        let mut gone: Vec<String> = Vec::new();
        let mut finished: Vec<(u64, String)> = Vec::new();
        for e in &all {
            let state = e.state.borrow().clone();
            if state.running {
                continue;
            }
            let live =
                matches!(self.db.get(&e.container_id), Ok(Some(r)) if r.state.status.is_live());
            if !live {
                gone.push(e.id.clone());
            } else if state.exit_code.is_some() {
                finished.push((e.seq, e.id.clone()));
            }
        }
        if finished.len() > MAX_FINISHED {
            finished.sort();
            let extra = finished.len() - MAX_FINISHED;
            gone.extend(finished.into_iter().take(extra).map(|(_, id)| id));
        }
        let mut table = execs();
        for id in gone {
            table.remove(&id);
        }
    }

    /// Makes an exec instance in a running container (`POST /containers/{id}/exec`); its ID.
    pub fn exec_create(&self, reference: &str, mut config: ExecConfig) -> Result<String> {
        let (record, _) = self.active(reference)?;
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(Error::Invalid("No exec command specified".into()));
        }
        let detach_keys = match config.detach_keys.as_deref().filter(|k| !k.is_empty()) {
            None => DEFAULT_DETACH_KEYS.to_vec(),
            Some(k) => parse_detach_keys(k)
                .map_err(|_| Error::Invalid(format!("Invalid escape keys ({k}) provided")))?,
        };
        if config.user.as_deref().unwrap_or("").is_empty() {
            config.user = record.config.user.clone().filter(|u| !u.is_empty());
        }
        if config.working_dir.as_deref().unwrap_or("").is_empty() {
            config.working_dir = record.config.working_dir.clone().filter(|w| !w.is_empty());
        }
        let hostname = record.hostname();
        let env = exec_env(
            &hostname,
            config.tty.unwrap_or(false),
            record.config.env.as_deref().unwrap_or_default(),
            config.env.as_deref().unwrap_or_default(),
        );
        self.prune_execs();
        let exec = Arc::new(Exec {
            id: random_id()?,
            container_id: record.id.clone(),
            config,
            detach_keys,
            env,
            state: watch::channel(ExecState::default()).0,
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
        });
        execs().insert(exec.id.clone(), exec.clone());
        self.exec_event(
            &record,
            &format!("exec_create: {}", exec.command_line()),
            &[("execID", exec.id.clone())],
        );
        Ok(exec.id.clone())
    }

    /// An instance by its ID (404 when unknown).
    pub fn exec_get(&self, id: &str) -> Result<Arc<Exec>> {
        execs().get(id).cloned().ok_or_else(|| not_found(id))
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, id: &str) -> Result<ExecInspectResponse> {
        let exec = self.exec_get(id)?;
        let state = exec.state.borrow().clone();
        let cmd = exec.cmd();
        Ok(ExecInspectResponse {
            can_remove: Some(false),
            detach_keys: Some(exec.config.detach_keys.clone().unwrap_or_default()),
            id: Some(exec.id.clone()),
            running: Some(state.running),
            exit_code: state.exit_code,
            process_config: Some(ProcessConfig {
                privileged: Some(exec.config.privileged.unwrap_or(false)),
                user: Some(exec.config.user.clone().unwrap_or_default()),
                tty: Some(exec.tty()),
                entrypoint: cmd.first().cloned(),
                arguments: Some(cmd.get(1..).unwrap_or_default().to_vec()),
            }),
            open_stdin: Some(exec.config.attach_stdin.unwrap_or(false)),
            open_stderr: Some(exec.config.attach_stderr.unwrap_or(false)),
            open_stdout: Some(exec.config.attach_stdout.unwrap_or(false)),
            container_id: Some(exec.container_id.clone()),
            pid: Some(state.pid as i64),
        })
    }

    /// dockerd's checks before a start (`getExecConfig`, then the instance's state): the instance exists, its
    /// container runs, it was never started. The instance is claimed for this start.
    pub fn exec_claim(&self, id: &str) -> Result<Claim> {
        let exec = self.exec_get(id)?;
        let record = self
            .db
            .get(&exec.container_id)?
            .ok_or_else(|| Error::NotFound(format!("No such container: {id}")))?;
        let (record, shim) = self.active(&record.id)?;
        let mut refused = None;
        exec.state.send_if_modified(|s| {
            if s.exit_code.is_some() {
                refused = Some(format!("Error: Exec command {} has already run", exec.id));
                false
            } else if s.claimed {
                refused = Some(format!(
                    "Error: Exec command {} is already running",
                    exec.id
                ));
                false
            } else {
                s.claimed = true;
                true
            }
        });
        if let Some(message) = refused {
            return Err(Error::Conflict(message));
        }
        Ok(Claim { exec, record, shim })
    }

    /// Gives up a claim whose start never began (its client went away first).
    pub fn exec_unclaim(&self, claim: Claim) {
        claim.exec.set_state(|s| s.claimed = false);
    }

    /// Starts a claimed instance. With `attach`, the streams the instance asked for are made and returned;
    /// without, the process runs detached with no stdio. The process is waited for by a task of its own, which
    /// records its exit code and deletes it from the shim.
    pub async fn exec_start(self: &Arc<Self>, claim: Claim, attach: bool) -> Result<Session> {
        let Claim { exec, record, shim } = claim;
        let result = self.launch_exec(&exec, &record, &shim, attach).await;
        match result {
            Ok(session) => Ok(session),
            Err((e, added)) => {
                let code = start_failure_code(exec.cmd().first().map_or("", |c| c), &e.to_string());
                exec.set_state(|s| {
                    s.running = false;
                    s.exit_code = Some(code);
                });
                if added {
                    let _ = shim.delete_exec(&record.id, &exec.id).await;
                }
                let _ = tokio::fs::remove_dir_all(self.exec_fifo_dir(&record.id, &exec.id)).await;
                Err(e)
            }
        }
    }

    /// Runs a health check's command in a running container, as dockerd's probe does: an exec with the
    /// container's user, working directory and environment, no terminal, stdout and stderr read together (the first
    /// 4096 bytes kept), stopped with SIGKILL after `timeout`. Like dockerd's, its `exec_create`, `exec_start` and
    /// `exec_die` events go to the events stream, but it is not an instance clients can inspect. A check that
    /// cannot run, or exceeds its timeout, has exit code -1 and the reason as its output.
    pub async fn probe_exec(
        self: &Arc<Self>,
        container: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> ProbeOutcome {
        let failed = |output: String| ProbeOutcome {
            exit_code: -1,
            output,
        };
        let (record, shim) = match self.active(container) {
            Ok(a) => a,
            Err(e) => return failed(e.to_string()),
        };
        let id = match random_id() {
            Ok(id) => id,
            Err(e) => return failed(e.to_string()),
        };
        let env = exec_env(
            &record.hostname(),
            false,
            record.config.env.as_deref().unwrap_or_default(),
            &[],
        );
        let exec = Arc::new(Exec {
            id,
            container_id: record.id.clone(),
            config: ExecConfig {
                cmd: Some(cmd),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                user: record.config.user.clone().filter(|u| !u.is_empty()),
                working_dir: record.config.working_dir.clone().filter(|w| !w.is_empty()),
                ..Default::default()
            },
            detach_keys: Vec::new(),
            env,
            state: watch::channel(ExecState {
                claimed: true,
                ..Default::default()
            })
            .0,
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
        });
        self.exec_event(
            &record,
            &format!("exec_create: {}", exec.command_line()),
            &[("execID", exec.id.clone())],
        );
        let claim = Claim {
            exec: exec.clone(),
            record,
            shim: shim.clone(),
        };
        let mut output = super::health::LimitedOutput::default();
        let run = async {
            let session = self.exec_start(claim, true).await?;
            if let Some(mut rx) = session.output {
                while let Some(chunk) = rx.recv().await {
                    output.push(&chunk.data);
                }
            }
            Ok::<_, Error>(exec.exit_code().await)
        };
        let finished = tokio::time::timeout(timeout, run).await;
        match finished {
            Ok(Ok(exit_code)) => ProbeOutcome {
                exit_code,
                output: output.text(),
            },
            Ok(Err(e)) => failed(e.to_string()),
            Err(_) => {
                if exec.state.borrow().running {
                    let _ = shim
                        .kill_exec(
                            &exec.container_id,
                            &exec.id,
                            nix::sys::signal::Signal::SIGKILL as u32,
                        )
                        .await;
                }
                failed(format!(
                    "Health check exceeded timeout ({})",
                    super::health::go_duration(timeout)
                ))
            }
        }
    }

    fn exec_fifo_dir(&self, container: &str, exec: &str) -> PathBuf {
        self.config.fifo_dir(container).join(format!("exec-{exec}"))
    }

    /// The start proper; on error, whether the shim already holds the process (it must then be deleted).
    async fn launch_exec(
        self: &Arc<Self>,
        exec: &Arc<Exec>,
        record: &ContainerRecord,
        shim: &Arc<Shim>,
        attach: bool,
    ) -> std::result::Result<Session, (Error, bool)> {
        let tty = exec.tty();
        let want_stdin = attach && exec.config.attach_stdin.unwrap_or(false);
        let want_stdout = attach && exec.config.attach_stdout.unwrap_or(false);
        let want_stderr = attach && exec.config.attach_stderr.unwrap_or(false) && !tty;
        let dir = self.exec_fifo_dir(&record.id, &exec.id);
        let stdin_path = dir.join("stdin");
        let stdout_path = dir.join("stdout");
        let stderr_path = dir.join("stderr");
        let fail = |e: Error| (e, false);
        std::fs::create_dir_all(&dir).map_err(|e| fail(Error::failed(dir.display(), e)))?;
        let (tx, rx) = mpsc::channel::<Chunk>(64);
        let mut pumps = Vec::new();
        for (wanted, path, stream) in [
            (want_stdout, &stdout_path, Stream::Stdout),
            (want_stderr, &stderr_path, Stream::Stderr),
        ] {
            if wanted {
                mkfifo(path).map_err(fail)?;
                let fifo = open_receiver(path).map_err(fail)?;
                pumps.push(tokio::spawn(pump(fifo, stream, tx.clone())));
            }
        }
        drop(tx);
        let abort = |pumps: &Vec<tokio::task::JoinHandle<()>>| pumps.iter().for_each(|p| p.abort());
        let stdin = if want_stdin {
            let opened = mkfifo(&stdin_path).and_then(|_| {
                pipe::OpenOptions::new()
                    .read_write(true)
                    .open_sender(&stdin_path)
                    .map_err(|e| Error::failed(format!("open {}", stdin_path.display()), e))
            });
            match opened {
                Ok(s) => Some(s),
                Err(e) => {
                    abort(&pumps);
                    return Err(fail(e));
                }
            }
        } else {
            None
        };
        let spec = {
            let exec = exec.clone();
            let record = record.clone();
            blocking(move || exec_process_spec(&exec, &record)).await
        };
        let spec = match spec {
            Ok(s) => s,
            Err(e) => {
                abort(&pumps);
                return Err(fail(e));
            }
        };
        let started = async {
            let none = PathBuf::new();
            let io = TaskIo {
                stdin: want_stdin.then_some(stdin_path.as_path()),
                stdout: if want_stdout { &stdout_path } else { &none },
                stderr: want_stderr.then_some(stderr_path.as_path()),
                terminal: tty,
            };
            shim.exec(&record.id, &exec.id, &spec, &io)
                .await
                .map_err(|e| (e, false))?;
            shim.start_exec(&record.id, &exec.id)
                .await
                .map_err(|e| (e, true))
        }
        .await;
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                abort(&pumps);
                return Err(e);
            }
        };
        exec.set_state(|s| {
            s.running = true;
            s.pid = pid;
        });
        self.exec_event(
            record,
            &format!("exec_start: {}", exec.command_line()),
            &[("execID", exec.id.clone())],
        );
        tokio::spawn(
            self.clone()
                .wait_exec(exec.clone(), record.clone(), shim.clone(), pumps),
        );
        Ok(Session {
            exec: exec.clone(),
            output: (want_stdout || want_stderr).then_some(rx),
            stdin: stdin.map(|sender| ExecStdin {
                sender,
                shim: shim.clone(),
                container_id: record.id.clone(),
                exec_id: exec.id.clone(),
            }),
        })
    }

    /// Waits for an exec's exit, records it, lets its output drain, and deletes it from the shim.
    async fn wait_exec(
        self: Arc<Self>,
        exec: Arc<Exec>,
        record: ContainerRecord,
        shim: Arc<Shim>,
        pumps: Vec<tokio::task::JoinHandle<()>>,
    ) {
        let code = match shim.wait_exec(&record.id, &exec.id).await {
            Ok(code) => code as i64,
            Err(e) => {
                tracing::warn!(container = record.id, exec = exec.id, error = %e, "wait for exec");
                255
            }
        };
        exec.set_state(|s| {
            s.running = false;
            s.exit_code = Some(code);
        });
        for mut p in pumps {
            if tokio::time::timeout(DRAIN_LIMIT, &mut p).await.is_err() {
                p.abort();
            }
        }
        self.exec_event(
            &record,
            "exec_die",
            &[("execID", exec.id.clone()), ("exitCode", code.to_string())],
        );
        let _ = shim.delete_exec(&record.id, &exec.id).await;
        let _ = tokio::fs::remove_dir_all(self.exec_fifo_dir(&record.id, &exec.id)).await;
    }

    /// `POST /exec/{id}/resize`: waits (10 s at most, as dockerd) for the process to start, then sizes its
    /// terminal.
    pub async fn exec_resize(&self, id: &str, width: u32, height: u32) -> Result<()> {
        let exec = self.exec_get(id)?;
        let (record, shim) = self.active(&exec.container_id)?;
        let mut rx = exec.state.subscribe();
        let started = tokio::time::timeout(
            Duration::from_secs(10),
            rx.wait_for(|s| s.pid != 0 || s.exit_code.is_some()),
        )
        .await
        .map(|r| r.map(|s| s.exit_code.is_none()).unwrap_or(false));
        match started {
            Ok(true) => {}
            Ok(false) => {
                return Err(Error::Conflict(format!(
                    "Exec command {} is not running",
                    exec.id
                )));
            }
            Err(_) => {
                return Err(Error::Failed(
                    "timeout waiting for exec session ready".into(),
                ));
            }
        }
        shim.resize(&record.id, &exec.id, width, height).await
    }
}

/// Builds the process of `exec` from the container's config.json, resolving its user in the container's root
/// (the running container's own, through /proc/PID/root).
fn exec_process_spec(exec: &Exec, record: &ContainerRecord) -> Result<Vec<u8>> {
    let path = record.bundle.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::failed(path.display(), e))?;
    let config: Value =
        serde_json::from_slice(&text).map_err(|e| Error::failed(path.display(), e))?;
    let user = match exec.config.user.as_deref().filter(|u| !u.is_empty()) {
        None => None,
        Some(name) => {
            let root = PathBuf::from(format!("/proc/{}/root", record.state.pid));
            Some(
                polis_host::users::resolve_user(&root, name)
                    .map_err(|e| Error::Failed(format!("unable to find user {name}: {e}")))?,
            )
        }
    };
    let privileged = exec.config.privileged.unwrap_or(false);
    let spec = process_spec(
        &config["process"],
        &ProcessChanges {
            args: exec.cmd(),
            env: &exec.env,
            cwd: exec.config.working_dir.as_deref().unwrap_or("/"),
            terminal: exec.tty(),
            user,
            privileged_caps: privileged.then(super::spec::all_caps),
        },
    );
    serde_json::to_vec(&spec).map_err(|e| Error::failed("encode the exec's process", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_parse_as_docker_parses_them() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), [16, 17]);
        assert_eq!(parse_detach_keys("a,CTRL-@,ctrl-_").unwrap(), [b'a', 0, 31]);
        assert_eq!(parse_detach_keys("ctrl-[,ctrl-\\").unwrap(), [27, 28]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("ab").is_err());
        assert!(parse_detach_keys("").is_err());
    }

    #[test]
    fn the_detach_sequence_is_held_back_until_it_completes_or_breaks() {
        let mut s = DetachScanner::new(&[16, 17]);
        assert_eq!(s.feed(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(s.feed(b"c"), (b"\x10c".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11rest"), (Vec::new(), true));
        let mut s = DetachScanner::new(&[]);
        assert_eq!(s.feed(b"\x10\x11"), (b"\x10\x11".to_vec(), false));
    }

    #[test]
    fn env_is_replaced_appended_or_removed() {
        let env = replace_or_append_env(
            vec!["A=1".into(), "B=2".into(), "C=3".into()],
            &["B=x".into(), "C".into(), "D=4".into()],
        );
        assert_eq!(env, ["A=1", "B=x", "D=4"]);
    }

    #[test]
    fn the_exec_env_starts_from_dockers_defaults() {
        let env = exec_env(
            "web",
            true,
            &["PATH=/bin".into(), "APP=1".into()],
            &["APP=2".into(), "X=y".into()],
        );
        assert_eq!(
            env,
            ["PATH=/bin", "HOSTNAME=web", "TERM=xterm", "APP=2", "X=y"]
        );
        let env = exec_env("web", false, &[], &[]);
        assert_eq!(env, [format!("PATH={DEFAULT_PATH}"), "HOSTNAME=web".into()]);
    }

    #[test]
    fn the_process_is_the_containers_with_the_execs_changes() {
        let base = json!({
            "args": ["/bin/sh"], "env": ["A=1"], "cwd": "/", "terminal": false,
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [5]},
            "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"]},
            "noNewPrivileges": true, "apparmorProfile": "docker-default",
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
        });
        let args = ["echo".to_string(), "hi".into()];
        let env = ["PATH=/bin".to_string()];
        let p = process_spec(
            &base,
            &ProcessChanges {
                args: &args,
                env: &env,
                cwd: "/tmp",
                terminal: true,
                user: None,
                privileged_caps: None,
            },
        );
        assert_eq!(p["args"], json!(["echo", "hi"]));
        assert_eq!(p["env"], json!(["PATH=/bin"]));
        assert_eq!(p["cwd"], "/tmp");
        assert_eq!(p["terminal"], true);
        assert_eq!(p["user"]["uid"], 1000, "the container's user stays");
        assert_eq!(p["capabilities"], base["capabilities"]);
        assert_eq!(p["noNewPrivileges"], true);
        assert_eq!(p["apparmorProfile"], "docker-default");
        assert_eq!(p["rlimits"], base["rlimits"]);

        let caps = vec!["CAP_CHOWN".to_string(), "CAP_SYS_ADMIN".into()];
        let p = process_spec(
            &base,
            &ProcessChanges {
                args: &args,
                env: &env,
                cwd: "",
                terminal: false,
                user: Some(polis_host::users::User {
                    uid: 0,
                    gid: 0,
                    additional_gids: vec![],
                }),
                privileged_caps: Some(caps.clone()),
            },
        );
        assert_eq!(p["cwd"], "/");
        assert_eq!(p["user"], json!({"uid": 0, "gid": 0, "additionalGids": []}));
        assert_eq!(p["capabilities"]["bounding"], json!(caps));
        assert_eq!(p["capabilities"]["effective"], json!(caps));
        assert_eq!(p["apparmorProfile"], "unconfined");
    }

    #[test]
    fn start_failures_get_dockers_exit_codes() {
        let m = "exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH";
        assert_eq!(start_failure_code("nope", m), 127);
        assert_eq!(
            start_failure_code("/x", "exec /x: no such file or directory"),
            127
        );
        assert_eq!(start_failure_code("/x", "exec /x: permission denied"), 126);
        assert_eq!(start_failure_code("sh", "something else"), 126);
    }
}
