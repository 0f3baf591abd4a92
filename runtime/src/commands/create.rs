use std::path::PathBuf;

use anyhow::Result;
use polis_runc::setup::{CreateOptions, create_container};
use polis_runc::store::Store;

use crate::Cli;

/// The flags `create` and `run` share (runc's).
#[derive(clap::Args, Debug, Clone)]
pub struct CreateFlags {
    /// Path to the bundle: the directory holding config.json.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// AF_UNIX socket that receives the pseudo-terminal's master fd.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the init process's PID to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Do not use pivot_root to jail the process inside the rootfs.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring for the container.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N more file descriptors (from 3) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: i32,
    /// Container ID.
    pub id: String,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub flags: CreateFlags,
}

impl CreateFlags {
    pub fn options(&self, cli: &Cli, detach: bool) -> CreateOptions {
        CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            preserve_fds: self.preserve_fds,
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            systemd_cgroup: cli.systemd_cgroup,
            detach,
        }
    }
}

pub fn run(cli: &Cli, store: &Store, args: &Args) -> Result<u8> {
    polis_runc::id::validate_container_id(&args.flags.id)?;
    super::ensure_sealed()?;
    create_container(store, &args.flags.options(cli, true))?;
    Ok(0)
}
