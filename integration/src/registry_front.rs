//! A programmable HTTP/1.1 front for docker-registry, run inside the test process, for the image puller's tests.
//!
//! [`RegistryFront::start`] listens on 127.0.0.1 (an ephemeral port) inside a test's [`NetNs`] and forwards every
//! request to the upstream registry (127.0.0.1:5000 in the same namespace), streaming bodies both ways (blobs can be
//! hundreds of MB; nothing is buffered whole). A second listener on 127.0.0.2 plays the blob storage that a registry
//! redirects to. Behaviours are switched on at any time, and everything the front sees is recorded:
//!
//! - [`RegistryFront::require_bearer`]: Docker token auth (`WWW-Authenticate: Bearer realm=...,service=...,scope=...`
//!   and a `/token` endpoint, optionally behind Basic credentials); [`RegistryFront::token_requests`],
//!   [`RegistryFront::revoke_tokens`].
//! - [`RegistryFront::throttle`]: `429 Too Many Requests` with `Retry-After` for the first K matching requests.
//! - [`RegistryFront::redirect_blobs`]: blob GETs answered with `307` to the 127.0.0.2 listener, which records whether
//!   the client (wrongly) sent its `Authorization` there.
//! - [`RegistryFront::interrupt_blob`]: the first GET of a blob gets the real headers and then only N bytes, then the
//!   connection stalls until [`RegistryFront::release`] or closes at once.
//! - [`RegistryFront::canned`]: a fixed response for one path (e.g. a schema1 manifest).
//!
//! [`RegistryFront::requests`] is the log (method, path, Accept, Authorization, Range, status, time, body bytes, and
//! which behaviour answered). Each connection serves one request and every response says `Connection: close`.
//! Dropping the front stops both listeners, unblocks stalled and streaming connections, and joins every thread.
//!
//! ```no_run
//! use polis_integration::NetNs;
//! use polis_integration::containerd::Registry;
//! use polis_integration::registry_front::{InterruptMode, RegistryFront};
//! let netns = NetNs::new("image");
//! let _registry = Registry::start(&netns);
//! let front = RegistryFront::start(&netns, Registry::ADDRESS);
//! front.require_bearer(None);
//! front.interrupt_blob("sha256:...", 1 << 20, InterruptMode::Close);
//! // run `polis-image --insecure-registry {front.address()} pull {front.address()}/polis/app:v1` in netns ...
//! assert_eq!(front.count("GET", "/blobs/sha256:..."), 2);
//! assert!(front.requests().iter().any(|r| r.range.as_deref() == Some("bytes=1048576-")));
//! ```
//!
//! This module touches the host only through the namespace it is given: its threads enter it with setns(2).

use crate::NetNs;
use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `service` the Bearer challenge names and `/token` expects.
pub const TOKEN_SERVICE: &str = "polis-test";
/// How long one read or write on a socket may block before the connection is given up.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request or response head accepted.
const MAX_HEAD: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------------------------
// Network namespaces

/// Moves the calling thread into the network namespace `/run/netns/NAME`. Sockets it opens afterwards, and threads
/// it spawns, belong to that namespace.
pub fn enter_netns(name: &str) -> io::Result<()> {
    let file = fs::File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns on a descriptor we own; CLONE_NEWNET only changes this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Runs `f` on a thread of its own inside `netns` and returns what it returns.
pub fn in_netns<T: Send>(netns: &NetNs, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&netns.name)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("thread in netns panicked")))
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Minimal HTTP/1.1

type Headers = Vec<(String, String)>;

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads a start line and headers up to the blank line. `Ok(None)` on EOF before anything.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<(String, Headers)>> {
    let mut start = String::new();
    let mut headers = Vec::new();
    let mut total = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        total += n;
        if total > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "HTTP head too large",
            ));
        }
        if n == 0 {
            if start.is_empty() && headers.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "HTTP head cut short",
            ));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        if start.is_empty() {
            if text.is_empty() {
                continue; // tolerate a stray CRLF before the start line
            }
            start = text.to_string();
        } else if text.is_empty() {
            return Ok(Some((start, headers)));
        } else if let Some((k, v)) = text.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// Copies exactly `n` bytes; returns how many were copied before EOF or an error cut it short.
