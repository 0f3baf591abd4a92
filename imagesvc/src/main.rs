//! polis-image: pull images from OCI registries into the store and make bundles from them.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use nix::sys::signal::{SigSet, Signal};
use polis_imagesvc::bundle::{create_bundle, remove_bundle};
use polis_imagesvc::limits::{Limits, parse_size};
use polis_imagesvc::progress::{JsonProgress, NoProgress, Progress, TerminalProgress};
use polis_imagesvc::pull::{Platform, PullOptions, pull_image, request_stop, stop_requested};
use polis_imagesvc::registry::RegistryClient;
use polis_imagesvc::store::ImageStore;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "polis-image",
    version,
    about = "Pull OCI images and make runtime bundles from them"
)]
struct Cli {
    /// The store: an OCI image layout in ROOT/layout, unpacked layers in ROOT/layers.
    #[arg(
        long,
        global = true,
        env = "POLIS_IMAGE_ROOT",
        default_value = "/var/lib/polis/images"
    )]
    root: PathBuf,
    /// A registry (host or host:port) to reach over plain HTTP instead of HTTPS. Repeatable.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
    /// Progress display: bars on a terminal, NDJSON events otherwise (auto), or none.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// Uncompressed bytes one layer may unpack to (K, M, G, T: powers of 1024; 0: no limit).
    #[arg(long, global = true, env = "POLIS_IMAGE_MAX_LAYER_SIZE", value_name = "SIZE",
          default_value = "16G", value_parser = parse_size)]
    max_layer_size: u64,
    /// Uncompressed bytes one pull or bundle may unpack for one image; layers already in the store do not count.
    #[arg(long, global = true, env = "POLIS_IMAGE_MAX_IMAGE_SIZE", value_name = "SIZE",
          default_value = "64G", value_parser = parse_size)]
    max_image_size: u64,
    /// Space kept free on the store's file system: downloads and unpacking stop before they eat into it.
    #[arg(long, global = true, env = "POLIS_IMAGE_MIN_FREE_SPACE", value_name = "SIZE",
          default_value = "1G", value_parser = parse_size)]
    min_free_space: u64,
    /// Log at debug level on stderr.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProgressMode {
    Auto,
    Tty,
    Json,
    None,
}

#[derive(Subcommand)]
enum Command {
    /// Pull an image (Docker-style name, tag or digest) into the store and unpack its layers.
    Pull {
        reference: String,
        /// OS/ARCH[/VARIANT] to pick from a multi-platform image (default: this machine's).
        #[arg(long)]
        platform: Option<Platform>,
        /// Store the blobs only; `bundle` unpacks them when first needed.
        #[arg(long)]
        no_unpack: bool,
    },
    /// List the images in the store.
    #[command(alias = "list")]
    Ls {
        /// Print the names only.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print an image's manifest, config and layers as JSON.
    Inspect { image: String },
    /// Remove images from the store, and the content no other image uses.
    #[command(alias = "rmi")]
    Rm {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove everything no image references: blobs, unpacked layers, partial downloads.
    Prune,
    /// Make a runtime bundle (config.json + overlayfs rootfs) in DIR; ARGS replace the image's Cmd.
    Bundle {
        image: String,
        dir: PathBuf,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Unmount and remove a bundle made by `bundle`.
    Unbundle { dir: PathBuf },
}

fn main() {
    let cli = Cli::parse();
    let level = if cli.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::WARN
    };
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let result = run(cli);
    if stop_requested() {
        // Stopped by a signal: its handler cleans up and exits with the signal's code.
        loop {
            std::thread::park();
        }
    }
    if let Err(e) = result {
        eprintln!("polis-image: {e:#}");
        std::process::exit(1);
    }
}

/// SIGTERM and SIGINT stop a pull cleanly: unpacking stops at its next read, the pull's temporary directories are
/// removed, and the process exits with 128 + the signal's number. The partial download stays, for the next pull to
/// resume (`prune` removes it). Must run before any other thread starts, so that all of them block the signals.
fn stop_on_signals(store: Arc<ImageStore>) -> Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block().context("blocking SIGTERM and SIGINT")?;
    std::thread::spawn(move || {
        let Ok(signal) = set.wait() else {
            return;
        };
        request_stop();
        let pid = std::process::id();
        // The unpacker removes its own directory when it sees the request; what is left after a moment goes here.
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline && !store.temporaries_of(pid).is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        store.remove_temporaries_of(pid);
        let left = store.temporaries_of(pid);
        if left.is_empty() {
            eprintln!(
                "polis-image: pull stopped by {signal}; its temporary directories are removed (a partial \
                 download stays for the next pull to resume; `polis-image prune` removes it)"
            );
        } else {
            eprintln!("polis-image: pull stopped by {signal}; could not remove {left:?}");
        }
        std::process::exit(128 + signal as i32);
    });
    Ok(())
}

fn progress_for(mode: ProgressMode) -> Box<dyn Progress> {
    match mode {
        ProgressMode::None => Box::new(NoProgress),
        ProgressMode::Json => Box::new(JsonProgress::new(std::io::stderr())),
        ProgressMode::Tty => Box::new(TerminalProgress::default()),
        ProgressMode::Auto if std::io::stderr().is_terminal() => {
            Box::new(TerminalProgress::default())
        }
        ProgressMode::Auto => Box::new(JsonProgress::new(std::io::stderr())),
    }
}

fn human(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "kB", "MB", "GB"] {
        if v < 1000.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1000.0;
    }
    format!("{v:.1} TB")
}

