use std::path::PathBuf;

use anyhow::Result;
use nix::unistd::Pid;
use polis_runc::exec_process::{ExecOptions, exec_process};
use polis_runc::foreground::{block_signals, wait_forwarding_signals, wait_with_terminal};
use polis_runc::store::Store;

use crate::Cli;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// AF_UNIX socket that receives the pseudo-terminal's master fd.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variables to set (KEY=VALUE).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// User as uid[:gid] or a name from the container's /etc/passwd.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Additional group IDs.
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// process.json describing the process (replaces the other flags).
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Do not wait for the process to exit.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// File to write the process's PID to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Add a capability to the process.
    #[arg(long, short = 'c')]
    pub cap: Vec<String>,
    /// Set no_new_privileges for the process.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Pass N more file descriptors (from 3) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    /// SELinux label (refused: SELinux is not supported).
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// AppArmor profile (refused for now).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Container ID.
    pub id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(_cli: &Cli, store: &Store, args: &Args) -> Result<u8> {
    polis_runc::id::validate_container_id(&args.id)?;
    if args.process_label.as_deref().is_some_and(|l| !l.is_empty()) {
        anyhow::bail!("--process-label is not supported: polis-runc has no SELinux support");
    }
    if args.apparmor.as_deref().is_some_and(|l| !l.is_empty()) {
        anyhow::bail!("--apparmor is not supported by polis-runc exec yet");
    }
    polis_runc::id::validate_container_id(&args.id)?;
    // Before the sealed re-exec, which needs a state root to work in.
    if !store.container_dir(&args.id).is_dir() {
        return Err(polis_runc::Error::NotExist {
            id: args.id.clone(),
        }
        .into());
    }
    super::ensure_sealed()?;
    let opts = ExecOptions {
        id: args.id.clone(),
        process_file: args.process.clone(),
        args: args.command.clone(),
        tty: args.tty,
        console_socket: args.console_socket.clone(),
        detach: args.detach,
        pid_file: args.pid_file.clone(),
        env: args.env.clone(),
        cwd: args.cwd.clone(),
        user: args.user.clone(),
        additional_gids: args.additional_gids.clone(),
        caps: args.cap.clone(),
        no_new_privs: args.no_new_privs,
        preserve_fds: args.preserve_fds,
    };
    let blocked = if args.detach {
        None
    } else {
        Some(block_signals()?)
    };
    let process = exec_process(store, &opts)?;
    let Some(blocked) = blocked else {
        return Ok(0);
    };
    let pid = Pid::from_raw(process.pid);
    let code = match process.terminal {
        Some(master) => wait_with_terminal(pid, &blocked, master)?,
        None => wait_forwarding_signals(pid, &blocked)?,
    };
    Ok(code as u8)
}
