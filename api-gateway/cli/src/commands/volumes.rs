//! `volume create|ls|inspect|rm|prune`.

use crate::args::{
    Format, InspectNames, PruneArgs, VolumeCommand, VolumeCreateArgs, VolumeLsArgs, VolumeRmArgs,
};
use crate::commands::inspect_each;
use crate::error::{Failure, Result, each};
use crate::format::{Table, decimal_size, json_line};
use crate::parse;
use polis_client::{Client, proto};
use std::io::{BufRead, Write};

pub async fn volume(client: &Client, command: VolumeCommand) -> Result<()> {
    match command {
        VolumeCommand::Create(a) => create(client, a).await,
        VolumeCommand::Ls(a) => ls(client, a).await,
        VolumeCommand::Inspect(a) => inspect(client, a).await,
        VolumeCommand::Rm(a) => rm(client, a).await,
        VolumeCommand::Prune(a) => prune(client, a).await,
    }
}

/// Creates the volume; prints its name.
async fn create(client: &Client, a: VolumeCreateArgs) -> Result<()> {
    let volume = client
        .create_volume(proto::CreateVolumeRequest {
            name: a.name.unwrap_or_default(),
            driver: a.driver,
            options: parse::key_values(&a.opt).map_err(Failure::new)?,
            labels: parse::key_values(&a.label).map_err(Failure::new)?,
        })
        .await?;
    println!("{}", volume.name);
    Ok(())
}

/// DRIVER, VOLUME NAME (or names, or JSON lines).
async fn ls(client: &Client, a: VolumeLsArgs) -> Result<()> {
    let mut filter = proto::VolumeFilter::default();
    for f in &a.filter {
        match parse::filter(f, &["name", "label", "dangling"]).map_err(Failure::new)? {
            ("name", v) => filter.names.push(v.to_string()),
            ("label", v) => filter.labels.push(v.to_string()),
            (_, v) => {
                filter.dangling = Some(match v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(Failure::new(format!(
                            "invalid dangling filter {other:?} (true or false)"
                        )));
                    }
                })
            }
        }
    }
    let volumes = client
        .list_volumes(proto::ListVolumesRequest {
            filter: Some(filter),
        })
        .await?;
    if a.quiet {
        for v in &volumes {
            println!("{}", v.name);
        }
        return Ok(());
    }
    if a.format == Format::Json {
        volumes.iter().for_each(json_line);
        return Ok(());
    }
    let mut t = Table::new(&["DRIVER", "VOLUME NAME"]);
    for v in &volumes {
        t.row(vec![v.driver.clone(), v.name.clone()]);
    }
    t.print();
    Ok(())
}

async fn inspect(client: &Client, a: InspectNames) -> Result<()> {
    inspect_each(&a.names, |name| async move {
        Ok(crate::format::to_json(&client.inspect_volume(&name).await?))
    })
    .await
}

/// Prints each name it removed.
async fn rm(client: &Client, a: VolumeRmArgs) -> Result<()> {
    each(&a.names, |name| async move {
        client.remove_volume(&name, a.force).await?;
        println!("{name}");
        Ok(())
    })
    .await
}

/// Asks first (unless `-f`), as docker does; prints what it removed and the space freed.
async fn prune(client: &Client, a: PruneArgs) -> Result<()> {
    if !a.force
        && !confirm(
            "WARNING! This will remove anonymous local volumes not used by at least one container.\n\
             Are you sure you want to continue? [y/N] ",
        )
    {
        return Ok(());
    }
    let pruned = client.prune_volumes().await?;
    if !pruned.removed.is_empty() {
        println!("Deleted Volumes:");
        for name in &pruned.removed {
            println!("{name}");
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        decimal_size(pruned.space_reclaimed_bytes as f64)
    );
    Ok(())
}

/// Asks on stdout, reads a line of stdin: yes only for "y" or "yes".
fn confirm(question: &str) -> bool {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}
