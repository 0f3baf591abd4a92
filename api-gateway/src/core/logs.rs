//! Container output: polisd's side of the shim's stdio. Each output fifo is read by one task that appends every
//! line to the container's log file and hands it to attached clients. The log file is in Docker's json-file
//! format, one JSON object per line, so tools that read Docker's logs read ours:
//!
//! ```text
//! {"log":"hello\n","stream":"stdout","time":"2026-12-03T16:00:00.123456789Z"}
//! ```
//!
//! The file is rotated by size: `container.log` becomes `container.log.1` (and `.1` becomes `.2`, ...), keeping
//! `max_files` files in all.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncReadExt;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The stream byte of Docker's multiplexed framing.
    pub fn frame_byte(self) -> u8 {
        match self {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }
}

/// One entry of the log: a line (with its newline) or the last piece of output without one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

/// Output as it is produced, for attached clients.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Arc<[u8]>,
}

/// The log file of one container, written by its output tasks.
pub struct LogWriter {
    path: PathBuf,
    file: Option<std::fs::File>,
    size: u64,
    max_size: u64,
    max_files: u32,
}

impl LogWriter {
    pub fn new(path: &Path, max_size: u64, max_files: u32) -> LogWriter {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        LogWriter {
            path: path.to_path_buf(),
            file: None,
            size,
            max_size,
            max_files: max_files.max(1),
        }
    }

    fn write_entry(&mut self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if self.max_size > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        if self.file.is_none() {
            self.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            );
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(&line)?;
        }
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files == 1 {
            std::fs::remove_file(&self.path).or_else(ignore_missing)?;
        } else {
            let _ = std::fs::remove_file(numbered(self.max_files - 1));
            for n in (1..self.max_files - 1).rev() {
                std::fs::rename(numbered(n), numbered(n + 1)).or_else(ignore_missing)?;
            }
            std::fs::rename(&self.path, numbered(1)).or_else(ignore_missing)?;
        }
        self.size = 0;
        Ok(())
    }

    /// Appends `data` as entries, one per line.
    pub fn append(&mut self, stream: Stream, data: &[u8]) {
        let time = now();
        for piece in data.split_inclusive(|b| *b == b'\n') {
            let entry = Entry {
                log: String::from_utf8_lossy(piece).into_owned(),
                stream,
                time: time.clone(),
            };
            if let Err(e) = self.write_entry(&entry) {
                tracing::warn!(path = %self.path.display(), error = %e, "write container log");
                return;
            }
        }
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// What attached clients receive: output, and its end once the container exited and its output is drained.
#[derive(Debug, Clone)]
pub enum OutputEvent {
    Data(Chunk),
    End,
}

/// A running container's output: its log file and the channel attached clients listen on. Writing and
/// subscribing take the same lock, so that `logs --follow` reads the file up to a point and then receives exactly
/// what comes after it.
pub struct Output {
    pub log: Mutex<LogWriter>,
    pub tx: broadcast::Sender<OutputEvent>,
}

impl Output {
    pub fn new(log: LogWriter) -> Arc<Output> {
        // Slots are allocated up front, per container: 256 chunks of up to 32 KiB each are enough for a client
        // that reads a moment late, and cost a few kB instead of the 200 kB 4096 would.
        let (tx, _) = broadcast::channel(256);
        Arc::new(Output {
            log: Mutex::new(log),
            tx,
        })
    }

    /// Tells attached clients that the output ended.
    pub fn end(&self) {
        let _log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.tx.send(OutputEvent::End);
    }

    fn publish(&self, stream: Stream, data: &[u8]) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.append(stream, data);
        let _ = self.tx.send(OutputEvent::Data(Chunk {
            stream,
            data: Arc::from(data),
        }));
    }
}

/// Reads one output fifo until the shim closes it (the container's side is drained).
pub async fn pump(mut fifo: tokio::net::unix::pipe::Receiver, stream: Stream, output: Arc<Output>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match fifo.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => output.publish(stream, &buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "read container output");
                return;
            }
        }
    }
}

/// Which entries a `logs` request wants.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub stdout: bool,
    pub stderr: bool,
    /// Only entries at or after this time (RFC 3339 compared as instants).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// The last N entries only.
    pub tail: Option<usize>,
}

