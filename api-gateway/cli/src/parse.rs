//! The values of flags, parsed as docker parses them: published ports, mounts, environment (`-e`, `--env-file`),
//! sizes (`--memory 64m`), CPUs (`--cpus 0.5`), restart policies (`on-failure:3`), KEY=VALUE pairs and times.
//! Each error names the flag's value and what is wrong with it.

use polis_client::proto;
use std::collections::HashMap;
use std::path::Path;

/// `-p [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp]` (an IPv6 address in brackets).
pub fn port(spec: &str) -> Result<proto::PortBinding, String> {
    let bad = |why: &str| format!("invalid port {spec:?}: {why}");
    let (rest, protocol) = match spec.rsplit_once('/') {
        Some((rest, p @ ("tcp" | "udp"))) => (rest, p),
        Some((_, p)) => return Err(bad(&format!("unknown protocol {p:?} (tcp or udp)"))),
        None => (spec, "tcp"),
    };
    let (host_ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let (ip, rest) = after
            .split_once("]:")
            .ok_or_else(|| bad("no ']:' after an IPv6 address"))?;
        (ip.to_string(), rest)
    } else {
        match rest.matches(':').count() {
            0 | 1 => (String::new(), rest),
            2 => {
                let (ip, rest) = rest.split_once(':').expect("two colons");
                (ip.to_string(), rest)
            }
            _ => return Err(bad("too many colons")),
        }
    };
    let (host_port, container_port) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest),
    };
    let number = |p: &str, what: &str| -> Result<u32, String> {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n),
            _ => Err(bad(&format!("{what} {p:?} is not a port number"))),
        }
    };
    Ok(proto::PortBinding {
        container_port: number(container_port, "the container port")?,
        protocol: protocol.to_string(),
        host_ip,
        host_port: if host_port.is_empty() {
            0
        } else {
            number(host_port, "the host port")?
        },
    })
}

/// `-v SOURCE:/path[:ro|rw]` (SOURCE an absolute or `.`-relative host path, else a volume's name) or `-v /path`
/// (an anonymous volume).
pub fn volume(spec: &str, cwd: &Path) -> Result<proto::Mount, String> {
    let bad = |why: &str| format!("invalid volume {spec:?}: {why}");
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => return Err(bad("too many colons")),
    };
    if !target.starts_with('/') {
        return Err(bad("the path in the container must be absolute"));
    }
    let read_only = match mode {
        "" | "rw" => false,
        "ro" => true,
        other => return Err(bad(&format!("unknown mode {other:?} (ro or rw)"))),
    };
    let (kind, source) = if source.is_empty() {
        (proto::mount::Kind::Volume, String::new())
    } else if source.starts_with('/') {
        (proto::mount::Kind::Bind, source.to_string())
    } else if source == "." || source.starts_with("./") || source.starts_with("../") {
        (
            proto::mount::Kind::Bind,
            cwd.join(source).display().to_string(),
        )
    } else {
        (proto::mount::Kind::Volume, source.to_string())
    };
    Ok(proto::Mount {
        kind: kind.into(),
        source,
        target: target.to_string(),
        read_only,
    })
}

