//! Names: a container's names on user networks, renames in the resolver records, and the per-container resolver
//! (dns-serve on 127.0.0.11).

use super::attach::ifname_order;
use super::records::user_network_names;
use super::*;

impl Core {
    /// The containers' own resolvers: `<id>/dns/` (records), `<id>/dns.pid`, `<id>/dns.log`, as polis-netplug's
    /// `dns-serve` keeps a network's under its data directory.
    pub(super) fn own_resolvers_dir(&self) -> PathBuf {
        self.config.network_dir().join("resolvers")
    }

    /// A container's attached endpoints on user networks with their networks, in the order it joined them.
    fn attached_user_networks(
        &self,
        container_id: &str,
    ) -> Result<Vec<(EndpointRecord, NetworkRecord)>> {
        let mut out: Vec<(EndpointRecord, NetworkRecord)> = self
            .container_networks(container_id)?
            .into_iter()
            .filter_map(|(e, n)| {
                let n = n?;
                (n.is_user_bridge() && e.attached.is_some()).then_some((e, n))
            })
            .collect();
        out.sort_by_key(|(e, _)| ifname_order(&e.ifname));
        Ok(out)
    }

    /// Rebuilds the records of container `id`'s own resolver from its networks' resolvers (nothing when it has no
    /// resolver of its own). Under [`own_resolvers_lock`].
    fn sync_own_resolver(&self, id: &str) -> Result<()> {
        let dir = polis_netplug::dns::records_dir(&self.own_resolvers_dir(), id);
        if !dir.is_dir() {
            return Ok(());
        }
        let netplug = self.netplug_dir();
        let networks: Vec<(String, Vec<NameRecord>)> = self
            .attached_user_networks(id)?
            .into_iter()
            .map(|(_, n)| {
                let records = polis_netplug::dns::read_records(&polis_netplug::dns::records_dir(
                    &netplug, &n.name,
                ));
                (n.name, records)
            })
            .collect();
        write_own_resolver_records(&dir, &own_resolver_records(&networks))
    }

