//! runc's log contract: `--log FILE` (default stderr), `--log-format text|json`, `--debug`.
//!
//! JSON lines look like logrus's: `{"level":"error","msg":"...","time":"..."}`; containerd's shims
//! read the last line whose level is "error" to report why a command failed.
//!
//! While a container or a process is being built, libcontainer's own error lines (which carry the
//! cause its returned errors leave out, also from the container's init process) go to a
//! [`CauseCapture`], so that the one error polis-runc reports can name the cause.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

struct LogrusLayer {
    out: Mutex<Box<dyn Write + Send>>,
    format: LogFormat,
    max_level: Level,
    debug: bool,
}

#[derive(Default)]
struct Message {
    msg: String,
    fields: String,
    /// The error's class (error.rs `Error::kind`), a JSON key of its own.
    kind: Option<String>,
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.msg.push_str(value);
        } else if field.name() == "kind" {
            self.kind = Some(value.to_string());
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.msg, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "error",
        Level::WARN => "warning",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

impl<S: Subscriber> Layer<S> for LogrusLayer {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        // libcontainer logs and then returns every error; the returned error is reported once by
        // main. Its other lines are only wanted with --debug. Its errors are kept: while a
        // container is built they go to the CauseCapture (the init process has no other way
        // out), else to the log.
        let ours = metadata.target().starts_with("polis");
        let level = *metadata.level();
        level <= self.max_level && (ours || self.debug || level == Level::ERROR)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut m = Message::default();
        event.record(&mut m);
        let text = format!("{}{}", m.msg, m.fields);
        let ours = event.metadata().target().starts_with("polis");
        if !ours && *event.metadata().level() == Level::ERROR && capture_cause(&text) && !self.debug
        {
            return;
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let level = level_name(event.metadata().level());
        let line = match self.format {
            LogFormat::Json => {
                let mut obj = serde_json::json!({ "level": level, "msg": text, "time": time });
                if let Some(kind) = &m.kind {
                    obj["kind"] = serde_json::Value::String(kind.clone());
                }
                format!("{obj}\n")
            }
            LogFormat::Text => match &m.kind {
                Some(kind) => format!("time=\"{time}\" level={level} msg={text:?} kind={kind}\n"),
                None => format!("time=\"{time}\" level={level} msg={text:?}\n"),
            },
        };
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}

/// Where the write end of the [`CauseCapture`] in force is kept (-1: none): one integer in a
/// shared mapping, made once. Processes that libcontainer forks or clones while a capture is in
/// force inherit the mapping and the pipe, so when the capture ends in polis-runc it ends in the
/// container's processes too, and their later errors go to the log again.
static CAUSE_SINK: AtomicPtr<AtomicI32> = AtomicPtr::new(std::ptr::null_mut());

fn cause_sink() -> Option<&'static AtomicI32> {
    let ptr = CAUSE_SINK.load(Ordering::SeqCst);
    // SAFETY: set once to a mapping that is never unmapped, holding an AtomicI32.
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

fn make_cause_sink() -> Result<&'static AtomicI32> {
    if let Some(sink) = cause_sink() {
        return Ok(sink);
    }
    // SAFETY: a new anonymous shared mapping of one page; it is never unmapped.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(Error::io(
            "map memory for libcontainer's errors",
            "",
            std::io::Error::last_os_error(),
        ));
    }
    let sink = ptr.cast::<AtomicI32>();
    // SAFETY: the page is zeroed, page-aligned and large enough for an AtomicI32.
    unsafe { (*sink).store(-1, Ordering::SeqCst) };
    CAUSE_SINK.store(sink, Ordering::SeqCst);
    // SAFETY: as above.
    Ok(unsafe { &*sink })
}

/// Writes one of libcontainer's error lines to the capture in force; false when there is none.
fn capture_cause(text: &str) -> bool {
    let Some(fd) = cause_sink()
        .map(|s| s.load(Ordering::SeqCst))
        .filter(|fd| *fd >= 0)
    else {
        return false;
    };
    // One write of at most PIPE_BUF bytes is atomic, so lines of several processes never mix.
    let mut line: String = text.chars().take(1000).collect();
    line.push('\n');
    // SAFETY: writing a buffer we own to a descriptor the capture keeps open while it is set.
    unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
    true
}

/// Collects libcontainer's error lines while a container or process is built; see the module
/// documentation. One at a time per process; dropping it stops the capture.
pub struct CauseCapture {
    read: OwnedFd,
    _write: OwnedFd,
}

impl CauseCapture {
    pub fn start() -> Result<CauseCapture> {
        // Non-blocking: a process that logs more than the pipe holds loses lines, never hangs.
        // Close-on-exec: the container's program and hooks never see it.
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(|e| Error::sys("make the pipe for libcontainer's errors", e))?;
        make_cause_sink()?.store(write.as_raw_fd(), Ordering::SeqCst);
        Ok(CauseCapture {
            read,
            _write: write,
        })
    }

    /// The lines captured so far, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = nix::unistd::read(self.read.as_raw_fd(), &mut buf) {
            data.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&data)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for CauseCapture {
    fn drop(&mut self) {
        // Before the pipe closes: no process writes to it after this.
        if let Some(sink) = cause_sink() {
            sink.store(-1, Ordering::SeqCst);
        }
    }
}

/// Sets up logging for this process. With no file, logs go to stderr.
pub fn init_logging(file: Option<&Path>, format: LogFormat, debug: bool) -> Result<()> {
    let out: Box<dyn Write + Send> = match file {
        Some(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Error::io("open log file", path, e))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let layer = LogrusLayer {
        out: Mutex::new(out),
        format,
        max_level: if debug { Level::DEBUG } else { Level::WARN },
        debug,
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(())
}