impl LogFilter {
    pub fn wants(&self, entry: &Entry) -> bool {
        let stream_ok = match entry.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        if !stream_ok {
            return false;
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(&entry.time) else {
            return true;
        };
        let t = t.with_timezone(&chrono::Utc);
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
}

/// A container's log as `logs` reads it (REST and gRPC alike): the entries of its log files that pass `filter`, and,
/// when `follow`, its live output from where the files end: the files are read and the output subscribed to under
/// the writer's lock. The live stream yields the chunks of the streams `filter` wants, and ends with the container's
/// output.
pub fn read_and_follow(
    core: &super::Core,
    record: &super::record::ContainerRecord,
    filter: &LogFilter,
    follow: bool,
) -> (
    Vec<Entry>,
    impl futures_util::Stream<Item = Chunk> + Send + 'static,
) {
    let h = core.handle(record);
    let (entries, rx) = {
        let _log = h.output.log.lock().unwrap_or_else(|e| e.into_inner());
        let entries = read_entries(&record.log_path, core.config.logs.max_files, filter);
        (entries, follow.then(|| h.output.tx.subscribe()))
    };
    (entries, chunks(rx, filter.stdout, filter.stderr))
}

/// The chunks of the streams wanted of a subscription to a container's output, until the output ends (nothing
/// without a subscription): what `logs --follow` and attached clients (REST and gRPC) receive. A client that reads
/// too late loses what it missed, as with dockerd.
pub fn chunks(
    rx: Option<broadcast::Receiver<OutputEvent>>,
    stdout: bool,
    stderr: bool,
) -> impl futures_util::Stream<Item = Chunk> + Send + 'static {
    futures_util::stream::unfold(rx, move |rx| async move {
        let mut rx = rx?;
        loop {
            match rx.recv().await {
                Ok(OutputEvent::Data(chunk)) => {
                    let wanted = match chunk.stream {
                        Stream::Stdout => stdout,
                        Stream::Stderr => stderr,
                    };
                    if wanted {
                        return Some((chunk, Some(rx)));
                    }
                }
                Ok(OutputEvent::End) | Err(broadcast::error::RecvError::Closed) => return None,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
            }
        }
    })
}

/// The entries of a container's log files, oldest first, filtered.
pub fn read_entries(path: &Path, max_files: u32, filter: &LogFilter) -> Vec<Entry> {
    let mut files: Vec<PathBuf> = (1..max_files.max(1))
        .rev()
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .collect();
    files.push(path.to_path_buf());
    let mut entries = Vec::new();
    for f in files {
        let Ok(file) = std::fs::File::open(&f) else {
            continue;
        };
        for line in std::io::BufReader::new(file).lines() {
            let Ok(line) = line else { break };
            if let Ok(entry) = serde_json::from_str::<Entry>(&line)
                && filter.wants(&entry)
            {
                entries.push(entry);
            }
        }
    }
    if let Some(n) = filter.tail {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    entries
}

/// Docker's multiplexed stream framing (non-tty attach, logs, exec): a header of the stream byte, three zero
/// bytes and the payload length (big endian u32), then the payload.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_entries_and_rotate_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("container.log");
        let mut w = LogWriter::new(&path, 200, 3);
        for i in 0..10 {
            w.append(Stream::Stdout, format!("line {i}\n").as_bytes());
        }
        w.append(Stream::Stderr, b"oops\npartial");
        assert!(path.with_extension("log.1").exists());
        assert!(
            !path.with_extension("log.3").exists(),
            "three files at most"
        );
        let all = LogFilter {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let entries = read_entries(&path, 3, &all);
        let last: Vec<&str> = entries
            .iter()
            .rev()
            .take(2)
            .map(|e| e.log.as_str())
            .collect();
        assert_eq!(last, ["partial", "oops\n"]);
        let tail = read_entries(
            &path,
            3,
            &LogFilter {
                tail: Some(1),
                ..all.clone()
            },
        );
        assert_eq!(tail.len(), 1);
        let only_err = read_entries(
            &path,
            3,
            &LogFilter {
                stderr: true,
                ..Default::default()
            },
        );
        assert!(only_err.iter().all(|e| e.stream == Stream::Stderr));
        assert_eq!(only_err.len(), 2);
    }

    #[test]
    fn frames_carry_stream_and_length() {
        assert_eq!(frame(2, b"hi"), [2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }
}
