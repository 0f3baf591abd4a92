//! Test scaffolding: throw-away network namespaces, so no test touches the machine's own interfaces. Each test
//! runs its "host" side inside one of these as well. Needs root (CI runs as root).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use super::{Link, Netlink, in_netns};
use crate::error::Result;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A new, empty network namespace, bind-mounted on a file of its own (as `ip netns add` does under /run/netns);
/// unmounted, and so destroyed with every link in it, on drop, a failed test included.
pub(crate) struct TestNetns {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestNetns {
    pub(crate) fn new() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = tempfile::Builder::new()
            .prefix(&format!("polis-link-test-{}-{n}-", std::process::id()))
            .tempdir()
            .expect("create a directory for a test network namespace");
        let path = dir.path().join("netns");
        File::create(&path).expect("create the netns mount point");
        let target = path.clone();
        std::thread::spawn(move || {
            // A thread may unshare its network namespace on its own; it ends right after, and the mount keeps the
            // namespace alive.
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): tests need root");
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .expect("bind-mount the new network namespace");
        })
        .join()
        .expect("create a test network namespace");
        TestNetns { path, _dir: dir }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` with a netlink socket inside this namespace; a failure fails the test.
    pub(crate) fn run<T: Send>(&self, work: impl FnOnce(&mut Netlink) -> Result<T> + Send) -> T {
        in_netns(&self.path, || work(&mut Netlink::open()?))
            .unwrap_or_else(|e| panic!("in {}: {e}", self.path.display()))
    }

    /// A TCP listener on `ip` (any port) that belongs to this namespace.
    pub(crate) fn listen(&self, ip: IpAddr) -> TcpListener {
        in_netns(&self.path, || {
            TcpListener::bind(SocketAddr::new(ip, 0))
                .map_err(crate::error::io("listen", format!("{ip}")))
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Connects from this namespace to `listener` (in another one) and checks that the bytes arrive, and that the
    /// listener sees the connection coming from `from`.
    pub(crate) fn assert_connects(&self, listener: &TcpListener, from: IpAddr) {
        let target = listener.local_addr().unwrap();
        let mut stream = in_netns(&self.path, || {
            TcpStream::connect_timeout(&target, Duration::from_secs(3))
                .map_err(crate::error::io("connect", format!("{target}")))
        })
        .unwrap_or_else(|e| panic!("from {}: {e}", self.path.display()));
        stream.write_all(b"polis").unwrap();
        let (mut accepted, peer) = listener.accept().unwrap();
        assert_eq!(
            peer.ip(),
            from,
            "the connection to {target} came from {peer}"
        );
        let mut received = [0u8; 5];
        accepted.read_exact(&mut received).unwrap();
        assert_eq!(&received, b"polis");
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
    }
}

pub(crate) fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

pub(crate) fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A veth pair with both ends in the socket's namespace: a stand-in for a dummy device (this kernel has no
/// dummy driver). Returns the first end.
pub(crate) fn create_local_veth(netlink: &mut Netlink, name: &str, peer: &str) -> Result<Link> {
    let mut peer_message = LinkMessage::default();
    peer_message
        .attributes
        .push(LinkAttribute::IfName(peer.to_string()));
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
    ]));
    netlink
        .request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map_err(|e| e.into_error("create veth pair", name))?;
    let peer = netlink.require_link(peer)?;
    netlink.set_link_up(&peer)?;
    netlink.require_link(name)
}
