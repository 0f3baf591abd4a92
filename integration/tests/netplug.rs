//! polis-netplug as a CNI runtime calls it (CNI spec 1.1.0, "Execution Protocol"): environment, config on stdin,
//! result or error JSON on stdout. Everything happens in network namespaces the test makes: a "host" namespace
//! where the plugin runs (its bridge, veths and nftables table live there) and one per container; subnets from
//! 198.18.0.0/15. Connectivity is checked over TCP with busybox nc.

use polis_integration::containerd::tcp_round_trip;
use polis_integration::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

fn plugin_path() -> PathBuf {
    workspace_binary("POLIS_NETPLUG", "polis-netplug")
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
        self.cni_with_env(command, container, netns, conf, &[])
    }

    /// [`Net::cni`] with more environment variables for the plugin.
    fn cni_with_env(
        &self,
        command: &str,
        container: &str,
        netns: Option<&str>,
        conf: &Value,
        env: &[(&str, &str)],
    ) -> Output {
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
        cmd.envs(env.iter().copied());
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
    let c2_ip = cni_result_address(&r2, 0);

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

/// Names within a network (polis-netplug `dns`; RFC 1035 queries and answers): containers resolve each other's
/// names (the `aliases` capability, podman's convention) through the resolver on the gateway address, which ADD
/// puts in the result's `dns.nameservers`; a name nobody has under the network's domain is NXDOMAIN; other names
/// are forwarded to the upstream resolver (a responder of the test's, named by POLIS_NETPLUG_DNS_UPSTREAM); the
/// resolver process goes away with the network's last DEL.
#[test]
fn names_resolve_within_a_network() {
    use std::net::UdpSocket;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let Some(net) = Net::new("np-dns") else {
        return;
    };
    let (c1, c2) = (NetNs::new("np-dns1"), NetNs::new("np-dns2"));
    const UPSTREAM: &str = "127.0.0.1:5300";
    const OUTSIDE_IP: [u8; 4] = [198, 19, 255, 7];

    // The upstream: UDP on 127.0.0.1:5300 of the host namespace; "outside.example" A 198.19.255.7, else NXDOMAIN.
    let host_ns = format!("/run/netns/{}", net.host.name);
    let sock = std::thread::spawn(move || {
        let ns = fs::File::open(&host_ns).unwrap();
        // SAFETY: setns on a descriptor we own; only this thread (which ends here) changes its namespace.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {host_ns}");
        UdpSocket::bind(UPSTREAM).unwrap()
    })
    .join()
    .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let forwarded = Arc::new(AtomicUsize::new(0));
    let upstream = {
        let (stop, forwarded) = (stop.clone(), forwarded.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let q = &buf[..n];
                let (mut at, mut labels) = (12, Vec::new());
                while at < n && q[at] != 0 {
                    let len = q[at] as usize;
                    labels.push(String::from_utf8_lossy(&q[at + 1..at + 1 + len]).to_lowercase());
                    at += 1 + len;
                }
                let qend = at + 5;
                let qtype = u16::from_be_bytes([q[at + 1], q[at + 2]]);
                let known = labels.join(".") == "outside.example";
                forwarded.fetch_add(1, Ordering::SeqCst);
                let mut r = q[..2].to_vec();
                r.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }, 0, 1]);
                let an = u8::from(known && qtype == 1);
                r.extend_from_slice(&[0, an, 0, 0, 0, 0]);
                r.extend_from_slice(&q[12..qend]);
                if an == 1 {
                    r.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
                    r.extend_from_slice(&OUTSIDE_IP);
                }
                let _ = sock.send_to(&r, peer);
            }
        })
    };

    // Whatever happens, the resolver daemon and the upstream do not outlive the test.
    struct Cleanup {
        pid_file: PathBuf,
        stop: Arc<AtomicBool>,
    }
    impl Drop for Cleanup {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(pid) = fs::read_to_string(&self.pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                // SAFETY: a plain kill(2) of the daemon's pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let pid_file = net.dir.path().join("ipam/np-dns/dns.pid");
    let _cleanup = Cleanup {
        pid_file: pid_file.clone(),
        stop: stop.clone(),
    };

    let cni = |command: &str, container: &str, ns: &NetNs, conf: &Value| -> Output {
        net.cni_with_env(
            command,
            container,
            Some(&ns.name),
            conf,
            &[("POLIS_NETPLUG_DNS_UPSTREAM", UPSTREAM)],
        )
    };
    let conf = |aliases: Value| {
        net.config(
            "np-dns",
            "polis-dns",
            "198.18.8.0/24",
            json!({"runtimeConfig": {"aliases": {"np-dns": aliases}}}),
        )
    };
    let (conf1, conf2) = (conf(json!(["web"])), conf(json!(["db", "Cache"])));
    let r1 = cni("ADD", "c1", &c1, &conf1).ok().json();
    assert_eq!(r1["dns"]["nameservers"], json!(["198.18.8.1"]), "{r1}");
    let r2 = cni("ADD", "c2", &c2, &conf2).ok().json();
    assert_eq!(r2["ips"][0]["address"], "198.18.8.3/24", "{r2}");
    let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();

    let nslookup = |from: &NetNs, name: &str| -> Output {
        let mut cmd = from.command(BUSYBOX);
        cmd.args(["nslookup", name, "198.18.8.1"]);
        run_command(cmd, net.dir.path(), TIMEOUT)
    };
    // The IPv4 addresses an nslookup printed for the name (not the server's "Address: IP:53").
    let addresses = |out: &Output| -> Vec<String> {
        out.stdout
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Address:"))
            .map(|a| a.trim().to_string())
            .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
            .collect()
    };

    let web = nslookup(&c2, "web");
    assert_eq!(addresses(web.ok()), ["198.18.8.2"], "{web}");
    let web = nslookup(&c2, "WEB.np-dns");
    assert_eq!(addresses(web.ok()), ["198.18.8.2"], "{web}");
    let db = nslookup(&c1, "cache");
    assert_eq!(addresses(db.ok()), ["198.18.8.3"], "{db}");
    let by_id = nslookup(&c1, "c2");
    assert_eq!(addresses(by_id.ok()), ["198.18.8.3"], "{by_id}");
    // Connect to "web" by the address the resolver gave.
    assert_eq!(
        tcp_round_trip(
            &c1,
            80,
            &c2,
            &addresses(&nslookup(&c2, "web"))[0],
            80,
            "named"
        ),
        "named"
    );

    let ghost = nslookup(&c2, "ghost.np-dns");
    assert!(ghost.stdout.contains("NXDOMAIN"), "{ghost}");
    assert_eq!(forwarded.load(Ordering::SeqCst), 0, "nothing forwarded yet");
    let outside = nslookup(&c2, "outside.example");
    assert_eq!(addresses(outside.ok()), ["198.19.255.7"], "{outside}");
    assert!(forwarded.load(Ordering::SeqCst) > 0);

    // The same over TCP (RFC 1035 4.2.2, a length before each message), from c2: "web" is answered; a forwarded
    // name whose upstream refuses TCP (the test's upstream is UDP only) gets SERVFAIL.
    let c2_ns = format!("/run/netns/{}", c2.name);
    let tcp_answers: Vec<Vec<u8>> = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let ns = fs::File::open(&c2_ns).unwrap();
        // SAFETY: setns on a descriptor we own; only this thread (which ends here) changes its namespace.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&ns), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {c2_ns}");
        let mut conn = std::net::TcpStream::connect("198.18.8.1:53").unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        ["web", "outside.example"]
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut q = vec![0, i as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
                for label in name.split('.') {
                    q.push(label.len() as u8);
                    q.extend_from_slice(label.as_bytes());
                }
                q.extend_from_slice(&[0, 0, 1, 0, 1]);
                let mut framed = (q.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&q);
                conn.write_all(&framed).unwrap();
                let mut len = [0u8; 2];
                conn.read_exact(&mut len).unwrap();
                let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
                conn.read_exact(&mut answer).unwrap();
                answer
            })
            .collect()
    })
    .join()
    .unwrap();
    assert_eq!(tcp_answers[0][..2], [0, 0], "the query's ID");
    assert_eq!(tcp_answers[0][3] & 0xF, 0, "NOERROR");
    assert_eq!(tcp_answers[0][7], 1, "one answer");
    assert!(
        tcp_answers[0].ends_with(&[198, 18, 8, 2]),
        "{:?}",
        tcp_answers[0]
    );
    assert_eq!(tcp_answers[1][3] & 0xF, 2, "SERVFAIL: {:?}", tcp_answers[1]);

    cni("DEL", "c1", &c1, &conf1).ok();
    assert_eq!(addresses(nslookup(&c2, "db").ok()), ["198.18.8.3"]);
    let gone = nslookup(&c2, "web.np-dns");
    assert!(gone.stdout.contains("NXDOMAIN"), "web is gone: {gone}");
    cni("DEL", "c2", &c2, &conf2).ok();
    let running = fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false);
    assert!(!running, "the resolver (pid {pid}) is still running");
    assert!(!pid_file.exists());
    let listening = net.host_sh("ss -Hlnut 'sport = :53'");
    assert_eq!(listening.ok().stdout.trim(), "", "nothing listens on :53");
    stop.store(true, Ordering::SeqCst);
    upstream.join().unwrap();
}

