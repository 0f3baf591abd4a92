//! Container operations: create, start, stop, kill, pause, wait, remove, rename, and recovery of running
//! containers when polisd starts. Each running container has its own containerd-shim-polis-v2 (shim.rs); its output
//! reaches the log and attached clients through fifos (logs.rs).

use super::error::{Error, Result};
use super::logs::{Chunk, Entry, LogFilter, LogWriter, Output, OutputEvent, Stream, pump};
use super::record::{ContainerRecord, ShimInfo, State, Status};
use super::shim::{Runtime, Shim, TaskIo, start_shim};
use super::{Core, images, spec};
use bollard_stubs::models::{
    ContainerConfig, ContainerCreateBody, EventMessageTypeEnum, HostConfig,
};
use nix::sys::signal::Signal;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// How a container's runs went so far, for `wait`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub exits: u64,
    pub exit_code: i64,
    pub removed: bool,
}

/// The in-memory side of a container.
pub struct Handle {
    pub output: Arc<Output>,
    pub progress: watch::Sender<Progress>,
    /// The writer of the stdin fifo while the container runs with `OpenStdin`.
    pub stdin: tokio::sync::Mutex<Option<pipe::Sender>>,
    /// Counts starts, so that an attach made before `start` finds the stdin of the run it waits for.
    pub starts: watch::Sender<u64>,
    shim: Mutex<Option<Arc<Shim>>>,
    /// The restart policy's last back-off delay.
    pub restart_delay: Mutex<Option<Duration>>,
    /// One lifecycle operation at a time per container.
    op: tokio::sync::Mutex<()>,
}

impl Handle {
    pub fn shim(&self) -> Option<Arc<Shim>> {
        self.shim.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_shim(&self, shim: Option<Arc<Shim>>) {
        *self.shim.lock().unwrap_or_else(|e| e.into_inner()) = shim;
    }
}

/// `wait`'s conditions (Docker's `condition` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    pub fn parse(text: &str) -> Result<WaitCondition> {
        match text {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(Error::Invalid(format!(
                "invalid condition: \"{other}\" (expected not-running, next-exit or removed)"
            ))),
        }
    }
}

/// What an attached client asks for: Docker's attach parameters, gRPC's AttachStart.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttachOptions {
    /// The logged output first.
    pub logs: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The container's stdin (ignored when it does not keep it open, as dockerd ignores it).
    pub stdin: bool,
}

/// A client attached to a container ([`Core::attach`]): the logged output it asked for, the live output from the
/// attach on, the exit of the run it follows, and its input.
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub tty: bool,
    /// The entries of the log, when asked for.
    pub backlog: Vec<Entry>,
    /// The container was created or running: its output follows until its run ends.
    pub live: bool,
    output: Option<broadcast::Receiver<OutputEvent>>,
    options: AttachOptions,
    progress: watch::Receiver<Progress>,
    exits_before: u64,
    input: Option<AttachInput>,
}

impl Attachment {
    /// The live output of the streams asked for, until the container's run ends (nothing when it was not live).
    pub fn output(&mut self) -> impl futures_util::Stream<Item = Chunk> + Send + 'static {
        super::logs::chunks(self.output.take(), self.options.stdout, self.options.stderr)
    }

    /// The client's side: stdin and terminal sizes.
    pub fn input(&mut self) -> Option<AttachInput> {
        self.input.take()
    }

    /// Waits for the end of the run the client attached to: its exit code, or None when the container was removed
    /// without running.
    pub fn exit_code(&self) -> impl std::future::Future<Output = Option<i64>> + Send + 'static {
        let mut progress = self.progress.clone();
        let before = self.exits_before;
        async move {
            let p = *progress
                .wait_for(|p| p.exits > before || p.removed)
                .await
                .ok()?;
            (p.exits > before).then_some(p.exit_code)
        }
    }
}

/// An attached client's input: what it sends goes to the run it attached to, so before anything is passed on the
/// run must have started (a client attaches before `start`).
pub struct AttachInput {
    core: Arc<Core>,
    h: Arc<Handle>,
    id: String,
    /// Stdin was asked for and the container keeps it open.
    stdin: bool,
    /// The container's `StdinOnce`.
    once: bool,
    started: bool,
    starts: watch::Receiver<u64>,
    starts_before: u64,
    removed: watch::Receiver<Progress>,
}

