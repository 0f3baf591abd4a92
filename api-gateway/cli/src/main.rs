//! `polis`, the command line of polisd's gRPC API (`polis.v1`), with docker's commands and behaviour: `run` pulls,
//! attaches, forwards and exits with the container's code; the other commands list, inspect and manage
//! containers, images, networks and volumes. Every call goes through polis-client.
//!
//! main.rs parses the command line, connects, dispatches and turns a failure into one line on stderr and an exit
//! code; args.rs defines the commands, run.rs is `run`, commands/ the others.

mod args;
mod commands;
mod connect;
mod error;
mod format;
mod parse;
mod progress;
mod run;
mod stdio;
mod tty;

use args::{Cli, Command};
use clap::{CommandFactory, Parser};
use error::{Failure, Result};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => std::process::exit(usage_error(e)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let code = match runtime {
        Ok(rt) => rt.block_on(dispatch(cli)),
        Err(e) => Err(Failure::with_code(125, format!("start the runtime: {e}"))),
    };
    tty::restore();
    let code = match code {
        Ok(code) => code,
        Err(f) => {
            if !f.message.is_empty() {
                error::print(&f.message);
            }
            f.code
        }
    };
    // Exit at once: a thread may still be blocked reading stdin for the container.
    std::process::exit(code);
}

/// Prints clap's help or version (exit 0), or its error as one line (exit 125, as docker's flag errors).
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return 125;
    }
    // clap's first paragraph names the problem; the usage and tips after it are left out.
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    let line = error::one_line(first).replace("; ", " ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    eprintln!("Error: {line} (see 'polis --help')");
    125
}

/// Runs the command; the process's exit code.
async fn dispatch(cli: Cli) -> Result<i32> {
    let target = connect::Target::new(cli.host, cli.tlscacert, cli.tlscert, cli.tlskey);
    let done = |r: Result<()>| r.map(|()| 0);
    match cli.command {
        Command::Completion(a) => {
            clap_complete::generate(
                a.shell,
                &mut Cli::command(),
                "polis",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Run(a) => run::run(&target, *a).await,
        Command::Version(a) => done(commands::system::version(&target, a.format).await),
        command => {
            let client = target.connect().await?;
            let c = &client;
            use commands::{containers, images, networks, stats, system, volumes};
            match command {
                Command::Ps(a) => done(containers::ps(c, a).await),
                Command::Logs(a) => done(containers::logs(c, a).await),
                Command::Exec(a) => containers::exec(c, a).await,
                Command::Start(a) => done(containers::start(c, a).await),
                Command::Stop(a) => done(containers::stop(c, a).await),
                Command::Kill(a) => done(containers::kill(c, a).await),
                Command::Restart(a) => done(containers::restart(c, a).await),
                Command::Rm(a) => done(containers::rm(c, a).await),
                Command::Pull(a) => done(images::pull(c, a).await),
                Command::Images(a) => done(images::images(c, a).await),
                Command::Rmi(a) => done(images::rmi(c, a).await),
                Command::Network(n) => done(networks::network(c, n).await),
                Command::Volume(v) => done(volumes::volume(c, v).await),
                Command::Inspect(a) => done(commands::inspect(c, a).await),
                Command::Events(a) => done(system::events(c, a).await),
                Command::Stats(a) => done(stats::stats(c, a).await),
                Command::Info(a) => done(system::info(c, a.format).await),
                Command::Run(_) | Command::Version(_) | Command::Completion(_) => {
                    unreachable!("handled above")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
