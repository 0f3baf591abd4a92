use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::LinuxResources;
use polis_runc::cgroups::update_resources;
use polis_runc::store::Store;
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// JSON file of linux.resources to apply ("-" for stdin).
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    /// Memory limit in bytes.
    #[arg(long)]
    pub memory: Option<i64>,
    /// Memory plus swap limit in bytes (-1 for unlimited).
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<i64>,
    /// Memory soft limit in bytes.
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds.
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    /// CPUs allowed (e.g. 0-1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 for unlimited).
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    /// Container ID.
    pub id: String,
}

fn read_resources(path: &PathBuf) -> Result<LinuxResources> {
    let mut data = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut data)?;
    } else {
        data = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    }
    serde_json::from_str(&data).context("parse linux.resources")
}

fn from_flags(args: &Args) -> Result<LinuxResources> {
    let mut memory = serde_json::Map::new();
    let put = |map: &mut serde_json::Map<String, Value>, k: &str, v: Option<Value>| {
        if let Some(v) = v {
            map.insert(k.into(), v);
        }
    };
    put(&mut memory, "limit", args.memory.map(|v| json!(v)));
    put(&mut memory, "swap", args.memory_swap.map(|v| json!(v)));
    put(
        &mut memory,
        "reservation",
        args.memory_reservation.map(|v| json!(v)),
    );
    let mut cpu = serde_json::Map::new();
    put(&mut cpu, "shares", args.cpu_shares.map(|v| json!(v)));
    put(&mut cpu, "quota", args.cpu_quota.map(|v| json!(v)));
    put(&mut cpu, "period", args.cpu_period.map(|v| json!(v)));
    put(&mut cpu, "cpus", args.cpuset_cpus.clone().map(|v| json!(v)));
    put(&mut cpu, "mems", args.cpuset_mems.clone().map(|v| json!(v)));
    let mut res = serde_json::Map::new();
    if !memory.is_empty() {
        res.insert("memory".into(), Value::Object(memory));
    }
    if !cpu.is_empty() {
        res.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(limit) = args.pids_limit {
        res.insert("pids".into(), json!({ "limit": limit }));
    }
    if let Some(w) = args.blkio_weight {
        res.insert("blockIO".into(), json!({ "weight": w }));
    }
    if res.is_empty() {
        bail!("update needs --resources or at least one resource flag");
    }
    Ok(serde_json::from_value(Value::Object(res))?)
}

pub fn run(store: &Store, args: &Args) -> Result<u8> {
    let resources = match &args.resources {
        Some(path) => read_resources(path)?,
        None => from_flags(args)?,
    };
    let _lock = store.lock(&args.id, true)?;
    let loaded = store.load(&args.id)?;
    update_resources(&args.id, &loaded.meta.cgroup_path, &resources)?;
    Ok(0)
}
