use std::process::Command;

use anyhow::{Context, Result};
use polis_runc::cgroups::pids;
use polis_runc::store::Store;

use super::list::Format;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: `json` prints the PIDs, `table` runs ps(1).
    #[arg(long, short = 'f', value_enum, default_value = "table")]
    pub format: Format,
    /// Container ID.
    pub id: String,
    /// Arguments for ps(1) (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

pub fn run(store: &Store, args: &Args) -> Result<u8> {
    let loaded = store.load(&args.id)?;
    let pids = pids(&args.id, &loaded.meta.cgroup_path)?;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let ps_args = if args.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        args.ps_args.clone()
    };
    let out = Command::new("ps")
        .args(&ps_args)
        .output()
        .context("run ps")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .context("ps output has no PID column")?;
    println!("{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{line}");
        }
    }
    Ok(0)
}
