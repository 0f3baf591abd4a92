//! The Task API: each call maps onto one polis-runc command and one state change, as in containerd's runc shim.
//! Containers of one pod share the shim (see `lifecycle`), so the service holds several.

use crate::events::EventSender;
use crate::process::{PidTable, Process, Status, lock};
use crate::runc::{CommandIo, FailureKind, Runc};
use crate::settings::Settings;
use crate::stats;
use crate::stdio::{self, Prepared, StdioPaths};
use containerd_shim::api;
use containerd_shim::monitor::{ExitEvent, Subject, Topic};
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::oci::ProcessDetails;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{ExitSignal, TtrpcContext, TtrpcResult};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

fn rpc_error(code: Code, message: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message))
}

/// Maps a polis-runc failure onto the gRPC code containerd expects (its errdefs), by the failure's kind.
fn runc_error(e: crate::runc::RuncError) -> ttrpc::Error {
    let code = match e.kind() {
        FailureKind::NotFound => Code::NOT_FOUND,
        FailureKind::AlreadyExists => Code::ALREADY_EXISTS,
        FailureKind::Invalid => Code::INVALID_ARGUMENT,
        FailureKind::FailedPrecondition => Code::FAILED_PRECONDITION,
        FailureKind::Other => Code::UNKNOWN,
    };
    rpc_error(code, e)
}

/// A container as the shim knows it.
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub settings: Settings,
    pub init: Arc<Process>,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    rootfs_mounted: bool,
}

impl Container {
    fn runc(&self) -> Runc<'_> {
        Runc::new(&self.settings, &self.bundle)
    }

    /// `polis-runc ARGS...` with its output captured (the commands that touch no container stdio).
    fn runc_captured(&self, args: &[&str]) -> Result<Vec<u8>, crate::runc::RuncError> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        self.runc().run(&args, CommandIo::Captured, None)
    }

    fn process(&self, exec_id: &str) -> TtrpcResult<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(Arc::clone(&self.init));
        }
        lock(&self.execs).get(exec_id).cloned().ok_or_else(|| {
            rpc_error(
                Code::NOT_FOUND,
                format!("exec {exec_id:?} of container {} does not exist", self.id),
            )
        })
    }
}

struct Inner {
    namespace: String,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    pids: Mutex<PidTable>,
    events: EventSender,
    exit: Arc<ExitSignal>,
}

#[derive(Clone)]
pub struct Service(Arc<Inner>);

impl Service {
    pub fn new(namespace: &str, events: EventSender, exit: Arc<ExitSignal>) -> Service {
        let service = Service(Arc::new(Inner {
            namespace: namespace.to_string(),
            containers: Mutex::new(HashMap::new()),
            pids: Mutex::new(PidTable::default()),
            events,
            exit,
        }));
        service.start_exit_watcher();
        service
    }

