//! polis.v1.System: Info and Version from the core's state and the host, Events from the core's event stream (the
//! one `/events` reads), filtered by the request's typed filter; DiskUsage from the core's disk usage (the one
//! `/system/df` shows).

use super::{RpcStream, time_of};
use crate::core::record::Status as RecordStatus;
use crate::core::{Core, host};
use bollard_stubs::models::{EventMessage, EventMessageTypeEnum};
use futures_util::StreamExt;
use polis_client::proto::{self, system_server::System};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct SystemApi(pub Arc<Core>);

fn kind(t: Option<EventMessageTypeEnum>) -> proto::ObjectKind {
    match t {
        Some(EventMessageTypeEnum::CONTAINER) => proto::ObjectKind::Container,
        Some(EventMessageTypeEnum::IMAGE) => proto::ObjectKind::Image,
        Some(EventMessageTypeEnum::VOLUME) => proto::ObjectKind::Volume,
        Some(EventMessageTypeEnum::NETWORK) => proto::ObjectKind::Network,
        _ => proto::ObjectKind::Unspecified,
    }
}

fn event(e: &EventMessage) -> proto::Event {
    let actor = e.actor.clone().unwrap_or_default();
    proto::Event {
        kind: kind(e.typ).into(),
        action: e.action.clone().unwrap_or_default(),
        id: actor.id.unwrap_or_default(),
        attributes: actor.attributes.unwrap_or_default(),
        time_unix_nano: e.time_nano.unwrap_or(0),
    }
}

pub use crate::core::label_matches;

/// Whether an event passes the filter: each non-empty list must match.
fn wanted(e: &proto::Event, f: &proto::EventFilter) -> bool {
    let any = |values: &[String], pass: &dyn Fn(&str) -> bool| {
        values.is_empty() || values.iter().any(|v| pass(v))
    };
    let container = e.kind == proto::ObjectKind::Container as i32;
    (f.kinds.is_empty() || f.kinds.contains(&e.kind))
        && any(&f.actions, &|v| {
            e.action == v || e.action.starts_with(&format!("{v}:"))
        })
        && any(&f.containers, &|v| {
            container && (e.id.starts_with(v) || e.attributes.get("name").is_some_and(|n| n == v))
        })
        && any(&f.images, &|v| {
            e.attributes.get("image").is_some_and(|i| i == v)
        })
        && any(&f.labels, &|v| label_matches(&e.attributes, v))
}

#[tonic::async_trait]
impl System for SystemApi {
    async fn info(
        &self,
        _: Request<proto::InfoRequest>,
    ) -> Result<Response<proto::InfoResponse>, Status> {
        let core = &self.0;
        let records = core.db.all().map_err(super::status)?;
        let count = |s: RecordStatus| records.iter().filter(|r| r.state.status == s).count() as u32;
        let store = core.store.clone();
        let images =
            super::blocking("count images", move || Ok(store.images()?.len())).await? as u32;
        let total = records.len() as u32;
        let running = count(RecordStatus::Running);
        let paused = count(RecordStatus::Paused);
        let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        Ok(Response::new(proto::InfoResponse {
            hostname: host::hostname(),
            containers: total,
            containers_running: running,
            containers_paused: paused,
            containers_stopped: total - running - paused,
            images,
            root_dir: core.config.root.display().to_string(),
            kernel_version: host::kernel(),
            operating_system: host::os_name(),
            architecture: std::env::consts::ARCH.into(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1) as u32,
            memory_bytes: host::mem_total(),
            cgroup_version: if unified { 2 } else { 1 },
            runtime_path: core.config.runtime_path().display().to_string(),
            server_version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    async fn version(
        &self,
        _: Request<proto::VersionRequest>,
    ) -> Result<Response<proto::VersionResponse>, Status> {
        Ok(Response::new(proto::VersionResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            git_commit: option_env!("POLIS_GIT_COMMIT").unwrap_or("unknown").into(),
            api_version: "v1".into(),
            docker_api_version: crate::rest::API_VERSION.into(),
            os: "linux".into(),
            arch: host::arch().into(),
            kernel_version: host::kernel(),
        }))
    }

    async fn disk_usage(
        &self,
        _: Request<proto::DiskUsageRequest>,
    ) -> Result<Response<proto::DiskUsageResponse>, Status> {
        let core = self.0.clone();
        let u = super::blocking("disk usage", move || crate::core::disk::disk_usage(&core)).await?;
        Ok(Response::new(proto::DiskUsageResponse {
            images_bytes: u.images_size(),
            containers_bytes: u.containers_size(),
            volumes_bytes: u.volumes_size(),
            reclaimable_images_bytes: u.reclaimable_images(),
            images: u.images.len() as u32,
            images_active: u.active_images() as u32,
            containers: u.containers.len() as u32,
            containers_active: u.active_containers() as u32,
            reclaimable_containers_bytes: u.reclaimable_containers(),
            volumes: u.volumes.len() as u32,
            volumes_active: u.active_volumes() as u32,
            reclaimable_volumes_bytes: u.reclaimable_volumes(),
        }))
    }

    type EventsStream = RpcStream<proto::Event>;

    async fn events(
        &self,
        request: Request<proto::EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let r = request.into_inner();
        let filter = r.filter.unwrap_or_default();
        let until = time_of(r.until_unix_nano);
        let (past, rx) = match r.since_unix_nano {
            0 => (Vec::new(), self.0.events.subscribe()),
            since => self.0.events.subscribe_since(since),
        };
        let until_nanos = r.until_unix_nano;
        let stream = futures_util::stream::iter(past)
            .chain(crate::core::events::broadcast_stream(rx))
            .map(|e| event(&e))
            .take_while(move |e| {
                let go = until_nanos == 0 || e.time_unix_nano <= until_nanos;
                async move { go }
            })
            .filter(move |e| {
                let keep = wanted(e, &filter);
                async move { keep }
            })
            .map(Ok);
        Ok(Response::new(match until {
            Some(u) => {
                let left = (u - chrono::Utc::now()).to_std().unwrap_or_default();
                Box::pin(stream.take_until(tokio::time::sleep(left)))
            }
            None => Box::pin(stream),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_filters_match_each_list() {
        let e = proto::Event {
            kind: proto::ObjectKind::Container as i32,
            action: "exec_start: sh".into(),
            id: "abcdef".into(),
            attributes: [("name".to_string(), "web".to_string())].into(),
            time_unix_nano: 1,
        };
        assert!(wanted(&e, &proto::EventFilter::default()));
        let f = |f: proto::EventFilter| wanted(&e, &f);
        assert!(f(proto::EventFilter {
            actions: vec!["exec_start".into()],
            containers: vec!["web".into()],
            ..Default::default()
        }));
        assert!(f(proto::EventFilter {
            containers: vec!["abc".into()],
            labels: vec!["name=web".into()],
            ..Default::default()
        }));
        assert!(!f(proto::EventFilter {
            kinds: vec![proto::ObjectKind::Image as i32],
            ..Default::default()
        }));
        assert!(!f(proto::EventFilter {
            containers: vec!["other".into()],
            ..Default::default()
        }));
    }
}
