//! One module per command. Each parses its flags and calls the library.

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod kill;
pub mod list;
pub mod ps;
pub mod run;
pub mod spec;
pub mod update;

use anyhow::{Result, bail};
use polis_runc::store::Store;

use crate::{Cli, Command};

#[derive(clap::Args, Debug)]
pub struct IdArg {
    /// Container ID.
    pub id: String,
}

/// Runs the command; returns the process exit code.
pub fn dispatch(cli: &Cli) -> Result<u8> {
    if let Some(mode) = cli.rootless.as_deref()
        && !matches!(mode, "false" | "auto")
    {
        bail!("--rootless={mode} is not supported: polis-runc runs containers as root");
    }
    // Only the commands that make containers create the state root.
    let store = || Store::existing(&cli.root);
    match &cli.command {
        Command::Create(args) => create::run(cli, &Store::open(&cli.root)?, args),
        Command::Start(a) => {
            polis_runc::lifecycle::start(&store(), &a.id)?;
            Ok(0)
        }
        Command::State(a) => {
            let state = polis_runc::lifecycle::state(&store(), &a.id)?;
            println!("{}", serde_json::to_string_pretty(&state)?);
            Ok(0)
        }
        Command::Kill(args) => kill::run(&store(), args),
        Command::Delete(args) => delete::run(&store(), args),
        Command::Run(args) => run::run(cli, &Store::open(&cli.root)?, args),
        Command::Exec(args) => exec::run(cli, &store(), args),
        Command::List(args) => list::run(&store(), args),
        Command::Ps(args) => ps::run(&store(), args),
        Command::Pause(a) => {
            polis_runc::lifecycle::pause(&store(), &a.id)?;
            Ok(0)
        }
        Command::Resume(a) => {
            polis_runc::lifecycle::resume(&store(), &a.id)?;
            Ok(0)
        }
        Command::Events(args) => events::run(&store(), args),
        Command::Update(args) => update::run(&store(), args),
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&polis_runc::features::features())?
            );
            Ok(0)
        }
        Command::Spec(args) => spec::run(args),
    }
}

/// Re-executes from a sealed copy of the binary before entering a container (CVE-2019-5736).
pub fn ensure_sealed() -> Result<()> {
    if !polis_runc::seal::is_sealed() {
        polis_runc::seal::reexec_sealed()?;
    }
    Ok(())
}
