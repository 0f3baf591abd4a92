//! Images: pulls through polis-image's library into polisd's store, and the views Docker's API shows of them.
//! Docker's image ID is the digest of the image's config; names are shown in Docker's familiar form
//! (`busybox:latest` for `docker.io/library/busybox:latest`).

use super::error::{Error, Result};
use polis_imagesvc::progress::{Progress, PullEvent};
use polis_imagesvc::pull::{Platform, PullOptions, pull_image};
use polis_imagesvc::registry::{Credential, RegistryClient};
use polis_imagesvc::store::{ImageStore, StoredImage};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// An image as polisd works with it: the store's entry, its config digest and its config.
#[derive(Debug, Clone)]
pub struct Image {
    pub stored: StoredImage,
    pub id: String,
    pub config: serde_json::Value,
}

impl Image {
    /// When the image was made (its config's `created`), in Unix seconds; 0 when unknown.
    pub fn created_unix(&self) -> i64 {
        self.config["created"]
            .as_str()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|t| t.timestamp())
            .unwrap_or(0)
    }

    /// `NAME@DIGEST` of the image's manifest, with the familiar name's repository.
    pub fn repo_digest(&self) -> String {
        let name = familiar_name(&self.stored.name);
        let repo = match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => &name[..i],
            _ => name.as_str(),
        };
        format!("{repo}@{}", self.stored.manifest.digest())
    }

    /// The image config's labels.
    pub fn labels(&self) -> std::collections::HashMap<String, String> {
        self.config["config"]["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Image {
    /// The image's size: its manifest, config and layer blobs (blocking: reads the store).
    pub fn size(&self, store: &ImageStore) -> u64 {
        polis_imagesvc::inspect::image_size(store, &self.stored).unwrap_or(0)
    }

    /// The digests of its layers (its config's DiffIDs), base first.
    pub fn layers(&self) -> Vec<String> {
        self.config["rootfs"]["diff_ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Gives the image `source` names the name `target` (`docker tag`, blocking: it changes the store); a `tag` event.
/// A target with a digest is refused, as dockerd refuses it.
pub fn tag(core: &super::Core, source: &str, target: &str) -> Result<()> {
    let parsed =
        polis_imagesvc::reference::parse(target).map_err(|e| Error::Invalid(e.to_string()))?;
    if parsed.digest().is_some() {
        return Err(Error::Invalid(format!(
            "refusing to create a tag with a digest reference: {target}"
        )));
    }
    let full = polis_imagesvc::reference::store_name(&parsed);
    let image = find(&core.store, source)?;
    core.store.tag(&full, &image.stored.manifest)?;
    core.image_event("tag", target);
    Ok(())
}

/// What a prune removed: each name untagged with its image's ID, the IDs deleted, the bytes freed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub untagged: Vec<(String, String)>,
    pub deleted: Vec<String>,
    pub reclaimed: u64,
}

/// Removes images no container uses (`POST /images/prune`, polis.v1 Images/Prune; blocking): with `all`, every
/// such image with every one of `labels` (`KEY` or `KEY=VALUE`); else only images without a name, which polisd's
/// store never has. Then the blobs nothing references any more are collected.
pub fn prune(core: &super::Core, all: bool, labels: &[String]) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    if all {
        let used: std::collections::HashSet<String> =
            core.db.all()?.into_iter().map(|r| r.image_id).collect();
        for image in list(&core.store)? {
            let image_labels = image.labels();
            if used.contains(&image.id)
                || !labels
                    .iter()
                    .all(|l| super::label_matches(&image_labels, l))
            {
                continue;
            }
            if !pruned.deleted.contains(&image.id) {
                pruned.reclaimed += image.size(&core.store);
                pruned.deleted.push(image.id.clone());
            }
            core.store.untag(&image.stored.name)?;
            pruned
                .untagged
                .push((familiar_name(&image.stored.name), image.id));
        }
    }
    core.store.collect_garbage(false)?;
    Ok(pruned)
}

/// What removing an image name did: the name untagged, and the image's ID when no name is left and its blobs were
/// collected.
pub struct Removed {
    pub untagged: String,
    pub deleted: Option<String>,
}

/// Removes the image name `reference` (`docker rmi`, blocking: it changes the store): refused while a container uses
/// the image unless `force`, then untagged; the image's blobs are collected when no other name is left, and a
/// `delete` event published.
pub fn remove(core: &super::Core, reference: &str, force: bool) -> Result<Removed> {
    let image = find(&core.store, reference)?;
    if !force && let Some(user) = core.db.all()?.into_iter().find(|r| r.image_id == image.id) {
        return Err(Error::Conflict(format!(
            "conflict: unable to remove repository reference \"{reference}\" (must force) - container {} is using its referenced image {}",
            user.short_id(),
            &image.id.trim_start_matches("sha256:")[..12]
        )));
    }
    core.store.untag(&image.stored.name)?;
    let remaining = list(&core.store)?.iter().any(|i| i.id == image.id);
    if !remaining {
        core.store.collect_garbage(false)?;
    }
    let untagged = familiar_name(&image.stored.name);
    core.image_event("delete", &untagged);
    Ok(Removed {
        untagged,
        deleted: (!remaining).then_some(image.id),
    })
}

/// `docker.io/library/busybox:latest` → `busybox:latest`, `docker.io/x/y:1` → `x/y:1`; others unchanged.
pub fn familiar_name(name: &str) -> String {
    let short = name
        .strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name);
    short.to_string()
}

/// Registries Docker reaches over plain HTTP without being told: those on the loopback network.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(h, _)| h);
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
        || host == "[::1]"
}

