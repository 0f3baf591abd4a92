//! The command line: every command, its flags and arguments (clap's derive). Parsing the values of flags (ports,
//! mounts, sizes...) is parse.rs's job; the commands themselves are in run.rs and commands/.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// polis: run and manage containers through polisd.
#[derive(Debug, Parser)]
#[command(name = "polis", version, disable_help_subcommand = true)]
pub struct Cli {
    /// polisd's gRPC socket (PATH or unix://PATH), or tcp://HOST:PORT with the TLS flags.
    #[arg(short = 'H', long, env = "POLIS_HOST", default_value = polis_client::DEFAULT_SOCKET, global = true)]
    pub host: String,

    /// With tcp://: the CA that polisd's certificate chains to.
    #[arg(long, value_name = "FILE", global = true)]
    pub tlscacert: Option<PathBuf>,

    /// With tcp://: this client's certificate.
    #[arg(long, value_name = "FILE", global = true)]
    pub tlscert: Option<PathBuf>,

    /// With tcp://: this client's key.
    #[arg(long, value_name = "FILE", global = true)]
    pub tlskey: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// How a listing or an inspection is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Columns for people.
    #[default]
    Table,
    /// One JSON object per line (lists), or a JSON array (inspect).
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and run a container from an image, pulling it when missing.
    Run(Box<RunArgs>),
    /// List containers.
    Ps(PsArgs),
    /// Print a container's output.
    Logs(LogsArgs),
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Start stopped containers.
    Start(Containers),
    /// Stop running containers.
    Stop(StopArgs),
    /// Send a signal to running containers.
    Kill(KillArgs),
    /// Restart containers.
    Restart(StopArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Pull an image from a registry.
    Pull(PullArgs),
    /// List images.
    Images(ImagesArgs),
    /// Remove images.
    Rmi(RmiArgs),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Show containers, images, networks or volumes in full, as JSON.
    Inspect(InspectArgs),
    /// Print events as they happen.
    Events(EventsArgs),
    /// Show containers' resource usage.
    Stats(StatsArgs),
    /// Show what polisd runs on and what it holds.
    Info(FormatArg),
    /// Show the versions of polis and polisd.
    Version(FormatArg),
    /// Print a shell completion script.
    Completion(CompletionArgs),
}

/// `--format`.
#[derive(Debug, Args)]
pub struct FormatArg {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `run`'s flags, image and command.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container's ID.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open and forward it.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Publish a port: [IP:][HOST_PORT:]CONTAINER_PORT[/udp].
    #[arg(short, long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// Mount a volume or host path: VOLUME_OR_PATH:/path[:ro], or /path for an anonymous volume.
    #[arg(short, long = "volume", value_name = "VOLUME")]
    pub volume: Vec<String>,
    /// Set an environment variable: K=V, or K to copy it from this environment.
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file (K=V lines, # comments).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// The container's name.
    #[arg(long)]
    pub name: Option<String>,
    /// The network: bridge, host, none or a network's name.
    #[arg(long, alias = "net")]
    pub network: Option<String>,
    /// Restart policy: no, always, unless-stopped, on-failure[:MAX_RETRIES].
    #[arg(long, value_name = "POLICY")]
    pub restart: Option<String>,
    /// Memory limit (64m, 1.5g, bytes).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPU limit, in CPUs (0.5).
    #[arg(long)]
    pub cpus: Option<String>,
    /// The working directory in the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// The user (name, uid or uid:gid).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// The container's hostname.
    #[arg(long)]
    pub hostname: Option<String>,
    /// A label: K=V.
    #[arg(short, long = "label", value_name = "K=V")]
    pub label: Vec<String>,
    /// The image.
    pub image: String,
    /// The command and its arguments (else the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Also containers that are not running.
    #[arg(short, long)]
    pub all: bool,
    /// Only containers that match: id=, name=, label=, status=, ancestor=, exited=, network=.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not shorten IDs and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing what the container writes until it stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines ("all": every line).
    #[arg(short = 'n', long, value_name = "N", default_value = "all")]
    pub tail: String,
    /// The container.
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Forward stdin.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the process a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable: K=V.
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// The working directory.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// The user.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Run with every capability.
    #[arg(long)]
    pub privileged: bool,
    /// The container.
    pub container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// One or more containers.
#[derive(Debug, Args)]
pub struct Containers {
    /// Containers, by name, ID or ID prefix.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing (else the container's stop timeout).
    #[arg(short = 't', long = "time", value_name = "SECONDS")]
    pub time: Option<i64>,
    /// Containers, by name, ID or ID prefix.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal (name or number).
    #[arg(short, long, default_value = "SIGKILL")]
    pub signal: String,
    /// Containers, by name, ID or ID prefix.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill running containers first.
    #[arg(short, long)]
    pub force: bool,
    /// Also remove their anonymous volumes.
    #[arg(short, long)]
    pub volumes: bool,
    /// Containers, by name, ID or ID prefix.
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Print only the image's name.
    #[arg(short, long)]
    pub quiet: bool,
    /// The image reference.
    pub image: String,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not shorten IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Only images whose name starts with this.
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Also when a container uses the image.
    #[arg(short, long)]
    pub force: bool,
    /// Images, by reference, ID or ID prefix.
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network; prints its ID.
    Create(NetworkCreateArgs),
    /// List networks.
    Ls(NetworkLsArgs),
    /// Show networks in full, as JSON.
    Inspect(InspectNames),
    /// Remove networks.
    Rm(Names),
    /// Connect a container to a network.
    Connect(NetworkConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(NetworkDisconnectArgs),
}

/// One or more names.
#[derive(Debug, Args)]
pub struct Names {
    /// Names, IDs or ID prefixes.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// One or more names to inspect.
#[derive(Debug, Args)]
pub struct InspectNames {
    /// Output format (JSON either way).
    #[arg(short, long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Names, IDs or ID prefixes.
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// The driver.
    #[arg(short, long, default_value = "bridge")]
    pub driver: String,
    /// A subnet in CIDR form.
    #[arg(long)]
    pub subnet: Option<String>,
    /// The gateway's address.
    #[arg(long)]
    pub gateway: Option<String>,
    /// The range container addresses are taken from, in CIDR form.
    #[arg(long)]
    pub ip_range: Option<String>,
    /// No route out of the network.
    #[arg(long)]
    pub internal: bool,
    /// A label: K=V.
    #[arg(long = "label", value_name = "K=V")]
    pub label: Vec<String>,
    /// A driver option: K=V.
    #[arg(short, long = "opt", value_name = "K=V")]
    pub opt: Vec<String>,
    /// The network's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct NetworkLsArgs {
    /// Only networks that match: id=, name=, driver=, label=.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Only IDs.
    #[arg(short, long)]
    pub quiet: bool,
    /// Do not shorten IDs.
    #[arg(long)]
    pub no_trunc: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct NetworkConnectArgs {
    /// Another name the container answers to on the network.
    #[arg(long = "alias")]
    pub alias: Vec<String>,
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
}

#[derive(Debug, Args)]
pub struct NetworkDisconnectArgs {
    /// Also when the container is gone.
    #[arg(short, long)]
    pub force: bool,
    /// The network.
    pub network: String,
    /// The container.
    pub container: String,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume; prints its name.
    Create(VolumeCreateArgs),
    /// List volumes.
    Ls(VolumeLsArgs),
    /// Show volumes in full, as JSON.
    Inspect(InspectNames),
    /// Remove volumes.
    Rm(VolumeRmArgs),
    /// Remove the volumes no container uses.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// The driver.
    #[arg(short, long, default_value = "local")]
    pub driver: String,
    /// A label: K=V.
    #[arg(long = "label", value_name = "K=V")]
    pub label: Vec<String>,
    /// A driver option: K=V.
    #[arg(short, long = "opt", value_name = "K=V")]
    pub opt: Vec<String>,
    /// The volume's name (else a generated one).
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    /// Only volumes that match: name=, label=, dangling=true|false.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Only names.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct VolumeRmArgs {
    /// Also when a container uses the volume.
    #[arg(short, long)]
    pub force: bool,
    /// Volumes.
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// What `inspect` looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectType {
    Container,
    Image,
    Network,
    Volume,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Only this kind of object (else the first kind that has the name: container, image, network, volume).
    #[arg(long = "type", value_enum)]
    pub kind: Option<ObjectType>,
    /// Output format (JSON either way).
    #[arg(short, long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Names, IDs or references.
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only events that match: type=, event=, container=, image=, label=.
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// Also the kept events since this time (Unix seconds, or a duration before now: 10s, 5m, 1h).
    #[arg(long)]
    pub since: Option<String>,
    /// Stop at this time (Unix seconds, or a duration before now).
    #[arg(long)]
    pub until: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// Every container, also those not running (else the running ones).
    #[arg(short, long)]
    pub all: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Containers (else every running one).
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
