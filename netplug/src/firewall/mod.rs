//! Masquerading, port mapping and isolation between networks, with nftables in a table of our own
//! (`inet polis`). Every change is one kernel transaction, so it is atomic: the table, its rules and a network's
//! elements go through `nft -f -` batches (when a network is new or the rules were removed), a container's port
//! mappings through nfnetlink directly ([`nfnetlink`]), so a common ADD or DEL runs no `nft` process.
//!
//! The rules are fixed; what changes is data in sets and maps, so a packet's lookup costs the same with one port
//! mapping or five hundred:
//!
//! - `masq4`/`masq6`: the networks' subnets; traffic from them to anything else is masqueraded.
//! - `ports4`/`ports6`: `protocol . host port` -> `container address . container port`, for traffic to any local
//!   address (also 127.0.0.1, and from the host itself); `hostports4`/`hostports6` the same keyed by host IP too.
//! - `cross`: `bridge . bridge` for every pair of distinct Polis bridges: routed traffic between two networks is
//!   dropped (networks are isolated by default). Traffic inside one bridge is switched, not routed, so it is not
//!   affected; a hairpin through a host port (from a container to a port mapped to its own network) is routed back
//!   into the same bridge and masqueraded, so the answer returns the same way.
//! - `internal`: the bridges of internal networks (Docker's `--internal`): routed traffic from such a bridge to any
//!   other interface, and from any other interface into it, is dropped (Docker's DOCKER-ISOLATION rules for an
//!   internal network). Traffic between two internal bridges is in `cross` as well. The runtime that knows which
//!   networks are internal (polisd) adds and removes these elements ([`internal_batch`], [`forget_internal_batch`]):
//!   [`flush_networks_batch`] leaves them alone.
//!
//! Departure from the first design (which named the `nftables` crate and `nft -j`; docs/ARCHITECTURE.md): the batches are nft's own text
//! syntax, which reads like the ruleset `nft list` prints and is what a person debugging it compares against. The
//! port mappings, which every ADD and DEL changes, are map elements sent over nfnetlink by our own small encoder.

use crate::error::{Error, Result};
use ipnet::IpNet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

mod nfnetlink;
use nfnetlink::Answer;
pub use nfnetlink::Nfnetlink;

pub const TABLE: &str = "polis";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One entry of the `portMappings` capability (CNI conventions.md), for one container address.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub host_port: u16,
    pub container_port: u16,
    /// None: every local address of the host.
    pub host_ip: Option<IpAddr>,
    pub container_ip: IpAddr,
}

impl PortMapping {
    fn family(&self) -> &'static str {
        if self.container_ip.is_ipv4() {
            "4"
        } else {
            "6"
        }
    }

    /// The map element's key, as `delete element` wants it and `map_keys` reads it back.
    pub fn key(&self) -> String {
        match self.host_ip {
            None => format!("{} . {}", self.protocol, self.host_port),
            Some(ip) => format!("{ip} . {} . {}", self.protocol, self.host_port),
        }
    }

    pub fn map(&self) -> String {
        match self.host_ip {
            None => format!("ports{}", self.family()),
            Some(_) => format!("hostports{}", self.family()),
        }
    }

    fn element(&self) -> String {
        format!(
            "{} : {} . {}",
            self.key(),
            self.container_ip,
            self.container_port
        )
    }
}

