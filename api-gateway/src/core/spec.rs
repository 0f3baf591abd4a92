//! A container's configuration as Docker makes it: the create request merged with the image's config (Docker's
//! rules), then the runtime config (config.json) that polis-image made from the image, adjusted to the request:
//! process, hostname, the files Docker provides (/etc/hostname, /etc/hosts, /etc/resolv.conf), binds and tmpfs,
//! capabilities, privileges and resource limits.

use super::error::{Error, Result};
use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;

/// Docker's merge of a create request with the image's config (daemon `merge`): what the request leaves empty
/// comes from the image; Env and Labels are unions, the request winning.
pub fn merge(mut request: ContainerConfig, image: &Value) -> ContainerConfig {
    let ic = &image["config"];
    let strings = |v: &Value| -> Option<Vec<String>> {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
    };
    if request.user.as_deref().unwrap_or("").is_empty() {
        request.user = ic["User"].as_str().map(String::from);
    }
    let image_env = strings(&ic["Env"]).unwrap_or_default();
    let mut env = request.env.take().unwrap_or_default();
    for e in image_env {
        let key = e.split('=').next().unwrap_or_default();
        if !env.iter().any(|r| r.split('=').next() == Some(key)) {
            env.push(e);
        }
    }
    request.env = Some(env);
    if request.entrypoint.as_ref().is_none_or(|e| e.is_empty()) {
        if request.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            request.cmd = strings(&ic["Cmd"]);
        }
        if request.entrypoint.is_none() {
            request.entrypoint = strings(&ic["Entrypoint"]);
        }
    }
    if request.working_dir.as_deref().unwrap_or("").is_empty() {
        request.working_dir = ic["WorkingDir"].as_str().map(String::from);
    }
    if request.stop_signal.as_deref().unwrap_or("").is_empty() {
        request.stop_signal = ic["StopSignal"].as_str().map(String::from);
    }
    if let Some(ports) = ic["ExposedPorts"].as_object() {
        let mut all = request.exposed_ports.take().unwrap_or_default();
        for p in ports.keys() {
            if !all.contains(p) {
                all.push(p.clone());
            }
        }
        request.exposed_ports = Some(all);
    }
    if let Some(volumes) = ic["Volumes"].as_object() {
        let mut all = request.volumes.take().unwrap_or_default();
        for v in volumes.keys() {
            if !all.contains(v) {
                all.push(v.clone());
            }
        }
        request.volumes = Some(all);
    }
    let mut labels: HashMap<String, String> = ic["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    labels.extend(request.labels.take().unwrap_or_default());
    request.labels = Some(labels);
    request.healthcheck = super::health::merge(request.healthcheck.take(), ic);
    request
}

/// The process's arguments: Entrypoint then Cmd. Docker refuses a container with neither.
pub fn process_args(config: &ContainerConfig) -> Result<Vec<String>> {
    let mut args = config.entrypoint.clone().unwrap_or_default();
    args.extend(config.cmd.clone().unwrap_or_default());
    if args.is_empty() {
        return Err(Error::Invalid("No command specified".into()));
    }
    Ok(args)
}

/// Capability names as Docker's API takes them (`NET_ADMIN` or `CAP_NET_ADMIN`, any case, or `ALL`).
fn cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper == "ALL" || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// Every capability the kernel knows, for `privileged` and `--cap-add ALL`, in the kernel's order.
pub(crate) fn all_caps() -> Vec<String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|t| t.trim().parse::<u8>().ok())
        .unwrap_or(40);
    let mut caps: Vec<caps::Capability> = caps::all()
        .into_iter()
        .filter(|c| c.index() <= last)
        .collect();
    caps.sort_by_key(|c| c.index());
    caps.iter().map(|c| c.to_string()).collect()
}