    /// Matches every reaped child (containerd-shim's signal thread reaps them) to the process it was.
    fn start_exit_watcher(&self) {
        let subscription =
            match containerd_shim::synchronous::monitor::monitor_subscribe(Topic::Pid) {
                Ok(s) => s,
                Err(e) => {
                    containerd_shim::error!("watch exits: {}", e);
                    return;
                }
            };
        let service = self.clone();
        let spawned = std::thread::Builder::new()
            .name("exits".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                for ExitEvent { subject, exit_code } in subscription.rx.iter() {
                    if let Subject::Pid(pid) = subject {
                        let process = lock(&service.0.pids).exited(pid as u32, exit_code);
                        if let Some(process) = process {
                            service.record_exit(process, exit_code);
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            containerd_shim::error!("start the exit watcher: {}", e);
        }
    }

    /// Records an exit off the caller's thread (the output is drained first) and publishes TaskExit.
    fn record_exit(&self, process: Arc<Process>, exit_code: i32) {
        let events = self.0.events.clone();
        let body = move || {
            if process.set_exited(exit_code) {
                let state = process.state();
                let id = if process.exec_id.is_empty() {
                    process.container_id.clone()
                } else {
                    process.exec_id.clone()
                };
                events.send(
                    topics::TASK_EXIT_EVENT_TOPIC,
                    TaskExit {
                        container_id: process.container_id.clone(),
                        id,
                        pid: state.pid,
                        exit_status: state.exit_status,
                        exited_at: MessageField::from_option(state.exited_at),
                        ..Default::default()
                    },
                );
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("exit".into())
            .stack_size(128 * 1024)
            .spawn(body)
        {
            containerd_shim::error!("record an exit: {}", e);
        }
    }

    /// Registers a started process's pid; an exit that came first is recorded now.
    fn track(&self, process: &Arc<Process>, pid: u32, since: Instant) {
        process.set_pid(pid);
        let early = lock(&self.0.pids).register(pid, process, since);
        if let Some(code) = early {
            self.record_exit(Arc::clone(process), code);
        }
    }

    fn container(&self, id: &str) -> TtrpcResult<Arc<Container>> {
        lock(&self.0.containers)
            .get(id)
            .cloned()
            .ok_or_else(|| rpc_error(Code::NOT_FOUND, format!("container {id:?} does not exist")))
    }

    fn create_container(&self, req: &api::CreateTaskRequest) -> TtrpcResult<Arc<Container>> {
        crate::bundle::check_id(&req.id).map_err(|e| rpc_error(Code::INVALID_ARGUMENT, e))?;
        if lock(&self.0.containers).contains_key(&req.id) {
            return Err(rpc_error(
                Code::ALREADY_EXISTS,
                format!("container {:?} already exists", req.id),
            ));
        }
        if !req.checkpoint.is_empty() || !req.parent_checkpoint.is_empty() {
            return Err(rpc_error(
                Code::UNIMPLEMENTED,
                "restoring from a checkpoint is not supported by polis-runc",
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        if !bundle.join("config.json").is_file() {
            return Err(rpc_error(
                Code::INVALID_ARGUMENT,
                format!("bundle {} has no config.json", bundle.display()),
            ));
        }
        let settings = Settings::from_options(&self.0.namespace, req.options.as_ref())
            .map_err(|e| rpc_error(Code::INVALID_ARGUMENT, e))?;
        settings.apply_log_level();
        settings
            .save(&bundle)
            .map_err(|e| rpc_error(Code::INTERNAL, e))?;
        let rootfs = bundle.join("rootfs");
        for m in &req.rootfs {
            let mounted = containerd_shim::mount::mount_rootfs(
                Some(m.type_.as_str()).filter(|t| !t.is_empty()),
                Some(m.source.as_str()).filter(|s| !s.is_empty()),
                &m.options,
                &rootfs,
            );
            if let Err(e) = mounted {
                crate::bundle::unmount_rootfs(&bundle);
                return Err(rpc_error(
                    Code::INTERNAL,
                    format!("mount rootfs {}: {e}", rootfs.display()),
                ));
            }
        }
        let stdio_paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let container = Arc::new(Container {
            id: req.id.clone(),
            bundle: bundle.clone(),
            settings,
            init: Arc::new(Process::new(&req.id, "", stdio_paths, Vec::new())),
            execs: Mutex::new(HashMap::new()),
            rootfs_mounted: !req.rootfs.is_empty(),
        });
        let pid_file = bundle.join("init.pid");
        let mut args: Vec<OsString> =
            vec!["create".into(), "--bundle".into(), bundle.clone().into()];
        args.extend(["--pid-file".into(), pid_file.clone().into()]);
        if container.settings.no_pivot_root {
            args.push("--no-pivot".into());
        }
        if container.settings.no_new_keyring {
            args.push("--no-new-keyring".into());
        }
        let started = Instant::now();
        let result = self.run_with_stdio(&container, &container.init, args, &pid_file);
        match result {
            Ok(pid) => {
                self.track(&container.init, pid, started);
                let events = self.0.events.clone();
                let id = container.id.clone();
                let watched = crate::oom::watch(pid, move || {
                    events.send(
                        topics::TASK_OOM_EVENT_TOPIC,
                        TaskOOM {
                            container_id: id.clone(),
                            ..Default::default()
                        },
                    )
                });
                if let Err(e) = watched {
                    containerd_shim::warn!("no OOM events for container {}: {}", container.id, e);
                }
                Ok(container)
            }
            Err(e) => {
                let _ = container.runc_captured(&["delete", "--force", &container.id]);
                if container.rootfs_mounted {
                    crate::bundle::unmount_rootfs(&bundle);
                }
                Err(e)
            }
        }
    }

    /// Runs `create` or `exec` (`args` without the container ID) with `process`'s stdio; returns its pid.
    fn run_with_stdio(
        &self,
        container: &Container,
        process: &Process,
        mut args: Vec<OsString>,
        pid_file: &Path,
    ) -> TtrpcResult<u32> {
        let prepared =
            stdio::prepare(&process.stdio).map_err(|e| rpc_error(Code::INVALID_ARGUMENT, e))?;
        let io = match prepared {
            Prepared::Pipes {
                stdin,
                stdout,
                stderr,
                io,
            } => {
                args.push(container.id.clone().into());
                container
                    .runc()
                    .run(&args, CommandIo::Given(stdin, stdout, stderr), None)
                    .map_err(runc_error)?;
                io
            }
            Prepared::Terminal(socket) => {
                args.extend([
                    "--console-socket".into(),
                    socket.path.clone().into(),
                    container.id.clone().into(),
                ]);
                let null = std::process::Stdio::null;
                container
                    .runc()
                    .run(&args, CommandIo::Given(null(), null(), null()), None)
                    .map_err(runc_error)?;
                socket.receive().map_err(|e| rpc_error(Code::INTERNAL, e))?
            }
        };
        process.set_io(io);
        let pid = std::fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        let _ = std::fs::remove_file(pid_file);
        pid.ok_or_else(|| {
            rpc_error(
                Code::INTERNAL,
                format!("the runtime wrote no pid to {}", pid_file.display()),
            )
        })
    }
}

fn status_enum(status: Status) -> containerd_shim::api::Status {
    match status {
        Status::Created => containerd_shim::api::Status::CREATED,
        Status::Running => containerd_shim::api::Status::RUNNING,
        Status::Paused => containerd_shim::api::Status::PAUSED,
        Status::Stopped => containerd_shim::api::Status::STOPPED,
    }
}

impl containerd_shim::Task for Service {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let container = self.create_container(&req)?;
        let pid = container.init.state().pid;
        lock(&self.0.containers).insert(req.id.clone(), Arc::clone(&container));
        self.0.events.send(
            topics::TASK_CREATE_EVENT_TOPIC,
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                checkpoint: req.checkpoint.clone(),
                pid,
                ..Default::default()
            },
        );
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let container = self.container(&req.id)?;
        let process = container.process(&req.exec_id)?;
        if process.state().status != Status::Created {
            return Err(rpc_error(
                Code::FAILED_PRECONDITION,
                format!(
                    "process {:?} of container {} was already started",
                    req.exec_id, req.id
                ),
            ));
        }
        let pid = if req.exec_id.is_empty() {
            container
                .runc_captured(&["start", &req.id])
                .map_err(runc_error)?;
            process.set_status(Status::Running);
            let pid = process.state().pid;
            self.0.events.send(
                topics::TASK_START_EVENT_TOPIC,
                TaskStart {
                    container_id: req.id.clone(),
                    pid,
                    ..Default::default()
                },
            );
            pid
        } else {
            let spec_file = container
                .bundle
                .join(format!(".exec-{}.json", std::process::id()));
            let spec_file = unique_path(&spec_file);
            std::fs::write(&spec_file, &process.spec).map_err(|e| {
                rpc_error(
                    Code::INTERNAL,
                    format!("write {}: {e}", spec_file.display()),
                )
            })?;
            let pid_file = unique_path(&container.bundle.join(".exec.pid"));
            let args: Vec<OsString> = vec![
                "exec".into(),
                "--detach".into(),
                "--process".into(),
                spec_file.clone().into(),
                "--pid-file".into(),
                pid_file.clone().into(),
            ];
            let started = Instant::now();
            let result = self.run_with_stdio(&container, &process, args, &pid_file);
            let _ = std::fs::remove_file(&spec_file);
            let pid = result?;
            process.set_status(Status::Running);
            self.track(&process, pid, started);
            self.0.events.send(
                topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                TaskExecStarted {
                    container_id: req.id.clone(),
                    exec_id: req.exec_id.clone(),
                    pid,
                    ..Default::default()
                },
            );
            pid
        };
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let container = self.container(&req.id)?;
        let process = container.process(&req.exec_id)?;
        let state = process.state();
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: container.bundle.display().to_string(),
            pid: state.pid,
            status: status_enum(state.status).into(),
            stdin: process.stdio.stdin.clone(),
            stdout: process.stdio.stdout.clone(),
            stderr: process.stdio.stderr.clone(),
            terminal: process.stdio.terminal,
            exit_status: state.exit_status,
            exited_at: MessageField::from_option(state.exited_at),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let container = self.container(&req.id)?;
        let process = container.process(&req.exec_id)?;
        let state = process.state();
        if matches!(state.status, Status::Running | Status::Paused) {
            return Err(rpc_error(
                Code::FAILED_PRECONDITION,
                format!(
                    "cannot delete {:?} of container {}: it is running",
                    req.exec_id, req.id
                ),
            ));
        }
        if req.exec_id.is_empty() {
            container
                .runc_captured(&["delete", "--force", &req.id])
                .or_else(|e| {
                    if e.kind() == FailureKind::NotFound {
                        Ok(Vec::new())
                    } else {
                        Err(e)
                    }
                })
                .map_err(runc_error)?;
            for exec in lock(&container.execs).drain() {
                exec.1.close_io();
            }
            if container.rootfs_mounted {
                crate::bundle::unmount_rootfs(&container.bundle);
            }
            lock(&self.0.containers).remove(&req.id);
        } else {
            lock(&container.execs).remove(&req.exec_id);
        }
        process.close_io();
        lock(&self.0.pids).forget(state.pid);
        let state = process.state();
        self.0.events.send(
            topics::TASK_DELETE_EVENT_TOPIC,
            TaskDelete {
                container_id: req.id.clone(),
                pid: state.pid,
                exit_status: state.exit_status,
                exited_at: MessageField::from_option(state.exited_at.clone()),
                id: if req.exec_id.is_empty() {
                    req.id.clone()
                } else {
                    req.exec_id.clone()
                },
                ..Default::default()
            },
        );
        Ok(api::DeleteResponse {
            pid: state.pid,
            exit_status: state.exit_status,
            exited_at: MessageField::from_option(state.exited_at),
            ..Default::default()
        })
    }

    fn pids(&self, _ctx: &TtrpcContext, req: api::PidsRequest) -> TtrpcResult<api::PidsResponse> {
        let container = self.container(&req.id)?;
        let out = container
            .runc_captured(&["ps", "--format", "json", &req.id])
            .map_err(runc_error)?;
        let pids: Vec<u32> = serde_json::from_slice(&out).map_err(|e| {
            rpc_error(
                Code::INTERNAL,
                format!("parse the runtime's ps output: {e}"),
            )
        })?;
        let execs: HashMap<u32, String> = lock(&container.execs)
            .values()
            .map(|p| (p.state().pid, p.exec_id.clone()))
            .collect();
        let mut processes = Vec::with_capacity(pids.len());
        for pid in pids {
            let mut info = ProcessInfo {
                pid,
                ..Default::default()
            };
            if let Some(exec_id) = execs.get(&pid) {
                let details = ProcessDetails {
                    exec_id: exec_id.clone(),
                    ..Default::default()
                };
                let value = details.write_to_bytes().map_err(|e| {
                    rpc_error(Code::INTERNAL, format!("encode process details: {e}"))
                })?;
                info.info = MessageField::some(Any {
                    type_url: "containerd.runc.v1.ProcessDetails".to_string(),
                    value,
                    ..Default::default()
                });
            }
            processes.push(info);
        }
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        let container = self.container(&req.id)?;
        container
            .runc_captured(&["pause", &req.id])
            .map_err(runc_error)?;
        container.init.set_status(Status::Paused);
        self.0.events.send(
            topics::TASK_PAUSED_EVENT_TOPIC,
            TaskPaused {
                container_id: req.id.clone(),
                ..Default::default()
            },
        );
        Ok(api::Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: api::ResumeRequest) -> TtrpcResult<api::Empty> {
        let container = self.container(&req.id)?;
        container
            .runc_captured(&["resume", &req.id])
            .map_err(runc_error)?;
        container.init.set_status(Status::Running);
        self.0.events.send(
            topics::TASK_RESUMED_EVENT_TOPIC,
            TaskResumed {
                container_id: req.id.clone(),
                ..Default::default()
            },
        );
        Ok(api::Empty::new())
    }

    fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: api::CheckpointTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        self.container(&req.id)?;
        Err(rpc_error(
            Code::UNIMPLEMENTED,
            "checkpoint is not supported by polis-runc",
        ))
    }

    fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let container = self.container(&req.id)?;
        let process = container.process(&req.exec_id)?;
        let state = process.state();
        if req.exec_id.is_empty() {
            if state.status == Status::Stopped && !req.all {
                return Err(rpc_error(
                    Code::NOT_FOUND,
                    format!("process {} already finished", req.id),
                ));
            }
            let mut args: Vec<OsString> = vec!["kill".into()];
            if req.all {
                args.push("--all".into());
            }
            args.extend([req.id.clone().into(), req.signal.to_string().into()]);
            container
                .runc()
                .run(&args, CommandIo::Captured, None)
                .map_err(|e| {
                    if e.kind() == FailureKind::FailedPrecondition {
                        rpc_error(
                            Code::NOT_FOUND,
                            format!("process {} already finished", req.id),
                        )
                    } else {
                        runc_error(e)
                    }
                })?;
        } else {
            match state.status {
                Status::Stopped => {
                    return Err(rpc_error(
                        Code::NOT_FOUND,
                        format!("process {} already finished", req.exec_id),
                    ));
                }
                Status::Created => {
                    return Err(rpc_error(
                        Code::FAILED_PRECONDITION,
                        format!("process {} was not started", req.exec_id),
                    ));
                }
                _ => {}
            }
            // SAFETY: kill(2) on the pid of a process this shim started and has not reaped.
            if unsafe { libc::kill(state.pid as i32, req.signal as i32) } < 0 {
                let e = std::io::Error::last_os_error();
                return Err(rpc_error(
                    Code::UNKNOWN,
                    format!("signal exec {}: {e}", req.exec_id),
                ));
            }
        }
        Ok(api::Empty::new())
    }

    fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<api::Empty> {
        let container = self.container(&req.id)?;
        crate::bundle::check_id(&req.exec_id).map_err(|e| rpc_error(Code::INVALID_ARGUMENT, e))?;
        if container.init.state().status == Status::Stopped {
            return Err(rpc_error(
                Code::FAILED_PRECONDITION,
                format!("container {} is not running", req.id),
            ));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|any| any.value.clone())
            .ok_or_else(|| {
                rpc_error(
                    Code::INVALID_ARGUMENT,
                    "exec request carries no process spec",
                )
            })?;
        if let Err(e) = serde_json::from_slice::<serde_json::Value>(&spec) {
            return Err(rpc_error(
                Code::INVALID_ARGUMENT,
                format!("exec {}: the process spec is not JSON: {e}", req.exec_id),
            ));
        }
        let paths = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        {
            let mut execs = lock(&container.execs);
            if execs.contains_key(&req.exec_id) {
                return Err(rpc_error(
                    Code::ALREADY_EXISTS,
                    format!(
                        "exec {:?} already exists in container {}",
                        req.exec_id, req.id
                    ),
                ));
            }
            execs.insert(
                req.exec_id.clone(),
                Arc::new(Process::new(&req.id, &req.exec_id, paths, spec)),
            );
        }
        self.0.events.send(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskExecAdded {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(api::Empty::new())
    }

    fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let container = self.container(&req.id)?;
        let process = container.process(&req.exec_id)?;
        match process.with_io(|io| io.resize(req.width, req.height)) {
            Some(Ok(true)) => Ok(api::Empty::new()),
            Some(Err(e)) => Err(rpc_error(
                Code::INTERNAL,
                format!("resize the terminal: {e}"),
            )),
            _ => Err(rpc_error(
                Code::FAILED_PRECONDITION,
                format!(
                    "process {:?} of container {} has no terminal",
                    req.exec_id, req.id
                ),
            )),
        }
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: api::CloseIORequest) -> TtrpcResult<api::Empty> {
        let container = self.container(&req.id)?;
        let process = container.process(&req.exec_id)?;
        if req.stdin {
            process.with_io(|io| io.close_stdin());
        }
        Ok(api::Empty::new())
    }

    fn update(&self, _ctx: &TtrpcContext, req: api::UpdateTaskRequest) -> TtrpcResult<api::Empty> {
        let container = self.container(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .map(|any| any.value.clone())
            .ok_or_else(|| {
                rpc_error(
                    Code::INVALID_ARGUMENT,
                    "update request carries no resources",
                )
            })?;
        container
            .runc()
            .run(
                &[
                    "update".into(),
                    "--resources".into(),
                    "-".into(),
                    req.id.clone().into(),
                ],
                CommandIo::Captured,
                Some(&resources),
            )
            .map_err(runc_error)?;
        Ok(api::Empty::new())
    }

    fn wait(&self, _ctx: &TtrpcContext, req: api::WaitRequest) -> TtrpcResult<api::WaitResponse> {
        let container = self.container(&req.id)?;
        let process = container.process(&req.exec_id)?;
        let state = process.wait();
        Ok(api::WaitResponse {
            exit_status: state.exit_status,
            exited_at: MessageField::from_option(state.exited_at),
            ..Default::default()
        })
    }

    fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let container = self.container(&req.id)?;
        let state = container.init.state();
        if state.status == Status::Stopped || state.pid == 0 {
            return Err(rpc_error(
                Code::FAILED_PRECONDITION,
                format!("container {} is not running", req.id),
            ));
        }
        let stats =
            stats::container_metrics(state.pid).map_err(|e| rpc_error(Code::INTERNAL, e))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = lock(&self.0.containers)
            .get(&req.id)
            .map(|c| c.init.state().pid)
            .unwrap_or_default();
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: api::ShutdownRequest) -> TtrpcResult<api::Empty> {
        // A pod's shim serves several containers: it ends only when the last one is gone.
        if !req.now && !lock(&self.0.containers).is_empty() {
            return Ok(api::Empty::new());
        }
        self.0.exit.signal();
        Ok(api::Empty::new())
    }
}

/// `base` with a number appended that no file in its directory has yet.
fn unique_path(base: &Path) -> PathBuf {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}
