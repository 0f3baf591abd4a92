//! polisd: the Polis daemon (Docker Engine API on /run/polis/polis.sock).

use clap::Parser;
use polisd::config::{Config, DEFAULT_CONFIG, LogFormat};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "polisd",
    version,
    about = "The Polis daemon: the Docker Engine API over Polis"
)]
struct Cli {
    /// The TOML configuration (every key is optional; a missing default file means the defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log at debug level.
    #[arg(long)]
    debug: bool,
}

fn main() {
    // Two malloc arenas instead of one per thread that ever allocated (glibc's default is 8 per core): the blocking
    // threads of pulls and shim calls come and go, and each would keep an arena's pages (docs/BENCHMARKS.md,
    // "polisd's RSS").
    // SAFETY: mallopt changes allocator tuning; called once, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let cli = Cli::parse();
    let explicit = cli.config.is_some();
    let path = cli.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    let config = match Config::load(&path, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("polisd: {e}");
            std::process::exit(1);
        }
    };
    let level = if cli.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let log = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => log.init(),
        LogFormat::Json => log
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("polisd: start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(polisd::server::run(config));
    // The blocking threads waiting on the shims of running containers are not waited for: the containers outlive
    // polisd, and it takes them up again when it starts.
    runtime.shutdown_background();
    if let Err(e) = result {
        eprintln!("polisd: {e:#}");
        std::process::exit(1);
    }
}