fn copy_exact(r: &mut impl Read, w: &mut impl Write, n: u64) -> (u64, io::Result<()>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0;
    while done < n {
        let want = (n - done).min(buf.len() as u64) as usize;
        match r.read(&mut buf[..want]) {
            Ok(0) => {
                return (
                    done,
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "body cut short",
                    )),
                );
            }
            Ok(k) => {
                if let Err(e) = w.write_all(&buf[..k]) {
                    return (done, Err(e));
                }
                done += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
}

/// Copies until EOF; returns the byte count and how it ended.
fn copy_to_end(r: &mut impl Read, w: &mut impl Write) -> (u64, io::Result<()>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut done = 0;
    loop {
        match r.read(&mut buf) {
            Ok(0) => return (done, Ok(())),
            Ok(k) => {
                if let Err(e) = w.write_all(&buf[..k]) {
                    return (done, Err(e));
                }
                done += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
}

/// Relays a chunked body as is (sizes, data, trailers), stopping after the last chunk.
fn relay_chunked(r: &mut impl BufRead, w: &mut impl Write) -> io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "chunked body cut short",
            ));
        }
        w.write_all(&line)?;
        let size = chunk_size(&line)?;
        if size == 0 {
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 {
                    return Ok(());
                }
                w.write_all(&line)?;
                if line == b"\r\n" || line == b"\n" {
                    return Ok(());
                }
            }
        }
        copy_exact(r, w, size).1?;
        line.clear();
        r.read_until(b'\n', &mut line)?;
        w.write_all(&line)?;
    }
}

fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = String::from_utf8_lossy(line);
    let hex = text.trim().split(';').next().unwrap_or("").trim();
    u64::from_str_radix(hex, 16).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad chunk size {hex:?}"),
        )
    })
}

/// Reads a whole chunked body.
fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        r.read_until(b'\n', &mut line)?;
        let size = chunk_size(&line)?;
        if size == 0 {
            loop {
                line.clear();
                if r.read_until(b'\n', &mut line)? == 0 || line == b"\r\n" || line == b"\n" {
                    return Ok(out);
                }
            }
        }
        copy_exact(r, &mut out, size).1?;
        line.clear();
        r.read_until(b'\n', &mut line)?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        206 => "Partial Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        _ => "",
    }
}

/// A response read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl std::fmt::Display for HttpResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {:?} {}", self.status, self.headers, self.text())
    }
}

/// One plain-HTTP request from inside `netns` to `url` (`http://HOST:PORT/path?query`), with `Connection: close`;
/// the whole response body is read into memory. For test set-up (e.g. pushing exact blobs), not for big downloads.
pub fn http_request(
    netns: &NetNs,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    in_netns(netns, || http_request_here(method, url, headers, body))?
}

/// [`http_request`] from the calling thread's own network namespace.
pub fn http_request_here(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an http:// URL: {url}"),
        )
    })?;
    let (host, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut r = BufReader::new(s);
    let (start, headers) = read_head(&mut r)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
    let status = start
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {start:?}"),
            )
        })?;
    let body = if method == "HEAD" || status == 204 || status == 304 {
        Vec::new()
    } else if header(&headers, "transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        read_chunked(&mut r)?
    } else if let Some(n) = header(&headers, "content-length").and_then(|n| n.parse::<u64>().ok()) {
        let mut b = Vec::new();
        copy_exact(&mut r, &mut b, n).1?;
        b
    } else {
        let mut b = Vec::new();
        r.read_to_end(&mut b)?;
        b
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Behaviours and records

/// What an interrupted blob download does after its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptMode {
    /// Keep the connection open, sending nothing, until [`RegistryFront::release`] (or drop); then close it.
    StallUntilRelease,
    /// Close the connection at once.
    Close,
}