fn run(cli: Cli) -> Result<()> {
    let limits = Limits {
        max_layer_size: cli.max_layer_size,
        max_image_size: cli.max_image_size,
        min_free_space: cli.min_free_space,
    };
    let store = Arc::new(
        ImageStore::open_with(&cli.root, limits)
            .with_context(|| format!("opening the store {}", cli.root.display()))?,
    );
    match cli.command {
        Command::Pull {
            reference,
            platform,
            no_unpack,
        } => {
            stop_on_signals(store.clone())?;
            let client = RegistryClient::new(cli.insecure)?;
            let options = PullOptions {
                platform: platform.unwrap_or_else(Platform::host),
                unpack: !no_unpack,
            };
            let progress = progress_for(cli.progress);
            let pulled = pull_image(&client, &store, &reference, &options, progress.as_ref())
                .with_context(|| format!("pulling {reference}"))?;
            println!("{} {}", pulled.name, pulled.digest);
        }
        Command::Ls { quiet } => {
            let images = store.images()?;
            if quiet {
                for image in images {
                    println!("{}", image.name);
                }
                return Ok(());
            }
            println!("{:<60} {:<19} {:>10}", "NAME", "DIGEST", "SIZE");
            for image in images {
                let digest = image.manifest.digest().to_string();
                let size = polis_imagesvc::inspect::image_size(&store, &image).unwrap_or(0);
                let short = &digest[..digest.len().min(19)];
                println!("{:<60} {:<19} {:>10}", image.name, short, human(size));
            }
        }
        Command::Inspect { image } => {
            let image = store.find(&image)?;
            let doc = polis_imagesvc::inspect::inspect(&store, &image)?;
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Command::Rm { images } => {
            let mut failed = false;
            for wanted in images {
                match store.find(&wanted).and_then(|i| store.untag(&i.name)) {
                    Ok(removed) => println!("{}", removed.name),
                    Err(e) => {
                        eprintln!("polis-image: removing {wanted}: {e}");
                        failed = true;
                    }
                }
            }
            store.collect_garbage(false)?;
            if failed {
                bail!("some images were not removed");
            }
        }
        Command::Prune => {
            let g = store.collect_garbage(true)?;
            println!(
                "removed {} blobs, {} unpacked layers, {} partial downloads, {} temporary directories and files, \
                 {} lock files: {} freed ({} bytes)",
                g.blobs,
                g.layers,
                g.partial,
                g.temporary,
                g.locks,
                human(g.bytes),
                g.bytes
            );
        }
        Command::Bundle { image, dir, args } => {
            let found = store.find(&image)?;
            create_bundle(&store, &found, &dir, &args)?;
            println!("{}", dir.display());
        }
        Command::Unbundle { dir } => {
            remove_bundle(&dir)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use polis_imagesvc::limits::{
        DEFAULT_MAX_IMAGE_SIZE, DEFAULT_MAX_LAYER_SIZE, DEFAULT_MIN_FREE_SPACE,
    };

    /// The flags' defaults are the library's, and sizes take units.
    #[test]
    fn limit_flags_default_to_the_library_limits() {
        let cli = Cli::try_parse_from(["polis-image", "prune"]).unwrap();
        assert_eq!(cli.max_layer_size, DEFAULT_MAX_LAYER_SIZE);
        assert_eq!(cli.max_image_size, DEFAULT_MAX_IMAGE_SIZE);
        assert_eq!(cli.min_free_space, DEFAULT_MIN_FREE_SPACE);
        let cli = Cli::try_parse_from([
            "polis-image",
            "pull",
            "x",
            "--max-layer-size",
            "1M",
            "--min-free-space",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.max_layer_size, 1 << 20);
        assert_eq!(cli.min_free_space, 0);
        assert!(Cli::try_parse_from(["polis-image", "--max-image-size", "lots", "ls"]).is_err());
    }
}
