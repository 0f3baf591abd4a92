//! A container's network namespace (made, named in config.json, removed) and the files naming its network (hosts,
//! resolv.conf).

use super::dns::own_resolver_process;
use super::*;

/// /etc/hosts with the container's own addresses for its hostname (127.0.1.1 when it has none).
pub fn hosts_with_addresses(text: &str, hostname: &str, addresses: &[IpAddr]) -> String {
    let mine = |line: &str| {
        let mut words = line.split_whitespace();
        let addr = words.next().and_then(|a| a.parse::<IpAddr>().ok());
        let names: Vec<&str> = words.collect();
        addr.is_some_and(|a| !(a.is_loopback() && a != IpAddr::from([127, 0, 1, 1])))
            && names == [hostname]
    };
    let mut out: String = text
        .lines()
        .filter(|l| !mine(l))
        .map(|l| format!("{l}\n"))
        .collect();
    if addresses.is_empty() {
        out.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    for a in addresses {
        out.push_str(&format!("{a}\t{hostname}\n"));
    }
    out
}

/// resolv.conf naming `resolver` as the only name server (search and options kept).
pub fn resolv_with_resolver(text: &str, resolver: &str) -> String {
    let mut out = format!("nameserver {resolver}\n");
    for l in text
        .lines()
        .filter(|l| !l.trim_start().starts_with("nameserver"))
    {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// config.json's network namespace: joined at `path` (made when None: a fresh one, as the runtime makes it).
pub fn set_network_namespace(spec: &mut Value, path: &Path) -> bool {
    let entry = json!({"type": "network", "path": path.display().to_string()});
    let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() else {
        spec["linux"]["namespaces"] = json!([entry]);
        return true;
    };
    match namespaces.iter_mut().find(|n| n["type"] == "network") {
        Some(n) if *n == entry => false,
        Some(n) => {
            *n = entry;
            true
        }
        None => {
            namespaces.push(entry);
            true
        }
    }
}

/// Makes a network namespace bind-mounted at `path`, with its loopback up.
pub(super) fn make_netns(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::failed(dir.display(), e))?;
    }
    std::fs::File::create(path).map_err(|e| Error::failed(path.display(), e))?;
    let target = path.to_path_buf();
    // A thread of its own enters the new namespace, and ends: the mount keeps the namespace.
    let made = std::thread::spawn(move || -> Result<()> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::failed("unshare the network namespace", e))?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| Error::failed(format!("bind-mount {}", target.display()), e))?;
        polis_netplug::link::Netlink::open()
            .and_then(|mut nl| nl.set_loopback_up())
            .map_err(|e| Error::failed("set lo up", e))
    })
    .join()
    .unwrap_or_else(|_| {
        Err(Error::Failed(
            "the network namespace thread panicked".into(),
        ))
    });
    if made.is_err() {
        remove_netns(path);
    }
    made
}

/// Unmounts and removes a network namespace file (nothing when there is none).
pub(super) fn remove_netns(path: &Path) {
    while nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "remove network namespace");
    }
}

impl Core {
    pub(super) fn netns_path(&self, container_id: &str) -> PathBuf {
        self.config.netns_dir().join(container_id)
    }

    /// Rewrites the container's /etc/hosts (its addresses) and, on a user network, /etc/resolv.conf (the
    /// network's resolver) in place, so that a running container sees them.
    pub(super) fn refresh_files(&self, record: &ContainerRecord) -> Result<()> {
        let etc = self.config.containers_dir().join(&record.id).join("etc");
        let hostname = record.hostname();
        let mut addresses = Vec::new();
        let mut user_resolver = None;
        let mut bridge_resolver = None;
        for (e, n) in self.container_networks(&record.id)? {
            let (Some(a), Some(n)) = (e.attached, n) else {
                continue;
            };
            addresses.extend(a.addresses.iter().map(|a| a.addr()));
            let first = a.nameservers.first().cloned();
            if n.is_user_bridge() {
                user_resolver = user_resolver.or(first);
            } else {
                bridge_resolver = bridge_resolver.or(first);
            }
        }
        let write = |name: &str, text: String| -> Result<()> {
            let path = etc.join(name);
            std::fs::write(&path, text).map_err(|e| Error::failed(path.display(), e))
        };
        let hosts = std::fs::read_to_string(etc.join("hosts")).unwrap_or_default();
        write("hosts", hosts_with_addresses(&hosts, &hostname, &addresses))?;
        if record.host_config.dns.as_ref().is_none_or(|d| d.is_empty()) {
            // The file as made at create (the host's servers), kept beside it the first time.
            let base = match std::fs::read_to_string(etc.join("resolv.conf.host")) {
                Ok(t) => t,
                Err(_) => {
                    let t = std::fs::read_to_string(etc.join("resolv.conf")).unwrap_or_default();
                    write("resolv.conf.host", t.clone())?;
                    t
                }
            };
            let has_server = base
                .lines()
                .any(|l| l.trim_start().starts_with("nameserver"));
            // Names of user networks come from the container's own resolver when it is on several, else from
            // its network's resolver (which forward the rest to the host's); on the default bridge the host's
            // servers stay, polis-netplug's resolver only when the host has none usable.
            let own = own_resolver_process(&self.own_resolvers_dir(), &record.id)
                .is_some()
                .then(|| OWN_RESOLVER.to_string());
            let resolver =
                own.or(user_resolver)
                    .or(if has_server { None } else { bridge_resolver });
            let text = match resolver {
                Some(r) => resolv_with_resolver(&base, &r),
                None => base,
            };
            write("resolv.conf", text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_resolv_conf_name_the_container() {
        let text = "127.0.0.1\tlocalhost\n127.0.1.1\tabc\n10.9.9.9\textra\n";
        let ip: IpAddr = "198.18.201.2".parse().unwrap();
        let with = hosts_with_addresses(text, "abc", &[ip]);
        assert_eq!(
            with,
            "127.0.0.1\tlocalhost\n10.9.9.9\textra\n198.18.201.2\tabc\n"
        );
        assert_eq!(hosts_with_addresses(&with, "abc", &[ip]), with);
        assert_eq!(
            hosts_with_addresses(&with, "abc", &[]),
            "127.0.0.1\tlocalhost\n10.9.9.9\textra\n127.0.1.1\tabc\n"
        );
        let resolv = "nameserver 10.0.0.53\nsearch example.org\noptions ndots:2\n";
        assert_eq!(
            resolv_with_resolver(resolv, "198.18.201.1"),
            "nameserver 198.18.201.1\nsearch example.org\noptions ndots:2\n"
        );
    }

    #[test]
    fn the_network_namespace_is_named_in_config_json() {
        let mut spec = json!({"linux": {"namespaces": [{"type": "pid"}, {"type": "network"}]}});
        assert!(set_network_namespace(
            &mut spec,
            Path::new("/run/polis/netns/c1")
        ));
        assert_eq!(
            spec["linux"]["namespaces"][1],
            json!({"type": "network", "path": "/run/polis/netns/c1"})
        );
        assert!(!set_network_namespace(
            &mut spec,
            Path::new("/run/polis/netns/c1")
        ));
    }
}
