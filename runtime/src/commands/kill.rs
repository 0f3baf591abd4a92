use anyhow::Result;
use polis_runc::lifecycle::{kill_container, parse_signal};
use polis_runc::store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Send the signal to every process in the container's cgroup.
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Container ID.
    pub id: String,
    /// Signal number or name.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

pub fn run(store: &Store, args: &Args) -> Result<u8> {
    let signal = parse_signal(&args.signal)?;
    kill_container(store, &args.id, signal, args.all)?;
    Ok(0)
}
