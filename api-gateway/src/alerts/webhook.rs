//! Notifications to webhook receivers in Alertmanager's webhook format (version 4): one POST per transition, a
//! group of one alert, retried with a doubling delay when the receiver cannot be reached or answers other than
//! 2xx. Receivers are http:// URLs (the receiver on this machine or its network; TLS is not spoken).

use super::rules::Alert;
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// A webhook URL: `http://HOST[:PORT][/PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub authority: String,
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> std::result::Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: only http:// webhook URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: no host, or user information in the URL"));
        }
        // A port after the host (after the brackets of an IPv6 address), else HTTP's 80.
        let host_end = if authority.starts_with('[') {
            authority
                .find(']')
                .map(|i| i + 1)
                .unwrap_or(authority.len())
        } else {
            authority.find(':').unwrap_or(authority.len())
        };
        let authority = match authority[host_end..].strip_prefix(':') {
            Some(port) if port.parse::<u16>().is_ok() => authority.to_string(),
            Some(_) => return Err(format!("{url:?}: a bad port")),
            None if host_end == authority.len() => format!("{authority}:80"),
            None => return Err(format!("{url:?}: a bad host")),
        };
        Ok(Target {
            authority,
            path: path.to_string(),
        })
    }
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Alertmanager's zero time, for an alert that has not ended.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One alert in Alertmanager's shape (webhook `alerts[]`, API v2 `GET /alerts`).
pub fn alert_json(alert: &Alert) -> Value {
    let status = if alert.ends_at.is_some() {
        "resolved"
    } else {
        "firing"
    };
    json!({
        "status": status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "startsAt": rfc3339(alert.starts_at),
        "endsAt": alert.ends_at.map(rfc3339).unwrap_or_else(|| ZERO_TIME.to_string()),
        "generatorURL": "",
        "fingerprint": alert.fingerprint(),
    })
}

/// The webhook body of one transition (`status` of the alert; the group is the alert alone).
pub fn payload(alert: &Alert) -> Value {
    let one = alert_json(alert);
    let name = alert.labels.get("alertname").cloned().unwrap_or_default();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{name}\", id=\"{}\"}}", alert.labels.get("id").map(String::as_str).unwrap_or("")),
        "truncatedAlerts": 0,
        "status": one["status"],
        "receiver": "polisd",
        "groupLabels": {"alertname": name},
        "commonLabels": alert.labels,
        "commonAnnotations": alert.annotations,
        "externalURL": "",
        "alerts": [one],
    })
}

/// POSTs `body` to `url` once; Ok when the receiver answered 2xx.
async fn post(target: &Target, body: &[u8]) -> Result<()> {
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(&target.authority),
    )
    .await
    .context("connect: timed out")?
    .context("connect")?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
    tokio::spawn(connection);
    let request = hyper::Request::post(&target.path)
        .header(hyper::header::HOST, &target.authority)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("polisd/", env!("CARGO_PKG_VERSION")),
        )
        .body(axum::body::Body::from(body.to_vec()))
        .context("build the request")?;
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .context("no answer within 10 s")?
        .context("send")?;
    if !response.status().is_success() {
        bail!("the receiver answered {}", response.status());
    }
    Ok(())
}

/// Delivers one notification to `url`, with up to `attempts` tries a doubling delay apart (1 s, 2 s, 4 s, ...).
pub async fn deliver(url: String, body: Vec<u8>, attempts: u32) {
    let target = match Target::parse(&url) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "alert webhook");
            return;
        }
    };
    let mut delay = Duration::from_secs(1);
    for attempt in 1..=attempts.max(1) {
        match post(&target, &body).await {
            Ok(()) => return,
            Err(e) if attempt < attempts => {
                tracing::warn!(%url, attempt, error = %format!("{e:#}"), "alert webhook failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => {
                tracing::error!(%url, attempts, error = %format!("{e:#}"), "alert webhook failed; giving up");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn urls() {
        assert_eq!(
            Target::parse("http://127.0.0.1:9099/hook").unwrap(),
            Target {
                authority: "127.0.0.1:9099".into(),
                path: "/hook".into()
            }
        );
        assert_eq!(
            Target::parse("http://alerts.local").unwrap().authority,
            "alerts.local:80"
        );
        assert!(
            Target::parse("https://x/")
                .unwrap_err()
                .contains("only http://")
        );
        assert!(Target::parse("http://user:pw@x/").is_err());
        assert!(Target::parse("http://x:port/").is_err());
    }

    /// The fields Alertmanager's webhook receivers read.
    #[test]
    fn payload_is_alertmanagers() {
        let mut labels = BTreeMap::new();
        labels.insert("alertname".to_string(), "MemoryHigh".to_string());
        labels.insert("id".to_string(), "abc".to_string());
        let alert = Alert {
            labels,
            annotations: BTreeMap::new(),
            starts_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ends_at: None,
        };
        let p = payload(&alert);
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["alerts"][0]["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(p["alerts"][0]["endsAt"], ZERO_TIME);
        assert_eq!(p["commonLabels"]["alertname"], "MemoryHigh");
        assert_eq!(p["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);
    }
}
