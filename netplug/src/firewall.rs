//! Masquerading, port mapping and isolation between networks, with nftables in a table of our own
//! (`inet polis`), driven by `nft -f -` batches: one batch is one kernel transaction, so every change is atomic.
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
//!
//! Departure from DESIGN.md (which names the `nftables` crate and `nft -j`): the batches are nft's own text
//! syntax, which reads like the ruleset `nft list` prints and is what a person debugging it compares against; only
//! reading the maps back uses `nft -j`.

use crate::error::{Error, Result};
use ipnet::IpNet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

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
    b
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

pub fn delete_mappings_batch(mappings: &[PortMapping]) -> String {
    mappings
        .iter()
        .map(|m| {
            format!(
                "delete element inet {TABLE} {} {{ {} }}\n",
                m.map(),
                m.key()
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

/// The keys now in map `map` (`nft -j list map`), rendered as `delete element` wants them, so that a DEL removes
/// only what is there (nft 1.0.6 has no `destroy element`).
pub fn map_keys(map: &str) -> Result<Vec<String>> {
    let out = Command::new(nft_binary())
        .args(["-j", "list", "map", "inet", TABLE, map])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| Error::Firewall {
            op: "listing port mappings",
            reason: format!("running nft: {e}"),
        })?;
    if !out.status.success() {
        return Ok(Vec::new());
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| Error::Firewall {
            op: "listing port mappings",
            reason: format!("nft -j printed no JSON: {e}"),
        })?;
    let mut keys = Vec::new();
    for item in doc["nftables"].as_array().into_iter().flatten() {
        for elem in item["map"]["elem"].as_array().into_iter().flatten() {
            // [[key, value]] where key is {"concat": [a, b, ...]}
            if let Some(parts) = elem[0]["concat"].as_array() {
                let key: Vec<String> = parts
                    .iter()
                    .map(|p| match p {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                keys.push(key.join(" . "));
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(host_ip: Option<&str>, container_ip: &str) -> PortMapping {
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
        assert_eq!(
            delete_mappings_batch(&[any4]),
            "delete element inet polis ports4 { tcp . 8080 }\n"
        );
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

    /// The base batch is accepted by the kernel, twice in a row (idempotent), inside a throw-away network
    /// namespace; then a mapping is added and read back, and deleted.
    #[test]
    fn the_batches_apply_in_a_private_network_namespace() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("needs root: skipped");
            return;
        }
        let result = std::thread::spawn(|| -> std::result::Result<(), String> {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            apply("base", &base_batch()).map_err(|e| e.to_string())?;
            apply("base again", &base_batch()).map_err(|e| e.to_string())?;
            let subnets: Vec<IpNet> = vec!["198.18.0.0/24".parse().unwrap()];
            apply("network", &network_batch("polis0", &subnets, &[], true))
                .map_err(|e| e.to_string())?;
            let m = mapping(None, "198.18.0.5");
            apply("add", &add_mappings_batch(std::slice::from_ref(&m)))
                .map_err(|e| e.to_string())?;
            let keys = map_keys("ports4").map_err(|e| e.to_string())?;
            if keys != ["tcp . 8080"] {
                return Err(format!("keys {keys:?}"));
            }
            apply("delete", &delete_mappings_batch(&[m])).map_err(|e| e.to_string())?;
            if !map_keys("ports4").map_err(|e| e.to_string())?.is_empty() {
                return Err("mapping left".into());
            }
            Ok(())
        })
        .join()
        .unwrap();
        result.unwrap();
    }
}
