//! polis.v1.Containers: the life cycle, listing, waiting and logs; attach, exec and stats.

use crate::{Client, Error, Result, Stream, proto};
use tokio::sync::mpsc;

/// What an [`Input`] sends, turned into the stream's own message.
#[derive(Debug)]
enum Command {
    Stdin(Vec<u8>),
    Resize(proto::TerminalSize),
    CloseStdin,
}

/// The sending side of a running [`Client::attach`] or [`Client::exec`]: bytes for stdin, terminal sizes, the end
/// of stdin. Cloning it is cheap (the clones send on the same stream); once the stream has ended, or every clone is
/// dropped (which ends the client's side of the stream), sending fails with [`Error::Protocol`].
#[derive(Debug, Clone)]
pub struct Input {
    tx: mpsc::Sender<Command>,
}

impl Input {
    async fn send(&self, command: Command) -> Result<()> {
        self.tx
            .send(command)
            .await
            .map_err(|_| Error::Protocol("the attach or exec stream has ended".into()))
    }

    /// Sends bytes to the process's stdin (ignored by polisd when stdin was not asked for).
    pub async fn stdin(&self, data: Vec<u8>) -> Result<()> {
        self.send(Command::Stdin(data)).await
    }

    /// Sizes the process's terminal: `width` columns, `height` rows (the container's or the exec's terminal).
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.send(Command::Resize(proto::TerminalSize { width, height }))
            .await
    }

    /// Closes the process's stdin: it reads end-of-file once it has read what was sent before.
    pub async fn close_stdin(&self) -> Result<()> {
        self.send(Command::CloseStdin).await
    }
}

/// The request stream of an attach or exec: its first message, then what the [`Input`] sends, as `T`.
struct Requests<T> {
    first: Option<T>,
    rx: mpsc::Receiver<Command>,
    wrap: fn(Command) -> T,
}

impl<T: Unpin> futures_core::Stream for Requests<T> {
    type Item = T;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        if let Some(first) = self.first.take() {
            return std::task::Poll::Ready(Some(first));
        }
        let wrap = self.wrap;
        self.rx.poll_recv(cx).map(|c| c.map(wrap))
    }
}

/// The request stream starting with `first`, and the [`Input`] that feeds it.
fn requests<T>(first: T, wrap: fn(Command) -> T) -> (Input, Requests<T>) {
    let (tx, rx) = mpsc::channel(16);
    let requests = Requests {
        first: Some(first),
        rx,
        wrap,
    };
    (Input { tx }, requests)
}

fn attach_input(c: Command) -> proto::AttachInput {
    use proto::attach_input::Input;
    proto::AttachInput {
        input: Some(match c {
            Command::Stdin(data) => Input::Stdin(data),
            Command::Resize(size) => Input::Resize(size),
            Command::CloseStdin => Input::CloseStdin(true),
        }),
    }
}

fn exec_input(c: Command) -> proto::ExecInput {
    use proto::exec_input::Input;
    proto::ExecInput {
        input: Some(match c {
            Command::Stdin(data) => Input::Stdin(data),
            Command::Resize(size) => Input::Resize(size),
            Command::CloseStdin => Input::CloseStdin(true),
        }),
    }
}

impl Client {
    /// Creates a container named `name` (empty: a generated name); returns its ID.
    pub async fn create_container(&self, name: &str, spec: proto::ContainerSpec) -> Result<String> {
        Ok(self
            .containers()
            .create(proto::CreateContainerRequest {
                name: name.to_string(),
                spec: Some(spec),
            })
            .await?
            .into_inner()
            .id)
    }

    /// Starts a container (by ID, ID prefix or name).
    pub async fn start_container(&self, id: &str) -> Result<()> {
        self.containers()
            .start(proto::StartContainerRequest { id: id.into() })
            .await?;
        Ok(())
    }

    /// Stops a container: its stop signal, then SIGKILL after `timeout_seconds` (None: its stop timeout).
    pub async fn stop_container(&self, id: &str, timeout_seconds: Option<i64>) -> Result<()> {
        self.containers()
            .stop(proto::StopContainerRequest {
                id: id.into(),
                timeout_seconds,
            })
            .await?;
        Ok(())
    }

    /// Sends a signal ("SIGTERM", "15"; empty: SIGKILL) to a running container.
    pub async fn kill_container(&self, id: &str, signal: &str) -> Result<()> {
        self.containers()
            .kill(proto::KillContainerRequest {
                id: id.into(),
                signal: signal.into(),
            })
            .await?;
        Ok(())
    }

    /// Removes a container; `force`: kill it first if it runs.
    pub async fn remove_container(&self, id: &str, force: bool) -> Result<()> {
        self.containers()
            .remove(proto::RemoveContainerRequest {
                id: id.into(),
                force,
                remove_volumes: false,
            })
            .await?;
        Ok(())
    }

    /// One container.
    pub async fn inspect_container(&self, id: &str) -> Result<proto::Container> {
        Ok(self
            .containers()
            .inspect(proto::InspectContainerRequest { id: id.into() })
            .await?
            .into_inner())
    }

    /// Containers, newest first; `all`: also those not running.
    pub async fn list_containers(&self, all: bool) -> Result<Vec<proto::Container>> {
        self.list_containers_with(proto::ListContainersRequest {
            all,
            ..Default::default()
        })
        .await
    }

