//! polis-runc: runc's command line over the polis-runc library. Each command is one small module.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use polis_runc::logging::{LogFormat, init_logging};

#[derive(Parser, Debug)]
#[command(
    name = "polis-runc",
    version,
    about = "A runc-compatible OCI runtime (runtime-spec 1.2)"
)]
pub struct Cli {
    /// Directory for container state (tmpfs is best).
    #[arg(long, global = true, default_value = "/run/polis-runc")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log debug output.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd-style paths (`slice:prefix:name`).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// runc's rootless mode: polis-runc runs as root only, so only "false" and "auto" are accepted.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container (runtime-spec `create`).
    Create(commands::create::Args),
    /// Start the user's program of a created container.
    Start(commands::IdArg),
    /// Print the state of a container as JSON.
    State(commands::IdArg),
    /// Send a signal to the container's process (default SIGTERM).
    Kill(commands::kill::Args),
    /// Delete a container and everything it holds.
    Delete(commands::delete::Args),
    /// Create and start a container, and wait for it unless detached.
    Run(commands::run::Args),
    /// Run a new process in a running container.
    Exec(commands::exec::Args),
    /// List containers.
    List(commands::list::Args),
    /// List the processes of a container.
    Ps(commands::ps::Args),
    /// Freeze all processes of a container.
    Pause(commands::IdArg),
    /// Thaw a paused container.
    Resume(commands::IdArg),
    /// Print container statistics as events.
    Events(commands::events::Args),
    /// Change a container's resource limits.
    Update(commands::update::Args),
    /// Print what this runtime supports (runtime-spec features.md).
    Features,
    /// Write a default config.json into a bundle.
    Spec(commands::spec::Args),
}

fn main() -> ExitCode {
    // The commands that enter a container re-execute from the sealed copy first thing, before
    // the command line is even parsed (the parse is then done once, in the sealed process); the
    // commands check again (`commands::ensure_sealed`).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if polis_runc::seal::enters_a_container(&args)
        && !polis_runc::seal::is_sealed()
        && let Err(err) = polis_runc::seal::reexec_sealed()
    {
        eprintln!("polis-runc: {err}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse_from(args);
    let log_to_file = cli.log.is_some();
    if let Err(err) = init_logging(cli.log.as_deref(), cli.log_format, cli.debug) {
        eprintln!("polis-runc: {err}");
        return ExitCode::FAILURE;
    }
    match commands::dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let msg = error_chain(&err);
            if log_to_file {
                // containerd and conmon read the last error line of the log file; the shim reads its
                // kind as well.
                let kind = err
                    .downcast_ref::<polis_runc::Error>()
                    .map_or("invalid", polis_runc::Error::kind);
                tracing::error!(kind, "{msg}");
            }
            eprintln!("polis-runc: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause its parent already quotes
/// (some libraries' errors repeat their sources in their own messages).
fn error_chain(err: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !msg.contains(&text) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&text);
        }
    }
    msg
}
