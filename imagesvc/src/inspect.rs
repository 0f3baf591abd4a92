//! `ls` and `inspect`: what the store knows of an image.

use crate::digest::{chain_ids, diff_ids};
use crate::error::{Error, Result};
use crate::layers::layer_dir;
use crate::store::{ImageStore, StoredImage};
use oci_spec::image::ImageManifest;
use serde_json::{Value, json};

fn manifest_of(store: &ImageStore, image: &StoredImage) -> Result<ImageManifest> {
    let bytes = store.read_blob(image.manifest.digest().as_ref())?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Manifest {
        reference: image.name.clone(),
        reason: e.to_string(),
    })
}

/// The image's size as stored: manifest, config and layer blobs.
pub fn image_size(store: &ImageStore, image: &StoredImage) -> Result<u64> {
    let m = manifest_of(store, image)?;
    Ok(
        image.manifest.size()
            + m.config().size()
            + m.layers().iter().map(|l| l.size()).sum::<u64>(),
    )
}

pub fn inspect(store: &ImageStore, image: &StoredImage) -> Result<Value> {
    let manifest = manifest_of(store, image)?;
    let config_bytes = store.read_blob(manifest.config().digest().as_ref())?;
    let config: Value = serde_json::from_slice(&config_bytes).map_err(|e| Error::Manifest {
        reference: image.name.clone(),
        reason: format!("config: {e}"),
    })?;
    let diffs = diff_ids(&config_bytes)?;
    let chains = chain_ids(&diffs);
    let mut layers = Vec::new();
    for (i, l) in manifest.layers().iter().enumerate() {
        layers.push(json!({
            "digest": l.digest().to_string(),
            "mediaType": l.media_type().to_string(),
            "size": l.size(),
            "diffId": diffs.get(i),
            "chainId": chains.get(i),
            "unpacked": chains.get(i).and_then(|c| layer_dir(store, c).ok()).is_some_and(|d| d.is_dir()),
        }));
    }
    Ok(json!({
        "name": image.name,
        "digest": image.manifest.digest().to_string(),
        "mediaType": image.manifest.media_type().to_string(),
        "platform": image.manifest.platform(),
        "size": image_size(store, image)?,
        "layers": layers,
        "config": config,
    }))
}