    /// After an attachment came, went or was renamed: every container's own resolver answers its networks' names
    /// as they are now. Failures are logged.
    pub(super) fn sync_own_resolvers(&self) {
        let _lock = own_resolvers_lock();
        let Ok(entries) = std::fs::read_dir(self.own_resolvers_dir()) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let id = e.file_name().to_string_lossy().into_owned();
            if let Err(error) = self.sync_own_resolver(&id) {
                tracing::warn!(container = id, %error, "update the container's resolver");
            }
        }
    }

    /// A running container on two user networks or more gets a resolver of its own (then kept while it is on one
    /// at least), restarted when its networks' resolvers changed; other containers have none. Not for a
    /// container that names its own DNS servers (`--dns`). A failure is logged, and the container then asks its
    /// first user network's resolver, as Docker carries on without its embedded resolver.
    pub(super) async fn refresh_own_resolver(&self, record: &ContainerRecord) {
        let views = self.own_resolvers_dir();
        let has = views.join(&record.id).is_dir();
        let networks = self.attached_user_networks(&record.id).unwrap_or_default();
        let own_dns = record
            .host_config
            .dns
            .as_ref()
            .is_some_and(|d| !d.is_empty());
        let wanted = !own_dns && (networks.len() >= 2 || (has && !networks.is_empty()));
        let started = if wanted {
            match self.plan_own_resolver(record, &networks) {
                Ok(plan) => blocking(move || start_own_resolver(&plan)).await,
                Err(e) => Err(e),
            }
        } else {
            Ok(())
        };
        if let Err(error) = &started {
            tracing::warn!(container = record.id, %error, "the container's own resolver");
        }
        if (has && !wanted) || started.is_err() {
            let id = record.id.clone();
            let _ = blocking(move || {
                remove_own_resolver(&views, &id);
                Ok(())
            })
            .await;
        }
    }

    /// The container's own resolver, its records written: forwarding to the resolvers of its user networks.
    fn plan_own_resolver(
        &self,
        record: &ContainerRecord,
        networks: &[(EndpointRecord, NetworkRecord)],
    ) -> Result<OwnResolver> {
        let views = self.own_resolvers_dir();
        let dir = polis_netplug::dns::records_dir(&views, &record.id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::failed(dir.display(), e))?;
        {
            let _lock = own_resolvers_lock();
            self.sync_own_resolver(&record.id)?;
        }
        let mut upstreams: Vec<String> = Vec::new();
        for (e, _) in networks {
            if let Some(ns) = e.attached.as_ref().and_then(|a| a.nameservers.first())
                && !upstreams.contains(ns)
            {
                upstreams.push(ns.clone());
            }
        }
        if upstreams.is_empty() {
            return Err(Error::Failed(
                "none of the container's networks has a resolver to forward to".into(),
            ));
        }
        let paths = self.config.cni_paths();
        let binary = paths
            .iter()
            .map(|d| d.join(PLUGIN))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Failed(format!("no {PLUGIN} binary in {paths:?}")))?;
        Ok(OwnResolver {
            id: record.id.clone(),
            args: own_resolver_args(&views, &record.id, &upstreams),
            views,
            binary,
            netns: self.netns_path(&record.id),
        })
    }

    /// After `docker rename`: a running container's names on its user networks change at once, as Docker renames
    /// its endpoints' DNS records: in its networks' resolvers and in the containers' own resolvers. A container that
    /// does not run has nothing attached, and its next start registers the new name. Failures are logged.
    pub fn rename_in_networks(&self, container_id: &str) {
        let _guard = container_lock_blocking(container_id);
        if let Err(error) = self.rename_names(container_id) {
            tracing::warn!(container = container_id, %error, "rename the container's DNS names");
        }
        self.sync_own_resolvers();
    }

    /// Rewrites the container's records in its user networks' resolvers with the names its record has now (under
    /// its network lock, so that no ADD or DEL of it runs meanwhile).
    fn rename_names(&self, container_id: &str) -> Result<()> {
        use polis_netplug::dns::{attachment_names, read_records, records_dir, write_record};
        let Some(record) = self.db.get(container_id)? else {
            return Ok(());
        };
        let netplug = self.netplug_dir();
        for (mut e, n) in self.attached_user_networks(container_id)? {
            let (aliases, listed) = user_network_names(&record, &e);
            let runtime_config = json!({"aliases": { n.name.clone(): aliases }});
            let names = attachment_names(&n.name, container_id, None, runtime_config.as_object())
                .map_err(|e| Error::Failed(format!("network {}: {e}", n.name)))?;
            let dir = records_dir(&netplug, &n.name);
            // Only a record that is there: a DEL removes it, and it must not come back.
            if let Some(mut r) = read_records(&dir)
                .into_iter()
                .find(|r| r.container_id == container_id && r.ifname == e.ifname)
                && r.names != names
            {
                r.names = names;
                write_record(&dir, &r)
                    .map_err(|e| Error::Failed(format!("network {}: {e}", n.name)))?;
            }
            if let Some(a) = e.attached.as_mut()
                && a.dns_names != listed
            {
                a.dns_names = listed;
                self.db.put_endpoint(&e)?;
            }
        }
        Ok(())
    }
}

/// The records of a container's own resolver, with their file names: those of each of its user networks
/// (`networks`: the network's name and its resolver's records, in the order the container joined them), every
/// name also as `NAME.NETWORK`. A bare name that an earlier network has is left to that one, as Docker's resolver
/// answers from the first of the container's networks that knows the name.
fn own_resolver_records(networks: &[(String, Vec<NameRecord>)]) -> Vec<(String, NameRecord)> {
    let mut claimed: HashSet<String> = HashSet::new();
    let mut out = Vec::new();
    for (i, (network, records)) in networks.iter().enumerate() {
        let mut here: HashSet<String> = HashSet::new();
        let mut records = records.clone();
        records.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        for r in records {
            let mut names: Vec<String> = r
                .names
                .iter()
                .filter(|n| !claimed.contains(&n.to_ascii_lowercase()))
                .cloned()
                .collect();
            names.extend(r.names.iter().map(|n| format!("{n}.{network}")));
            here.extend(r.names.iter().map(|n| n.to_ascii_lowercase()));
            let file = format!("{i}-{}-{}.json", r.container_id, r.ifname);
            out.push((file, NameRecord { names, ..r }));
        }
        claimed.extend(here);
    }
    out
}