/// A fixed response for one path.
#[derive(Debug, Clone)]
pub struct CannedResponse {
    pub status: u16,
    /// Sent as given; `Content-Length` and `Connection` are added.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CannedResponse {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> CannedResponse {
        CannedResponse {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> CannedResponse {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A Docker schema1 signed manifest (`application/vnd.docker.distribution.manifest.v1+prettyjws`) for
    /// `name:tag` with one (empty-tar) layer, as an old registry serves it. docker-registry 2.8 itself no longer
    /// accepts schema1 pushes, so tests serve it from here.
    pub fn schema1_manifest(name: &str, tag: &str) -> CannedResponse {
        let body = serde_json::json!({
            "schemaVersion": 1,
            "name": name,
            "tag": tag,
            "architecture": "amd64",
            "fsLayers": [{"blobSum": "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"}],
            "history": [{"v1Compatibility": "{\"id\":\"e45a5af57b00862e5ef5782a9925979a02ba2b12dff832fd0991335f4a11e5c5\",\"architecture\":\"amd64\",\"os\":\"linux\"}"}],
            "signatures": [{
                "header": {"jwk": {"crv": "P-256", "kid": "POLIS:TEST", "kty": "EC", "x": "AA", "y": "AA"}, "alg": "ES256"},
                "signature": "AAAA",
                "protected": "eyJmb3JtYXRMZW5ndGgiOjEsImZvcm1hdFRhaWwiOiJmUSIsInRpbWUiOiIyMDI0LTAxLTAxVDAwOjAwOjAwWiJ9"
            }]
        });
        let body = serde_json::to_vec_pretty(&body).unwrap_or_default();
        let digest = crate::image_builder::sha256_digest(&body);
        CannedResponse::new(
            200,
            crate::image_builder::MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED,
            body,
        )
        .header("Docker-Content-Digest", &digest)
        .header("Docker-Distribution-Api-Version", "registry/2.0")
    }
}

/// Which listener a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// 127.0.0.1:PORT, the registry's address.
    Front,
    /// 127.0.0.2:PORT2, where blob GETs are redirected.
    Redirect,
}

/// Which behaviour answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Forwarded to the registry; its response relayed.
    Upstream,
    /// Forwarded, but the body was cut after the configured bytes.
    Interrupted,
    /// 429 from a throttle rule.
    Throttled,
    /// 401: missing, wrong or revoked Bearer token.
    Unauthorized,
    /// `/token`, granted or refused.
    Token,
    /// 307 to the redirect listener.
    Redirected,
    /// A canned response.
    Canned,
    /// The front failed (bad request, registry unreachable): 400 or 502.
    Error,
}

/// One request as the front saw it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub listener: Listener,
    /// Empty for a connection that did not speak HTTP (e.g. a TLS ClientHello), answered 400.
    pub method: String,
    /// Path with query, as sent.
    pub path: String,
    pub accept: Option<String>,
    /// The whole Authorization header value (test credentials only).
    pub authorization: Option<String>,
    pub range: Option<String>,
    /// Status sent (0 until the response head went out).
    pub status: u16,
    pub answer: Answer,
    /// When the request head had been read.
    pub at: Instant,
    /// Response body bytes sent to the client.
    pub body_bytes: u64,
}

/// One request to `/token`.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub service: Option<String>,
    /// Every `scope` parameter, in order.
    pub scopes: Vec<String>,
    /// The user of the Basic credentials sent, if any.
    pub basic_user: Option<String>,
    /// Whether a token was issued.
    pub granted: bool,
    pub at: Instant,
}

impl TokenRequest {
    pub fn basic_sent(&self) -> bool {
        self.basic_user.is_some()
    }
}

#[derive(Debug, Clone)]
struct Throttle {
    path_contains: String,
    remaining: usize,
    retry_after_secs: u64,
}

#[derive(Debug, Clone)]
struct Interruption {
    digest: String,
    after_bytes: u64,
    mode: InterruptMode,
    remaining: usize,
}

#[derive(Default)]
struct State {
    bearer: Option<Option<(String, String)>>,
    throttles: Vec<Throttle>,
    redirect_blobs: bool,
    interruptions: Vec<Interruption>,
    canned: HashMap<String, CannedResponse>,
    requests: Vec<(u64, RequestRecord)>,
    token_requests: Vec<TokenRequest>,
    /// Token -> scopes it grants.
    tokens: HashMap<String, Vec<String>>,
    token_seq: u64,
    /// Bumped by release(); a stalled connection waits for it to change.
    release_generation: u64,
    stalled: usize,
}