/// `-e K=V` as given; `-e K` takes K from `lookup` (this process's environment) and is dropped when unset.
pub fn env_var(
    spec: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, String> {
    let name = spec.split('=').next().unwrap_or_default();
    if name.is_empty() {
        return Err(format!("invalid environment variable {spec:?}: no name"));
    }
    if spec.contains('=') {
        return Ok(Some(spec.to_string()));
    }
    Ok(lookup(name).map(|v| format!("{name}={v}")))
}

/// An `--env-file` as docker reads it: a line per variable, leading white space ignored, empty lines and lines
/// starting with `#` skipped, `K=V` taken literally (no quotes removed), a bare `K` taken from `lookup`; a name
/// with white space in it is an error.
pub fn env_file(
    path: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, String> {
    let mut vars = Vec::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split('=').next().unwrap_or_default();
        let at = || format!("{}, line {}", path.display(), n + 1);
        if name.is_empty() {
            return Err(format!("{}: no variable name in {line:?}", at()));
        }
        if name.chars().any(char::is_whitespace) {
            return Err(format!("{}: variable {name:?} contains white space", at()));
        }
        if line.contains('=') {
            vars.push(line.to_string());
        } else if let Some(v) = lookup(name) {
            vars.push(format!("{name}={v}"));
        }
    }
    Ok(vars)
}

/// A size as docker's `--memory` takes it: a number (a fraction allowed) with an optional binary unit b, k, m, g, t
/// or p (any case, optionally followed by "b": 64m, 64mb, 1.5G).
pub fn size(spec: &str) -> Result<i64, String> {
    let bad =
        || format!("invalid size {spec:?} (a number with an optional unit: b, k, m, g, t, p)");
    let lower = spec.trim().to_ascii_lowercase();
    let digits = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(digits);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let unit = match unit
        .strip_suffix('b')
        .filter(|u| !u.is_empty())
        .unwrap_or(unit)
    {
        "" | "b" => 1u64,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return Err(bad()),
    };
    let bytes = number * unit as f64;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// `--cpus N` as billionths of a CPU.
pub fn nano_cpus(spec: &str) -> Result<i64, String> {
    let bad = || format!("invalid --cpus {spec:?} (a positive number of CPUs, such as 0.5)");
    let cpus: f64 = spec.trim().parse().map_err(|_| bad())?;
    if !cpus.is_finite() || cpus <= 0.0 || cpus > 1e6 {
        return Err(bad());
    }
    Ok((cpus * 1e9).round() as i64)
}

/// `--restart no|always|unless-stopped|on-failure[:MAX_RETRIES]`.
pub fn restart_policy(spec: &str) -> Result<proto::RestartPolicy, String> {
    let (name, retries) = match spec.split_once(':') {
        Some((n, r)) => (n, Some(r)),
        None => (spec, None),
    };
    let kind = match name {
        "no" | "" => proto::RestartPolicyKind::No,
        "always" => proto::RestartPolicyKind::Always,
        "unless-stopped" => proto::RestartPolicyKind::UnlessStopped,
        "on-failure" => proto::RestartPolicyKind::OnFailure,
        other => {
            return Err(format!(
                "invalid restart policy {other:?} (no, always, unless-stopped or on-failure[:MAX_RETRIES])"
            ));
        }
    };
    let max_retries = match retries {
        None => 0,
        Some(_) if kind != proto::RestartPolicyKind::OnFailure => {
            return Err(format!(
                "invalid restart policy {spec:?}: only on-failure takes a maximum retry count"
            ));
        }
        Some(r) => r
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("invalid restart policy {spec:?}: {r:?} is not a count"))?,
    };
    Ok(proto::RestartPolicy {
        kind: kind.into(),
        max_retries,
    })
}

/// `K=V` (a bare `K` is `K=""`).
pub fn key_value(spec: &str) -> Result<(String, String), String> {
    let (k, v) = spec.split_once('=').unwrap_or((spec, ""));
    if k.is_empty() {
        return Err(format!("invalid {spec:?}: expected KEY=VALUE"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Every `K=V` of a repeated flag, as a map.
pub fn key_values(specs: &[String]) -> Result<HashMap<String, String>, String> {
    specs.iter().map(|s| key_value(s)).collect()
}

/// `--filter KEY=VALUE`: the key must be one of `keys`.
pub fn filter<'a>(spec: &'a str, keys: &[&str]) -> Result<(&'a str, &'a str), String> {
    match spec.split_once('=') {
        Some((k, v)) if keys.contains(&k) => Ok((k, v)),
        Some((k, _)) => Err(format!(
            "invalid filter {k:?} (one of: {})",
            keys.join(", ")
        )),
        None => Err(format!("invalid filter {spec:?}: expected KEY=VALUE")),
    }
}

/// A time for `events --since/--until`, in Unix nanoseconds: Unix seconds (a fraction allowed), or a duration
/// before `now` (10s, 5m, 2h: a number and s, m or h).
pub fn time(spec: &str, now_unix_nano: i64) -> Result<i64, String> {
    let bad = || format!("invalid time {spec:?} (Unix seconds, or a duration such as 10s, 5m, 2h)");
    if let Ok(seconds) = spec.parse::<f64>() {
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(bad());
        }
        return Ok((seconds * 1e9) as i64);
    }
    let unit = match spec.chars().last() {
        Some('s') => 1e9,
        Some('m') => 60e9,
        Some('h') => 3600e9,
        _ => return Err(bad()),
    };
    let n: f64 = spec[..spec.len() - 1].parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok(now_unix_nano - (n * unit) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let p = port("8080:80").unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol.as_str()),
            (8080, 80, "tcp")
        );
        let p = port("127.0.0.1:53:53/udp").unwrap();
        assert_eq!(p.host_ip, "127.0.0.1");
        assert_eq!(
            (p.host_port, p.container_port, p.protocol.as_str()),
            (53, 53, "udp")
        );
        let p = port("80").unwrap();
        assert_eq!((p.host_port, p.container_port), (0, 80));
        let p = port("[::1]:8080:80").unwrap();
        assert_eq!((p.host_ip.as_str(), p.host_port), ("::1", 8080));
        let p = port("127.0.0.1::80").unwrap();
        assert_eq!((p.host_ip.as_str(), p.host_port), ("127.0.0.1", 0));
        assert!(port("x:80").unwrap_err().contains("host port"));
        assert!(port("80/sctp").unwrap_err().contains("protocol"));
        assert!(port("70000").is_err());
    }

    #[test]
    fn volumes() {
        let cwd = Path::new("/home/me");
        let m = volume("data:/data", cwd).unwrap();
        assert_eq!(m.kind, proto::mount::Kind::Volume as i32);
        assert_eq!(
            (m.source.as_str(), m.target.as_str(), m.read_only),
            ("data", "/data", false)
        );
        let m = volume("/srv:/srv:ro", cwd).unwrap();
        assert_eq!(m.kind, proto::mount::Kind::Bind as i32);
        assert!(m.read_only);
        let m = volume("./x:/x", cwd).unwrap();
        assert_eq!(m.source, "/home/me/./x");
        let m = volume("/anon", cwd).unwrap();
        assert_eq!(
            (m.kind, m.source.as_str()),
            (proto::mount::Kind::Volume as i32, "")
        );
        assert!(volume("data:rel", cwd).is_err());
        assert!(volume("data:/d:zz", cwd).is_err());
    }

    #[test]
    fn environment() {
        let lookup = |k: &str| (k == "HOME").then(|| "/root".to_string());
        assert_eq!(env_var("A=1=2", lookup).unwrap().as_deref(), Some("A=1=2"));
        assert_eq!(
            env_var("HOME", lookup).unwrap().as_deref(),
            Some("HOME=/root")
        );
        assert_eq!(env_var("UNSET", lookup).unwrap(), None);
        assert!(env_var("=x", lookup).is_err());
        let text = "\u{feff}# comment\n\n  A=1\nB=\"quoted\" \nHOME\nUNSET\nC=\n";
        assert_eq!(
            env_file(Path::new("f"), text, lookup).unwrap(),
            ["A=1", "B=\"quoted\" ", "HOME=/root", "C="]
        );
        let e = env_file(Path::new("f"), "A B=1\n", lookup).unwrap_err();
        assert!(e.contains("f, line 1") && e.contains("white space"), "{e}");
    }

    #[test]
    fn sizes_cpus_and_restart_policies() {
        assert_eq!(size("64m").unwrap(), 64 << 20);
        assert_eq!(size("64MB").unwrap(), 64 << 20);
        assert_eq!(size("1.5g").unwrap(), 3 << 29);
        assert_eq!(size("4096").unwrap(), 4096);
        assert_eq!(size("10b").unwrap(), 10);
        assert!(size("lots").is_err());
        assert!(size("1x").is_err());
        assert_eq!(nano_cpus("0.5").unwrap(), 500_000_000);
        assert_eq!(nano_cpus("2").unwrap(), 2_000_000_000);
        assert!(nano_cpus("0").is_err());
        assert!(nano_cpus("half").is_err());
        let r = restart_policy("on-failure:3").unwrap();
        assert_eq!(
            (r.kind, r.max_retries),
            (proto::RestartPolicyKind::OnFailure as i32, 3)
        );
        assert_eq!(
            restart_policy("unless-stopped").unwrap().kind,
            proto::RestartPolicyKind::UnlessStopped as i32
        );
        assert!(restart_policy("always:3").is_err());
        assert!(restart_policy("sometimes").is_err());
        assert!(restart_policy("on-failure:x").is_err());
    }

    #[test]
    fn pairs_filters_and_times() {
        assert_eq!(key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(key_value("a").unwrap(), ("a".into(), "".into()));
        assert!(key_value("=b").is_err());
        assert_eq!(filter("name=x", &["name"]).unwrap(), ("name", "x"));
        assert!(filter("nom=x", &["name"]).unwrap_err().contains("name"));
        assert_eq!(time("1.5", 0).unwrap(), 1_500_000_000);
        assert_eq!(time("10s", 100_000_000_000).unwrap(), 90_000_000_000);
        assert_eq!(time("1m", 100_000_000_000).unwrap(), 40_000_000_000);
        assert!(time("soon", 0).is_err());
    }
}
