//! `events`: container statistics in runc's event format (`{"type":"stats","id":..,"data":..}`),
//! which go-runc and containerd's runc shim parse.

use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};
use serde_json::{Value, json};

use crate::cgroups;
use crate::error::Result;
use crate::store::Store;

fn memory_entry(m: &MemoryData) -> Value {
    json!({ "limit": m.limit, "usage": m.usage, "max": m.max_usage, "failcnt": m.fail_count })
}

fn blkio_entries(stats: &[BlkioDeviceStat]) -> Value {
    Value::Array(
        stats
            .iter()
            .map(|s| {
                json!({
                    "major": s.major, "minor": s.minor,
                    "op": s.op_type.clone().unwrap_or_default(), "value": s.value
                })
            })
            .collect(),
    )
}

/// libcgroups' stats in the shape of runc's `types.Stats`.
pub fn runc_stats(s: &Stats) -> Value {
    let hugetlb: serde_json::Map<String, Value> = s
        .hugetlb
        .iter()
        .map(|(size, h)| {
            (
                size.clone(),
                json!({ "usage": h.usage, "max": h.max_usage, "failcnt": h.fail_count }),
            )
        })
        .collect();
    json!({
        "cpu": {
            "usage": {
                "total": s.cpu.usage.usage_total,
                "percpu": s.cpu.usage.per_core_usage_total,
                "kernel": s.cpu.usage.usage_kernel,
                "user": s.cpu.usage.usage_user,
            },
            "throttling": {
                "periods": s.cpu.throttling.periods,
                "throttledPeriods": s.cpu.throttling.throttled_periods,
                "throttledTime": s.cpu.throttling.throttled_time,
            }
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": memory_entry(&s.memory.memory),
            "swap": memory_entry(&s.memory.memswap),
            "kernel": memory_entry(&s.memory.kernel),
            "kernelTCP": memory_entry(&s.memory.kernel_tcp),
            "raw": s.memory.stats,
        },
        "pids": { "current": s.pids.current, "limit": s.pids.limit },
        "blkio": {
            "ioServiceBytesRecursive": blkio_entries(&s.blkio.service_bytes),
            "ioServicedRecursive": blkio_entries(&s.blkio.serviced),
            "ioQueueRecursive": blkio_entries(&s.blkio.queued),
            "ioServiceTimeRecursive": blkio_entries(&s.blkio.service_time),
            "ioWaitTimeRecursive": blkio_entries(&s.blkio.wait_time),
            "ioMergedRecursive": blkio_entries(&s.blkio.merged),
            "ioTimeRecursive": blkio_entries(&s.blkio.time),
            "sectorsRecursive": blkio_entries(&s.blkio.sectors),
        },
        "hugetlb": hugetlb,
    })
}

/// One stats event for a container.
pub fn stats_event(store: &Store, id: &str) -> Result<Value> {
    let loaded = store.load(id)?;
    let stats = cgroups::stats(id, &loaded.meta.cgroup_path)?;
    Ok(json!({ "type": "stats", "id": id, "data": runc_stats(&stats) }))
}