struct Shared {
    upstream: String,
    front_address: SocketAddr,
    redirect_address: SocketAddr,
    stop: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// Clones of every open socket, shut down on drop to unblock their threads.
    sockets: Mutex<HashMap<u64, Vec<TcpStream>>>,
    next_id: AtomicU64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A worker that panicked while holding the lock leaves consistent-enough data for a test harness.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn track(&self, id: u64, s: &TcpStream) {
        if let Ok(c) = s.try_clone() {
            self.sockets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id)
                .or_default()
                .push(c);
        }
    }

    fn untrack(&self, id: u64) {
        self.sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// The programmable front; see the module docs.
pub struct RegistryFront {
    netns: String,
    shared: Arc<Shared>,
    acceptors: Vec<JoinHandle<()>>,
}

impl RegistryFront {
    /// Starts both listeners inside `netns` (127.0.0.1 and 127.0.0.2, ephemeral ports) in front of `upstream`
    /// (`127.0.0.1:5000`, reached from inside the namespace). Forwards everything until behaviours are set.
    pub fn start(netns: &NetNs, upstream: &str) -> RegistryFront {
        RegistryFront::start_on(netns, upstream, 0)
    }

    /// Like [`RegistryFront::start`], with the front on 127.0.0.1:`port` (0: any free port).
    pub fn start_on(netns: &NetNs, upstream: &str, port: u16) -> RegistryFront {
        let name = netns.name.clone();
        let upstream = upstream.to_string();
        // A thread that enters the namespace, binds, and spawns the acceptors there (threads inherit the
        // namespace of the thread that creates them).
        let boot = std::thread::spawn(move || {
            (|| -> io::Result<RegistryFront> {
                enter_netns(&name)?;
                let front = TcpListener::bind(("127.0.0.1", port))?;
                let redirect = TcpListener::bind(("127.0.0.2", 0))?;
                front.set_nonblocking(true)?;
                redirect.set_nonblocking(true)?;
                let shared = Arc::new(Shared {
                    upstream,
                    front_address: front.local_addr()?,
                    redirect_address: redirect.local_addr()?,
                    stop: AtomicBool::new(false),
                    state: Mutex::new(State::default()),
                    changed: Condvar::new(),
                    workers: Mutex::new(Vec::new()),
                    sockets: Mutex::new(HashMap::new()),
                    next_id: AtomicU64::new(0),
                });
                let mut acceptors = Vec::new();
                for (listener, which) in [(front, Listener::Front), (redirect, Listener::Redirect)]
                {
                    let shared = Arc::clone(&shared);
                    acceptors.push(std::thread::spawn(move || {
                        accept_loop(listener, which, shared)
                    }));
                }
                Ok(RegistryFront {
                    netns: name,
                    shared,
                    acceptors,
                })
            })()
        });
        let front = boot
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("front start-up thread panicked")));
        front.unwrap_or_else(|e| panic!("start the registry front in netns {}: {e}", netns.name))
    }

    /// `127.0.0.1:PORT`: the registry address clients use.
    pub fn address(&self) -> String {
        self.shared.front_address.to_string()
    }

    pub fn port(&self) -> u16 {
        self.shared.front_address.port()
    }

    /// `127.0.0.2:PORT2`: where redirected blob GETs go.
    pub fn redirect_address(&self) -> String {
        self.shared.redirect_address.to_string()
    }

    /// The `realm` of the Bearer challenge: `http://127.0.0.1:PORT/token`.
    pub fn token_realm(&self) -> String {
        format!("http://{}/token", self.address())
    }

    /// Name of the network namespace the front listens in.
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// Requires a Bearer token from `/token` on every `/v2/` request. With `basic`, `/token` itself requires those
    /// Basic credentials (401 with a Basic challenge otherwise).
    pub fn require_bearer(&self, basic: Option<(&str, &str)>) {
        self.shared.state().bearer = Some(basic.map(|(u, p)| (u.to_string(), p.to_string())));
    }

    /// Stops requiring tokens.
    pub fn allow_anonymous(&self) {
        self.shared.state().bearer = None;
    }

    /// Invalidates every token issued so far: requests carrying them get 401 again.
    pub fn revoke_tokens(&self) {
        self.shared.state().tokens.clear();
    }

    /// Answers the next `count` requests whose path contains `path_contains` with 429 and `Retry-After:
    /// retry_after_secs`. Their times are in [`RegistryFront::requests`].
    pub fn throttle(&self, path_contains: &str, count: usize, retry_after_secs: u64) {
        self.shared.state().throttles.push(Throttle {
            path_contains: path_contains.to_string(),
            remaining: count,
            retry_after_secs,
        });
    }

    /// While on, `GET /v2/NAME/blobs/DIGEST` is answered `307 Location: http://127.0.0.2:PORT2/storage/v2/NAME/
    /// blobs/DIGEST?signature=polis`, which the redirect listener serves from the registry without any auth.
    pub fn redirect_blobs(&self, on: bool) {
        self.shared.state().redirect_blobs = on;
    }

    /// The first GET of blob `digest` (on whichever listener serves its bytes) gets the registry's status and headers
    /// (full Content-Length) and then only `after_bytes` bytes of the body; then `mode`.
    pub fn interrupt_blob(&self, digest: &str, after_bytes: u64, mode: InterruptMode) {
        self.shared.state().interruptions.push(Interruption {
            digest: digest.to_string(),
            after_bytes,
            mode,
            remaining: 1,
        });
    }

    /// Lets every connection stalled by [`InterruptMode::StallUntilRelease`] close.
    pub fn release(&self) {
        self.shared.state().release_generation += 1;
        self.shared.changed.notify_all();
    }

    /// How many connections are stalled right now.
    pub fn stalled(&self) -> usize {
        self.shared.state().stalled
    }

    /// Waits until `n` connections are stalled; panics after `timeout`.
    #[track_caller]
    pub fn wait_stalled(&self, n: usize, timeout: Duration) {
        crate::eventually(&format!("{n} connection(s) stalled"), timeout, || {
            self.stalled() >= n
        });
    }

    /// Serves `response` for GET and HEAD of exactly `path` (query ignored), after the auth check.
    pub fn canned(&self, path: &str, response: CannedResponse) {
        self.shared
            .state()
            .canned
            .insert(path.to_string(), response);
    }

    /// Every request so far, in arrival order of their heads being answered.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .state()
            .requests
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Requests with `method` (any when empty) whose path contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.shared
            .state()
            .requests
            .iter()
            .filter(|(_, r)| {
                (method.is_empty() || r.method == method) && r.path.contains(path_contains)
            })
            .count()
    }

    /// Arrival times of requests whose path contains `path_contains`.
    pub fn request_times(&self, path_contains: &str) -> Vec<Instant> {
        self.shared
            .state()
            .requests
            .iter()
            .filter(|(_, r)| r.path.contains(path_contains))
            .map(|(_, r)| r.at)
            .collect()
    }

    /// Requests that came to the redirect listener.
    pub fn redirected_requests(&self) -> Vec<RequestRecord> {
        self.requests()
            .into_iter()
            .filter(|r| r.listener == Listener::Redirect)
            .collect()
    }

    /// Every `/token` request so far.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.shared.state().token_requests.clone()
    }

    /// Forgets the request and token logs (behaviours stay).
    pub fn clear_log(&self) {
        let mut st = self.shared.state();
        st.requests.clear();
        st.token_requests.clear();
    }
}

