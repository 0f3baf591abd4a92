//! Published ports: the requests of a container's HostConfig and exposed ports, and host ports allocated for them.

use super::*;

/// `80/tcp` (or `80`): the port and protocol.
pub fn parse_port_key(key: &str) -> Result<(u16, String)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" {
        return Err(Error::Invalid(format!(
            "invalid port {key:?}: protocol {proto} is not supported (tcp or udp)"
        )));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok((p, proto)),
        _ => Err(Error::Invalid(format!("invalid port {key:?}"))),
    }
}

fn parse_host_ip(text: Option<&str>) -> Result<Option<IpAddr>> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None | Some("0.0.0.0") | Some("::") => Ok(None),
        Some(t) => t
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map(Some)
            .map_err(|_| Error::Invalid(format!("invalid host IP {t:?}"))),
    }
}

fn parse_host_ports(text: Option<&str>) -> Result<Option<(u16, u16)>> {
    let t = text.map(str::trim).unwrap_or("");
    if t.is_empty() || t == "0" {
        return Ok(None);
    }
    let bad = || Error::Invalid(format!("invalid host port {t:?}"));
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(bad);
    match t.split_once('-') {
        None => {
            let p = port(t)?;
            Ok(Some((p, p)))
        }
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a > b {
                return Err(bad());
            }
            Ok(Some((a, b)))
        }
    }
}

/// The ports a container publishes: `PortBindings`, and with `PublishAllPorts` every exposed port not bound there
/// (on a free host port).
pub fn port_requests(host: &HostConfig, exposed: &[String]) -> Result<Vec<PortRequest>> {
    let mut out = Vec::new();
    let mut bound: Vec<(u16, String)> = Vec::new();
    let mut keys: Vec<(&String, &Option<Vec<bollard_stubs::models::PortBinding>>)> =
        host.port_bindings.iter().flatten().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    for (key, bindings) in keys {
        let (container_port, protocol) = parse_port_key(key)?;
        bound.push((container_port, protocol.clone()));
        let bindings = bindings.clone().unwrap_or_default();
        for b in if bindings.is_empty() {
            vec![Default::default()]
        } else {
            bindings
        } {
            out.push(PortRequest {
                container_port,
                protocol: protocol.clone(),
                host_ip: parse_host_ip(b.host_ip.as_deref())?,
                host_ports: parse_host_ports(b.host_port.as_deref())?,
            });
        }
    }
    if host.publish_all_ports.unwrap_or(false) {
        let mut exposed = exposed.to_vec();
        exposed.sort();
        for key in exposed {
            let (container_port, protocol) = parse_port_key(&key)?;
            if !bound.contains(&(container_port, protocol.clone())) {
                bound.push((container_port, protocol.clone()));
                out.push(PortRequest {
                    container_port,
                    protocol,
                    host_ip: None,
                    host_ports: None,
                });
            }
        }
    }
    Ok(out)
}

/// Whether two publications want the same host port.
fn clash(a: &Published, protocol: &str, host_ip: Option<IpAddr>, port: u16) -> bool {
    a.protocol == protocol
        && a.host_port == port
        && (a.host_ip.is_none() || host_ip.is_none() || a.host_ip == host_ip)
}

/// Host ports for the requests: those asked for, or the first free one of `ephemeral`. A port another container
/// publishes is a conflict; `free` says whether the host itself leaves a port free (no process listens on it).
pub fn allocate_ports(
    requests: &[PortRequest],
    taken: &[Published],
    ephemeral: (u16, u16),
    free: &dyn Fn(&str, Option<IpAddr>, u16) -> bool,
) -> Result<Vec<Published>> {
    let mut out: Vec<Published> = Vec::new();
    for r in requests {
        let (lo, hi) = r.host_ports.unwrap_or(ephemeral);
        let shown = r
            .host_ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        let mut clashed = false;
        let mut busy = false;
        let mut chosen = None;
        for port in lo..=hi {
            if taken
                .iter()
                .chain(out.iter())
                .any(|t| clash(t, &r.protocol, r.host_ip, port))
            {
                clashed = true;
                continue;
            }
            if !free(&r.protocol, r.host_ip, port) {
                busy = true;
                continue;
            }
            chosen = Some(port);
            break;
        }
        let Some(host_port) = chosen else {
            let ports = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            };
            if r.host_ports.is_none() {
                return Err(Error::Failed(format!(
                    "no free host port for {}/{}",
                    r.container_port, r.protocol
                )));
            }
            return Err(if clashed && !busy {
                Error::Conflict(format!(
                    "Bind for {shown}:{ports} failed: port is already allocated"
                ))
            } else {
                Error::Failed(format!(
                    "driver failed programming external connectivity: listen {} {shown}:{ports}: bind: address already in use",
                    r.protocol
                ))
            });
        };
        out.push(Published {
            container_port: r.container_port,
            protocol: r.protocol.clone(),
            host_ip: r.host_ip,
            host_port,
        });
    }
    Ok(out)
}

