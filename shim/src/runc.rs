//! Running polis-runc, one command per Task API call, as containerd's runc shim runs runc.
//!
//! The shim is a subreaper and containerd-shim's signal thread reaps every child with `waitpid(-1)`, so a command's
//! exit is learnt from the exit monitor (subscribed before the spawn, so no exit is missed), never from
//! `Child::wait`. Errors are read back from polis-runc's JSON log (`--log-format json`, the last `"level":"error"`
//! line), which is what containerd's shims do with runc.

use crate::settings::Settings;
use containerd_shim::monitor::{ExitEvent, Subject, Topic};
use containerd_shim::synchronous::monitor::{Subscription, monitor_subscribe};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("start {runtime} {command}: {source}")]
    Spawn {
        runtime: PathBuf,
        command: String,
        source: std::io::Error,
    },
    #[error("{runtime} {command} failed (exit status {status}): {message}")]
    Failed {
        runtime: PathBuf,
        command: String,
        status: i32,
        message: String,
        /// polis-runc's class of the failure (its JSON error line's `kind`); None from a runtime that does
        /// not write one, such as runc.
        kind: Option<String>,
    },
    #[error("{runtime} {command}: {what}")]
    Io {
        runtime: PathBuf,
        command: String,
        what: String,
    },
}

/// What kind of failure a runtime command reported: polis-runc's `kind`, or for a runtime without one (runc),
/// read from runc's wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NotFound,
    AlreadyExists,
    Invalid,
    FailedPrecondition,
    Other,
}

impl RuncError {
    /// The class of the failure: polis-runc's `kind` when the log has one (README, "The log contract"), else
    /// runc's contract of words ("container does not exist", "container not running").
    pub fn kind(&self) -> FailureKind {
        let RuncError::Failed { message, kind, .. } = self else {
            return FailureKind::Other;
        };
        match kind.as_deref() {
            Some("not-found") => FailureKind::NotFound,
            Some("already-exists") => FailureKind::AlreadyExists,
            Some("invalid") => FailureKind::Invalid,
            Some("failed-precondition") => FailureKind::FailedPrecondition,
            Some(_) => FailureKind::Other,
            None if message.contains("does not exist") => FailureKind::NotFound,
            None if message.contains("not running")
                || message.contains("not created")
                || message.contains("is running") =>
            {
                FailureKind::FailedPrecondition
            }
            None => FailureKind::Other,
        }
    }
}

/// The standard streams a command gets; `Captured` collects its stdout.
pub enum CommandIo {
    /// stdin, stdout, stderr handed to the command (and so to the container it creates).
    Given(Stdio, Stdio, Stdio),
    /// /dev/null in, stdout captured, stderr captured for the error message.
    Captured,
}

pub struct Runc<'a> {
    pub settings: &'a Settings,
    /// polis-runc's `--log` file (JSON lines); errors are read from it.
    pub log: PathBuf,
}