pub fn load(store: &ImageStore, stored: StoredImage) -> Result<Image> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(stored.manifest.digest().as_ref())?)
            .map_err(|e| Error::failed(format!("manifest of {}", stored.name), e))?;
    let id = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| Error::Failed(format!("manifest of {} has no config", stored.name)))?
        .to_string();
    let config: serde_json::Value = serde_json::from_slice(&store.read_blob(&id)?)
        .map_err(|e| Error::failed(format!("config of {}", stored.name), e))?;
    Ok(Image { stored, id, config })
}

/// Every image of the store.
pub fn list(store: &ImageStore) -> Result<Vec<Image>> {
    store
        .images()?
        .into_iter()
        .map(|s| load(store, s))
        .collect()
}

/// The image a user names: a name, a manifest digest, or the image ID (config digest) or a prefix of it.
pub fn find(store: &ImageStore, wanted: &str) -> Result<Image> {
    let not_found = || Error::NotFound(format!("No such image: {wanted}"));
    if wanted.is_empty() {
        return Err(not_found());
    }
    match store.find(wanted) {
        Ok(stored) => return load(store, stored),
        Err(polis_imagesvc::Error::NotFound { .. }) => {}
        Err(polis_imagesvc::Error::Reference { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let hex = wanted.strip_prefix("sha256:").unwrap_or(wanted);
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(not_found());
    }
    list(store)?
        .into_iter()
        .find(|i| {
            i.id.strip_prefix("sha256:")
                .is_some_and(|h| h.starts_with(hex))
        })
        .ok_or_else(not_found)
}

/// What a pull reports as it goes, in Docker's JSON progress stream (`{"status": ..., "id": ...}`).
pub type ProgressSink = Arc<dyn Fn(serde_json::Value) + Send + Sync>;

/// Docker's progress messages of a pull, and the bytes of the layers it downloaded (for the pull metrics).
struct DockerProgress {
    sink: ProgressSink,
    downloaded: AtomicU64,
}

fn short_layer(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex[..hex.len().min(12)].to_string()
}

impl Progress for DockerProgress {
    fn event(&self, event: PullEvent) {
        let message = match event {
            PullEvent::Resolved { reference, .. } => {
                serde_json::json!({"status": format!("Pulling from {}", familiar_name(&reference))})
            }
            PullEvent::LayerStart { layer, .. } => {
                serde_json::json!({"status": "Pulling fs layer", "id": short_layer(&layer)})
            }
            PullEvent::LayerProgress {
                layer,
                downloaded,
                size,
            } => serde_json::json!({
                "status": "Downloading", "id": short_layer(&layer),
                "progressDetail": {"current": downloaded, "total": size}
            }),
            PullEvent::LayerDownloaded {
                layer,
                cached,
                size,
            } => {
                if !cached {
                    self.downloaded.fetch_add(size, Ordering::Relaxed);
                }
                serde_json::json!({
                    "status": if cached { "Already exists" } else { "Download complete" },
                    "id": short_layer(&layer)
                })
            }
            // A layer that was already there was reported as "Already exists".
            PullEvent::LayerUnpacked { cached: true, .. } => return,
            PullEvent::LayerUnpacked { layer, .. } => {
                serde_json::json!({"status": "Pull complete", "id": short_layer(&layer)})
            }
            PullEvent::Done { digest, .. } => {
                serde_json::json!({"status": format!("Digest: {digest}")})
            }
        };
        (self.sink)(message);
    }
}

/// Registry credentials from Docker's X-Registry-Auth header (base64url JSON with username and password, or an
/// identity token).
pub fn credential_from_header(header: &str) -> Result<Option<Credential>> {
    use base64_decode::decode;
    if header.trim().is_empty() {
        return Ok(None);
    }
    let bytes = decode(header.trim())
        .ok_or_else(|| Error::Invalid("X-Registry-Auth: not base64".into()))?;
    let auth: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("X-Registry-Auth: {e}")))?;
    let text = |k: &str| auth[k].as_str().unwrap_or_default().to_string();
    if !text("identitytoken").is_empty() {
        return Ok(Some(Credential::IdentityToken(text("identitytoken"))));
    }
    if text("username").is_empty() && text("password").is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential::Basic {
        username: text("username"),
        password: text("password"),
    }))
}

