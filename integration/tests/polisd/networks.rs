//! Docker networks as users meet them through the docker CLI: internal networks, names after `docker rename`, and
//! names on every network of a container connected to several. Each test drives its own polisd (in a network
//! namespace of its own, so its bridges, firewall and resolvers are private) and looks at what a user sees: pings and
//! name lookups from inside containers, and from the host and a machine outside it.

use super::{assert_nothing_left, run_detached};
use polis_integration::polisd::{IMAGE, Polisd};
use polis_integration::{NetNs, Output, eventually};
use std::process::Command;
use std::time::Duration;

/// How long a network change may take to show (a loaded 2-core machine included).
const SETTLE: Duration = Duration::from_secs(20);

/// `docker exec FROM busybox ping -c1 -W2 TARGET`: whether an echo came back (the image links busybox's applets
/// only in part, so they run through `busybox`).
fn pings(d: &Polisd, from: &str, target: &str) -> bool {
    d.docker(&["exec", from, "busybox", "ping", "-c1", "-W2", target])
        .success()
}

/// Waits until container `from` pings `target`.
#[track_caller]
fn wait_until_pings(d: &Polisd, from: &str, target: &str) {
    eventually(&format!("{from} pings {target}"), SETTLE, || {
        pings(d, from, target)
    });
}

/// Container `from` does not reach `target` (one echo request, two seconds for the answer).
#[track_caller]
fn assert_no_ping(d: &Polisd, from: &str, target: &str, why: &str) {
    let out = d.docker(&["exec", from, "busybox", "ping", "-c1", "-W2", target]);
    assert!(
        !out.success(),
        "{from} should not reach {target} ({why}): {out}"
    );
}

/// The addresses `busybox nslookup NAME` finds in container `from`: the `Address` lines after the answer's `Name:`
/// line (those before it name the server); none when the name does not resolve.
fn lookup(d: &Polisd, from: &str, name: &str) -> Vec<String> {
    let out = d.docker(&["exec", from, "busybox", "nslookup", name]);
    addresses_in(&out)
}

fn addresses_in(out: &Output) -> Vec<String> {
    let mut answered = false;
    let mut found = Vec::new();
    for line in out.stdout.lines().map(str::trim) {
        if line.starts_with("Name:") {
            answered = true;
        } else if answered && let Some(a) = line.strip_prefix("Address:") {
            found.push(a.trim().to_string());
        }
    }
    found
}

/// Waits until `name` resolves in container `from` to exactly `address`.
#[track_caller]
fn wait_until_resolves(d: &Polisd, from: &str, name: &str, address: &str) {
    eventually(
        &format!("{name} resolves to {address} in {from}"),
        SETTLE,
        || lookup(d, from, name) == [address],
    );
}

/// Waits until `name` no longer resolves in container `from`.
#[track_caller]
fn wait_until_unknown(d: &Polisd, from: &str, name: &str) {
    eventually(
        &format!("{name} does not resolve in {from}"),
        SETTLE,
        || lookup(d, from, name).is_empty(),
    );
}

/// A container's address on a network.
#[track_caller]
fn address_on(d: &Polisd, container: &str, network: &str) -> String {
    let ip = d.inspect(
        container,
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
    );
    assert!(!ip.is_empty(), "{container} has no address on {network}");
    ip
}

/// `ip ARGS`, which must succeed.
#[track_caller]
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A machine outside polisd's host: a network namespace of its own, linked to polisd's by a veth pair
/// (198.18.93.1 on polisd's side, 198.18.93.2 here), with its default route through polisd's namespace, so it
/// reaches every container subnet as a machine on the host's LAN would. Its namespace (and the pair with it) goes
/// when it is dropped, also when a test fails.
struct Outside {
    ns: NetNs,
}

impl Outside {
    const ADDRESS: &str = "198.18.93.2";

