//! polis-netplug as a CNI runtime calls it (CNI spec 1.1.0, "Execution Protocol"): environment, config on stdin,
//! result or error JSON on stdout. Everything happens in network namespaces the test makes: a "host" namespace
//! where the plugin runs (its bridge, veths and nftables table live there) and one per container; subnets from
//! 198.18.0.0/15. Connectivity is checked over TCP with busybox nc.

use polis_integration::containerd::NetNs;
use polis_integration::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);
const BUSYBOX: &str = "/bin/busybox";

fn plugin_path() -> PathBuf {
    std::env::var_os("POLIS_NETPLUG")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/release/polis-netplug"))
}

/// A host namespace for the plugin and a scratch dir with the IPAM data dir.
struct Net {
    host: NetNs,
    dir: tempfile::TempDir,
}

impl Net {
    fn new(tag: &str) -> Option<Net> {
        if !plugin_path().exists() {
            return missing_peer("polis-netplug (make build)");
        }
        for tool in ["/usr/sbin/nft", BUSYBOX] {
            if !Path::new(tool).exists() {
                return missing_peer(tool);
            }
        }
        Some(Net {
            host: NetNs::new(tag),
            dir: temp_dir("polis-it-netplug-"),
        })
    }

    /// A network config (CNI 1.1.0) for bridge `bridge` with subnet `subnet`, merged with `extra`.
    fn config(&self, name: &str, bridge: &str, subnet: &str, extra: Value) -> Value {
        let mut conf = json!({
            "cniVersion": "1.1.0",
            "name": name,
            "type": "polis-netplug",
            "bridge": bridge,
            "ipMasq": true,
            "ipam": {
                "type": "polis",
                "ranges": [[{"subnet": subnet}]],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dataDir": self.dir.path().join("ipam").to_str().unwrap()
            }
        });
        if let (Some(c), Some(e)) = (conf.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        conf
    }

    /// Runs the plugin in the host namespace: `command` for `container` (netns `netns`, ifname eth0).
    fn cni(&self, command: &str, container: &str, netns: Option<&str>, conf: &Value) -> Output {
        let conf_path = self
            .dir
            .path()
            .join(format!("conf-{command}-{container}.json"));
        fs::write(&conf_path, conf.to_string()).unwrap();
        let mut cmd = self.host.command("sh");
        cmd.args(["-c", "exec \"$0\" < \"$1\""])
            .arg(plugin_path())
            .arg(&conf_path)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni");
        if let Some(ns) = netns {
            cmd.env("CNI_NETNS", format!("/run/netns/{ns}"));
        }
        run_command(cmd, self.dir.path(), TIMEOUT)
    }

    fn host_sh(&self, script: &str) -> Output {
        let mut cmd = self.host.command("sh");
        cmd.args(["-c", script]);
        run_command(cmd, self.dir.path(), TIMEOUT)
    }

    fn allocated(&self, network: &str) -> Vec<String> {
        fs::read_dir(self.dir.path().join("ipam").join(network))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The error JSON a failed call printed (CNI spec "Error"): its code and message.
fn cni_error(out: &Output) -> (u64, String) {
    assert!(!out.success(), "should fail: {out}");
    let v: Value =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|_| panic!("no error JSON: {out}"));
    (
        v["code"].as_u64().unwrap(),
        v["msg"].as_str().unwrap_or("").to_string(),
    )
}

/// Serves `reply` once on TCP port `port` inside `ns` and returns what a client in `from` (a namespace, or the
/// host namespace) read from `addr:connect_port`.
fn tcp_round_trip(
    listener: &NetNs,
    port: u16,
    client: &NetNs,
    addr: &str,
    connect_port: u16,
    reply: &str,
) -> String {
    let mut server = listener.command(BUSYBOX);
    server
        .args([
            "sh",
            "-c",
            &format!("echo {reply} | {BUSYBOX} nc -l -p {port} -w 5"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut server = server.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = client
        .command(BUSYBOX)
        .args(["nc", "-w", "2", addr, &connect_port.to_string()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// CNI spec "ADD", "DEL", "CHECK": two containers on one bridge get addresses from the pool and reach each other;
/// a mapped host port (conventions.md "portMappings") reaches a container from the host, from 127.0.0.1 and from
/// another container (hairpin); DEL removes the interfaces, the addresses and the mappings, and is idempotent.
#[test]
fn containers_connect_and_ports_map() {
    let Some(net) = Net::new("np-add") else {
        return;
    };
    let (c1, c2) = (NetNs::new("np-c1"), NetNs::new("np-c2"));
    let mapped = net.config(
        "np-add",
        "polis0",
        "198.18.0.0/24",
        json!({"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}}),
    );
    let plain = net.config("np-add", "polis0", "198.18.0.0/24", json!({}));

    let out = net.cni("ADD", "c1", Some(&c1.name), &mapped);
    let r1 = out.ok().json();
    assert_eq!(r1["cniVersion"], "1.1.0");
    assert_eq!(r1["ips"][0]["address"], "198.18.0.2/24", "{r1}");
    assert_eq!(r1["ips"][0]["gateway"], "198.18.0.1");
    let idx = r1["ips"][0]["interface"].as_u64().unwrap() as usize;
    assert_eq!(r1["interfaces"][idx]["name"], "eth0");
    assert_eq!(
        r1["interfaces"][idx]["sandbox"],
        format!("/run/netns/{}", c1.name)
    );

    // A second container may not take the same host port: a clear error, and nothing of it is left.
    let (code, msg) = cni_error(&net.cni("ADD", "c2", Some(&c2.name), &mapped));
    assert_eq!(code, 7);
    assert!(msg.contains("8080"), "{msg}");
    assert_eq!(net.allocated("np-add"), ["198.18.0.2"]);
    let r2 = net.cni("ADD", "c2", Some(&c2.name), &plain).ok().json();
    let c2_ip = r2["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();

    assert_eq!(
        tcp_round_trip(&c1, 80, &c2, "198.18.0.2", 80, "direct"),
        "direct"
    );
    assert_eq!(
        tcp_round_trip(&c1, 80, &net.host, "127.0.0.1", 8080, "loopback"),
        "loopback"
    );
    assert_eq!(
        tcp_round_trip(&c1, 80, &net.host, "198.18.0.1", 8080, "hostip"),
        "hostip"
    );
    assert_eq!(
        tcp_round_trip(&c1, 80, &c2, "198.18.0.1", 8080, "hairpin"),
        "hairpin"
    );
    assert_eq!(tcp_round_trip(&c2, 81, &c1, &c2_ip, 81, "back"), "back");

    // CHECK with the ADD result as prevResult.
    let mut check = mapped.clone();
    check["prevResult"] = r1.clone();
    net.cni("CHECK", "c1", Some(&c1.name), &check).ok();

    net.cni("DEL", "c1", Some(&c1.name), &mapped).ok();
    net.cni("DEL", "c2", Some(&c2.name), &plain).ok();
    net.cni("DEL", "c2", Some(&c2.name), &plain).ok();
    drop(c1);
    net.cni("DEL", "c1", Some("np-gone"), &mapped).ok();
    assert!(net.allocated("np-add").is_empty());
    let links = net.host_sh("ip -o link show type veth | wc -l");
    assert_eq!(links.ok().stdout.trim(), "0", "no veth left");
    let maps = net.host_sh("nft list map inet polis ports4");
    assert!(!maps.ok().stdout.contains("8080"), "{}", maps.stdout);
}

/// Networks are isolated from each other by default: a container of one network cannot reach one of another,
/// while both reach their own gateway.
#[test]
fn networks_are_isolated() {
    let Some(net) = Net::new("np-iso") else {
        return;
    };
    let (a, b) = (NetNs::new("np-a"), NetNs::new("np-b"));
    let conf_a = net.config("np-net-a", "polis-a", "198.18.1.0/24", json!({}));
    let conf_b = net.config("np-net-b", "polis-b", "198.18.2.0/24", json!({}));
    net.cni("ADD", "a", Some(&a.name), &conf_a).ok();
    net.cni("ADD", "b", Some(&b.name), &conf_b).ok();
    assert_eq!(
        tcp_round_trip(&net.host, 90, &a, "198.18.1.1", 90, "gw"),
        "gw"
    );
    assert_eq!(
        tcp_round_trip(&b, 91, &a, "198.18.2.2", 91, "crossed"),
        "",
        "a reached b"
    );
    assert_eq!(
        tcp_round_trip(&a, 92, &b, "198.18.1.2", 92, "crossed"),
        "",
        "b reached a"
    );
    net.cni("DEL", "a", Some(&a.name), &conf_a).ok();
    net.cni("DEL", "b", Some(&b.name), &conf_b).ok();
}

/// CNI spec "Error": bad input gets the spec's codes with a message naming the problem, and nothing is made.
#[test]
fn bad_configs_get_cni_errors() {
    let Some(net) = Net::new("np-bad") else {
        return;
    };
    let c = NetNs::new("np-badc");
    let cases: Vec<(Value, u64, &str)> = vec![
        (
            net.config(
                "np-bad",
                "polis0",
                "198.18.0.0/24",
                json!({"brige": "typo"}),
            ),
            2,
            "brige",
        ),
        (
            net.config("np-bad", "polis0", "198.18.0.0/33", json!({})),
            7,
            "198.18.0.0/33",
        ),
        (
            net.config("np-bad", "polis0", "198.18.0.5/24", json!({})),
            7,
            "198.18.0.5/24",
        ),
        (
            {
                let mut v = net.config("np-bad", "polis0", "198.18.0.0/24", json!({}));
                v["ipam"]["ranges"] =
                    json!([[{"subnet": "198.18.0.0/24"}], [{"subnet": "198.18.0.0/25"}]]);
                v
            },
            7,
            "overlap",
        ),
        (
            {
                let mut v = net.config("np-bad", "polis0", "198.18.0.0/24", json!({}));
                v["cniVersion"] = json!("9.9.9");
                v
            },
            1,
            "9.9.9",
        ),
    ];
    for (conf, want, needle) in cases {
        let (code, msg) = cni_error(&net.cni("ADD", "c", Some(&c.name), &conf));
        assert_eq!(code, want, "{msg}");
        assert!(msg.contains(needle), "{msg} should mention {needle}");
    }
    let good = net.config("np-bad", "polis0", "198.18.0.0/24", json!({}));
    let (code, msg) = cni_error(&net.cni("ADD", "c", Some("np-no-such-netns"), &good));
    assert_eq!(code, 3, "{msg}");
    let (code, _) = cni_error(&net.cni("ADD", "c", None, &good));
    assert_eq!(code, 4);
    assert!(net.allocated("np-bad").is_empty());
    assert_eq!(
        net.host_sh("ip -o link show type bridge | wc -l")
            .ok()
            .stdout
            .trim(),
        "0"
    );
}

/// 200 ADDs at once get 200 distinct addresses and their own port mappings; 200 DELs empty the pool and leave no
/// mapping or veth behind.
#[test]
fn two_hundred_concurrent_adds_and_dels() {
    let Some(net) = Net::new("np-many") else {
        return;
    };
    const N: usize = 200;
    let namespaces: Vec<NetNs> = (0..N).map(|_| NetNs::new("np-m")).collect();
    let conf = |i: usize| {
        net.config(
            "np-many",
            "polis0",
            "198.18.4.0/22",
            json!({"runtimeConfig": {"portMappings": [{"hostPort": 20000 + i, "containerPort": 80}]}}),
        )
    };
    let results: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let conf = conf(i);
                let net = &net;
                s.spawn(move || net.cni("ADD", &format!("m{i}"), Some(&ns.name), &conf))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addresses: Vec<String> = results
        .iter()
        .map(|o| {
            o.ok().json()["ips"][0]["address"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), N, "distinct addresses");
    let mapped = net.host_sh("nft -j list map inet polis ports4");
    let doc: Value = serde_json::from_str(&mapped.ok().stdout).unwrap();
    let elems = doc["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["map"]["elem"].as_array())
        .map(|e| e.len())
        .sum::<usize>();
    assert_eq!(elems, N, "one mapping each");

    std::thread::scope(|s| {
        for (i, ns) in namespaces.iter().enumerate() {
            let conf = conf(i);
            let net = &net;
            s.spawn(move || {
                net.cni("DEL", &format!("m{i}"), Some(&ns.name), &conf)
                    .ok()
                    .code
            });
        }
    });
    assert!(
        net.allocated("np-many").is_empty(),
        "the pool is empty again"
    );
    assert!(
        !net.host_sh("nft list map inet polis ports4")
            .ok()
            .stdout
            .contains("20000")
    );
    assert_eq!(
        net.host_sh("ip -o link show type veth | wc -l")
            .ok()
            .stdout
            .trim(),
        "0"
    );
}