    /// Containers, newest first, with the request's filters and limit.
    pub async fn list_containers_with(
        &self,
        request: proto::ListContainersRequest,
    ) -> Result<Vec<proto::Container>> {
        Ok(self
            .containers()
            .list(request)
            .await?
            .into_inner()
            .containers)
    }

    /// Waits until a container is not running; its exit code.
    pub async fn wait_container(&self, id: &str) -> Result<i64> {
        self.wait_container_for(id, proto::WaitCondition::NotRunning)
            .await
    }

    /// Waits for a condition; the container's exit code.
    pub async fn wait_container_for(
        &self,
        id: &str,
        condition: proto::WaitCondition,
    ) -> Result<i64> {
        Ok(self
            .containers()
            .wait(proto::WaitContainerRequest {
                id: id.into(),
                condition: condition.into(),
            })
            .await?
            .into_inner()
            .exit_code)
    }

    /// A container's stdout and stderr: what its log holds, then, with `follow`, its output until it stops.
    pub async fn logs(&self, id: &str, follow: bool) -> Result<Stream<proto::LogEntry>> {
        self.logs_with(proto::ContainerLogsRequest {
            id: id.into(),
            follow,
            ..Default::default()
        })
        .await
    }

    /// A container's logs as the request selects them (streams, times, tail).
    pub async fn logs_with(
        &self,
        request: proto::ContainerLogsRequest,
    ) -> Result<Stream<proto::LogEntry>> {
        let inner = self.containers().logs(request).await?.into_inner();
        Ok(Stream { inner })
    }

    /// Stops (if running) and starts a container; `timeout_seconds` as for [`Client::stop_container`].
    pub async fn restart_container(&self, id: &str, timeout_seconds: Option<i64>) -> Result<()> {
        self.containers()
            .restart(proto::RestartContainerRequest {
                id: id.into(),
                timeout_seconds,
            })
            .await?;
        Ok(())
    }

    /// Freezes every process of a running container.
    pub async fn pause_container(&self, id: &str) -> Result<()> {
        self.containers()
            .pause(proto::PauseContainerRequest { id: id.into() })
            .await?;
        Ok(())
    }

    /// Thaws a paused container.
    pub async fn resume_container(&self, id: &str) -> Result<()> {
        self.containers()
            .resume(proto::ResumeContainerRequest { id: id.into() })
            .await?;
        Ok(())
    }

    /// Removes a container; `force`: kill it first if it runs; `remove_volumes`: its anonymous volumes too.
    pub async fn remove_container_with(
        &self,
        id: &str,
        force: bool,
        remove_volumes: bool,
    ) -> Result<()> {
        self.containers()
            .remove(proto::RemoveContainerRequest {
                id: id.into(),
                force,
                remove_volumes,
            })
            .await?;
        Ok(())
    }

    /// Attaches to a container's stdio. When this returns, polisd listens to the container's output, so a client
    /// may start the container next (`polis run`: create, attach, start) and lose nothing it writes. The stream
    /// carries the output (with `start.logs`, what the log holds first), then the exit code of the run as its last
    /// message; the [`Input`] sends stdin (with `start.stdin` and a container made with `open_stdin`; what is sent
    /// before the start reaches the run that starts), terminal sizes and the end of stdin.
    ///
    /// A container that is neither running nor created is [`Error::FailedPrecondition`].
    pub async fn attach(
        &self,
        start: proto::AttachStart,
    ) -> Result<(Input, Stream<proto::AttachOutput>)> {
        let first = proto::AttachInput {
            input: Some(proto::attach_input::Input::Start(start)),
        };
        let (input, requests) = requests(first, attach_input);
        let inner = self.containers().attach(requests).await?.into_inner();
        Ok((input, Stream { inner }))
    }

    /// Runs a process in a running container, as `docker exec` does. The stream's first message is the exec's ID,
    /// then come the process's output and its exit code as the last message (a command that cannot be run: 126 or
    /// 127, with polisd's message on stderr); the [`Input`] sends stdin (with `start.stdin`), terminal sizes (with
    /// `start.tty`) and the end of stdin. Dropping every clone of the [`Input`] closes the process's stdin, unless
    /// it has a terminal.
    ///
    /// A container that is not running is [`Error::FailedPrecondition`].
    pub async fn exec(
        &self,
        start: proto::ExecStart,
    ) -> Result<(Input, Stream<proto::ExecOutput>)> {
        let first = proto::ExecInput {
            input: Some(proto::exec_input::Input::Start(start)),
        };
        let (input, requests) = requests(first, exec_input);
        let inner = self.containers().exec(requests).await?.into_inner();
        Ok((input, Stream { inner }))
    }

    /// A running container's resource usage: one sample, or with `stream` one a second until it stops (or the
    /// stream is dropped). A container that is not running is [`Error::FailedPrecondition`].
    pub async fn stats(&self, id: &str, stream: bool) -> Result<Stream<proto::ContainerStats>> {
        let inner = self
            .containers()
            .stats(proto::ContainerStatsRequest {
                id: id.into(),
                stream,
            })
            .await?
            .into_inner();
        Ok(Stream { inner })
    }
}