/// The table, its sets and maps (created when missing, kept when present) and its rules (rewritten: every
/// chain is flushed and filled in the same transaction).
pub fn base_batch() -> String {
    let t = format!("inet {TABLE}");
    let mut b = String::new();
    b.push_str(&format!("add table {t}\n"));
    for fam in ["4", "6"] {
        let addr = if fam == "4" { "ipv4_addr" } else { "ipv6_addr" };
        b.push_str(&format!(
            "add map {t} ports{fam} {{ type inet_proto . inet_service : {addr} . inet_service; }}\n"
        ));
        b.push_str(&format!(
            "add map {t} hostports{fam} {{ type {addr} . inet_proto . inet_service : {addr} . inet_service; }}\n"
        ));
        b.push_str(&format!(
            "add set {t} masq{fam} {{ type {addr}; flags interval; }}\n"
        ));
    }
    b.push_str(&format!("add set {t} cross {{ type ifname . ifname; }}\n"));
    b.push_str(&format!("add set {t} internal {{ type ifname; }}\n"));
    let chains = [
        (
            "prerouting",
            "type nat hook prerouting priority dstnat; policy accept;",
        ),
        (
            "output",
            "type nat hook output priority -100; policy accept;",
        ),
        (
            "postrouting",
            "type nat hook postrouting priority srcnat; policy accept;",
        ),
        (
            "forward",
            "type filter hook forward priority filter; policy accept;",
        ),
    ];
    for (name, spec) in chains {
        b.push_str(&format!("add chain {t} {name} {{ {spec} }}\n"));
        b.push_str(&format!("flush chain {t} {name}\n"));
    }
    for (fam, ip) in [("4", "ip"), ("6", "ip6")] {
        let local =
            format!("fib daddr type local dnat {ip} to meta l4proto . th dport map @ports{fam}");
        b.push_str(&format!("add rule {t} prerouting {local}\n"));
        b.push_str(&format!(
            "add rule {t} prerouting dnat {ip} to {ip} daddr . meta l4proto . th dport map @hostports{fam}\n"
        ));
        b.push_str(&format!("add rule {t} output {local}\n"));
        b.push_str(&format!(
            "add rule {t} output dnat {ip} to {ip} daddr . meta l4proto . th dport map @hostports{fam}\n"
        ));
        // Hairpin: a container reaching a port mapped into its own network; then everything leaving a network.
        b.push_str(&format!(
            "add rule {t} postrouting ct status dnat {ip} saddr @masq{fam} {ip} daddr @masq{fam} masquerade\n"
        ));
        b.push_str(&format!(
            "add rule {t} postrouting {ip} saddr @masq{fam} {ip} daddr != @masq{fam} masquerade\n"
        ));
    }
    // From the host's loopback to a container (127.0.0.1:PORT): the container must see a source it can answer.
    b.push_str(&format!(
        "add rule {t} postrouting ct status dnat ip saddr 127.0.0.0/8 masquerade\n"
    ));
    b.push_str(&format!(
        "add rule {t} postrouting ct status dnat ip6 saddr ::1 masquerade\n"
    ));
    b.push_str(&format!(
        "add rule {t} forward iifname . oifname @cross drop\n"
    ));
    // Internal networks: nothing routed out of their bridges, nothing routed into them.
    b.push_str(&format!(
        "add rule {t} forward iifname @internal oifname != @internal drop\n"
    ));
    b.push_str(&format!(
        "add rule {t} forward oifname @internal iifname != @internal drop\n"
    ));
    b
}

/// Marks `bridge` as an internal network's (see `internal` in the module's documentation). Needs the table (after
/// [`base_batch`]); adding an element that is there already changes nothing.
pub fn internal_batch(bridge: &str) -> String {
    format!("add element inet {TABLE} internal {{ \"{bridge}\" }}\n")
}

/// Takes `bridge` out of the internal networks' set; nothing changes when it is not in it (the element is added
/// and deleted in one transaction), and the table and set are made when missing, so that the batch never fails
/// for want of them.
pub fn forget_internal_batch(bridge: &str) -> String {
    let t = format!("inet {TABLE}");
    format!(
        "add table {t}\nadd set {t} internal {{ type ifname; }}\nadd element {t} internal {{ \"{bridge}\" }}\n\
         delete element {t} internal {{ \"{bridge}\" }}\n"
    )
}

/// Adds a network: its subnets to the masquerade sets, its bridge to the isolation pairs.
pub fn network_batch(
    bridge: &str,
    subnets: &[IpNet],
    other_bridges: &[String],
    masquerade: bool,
) -> String {
    let t = format!("inet {TABLE}");
    let mut b = String::new();
    if masquerade {
        for s in subnets {
            let fam = if matches!(s, IpNet::V4(_)) { "4" } else { "6" };
            b.push_str(&format!("add element {t} masq{fam} {{ {} }}\n", s.trunc()));
        }
    }
    for other in other_bridges.iter().filter(|o| *o != bridge) {
        b.push_str(&format!(
            "add element {t} cross {{ \"{bridge}\" . \"{other}\", \"{other}\" . \"{bridge}\" }}\n"
        ));
    }
    b
}

/// Empties the networks' sets (masquerade subnets and isolation pairs), so that the same transaction can fill
/// them again with [`network_batch`]es of the networks that remain: how a network whose first ADD failed is taken
/// out without touching another network's elements (an equal subnet, say). The port maps are left alone.
pub fn flush_networks_batch() -> String {
    ["masq4", "masq6", "cross"]
        .iter()
        .map(|set| format!("flush set inet {TABLE} {set}\n"))
        .collect()
}

