//! The resolver daemon (`polis-netplug dns-serve`): answers A/AAAA for a network's registered names on the
//! gateway addresses, port 53 (UDP and TCP), and forwards every other query to the upstream resolvers.
//!
//! It keeps no state of its own: the names are the records under `<dataDir>/<network>/dns/`, read again when the
//! directory changes. It exits when its pid file no longer names it (the network was torn down, or the data
//! directory removed), so a daemon is never left serving a network that is gone.

use super::message::{self, ParseError, Query};
use super::{NameRecord, records_dir};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// TTL of the answers: short, since containers come and go.
const TTL: u32 = 10;
/// How long one upstream may take to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Forwarded queries in flight at once; more are answered SERVFAIL.
const MAX_IN_FLIGHT: usize = 128;

/// What the daemon is told on its command line.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub network: String,
    pub data_dir: PathBuf,
    pub listen: Vec<IpAddr>,
    pub port: u16,
    pub upstreams: Vec<SocketAddr>,
}

impl ServeOptions {
    /// `--network N --data-dir D --listen IP... [--port P] [--upstream ADDR...]`.
    pub fn parse(args: &[String]) -> Result<ServeOptions, String> {
        let mut network = None;
        let mut data_dir = None;
        let mut listen = Vec::new();
        let mut port = 53;
        let mut upstreams = Vec::new();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--network" => network = Some(value()?),
                "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
                "--listen" => {
                    let v = value()?;
                    listen.push(
                        v.parse()
                            .map_err(|_| format!("--listen {v:?}: not an IP address"))?,
                    );
                }
                "--port" => {
                    let v = value()?;
                    port = v.parse().map_err(|_| format!("--port {v:?}: not a port"))?;
                }
                "--upstream" => {
                    let v = value()?;
                    upstreams.push(
                        super::parse_upstream(&v)
                            .ok_or_else(|| format!("--upstream {v:?}: not an address"))?,
                    );
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let network = network.ok_or("--network is required")?;
        let data_dir = data_dir.ok_or("--data-dir is required")?;
        if listen.is_empty() {
            return Err("at least one --listen address is required".into());
        }
        if upstreams.is_empty() {
            upstreams = super::resolv_conf_upstreams(Path::new("/etc/resolv.conf"));
        }
        // Forwarding to ourselves would loop.
        upstreams.retain(|u| !(listen.contains(&u.ip()) && u.port() == port));
        Ok(ServeOptions {
            network,
            data_dir,
            listen,
            port,
            upstreams,
        })
    }
}

/// The registered names, re-read when the records directory changes.
struct Names {
    dir: PathBuf,
    domain: String,
    cache: Mutex<(Option<SystemTime>, SystemTime, Vec<NameRecord>)>,
}

/// What the resolver does with a question.
#[derive(Debug, PartialEq)]
enum Decision {
    Answer(u8, Vec<IpAddr>),
    Forward,
}

impl Names {
    fn records(&self) -> Vec<NameRecord> {
        let mtime = std::fs::metadata(&self.dir).and_then(|m| m.modified()).ok();
        let now = SystemTime::now();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        // The directory's mtime has a coarse clock: trust the cache only when it was loaded a while after the
        // last change.
        let settled = mtime.is_some_and(|m| {
            cache
                .1
                .duration_since(m)
                .is_ok_and(|d| d > Duration::from_secs(1))
        });
        if cache.0 != mtime || !settled {
            *cache = (mtime, now, super::read_records(&self.dir));
        }
        cache.2.clone()
    }

