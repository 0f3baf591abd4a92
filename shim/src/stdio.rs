//! A process's standard streams: the fifos (or files) containerd names, joined to the container through pipes, or
//! to a pseudo-terminal whose master polis-runc sends over a console socket.
//!
//! Output is copied by one small thread per stream until the container's side closes; stdin is forwarded until
//! containerd's CloseIO (or the process's exit). A process's exit is reported only after its output is drained
//! (bounded by [`DRAIN_LIMIT`]), so `ctr run` prints everything the container wrote before it returns.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long an exit waits for output still held open by a process that outlived the container's init.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);
const COPY_STACK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("open {stream} {path}: {source}")]
    Open {
        stream: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{stream} {uri}: only fifos, plain paths and file:// URIs are supported")]
    Scheme { stream: &'static str, uri: String },
    #[error("{what}: {source}")]
    Os {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the runtime sent no terminal over the console socket")]
    NoConsole,
}

/// The paths containerd gives for a process.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// Counts output copiers still running; an exit waits for zero.
#[derive(Default)]
struct Drain {
    running: Mutex<usize>,
    done: Condvar,
}

impl Drain {
    fn start(&self) {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }
    fn finish(&self) {
        let mut n = self.running.lock().unwrap_or_else(|e| e.into_inner());
        *n = n.saturating_sub(1);
        self.done.notify_all();
    }
    fn wait(&self, limit: Duration) {
        let n = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let _ = self.done.wait_timeout_while(n, limit, |n| *n > 0);
    }
}

/// The shim's side of a process's streams, alive as long as the process is known.
pub struct ProcessIo {
    drain: Arc<Drain>,
    stdin_stop: Option<OwnedFd>,
    console: Option<File>,
}

impl ProcessIo {
    /// Closes the container's stdin (containerd's CloseIO).
    pub fn close_stdin(&mut self) {
        if let Some(fd) = self.stdin_stop.take() {
            // Writing to the eventfd wakes the forwarder, which closes the container's stdin and ends.
            let one: u64 = 1;
            // SAFETY: writing 8 bytes from a live u64 to an eventfd we own.
            unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Waits (at most [`DRAIN_LIMIT`]) until everything the process wrote has been copied out.
    pub fn wait_drained(&self) {
        self.drain.wait(DRAIN_LIMIT);
    }

    /// Sets the terminal's window size (containerd's ResizePty). False when the process has no terminal.
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<bool> {
        let Some(console) = &self.console else {
            return Ok(false);
        };
        let size = libc::winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct that lives across the call.
        if unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(true)
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        self.close_stdin();
    }
}

/// What a runtime command gets before the process exists: its stdio, or a console socket to send the pty to.
pub enum Prepared {
    Pipes {
        stdin: Stdio,
        stdout: Stdio,
        stderr: Stdio,
        io: ProcessIo,
    },
    Terminal(ConsoleSocket),
}

/// Opens containerd's fifos and makes the pipes the container will write to; copying starts at once.
pub fn prepare(paths: &StdioPaths) -> Result<Prepared, StdioError> {
    if paths.terminal {
        return Ok(Prepared::Terminal(ConsoleSocket::bind(paths.clone())?));
    }
    let drain = Arc::new(Drain::default());
    let stdout = match open_output("stdout", &paths.stdout)? {
        Some(dest) => {
            let (r, w) = pipe()?;
            spawn_output_copier(File::from(r), dest, &drain)?;
            Stdio::from(w)
        }
        None => Stdio::null(),
    };
    let stderr = match open_output("stderr", &paths.stderr)? {
        Some(dest) => {
            let (r, w) = pipe()?;
            spawn_output_copier(File::from(r), dest, &drain)?;
            Stdio::from(w)
        }
        None => Stdio::null(),
    };
    let (stdin, stdin_stop) = match open_input(&paths.stdin)? {
        Some(source) => {
            let (r, w) = pipe()?;
            let stop = spawn_stdin_forwarder(source, File::from(w))?;
            (Stdio::from(r), Some(stop))
        }
        None => (Stdio::null(), None),
    };
    Ok(Prepared::Pipes {
        stdin,
        stdout,
        stderr,
        io: ProcessIo {
            drain,
            stdin_stop,
            console: None,
        },
    })
}

/// A console socket (`--console-socket`) waiting for the runtime to send the terminal's master.
pub struct ConsoleSocket {
    pub path: PathBuf,
    listener: UnixListener,
    paths: StdioPaths,
}

static SOCKET_SEQ: AtomicU64 = AtomicU64::new(0);

impl ConsoleSocket {
    fn bind(paths: StdioPaths) -> Result<ConsoleSocket, StdioError> {
        // Short paths: a bundle path can exceed sun_path's 108 bytes.
        let path = std::env::temp_dir().join(format!(
            "polis-shim-pty-{}-{}.sock",
            std::process::id(),
            SOCKET_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|source| StdioError::Os {
            what: "bind console socket",
            source,
        })?;
        Ok(ConsoleSocket {
            path,
            listener,
            paths,
        })
    }

    /// Receives the master the runtime sent during create/exec and starts copying through it.
    pub fn receive(self) -> Result<ProcessIo, StdioError> {
        let os = |what| move |source| StdioError::Os { what, source };
        self.listener
            .set_nonblocking(true)
            .map_err(os("console socket"))?;
        let (conn, _) = self.listener.accept().map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                StdioError::NoConsole
            } else {
                StdioError::Os {
                    what: "accept on console socket",
                    source: e,
                }
            }
        })?;
        conn.set_nonblocking(false).map_err(os("console socket"))?;
        let master = File::from(receive_fd(conn.as_raw_fd()).map_err(os("receive terminal"))?);
        let drain = Arc::new(Drain::default());
        if let Some(dest) = open_output("stdout", &self.paths.stdout)? {
            let from = master.try_clone().map_err(os("dup terminal"))?;
            spawn_output_copier(from, dest, &drain)?;
        }
        let stdin_stop = match open_input(&self.paths.stdin)? {
            Some(source) => {
                let to = master.try_clone().map_err(os("dup terminal"))?;
                Some(spawn_stdin_forwarder(source, to)?)
            }
            None => None,
        };
        Ok(ProcessIo {
            drain,
            stdin_stop,
            console: Some(master),
        })
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), StdioError> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(StdioError::Os {
            what: "pipe",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: both fds were just returned by pipe2 and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn local_path<'a>(stream: &'static str, uri: &'a str) -> Result<&'a str, StdioError> {
    if let Some(path) = uri.strip_prefix("file://") {
        return Ok(path);
    }
    if uri.contains("://") {
        return Err(StdioError::Scheme {
            stream,
            uri: uri.to_string(),
        });
    }
    Ok(uri)
}

/// Opens an output fifo (read-write, so the open never waits for containerd's reader) or file (append).
fn open_output(stream: &'static str, uri: &str) -> Result<Option<File>, StdioError> {
    if uri.is_empty() {
        return Ok(None);
    }
    let path = local_path(stream, uri)?;
    let is_fifo = std::fs::metadata(path)
        .map(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
        .unwrap_or(false);
    let mut opts = OpenOptions::new();
    if is_fifo {
        opts.read(true).write(true);
    } else {
        opts.append(true).create(true);
    }
    opts.custom_flags(libc::O_CLOEXEC)
        .open(Path::new(path))
        .map(Some)
        .map_err(|source| StdioError::Open {
            stream,
            path: path.to_string(),
            source,
        })
}

/// Opens the stdin fifo without waiting for containerd's writer (O_NONBLOCK). Input ends when the last writer
/// closes the fifo (what `ctr` does at the end of its stdin) or at containerd's CloseIO, whichever comes first:
/// Linux reports POLLHUP on a fifo only after a writer was seen, so the forwarder waits for the first writer.
fn open_input(uri: &str) -> Result<Option<File>, StdioError> {
    if uri.is_empty() {
        return Ok(None);
    }
    let path = local_path("stdin", uri)?;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
        .map(Some)
        .map_err(|source| StdioError::Open {
            stream: "stdin",
            path: path.to_string(),
            source,
        })
}

fn spawn_output_copier(mut from: File, mut to: File, drain: &Arc<Drain>) -> Result<(), StdioError> {
    drain.start();
    let drain_done = Arc::clone(drain);
    let spawned = std::thread::Builder::new()
        .name("stdout".into())
        .stack_size(COPY_STACK)
        .spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match from.read(&mut buf) {
                    // EIO: every terminal slave closed.
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            drain_done.finish();
        });
    spawned.map(|_| ()).map_err(|source| {
        drain.finish();
        StdioError::Os {
            what: "start output copier",
            source,
        }
    })
}

/// Forwards `source` (containerd's stdin fifo) to `to` until the returned eventfd is written; then closes `to`.
fn spawn_stdin_forwarder(mut source: File, mut to: File) -> Result<OwnedFd, StdioError> {
    // SAFETY: eventfd returns a new fd or -1.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(StdioError::Os {
            what: "eventfd",
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: raw is a new eventfd owned by nothing else.
    let stop = unsafe { OwnedFd::from_raw_fd(raw) };
    let stop_seen = stop.try_clone().map_err(|source| StdioError::Os {
        what: "dup eventfd",
        source,
    })?;
    std::thread::Builder::new()
        .name("stdin".into())
        .stack_size(COPY_STACK)
        .spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let mut fds = [
                    libc::pollfd {
                        fd: source.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: stop_seen.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                // SAFETY: polling two fds that live for the call.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
                if n < 0 {
                    if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    break;
                }
                if fds[1].revents != 0 {
                    // Forward what is already buffered, then end.
                    drain_ready(&mut source, &mut to, &mut buf);
                    break;
                }
                if fds[0].revents != 0 {
                    match source.read(&mut buf) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            }
            // Dropping `to` closes the container's stdin.
        })
        .map_err(|source| StdioError::Os {
            what: "start stdin forwarder",
            source,
        })?;
    Ok(stop)
}

/// Copies what `source` holds right now, without waiting for more.
fn drain_ready(source: &mut File, to: &mut File, buf: &mut [u8]) {
    loop {
        let mut pfd = libc::pollfd {
            fd: source.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polling one fd that lives for the call, without waiting.
        if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 {
            return;
        }
        match source.read(buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Receives one fd sent with SCM_RIGHTS.
fn receive_fd(socket: i32) -> std::io::Result<OwnedFd> {
    let mut data = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for a few fds' control message.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; the pointers set below outlive recvmsg.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: recvmsg writes into the buffers msg points to.
    let n = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: walking the control buffer recvmsg filled, with the kernel's own macros.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null()
            && (*cmsg).cmsg_level == libc::SOL_SOCKET
            && (*cmsg).cmsg_type == libc::SCM_RIGHTS
        {
            let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>());
            return Ok(OwnedFd::from_raw_fd(fd));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "no file descriptor in the console socket message",
    ))
}
