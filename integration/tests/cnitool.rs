//! polis-cnitool as a person or a test uses it, libcni's `cnitool` for Polis (CNI spec 1.1.0, "Section 3:
//! Execution of Network Configurations" and "Network configuration lists"): it finds a network by name in a conf
//! dir, runs the list's plugins from CNI_PATH (by default Debian's /usr/lib/cni and its own directory, where
//! polis-netplug is), chains their results and caches ADD's result as libcni does.
//!
//! Everything happens in network namespaces the test makes: a private "host" namespace in which polis-cnitool
//! and the plugins run (bridge, veths, nftables and iptables live there) and one namespace per container;
//! subnets from 198.19.0.0/16 (inside 198.18.0.0/15, apart from the plugin tests' 198.18.0.0/16). Connectivity is
//! checked over TCP with busybox nc.

use polis_integration::containerd::tcp_round_trip;
use polis_integration::*;
use sha2::{Digest, Sha512};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);
/// Debian's reference plugins (containernetworking-plugins 1.1.1 speaks CNI up to 1.0.0).
const REFERENCE_PLUGINS: &str = "/usr/lib/cni";

fn cnitool_path() -> PathBuf {
    workspace_binary("POLIS_CNITOOL", "polis-cnitool")
}

/// A private host namespace where polis-cnitool runs, and a scratch dir with its conf dir (`net.d`), its result
/// cache (`cache`) and the plugins' data dirs.
struct Host {
    ns: NetNs,
    dir: tempfile::TempDir,
}