    fn decide(&self, name: &str, qtype: u16, qclass: u16) -> Decision {
        if qclass != message::CLASS_IN && qclass != message::CLASS_ANY {
            return Decision::Forward;
        }
        let name = name.to_ascii_lowercase();
        let name = name.strip_suffix('.').unwrap_or(&name);
        let (base, in_domain) = if name == self.domain {
            ("", true)
        } else {
            match name.strip_suffix(&self.domain) {
                Some(b) if b.ends_with('.') => (&b[..b.len() - 1], true),
                _ => (name, false),
            }
        };
        if in_domain && base.is_empty() {
            return Decision::Answer(message::RCODE_NOERROR, Vec::new());
        }
        let records = self.records();
        let found: Vec<&NameRecord> = records
            .iter()
            .filter(|r| r.names.iter().any(|n| n.eq_ignore_ascii_case(base)))
            .collect();
        if found.is_empty() {
            return if in_domain {
                Decision::Answer(message::RCODE_NXDOMAIN, Vec::new())
            } else {
                Decision::Forward
            };
        }
        let mut addresses: Vec<IpAddr> = found
            .iter()
            .flat_map(|r| r.addresses.iter().copied())
            .filter(|a| match qtype {
                message::TYPE_A => a.is_ipv4(),
                message::TYPE_AAAA => a.is_ipv6(),
                message::TYPE_ANY => true,
                _ => false,
            })
            .collect();
        addresses.sort();
        addresses.dedup();
        Decision::Answer(message::RCODE_NOERROR, addresses)
    }
}

struct Resolver {
    names: Names,
    upstreams: Vec<SocketAddr>,
    in_flight: AtomicUsize,
}

/// What to do with one message received.
enum Handling {
    Reply(Vec<u8>),
    Forward(Query),
    Drop,
}

impl Resolver {
    fn handle(&self, packet: &[u8]) -> Handling {
        match message::parse_query(packet) {
            Err(ParseError::TooShort) => Handling::Drop,
            // A response sent to us: never answer it (two resolvers would bounce it forever).
            Err(ParseError::Malformed { flags, .. }) if flags & 0x8000 != 0 => Handling::Drop,
            Err(ParseError::Malformed { id, flags }) => {
                Handling::Reply(message::error_response(id, flags, message::RCODE_FORMERR))
            }
            Err(ParseError::NotImplemented { id, flags }) => {
                Handling::Reply(message::error_response(id, flags, message::RCODE_NOTIMP))
            }
            Ok(query) => {
                let q = &query.question;
                match self.names.decide(&q.name(), q.qtype, q.qclass) {
                    Decision::Answer(rcode, addrs) => {
                        Handling::Reply(message::response(&query, rcode, true, &addrs, TTL))
                    }
                    Decision::Forward => Handling::Forward(query),
                }
            }
        }
    }

    fn servfail(query: &Query) -> Vec<u8> {
        message::response(query, message::RCODE_SERVFAIL, false, &[], 0)
    }

