//! `network create|ls|inspect|rm|connect|disconnect`.

use crate::args::{
    Format, InspectNames, Names, NetworkCommand, NetworkConnectArgs, NetworkCreateArgs,
    NetworkDisconnectArgs, NetworkLsArgs,
};
use crate::commands::inspect_each;
use crate::error::{Failure, Result, each};
use crate::format::{Table, json_line, short_id};
use crate::parse;
use polis_client::{Client, proto};

pub async fn network(client: &Client, command: NetworkCommand) -> Result<()> {
    match command {
        NetworkCommand::Create(a) => create(client, a).await,
        NetworkCommand::Ls(a) => ls(client, a).await,
        NetworkCommand::Inspect(a) => inspect(client, a).await,
        NetworkCommand::Rm(a) => rm(client, a).await,
        NetworkCommand::Connect(a) => connect(client, a).await,
        NetworkCommand::Disconnect(a) => disconnect(client, a).await,
    }
}

/// Creates the network; prints its ID.
async fn create(client: &Client, a: NetworkCreateArgs) -> Result<()> {
    let ipam = if a.subnet.is_some() || a.gateway.is_some() || a.ip_range.is_some() {
        vec![proto::IpamConfig {
            subnet: a.subnet.unwrap_or_default(),
            gateway: a.gateway.unwrap_or_default(),
            ip_range: a.ip_range.unwrap_or_default(),
        }]
    } else {
        Vec::new()
    };
    let network = client
        .create_network(proto::CreateNetworkRequest {
            name: a.name,
            driver: a.driver,
            ipam,
            internal: a.internal,
            labels: parse::key_values(&a.label).map_err(Failure::new)?,
            options: parse::key_values(&a.opt).map_err(Failure::new)?,
        })
        .await?;
    println!("{}", network.id);
    Ok(())
}

/// NETWORK ID, NAME, DRIVER, SCOPE (or IDs, or JSON lines).
async fn ls(client: &Client, a: NetworkLsArgs) -> Result<()> {
    let mut filter = proto::NetworkFilter::default();
    for f in &a.filter {
        let (k, v) = parse::filter(f, &["id", "name", "driver", "label"]).map_err(Failure::new)?;
        let list = match k {
            "id" => &mut filter.ids,
            "name" => &mut filter.names,
            "driver" => &mut filter.drivers,
            _ => &mut filter.labels,
        };
        list.push(v.to_string());
    }
    let networks = client
        .list_networks(proto::ListNetworksRequest {
            filter: Some(filter),
        })
        .await?;
    if a.quiet {
        for n in &networks {
            println!("{}", short_id(&n.id, a.no_trunc));
        }
        return Ok(());
    }
    if a.format == Format::Json {
        networks.iter().for_each(json_line);
        return Ok(());
    }
    let mut t = Table::new(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"]);
    for n in &networks {
        t.row(vec![
            short_id(&n.id, a.no_trunc),
            n.name.clone(),
            n.driver.clone(),
            "local".to_string(),
        ]);
    }
    t.print();
    Ok(())
}

async fn inspect(client: &Client, a: InspectNames) -> Result<()> {
    inspect_each(&a.names, |name| async move {
        Ok(crate::format::to_json(
            &client.inspect_network(&name).await?,
        ))
    })
    .await
}

/// Prints each name it removed.
async fn rm(client: &Client, a: Names) -> Result<()> {
    each(&a.names, |name| async move {
        client.remove_network(&name).await?;
        println!("{name}");
        Ok(())
    })
    .await
}

async fn connect(client: &Client, a: NetworkConnectArgs) -> Result<()> {
    client
        .connect_network(&a.network, &a.container, a.alias)
        .await?;
    Ok(())
}

async fn disconnect(client: &Client, a: NetworkDisconnectArgs) -> Result<()> {
    client
        .disconnect_network(&a.network, &a.container, a.force)
        .await?;
    Ok(())
}