/// Whether a host process leaves `port` free (a listener can bind it).
pub(super) fn host_port_free(protocol: &str, ip: Option<IpAddr>, port: u16) -> bool {
    let ip = ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    let addr = std::net::SocketAddr::new(ip, port);
    match protocol {
        "udp" => std::net::UdpSocket::bind(addr).is_ok(),
        _ => std::net::TcpListener::bind(addr).is_ok(),
    }
}

/// The kernel's ephemeral port range, where ports published without a host port come from (as Docker's).
pub(super) fn ephemeral_range() -> (u16, u16) {
    let text =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .filter_map(|p| p.parse::<u16>().ok());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) if a > 0 && a <= b => (a, b),
        _ => (32768, 60999),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::PortBinding;

    fn binding(ip: &str, port: &str) -> PortBinding {
        PortBinding {
            host_ip: Some(ip.into()),
            host_port: Some(port.into()),
        }
    }

    #[test]
    fn port_bindings_and_publish_all() {
        let host = HostConfig {
            port_bindings: Some(
                [
                    ("80/tcp".to_string(), Some(vec![binding("", "18080")])),
                    (
                        "53/udp".to_string(),
                        Some(vec![binding("127.0.0.1", "5300-5310")]),
                    ),
                ]
                .into(),
            ),
            publish_all_ports: Some(true),
            ..Default::default()
        };
        let exposed = ["80/tcp".to_string(), "443/tcp".to_string()];
        let r = port_requests(&host, &exposed).unwrap();
        assert_eq!(
            r,
            [
                PortRequest {
                    container_port: 53,
                    protocol: "udp".into(),
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    host_ports: Some((5300, 5310)),
                },
                PortRequest {
                    container_port: 80,
                    protocol: "tcp".into(),
                    host_ip: None,
                    host_ports: Some((18080, 18080)),
                },
                PortRequest {
                    container_port: 443,
                    protocol: "tcp".into(),
                    host_ip: None,
                    host_ports: None,
                },
            ]
        );
        let bad = HostConfig {
            port_bindings: Some([("80/sctp".to_string(), None)].into()),
            ..Default::default()
        };
        assert!(matches!(port_requests(&bad, &[]), Err(Error::Invalid(_))));
        let bad = HostConfig {
            port_bindings: Some([("80".to_string(), Some(vec![binding("", "x")]))].into()),
            ..Default::default()
        };
        assert!(matches!(port_requests(&bad, &[]), Err(Error::Invalid(_))));
    }

    #[test]
    fn ports_taken_by_another_container_conflict() {
        let req = |ports: Option<(u16, u16)>| PortRequest {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: None,
            host_ports: ports,
        };
        let taken = [Published {
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: 18080,
        }];
        let free = |_: &str, _: Option<IpAddr>, p: u16| p != 40001;
        let e = allocate_ports(&[req(Some((18080, 18080)))], &taken, (40000, 40010), &free)
            .unwrap_err();
        assert!(
            matches!(&e, Error::Conflict(m) if m.contains("0.0.0.0:18080") && m.contains("already allocated")),
            "{e}"
        );
        let got = allocate_ports(
            &[req(Some((18080, 18081))), req(None), req(None)],
            &taken,
            (40000, 40010),
            &free,
        )
        .unwrap();
        let ports: Vec<u16> = got.iter().map(|p| p.host_port).collect();
        assert_eq!(ports, [18081, 40000, 40002]);
        let e = allocate_ports(&[req(Some((40001, 40001)))], &[], (1, 2), &free).unwrap_err();
        assert!(
            matches!(&e, Error::Failed(m) if m.contains("address already in use")),
            "{e}"
        );
    }
}