/// Pulls `reference` (blocking; run it on a blocking thread). `insecure`: registries over plain HTTP besides the
/// loopback ones.
pub fn pull(
    store: &ImageStore,
    reference: &str,
    insecure: &[String],
    credential: Option<Credential>,
    progress: ProgressSink,
) -> Result<Image> {
    let parsed =
        polis_imagesvc::reference::parse(reference).map_err(|e| Error::Invalid(e.to_string()))?;
    let registry = parsed.registry().to_string();
    let mut insecure = insecure.to_vec();
    if is_loopback_registry(&registry) {
        insecure.push(registry.clone());
    }
    let client = match credential {
        Some(c) => RegistryClient::with_credentials(insecure, Box::new(move |_| Some(c.clone())))?,
        None => RegistryClient::new(insecure)?,
    };
    let options = PullOptions {
        platform: Platform::host(),
        unpack: true,
    };
    let before = store
        .find(reference)
        .ok()
        .map(|i| i.manifest.digest().to_string());
    let started = std::time::Instant::now();
    let counted = DockerProgress {
        sink: progress.clone(),
        downloaded: AtomicU64::new(0),
    };
    let pulled = pull_image(&client, store, reference, &options, &counted);
    crate::metrics::global().observe_pull(
        pulled.is_ok(),
        counted.downloaded.load(Ordering::Relaxed),
        started.elapsed(),
    );
    let pulled = pulled.map_err(|e| match e {
        polis_imagesvc::Error::NotFound { .. } => Error::NotFound(format!(
            "pull access denied for {reference}, repository does not exist or may require 'docker login': {e}"
        )),
        other => Error::Failed(other.to_string()),
    })?;
    let status = if before.as_deref() == Some(pulled.digest.as_str()) {
        "Image is up to date for"
    } else {
        "Downloaded newer image for"
    };
    progress(serde_json::json!({
        "status": format!("Status: {status} {}", familiar_name(&pulled.name))
    }));
    find(store, &pulled.name)
}

/// Base64 as Docker's clients encode X-Registry-Auth: URL-safe alphabet, padding optional (also the standard
/// alphabet, which older clients send).
mod base64_decode {
    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let value = |c: u8| -> Option<u32> {
            Some(match c {
                b'A'..=b'Z' => (c - b'A') as u32,
                b'a'..=b'z' => (c - b'a') as u32 + 26,
                b'0'..=b'9' => (c - b'0') as u32 + 52,
                b'+' | b'-' => 62,
                b'/' | b'_' => 63,
                _ => return None,
            })
        };
        let bytes: Vec<u8> = text.bytes().filter(|b| *b != b'=').collect();
        let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
        for chunk in bytes.chunks(4) {
            let mut acc = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                acc |= value(*c)? << (18 - 6 * i);
            }
            let n = match chunk.len() {
                4 => 3,
                3 => 2,
                2 => 1,
                _ => return None,
            };
            out.extend_from_slice(&acc.to_be_bytes()[1..1 + n]);
        }
        Some(out)
    }
}

impl super::Core {
    pub fn image_event(&self, action: &str, name: &str) {
        let attributes = [("name".to_string(), familiar_name(name))].into();
        self.events.publish(
            bollard_stubs::models::EventMessageTypeEnum::IMAGE,
            action,
            &familiar_name(name),
            attributes,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_shown_as_docker_shows_them() {
        assert_eq!(
            familiar_name("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar_name("docker.io/x/y:1"), "x/y:1");
        assert_eq!(familiar_name("127.0.0.1:5000/a:b"), "127.0.0.1:5000/a:b");
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback_registry("127.0.0.1:5000"));
        assert!(is_loopback_registry("127.3.2.1"));
        assert!(is_loopback_registry("localhost:5000"));
        assert!(!is_loopback_registry("198.18.0.1:5000"));
        assert!(!is_loopback_registry("registry-1.docker.io"));
    }

    #[test]
    fn registry_auth_header_is_decoded() {
        // {"username":"u","password":"p"} in base64url without padding.
        let header = "eyJ1c2VybmFtZSI6InUiLCJwYXNzd29yZCI6InAifQ";
        match credential_from_header(header).unwrap() {
            Some(Credential::Basic { username, password }) => {
                assert_eq!((username.as_str(), password.as_str()), ("u", "p"));
            }
            other => panic!("{other:?}"),
        }
        assert!(credential_from_header("").unwrap().is_none());
        assert!(matches!(
            credential_from_header("***"),
            Err(Error::Invalid(_))
        ));
    }
}