/// Makes `dir` hold exactly `records` (a record file is rewritten only when it changed, atomically, so the
/// resolver never reads half of one).
fn write_own_resolver_records(dir: &Path, records: &[(String, NameRecord)]) -> Result<()> {
    let mut wanted = HashSet::new();
    for (file, record) in records {
        let path = dir.join(file);
        let data =
            serde_json::to_vec(record).map_err(|e| Error::failed("encode a DNS record", e))?;
        if std::fs::read(&path).ok().as_deref() != Some(&data[..]) {
            polis_host::atomic::write_atomic_mode(&path, &data, 0o644)
                .map_err(|e| Error::failed(path.display(), e))?;
        }
        wanted.insert(std::ffi::OsString::from(file));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| Error::failed(dir.display(), e))?;
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name();
        if e.path().extension().is_some_and(|x| x == "json") && !wanted.contains(&name) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// The command line of a container's own resolver: polis-netplug's `dns-serve` on [`OWN_RESOLVER`], its records
/// under `<views>/<id>/dns`, forwarding to `upstreams`.
fn own_resolver_args(views: &Path, id: &str, upstreams: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        polis_netplug::dns::SERVE_COMMAND.into(),
        "--network".into(),
        id.into(),
        "--data-dir".into(),
        views.display().to_string(),
        "--listen".into(),
        OWN_RESOLVER.into(),
    ];
    for u in upstreams {
        args.push("--upstream".into());
        args.push(u.clone());
    }
    args
}

/// The pid and arguments (after the program) of container `id`'s own resolver, if its pid file names a live
/// (not zombie) `dns-serve` of `views` for it: a reused pid is not taken for it.
pub(super) fn own_resolver_process(views: &Path, id: &str) -> Option<(i32, Vec<String>)> {
    let pid: i32 = std::fs::read_to_string(polis_netplug::dns::pid_path(views, id))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .skip(1)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let zombie = stat
        .rsplit_once(')')
        .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'));
    let views_text = views.display().to_string();
    let pair = |flag: &str, value: &str| args.windows(2).any(|w| w[0] == flag && w[1] == value);
    let ours = args.first().map(String::as_str) == Some(polis_netplug::dns::SERVE_COMMAND)
        && pair("--network", id)
        && pair("--data-dir", &views_text);
    (ours && !zombie).then_some((pid, args))
}

/// Ends container `id`'s own resolver (SIGKILL: it keeps no state) and waits until it is gone.
fn kill_own_resolver(views: &Path, id: &str) {
    if let Some((pid, _)) = own_resolver_process(views, id) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while own_resolver_process(views, id).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = std::fs::remove_file(polis_netplug::dns::pid_path(views, id));
}

/// Removes container `id`'s own resolver: the process and its directory.
pub(super) fn remove_own_resolver(views: &Path, id: &str) {
    kill_own_resolver(views, id);
    let _lock = own_resolvers_lock();
    let dir = views.join(id);
    if let Err(e) = std::fs::remove_dir_all(&dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(container = id, error = %e, "remove the container's resolver");
    }
}

/// What a container's own resolver runs with.
struct OwnResolver {
    id: String,
    views: PathBuf,
    binary: PathBuf,
    netns: PathBuf,
    args: Vec<String>,
}