/// Dual stack (a range set per family) and an older config version: CNI spec "Version considerations" — a
/// 0.4.0 config gets a 0.4.0 result (with each ip's "version"); containers reach each other over IPv6 too.
#[test]
fn dual_stack_and_older_config_versions() {
    let Some(net) = Net::new("np-v6") else { return };
    let (c1, c2) = (NetNs::new("np-v6a"), NetNs::new("np-v6b"));
    let mut conf = net.config("np-v6", "polis6", "198.18.12.0/24", json!({}));
    conf["ipam"]["ranges"] =
        json!([[{"subnet": "198.18.12.0/24"}], [{"subnet": "fd00:198:18:12::/64"}]]);
    conf["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]);
    conf["cniVersion"] = json!("0.4.0");
    let r1 = net.cni("ADD", "v6a", Some(&c1.name), &conf).ok().json();
    assert_eq!(r1["cniVersion"], "0.4.0");
    let versions: Vec<&str> = r1["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["4", "6"], "{r1}");
    let v6 = cni_result_address(&r1, 1);
    assert!(v6.starts_with("fd00:198:18:12::"), "{v6}");
    net.cni("ADD", "v6b", Some(&c2.name), &conf).ok();
    assert_eq!(
        tcp_round_trip(&c1, 80, &c2, &v6, 80, "over-ipv6"),
        "over-ipv6"
    );
    net.cni("DEL", "v6a", Some(&c1.name), &conf).ok();
    net.cni("DEL", "v6b", Some(&c2.name), &conf).ok();
    assert!(net.allocated("np-v6").is_empty());
}

/// The names of the links in `ns` (`ip -o link show`: "2: eth0@if5: <...>").
fn link_names(ns: &NetNs, scratch: &Path) -> Vec<String> {
    let mut cmd = ns.command("ip");
    cmd.args(["-o", "link", "show"]);
    let out = run_command(cmd, scratch, TIMEOUT);
    out.ok()
        .stdout
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

/// The DNS resolvers (`polis-netplug dns-serve`) that ADDs under `ipam` started do not outlive a test that
/// fails before its DELs stop them: each `<ipam>/<network>/dns.pid` is killed on drop.
struct Resolvers(PathBuf);

impl Drop for Resolvers {
    fn drop(&mut self) {
        let Ok(networks) = fs::read_dir(&self.0) else {
            return;
        };
        for network in networks.filter_map(|e| e.ok()) {
            if let Some(pid) = fs::read_to_string(network.path().join("dns.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
            {
                // SAFETY: a plain kill(2) of the daemon's pid.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// What a failed ADD may have left in the host namespace and in the container's: the host's bridges and veths,
/// the container's links, the network's addresses, firewall record and resolver.
fn assert_nothing_left(
    net: &Net,
    network: &str,
    container: &NetNs,
    bridges: &[&str],
    veths: usize,
) {
    let listed = |kind: &str| -> Vec<String> {
        net.host_sh(&format!("ip -o link show type {kind}"))
            .ok()
            .stdout
            .lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .collect()
    };
    let mut host_bridges = listed("bridge");
    host_bridges.sort();
    assert_eq!(host_bridges, bridges, "the host's bridges");
    assert_eq!(listed("veth").len(), veths, "the host's veths");
    assert_eq!(
        link_names(container, net.dir.path()),
        ["lo"],
        "the container's links"
    );
    assert!(net.allocated(network).is_empty(), "addresses held");
    let ipam = net.dir.path().join("ipam").join(network);
    assert!(!ipam.join("firewall/network.json").exists());
    assert!(!ipam.join("dns.pid").exists(), "a resolver runs");
}

/// CNI spec "Error": code 7, "Invalid network config. If some validations on network configs do not pass, this
/// error will be raised". A subnet that cannot serve containers (the whole address space, multicast, loopback,
/// link-local, the limited broadcast and reserved 240.0.0.0/4, "this network" 0.0.0.0/8) is refused when the
/// config is validated, by every command that validates it (ADD, CHECK, STATUS, GC, and polis-cnitool through
/// the plugin), with a message naming the subnet and why, and nothing is made. DEL succeeds: the spec's "DEL"
/// ("Plugins should generally complete a DEL action without error even if some resources are missing") and
/// Section 3 ("A delete must still be executed even if the add fails") have the runtime DEL after this failed ADD.
#[test]
fn subnets_that_cannot_serve_containers_are_refused() {
    let Some(net) = Net::new("np-sub") else {
        return;
    };
    let _resolvers = Resolvers(net.dir.path().join("ipam"));
    let c = NetNs::new("np-subc");
    let cases = [
        ("0.0.0.0/0", "the whole IPv4 address space"),
        ("::/0", "the whole IPv6 address space"),
        ("224.0.0.0/24", "multicast"),
        ("ff00::/64", "multicast"),
        ("127.0.0.0/24", "loopback"),
        ("::1/128", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("fe80::/64", "link-local"),
        ("255.255.255.0/24", "limited broadcast"),
        ("0.0.0.0/8", "unspecified"),
    ];
    for (subnet, why) in cases {
        let conf = net.config("np-sub", "polis-sub", subnet, json!({}));
        let mut check = conf.clone();
        check["prevResult"] = json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "sandbox": format!("/run/netns/{}", c.name)}],
            "ips": [{"address": "198.18.16.2/24", "interface": 0}]
        });
        let mut gc = conf.clone();
        gc["cni.dev/valid-attachments"] = json!([]);
        for (command, conf) in [
            ("ADD", &conf),
            ("CHECK", &check),
            ("STATUS", &conf),
            ("GC", &gc),
        ] {
            let (code, msg) = cni_error(&net.cni(command, "sub", Some(&c.name), conf));
            assert_eq!(code, 7, "{command} {subnet}: {msg}");
            assert!(
                msg.contains(&format!(
                    "ipam.ranges[0][0].subnet: {subnet} cannot serve containers: "
                )) && msg.contains(why),
                "{command} {subnet}: {msg:?} should name the subnet and say {why:?}"
            );
        }
        net.cni("DEL", "sub", Some(&c.name), &conf).ok();
    }
    // A good subnet in the same config is served.
    let good = net.config("np-sub", "polis-sub", "198.18.16.0/24", json!({}));
    net.cni("STATUS", "sub", None, &good).ok();

    // polis-cnitool: the plugin's code as its exit status, the plugin's message.
    let conf_dir = net.dir.path().join("net.d");
    fs::create_dir(&conf_dir).unwrap();
    let mut list = net.config("np-sub", "polis-sub", "127.0.0.0/24", json!({}));
    let plugin = list.as_object_mut().unwrap();
    let version = plugin.remove("cniVersion").unwrap();
    plugin.remove("name");
    let list = json!({"cniVersion": version, "name": "np-sub", "plugins": [plugin]});
    fs::write(conf_dir.join("np-sub.conflist"), list.to_string()).unwrap();
    for args in [
        vec!["add", "np-sub", c.name.as_str()],
        vec!["status", "np-sub"],
    ] {
        let tool = workspace_binary("POLIS_CNITOOL", "polis-cnitool");
        let mut cmd = net.host.command(tool.to_str().unwrap());
        cmd.arg("--conf-dir")
            .arg(&conf_dir)
            .arg("--cache-dir")
            .arg(net.dir.path().join("cache"))
            .args(&args);
        for var in [
            "CNI_PATH",
            "NETCONFPATH",
            "CNI_CONTAINERID",
            "CNI_IFNAME",
            "CNI_ARGS",
        ] {
            cmd.env_remove(var);
        }
        let out = run_command(cmd, net.dir.path(), TIMEOUT);
        assert_eq!(out.code, Some(7), "{args:?}: {out}");
        out.stderr_mentions("127.0.0.0/24 cannot serve containers")
            .stderr_mentions("loopback");
    }

    assert_nothing_left(&net, "np-sub", &c, &[], 0);
}

/// CNI spec "ADD" and Section 3 "Lifecycle & Ordering": a failed ADD is followed by a DEL, which must succeed, and
/// the ADD itself leaves nothing it made: bridge, veth pair, addresses, firewall elements, DNS resolver. Failures
/// are injected by configs that are valid but cannot be applied: a route whose gateway no interface reaches (the
/// kernel refuses it after the bridge, the veth pair and the addresses are made), and a host port that another
/// network's container maps (refused after the DNS resolver and the network's firewall elements). A bridge the ADD
/// did not create (made beforehand, or another network's) stays.
#[test]
fn a_failed_add_removes_what_it_made() {
    let Some(net) = Net::new("np-undo") else {
        return;
    };
    let _resolvers = Resolvers(net.dir.path().join("ipam"));
    let c = NetNs::new("np-undoc");
    let mut unroutable = net.config("np-undo", "polis-undo", "198.18.20.0/24", json!({}));
    unroutable["ipam"]["routes"] = json!([
        {"dst": "0.0.0.0/0"},
        {"dst": "198.19.200.0/24", "gw": "198.18.21.1"}
    ]);
    let (code, msg) = cni_error(&net.cni("ADD", "undo", Some(&c.name), &unroutable));
    assert_eq!(code, 5, "{msg}");
    assert!(msg.contains("198.19.200.0/24"), "{msg}");
    assert_nothing_left(&net, "np-undo", &c, &[], 0);
    net.cni("DEL", "undo", Some(&c.name), &unroutable).ok();

    // A bridge made beforehand is the administrator's: it stays.
    net.host_sh("ip link add polis-undo type bridge").ok();
    let (code, _) = cni_error(&net.cni("ADD", "undo", Some(&c.name), &unroutable));
    assert_eq!(code, 5);
    assert_nothing_left(&net, "np-undo", &c, &["polis-undo"], 0);
    net.cni("DEL", "undo", Some(&c.name), &unroutable).ok();

    // The first container of network b asks for a host port a container of network a maps: refused (code 7) at
    // the last step, after b's bridge, resolver and firewall elements were made; all of b's go, all of a's stay.
    let a = NetNs::new("np-undoa");
    let port =
        json!({"runtimeConfig": {"portMappings": [{"hostPort": 8090, "containerPort": 80}]}});
    let conf_a = net.config("np-undo-a", "polis-ua", "198.18.22.0/24", port.clone());
    let conf_b = net.config("np-undo-b", "polis-ub", "198.18.23.0/24", port);
    net.cni("ADD", "a", Some(&a.name), &conf_a).ok();
    let (code, msg) = cni_error(&net.cni("ADD", "b", Some(&c.name), &conf_b));
    assert_eq!(code, 7, "{msg}");
    assert!(msg.contains("8090"), "{msg}");
    assert_nothing_left(&net, "np-undo-b", &c, &["polis-ua", "polis-undo"], 1);
    let sets = net.host_sh("nft list set inet polis masq4; nft list set inet polis cross");
    let sets = &sets.ok().stdout;
    assert!(sets.contains("198.18.22.0/24"), "{sets}");
    assert!(!sets.contains("198.18.23.0/24"), "{sets}");
    assert!(!sets.contains("polis-ub"), "{sets}");
    let ports = net.host_sh("nft list map inet polis ports4");
    assert!(ports.ok().stdout.contains("8090"), "a's mapping stays");
    assert!(
        net.dir
            .path()
            .join("ipam/np-undo-a/firewall/network.json")
            .exists()
    );
    net.cni("DEL", "b", Some(&c.name), &conf_b).ok();

    // Network b works once the port is free, on a bridge of its own again.
    net.cni("DEL", "a", Some(&a.name), &conf_a).ok();
    let r = net.cni("ADD", "b", Some(&c.name), &conf_b).ok().json();
    assert!(cni_result_address(&r, 0).starts_with("198.18.23."), "{r}");
    net.cni("DEL", "b", Some(&c.name), &conf_b).ok();
}

/// CNI spec "ADD": "If an interface of the requested name already exists in the container, the CNI plugin MUST
/// return with an error", and of CNI_IFNAME (Section 2 "Parameters") "if the plugin is unable to use this
/// interface name it must return an error". `lo`, which every namespace has, and a name another interface has are
/// refused before anything is made, with code 4 (the spec's "Invalid necessary environment variables ... The
/// error message must contain the names of invalid variables": it names CNI_IFNAME; the spec has no code of its
/// own for this) and a message saying the name is taken. The DEL the runtime sends after (Section 3: "A delete
/// must still be executed even if the add fails") succeeds and leaves those interfaces alone.
#[test]
fn an_interface_name_the_container_has_is_refused() {
    let Some(net) = Net::new("np-ifn") else {
        return;
    };
    let _resolvers = Resolvers(net.dir.path().join("ipam"));
    let c = NetNs::new("np-ifnc");
    let conf = net.config("np-ifn", "polis-ifn", "198.18.24.0/24", json!({}));
    let with = |ifname: &str, command: &str| {
        net.cni_with_env(
            command,
            "ifn",
            Some(&c.name),
            &conf,
            &[("CNI_IFNAME", ifname)],
        )
    };

    let (code, msg) = cni_error(&with("lo", "ADD"));
    assert_eq!(code, 4, "{msg}");
    for needle in [
        "CNI_IFNAME",
        "\"lo\"",
        "already has an interface of that name",
        "loopback",
    ] {
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    }
    assert_nothing_left(&net, "np-ifn", &c, &[], 0);
    with("lo", "DEL").ok();
    let lo = run_command(
        {
            let mut cmd = c.command("ip");
            cmd.args(["-o", "link", "show", "lo", "up"]);
            cmd
        },
        net.dir.path(),
        TIMEOUT,
    );
    assert!(lo.ok().stdout.contains("lo"), "lo is still up: {lo}");

    // Another plugin's interface, a veth too, under the name asked for: refused, and neither ADD's undoing nor
    // the DEL after it touch it.
    let mut cmd = c.command("ip");
    cmd.args([
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    run_command(cmd, net.dir.path(), TIMEOUT).ok();
    let (code, msg) = cni_error(&with("eth0", "ADD"));
    assert_eq!(code, 4, "{msg}");
    assert!(
        msg.contains("\"eth0\"") && msg.contains("already has an interface of that name"),
        "{msg}"
    );
    assert!(!msg.contains("loopback"), "{msg}");
    with("eth0", "DEL").ok();
    let mut links = link_names(&c, net.dir.path());
    links.sort();
    assert_eq!(links, ["eth0", "lo", "other0"]);
    assert!(net.allocated("np-ifn").is_empty());
    assert_eq!(
        net.host_sh("ip -o link show | grep -c -e veth -e polis-ifn || true")
            .ok()
            .stdout
            .trim(),
        "0"
    );

    // A free name works.
    let r = with("net1", "ADD").ok().json();
    assert!(cni_result_address(&r, 0).starts_with("198.18.24."), "{r}");
    with("net1", "DEL").ok();
}