impl Drop for RegistryFront {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        for a in self.acceptors.drain(..) {
            let _ = a.join();
        }
        for streams in self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            for s in streams {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        let workers: Vec<_> = self
            .shared
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for w in workers {
            let _ = w.join();
        }
    }
}

fn accept_loop(listener: TcpListener, which: Listener, shared: Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
                shared.track(id, &stream);
                let s = Arc::clone(&shared);
                let handle = std::thread::spawn(move || {
                    serve_connection(stream, which, id, &s);
                    s.untrack(id);
                });
                let mut workers = shared.workers.lock().unwrap_or_else(|e| e.into_inner());
                // Join finished workers as we go, so a long test does not pile up handles.
                let (done, running): (Vec<_>, Vec<_>) =
                    workers.drain(..).partition(JoinHandle::is_finished);
                *workers = running;
                workers.push(handle);
                drop(workers);
                for d in done {
                    let _ = d.join();
                }
            }
            // Not synchronisation: the server's own idle wait. The listener is non-blocking so that this loop sees
            // `stop` when the front is dropped (a blocking accept(2) cannot be interrupted from std); 5 ms bounds
            // both the delay before a new connection is served and the time Drop waits for this thread.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            // A backoff after a failed accept (EMFILE, ECONNABORTED, ...), so that an error that persists does not
            // spin a core; the loop then tries again or sees `stop`.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// A parsed request head.
struct Request {
    method: String,
    /// Path with query.
    target: String,
    path: String,
    query: String,
    headers: Headers,
    record_id: u64,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn serve_connection(stream: TcpStream, which: Listener, id: u64, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut client = BufReader::new(stream);
    let mut out = write_half;
    // Not HTTP (a client trying TLS first sends a ClientHello, 0x16): answer 400 at once, as Go's HTTP server does,
    // so the client falls back to plain HTTP instead of waiting out its handshake timeout.
    let first = client.fill_buf().ok().and_then(|b| b.first().copied());
    if !first.is_some_and(|b| b.is_ascii_uppercase()) {
        if first.is_some() {
            let record = RequestRecord {
                listener: which,
                method: String::new(),
                path: String::new(),
                accept: None,
                authorization: None,
                range: None,
                status: 400,
                answer: Answer::Error,
                at: Instant::now(),
                body_bytes: 0,
            };
            shared.state().requests.push((id, record));
            let _ =
                out.write_all(b"HTTP/1.0 400 Bad Request\r\nConnection: close\r\n\r\nnot HTTP\n");
        }
        let _ = out.shutdown(Shutdown::Both);
        return;
    }
    let (start, headers) = match read_head(&mut client) {
        Ok(Some(h)) => h,
        _ => return,
    };
    let mut parts = start.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let record = RequestRecord {
        listener: which,
        method: method.clone(),
        path: target.clone(),
        accept: header(&headers, "accept").map(str::to_string),
        authorization: header(&headers, "authorization").map(str::to_string),
        range: header(&headers, "range").map(str::to_string),
        status: 0,
        answer: Answer::Upstream,
        at: Instant::now(),
        body_bytes: 0,
    };
    shared.state().requests.push((id, record));
    let req = Request {
        method,
        target,
        path,
        query,
        headers,
        record_id: id,
    };
    let _ = handle(&req, &mut client, &mut out, which, shared);
    let _ = out.flush();
    let _ = out.shutdown(Shutdown::Write);
}

fn update_record(shared: &Shared, id: u64, f: impl FnOnce(&mut RequestRecord)) {
    let mut st = shared.state();
    if let Some((_, r)) = st.requests.iter_mut().rev().find(|(i, _)| *i == id) {
        f(r);
    }
}

/// Writes a complete small response and records it.
fn respond(
    out: &mut TcpStream,
    req: &Request,
    shared: &Shared,
    answer: Answer,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let send_body = req.method != "HEAD";
    update_record(shared, req.record_id, |r| {
        r.status = status;
        r.answer = answer;
        r.body_bytes = if send_body { body.len() as u64 } else { 0 };
    });
    out.write_all(head.as_bytes())?;
    if send_body {
        out.write_all(body)?;
    }
    Ok(())
}

fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]})
        .to_string()
        .into_bytes()
}

