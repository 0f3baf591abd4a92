use std::time::Duration;

use anyhow::Result;
use polis_runc::events::stats_event;
use polis_runc::store::Store;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Time between stats events, like 5s or 500ms.
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Print one stats event and exit.
    #[arg(long)]
    pub stats: bool,
    /// Container ID.
    pub id: String,
}

fn parse_interval(s: &str) -> Result<Duration> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("invalid --interval {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => anyhow::bail!("invalid --interval {s:?}: use ms, s or m"),
    };
    if secs <= 0.0 {
        anyhow::bail!("--interval must be positive");
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn run(store: &Store, args: &Args) -> Result<u8> {
    let interval = parse_interval(&args.interval)?;
    if args.stats {
        println!("{}", stats_event(store, &args.id)?);
        return Ok(0);
    }
    loop {
        match stats_event(store, &args.id) {
            Ok(event) => println!("{event}"),
            // The container went away: the stream ends.
            Err(polis_runc::Error::NotExist { .. }) => return Ok(0),
            Err(e) => return Err(e.into()),
        }
        std::thread::sleep(interval);
    }
}
