use anyhow::Result;
use nix::unistd::Pid;
use polis_runc::foreground::{
    block_signals, size_terminal_like_stdin, wait_forwarding_signals, wait_with_terminal,
};
use polis_runc::lifecycle::{delete_container, start};
use polis_runc::setup::create_container;
use polis_runc::store::Store;

use super::create::CreateFlags;
use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Return once the container has started instead of waiting for it.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Keep the container's state after it exits.
    #[arg(long)]
    pub keep: bool,
    #[command(flatten)]
    pub flags: CreateFlags,
}

pub fn run(cli: &Cli, store: &Store, args: &Args) -> Result<u8> {
    let id = &args.flags.id;
    polis_runc::id::validate_container_id(id)?;
    super::ensure_sealed()?;
    let blocked = if args.detach {
        None
    } else {
        Some(block_signals()?)
    };
    let created = create_container(store, &args.flags.options(cli, args.detach))?;
    if let Some(master) = &created.terminal {
        size_terminal_like_stdin(master);
    }
    if let Err(err) = start(store, id) {
        let _ = delete_container(store, id, true);
        return Err(err.into());
    }
    let Some(blocked) = blocked else {
        return Ok(0);
    };
    let pid = Pid::from_raw(created.pid);
    let code = match created.terminal {
        Some(master) => wait_with_terminal(pid, &blocked, master),
        None => wait_forwarding_signals(pid, &blocked),
    };
    if !args.keep {
        delete_container(store, id, true)?;
    }
    Ok(code? as u8)
}
