//! polisd itself: `info`, `version`, `events`.

use crate::args::{EventsArgs, Format};
use crate::connect::Target;
use crate::error::{Failure, Result};
use crate::format::{binary_size, json_line, now_unix_nano, print_out, rfc3339};
use crate::parse;
use polis_client::{Client, proto};

/// `info`: what polisd runs on and holds, as docker's lines or JSON.
pub async fn info(client: &Client, format: Format) -> Result<()> {
    let i = client.info().await?;
    if format == Format::Json {
        json_line(&i);
        return Ok(());
    }
    print_out(&format!(
        "Containers: {}\n Running: {}\n Paused: {}\n Stopped: {}\nImages: {}\nServer Version: {}\n\
         Polis Root Dir: {}\nCgroup Version: {}\nRuntime: {}\nKernel Version: {}\nOperating System: {}\n\
         Architecture: {}\nCPUs: {}\nTotal Memory: {}\nName: {}\n",
        i.containers,
        i.containers_running,
        i.containers_paused,
        i.containers_stopped,
        i.images,
        i.server_version,
        i.root_dir,
        i.cgroup_version,
        i.runtime_path,
        i.kernel_version,
        i.operating_system,
        i.architecture,
        i.cpus,
        binary_size(i.memory_bytes as f64),
        i.hostname,
    ));
    Ok(())
}

/// This binary's version, as the client part of `version`.
fn client_version() -> serde_json::Value {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "api_version": "v1",
        "os": std::env::consts::OS,
        "arch": arch,
    })
}

/// `version`: the client's version, then polisd's (an unreachable polisd is an error after the client's part).
pub async fn version(target: &Target, format: Format) -> Result<()> {
    let client = client_version();
    let server = match target.connect().await {
        Ok(c) => c.version().await.map_err(Failure::from),
        Err(e) => Err(e),
    };
    if format == Format::Json {
        let shown = server.as_ref().ok().map(crate::format::to_json);
        json_line(&serde_json::json!({ "client": client, "server": shown }));
        return server.map(|_| ());
    }
    print_out(&format!(
        "Client:\n Version: {}\n API version: {}\n OS/Arch: {}/{}\n",
        client["version"].as_str().unwrap_or_default(),
        client["api_version"].as_str().unwrap_or_default(),
        client["os"].as_str().unwrap_or_default(),
        client["arch"].as_str().unwrap_or_default(),
    ));
    let v = server?;
    print_out(&format!(
        "\nServer:\n Version: {}\n API version: {}\n Docker API version: {}\n Git commit: {}\n OS/Arch: {}/{}\n \
         Kernel Version: {}\n",
        v.version,
        v.api_version,
        v.docker_api_version,
        v.git_commit,
        v.os,
        v.arch,
        v.kernel_version
    ));
    Ok(())
}

/// The name of a kind of object, as docker's events show it.
fn kind_name(kind: i32) -> &'static str {
    match proto::ObjectKind::try_from(kind) {
        Ok(proto::ObjectKind::Container) => "container",
        Ok(proto::ObjectKind::Image) => "image",
        Ok(proto::ObjectKind::Volume) => "volume",
        Ok(proto::ObjectKind::Network) => "network",
        _ => "unknown",
    }
}

/// An event as docker prints it: "TIME KIND ACTION ID (k=v, ...)".
pub fn event_line(e: &proto::Event) -> String {
    let mut attributes: Vec<String> = e
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    attributes.sort();
    let mut line = format!(
        "{} {} {} {}",
        rfc3339(e.time_unix_nano),
        kind_name(e.kind),
        e.action,
        e.id
    );
    if !attributes.is_empty() {
        line.push_str(&format!(" ({})", attributes.join(", ")));
    }
    line
}

/// `events`: events as they happen (the kept ones since `--since` first), until `--until` or an interrupt.
pub async fn events(client: &Client, a: EventsArgs) -> Result<()> {
    let now = now_unix_nano();
    let time = |t: &Option<String>| -> Result<i64> {
        t.as_deref()
            .map(|t| parse::time(t, now))
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(Failure::new)
    };
    let mut filter = proto::EventFilter::default();
    for f in &a.filter {
        let keys = ["type", "event", "container", "image", "label"];
        let (k, v) = parse::filter(f, &keys).map_err(Failure::new)?;
        let v = v.to_string();
        match k {
            "type" => filter.kinds.push(match v.as_str() {
                "container" => proto::ObjectKind::Container,
                "image" => proto::ObjectKind::Image,
                "volume" => proto::ObjectKind::Volume,
                "network" => proto::ObjectKind::Network,
                other => {
                    return Err(Failure::new(format!(
                        "invalid type {other:?} (container, image, volume or network)"
                    )));
                }
            } as i32),
            "event" => filter.actions.push(v),
            "container" => filter.containers.push(v),
            "image" => filter.images.push(v),
            _ => filter.labels.push(v),
        }
    }
    let mut events = client
        .events(proto::EventsRequest {
            since_unix_nano: time(&a.since)?,
            until_unix_nano: time(&a.until)?,
            filter: Some(filter),
        })
        .await?;
    while let Some(e) = events.next().await? {
        if a.format == Format::Json {
            json_line(&e);
        } else {
            print_out(&format!("{}\n", event_line(&e)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line() {
        let e = proto::Event {
            kind: proto::ObjectKind::Container as i32,
            action: "start".into(),
            id: "abc".into(),
            attributes: [
                ("name".to_string(), "web".to_string()),
                ("image".into(), "busybox".into()),
            ]
            .into_iter()
            .collect(),
            time_unix_nano: 1,
        };
        assert_eq!(
            event_line(&e),
            "1970-01-01T00:00:00.000000001Z container start abc (image=busybox, name=web)"
        );
    }
}
