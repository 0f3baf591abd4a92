//! runc's log contract: `--log FILE` (default stderr), `--log-format text|json`, `--debug`.
//!
//! JSON lines look like logrus's: `{"level":"error","msg":"...","time":"..."}`; containerd's shims
//! read the last line whose level is "error" to report why a command failed.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

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
        // Libraries log and then return their errors; the returned error is reported once by
        // main. Their other lines are only wanted with --debug.
        let ours = metadata.target().starts_with("polis");
        let level = *metadata.level();
        level <= self.max_level && (ours || self.debug || level == Level::ERROR)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut m = Message::default();
        event.record(&mut m);
        let text = format!("{}{}", m.msg, m.fields);
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