impl AttachInput {
    /// Whether stdin is forwarded.
    pub fn has_stdin(&self) -> bool {
        self.stdin
    }

    /// Waits until the run the client attached to has started; false when it never will (the container was
    /// removed).
    pub async fn started(&mut self) -> bool {
        if !self.started {
            let before = self.starts_before;
            self.started = tokio::select! {
                r = self.starts.wait_for(|n| *n > before) => r.is_ok(),
                _ = self.removed.wait_for(|p| p.removed) => false,
            };
        }
        self.started
    }

    /// Writes to the container's stdin once its run started; false when stdin is not forwarded or closed.
    pub async fn write(&mut self, data: &[u8]) -> bool {
        if !self.stdin || !self.started().await {
            return false;
        }
        let mut stdin = self.h.stdin.lock().await;
        let Some(w) = stdin.as_mut() else {
            return false;
        };
        w.write_all(data).await.is_ok()
    }

    /// Sizes the container's terminal once its run started.
    pub async fn resize(&mut self, width: u32, height: u32) -> Result<()> {
        if !self.started().await {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                self.id
            )));
        }
        self.core.resize(&self.id, width, height).await
    }

    /// Closes the container's stdin once its run started (the client sent all it had).
    pub async fn close(&mut self) {
        if self.stdin && self.started().await {
            self.core.close_stdin(&self.id).await;
        }
    }

    /// The client's input ended: a container with `StdinOnce` that started has its stdin closed, as with dockerd.
    pub async fn end(self) {
        if self.stdin && self.once && self.started {
            self.core.close_stdin(&self.id).await;
        }
    }
}