/// The capabilities of the process: the image default set (Docker's), with `CapAdd` and `CapDrop` applied; all of
/// them for a privileged container. Names the kernel does not know are refused.
fn capabilities(current: &Value, host: &HostConfig) -> Result<Vec<String>> {
    if host.privileged.unwrap_or(false) {
        return Ok(all_caps());
    }
    let mut caps: Vec<String> = current["bounding"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let check = |c: &str| -> Result<String> {
        let name = cap_name(c);
        if name != "ALL" && name.parse::<caps::Capability>().is_err() {
            return Err(Error::Invalid(format!("unknown capability: \"{c}\"")));
        }
        Ok(name)
    };
    for c in host.cap_drop.clone().unwrap_or_default() {
        let name = check(&c)?;
        if name == "ALL" {
            caps.clear();
        } else {
            caps.retain(|x| *x != name);
        }
    }
    for c in host.cap_add.clone().unwrap_or_default() {
        let name = check(&c)?;
        if name == "ALL" {
            caps = all_caps();
        } else if !caps.contains(&name) {
            caps.push(name);
        }
    }
    Ok(caps)
}

/// Where `--init` puts the init in the container, as Docker.
const INIT_PATH: &str = "/sbin/docker-init";

/// The init binaries `--init` takes, in order: Debian's static tini (package tini), then Docker's docker-init.
const INIT_BINARIES: &[&str] = &["/usr/bin/tini-static", "/usr/bin/docker-init"];

/// The seccomp profile `--security-opt seccomp=...` asks for.
#[derive(Debug, Default)]
enum Seccomp {
    /// polisd's default profile (also `seccomp=builtin`).
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// A profile in Docker's format: the CLI reads `seccomp=FILE` and sends the file's text.
    Profile(Value),
}

/// `HostConfig.SecurityOpt`, read as dockerd's `parseSecurityOpt`.
#[derive(Debug, Default)]
struct SecurityOpts {
    seccomp: Seccomp,
    /// `no-new-privileges[=BOOL]`; None: the daemon's default.
    no_new_privileges: Option<bool>,
    /// `systempaths=unconfined`: no masked nor read-only paths in /proc and /sys.
    systempaths_unconfined: bool,
}

/// Reads `HostConfig.SecurityOpt`: `KEY=VALUE` (or the deprecated `KEY:VALUE`), or `no-new-privileges` alone.
/// AppArmor and SELinux options are taken only when they turn the feature off, polisd having neither.
fn security_opts(host: &HostConfig) -> Result<SecurityOpts> {
    let mut out = SecurityOpts::default();
    for opt in host.security_opt.iter().flatten() {
        let invalid = || Error::Invalid(format!("invalid --security-opt: {opt:?}"));
        if opt == "no-new-privileges" {
            out.no_new_privileges = Some(true);
            continue;
        }
        let (key, value) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .ok_or_else(invalid)?;
        match key {
            "seccomp" => {
                out.seccomp = match value {
                    "unconfined" => Seccomp::Unconfined,
                    "builtin" => Seccomp::Default,
                    text => Seccomp::Profile(serde_json::from_str(text).map_err(|e| {
                        Error::Invalid(format!("decoding the seccomp profile failed: {e}"))
                    })?),
                }
            }
            "no-new-privileges" => {
                out.no_new_privileges = Some(match value.to_ascii_lowercase().as_str() {
                    "1" | "t" | "true" => true,
                    "0" | "f" | "false" => false,
                    _ => return Err(invalid()),
                })
            }
            "apparmor" if value == "unconfined" => {}
            "label" if value == "disable" => {}
            "apparmor" | "label" => {
                let what = if key == "apparmor" {
                    "AppArmor"
                } else {
                    "SELinux"
                };
                return Err(Error::Invalid(format!(
                    "invalid --security-opt: {opt:?}: polisd has no {what} support (only {key}={} is accepted)",
                    if key == "apparmor" {
                        "unconfined"
                    } else {
                        "disable"
                    }
                )));
            }
            "systempaths" if value == "unconfined" => out.systempaths_unconfined = true,
            _ => return Err(invalid()),
        }
    }
    Ok(out)
}

/// Adjusts polis-image's config.json (`spec`) to the container: `dir` is the container's directory (for the files
/// Docker provides), `rootfs` the mounted rootfs (users are resolved in it).
pub fn adjust(
    spec: &mut Value,
    id: &str,
    config: &ContainerConfig,
    host: &HostConfig,
    volumes: &[super::volumes::MountSpec],
    dir: &Path,
    rootfs: &Path,
) -> Result<()> {
    let args = process_args(config)?;
    let process = &mut spec["process"];
    process["args"] = json!(args);
    process["terminal"] = json!(config.tty.unwrap_or(false));
    let hostname = config
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| id[..12.min(id.len())].to_string());
    let mut env: Vec<String> = config.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    env.push(format!("HOSTNAME={hostname}"));
    if config.tty.unwrap_or(false) && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    process["env"] = json!(env);
    let cwd = config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Invalid(format!(
            "the working directory '{cwd}' is invalid, it needs to be an absolute path"
        )));
    }
    process["cwd"] = json!(cwd);
    let user = polis_host::users::resolve_user(rootfs, config.user.as_deref().unwrap_or(""))
        .map_err(|e| {
            Error::Invalid(format!(
                "unable to find user {}: {e}",
                config.user.as_deref().unwrap_or("")
            ))
        })?;
    process["user"] =
        json!({"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids});
    let caps = capabilities(&process["capabilities"], host)?;
    process["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    let privileged = host.privileged.unwrap_or(false);
    let security = security_opts(host)?;
    // polisd runs as dockerd with `--no-new-privileges` (as /info's SecurityOptions say), which the request may
    // override; a privileged container is left free to gain privileges unless it asks otherwise.
    process["noNewPrivileges"] = json!(security.no_new_privileges.unwrap_or(!privileged));
    // Docker: no seccomp for a privileged container, whatever its profile.
    match (&security.seccomp, privileged) {
        (_, true) | (Seccomp::Unconfined, _) => {
            if let Some(o) = spec["linux"].as_object_mut() {
                o.remove("seccomp");
            }
        }
        (Seccomp::Default, false) => {
            spec["linux"]["seccomp"] = super::seccomp::default_profile(&caps)
        }
        (Seccomp::Profile(p), false) => {
            spec["linux"]["seccomp"] = super::seccomp::from_docker(p, &caps).map_err(|e| {
                Error::Invalid(format!("invalid --security-opt seccomp profile: {e}"))
            })?
        }
    }
    if host.init.unwrap_or(false) {
        // Docker's `--init`: its docker-init (tini) bind-mounted as /sbin/docker-init runs the command as its child.
        let init = INIT_BINARIES
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::Invalid("--init: no init binary on this host (install tini)".into())
            })?;
        let mut with_init = vec![INIT_PATH.to_string(), "--".into()];
        with_init.extend(args);
        spec["process"]["args"] = json!(with_init);
        let mut mounts = spec["mounts"].as_array().cloned().unwrap_or_default();
        mounts.push(
            json!({"destination": INIT_PATH, "type": "bind", "source": init,
                           "options": ["rbind", "ro", "rprivate"]}),
        );
        spec["mounts"] = json!(mounts);
    }
    spec["hostname"] = json!(hostname);
    spec["root"]["readonly"] = json!(host.readonly_rootfs.unwrap_or(false));

    // The files Docker provides: written in the container's directory, bind-mounted.
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).map_err(|e| Error::failed(etc.display(), e))?;
    let write = |name: &str, text: String| -> Result<std::path::PathBuf> {
        let path = etc.join(name);
        polis_host::atomic::write_atomic(&path, text.as_bytes())
            .map_err(|e| Error::failed(path.display(), e))?;
        Ok(path)
    };
    let hostname_file = write("hostname", format!("{hostname}\n"))?;
    let mut hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    );
    for extra in host.extra_hosts.clone().unwrap_or_default() {
        let Some((name, address)) = extra.split_once(':') else {
            return Err(Error::Invalid(format!(
                "invalid extra host {extra:?}: expected HOST:IP"
            )));
        };
        if address.parse::<std::net::IpAddr>().is_err() {
            return Err(Error::Invalid(format!(
                "invalid IP address in add-host: {address:?}"
            )));
        }
        hosts.push_str(&format!("{address}\t{name}\n"));
    }
    let hosts_file = write("hosts", hosts)?;
    let resolv_file = write("resolv.conf", resolv_conf(host))?;
    let mut mounts: Vec<Value> = spec["mounts"].as_array().cloned().unwrap_or_default();
    for (target, source) in [
        ("/etc/hostname", &hostname_file),
        ("/etc/hosts", &hosts_file),
        ("/etc/resolv.conf", &resolv_file),
    ] {
        mounts.push(
            json!({"destination": target, "type": "bind", "source": source,
                           "options": ["rbind", "rprivate"]}),
        );
    }
    for m in volumes {
        let mut options = vec![
            "rbind".to_string(),
            if m.rw { "rw" } else { "ro" }.to_string(),
            m.propagation.clone(),
        ];
        if m.kind == "volume" {
            options.push("nosuid".into());
            options.push("nodev".into());
        }
        mounts.push(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": options}));
    }
    for (target, options) in host.tmpfs.clone().unwrap_or_default() {
        if !target.starts_with('/') {
            return Err(Error::Invalid(format!(
                "invalid tmpfs mount point {target:?}: not absolute"
            )));
        }
        let mut opts = vec!["nosuid".to_string(), "nodev".into(), "noexec".into()];
        opts.extend(
            options
                .split(',')
                .filter(|o| !o.is_empty())
                .map(String::from),
        );
        mounts.push(
            json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": opts}),
        );
    }
    spec["mounts"] = json!(mounts);

    let linux = &mut spec["linux"];
    linux["cgroupsPath"] = json!(format!("/polis/{id}"));
    if privileged || security.systempaths_unconfined {
        linux["maskedPaths"] = json!([]);
        linux["readonlyPaths"] = json!([]);
    }
    if host.network_mode.as_deref() == Some("host")
        && let Some(ns) = linux["namespaces"].as_array_mut()
    {
        ns.retain(|n| n["type"] != "network");
    }
    let mut resources = json!({});
    if let Some(m) = host.memory.filter(|m| *m > 0) {
        resources["memory"] = json!({"limit": m});
    }
    if let Some(shares) = host.cpu_shares.filter(|s| *s > 0) {
        resources["cpu"]["shares"] = json!(shares);
    }
    if let Some(quota) = host.cpu_quota.filter(|q| *q > 0) {
        resources["cpu"]["quota"] = json!(quota);
        resources["cpu"]["period"] = json!(host.cpu_period.filter(|p| *p > 0).unwrap_or(100_000));
    }
    if let Some(cpus) = host.nano_cpus.filter(|n| *n > 0) {
        resources["cpu"]["quota"] = json!(cpus / 10_000);
        resources["cpu"]["period"] = json!(100_000);
    }
    if let Some(pids) = host.pids_limit.filter(|p| *p > 0) {
        resources["pids"] = json!({"limit": pids});
    }
    if resources.as_object().is_some_and(|o| !o.is_empty()) {
        linux["resources"] = resources;
    }
    Ok(())
}