    fn new(d: &Polisd) -> Outside {
        let ns = NetNs::new("pd-outside");
        let host = d.netns().name.as_str();
        ip(&[
            "-n", host, "link", "add", "pd-out", "type", "veth", "peer", "name", "pd-in", "netns",
            &ns.name,
        ]);
        ip(&["-n", host, "addr", "add", "198.18.93.1/30", "dev", "pd-out"]);
        ip(&["-n", host, "link", "set", "pd-out", "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            "198.18.93.2/30",
            "dev",
            "pd-in",
        ]);
        ip(&["-n", &ns.name, "link", "set", "pd-in", "up"]);
        ip(&[
            "-n",
            &ns.name,
            "route",
            "add",
            "default",
            "via",
            "198.18.93.1",
        ]);
        Outside { ns }
    }

    /// Whether an echo request from outside to `target` is answered.
    fn pings(&self, target: &str) -> bool {
        self.ns
            .command("busybox")
            .args(["ping", "-c1", "-W2", target])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

/// How many ICMP echo requests reached container `name` (`InEchos` of its network namespace's /proc/net/snmp):
/// what arrives, whether or not an answer gets back.
#[track_caller]
fn echo_requests_received(d: &Polisd, name: &str) -> u64 {
    let out = d.docker(&["exec", name, "cat", "/proc/net/snmp"]);
    out.ok();
    let icmp: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("Icmp:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let [names, values] = &icmp[..] else {
        panic!("no Icmp lines in /proc/net/snmp: {out}");
    };
    let at = names
        .iter()
        .position(|n| *n == "InEchos")
        .unwrap_or_else(|| panic!("no InEchos counter: {out}"));
    values[at].parse().unwrap()
}

/// Whether polisd's host pings `target` (from polisd's network namespace, its "host").
fn host_pings(d: &Polisd, target: &str) -> bool {
    d.netns()
        .command("busybox")
        .args(["ping", "-c1", "-W2", target])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `nft list set inet polis internal` in polisd's namespace: the bridges of internal networks.
fn internal_set(d: &Polisd) -> String {
    let out = d
        .netns()
        .command("nft")
        .args(["list", "set", "inet", "polis", "internal"])
        .output()
        .expect("run nft");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Processes of polisd's name resolvers (polis-netplug's `dns-serve`, one per user network with containers and
/// one per container on several user networks).
fn resolvers(d: &Polisd) -> Vec<i32> {
    d.shim_processes()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("dns-serve"))
        })
        .collect()
}

/// Removes the containers and networks by name (`docker rm -f`, `docker network rm`), which must succeed; then
/// nothing of them may be left, no resolver either.
#[track_caller]
fn remove_all(d: &Polisd, containers: &[&str], networks: &[&str]) {
    let mut rm = vec!["rm", "-f"];
    rm.extend_from_slice(containers);
    d.docker(&rm).ok();
    let mut rm = vec!["network", "rm"];
    rm.extend_from_slice(networks);
    d.docker(&rm).ok();
    eventually("no name resolver is left", SETTLE, || {
        resolvers(d).is_empty()
    });
    assert_nothing_left(d);
}

/// `docker network create --internal` ("Network internal mode (--internal)" in the docker network create
/// reference): "Containers on an internal network may communicate between each other, but not with any other
/// network, as no default route is configured and firewall rules are set up to drop all traffic to or from other
/// networks. Communication with the gateway IP address (and thus appropriately configured host services) is
/// possible, and the host may communicate with any container IP directly." So: two containers of an internal
/// network ping each other by name and the gateway; they have no default route and reach neither the default
/// bridge's gateway nor a container of another network nor a machine outside; nothing from outside or from
/// another network reaches them, while the host does. A container that adds a default route itself
/// (CAP_NET_ADMIN) still gets nothing out, and an echo request from outside does not even arrive in it: the
/// firewall drops both ways, also after the ruleset was flushed and the next container started. `docker network
/// inspect` says Internal; the firewall's mark of the bridge goes with the network.
#[test]
fn internal_network_reaches_only_its_own_members() {
    let d = Polisd::start("pd-internal");
    d.pull();
    d.docker(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "198.18.91.0/24",
        "-o",
        "com.docker.network.bridge.name=br-inside",
        "inside",
    ])
    .ok();
    d.docker(&["network", "create", "--subnet", "198.18.92.0/24", "open"])
        .ok();
    assert_eq!(d.inspect("inside", "{{.Internal}}"), "true");
    assert_eq!(d.inspect("open", "{{.Internal}}"), "false");
    for (name, network) in [
        ("ina", "inside"),
        ("inb", "inside"),
        ("openc", "open"),
        ("dflt", "bridge"),
    ] {
        run_detached(
            &d,
            &["--name", name, "--network", network, IMAGE, "sleep", "300"],
        );
    }
    run_detached(
        &d,
        &[
            "--name",
            "inf",
            "--cap-add",
            "NET_ADMIN",
            "--network",
            "inside",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    let outside = Outside::new(&d);
    let a_ip = address_on(&d, "ina", "inside");
    let c_ip = address_on(&d, "openc", "open");
    let e_ip = address_on(&d, "dflt", "bridge");
    let bridge_gateway = d.inspect("bridge", "{{(index .IPAM.Config 0).Gateway}}");
    assert!(
        !bridge_gateway.is_empty(),
        "the default bridge has a gateway"
    );

    // Inside the internal network: names, peers and the gateway.
    wait_until_pings(&d, "ina", "inb");
    wait_until_pings(&d, "inb", "ina");
    wait_until_pings(&d, "ina", "198.18.91.1");
    // The controls: the other network reaches outside and is reached from there, the host reaches everything.
    wait_until_pings(&d, "openc", Outside::ADDRESS);
    assert!(outside.pings(&c_ip), "outside should reach {c_ip} (openc)");
    assert!(host_pings(&d, &a_ip), "the host should reach {a_ip} (ina)");

    let routes = d.docker(&["exec", "ina", "busybox", "ip", "route"]);
    routes.ok();
    assert!(
        !routes.stdout.contains("default"),
        "a container of an internal network has no default route: {routes}"
    );
    assert_no_ping(&d, "ina", &bridge_gateway, "the default bridge's gateway");
    assert_no_ping(&d, "ina", &c_ip, "a container of another network");
    assert_no_ping(&d, "ina", &e_ip, "a container of the default bridge");
    assert_no_ping(&d, "ina", Outside::ADDRESS, "a machine outside");
    assert_no_ping(
        &d,
        "openc",
        &a_ip,
        "from another network into the internal one",
    );
    assert_no_ping(
        &d,
        "dflt",
        &a_ip,
        "from the default bridge into the internal one",
    );
    assert!(
        !outside.pings(&a_ip),
        "a machine outside should not reach {a_ip} (ina)"
    );

    // A default route of the container's own does not get it out: the firewall drops what leaves the bridge.
    d.docker(&[
        "exec",
        "inf",
        "busybox",
        "ip",
        "route",
        "add",
        "default",
        "via",
        "198.18.91.1",
    ])
    .ok();
    wait_until_pings(&d, "inf", "ina");
    // From outside, an echo request does not even arrive (while the host's do).
    let f_ip = address_on(&d, "inf", "inside");
    let before = echo_requests_received(&d, "inf");
    assert!(
        !outside.pings(&f_ip),
        "a machine outside should not reach {f_ip} (inf)"
    );
    assert_eq!(
        echo_requests_received(&d, "inf"),
        before,
        "an echo request from outside should be dropped before it reaches inf"
    );
    assert!(host_pings(&d, &f_ip), "the host should reach {f_ip} (inf)");
    assert!(
        echo_requests_received(&d, "inf") > before,
        "the host's echo requests reach inf"
    );
    assert_no_ping(
        &d,
        "inf",
        Outside::ADDRESS,
        "a machine outside, with a default route",
    );
    assert_no_ping(
        &d,
        "inf",
        &c_ip,
        "a container of another network, with a default route",
    );

    assert!(
        internal_set(&d).contains("\"br-inside\""),
        "the internal network's bridge should be marked in the firewall: {}",
        internal_set(&d)
    );
    // The ruleset flushed (a firewall reload, say): the next container start, on any network, puts the rules and
    // the mark back.
    let flushed = d
        .netns()
        .command("nft")
        .args(["flush", "ruleset"])
        .status()
        .expect("run nft");
    assert!(flushed.success(), "nft flush ruleset");
    run_detached(
        &d,
        &[
            "--name",
            "later",
            "--network",
            "open",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    assert!(
        internal_set(&d).contains("\"br-inside\""),
        "the mark should be back after the next start: {}",
        internal_set(&d)
    );
    let before = echo_requests_received(&d, "inf");
    assert!(
        !outside.pings(&f_ip),
        "a machine outside should not reach {f_ip} (inf) after the flush"
    );
    assert_eq!(
        echo_requests_received(&d, "inf"),
        before,
        "after the flush too, an echo request from outside should not reach inf"
    );
    wait_until_pings(&d, "later", Outside::ADDRESS);

    remove_all(
        &d,
        &["ina", "inb", "openc", "dflt", "inf", "later"],
        &["inside", "open"],
    );
    assert!(
        !internal_set(&d).contains("br-inside"),
        "the removed network's mark should be gone: {}",
        internal_set(&d)
    );
}

/// `docker rename` (`POST /containers/{id}/rename`) of a running container on user networks. Docker's embedded DNS
/// server ("Embedded DNS server in user-defined networks"): "Container name configured using --name is used to
/// discover a container within an user-defined docker network. The embedded DNS server maintains the mapping
/// between the container name and its IP address (on the network the container is connected to)"; dockerd renames
/// a running container's endpoints in it at once (daemon/rename.go renames the sandbox). So right after the rename,
/// containers on each of its networks (and one on both, with a resolver of its own) resolve the new name, and no
/// longer the old one; an alias stays.
#[test]
fn rename_renames_the_dns_name_at_once() {
    let d = Polisd::start("pd-rename-dns");
    d.pull();
    d.docker(&["network", "create", "--subnet", "198.18.94.0/24", "rn1"])
        .ok();
    d.docker(&["network", "create", "--subnet", "198.18.95.0/24", "rn2"])
        .ok();
    run_detached(
        &d,
        &[
            "--name",
            "before",
            "--network",
            "rn1",
            "--network-alias",
            "stays",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    d.docker(&["network", "connect", "rn2", "before"]).ok();
    for (name, network) in [("peer1", "rn1"), ("peer2", "rn2"), ("both", "rn1")] {
        run_detached(
            &d,
            &["--name", name, "--network", network, IMAGE, "sleep", "300"],
        );
    }
    d.docker(&["network", "connect", "rn2", "both"]).ok();
    let on1 = address_on(&d, "before", "rn1");
    let on2 = address_on(&d, "before", "rn2");
    wait_until_resolves(&d, "peer1", "before", &on1);
    wait_until_resolves(&d, "peer2", "before", &on2);
    wait_until_resolves(&d, "both", "before", &on1);

    d.docker(&["rename", "before", "after"]).ok();
    for (peer, address) in [("peer1", &on1), ("peer2", &on2), ("both", &on1)] {
        wait_until_resolves(&d, peer, "after", address);
        wait_until_unknown(&d, peer, "before");
    }
    wait_until_pings(&d, "peer1", "after");
    wait_until_pings(&d, "peer2", "after");
    assert_eq!(
        lookup(&d, "peer1", "stays"),
        std::slice::from_ref(&on1),
        "the alias stays"
    );
    remove_all(&d, &["after", "peer1", "peer2", "both"], &["rn1", "rn2"]);
}

/// A container on several user networks resolves the names and aliases of every one of them, and no network's
/// names it is not on, as with Docker's embedded DNS server ("Embedded DNS server in user-defined networks": it
/// maps container names "on the network the container is connected to", and `--network-alias` / `docker network
/// connect --alias` names "in a specific user-defined network"; "a container can have different aliases in
/// different networks"). `NAME.NETWORK` resolves too. That holds for a container started on two networks, for one
/// that connects to a second network while it runs (at once) and stops resolving its names when it disconnects,
/// and for containers that start on its networks later, also after polisd crashed and came back (the container
/// and its resolver outlive polisd).
#[test]
fn names_resolve_on_every_network_of_a_container() {
    let mut d = Polisd::start("pd-multi-dns");
    d.pull();
    d.docker(&["network", "create", "--subnet", "198.18.96.0/24", "m1"])
        .ok();
    d.docker(&["network", "create", "--subnet", "198.18.97.0/24", "m2"])
        .ok();
    run_detached(
        &d,
        &["--name", "one", "--network", "m1", IMAGE, "sleep", "300"],
    );
    run_detached(
        &d,
        &[
            "--name",
            "two",
            "--network",
            "m2",
            "--network-alias",
            "zed",
            IMAGE,
            "sleep",
            "300",
        ],
    );
    d.docker(&[
        "create",
        "--name",
        "multi",
        "--network",
        "m1",
        IMAGE,
        "sleep",
        "300",
    ])
    .ok();
    d.docker(&["network", "connect", "--alias", "ex", "m2", "multi"])
        .ok();
    d.docker(&["start", "multi"]).ok();
    let y_ip = address_on(&d, "one", "m1");
    let z_ip = address_on(&d, "two", "m2");

    // Started on both networks: the names of each.
    wait_until_pings(&d, "multi", "one");
    wait_until_pings(&d, "multi", "two");
    wait_until_pings(&d, "multi", "zed");
    assert_eq!(lookup(&d, "multi", "two.m2"), std::slice::from_ref(&z_ip));
    assert_eq!(lookup(&d, "multi", "one.m1"), std::slice::from_ref(&y_ip));
    // Its own names on each network, for each network's containers.
    wait_until_pings(&d, "one", "multi");
    wait_until_pings(&d, "two", "multi");
    wait_until_pings(&d, "two", "ex");
    // A network's names stay on it.
    assert!(
        lookup(&d, "one", "two").is_empty(),
        "one (on m1 only) should not resolve two (on m2 only)"
    );
    assert!(
        lookup(&d, "one", "ex").is_empty(),
        "multi's alias on m2 should not resolve on m1"
    );

    // Connected while it runs: at once; disconnected: the other network's names go.
    run_detached(
        &d,
        &["--name", "mover", "--network", "m1", IMAGE, "sleep", "300"],
    );
    wait_until_pings(&d, "mover", "one");
    assert!(
        lookup(&d, "mover", "two").is_empty(),
        "mover is not on m2 yet"
    );
    d.docker(&["network", "connect", "m2", "mover"]).ok();
    wait_until_resolves(&d, "mover", "two", &z_ip);
    wait_until_pings(&d, "mover", "zed");
    wait_until_pings(&d, "mover", "one");
    d.docker(&["network", "disconnect", "m2", "mover"]).ok();
    wait_until_unknown(&d, "mover", "two");
    wait_until_pings(&d, "mover", "one");

    // A container that starts later on one of the networks is known at once; one that stops, no more.
    run_detached(
        &d,
        &["--name", "late", "--network", "m2", IMAGE, "sleep", "300"],
    );
    let late_ip = address_on(&d, "late", "m2");
    wait_until_resolves(&d, "multi", "late", &late_ip);
    d.docker(&["rm", "-f", "late"]).ok();
    wait_until_unknown(&d, "multi", "late");

    // polisd crashes and comes back: the container's resolver lives on with it, and learns new names again.
    d.kill_daemon();
    d.start_daemon();
    assert_eq!(lookup(&d, "multi", "two"), std::slice::from_ref(&z_ip));
    run_detached(
        &d,
        &["--name", "later", "--network", "m2", IMAGE, "sleep", "300"],
    );
    let later_ip = address_on(&d, "later", "m2");
    wait_until_resolves(&d, "multi", "later", &later_ip);

    remove_all(
        &d,
        &["multi", "one", "two", "mover", "later"],
        &["m1", "m2"],
    );
}