/// Container names as Docker takes them.
pub fn check_name(name: &str) -> Result<()> {
    if super::docker_name_ok(name, 2, 255) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// A signal as Docker's API names it: `SIGKILL`, `KILL` or `9`.
pub fn parse_signal(text: &str) -> Result<Signal> {
    let bad = || Error::Invalid(format!("Invalid signal: {text}"));
    if let Ok(n) = text.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

pub(crate) fn random_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    let mut f =
        std::fs::File::open("/dev/urandom").map_err(|e| Error::failed("/dev/urandom", e))?;
    std::io::Read::read_exact(&mut f, &mut bytes).map_err(|e| Error::failed("/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A name for a container created without one, as Docker makes them (adjective_noun).
fn generated_name(id: &str) -> String {
    const ADJECTIVES: &[&str] = &[
        "brave", "calm", "eager", "fond", "keen", "lucid", "merry", "noble", "quiet", "swift",
        "vivid", "wise", "bold", "gentle", "jolly", "proud",
    ];
    const NOUNS: &[&str] = &[
        "agora", "archon", "citizen", "forum", "harbor", "lyceum", "oracle", "pnyx", "stoa",
        "temple", "theatre", "tholos", "wall", "gate", "market", "council",
    ];
    let n = u64::from_str_radix(&id[..8], 16).unwrap_or(0);
    format!(
        "{}_{}_{}",
        ADJECTIVES[(n % 16) as usize],
        NOUNS[((n >> 4) % 16) as usize],
        &id[8..12]
    )
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::failed("background task", e))?
}

fn mkfifo(path: &Path) -> Result<()> {
    let _ = std::fs::remove_file(path);
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::failed(format!("mkfifo {}", path.display()), e))
}

/// The overlayfs options of the mount at `rootfs` (lowerdir, upperdir, workdir), for the shim to mount it again.
fn overlay_options(rootfs: &Path) -> Result<Vec<String>> {
    let mounts =
        polis_host::mountinfo::read(None).map_err(|e| Error::failed("read mountinfo", e))?;
    let mount = mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == rootfs && m.fstype == "overlay")
        .ok_or_else(|| Error::Failed(format!("{} is not an overlay mount", rootfs.display())))?;
    let options: Vec<String> = ["lowerdir", "upperdir", "workdir"]
        .iter()
        .filter_map(|k| mount.super_option(k).map(|v| format!("{k}={v}")))
        .collect();
    if options.len() != 3 {
        return Err(Error::Failed(format!(
            "the overlay at {} lacks lowerdir, upperdir or workdir",
            rootfs.display()
        )));
    }
    Ok(options)
}

/// The attributes of a container's events: its labels, name and image.
pub(crate) fn event_attributes(record: &ContainerRecord) -> HashMap<String, String> {
    attributes(record, &[])
}

fn attributes(record: &ContainerRecord, extra: &[(&str, String)]) -> HashMap<String, String> {
    let mut a: HashMap<String, String> = record.config.labels.clone().unwrap_or_default();
    a.insert("name".into(), record.name.clone());
    a.insert("image".into(), record.image.clone());
    for (k, v) in extra {
        a.insert(k.to_string(), v.clone());
    }
    a
}

impl Core {
    /// The in-memory handle of a container, made on first use.
    pub fn handle(&self, record: &ContainerRecord) -> Arc<Handle> {
        let mut handles = self.handles();
        handles
            .entry(record.id.clone())
            .or_insert_with(|| {
                let log = LogWriter::new(
                    &record.log_path,
                    self.config.logs.max_size,
                    self.config.logs.max_files,
                );
                Arc::new(Handle {
                    output: Output::new(log),
                    progress: watch::channel(Progress {
                        exits: 0,
                        exit_code: record.state.exit_code,
                        removed: false,
                    })
                    .0,
                    stdin: tokio::sync::Mutex::new(None),
                    starts: watch::channel(0).0,
                    shim: Mutex::new(None),
                    restart_delay: Mutex::new(None),
                    op: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    fn container_event(&self, record: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
        self.events.publish(
            EventMessageTypeEnum::CONTAINER,
            action,
            &record.id,
            attributes(record, extra),
        );
    }

    /// Creates a container from a Docker create request; returns its ID.
    pub async fn create(
        self: &Arc<Self>,
        name: Option<&str>,
        body: ContainerCreateBody,
    ) -> Result<String> {
        let image_name = body
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .ok_or_else(|| Error::Invalid("No image specified: Config.Image is empty".into()))?;
        let id = random_id()?;
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(n);
                check_name(n)?;
                n.to_string()
            }
            None => generated_name(&id),
        };
        if let Some(hc) = &body.healthcheck {
            super::health::validate(hc)?;
        }
        let host: HostConfig = body.host_config.clone().unwrap_or_default();
        let request: ContainerConfig = serde_json::from_value(
            serde_json::to_value(&body).map_err(|e| Error::failed("encode request", e))?,
        )
        .map_err(|e| Error::Invalid(e.to_string()))?;
        let networks = self.plan_endpoints(
            &host,
            body.networking_config.as_ref(),
            body.exposed_ports.as_deref().unwrap_or(&[]),
        )?;
        let store = self.store.clone();
        let wanted = image_name.clone();
        let image = blocking(move || images::find(&store, &wanted)).await?;
        let config = spec::merge(request, &image.config);
        let args = spec::process_args(&config)?;
        let (mounts, made_volumes) = self.resolve_mounts(&config, &host)?;
        let dir = self.config.containers_dir().join(&id);
        let bundle = dir.join("bundle");
        let record = ContainerRecord {
            id: id.clone(),
            name,
            image: image_name,
            image_id: image.id.clone(),
            created: super::logs::now(),
            path: args[0].clone(),
            args: args[1..].to_vec(),
            config,
            host_config: host,
            state: State::default(),
            bundle: bundle.clone(),
            rootfs_options: Vec::new(),
            mounts,
            log_path: dir.join("container.log"),
            shim: None,
            restart_count: 0,
            stopped_by_user: false,
        };
        let store = self.store.clone();
        let made = record.clone();
        let made_bundle = blocking(move || {
            let mut record = made;
            let result = make_bundle(&store, &image, &dir, &mut record);
            if result.is_err() {
                remove_container_files(&dir, &record.bundle);
            }
            result.map(|_| record)
        })
        .await;
        let record = match made_bundle {
            Ok(r) => r,
            Err(e) => {
                self.discard_volumes(&made_volumes);
                return Err(e);
            }
        };
        super::crash::point("create");
        if let Err(e) = self
            .db
            .insert(&record)
            .and_then(|_| self.add_endpoints(&record.id, &networks))
        {
            self.discard_volumes(&made_volumes);
            let (dir, bundle) = (
                self.config.containers_dir().join(&record.id),
                record.bundle.clone(),
            );
            let _ = blocking(move || {
                remove_container_files(&dir, &bundle);
                Ok(())
            })
            .await;
            return Err(e);
        }
        self.handle(&record);
        self.container_event(&record, "create", &[]);
        Ok(id)
    }

    /// Starts a created or exited container.
    pub async fn start(self: &Arc<Self>, reference: &str) -> Result<()> {
        let record = self.db.lookup(reference)?;
        let h = self.handle(&record);
        let _op = h.op.lock().await;
        let mut record = self.db.lookup(&record.id)?;
        match record.state.status {
            Status::Running | Status::Paused => {
                return Err(Error::NotModified("container already started".into()));
            }
            Status::Removing | Status::Dead => {
                return Err(Error::Conflict(format!(
                    "cannot start container {}: it is being removed",
                    record.id
                )));
            }
            _ => {}
        }
        let fifos = self.config.fifo_dir(&record.id);
        std::fs::create_dir_all(&fifos).map_err(|e| Error::failed(fifos.display(), e))?;
        let result = self.launch(&mut record, &h, &fifos).await;
        if let Err(e) = &result {
            self.network_down(&record.id).await;
            let _ = std::fs::remove_dir_all(&fifos);
            record.state.error = e.to_string();
            record.state.exit_code = 128;
            let _ = self.db.update(&record);
            // As dockerd: a container that was to be removed at its exit is removed when it cannot start.
            if record.host_config.auto_remove.unwrap_or(false) {
                drop(_op);
                if let Err(e) = self.remove(&record.id, true, true).await {
                    tracing::warn!(container = record.id, error = %e, "auto-remove");
                }
            }
        }
        result
    }

    async fn launch(
        self: &Arc<Self>,
        record: &mut ContainerRecord,
        h: &Arc<Handle>,
        fifos: &Path,
    ) -> Result<()> {
        self.network_up(record).await?;
        let tty = record.tty();
        let stdout_path = fifos.join("stdout");
        let stderr_path = fifos.join("stderr");
        let stdin_path = fifos.join("stdin");
        mkfifo(&stdout_path)?;
        if !tty {
            mkfifo(&stderr_path)?;
        }
        if record.open_stdin() {
            mkfifo(&stdin_path)?;
        }
        let (pumps, stdin) = open_fifos(h, fifos, tty, record.open_stdin())?;
        let id = record.id.clone();
        let bundle = record.bundle.clone();
        let options = record.rootfs_options.clone();
        let shim_path = self.config.shim_path();
        let events = self.config.events_socket();
        let runtime_binary = self.config.runtime_path();
        let runtime_root = self.config.runtime_root();
        let open_stdin = record.open_stdin();
        let shim_log = super::shim::make_log_fifo(&record.bundle)?;
        tokio::spawn(super::shim::forward_shim_log(shim_log, record.id.clone()));
        let started = async {
            let address = {
                let (bundle, id) = (bundle.clone(), id.clone());
                blocking(move || start_shim(&shim_path, &bundle, &id, &events)).await?
            };
            let shim = Shim::connect(&address).await?;
            let io = TaskIo {
                stdin: open_stdin.then_some(stdin_path.as_path()),
                stdout: &stdout_path,
                stderr: (!tty).then_some(stderr_path.as_path()),
                terminal: tty,
            };
            let runtime = Runtime {
                binary: &runtime_binary,
                root: &runtime_root,
            };
            let made = match shim.create(&id, &bundle, &options, &io, &runtime).await {
                Ok(_) => shim.start(&id).await,
                Err(e) => Err(e),
            };
            match made {
                Ok(pid) => Ok((shim, pid)),
                Err(e) => {
                    let _ = shim.delete_and_shutdown(&id).await;
                    Err(e)
                }
            }
        }
        .await;
        let (shim, pid) = match started {
            Ok(s) => s,
            Err(e) => {
                for p in pumps {
                    p.abort();
                }
                return Err(e);
            }
        };
        let shim = Arc::new(shim);
        super::crash::point("start");
        record.state = State {
            status: Status::Running,
            pid: pid as i64,
            exit_code: 0,
            started_at: Some(super::logs::now()),
            finished_at: record.state.finished_at.clone(),
            error: String::new(),
            oom_killed: false,
            health: record.state.health.take(),
        };
        record.shim = Some(ShimInfo {
            address: shim.address.clone(),
        });
        record.stopped_by_user = false;
        self.db.update(record)?;
        h.set_shim(Some(shim.clone()));
        *h.stdin.lock().await = stdin;
        h.starts.send_modify(|n| *n += 1);
        self.container_event(record, "start", &[]);
        self.start_health(record, true);
        tokio::spawn(self.clone().monitor(record.id.clone(), shim, pumps));
        Ok(())
    }

    /// Waits for the task's exit, then records it.
    async fn monitor(self: Arc<Self>, id: String, shim: Arc<Shim>, pumps: Vec<JoinHandle<()>>) {
        let (code, error) = match shim.wait(&id).await {
            Ok(code) => (code as i64, String::new()),
            Err(e) => (255, e.to_string()),
        };
        for p in pumps {
            // The shim drains and closes the output before it reports the exit; a process that still holds the
            // container's output open does not hold up the exit for long.
            let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
        }
        self.finish(&id, code, error, Some(shim)).await;
    }

    /// Records a container's exit, ends its shim and applies `AutoRemove`.
    async fn finish(self: &Arc<Self>, id: &str, code: i64, error: String, shim: Option<Arc<Shim>>) {
        let Ok(Some(mut record)) = self.db.get(id) else {
            return;
        };
        let h = self.handle(&record);
        self.stop_health(id);
        {
            let _op = h.op.lock().await;
            if let Some(shim) = shim {
                let _ = shim.delete_and_shutdown(id).await;
            }
            h.set_shim(None);
            *h.stdin.lock().await = None;
            let _ = std::fs::remove_dir_all(self.config.fifo_dir(id));
            record.state.status = Status::Exited;
            record.state.pid = 0;
            record.state.exit_code = code;
            record.state.finished_at = Some(super::logs::now());
            record.state.error = error;
            record.shim = None;
            if let Err(e) = self.db.update(&record) {
                tracing::error!(container = id, error = %e, "record the exit");
            }
            // Attached clients and `logs --follow` end once the exit is recorded, as with dockerd: a client that
            // removes the container right after sees it stopped.
            h.output.end();
            self.network_down(id).await;
            self.container_event(&record, "die", &[("exitCode", code.to_string())]);
            h.progress.send_modify(|p| {
                p.exits += 1;
                p.exit_code = code;
            });
        }
        if record.host_config.auto_remove.unwrap_or(false)
            && let Err(e) = self.remove(id, true, true).await
        {
            tracing::warn!(container = id, error = %e, "auto-remove");
        }
        self.apply_restart_policy(&record);
    }

    pub fn running(&self, reference: &str) -> Result<(ContainerRecord, Arc<Handle>, Arc<Shim>)> {
        let record = self.db.lookup(reference)?;
        let h = self.handle(&record);
        match (record.state.status.is_live(), h.shim()) {
            (true, Some(shim)) => Ok((record, h, shim)),
            _ => Err(Error::Conflict(format!(
                "Container {} is not running",
                record.id
            ))),
        }
    }

    pub async fn kill(&self, reference: &str, signal: Option<&str>) -> Result<()> {
        let signal = parse_signal(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        let (record, _, shim) = self.running(reference)?;
        shim.kill(&record.id, signal as u32).await?;
        self.container_event(&record, "kill", &[("signal", (signal as i32).to_string())]);
        Ok(())
    }

    /// Waits until the container's run count passes `before`, for at most `limit`.
    async fn exited_since(h: &Handle, before: u64, limit: Duration) -> bool {
        let mut rx = h.progress.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|p| p.exits > before || p.removed))
            .await
            .is_ok()
    }

    /// Stops a running container: its StopSignal, then SIGKILL after `timeout` seconds (default: its StopTimeout,
    /// else 10; negative: wait for ever).
    pub async fn stop(&self, reference: &str, timeout: Option<i64>) -> Result<()> {
        let mut record = self.db.lookup(reference)?;
        if !record.state.status.is_live() {
            // Also cancels a restart its policy has scheduled.
            if !record.stopped_by_user {
                record.stopped_by_user = true;
                self.db.update(&record)?;
            }
            return Err(Error::NotModified("container already stopped".into()));
        }
        let (mut record, h, shim) = self.running(reference)?;
        record.stopped_by_user = true;
        self.db.update(&record)?;
        let before = h.progress.borrow().exits;
        let signal = parse_signal(record.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
        let timeout = timeout.or(record.config.stop_timeout).unwrap_or(10);
        if record.state.status == Status::Paused {
            let _ = shim.resume(&record.id).await;
        }
        shim.kill(&record.id, signal as u32).await?;
        super::crash::point("stop");
        let limit = if timeout < 0 {
            Duration::MAX
        } else {
            Duration::from_secs(timeout as u64)
        };
        if !Self::exited_since(&h, before, limit).await {
            let _ = shim.kill(&record.id, Signal::SIGKILL as u32).await;
            Self::exited_since(&h, before, Duration::from_secs(30)).await;
        }
        self.container_event(&record, "stop", &[]);
        Ok(())
    }

    pub async fn restart(self: &Arc<Self>, reference: &str, timeout: Option<i64>) -> Result<()> {
        match self.stop(reference, timeout).await {
            Ok(()) | Err(Error::NotModified(_)) => {}
            Err(e) => return Err(e),
        }
        self.start(reference).await?;
        let record = self.db.lookup(reference)?;
        self.container_event(&record, "restart", &[]);
        Ok(())
    }

    pub async fn pause(&self, reference: &str, pause: bool) -> Result<()> {
        let (mut record, _, shim) = self.running(reference)?;
        let id = record.id.clone();
        if pause {
            if record.state.status == Status::Paused {
                return Err(Error::Conflict(format!("Container {id} is already paused")));
            }
            shim.pause(&id).await?;
            record.state.status = Status::Paused;
        } else {
            if record.state.status != Status::Paused {
                return Err(Error::Conflict(format!("Container {id} is not paused")));
            }
            shim.resume(&id).await?;
            record.state.status = Status::Running;
        }
        self.db.update(&record)?;
        self.container_event(&record, if pause { "pause" } else { "unpause" }, &[]);
        Ok(())
    }

    /// Waits for the condition; the container's exit code.
    pub async fn wait(&self, reference: &str, condition: WaitCondition) -> Result<i64> {
        let record = self.db.lookup(reference)?;
        let h = self.handle(&record);
        let mut rx = h.progress.subscribe();
        let before = rx.borrow().exits;
        if condition == WaitCondition::NotRunning && !record.state.status.is_live() {
            return Ok(record.state.exit_code);
        }
        let p = rx
            .wait_for(|p| match condition {
                WaitCondition::Removed => p.removed,
                _ => p.exits > before || p.removed,
            })
            .await
            .map_err(|e| Error::failed("wait", e))?;
        Ok(p.exit_code)
    }

    /// Removes a container; a running one only with `force` (it is killed first). `volumes`: its anonymous
    /// volumes go too.
    pub async fn remove(&self, reference: &str, force: bool, volumes: bool) -> Result<()> {
        let record = self.db.lookup(reference)?;
        let h = self.handle(&record);
        if record.state.status.is_live() {
            if !force {
                return Err(Error::Conflict(format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    record.id
                )));
            }
            let before = h.progress.borrow().exits;
            if let Some(shim) = h.shim() {
                let _ = shim.kill(&record.id, Signal::SIGKILL as u32).await;
                Self::exited_since(&h, before, Duration::from_secs(30)).await;
            }
        }
        let _op = h.op.lock().await;
        let Some(record) = self.db.get(&record.id)? else {
            return Ok(());
        };
        let dir = self.config.containers_dir().join(&record.id);
        let bundle = record.bundle.clone();
        blocking(move || {
            remove_container_files(&dir, &bundle);
            Ok(())
        })
        .await?;
        super::crash::point("remove");
        self.forget_container_networks(&record.id).await;
        self.stop_health(&record.id);
        self.db.remove(&record.id)?;
        if volumes {
            self.remove_anonymous_volumes(&record);
        }
        self.handles().remove(&record.id);
        self.container_event(&record, "destroy", &[]);
        // Clients attached to a container that never ran are done with it.
        h.output.end();
        h.progress.send_modify(|p| p.removed = true);
        Ok(())
    }

    pub fn rename(&self, reference: &str, new_name: &str) -> Result<()> {
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        check_name(new_name)?;
        let mut record = self.db.lookup(reference)?;
        let old = std::mem::replace(&mut record.name, new_name.to_string());
        self.db.update(&record)?;
        self.rename_in_networks(&record.id);
        self.container_event(&record, "rename", &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    pub async fn resize(&self, reference: &str, width: u32, height: u32) -> Result<()> {
        let (record, _, shim) = self.running(reference)?;
        shim.resize(&record.id, "", width, height).await
    }

    /// Closes the container's stdin (its attached client is done with it).
    pub async fn close_stdin(&self, id: &str) {
        let record = match self.db.get(id) {
            Ok(Some(r)) => r,
            _ => return,
        };
        let h = self.handle(&record);
        *h.stdin.lock().await = None;
        if let Some(shim) = h.shim() {
            let _ = shim.close_stdin(id).await;
        }
    }

    /// Attaches a client to a container's stdio (REST's hijacked `attach`, gRPC's Attach): a stopped container only
    /// for its logs. The output is subscribed to before this returns, under the log's lock and with the state read
    /// again there, so that a client told it is attached loses nothing the container writes later, and an attach
    /// made as the container exits still sees the end of its output.
    pub fn attach(self: &Arc<Self>, reference: &str, options: AttachOptions) -> Result<Attachment> {
        let record = self.db.lookup(reference)?;
        if matches!(record.state.status, Status::Exited | Status::Dead) && !options.logs {
            return Err(Error::Conflict(
                "You cannot attach to a stopped container, start it first".into(),
            ));
        }
        let h = self.handle(&record);
        let filter = LogFilter {
            stdout: options.stdout,
            stderr: options.stderr,
            ..Default::default()
        };
        let progress = h.progress.subscribe();
        let (record, backlog, rx, starts_before, exits_before) = {
            let _log = h.output.log.lock().unwrap_or_else(|e| e.into_inner());
            // In this order: a start counts after its record says running, an exit after its record says exited.
            let starts_before = *h.starts.borrow();
            let exits_before = progress.borrow().exits;
            let record = self
                .db
                .get(&record.id)?
                .ok_or_else(|| Error::NotFound(format!("No such container: {reference}")))?;
            let backlog = if options.logs {
                super::logs::read_entries(&record.log_path, self.config.logs.max_files, &filter)
            } else {
                Vec::new()
            };
            let live = record.state.status.is_live() || record.state.status == Status::Created;
            let rx = live.then(|| h.output.tx.subscribe());
            (record, backlog, rx, starts_before, exits_before)
        };
        let input = AttachInput {
            core: self.clone(),
            id: record.id.clone(),
            stdin: options.stdin && record.open_stdin(),
            once: record.config.stdin_once.unwrap_or(false),
            started: record.state.status.is_live(),
            starts: h.starts.subscribe(),
            starts_before,
            removed: h.progress.subscribe(),
            h: h.clone(),
        };
        Ok(Attachment {
            id: record.id.clone(),
            name: record.name.clone(),
            tty: record.tty(),
            live: rx.is_some(),
            backlog,
            output: rx,
            options,
            progress,
            exits_before,
            input: Some(input),
        })
    }

    /// After polisd (re)starts: reconnects to the shims of running containers and takes their output again; a
    /// container whose shim is gone is recorded as exited.
    pub async fn recover(self: &Arc<Self>) -> Result<()> {
        self.init_networks()?;
        for record in self.db.all()? {
            if !record.state.status.is_live() {
                continue;
            }
            let h = self.handle(&record);
            let address = record
                .shim
                .as_ref()
                .map(|s| s.address.clone())
                .unwrap_or_default();
            let id = record.id.clone();
            let state = async {
                let shim = Shim::connect(&address).await?;
                let state = shim.state(&id).await?;
                Ok::<_, Error>((shim, state))
            }
            .await;
            match state {
                Ok((shim, state))
                    if state.status != containerd_shim_protos::api::Status::STOPPED.into() =>
                {
                    let fifos = self.config.fifo_dir(&record.id);
                    let (pumps, stdin) =
                        match open_fifos(&h, &fifos, record.tty(), record.open_stdin()) {
                            Ok(p) => p,
                            Err(e) => {
                                tracing::warn!(container = record.id, error = %e, "reopen fifos");
                                (Vec::new(), None)
                            }
                        };
                    if let Ok(log) = super::shim::open_log_fifo(&record.bundle) {
                        tokio::spawn(super::shim::forward_shim_log(log, record.id.clone()));
                    }
                    let shim = Arc::new(shim);
                    h.set_shim(Some(shim.clone()));
                    *h.stdin.lock().await = stdin;
                    self.start_health(&record, false);
                    tokio::spawn(self.clone().monitor(record.id.clone(), shim, pumps));
                }
                Ok((shim, state)) => {
                    self.finish(
                        &record.id,
                        state.exit_status as i64,
                        String::new(),
                        Some(Arc::new(shim)),
                    )
                    .await;
                }
                Err(e) => {
                    // What containerd does for a shim that died: `shim delete` in the bundle force-deletes the
                    // container with polis-runc (its processes too) and unmounts the rootfs.
                    let (shim_path, bundle, id, events) = (
                        self.config.shim_path(),
                        record.bundle.clone(),
                        record.id.clone(),
                        self.config.events_socket(),
                    );
                    let _ = blocking(move || {
                        super::shim::delete_dead_shim(&shim_path, &bundle, &id, &events)
                    })
                    .await;
                    let message = format!("the container's shim is gone: {e}");
                    self.finish(&record.id, 255, message, None).await;
                }
            }
        }
        self.recover_networks().await;
        Ok(())
    }
}

/// Opens the fifos of a run: readers of stdout and stderr (their pump tasks), the writer of stdin.
fn open_fifos(
    h: &Arc<Handle>,
    fifos: &Path,
    tty: bool,
    open_stdin: bool,
) -> Result<(Vec<JoinHandle<()>>, Option<pipe::Sender>)> {
    let open = |name: &str| -> Result<pipe::Receiver> {
        let path = fifos.join(name);
        pipe::OpenOptions::new()
            .open_receiver(&path)
            .map_err(|e| Error::failed(format!("open {}", path.display()), e))
    };
    let mut pumps = vec![tokio::spawn(pump(
        open("stdout")?,
        Stream::Stdout,
        h.output.clone(),
    ))];
    if !tty {
        pumps.push(tokio::spawn(pump(
            open("stderr")?,
            Stream::Stderr,
            h.output.clone(),
        )));
    }
    let stdin = if open_stdin {
        let path = fifos.join("stdin");
        Some(
            pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&path)
                .map_err(|e| Error::failed(format!("open {}", path.display()), e))?,
        )
    } else {
        None
    };
    Ok((pumps, stdin))
}

/// Makes the container's bundle from its image: polis-image's config.json adjusted to the request. The rootfs is
/// left unmounted: the shim mounts it at each start, with the options kept in the record.
fn make_bundle(
    store: &polis_imagesvc::store::ImageStore,
    image: &images::Image,
    dir: &Path,
    record: &mut ContainerRecord,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::failed(dir.display(), e))?;
    let bundle = &record.bundle;
    let mut args = vec![record.path.clone()];
    args.extend(record.args.iter().cloned());
    polis_imagesvc::bundle::create_bundle(store, &image.stored, bundle, &args)?;
    let rootfs = bundle.join("rootfs");
    let result = (|| {
        let path = bundle.join("config.json");
        let text = std::fs::read(&path).map_err(|e| Error::failed(path.display(), e))?;
        let mut config: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| Error::failed(path.display(), e))?;
        spec::adjust(
            &mut config,
            &record.id,
            &record.config,
            &record.host_config,
            &record.mounts,
            dir,
            &rootfs,
        )?;
        for m in &record.mounts {
            super::volumes::copy_up(&rootfs, m);
        }
        let text = serde_json::to_vec_pretty(&config)
            .map_err(|e| Error::failed("encode config.json", e))?;
        polis_host::atomic::write_atomic(&path, &text)
            .map_err(|e| Error::failed(path.display(), e))?;
        record.rootfs_options = overlay_options(&rootfs)?;
        Ok(())
    })();
    let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
    result
}

/// Removes what a container left on disk: its bundle (unmounting the rootfs if it is still mounted), logs and
/// the files Docker provides.
pub(crate) fn remove_container_files(dir: &Path, bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    while nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    if bundle.join(".overlay/upper").is_dir()
        && let Err(e) = polis_imagesvc::bundle::remove_bundle(bundle)
    {
        tracing::warn!(bundle = %bundle.display(), error = %e, "remove bundle");
    }
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "remove container directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for good in ["web", "a1", "my_app.v2-x"] {
            check_name(good).unwrap();
        }
        for bad in ["", "a", "-x", "a/b", "..", "a b", &"x".repeat(256)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signals_by_name_short_name_and_number() {
        assert_eq!(parse_signal("SIGKILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("term").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn generated_names_are_valid_names() {
        let id = "0123456789abcdef".repeat(4);
        check_name(&generated_name(&id)).unwrap();
    }
}