    /// Asks each upstream in turn over UDP; the first answer with the query's ID is relayed.
    fn forward_udp(&self, query: &Query, packet: &[u8]) -> Vec<u8> {
        for up in &self.upstreams {
            let bind: SocketAddr = if up.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let Ok(sock) = UdpSocket::bind(bind) else {
                continue;
            };
            if sock.connect(up).is_err()
                || sock.set_read_timeout(Some(UPSTREAM_TIMEOUT)).is_err()
                || sock.send(packet).is_err()
            {
                continue;
            }
            let mut buf = vec![0u8; 65535];
            let deadline = std::time::Instant::now() + UPSTREAM_TIMEOUT;
            while std::time::Instant::now() < deadline {
                match sock.recv(&mut buf) {
                    Ok(n) if message::message_id(&buf[..n]) == Some(query.id) => {
                        return buf[..n].to_vec();
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
        }
        Self::servfail(query)
    }

    /// Asks each upstream in turn over TCP (RFC 1035 4.2.2: a two-octet length before each message).
    fn forward_tcp(&self, query: &Query, packet: &[u8]) -> Vec<u8> {
        for up in &self.upstreams {
            let attempt = || -> std::io::Result<Vec<u8>> {
                let mut s = TcpStream::connect_timeout(up, UPSTREAM_TIMEOUT)?;
                s.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
                s.set_write_timeout(Some(UPSTREAM_TIMEOUT))?;
                write_framed(&mut s, packet)?;
                read_framed(&mut s)
            };
            if let Ok(answer) = attempt() {
                if message::message_id(&answer) == Some(query.id) {
                    return answer;
                }
            }
        }
        Self::servfail(query)
    }
}

fn write_framed(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    framed.extend_from_slice(msg);
    s.write_all(&framed)
}

fn read_framed(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut msg)?;
    Ok(msg)
}

fn serve_udp(resolver: Arc<Resolver>, sock: UdpSocket) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let packet = buf[..n].to_vec();
        match resolver.handle(&packet) {
            Handling::Reply(r) => {
                let _ = sock.send_to(&r, peer);
            }
            Handling::Drop => {}
            Handling::Forward(query) => {
                if resolver.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
                    resolver.in_flight.fetch_sub(1, Ordering::SeqCst);
                    let _ = sock.send_to(&Resolver::servfail(&query), peer);
                    continue;
                }
                let (resolver, sock) = (resolver.clone(), sock.clone());
                std::thread::spawn(move || {
                    let answer = resolver.forward_udp(&query, &packet);
                    let _ = sock.send_to(&answer, peer);
                    resolver.in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    }
}

fn serve_tcp_connection(resolver: &Resolver, mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    while let Ok(packet) = read_framed(&mut s) {
        let answer = match resolver.handle(&packet) {
            Handling::Reply(r) => r,
            Handling::Drop => return,
            Handling::Forward(query) => resolver.forward_tcp(&query, &packet),
        };
        if write_framed(&mut s, &answer).is_err() {
            return;
        }
    }
}

fn serve_tcp(resolver: Arc<Resolver>, listener: TcpListener) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else {
            // Out of descriptors, say: do not spin.
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        if resolver.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
            resolver.in_flight.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let resolver = resolver.clone();
        std::thread::spawn(move || {
            serve_tcp_connection(&resolver, conn);
            resolver.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Binds UDP and TCP on `addr`. IP_FREEBIND: an IPv6 gateway address is still tentative (DAD) just after the
/// bridge got it.
fn bind_host_sockets(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let make = |ty: Type, proto: Protocol| -> std::io::Result<Socket> {
        let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
            s.set_freebind_ipv6(true)?;
        } else {
            s.set_freebind(true)?;
        }
        // TCP only (connections of a previous daemon in TIME_WAIT); on UDP it would let two daemons share the port.
        if ty == Type::STREAM {
            s.set_reuse_address(true)?;
        }
        s.bind(&addr.into())?;
        Ok(s)
    };
    let udp = make(Type::DGRAM, Protocol::UDP)?;
    let tcp = make(Type::STREAM, Protocol::TCP)?;
    tcp.listen(128)?;
    Ok((udp.into(), tcp.into()))
}

/// Whether `pid_file` still names this process.
fn still_wanted(pid_file: &Path) -> bool {
    std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        == Some(std::process::id())
}

/// The daemon's main: binds, prints "ready" on stdout (the ADD that started it waits for that line), then
/// serves until its pid file no longer names it. Returns the exit code.
pub fn serve_host_resolver(opts: ServeOptions) -> i32 {
    let mut sockets = Vec::new();
    for ip in &opts.listen {
        let addr = SocketAddr::new(*ip, opts.port);
        match bind_host_sockets(addr) {
            Ok(s) => sockets.push(s),
            Err(e) => {
                println!("error: binding {addr}: {e}");
                return 1;
            }
        }
    }
    let resolver = Arc::new(Resolver {
        names: Names {
            dir: records_dir(&opts.data_dir, &opts.network),
            domain: opts.network.to_ascii_lowercase(),
            cache: Mutex::new((None, SystemTime::UNIX_EPOCH, Vec::new())),
        },
        upstreams: opts.upstreams.clone(),
        in_flight: AtomicUsize::new(0),
    });
    tracing::info!(network = %opts.network, listen = ?opts.listen, upstreams = ?opts.upstreams, "dns resolver started");
    for (udp, tcp) in sockets {
        let r = resolver.clone();
        std::thread::spawn(move || serve_udp(r, udp));
        let r = resolver.clone();
        std::thread::spawn(move || serve_tcp(r, tcp));
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    // Nothing more goes to the pipe the starting ADD reads: let it see end of file.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1);
    }
    let pid_file = super::pid_path(&opts.data_dir, &opts.network);
    // The ADD that started us writes the pid file after reading "ready": give it time.
    std::thread::sleep(Duration::from_secs(2));
    loop {
        if !still_wanted(&pid_file) {
            tracing::info!(network = %opts.network, "dns resolver no longer wanted; exiting");
            return 0;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(records: &[(&[&str], &[&str])]) -> (tempfile::TempDir, Names) {
        let dir = tempfile::tempdir().unwrap();
        for (i, (n, a)) in records.iter().enumerate() {
            super::super::write_record(
                dir.path(),
                &NameRecord {
                    container_id: format!("c{i}"),
                    ifname: "eth0".into(),
                    names: n.iter().map(|s| s.to_string()).collect(),
                    addresses: a.iter().map(|s| s.parse().unwrap()).collect(),
                },
            )
            .unwrap();
        }
        let names = Names {
            dir: dir.path().to_path_buf(),
            domain: "net1".into(),
            cache: Mutex::new((None, SystemTime::UNIX_EPOCH, Vec::new())),
        };
        (dir, names)
    }

    #[test]
    fn answers_registered_names_and_forwards_others() {
        let (_d, n) = names(&[
            (&["web", "www"], &["198.18.0.2", "fd00::2"]),
            (&["db"], &["198.18.0.3"]),
        ]);
        let v4: IpAddr = "198.18.0.2".parse().unwrap();
        let v6: IpAddr = "fd00::2".parse().unwrap();
        let ok = message::RCODE_NOERROR;
        assert_eq!(
            n.decide("web", message::TYPE_A, 1),
            Decision::Answer(ok, vec![v4])
        );
        assert_eq!(
            n.decide("www.net1", message::TYPE_AAAA, 1),
            Decision::Answer(ok, vec![v6])
        );
        assert_eq!(
            n.decide("WEB.NET1", message::TYPE_A, 1),
            Decision::Answer(ok, vec![v4])
        );
        // A name without the asked type: no data, not "no such name".
        assert_eq!(
            n.decide("db", message::TYPE_AAAA, 1),
            Decision::Answer(ok, vec![])
        );
        assert_eq!(
            n.decide("ghost.net1", message::TYPE_A, 1),
            Decision::Answer(message::RCODE_NXDOMAIN, vec![])
        );
        assert_eq!(n.decide("ghost", message::TYPE_A, 1), Decision::Forward);
        assert_eq!(
            n.decide("example.com", message::TYPE_A, 1),
            Decision::Forward
        );
        assert_eq!(n.decide("web.other", message::TYPE_A, 1), Decision::Forward);
    }

    #[test]
    fn sees_new_records() {
        let (d, n) = names(&[(&["web"], &["198.18.0.2"])]);
        assert_eq!(n.decide("db", message::TYPE_A, 1), Decision::Forward);
        super::super::write_record(
            d.path(),
            &NameRecord {
                container_id: "x".into(),
                ifname: "eth0".into(),
                names: vec!["db".into()],
                addresses: vec!["198.18.0.9".parse().unwrap()],
            },
        )
        .unwrap();
        assert_eq!(
            n.decide("db", message::TYPE_A, 1),
            Decision::Answer(0, vec!["198.18.0.9".parse().unwrap()])
        );
    }

    #[test]
    fn options_skip_upstreams_that_are_ourselves() {
        let args: Vec<String> = [
            "--network",
            "n",
            "--data-dir",
            "/tmp/x",
            "--listen",
            "198.18.0.1",
            "--upstream",
            "198.18.0.1",
            "--upstream",
            "127.0.0.1:5353",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = ServeOptions::parse(&args).unwrap();
        assert_eq!(o.upstreams, vec!["127.0.0.1:5353".parse().unwrap()]);
        assert!(ServeOptions::parse(&args[..4]).is_err());
    }
}