impl Host {
    fn new(tag: &str) -> Option<Host> {
        let tool = cnitool_path();
        if !tool.exists() {
            return missing_peer("polis-cnitool (cargo build --release -p polis-netplug)");
        }
        let netplug = tool.with_file_name("polis-netplug");
        if !netplug.exists() {
            return missing_peer("polis-netplug beside polis-cnitool");
        }
        for plugin in [
            "bridge",
            "host-local",
            "portmap",
            "tuning",
            "bandwidth",
            "loopback",
        ] {
            let path = Path::new(REFERENCE_PLUGINS).join(plugin);
            if !path.exists() {
                return missing_peer(&format!("{} (containernetworking-plugins)", path.display()));
            }
        }
        for tool in [
            "/usr/sbin/nft",
            "/usr/sbin/iptables",
            "/usr/sbin/tc",
            BUSYBOX,
        ] {
            if !Path::new(tool).exists() {
                return missing_peer(tool);
            }
        }
        let host = Host {
            ns: NetNs::new(tag),
            dir: temp_dir("polis-it-cnitool-"),
        };
        fs::create_dir(host.conf_dir()).unwrap();
        Some(host)
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn data_dir(&self, what: &str) -> String {
        self.dir.path().join(what).to_str().unwrap().to_string()
    }

    fn write_conf(&self, file: &str, conf: &Value) {
        fs::write(self.conf_dir().join(file), conf.to_string()).unwrap();
    }

    /// polis-netplug's configuration (a plugin of a list) for `bridge` and `subnet`, mapping ports.
    fn polis_plugin(&self, bridge: &str, subnet: &str) -> Value {
        json!({
            "type": "polis-netplug",
            "bridge": bridge,
            "ipMasq": true,
            "capabilities": {"portMappings": true, "ips": true},
            "ipam": {
                "type": "polis",
                "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.data_dir("ipam")
            }
        })
    }

    /// A list of polis-netplug alone, `network.conflist` in the conf dir.
    fn write_polis_list(&self, network: &str, version: &str, subnet: &str) {
        self.write_conf(
            &format!("{network}.conflist"),
            &json!({
                "cniVersion": version,
                "name": network,
                "plugins": [self.polis_plugin("polis0", subnet)]
            }),
        );
    }

    /// `polis-cnitool --conf-dir D --cache-dir C ARGS...` in the host namespace, with `env` and none of the
    /// caller's CNI variables (CNI_PATH is left to its default).
    fn cnitool_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = self.ns.command(cnitool_path().to_str().unwrap());
        cmd.arg("--conf-dir")
            .arg(self.conf_dir())
            .arg("--cache-dir")
            .arg(self.cache_dir())
            .args(args);
        for var in [
            "CNI_PATH",
            "NETCONFPATH",
            "CNI_CONTAINERID",
            "CNI_IFNAME",
            "CNI_ARGS",
            "CAP_ARGS",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_command(cmd, self.dir.path(), TIMEOUT)
    }

    fn cnitool(&self, args: &[&str]) -> Output {
        self.cnitool_env(args, &[])
    }

    fn sh(&self, script: &str) -> Output {
        in_ns(&self.ns, script, self.dir.path())
    }

    /// The files of the result cache (`<cache>/results`).
    fn cache_files(&self) -> Vec<String> {
        let mut files: Vec<String> = fs::read_dir(self.cache_dir().join("results"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// The addresses polis-netplug's IPAM holds for `network` (one file each).
    fn allocated(&self, network: &str) -> Vec<String> {
        let mut held: Vec<String> = fs::read_dir(self.dir.path().join("ipam").join(network))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        held.sort();
        held
    }

    /// The port mappings in polis-netplug's nftables map.
    fn mapped_ports(&self) -> String {
        self.sh("nft list map inet polis ports4")
            .ok()
            .stdout
            .clone()
    }
}

/// `sh -c script` inside `ns`.
fn in_ns(ns: &NetNs, script: &str, scratch: &Path) -> Output {
    let mut cmd = ns.command("sh");
    cmd.args(["-c", script]);
    run_command(cmd, scratch, TIMEOUT)
}

/// cnitool's container ID for a namespace: "cnitool-" and the first 20 hex digits of sha512(netns path).
fn cnitool_container_id(ns: &NetNs) -> String {
    let digest = Sha512::digest(format!("/run/netns/{}", ns.name).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("cnitool-{}", &hex[..20])
}

/// CNI spec "Network configuration lists" and "Adding an attachment": polis-cnitool runs a list of
/// [polis-netplug, Debian's tuning, Debian's bandwidth] in order, each given the previous result as prevResult,
/// and prints the last one; the loopback plugin runs as a network of its own (as container runtimes attach `lo`).
/// Every plugin's work is visible: eth0 with the address, tuning's MAC (also in the chained result) and sysctl,
/// bandwidth's qdiscs on the host veth (rates from CAP_ARGS, the `bandwidth` capability), `lo` up. The result is
/// cached under libcni's name (cnitool's container ID from the netns path). CHECK passes; DEL runs the list in
/// reverse and leaves nothing: no veth, no ifb, no address, no cache file.
#[test]
fn chained_list_runs_every_plugin_and_del_leaves_nothing() {
    let Some(host) = Host::new("cnt-chain") else {
        return;
    };
    let c = NetNs::new("cnt-chain-c");
    let mac = "02:42:c6:13:01:99";
    let mut polis = host.polis_plugin("cnt0", "198.19.1.0/24");
    polis.as_object_mut().unwrap().remove("capabilities");
    host.write_conf(
        "10-chain.conflist",
        &json!({
            "cniVersion": "1.0.0",
            "name": "cnt-chain",
            "plugins": [
                polis,
                {"type": "tuning", "mac": mac, "sysctl": {"net.ipv4.conf.eth0.arp_ignore": "1"},
                 "dataDir": host.data_dir("tuning")},
                {"type": "bandwidth", "capabilities": {"bandwidth": true}}
            ]
        }),
    );
    host.write_conf(
        "99-lo.conf",
        &json!({"cniVersion": "1.0.0", "name": "cnt-lo", "type": "loopback"}),
    );
    let scratch = host.dir.path();
    in_ns(&c, "ip link set lo down", scratch).ok();

    let lo = host.cnitool(&["--ifname", "lo", "add", "cnt-lo", &c.name]);
    lo.ok();
    let lo_state = in_ns(&c, "ip -o link show lo", scratch);
    assert!(lo_state.ok().stdout.contains(",UP"), "{}", lo_state.stdout);

    let caps = json!({"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 800_000,
                                    "egressRate": 8_000_000, "egressBurst": 800_000}});
    let out = host.cnitool_env(
        &["add", "cnt-chain", &c.name],
        &[("CAP_ARGS", &caps.to_string())],
    );
    let result = out.ok().json();
    assert_eq!(result["cniVersion"], "1.0.0", "{result}");
    assert_eq!(result["ips"][0]["address"], "198.19.1.2/24", "{result}");
    assert_eq!(result["ips"][0]["gateway"], "198.19.1.1", "{result}");
    let interfaces = result["interfaces"].as_array().unwrap();
    let eth0 = interfaces
        .iter()
        .find(|i| i["name"] == "eth0")
        .unwrap_or_else(|| panic!("no eth0 in {result}"));
    assert_eq!(eth0["sandbox"], format!("/run/netns/{}", c.name));
    // tuning changed the MAC and wrote it into the result it passed on: bandwidth's result carries it.
    assert_eq!(eth0["mac"], mac, "{result}");
    let veth = interfaces
        .iter()
        .filter(|i| i.get("sandbox").is_none_or(Value::is_null) && i["name"] != "cnt0")
        .map(|i| i["name"].as_str().unwrap().to_string())
        .next()
        .unwrap_or_else(|| panic!("no host veth in {result}"));

    let link = in_ns(&c, "ip -o addr show eth0; ip -o link show eth0", scratch);
    assert!(
        link.ok().stdout.contains("198.19.1.2/24"),
        "{}",
        link.stdout
    );
    assert!(link.stdout.contains(mac), "{}", link.stdout);
    let sysctl = in_ns(&c, "cat /proc/sys/net/ipv4/conf/eth0/arp_ignore", scratch);
    assert_eq!(sysctl.ok().stdout.trim(), "1");
    let qdiscs = host.sh(&format!("tc qdisc show dev {veth}"));
    assert!(
        qdiscs.ok().stdout.contains("tbf"),
        "ingress shaping: {}",
        qdiscs.stdout
    );
    assert!(
        qdiscs.stdout.contains("ingress"),
        "egress redirect: {}",
        qdiscs.stdout
    );
    let ifb = host.sh("ip -o link show type ifb");
    assert_eq!(ifb.ok().stdout.lines().count(), 1, "{}", ifb.stdout);

    let id = cnitool_container_id(&c);
    assert_eq!(
        host.cache_files(),
        [format!("cnt-chain-{id}-eth0"), format!("cnt-lo-{id}-lo")]
    );
    let cached: Value = serde_json::from_slice(
        &fs::read(
            host.cache_dir()
                .join(format!("results/cnt-chain-{id}-eth0")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(cached["kind"], "cniCacheV1");
    assert_eq!(cached["result"], result);
    assert_eq!(cached["capabilityArgs"], caps);

    host.cnitool_env(
        &["check", "cnt-chain", &c.name],
        &[("CAP_ARGS", &caps.to_string())],
    )
    .ok();

    host.cnitool_env(
        &["del", "cnt-chain", &c.name],
        &[("CAP_ARGS", &caps.to_string())],
    )
    .ok();
    host.cnitool(&["--ifname", "lo", "del", "cnt-lo", &c.name])
        .ok();
    assert!(host.allocated("cnt-chain").is_empty(), "address released");
    assert!(host.cache_files().is_empty(), "{:?}", host.cache_files());
    let left = host.sh("ip -o link show type veth; ip -o link show type ifb");
    assert_eq!(left.ok().stdout.trim(), "", "veth or ifb left");
    let eth0 = in_ns(&c, "ip -o link show eth0", scratch);
    assert!(!eth0.success(), "eth0 left in the container: {eth0}");
}

/// The shape of an ADD result that a runtime relies on (CNI spec "Success"): the container interfaces (those
/// with a sandbox), the first address, its gateway, and whether a default route is given.
fn result_shape(result: &Value) -> (Vec<String>, Value, Value, bool) {
    let in_sandbox = result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["sandbox"].is_string())
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    let default_route = result["routes"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["dst"] == "0.0.0.0/0"));
    (
        in_sandbox,
        result["ips"][0]["address"].clone(),
        result["ips"][0]["gateway"].clone(),
        default_route,
    )
}

/// Equivalence with the reference plugins (libcni's conventions: bridge + host-local + portmap is the usual
/// list): the same network run through Debian's chain and through polis-netplug, each in its own host namespace,
/// gives results of the same shape (one container interface, the first address of the same pool, the same
/// gateway, a default route), and in both the container reaches its gateway and the host reaches the container
/// through the mapped host port, over TCP.
#[test]
fn reference_chain_and_polis_netplug_are_equivalent() {
    let Some(reference) = Host::new("cnt-ref") else {
        return;
    };
    let Some(polis) = Host::new("cnt-pol") else {
        return;
    };
    let subnet = "198.19.2.0/24";
    reference.write_conf(
        "10-ref.conflist",
        &json!({
            "cniVersion": "1.0.0",
            "name": "cnt-eq",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": reference.data_dir("host-local")}},
                {"type": "portmap", "capabilities": {"portMappings": true}}
            ]
        }),
    );
    polis.write_conf(
        "10-polis.conflist",
        &json!({
            "cniVersion": "1.0.0",
            "name": "cnt-eq",
            "plugins": [polis.polis_plugin("polis0", subnet)]
        }),
    );
    let mut shapes = Vec::new();
    let mut containers = Vec::new();
    for host in [&reference, &polis] {
        let c = NetNs::new("cnt-eq-c");
        let result = host
            .cnitool(&["--port", "8080:80/tcp", "add", "cnt-eq", &c.name])
            .ok()
            .json();
        shapes.push(result_shape(&result));
        let route = in_ns(&c, "ip route show default", host.dir.path());
        assert!(
            route.ok().stdout.contains("via 198.19.2.1"),
            "{}",
            route.stdout
        );
        assert_eq!(
            tcp_round_trip(&host.ns, 90, &c, "198.19.2.1", 90, "gateway"),
            "gateway",
            "the container reaches its gateway ({})",
            host.ns.name
        );
        assert_eq!(
            tcp_round_trip(&c, 80, &host.ns, "198.19.2.1", 8080, "mapped"),
            "mapped",
            "the host reaches the mapped port ({})",
            host.ns.name
        );
        assert_eq!(cni_result_address(&result, 0), "198.19.2.2");
        containers.push(c);
    }
    assert_eq!(shapes[0], shapes[1], "reference vs polis-netplug");
    assert_eq!(
        shapes[0],
        (
            vec!["eth0".to_string()],
            json!("198.19.2.2/24"),
            json!("198.19.2.1"),
            true
        )
    );
    for (host, c) in [&reference, &polis].into_iter().zip(&containers) {
        host.cnitool(&["--port", "8080:80/tcp", "del", "cnt-eq", &c.name])
            .ok();
        assert!(host.cache_files().is_empty());
        let veths = host.sh("ip -o link show type veth");
        assert_eq!(veths.ok().stdout.trim(), "", "{}", host.ns.name);
    }
}

/// Operators' recovery after `nft flush ruleset` (which drops polis-netplug's table with every port mapping):
/// the mapped port stops answering; `polis-cnitool reapply NET` (the network's dataDir found in its list) and
/// `polis-cnitool --data-dir DIR reapply` re-apply the recorded state, and the port answers again. The next ADD on
/// the host does the same by itself.
#[test]
fn reapply_restores_port_mappings_after_a_ruleset_flush() {
    let Some(host) = Host::new("cnt-re") else {
        return;
    };
    host.write_polis_list("cnt-re", "1.1.0", "198.19.3.0/24");
    let c = NetNs::new("cnt-re-c");
    host.cnitool(&["--port", "8081:80", "add", "cnt-re", &c.name])
        .ok();
    let reach = || tcp_round_trip(&c, 80, &host.ns, "198.19.3.1", 8081, "mapped");
    assert_eq!(reach(), "mapped");

    host.sh("nft flush ruleset").ok();
    assert_eq!(reach(), "", "the flushed mapping still answered");
    host.cnitool(&["reapply", "cnt-re"]).ok();
    assert_eq!(reach(), "mapped", "after reapply NET");

    host.sh("nft flush ruleset").ok();
    host.cnitool(&["--data-dir", &host.data_dir("ipam"), "reapply"])
        .ok();
    assert_eq!(reach(), "mapped", "after reapply --data-dir");
    // Re-applying over a live table changes nothing.
    host.cnitool(&["reapply", "cnt-re"]).ok();
    assert!(host.mapped_ports().contains("8081"));

    // An ADD that finds the rules gone puts back everything recorded: the other container's mapping too.
    host.sh("nft flush ruleset").ok();
    let d = NetNs::new("cnt-re-d");
    let other = [("CNI_CONTAINERID", "re-d")];
    host.cnitool_env(&["--port", "8082:80", "add", "cnt-re", &d.name], &other)
        .ok();
    assert_eq!(reach(), "mapped", "after the next ADD");
    host.cnitool_env(&["--port", "8082:80", "del", "cnt-re", &d.name], &other)
        .ok();
    let ports = host.mapped_ports();
    assert!(ports.contains("8081") && !ports.contains("8082"), "{ports}");

    host.cnitool(&["--port", "8081:80", "del", "cnt-re", &c.name])
        .ok();
    assert!(!host.mapped_ports().contains("8081"));
}

/// CNI spec 1.1.0 "Garbage-collecting a network": `gc NET VALID...` releases every attachment not listed: the
/// cached one through DEL (libcni), one the cache no longer knows through the plugin's GC (the default valid set
/// is the cache); its address file and its port mapping are gone, the listed attachments keep theirs.
#[test]
fn gc_releases_attachments_not_listed() {
    let Some(host) = Host::new("cnt-gc") else {
        return;
    };
    host.write_polis_list("cnt-gc", "1.1.0", "198.19.4.0/24");
    let namespaces: Vec<NetNs> = (0..3).map(|_| NetNs::new("cnt-gc-c")).collect();
    let mut addresses = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        let id = format!("gc-c{i}");
        let port = format!("{}:80", 8090 + i);
        let ip = format!("198.19.4.{}/24", 50 + i);
        let result = host
            .cnitool_env(
                &[
                    "--port", &port, "--ip", &ip, "--alias", &id, "add", "cnt-gc", &ns.name,
                ],
                &[("CNI_CONTAINERID", &id)],
            )
            .ok()
            .json();
        // --ip is the `ips` capability: the address asked for.
        assert_eq!(result["ips"][0]["address"], ip.as_str());
        addresses.push(cni_result_address(&result, 0));
    }
    assert_eq!(host.allocated("cnt-gc").len(), 3);
    // --alias is the `aliases` capability, keyed by the network, cached with the other capability arguments.
    let cached: Value = serde_json::from_slice(
        &fs::read(host.cache_dir().join("results/cnt-gc-gc-c1-eth0")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cached["capabilityArgs"]["aliases"],
        json!({"cnt-gc": ["gc-c1"]})
    );
    assert_eq!(
        cached["capabilityArgs"]["portMappings"],
        json!([{"hostPort": 8091, "containerPort": 80, "protocol": "tcp"}])
    );

    // A plugin's error reaches the caller: its message on stderr, its CNI code (7) as the exit status; nothing
    // is cached.
    let spare = NetNs::new("cnt-gc-d");
    let taken = host.cnitool_env(
        &["--port", "8090:80", "add", "cnt-gc", &spare.name],
        &[("CNI_CONTAINERID", "gc-spare")],
    );
    assert_eq!(taken.code, Some(7), "{taken}");
    taken.stderr_mentions("8090");
    assert_eq!(host.cache_files().len(), 3);
    assert_eq!(host.allocated("cnt-gc").len(), 3);

    // gc-c1 is not valid: released through DEL of its cached attachment.
    host.cnitool(&["gc", "cnt-gc", "gc-c0", "gc-c2:eth0"]).ok();
    let held = host.allocated("cnt-gc");
    assert!(!held.contains(&addresses[1]), "{held:?}");
    assert!(
        held.contains(&addresses[0]) && held.contains(&addresses[2]),
        "{held:?}"
    );
    let ports = host.mapped_ports();
    assert!(!ports.contains("8091"), "{ports}");
    assert!(ports.contains("8090") && ports.contains("8092"), "{ports}");
    assert_eq!(
        host.cache_files(),
        ["cnt-gc-gc-c0-eth0", "cnt-gc-gc-c2-eth0"]
    );

    // A runtime that lost track of gc-c2 (no cache entry): the plugin's own GC releases it.
    fs::remove_file(host.cache_dir().join("results/cnt-gc-gc-c2-eth0")).unwrap();
    host.cnitool(&["gc", "cnt-gc"]).ok();
    assert_eq!(host.allocated("cnt-gc"), [addresses[0].clone()]);
    let ports = host.mapped_ports();
    assert!(!ports.contains("8092") && ports.contains("8090"), "{ports}");

    host.cnitool_env(
        &["--port", "8090:80", "del", "cnt-gc", &namespaces[0].name],
        &[("CNI_CONTAINERID", "gc-c0")],
    )
    .ok();
    assert!(host.allocated("cnt-gc").is_empty());
    assert!(host.cache_files().is_empty());
}

/// CNI spec 1.1.0 "STATUS": a fresh network is ready (exit 0, nothing printed); once ADDs have taken every
/// address of a /30 (one assignable address beside the gateway), STATUS fails with the plugin's code 50 in the
/// message and as the exit status; after DEL it is ready again. Errors name the problem and exit non-zero:
/// an unknown network, a flag the command cannot honour.
#[test]
fn status_reports_an_exhausted_pool() {
    let Some(host) = Host::new("cnt-st") else {
        return;
    };
    host.write_polis_list("cnt-st", "1.1.0", "198.19.5.0/30");
    let status = host.cnitool(&["status", "cnt-st"]);
    assert_eq!(status.ok().stdout, "");

    let c = NetNs::new("cnt-st-c");
    let result = host.cnitool(&["add", "cnt-st", &c.name]).ok().json();
    assert_eq!(result["ips"][0]["address"], "198.19.5.2/30");
    let status = host.cnitool(&["status", "cnt-st"]);
    assert_eq!(status.code, Some(50), "{status}");
    status
        .stderr_mentions("code 50")
        .stderr_mentions("198.19.5.0/30");

    // ADD in a full pool fails too, with the plugin's message, and leaves nothing cached.
    let other = NetNs::new("cnt-st-d");
    let full = host.cnitool(&["add", "cnt-st", &other.name]);
    full.fails().stderr_mentions("no free address");
    assert_eq!(host.cache_files().len(), 1);

    host.cnitool(&["del", "cnt-st", &c.name]).ok();
    host.cnitool(&["status", "cnt-st"]).ok();

    host.cnitool(&["status", "no-such-net"])
        .fails()
        .stderr_mentions("no-such-net");
    host.cnitool(&["--port", "1:1", "status", "cnt-st"])
        .fails()
        .stderr_mentions("--port");
}
