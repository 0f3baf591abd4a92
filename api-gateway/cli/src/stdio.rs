//! The stdio of an attached container or an exec: its output to our stdout and stderr, our stdin to it (with `-i`),
//! our terminal's size to its terminal (with `-t`, again on each SIGWINCH), and our signals to the container
//! (without `-t`, as docker's sig-proxy does), until the process's exit code arrives.

use crate::error::{Failure, Result};
use crate::tty;
use polis_client::{Client, Input, Stream, proto};
use std::io::{Read, Write};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A message of an Attach or Exec output stream, as the pump sees it.
pub enum Message {
    Output(proto::LogEntry),
    Exit(i64),
    Other,
}

/// The output messages of Attach and Exec.
pub trait OutputMessage {
    fn message(self) -> Message;
}

impl OutputMessage for proto::AttachOutput {
    fn message(self) -> Message {
        use proto::attach_output::Kind;
        match self.kind {
            Some(Kind::Output(entry)) => Message::Output(entry),
            Some(Kind::ExitCode(code)) => Message::Exit(code),
            None => Message::Other,
        }
    }
}

impl OutputMessage for proto::ExecOutput {
    fn message(self) -> Message {
        use proto::exec_output::Kind;
        match self.kind {
            Some(Kind::Output(entry)) => Message::Output(entry),
            Some(Kind::ExitCode(code)) => Message::Exit(code),
            Some(Kind::ExecId(_)) | None => Message::Other,
        }
    }
}

/// What the pump forwards besides the output.
pub struct Forward {
    /// Our stdin to the process.
    pub stdin: bool,
    /// The process has a terminal: our terminal's size goes to it.
    pub tty: bool,
    /// Our signals go to this container (its ID).
    pub signals_to: Option<(Client, String)>,
}

/// How a session ended.
pub enum End {
    /// The process exited with this code.
    Exited(i64),
    /// The output ended without an exit code.
    Closed,
    /// We were told to stop (SIGTERM or SIGHUP while the terminal is the container's): 128 + the signal.
    Signalled(i32),
}

/// The signals forwarded to a container without a terminal.
const FORWARDED: &[(i32, &str)] = &[
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
];

/// Runs the session until the process exits.
pub async fn pump<T: OutputMessage>(
    input: Input,
    mut output: Stream<T>,
    forward: Forward,
) -> Result<End> {
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    // The terminal's size first, so that what is typed runs on a terminal of the right size.
    if forward.tty {
        let mut winch = signal(SignalKind::window_change())?;
        if let Some((w, h)) = tty::size() {
            let _ = input.resize(w, h).await;
        }
        let input = input.clone();
        tasks.push(tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((w, h)) = tty::size() {
                    let _ = input.resize(w, h).await;
                }
            }
        }));
    }
    if forward.stdin {
        tasks.push(tokio::spawn(send_stdin(input.clone())));
    }
    // Without a terminal our signals go to the container; with one (raw mode: keys reach it as bytes) SIGTERM and
    // SIGHUP end the session.
    let (stop_tx, mut stop_rx) = mpsc::channel::<i32>(1);
    match &forward.signals_to {
        Some((client, id)) => {
            for &(number, name) in FORWARDED {
                let mut sig = signal(SignalKind::from_raw(number))?;
                let (client, id) = (client.clone(), id.clone());
                tasks.push(tokio::spawn(async move {
                    while sig.recv().await.is_some() {
                        let _ = client.kill_container(&id, name).await;
                    }
                }));
            }
        }
        None => {
            for number in [libc::SIGTERM, libc::SIGHUP] {
                let mut sig = signal(SignalKind::from_raw(number))?;
                let stop = stop_tx.clone();
                tasks.push(tokio::spawn(async move {
                    if sig.recv().await.is_some() {
                        let _ = stop.send(number).await;
                    }
                }));
            }
        }
    }
    let end = loop {
        tokio::select! {
            message = output.next() => match message {
                Ok(Some(m)) => match m.message() {
                    Message::Output(entry) => write_entry(&entry),
                    Message::Exit(code) => break Ok(End::Exited(code)),
                    Message::Other => {}
                },
                Ok(None) => break Ok(End::Closed),
                Err(e) => break Err(Failure::from(e)),
            },
            Some(number) = stop_rx.recv() => break Ok(End::Signalled(number)),
        }
    };
    for t in tasks {
        t.abort();
    }
    end
}

/// Writes a piece of output where the process wrote it.
pub fn write_entry(entry: &proto::LogEntry) {
    if entry.stream == proto::OutputStream::Stderr as i32 {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(&entry.data);
        let _ = err.flush();
    } else {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&entry.data);
        let _ = out.flush();
    }
}

/// Sends our stdin to the process until it ends, then closes the process's stdin. A thread reads stdin (a blocking
/// read that nothing can cancel; the process exits without waiting for it).
async fn send_stdin(input: Input) {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    while let Some(chunk) = rx.recv().await {
        if input.stdin(chunk).await.is_err() {
            return;
        }
    }
    let _ = input.close_stdin().await;
}
