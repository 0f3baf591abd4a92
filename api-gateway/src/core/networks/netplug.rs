//! What polisd keeps in step with polis-netplug outside CNI: the CNI runner and data directory, the firewall's
//! internal set, a removed network's state.

use super::*;

/// Whether the firewall's table lacks polis-netplug's rules (someone flushed the ruleset, or nothing was ever
/// attached): the next ADD puts them back, without the internal networks' elements.
pub(super) fn firewall_rules_missing() -> bool {
    use polis_netplug::firewall::{Nfnetlink, base_rule_count};
    Nfnetlink::open()
        .and_then(|mut nf| nf.rule_count())
        .map_or(true, |count| count != base_rule_count())
}

/// Puts the bridges of internal networks into the firewall's `internal` set, with the whole of polis-netplug's
/// firewall first when its rules are missing; under polis-netplug's firewall lock.
pub(super) fn mark_internal(data_dir: &Path, bridges: &[String]) -> Result<()> {
    use polis_netplug::bridge_plugin::{full_batch, lock_firewall};
    use polis_netplug::firewall;
    if bridges.is_empty() {
        return Ok(());
    }
    let failed = |e: polis_netplug::Error| {
        Error::Failed(format!("isolate the internal networks {bridges:?}: {e}"))
    };
    std::fs::create_dir_all(data_dir).map_err(|e| Error::failed(data_dir.display(), e))?;
    let _lock = lock_firewall(data_dir).map_err(failed)?;
    let mut batch = String::new();
    if firewall_rules_missing() {
        batch.push_str(&full_batch(data_dir));
    }
    for b in bridges {
        batch.push_str(&firewall::internal_batch(b));
    }
    firewall::apply("marking the internal networks' bridges", &batch).map_err(failed)
}

/// Removes what polis-netplug keeps of a network that is gone: its data directory (addresses, firewall and DNS
/// records), its elements in the firewall (the other networks' are put back in the same transaction; an internal
/// network's bridge leaves the `internal` set) and its bridge device. Best effort: each failure is logged.
pub(super) fn forget_netplug_network(data_dir: &Path, name: &str, bridge: &str, internal: bool) {
    use polis_netplug::bridge_plugin::{lock_firewall, refill_network_elements};
    let dir = data_dir.join(name);
    if dir.is_dir() {
        // A resolver left running (its last DEL failed).
        if let Ok(pid) = std::fs::read_to_string(dir.join("dns.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
            && std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("dns-serve"))
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let result = (|| -> std::result::Result<(), String> {
            let _lock = lock_firewall(data_dir).map_err(|e| e.to_string())?;
            let recorded = dir.join("firewall/network.json").exists();
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            if !recorded {
                return Ok(());
            }
            refill_network_elements(data_dir).map_err(|e| e.to_string())
        })();
        if let Err(e) = result {
            tracing::warn!(network = name, error = %e, "remove the network's netplug state");
        }
    }
    if bridge.is_empty() {
        return;
    }
    // Only marked (mark_internal) with polis-netplug's data directory made.
    if internal && data_dir.is_dir() {
        let removed = polis_netplug::bridge_plugin::lock_firewall(data_dir).and_then(|_lock| {
            polis_netplug::firewall::apply(
                "removing an internal network's bridge",
                &polis_netplug::firewall::forget_internal_batch(bridge),
            )
        });
        if let Err(e) = removed {
            tracing::warn!(network = name, bridge, error = %e, "remove the internal network's firewall element");
        }
    }
    let deleted = polis_netplug::link::Netlink::open().and_then(|mut nl| {
        if nl.link_by_name(bridge)?.is_some() {
            nl.delete_link(bridge)?;
        }
        Ok(())
    });
    if let Err(e) = deleted {
        tracing::warn!(network = name, bridge, error = %e, "delete the bridge");
    }
}

impl Core {
    pub(super) fn cni(&self) -> CniRunner {
        CniRunner::new(
            self.config.cni_paths(),
            self.config.network_dir().join("cni-cache"),
        )
    }

    pub(super) fn netplug_dir(&self) -> PathBuf {
        self.config.network_dir().join("netplug")
    }

    /// The bridges of the internal networks.
    pub(super) fn internal_bridges(&self) -> Result<Vec<String>> {
        Ok(self
            .db
            .networks()?
            .into_iter()
            .filter(|n| n.internal && n.driver == Driver::Bridge && !n.bridge.is_empty())
            .map(|n| n.bridge)
            .collect())
    }
}