impl<'a> Runc<'a> {
    pub fn new(settings: &'a Settings, bundle: &Path) -> Runc<'a> {
        Runc {
            settings,
            log: bundle.join("log.json"),
        }
    }

    fn command(&self, args: &[OsString]) -> Command {
        let mut cmd = Command::new(&self.settings.runtime);
        cmd.arg("--root")
            .arg(&self.settings.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        if self.settings.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        if self.settings.runtime_debug() {
            cmd.arg("--debug");
        }
        cmd.args(args);
        cmd
    }

    /// Runs polis-runc with `args`, waits for it, and returns its stdout (empty unless `io` is `Captured`).
    pub fn run(
        &self,
        args: &[OsString],
        io: CommandIo,
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>, RuncError> {
        let command_name = args
            .iter()
            .find(|a| !a.to_string_lossy().starts_with('-'))
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        let io_error = |what: String| RuncError::Io {
            runtime: self.settings.runtime.clone(),
            command: command_name.clone(),
            what,
        };
        let mut cmd = self.command(args);
        let captured = matches!(io, CommandIo::Captured);
        match io {
            CommandIo::Given(i, o, e) => {
                cmd.stdin(i).stdout(o).stderr(e);
            }
            CommandIo::Captured => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
        }
        if input.is_some() {
            cmd.stdin(Stdio::piped());
        }
        let subscription =
            monitor_subscribe(Topic::Pid).map_err(|e| io_error(format!("watch exits: {e}")))?;
        let mut child = cmd.spawn().map_err(|source| RuncError::Spawn {
            runtime: self.settings.runtime.clone(),
            command: command_name.clone(),
            source,
        })?;
        // The Command holds the parent's copies of the container's stdio: close them now, or the container's
        // stdout would never reach EOF.
        drop(cmd);
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(data)
                .map_err(|e| io_error(format!("write stdin: {e}")))?;
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if captured {
            let err_pipe = child.stderr.take();
            let err_reader = std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut buf = Vec::new();
                    if let Some(mut e) = err_pipe {
                        let _ = e.read_to_end(&mut buf);
                    }
                    buf
                })
                .map_err(|e| io_error(format!("thread: {e}")))?;
            if let Some(mut out) = child.stdout.take() {
                out.read_to_end(&mut stdout)
                    .map_err(|e| io_error(format!("read stdout: {e}")))?;
            }
            stderr = err_reader.join().unwrap_or_default();
        }
        let status = wait_for_exit(child.id() as i32, subscription);
        if status != 0 {
            let (message, kind) = self.last_error(&stderr);
            return Err(RuncError::Failed {
                runtime: self.settings.runtime.clone(),
                command: command_name,
                status,
                message,
                kind,
            });
        }
        Ok(stdout)
    }

    /// The message and kind of the last error line in the log, else the last line of stderr.
    fn last_error(&self, stderr: &[u8]) -> (String, Option<String>) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        last_error_line(&log).unwrap_or_else(|| {
            let line = String::from_utf8_lossy(stderr)
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no error message")
                .to_string();
            (line, None)
        })
    }
}

/// The `msg` and `kind` of the last `"level":"error"` line of a runtime's JSON log.
fn last_error_line(log: &str) -> Option<(String, Option<String>)> {
    log.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        if v.get("level")?.as_str()? != "error" {
            return None;
        }
        let msg = v.get("msg")?.as_str()?.to_string();
        let kind = v.get("kind").and_then(|k| k.as_str()).map(str::to_string);
        Some((msg, kind))
    })
}

/// Blocks until the exit monitor reports `pid`; returns its exit status (128+N for signal N).
fn wait_for_exit(pid: i32, subscription: Subscription) -> i32 {
    loop {
        match subscription.rx.recv() {
            Ok(ExitEvent {
                subject: Subject::Pid(p),
                exit_code,
            }) if p == pid => return exit_code,
            Ok(_) => continue,
            // The monitor lives as long as the process: a closed channel cannot happen, but never spin.
            Err(_) => return -1,
        }
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    fn failed(message: &str, kind: Option<&str>) -> RuncError {
        RuncError::Failed {
            runtime: PathBuf::from("polis-runc"),
            command: "create".into(),
            status: 1,
            message: message.into(),
            kind: kind.map(str::to_string),
        }
    }

    /// polis-runc's `kind` decides, whatever the words; without one (runc) the words of runc's contract do.
    #[test]
    fn kinds_come_from_the_log_and_words_only_from_runc() {
        let log = r#"{"level":"warning","msg":"w","time":"t"}
{"level":"error","msg":"config.json in /b: source /x of the bind mount on /m does not exist","time":"t","kind":"invalid"}
"#;
        let (msg, kind) = last_error_line(log).unwrap();
        assert_eq!(failed(&msg, kind.as_deref()).kind(), FailureKind::Invalid);
        assert_eq!(
            failed("container does not exist", None).kind(),
            FailureKind::NotFound
        );
        assert_eq!(
            failed("container not running", None).kind(),
            FailureKind::FailedPrecondition
        );
        assert_eq!(
            failed("x", Some("already-exists")).kind(),
            FailureKind::AlreadyExists
        );
        assert_eq!(failed("x", None).kind(), FailureKind::Other);
        assert!(last_error_line("{\"level\":\"info\",\"msg\":\"m\"}\n").is_none());
    }
}