/// /etc/resolv.conf: the request's DNS settings, else the host's file without loopback name servers (which do not
/// answer inside the container's network namespace), as Docker does.
fn resolv_conf(host: &HostConfig) -> String {
    let dns = host.dns.clone().unwrap_or_default();
    let search = host.dns_search.clone().unwrap_or_default();
    let options = host.dns_options.clone().unwrap_or_default();
    let host_text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    if dns.is_empty() {
        for line in host_text.lines() {
            let loopback = line
                .strip_prefix("nameserver")
                .map(|a| a.trim())
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
                .is_some_and(|a| a.is_loopback());
            if line.starts_with("nameserver") && !loopback {
                out.push_str(line);
                out.push('\n');
            }
        }
    } else {
        for d in &dns {
            out.push_str(&format!("nameserver {d}\n"));
        }
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    } else if let Some(l) = host_text.lines().find(|l| l.starts_with("search ")) {
        out.push_str(l);
        out.push('\n');
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Value {
        json!({"config": {
            "Env": ["PATH=/bin", "A=image"], "Cmd": ["sh"], "Entrypoint": null, "User": "app",
            "WorkingDir": "/srv", "Labels": {"l": "image", "m": "image"}, "ExposedPorts": {"80/tcp": {}},
            "StopSignal": "SIGQUIT"
        }})
    }

    #[test]
    fn the_request_wins_and_the_image_fills_in() {
        let req = ContainerConfig {
            env: Some(vec!["A=req".into()]),
            labels: Some([("m".to_string(), "req".to_string())].into()),
            ..Default::default()
        };
        let c = merge(req, &image());
        assert_eq!(c.env.as_ref().unwrap(), &["A=req", "PATH=/bin"]);
        assert_eq!(c.cmd.as_ref().unwrap(), &["sh"]);
        assert_eq!(c.user.as_deref(), Some("app"));
        assert_eq!(c.working_dir.as_deref(), Some("/srv"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(c.labels.as_ref().unwrap()["m"], "req");
        assert_eq!(c.labels.as_ref().unwrap()["l"], "image");
        assert_eq!(c.exposed_ports.as_ref().unwrap(), &["80/tcp"]);
    }

    #[test]
    fn an_entrypoint_in_the_request_drops_the_image_cmd() {
        let req = ContainerConfig {
            entrypoint: Some(vec!["/bin/echo".into()]),
            ..Default::default()
        };
        let c = merge(req, &image());
        assert_eq!(process_args(&c).unwrap(), ["/bin/echo"]);
        let none = merge(ContainerConfig::default(), &json!({"config": {}}));
        assert!(matches!(process_args(&none), Err(Error::Invalid(_))));
    }

    fn opts(list: &[&str]) -> Result<SecurityOpts> {
        security_opts(&HostConfig {
            security_opt: Some(list.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        })
    }

    #[test]
    fn security_options_as_dockerd_reads_them() {
        let o = opts(&[
            "seccomp=unconfined",
            "no-new-privileges",
            "apparmor=unconfined",
            "label:disable",
        ])
        .unwrap();
        assert!(matches!(o.seccomp, Seccomp::Unconfined));
        assert_eq!(o.no_new_privileges, Some(true));
        let o = opts(&[
            "no-new-privileges=false",
            "seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}",
        ])
        .unwrap();
        assert_eq!(o.no_new_privileges, Some(false));
        assert!(matches!(o.seccomp, Seccomp::Profile(p) if p["defaultAction"] == "SCMP_ACT_ALLOW"));
        assert!(
            opts(&["systempaths=unconfined"])
                .unwrap()
                .systempaths_unconfined
        );
        for (bad, says) in [
            ("apparmor=docker-default", "apparmor=docker-default"),
            ("label=type:svirt_t", "SELinux"),
            ("bogus=1", "invalid --security-opt"),
            ("nonsense", "invalid --security-opt"),
            ("no-new-privileges=maybe", "invalid --security-opt"),
            ("seccomp=/not/json", "seccomp profile"),
        ] {
            assert!(
                matches!(opts(&[bad]), Err(Error::Invalid(m)) if m.contains(says)),
                "{bad}"
            );
        }
    }

    #[test]
    fn capabilities_are_added_dropped_and_checked() {
        let current = json!({"bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]});
        let host = HostConfig {
            cap_add: Some(vec!["net_admin".into()]),
            cap_drop: Some(vec!["NET_RAW".into()]),
            ..Default::default()
        };
        assert_eq!(
            capabilities(&current, &host).unwrap(),
            ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN"]
        );
        let bad = HostConfig {
            cap_add: Some(vec!["FLY".into()]),
            ..Default::default()
        };
        assert!(
            matches!(capabilities(&current, &bad), Err(Error::Invalid(m)) if m.contains("FLY"))
        );
    }
}