/// Starts the container's own resolver in its network namespace unless it runs with these arguments already (it
/// is restarted when they changed); waits until it has bound its sockets, then writes its pid file.
fn start_own_resolver(plan: &OwnResolver) -> Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    if own_resolver_process(&plan.views, &plan.id).is_some_and(|(_, args)| args == plan.args) {
        return Ok(());
    }
    kill_own_resolver(&plan.views, &plan.id);
    let dir = plan.views.join(&plan.id);
    let log_path = dir.join("dns.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::failed(log_path.display(), e))?;
    let netns =
        std::fs::File::open(&plan.netns).map_err(|e| Error::failed(plan.netns.display(), e))?;
    let fd = netns.as_raw_fd();
    let mut cmd = Command::new(&plan.binary);
    cmd.args(&plan.args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: setns and setsid are async-signal-safe; nothing else runs between fork and exec. `netns` outlives
    // the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        Error::failed(
            format!("start the container's resolver {}", plan.binary.display()),
            e,
        )
    })?;
    drop(netns);
    if let Err(why) = polis_netplug::dns::wait_ready(&mut child, OWN_RESOLVER_START) {
        return Err(Error::Failed(format!(
            "the container's resolver on {OWN_RESOLVER}: {why} (see {})",
            log_path.display()
        )));
    }
    let pid_file = polis_netplug::dns::pid_path(&plan.views, &plan.id);
    if let Err(e) = polis_host::atomic::write_atomic_mode(
        &pid_file,
        format!("{}\n", child.id()).as_bytes(),
        0o644,
    ) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(Error::failed(pid_file.display(), e));
    }
    // Reaped by polisd while it runs; it outlives polisd as the container does.
    std::thread::spawn(move || child.wait());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_record(id: &str, ifname: &str, names: &[&str], address: &str) -> NameRecord {
        NameRecord {
            container_id: id.into(),
            ifname: ifname.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            addresses: vec![address.parse().unwrap()],
        }
    }

    #[test]
    fn a_containers_own_resolver_knows_every_network_first_one_first() {
        let m1 = vec![
            name_record("c1", "eth0", &["one", "shared"], "198.18.96.2"),
            name_record("c3", "eth0", &["multi"], "198.18.96.3"),
        ];
        let m2 = vec![
            name_record("c2", "eth0", &["two", "zed", "Shared"], "198.18.97.2"),
            name_record("c3", "eth1", &["multi", "ex"], "198.18.97.3"),
        ];
        let got = own_resolver_records(&[("m1".into(), m1), ("m2".into(), m2)]);
        let files: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            files,
            [
                "0-c1-eth0.json",
                "0-c3-eth0.json",
                "1-c2-eth0.json",
                "1-c3-eth1.json"
            ]
        );
        let names = |i: usize| got[i].1.names.clone();
        assert_eq!(names(0), ["one", "shared", "one.m1", "shared.m1"]);
        // A bare name of the first network is its alone (case does not matter); NAME.NETWORK stays.
        assert_eq!(names(2), ["two", "zed", "two.m2", "zed.m2", "Shared.m2"]);
        assert_eq!(names(3), ["ex", "multi.m2", "ex.m2"]);
        assert_eq!(
            got[2].1.addresses,
            ["198.18.97.2".parse::<IpAddr>().unwrap()]
        );
        assert!(own_resolver_records(&[]).is_empty());
    }

    #[test]
    fn own_resolver_records_are_written_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let a = (
            "0-a-eth0.json".to_string(),
            name_record("a", "eth0", &["a1"], "198.18.96.2"),
        );
        let b = (
            "1-b-eth0.json".to_string(),
            name_record("b", "eth0", &["b1"], "198.18.97.2"),
        );
        write_own_resolver_records(dir.path(), &[a.clone(), b.clone()]).unwrap();
        assert_eq!(polis_netplug::dns::read_records(dir.path()).len(), 2);
        write_own_resolver_records(dir.path(), std::slice::from_ref(&b)).unwrap();
        assert_eq!(polis_netplug::dns::read_records(dir.path()), vec![b.1]);
    }

    #[test]
    fn the_own_resolver_runs_dns_serve_on_127_0_0_11() {
        let args = own_resolver_args(
            Path::new("/v"),
            "c1",
            &["198.18.96.1".into(), "198.18.97.1".into()],
        );
        assert_eq!(
            args,
            [
                "dns-serve",
                "--network",
                "c1",
                "--data-dir",
                "/v",
                "--listen",
                "127.0.0.11",
                "--upstream",
                "198.18.96.1",
                "--upstream",
                "198.18.97.1"
            ]
        );
        // And the daemon takes them.
        polis_netplug::dns::server::ServeOptions::parse(&args[1..]).unwrap();
        assert_eq!(ifname_order("eth10"), 10);
        assert!(ifname_order("eth2") < ifname_order("eth10"));
    }
}
