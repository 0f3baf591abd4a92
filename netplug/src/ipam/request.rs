//! Static address requests. CNI has three ways to ask for a given address, all honoured:
//! - the `ips` capability: the runtime puts `"runtimeConfig": {"ips": ["198.18.0.50/24"]}` into the network config
//!   (CNI conventions, "Well-known capabilities");
//! - `CNI_ARGS`: `IP=198.18.0.50` (several separated by commas), as host-local reads it;
//! - the network config's `"args": {"cni": {"ips": ["198.18.0.50"]}}` (CNI conventions, "args in network config").

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{Error, Result};

/// One requested address, with the prefix length if the request gave one (it must then be the subnet's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressRequest {
    pub address: IpAddr,
    pub prefix_len: Option<u8>,
}

impl From<IpAddr> for AddressRequest {
    fn from(address: IpAddr) -> Self {
        AddressRequest {
            address,
            prefix_len: None,
        }
    }
}

impl FromStr for AddressRequest {
    type Err = Error;

    /// `198.18.0.50` or `198.18.0.50/24` (the address need not be a network address: it is the host's).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::InvalidConfig {
            reason: format!(
                "requested address {s:?} is neither an IP address nor an address/prefix"
            ),
        };
        match s.split_once('/') {
            None => Ok(AddressRequest::from(
                s.parse::<IpAddr>().map_err(|_| bad())?,
            )),
            Some(_) => {
                let net: ipnet::IpNet = s.parse().map_err(|_| bad())?;
                Ok(AddressRequest {
                    address: net.addr(),
                    prefix_len: Some(net.prefix_len()),
                })
            }
        }
    }
}

impl fmt::Display for AddressRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix_len {
            Some(p) => write!(f, "{}/{p}", self.address),
            None => write!(f, "{}", self.address),
        }
    }
}

/// Every static address request of one ADD: `runtimeConfig.ips` and `args.cni.ips` from the network config (the
/// whole config as the plugin received it), then `IP=` of `CNI_ARGS` (the variable's value, if set). Repeats of an
/// address are merged; the same address with two different prefix lengths is an error. Other `CNI_ARGS` keys are
/// left to the caller.
pub fn static_requests(
    network_config: &Value,
    cni_args: Option<&str>,
) -> Result<Vec<AddressRequest>> {
    let mut requests: Vec<AddressRequest> = Vec::new();
    let mut add = |request: AddressRequest| -> Result<()> {
        match requests.iter_mut().find(|r| r.address == request.address) {
            None => requests.push(request),
            Some(seen) => match (seen.prefix_len, request.prefix_len) {
                (Some(a), Some(b)) if a != b => {
                    return Err(Error::InvalidConfig {
                        reason: format!(
                            "address {} is requested twice, as /{a} and as /{b}",
                            request.address
                        ),
                    });
                }
                (None, Some(_)) => seen.prefix_len = request.prefix_len,
                _ => {}
            },
        }
        Ok(())
    };

    for (path, value) in [
        (
            "runtimeConfig.ips",
            network_config.pointer("/runtimeConfig/ips"),
        ),
        ("args.cni.ips", network_config.pointer("/args/cni/ips")),
    ] {
        let list = match value {
            None | Some(Value::Null) => continue,
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(Error::InvalidConfig {
                    reason: format!("{path} must be a list of addresses, not {other}"),
                });
            }
        };
        for (i, item) in list.iter().enumerate() {
            let s = item.as_str().ok_or_else(|| Error::InvalidConfig {
                reason: format!("{path}[{i}] must be a string, not {item}"),
            })?;
            add(s.parse().map_err(|e: Error| Error::InvalidConfig {
                reason: format!("{path}[{i}]: {}", reason_of(e)),
            })?)?;
        }
    }

    for pair in cni_args.unwrap_or("").split(';').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').ok_or_else(|| Error::Environment {
            var: "CNI_ARGS",
            reason: format!("{pair:?} is not KEY=VALUE"),
        })?;
        if key != "IP" {
            continue;
        }
        for s in value.split(',').map(str::trim) {
            add(s.parse().map_err(|e: Error| Error::Environment {
                var: "CNI_ARGS",
                reason: format!("IP: {}", reason_of(e)),
            })?)?;
        }
    }
    Ok(requests)
}

fn reason_of(e: Error) -> String {
    match e {
        Error::InvalidConfig { reason } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(s: &str) -> AddressRequest {
        s.parse().unwrap()
    }

    #[test]
    fn all_three_sources_are_read_and_merged() {
        let config = json!({
            "name": "n",
            "runtimeConfig": {"ips": ["198.18.0.50/24", "fd00::50/64"]},
            "args": {"cni": {"ips": ["198.18.0.50", "198.18.1.7"]}}
        });
        let requests = static_requests(
            &config,
            Some("IgnoreUnknown=1;IP=198.18.2.9, 198.18.0.50;K8S_POD_NAME=p"),
        )
        .unwrap();
        assert_eq!(
            requests,
            vec![
                req("198.18.0.50/24"),
                req("fd00::50/64"),
                req("198.18.1.7"),
                req("198.18.2.9")
            ]
        );
        assert_eq!(requests[0].prefix_len, Some(24));
        assert_eq!(requests[2].prefix_len, None);
        assert_eq!(requests[0].to_string(), "198.18.0.50/24");
        assert!(
            static_requests(&json!({"name": "n"}), None)
                .unwrap()
                .is_empty()
        );
        assert!(
            static_requests(&json!({"name": "n"}), Some(""))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_requests_are_named() {
        let err =
            static_requests(&json!({"runtimeConfig": {"ips": ["198.18.0.x"]}}), None).unwrap_err();
        assert!(err.to_string().contains("runtimeConfig.ips[0]"), "{err}");
        let err =
            static_requests(&json!({"args": {"cni": {"ips": "198.18.0.5"}}}), None).unwrap_err();
        assert!(
            err.to_string().contains("args.cni.ips must be a list"),
            "{err}"
        );
        let err = static_requests(&json!({}), Some("IP=198.18.0.300")).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Environment {
                    var: "CNI_ARGS",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = static_requests(&json!({}), Some("IP")).unwrap_err();
        assert!(err.to_string().contains("not KEY=VALUE"), "{err}");
        let err = static_requests(
            &json!({"runtimeConfig": {"ips": ["198.18.0.5/24"]}}),
            Some("IP=198.18.0.5/16"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("requested twice, as /24 and as /16"),
            "{err}"
        );
    }
}
