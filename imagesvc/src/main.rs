//! polis-image: pull images from OCI registries into the store and make bundles from them.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use polis_imagesvc::bundle::{create_bundle, remove_bundle};
use polis_imagesvc::progress::{JsonProgress, NoProgress, Progress, TerminalProgress};
use polis_imagesvc::pull::{Platform, PullOptions, pull_image};
use polis_imagesvc::registry::RegistryClient;
use polis_imagesvc::store::ImageStore;
use std::io::IsTerminal;
use std::path::PathBuf;

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
    if let Err(e) = run(cli) {
        eprintln!("polis-image: {e:#}");
        std::process::exit(1);
    }
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
    let store = ImageStore::open(&cli.root)
        .with_context(|| format!("opening the store {}", cli.root.display()))?;
    match cli.command {
        Command::Pull {
            reference,
            platform,
            no_unpack,
        } => {
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
                "removed {} blobs, {} unpacked layers, {} partial downloads: {}",
                g.blobs,
                g.layers,
                g.partial,
                human(g.bytes)
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