fn json_header() -> (String, String) {
    (
        "Content-Type".into(),
        "application/json; charset=utf-8".into(),
    )
}

/// The repository a `/v2/NAME/{manifests,blobs,tags}/...` path names.
fn repository_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|m| rest.rfind(m).map(|i| &rest[..i]))
        .max_by_key(|s| s.len())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn blob_digest_of(path: &str) -> Option<&str> {
    let i = path.rfind("/blobs/")?;
    let d = &path[i + "/blobs/".len()..];
    (d.starts_with("sha256:") && path.starts_with("/v2/")).then_some(d)
}

fn query_params(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    fn hex_value(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = match (b[i], b.get(i + 1), b.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) => hex_value(h).zip(hex_value(l)).map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (escaped, b[i]) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, c) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn decode_basic(value: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, data) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Whether `scopes` (`repository:NAME:pull,push`) allow `action` on `repository`.
fn scopes_allow(scopes: &[String], repository: &str, action: &str) -> bool {
    scopes.iter().any(|s| {
        s.strip_prefix("repository:")
            .and_then(|rest| rest.rsplit_once(':'))
            .is_some_and(|(name, actions)| {
                name == repository && actions.split(',').any(|a| a == action || a == "*")
            })
    })
}

fn handle(
    req: &Request,
    client: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    which: Listener,
    shared: &Shared,
) -> io::Result<()> {
    // 1. Throttling, on either listener.
    let throttled = {
        let mut st = shared.state();
        st.throttles
            .iter_mut()
            .find(|t| t.remaining > 0 && req.target.contains(&t.path_contains))
            .map(|t| {
                t.remaining -= 1;
                t.retry_after_secs
            })
    };
    if let Some(secs) = throttled {
        let headers = [json_header(), ("Retry-After".into(), secs.to_string())];
        let body = error_body("TOOMANYREQUESTS", "too many requests");
        return respond(out, req, shared, Answer::Throttled, 429, &headers, &body);
    }

    if which == Listener::Redirect {
        // Blob storage: a presigned-URL-like path, no auth.
        let Some(upstream_path) = req.path.strip_prefix("/storage") else {
            let body = error_body("NOT_FOUND", "not a storage path");
            return respond(
                out,
                req,
                shared,
                Answer::Error,
                404,
                &[json_header()],
                &body,
            );
        };
        return forward(req, upstream_path, client, out, shared);
    }

    // 2. The token endpoint.
    if req.path == "/token" {
        return token(req, client, out, shared);
    }

    // 3. Bearer auth on /v2/.
    if req.path == "/v2" || req.path.starts_with("/v2/") {
        let bearer = shared.state().bearer.is_some();
        if bearer && !bearer_allows(req, shared) {
            let repository = repository_of(&req.path);
            let action = if matches!(req.method.as_str(), "GET" | "HEAD") {
                "pull"
            } else {
                "pull,push"
            };
            let mut challenge = format!(
                "Bearer realm=\"http://{}/token\",service=\"{TOKEN_SERVICE}\"",
                shared.front_address
            );
            if let Some(r) = repository {
                challenge.push_str(&format!(",scope=\"repository:{r}:{action}\""));
            }
            let headers = [
                json_header(),
                ("WWW-Authenticate".into(), challenge),
                (
                    "Docker-Distribution-Api-Version".into(),
                    "registry/2.0".into(),
                ),
            ];
            let body = error_body("UNAUTHORIZED", "authentication required");
            return respond(out, req, shared, Answer::Unauthorized, 401, &headers, &body);
        }
    }

    // 4. Canned responses.
    if matches!(req.method.as_str(), "GET" | "HEAD") {
        let canned = shared.state().canned.get(&req.path).cloned();
        if let Some(c) = canned {
            return respond(
                out,
                req,
                shared,
                Answer::Canned,
                c.status,
                &c.headers,
                &c.body,
            );
        }
    }

    // 5. Redirected blobs.
    if req.method == "GET" && blob_digest_of(&req.path).is_some() && shared.state().redirect_blobs {
        let location = format!(
            "http://{}/storage{}?signature=polis",
            shared.redirect_address, req.path
        );
        let headers = [
            ("Location".into(), location),
            (
                "Docker-Distribution-Api-Version".into(),
                "registry/2.0".into(),
            ),
        ];
        return respond(out, req, shared, Answer::Redirected, 307, &headers, &[]);
    }

    // 6. The registry.
    forward(req, &req.path, client, out, shared)
}

fn bearer_allows(req: &Request, shared: &Shared) -> bool {
    let Some(token) = req
        .header("authorization")
        .and_then(|a| a.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string())
    else {
        return false;
    };
    let st = shared.state();
    let Some(scopes) = st.tokens.get(&token) else {
        return false;
    };
    match repository_of(&req.path) {
        None => true, // /v2/ and /v2/_catalog: any valid token
        Some(repo) => {
            let action = if matches!(req.method.as_str(), "GET" | "HEAD") {
                "pull"
            } else {
                "push"
            };
            scopes_allow(scopes, &repo, action)
        }
    }
}

fn token(
    req: &Request,
    client: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    shared: &Shared,
) -> io::Result<()> {
    let mut params = query_params(&req.query);
    if req.method == "POST" {
        // OAuth2 form (grant_type=password&...): same parameters.
        if let Some(n) = req
            .header("content-length")
            .and_then(|n| n.parse::<u64>().ok())
        {
            let mut body = Vec::new();
            copy_exact(client, &mut body, n.min(MAX_HEAD as u64)).1?;
            params.extend(query_params(&String::from_utf8_lossy(&body)));
        }
    }
    let service = params
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let basic = req.header("authorization").and_then(decode_basic);
    let mut st = shared.state();
    let granted = match &st.bearer {
        Some(Some(required)) => basic.as_ref() == Some(required),
        _ => true,
    };
    st.token_requests.push(TokenRequest {
        service,
        scopes: scopes.clone(),
        basic_user: basic.map(|(u, _)| u),
        granted,
        at: Instant::now(),
    });
    if !granted {
        drop(st);
        let headers = [
            json_header(),
            (
                "WWW-Authenticate".into(),
                "Basic realm=\"polis-test\"".into(),
            ),
        ];
        let body = error_body("UNAUTHORIZED", "wrong or missing credentials");
        return respond(out, req, shared, Answer::Token, 401, &headers, &body);
    }
    st.token_seq += 1;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let token = format!("polis-{}-{nanos:08x}", st.token_seq);
    st.tokens.insert(token.clone(), scopes);
    drop(st);
    let body =
        serde_json::json!({"token": token, "access_token": token, "expires_in": 300}).to_string();
    respond(
        out,
        req,
        shared,
        Answer::Token,
        200,
        &[json_header()],
        body.as_bytes(),
    )
}

/// Hop-by-hop headers not forwarded either way.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "expect",
        "te",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// Forwards the request to the registry as `upstream_path` (plus query) and relays the response, cutting it when an
/// interruption rule matches.
fn forward(
    req: &Request,
    upstream_path: &str,
    client: &mut BufReader<TcpStream>,
    out: &mut TcpStream,
    shared: &Shared,
) -> io::Result<()> {
    let interruption = if req.method == "GET" {
        blob_digest_of(upstream_path).and_then(|digest| {
            let mut st = shared.state();
            st.interruptions
                .iter_mut()
                .find(|i| i.remaining > 0 && i.digest == digest)
                .map(|i| {
                    i.remaining -= 1;
                    (i.after_bytes, i.mode)
                })
        })
    } else {
        None
    };

    let upstream = match TcpStream::connect(&shared.upstream) {
        Ok(s) => s,
        Err(e) => {
            let body = error_body("UNAVAILABLE", &format!("registry unreachable: {e}"));
            return respond(
                out,
                req,
                shared,
                Answer::Error,
                502,
                &[json_header()],
                &body,
            );
        }
    };
    shared.track(req.record_id, &upstream);
    upstream.set_read_timeout(Some(IO_TIMEOUT))?;
    upstream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut up_write = upstream.try_clone()?;

    // Request head, then the body as it comes (Content-Length or chunked).
    let target = if req.query.is_empty() || upstream_path != req.path {
        upstream_path.to_string()
    } else {
        format!("{upstream_path}?{}", req.query)
    };
    let mut head = format!("{} {target} HTTP/1.1\r\n", req.method);
    for (k, v) in &req.headers {
        if !hop_by_hop(k) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    up_write.write_all(head.as_bytes())?;
    if req
        .header("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    if req
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        relay_chunked(client, &mut up_write)?;
    } else if let Some(n) = req
        .header("content-length")
        .and_then(|n| n.parse::<u64>().ok())
    {
        copy_exact(client, &mut up_write, n).1?;
    }
    up_write.flush()?;

    // Response head, rewritten to close the connection.
    let mut upstream = BufReader::with_capacity(64 * 1024, upstream);
    let (start, headers) = loop {
        match read_head(&mut upstream)? {
            Some((start, _))
                if start
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|c| c.starts_with('1')) =>
            {
                continue; // an interim 1xx from the registry
            }
            Some(h) => break h,
            None => {
                let body = error_body("UNAVAILABLE", "registry closed the connection");
                return respond(
                    out,
                    req,
                    shared,
                    Answer::Error,
                    502,
                    &[json_header()],
                    &body,
                );
            }
        }
    };
    let status: u16 = start
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(502);
    let mut head = format!("{start}\r\n");
    for (k, v) in &headers {
        if !hop_by_hop(k) {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    let answer = if interruption.is_some() {
        Answer::Interrupted
    } else {
        Answer::Upstream
    };
    update_record(shared, req.record_id, |r| {
        r.status = status;
        r.answer = answer;
    });
    out.write_all(head.as_bytes())?;

    // Body: everything until the registry closes (it was asked to), or the first bytes of an interrupted blob.
    let (sent, result) = match interruption {
        Some((after, _)) => copy_exact(&mut upstream, out, after),
        None => copy_to_end(&mut upstream, out),
    };
    update_record(shared, req.record_id, |r| r.body_bytes = sent);
    out.flush()?;
    if let Some((_, mode)) = interruption {
        drop(upstream);
        if mode == InterruptMode::StallUntilRelease {
            let mut st = shared.state();
            let generation = st.release_generation;
            st.stalled += 1;
            while st.release_generation == generation && !shared.stop.load(Ordering::SeqCst) {
                st = shared
                    .changed
                    .wait_timeout(st, Duration::from_millis(200))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            st.stalled -= 1;
        }
        // Close without the rest: the client sees a body shorter than its Content-Length.
        let _ = out.shutdown(Shutdown::Both);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_is_found_in_every_kind_of_path() {
        assert_eq!(
            repository_of("/v2/polis/app/manifests/v1").as_deref(),
            Some("polis/app")
        );
        assert_eq!(repository_of("/v2/a/blobs/sha256:00").as_deref(), Some("a"));
        assert_eq!(
            repository_of("/v2/a/b/blobs/uploads/").as_deref(),
            Some("a/b")
        );
        assert_eq!(repository_of("/v2/a/tags/list").as_deref(), Some("a"));
        assert_eq!(repository_of("/v2/"), None);
        assert_eq!(repository_of("/v2/_catalog"), None);
    }

    #[test]
    fn scopes_grant_only_their_repository_and_actions() {
        let s = vec!["repository:polis/app:pull".to_string()];
        assert!(scopes_allow(&s, "polis/app", "pull"));
        assert!(!scopes_allow(&s, "polis/app", "push"));
        assert!(!scopes_allow(&s, "polis/other", "pull"));
        let s = vec!["repository:x:pull,push".to_string()];
        assert!(scopes_allow(&s, "x", "push"));
    }

    #[test]
    fn query_parameters_are_decoded() {
        let p = query_params("service=polis-test&scope=repository%3Apolis%2Fapp%3Apull&scope=a+b");
        assert_eq!(p[1], ("scope".into(), "repository:polis/app:pull".into()));
        assert_eq!(p[2].1, "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn chunked_bodies_relay_and_decode() {
        let body = b"4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\nTrailer: 1\r\n\r\nNEXT";
        let mut r = BufReader::new(&body[..]);
        let mut relayed = Vec::new();
        relay_chunked(&mut r, &mut relayed).unwrap();
        assert_eq!(relayed, &body[..body.len() - 4]);
        let mut r = BufReader::new(&body[..]);
        assert_eq!(read_chunked(&mut r).unwrap(), b"Wikipedia");
    }
}