pub fn add_mappings_batch(mappings: &[PortMapping]) -> String {
    mappings
        .iter()
        .map(|m| {
            format!(
                "add element inet {TABLE} {} {{ {} }}\n",
                m.map(),
                m.element()
            )
        })
        .collect()
}

/// Runs one batch as one transaction (`nft -f -`); nft's message names what it refused.
pub fn apply(op: &'static str, batch: &str) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut child = Command::new(nft_binary())
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Firewall {
            op,
            reason: format!("running nft: {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .map_err(|e| Error::Firewall {
                op,
                reason: format!("writing to nft: {e}"),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Firewall {
        op,
        reason: format!("waiting for nft: {e}"),
    })?;
    if !out.status.success() {
        return Err(Error::Firewall {
            op,
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn nft_binary() -> String {
    std::env::var("POLIS_NFT").unwrap_or_else(|_| "nft".into())
}

/// How many rules [`base_batch`] puts in the table: fewer in the kernel means someone removed them.
pub fn base_rule_count() -> usize {
    base_batch()
        .lines()
        .filter(|l| l.starts_with("add rule "))
        .count()
}

fn refused(op: &'static str, m: &PortMapping, errno: i32) -> Error {
    Error::Firewall {
        op,
        reason: format!(
            "map {} element {}: {}",
            m.map(),
            m.key(),
            std::io::Error::from_raw_os_error(errno)
        ),
    }
}

/// Adds a container's port mappings in one transaction, over nfnetlink. A host port that a map already holds
/// (for another container) is refused, by name, and then none is added.
pub fn add_mappings(nf: &mut Nfnetlink, mappings: &[PortMapping]) -> Result<()> {
    const OP: &str = "adding port mappings";
    let answers = nf.elements(OP, true, mappings)?;
    for (m, answer) in mappings.iter().zip(answers) {
        match answer {
            Answer::Done => {}
            Answer::Failed(libc::EEXIST | libc::EBUSY) => {
                return Err(Error::InvalidConfig {
                    reason: format!(
                        "host port {}/{}{} is already mapped to another container",
                        m.host_port,
                        m.protocol,
                        m.host_ip.map(|ip| format!(" on {ip}")).unwrap_or_default()
                    ),
                });
            }
            Answer::Failed(errno) => return Err(refused(OP, m, errno)),
        }
    }
    Ok(())
}

/// Removes port mappings, in one transaction when all are there; otherwise (someone flushed the ruleset or
/// deleted an element) those still there, one by one.
///
/// The kernel frees deleted elements after an RCU grace period, and closing the socket waits for that (about 15
/// ms here): keep the socket while other work goes on, and drop it last.
pub fn delete_mappings(nf: &mut Nfnetlink, mappings: &[PortMapping]) -> Result<()> {
    const OP: &str = "removing port mappings";
    if nf
        .elements(OP, false, mappings)?
        .iter()
        .all(|a| *a == Answer::Done)
    {
        return Ok(());
    }
    for m in mappings {
        match nf.elements(OP, false, std::slice::from_ref(m))?[0] {
            Answer::Done | Answer::Failed(libc::ENOENT) => {}
            Answer::Failed(errno) => return Err(refused(OP, m, errno)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tcp 8080 -> `container_ip`:80.
    pub(super) fn mapping(host_ip: Option<&str>, container_ip: &str) -> PortMapping {
        PortMapping {
            protocol: Protocol::Tcp,
            host_port: 8080,
            container_port: 80,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            container_ip: container_ip.parse().unwrap(),
        }
    }

    #[test]
    fn mappings_go_to_the_map_of_their_family_and_host_ip() {
        let any4 = mapping(None, "198.18.0.5");
        assert_eq!(
            add_mappings_batch(std::slice::from_ref(&any4)),
            "add element inet polis ports4 { tcp . 8080 : 198.18.0.5 . 80 }\n"
        );
        assert_eq!(any4.key(), "tcp . 8080");
        let host6 = mapping(Some("fd00::1"), "fd00:198:18::5");
        assert_eq!(
            add_mappings_batch(&[host6]),
            "add element inet polis hostports6 { fd00::1 . tcp . 8080 : fd00:198:18::5 . 80 }\n"
        );
    }

    #[test]
    fn networks_are_isolated_pairwise_and_masqueraded() {
        let subnets: Vec<IpNet> = vec![
            "198.18.0.0/24".parse().unwrap(),
            "fd00:198:18::/64".parse().unwrap(),
        ];
        let b = network_batch(
            "polis0",
            &subnets,
            &["polis0".into(), "polis1".into()],
            true,
        );
        assert!(
            b.contains("add element inet polis masq4 { 198.18.0.0/24 }"),
            "{b}"
        );
        assert!(
            b.contains("add element inet polis masq6 { fd00:198:18::/64 }"),
            "{b}"
        );
        assert!(
            b.contains("\"polis0\" . \"polis1\", \"polis1\" . \"polis0\""),
            "{b}"
        );
        assert!(!b.contains("\"polis0\" . \"polis0\""), "{b}");
    }

    /// `nft list map inet polis MAP`, the elements lines only.
    fn listed(map: &str) -> String {
        let out = Command::new("nft")
            .args(["list", "map", "inet", TABLE, map])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| l.contains(" : ") && !l.starts_with("type "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The base batch is accepted by the kernel, twice in a row (idempotent), inside a throw-away network
    /// namespace; mappings added over nfnetlink read back through nft as the text batches would have written them,
    /// a host port already mapped is refused, and DEL removes what is there, also when some is gone.
    #[test]
    fn the_rules_and_mappings_apply_in_a_private_network_namespace() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("needs root: skipped");
            return;
        }
        let result = std::thread::spawn(|| -> std::result::Result<(), String> {
            let s = |e: Error| e.to_string();
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            let mut nf = Nfnetlink::open().map_err(s)?;
            if nf.rule_count().map_err(s)? != 0 {
                return Err("rules before the table exists".into());
            }
            apply("base", &base_batch()).map_err(s)?;
            apply("base again", &base_batch()).map_err(s)?;
            let count = nf.rule_count().map_err(s)?;
            if count != base_rule_count() {
                return Err(format!("{count} rules, wanted {}", base_rule_count()));
            }
            let subnets: Vec<IpNet> = vec!["198.18.0.0/24".parse().unwrap()];
            apply("network", &network_batch("polis0", &subnets, &[], true)).map_err(s)?;
            // An internal network's bridge: marked twice (idempotent), forgotten twice (also when not marked).
            let internal = || {
                let out = Command::new("nft")
                    .args(["list", "set", "inet", TABLE, "internal"])
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).contains("\"br-int\"")
            };
            apply("internal", &internal_batch("br-int")).map_err(s)?;
            apply("internal again", &internal_batch("br-int")).map_err(s)?;
            if !internal() {
                return Err("br-int is not in the internal set".into());
            }
            apply("forget internal", &forget_internal_batch("br-int")).map_err(s)?;
            apply("forget internal again", &forget_internal_batch("br-int")).map_err(s)?;
            if internal() {
                return Err("br-int stays in the internal set".into());
            }
            let all = [
                mapping(None, "198.18.0.5"),
                mapping(Some("127.0.0.1"), "198.18.0.5"),
                mapping(None, "fd00:198:18::5"),
                mapping(Some("fd00::1"), "fd00:198:18::5"),
            ];
            add_mappings(&mut nf, &all).map_err(s)?;
            for (map, want) in [
                ("ports4", "tcp . 8080 : 198.18.0.5 . 80"),
                ("hostports4", "127.0.0.1 . tcp . 8080 : 198.18.0.5 . 80"),
                ("ports6", "tcp . 8080 : fd00:198:18::5 . 80"),
                ("hostports6", "fd00::1 . tcp . 8080 : fd00:198:18::5 . 80"),
            ] {
                let got = listed(map);
                if !got.contains(want) {
                    return Err(format!("{map}: {got:?}, wanted {want:?}"));
                }
            }
            // The same host port for another container: refused by name, and nothing of the batch is added.
            let other = [
                PortMapping {
                    host_port: 9090,
                    ..mapping(None, "198.18.0.6")
                },
                mapping(None, "198.18.0.6"),
            ];
            match add_mappings(&mut nf, &other) {
                Err(Error::InvalidConfig { reason }) if reason.contains("8080/tcp") => {}
                other => return Err(format!("a taken host port: {other:?}")),
            }
            if listed("ports4").contains("9090") {
                return Err("half a refused batch was applied".into());
            }
            // One element removed behind our back: DEL still removes the others.
            apply(
                "delete one",
                "delete element inet polis ports6 { tcp . 8080 }\n",
            )
            .map_err(s)?;
            delete_mappings(&mut nf, &all).map_err(s)?;
            for map in ["ports4", "hostports4", "ports6", "hostports6"] {
                if !listed(map).is_empty() {
                    return Err(format!("{map} keeps {}", listed(map)));
                }
            }
            delete_mappings(&mut nf, &all).map_err(s)?;
            Ok(())
        })
        .join()
        .unwrap();
        result.unwrap();
    }
}
