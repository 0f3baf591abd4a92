//! Prometheus metrics (`GET /metrics`, the text exposition format 0.0.4, through the `prometheus` crate): polisd's
//! own process metrics, per-container metrics under cAdvisor's names and label names (`containers.rs`, so that
//! dashboards and alert rules written for cAdvisor work unchanged), and Polis's own `polis_*` families.
//!
//! A scrape reads what it reports when it is asked: each running container's cgroup files once (polis-host's
//! cgroup readers), its network namespace's /proc/net/dev and its processes; nothing waits for a second sample.
//! Counters that polisd itself counts (API latency, pulls) live in [`Metrics`], one for the process.

mod containers;
mod listener;

pub use listener::serve;

use crate::core::Core;
use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::LazyLock;
use std::time::Duration;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What polisd counts as it works, registered once per process.
pub struct Metrics {
    registry: Registry,
    /// `polis_api_request_duration_seconds{api,operation}`.
    api_latency: HistogramVec,
    /// `polis_image_pull_bytes_total`.
    pull_bytes: IntCounter,
    /// `polis_image_pull_duration_seconds{result}`.
    pull_duration: HistogramVec,
    /// Where each running container's cgroup is: its files are read on every scrape, /proc/PID/cgroup and the
    /// mount table only when a container is first seen (or started again with another init).
    locations: containers::Locations,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The metrics of this process.
pub fn global() -> &'static Metrics {
    &METRICS
}

fn register<C: Collector + Clone + 'static>(registry: &Registry, c: &C) {
    registry
        .register(Box::new(c.clone()))
        .expect("the metrics' names are distinct and valid");
}

impl Metrics {
    fn new() -> Metrics {
        let registry = Registry::new();
        let api_latency = HistogramVec::new(
            HistogramOpts::new(
                "polis_api_request_duration_seconds",
                "Time polisd took to answer an API request, by API (rest, grpc) and operation.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["api", "operation"],
        )
        .expect("valid histogram");
        let pull_bytes = IntCounter::new(
            "polis_image_pull_bytes_total",
            "Bytes of image layers downloaded from registries (layers already in the store are not counted).",
        )
        .expect("valid counter");
        let pull_duration = HistogramVec::new(
            HistogramOpts::new(
                "polis_image_pull_duration_seconds",
                "Time an image pull took, by result (ok, error).",
            )
            .buckets(vec![
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["result"],
        )
        .expect("valid histogram");
        register(&registry, &api_latency);
        register(&registry, &pull_bytes);
        register(&registry, &pull_duration);
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("the process collector registers once");
        Metrics {
            registry,
            api_latency,
            pull_bytes,
            pull_duration,
            locations: containers::Locations::default(),
        }
    }

    /// One API request answered: `api` is `rest` or `grpc`, `operation` the route (`GET /containers/{id}/json`)
    /// or the gRPC method (`/polis.v1.Containers/Create`).
    pub fn observe_request(&self, api: &str, operation: &str, took: Duration) {
        self.api_latency
            .with_label_values(&[api, operation])
            .observe(took.as_secs_f64());
    }

    /// One image pull ended: `downloaded` bytes of layers fetched, in `took`.
    pub fn observe_pull(&self, ok: bool, downloaded: u64, took: Duration) {
        self.pull_bytes.inc_by(downloaded);
        self.pull_duration
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .observe(took.as_secs_f64());
    }

    /// A running container's working set, memory limit and OOM kills, from its cgroup (for the alert rules).
    pub fn memory_of(
        &self,
        record: &crate::core::record::ContainerRecord,
    ) -> Option<containers::MemoryReading> {
        containers::memory_of(&self.locations, record)
    }

    /// The text of one scrape (blocking: it reads cgroup and /proc files).
    pub fn render(&self, core: &Core) -> String {
        let scrape = Registry::new();
        containers::collect(core, &self.locations, &scrape);
        ipam(core, &scrape);
        let mut families = self.registry.gather();
        families.extend(scrape.gather());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("the text encoder writes to memory");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// `polis_ipam_addresses_in_use{network}` and `polis_ipam_addresses_free{network}`: per bridge network, the
/// IPv4 addresses its running containers hold, and those still free in its range (the subnet, or its IPRange)
/// less the network and broadcast addresses and the gateway.
fn ipam(core: &Core, scrape: &Registry) {
    let in_use = gauge_vec(
        scrape,
        "polis_ipam_addresses_in_use",
        "IPv4 addresses of a network held by its running containers.",
        &["network"],
    );
    let free = gauge_vec(
        scrape,
        "polis_ipam_addresses_free",
        "IPv4 addresses of a network still free to hand out.",
        &["network"],
    );
    let Ok(networks) = core.networks() else {
        return;
    };
    for network in networks.iter().filter(|n| !n.subnets.is_empty()) {
        let members = core.network_endpoints(network).unwrap_or_default();
        let mut size = 0u64;
        let mut used = 0u64;
        for s in &network.subnets {
            let range = s.range.unwrap_or(s.subnet);
            let ipnet::IpNet::V4(v4) = range else {
                continue;
            };
            // The network and broadcast addresses (none in a /31 or /32) and the gateway are never handed out.
            let all = 1u64 << (32 - u32::from(v4.prefix_len()));
            let reserved = if v4.prefix_len() >= 31 { 0 } else { 2 };
            let gateway = u64::from(range.contains(&s.gateway));
            size += all.saturating_sub(reserved + gateway);
            used += members
                .iter()
                .filter(|m| m.ipv4.is_some_and(|a| range.contains(&a.addr())))
                .count() as u64;
        }
        in_use.with_label_values(&[&network.name]).set(used as i64);
        free.with_label_values(&[&network.name])
            .set(size.saturating_sub(used) as i64);
    }
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    register(registry, &g);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition of polisd's own families names each once with its type, and process metrics are there.
    #[test]
    fn own_families_are_exposed_with_their_types() {
        let m = global();
        m.observe_request("rest", "GET /_ping", Duration::from_millis(3));
        m.observe_pull(true, 1234, Duration::from_millis(700));
        let mut families = m.registry.gather();
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("# TYPE polis_api_request_duration_seconds histogram"));
        assert!(text.contains(
            r#"polis_api_request_duration_seconds_count{api="rest",operation="GET /_ping"} 1"#
        ));
        assert!(text.contains("# TYPE polis_image_pull_bytes_total counter"));
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge"));
    }
}
