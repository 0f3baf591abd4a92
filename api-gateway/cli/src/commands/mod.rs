//! The commands other than `run`, one module per kind of object, and `inspect`, which looks for a name among all
//! of them.

pub mod containers;
pub mod images;
pub mod networks;
pub mod stats;
pub mod system;
pub mod volumes;

use crate::args::{InspectArgs, ObjectType};
use crate::error::{Failure, Result, print};
use crate::format::{json_array, to_json};
use polis_client::{Client, Error};

/// Inspects each name with `find`, prints the JSON array of what was found, and each failure on a line of its own
/// (exit code 1 if any), as `docker inspect` does.
pub async fn inspect_each<F, Fut>(names: &[String], mut find: F) -> Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<serde_json::Value>>,
{
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for name in names {
        match find(name.clone()).await {
            Ok(v) => found.push(v),
            Err(e) => failures.push(e),
        }
    }
    json_array(&found);
    if failures.is_empty() {
        return Ok(());
    }
    for f in &failures {
        print(&f.message);
    }
    Err(Failure {
        code: 1,
        message: String::new(),
    })
}

/// `inspect`: each name as the first kind of object that has it (container, image, network, volume), or only as
/// `--type`.
pub async fn inspect(client: &Client, a: InspectArgs) -> Result<()> {
    let kinds = match a.kind {
        Some(k) => vec![k],
        None => vec![
            ObjectType::Container,
            ObjectType::Image,
            ObjectType::Network,
            ObjectType::Volume,
        ],
    };
    let kinds = &kinds;
    inspect_each(&a.names, |name| async move {
        let mut missing = None;
        for kind in kinds {
            let found = match kind {
                ObjectType::Container => client.inspect_container(&name).await.map(|c| to_json(&c)),
                ObjectType::Image => client.inspect_image(&name).await.map(|i| to_json(&i)),
                ObjectType::Network => client.inspect_network(&name).await.map(|n| to_json(&n)),
                ObjectType::Volume => client.inspect_volume(&name).await.map(|v| to_json(&v)),
            };
            match found {
                Ok(v) => return Ok(v),
                Err(Error::NotFound(m)) => missing = Some(m),
                Err(e) => return Err(e.into()),
            }
        }
        Err(match (kinds.len(), missing) {
            (1, Some(m)) => Failure::new(m),
            _ => Failure::new(format!("No such object: {name}")),
        })
    })
    .await
}
