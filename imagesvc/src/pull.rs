//! `pull`: resolve a reference to one image manifest (choosing the platform from an index), fetch its config and
//! layer blobs into the store with every digest and size verified, and unpack the layers while they download.
//!
//! Layer blobs download in parallel ([`PARALLEL_DOWNLOADS`] at a time) into `ingest/<hex>.partial` under an
//! exclusive lock, so a concurrent pull of the same blob waits and then finds it in the store instead of
//! downloading it again. A partial download left by an interrupted pull is resumed with an HTTP Range request, and
//! the digest is computed over the whole blob, the old part included. Unpacking reads each blob as it is written
//! ([`Feed`]), layer after layer in order, so pull and unpack overlap.
//!
//! The store's limits (limits.rs) bound what a pull writes: a layer or image that unpacks to too much, or a
//! download or unpacking that would eat into the free-space reserve, stops the pull, and what the pull had added
//! to the store goes again ([`ImageStore::discard`]). A blob whose length differs from the size its manifest
//! declares is refused as that, at once. [`request_stop`] (the SIGTERM and SIGINT handler of `polis-image pull`)
//! makes a pull's unpacking stop at its next read, so that it removes its temporary directory.

use crate::digest::{chain_ids, diff_ids, digest_hex, sha256_digest};
use crate::error::{Error, Result, io};
use crate::fsutil::FileLock;
use crate::layers::{layer_dir, unpack_into_store};
use crate::limits::{SPACE_CHECK_INTERVAL, check_free_space};
use crate::progress::{Progress, PullEvent};
use crate::reference::{Reference, manifest_selector, parse, store_name};
use crate::registry::RegistryClient;
use crate::store::ImageStore;
use oci_spec::image::{
    Descriptor, DescriptorBuilder, ImageIndex, ImageManifest, MediaType, PlatformBuilder,
};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub const PARALLEL_DOWNLOADS: usize = 3;
/// An image config larger than this is refused (they are a few KiB).
const MAX_CONFIG_SIZE: u64 = 8 << 20;
/// Times a broken blob download is resumed within one pull before giving up.
const BLOB_RETRIES: u32 = 3;
/// Downloads start the disk write-back of every this many bytes as they arrive (see [`start_writeback`]).
const WRITEBACK_CHUNK: u64 = 8 << 20;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every pull of this process to stop: unpacking fails at its next read (removing its temporary directory)
/// and downloads at their next chunk. For signal handlers; there is no way back.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The platform to pull from an index (image-spec image-index.md "platform").
#[derive(Debug, Clone, PartialEq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// This machine's platform, in Go's GOOS/GOARCH names as the image spec uses them.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "arm" => ("arm", Some("v7")),
            other => (other, None),
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(String::from),
        }
    }

    fn matches(&self, p: &oci_spec::image::Platform) -> bool {
        if p.os().to_string() != self.os || p.architecture().to_string() != self.architecture {
            return false;
        }
        match (&self.variant, p.variant()) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            // arm64 images often leave out the variant: it is v8.
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Platform, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: parts
                    .get(2)
                    .filter(|v| !v.is_empty())
                    .map(|v| v.to_string()),
            }),
            _ => Err(format!(
                "platform {s:?} is not OS/ARCH[/VARIANT], e.g. linux/arm64/v8"
            )),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    /// Unpack the layers (by ChainID) as well as storing the blobs.
    pub unpack: bool,
}

#[derive(Debug, Clone)]
pub struct PulledImage {
    pub name: String,
    pub digest: String,
    pub manifest: ImageManifest,
}

/// Pulls `reference` into `store`. On success the image is in index.json under its fully qualified name; on
/// failure it is not (blobs already verified stay, for the next pull to reuse, until `prune`).
pub fn pull_image(
    client: &RegistryClient,
    store: &ImageStore,
    reference: &str,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<PulledImage> {
    let reference = parse(reference)?;
    let mut added = Added::default();
    let in_use = store.content_in_use()?;
    let result = pull_parsed(client, store, &reference, options, progress, &mut added);
    drop(in_use);
    if matches!(result, Err(Error::Limit { .. })) {
        // A limit stops the pull with nothing of it left behind: a pull that is let past the limit downloads again.
        if let Err(e) = store.discard(&added.blobs, &added.chains) {
            tracing::warn!(error = %e, "removing what the stopped pull had added");
        }
    }
    result
}

/// What a pull found missing from the store when it started: the content it adds.
#[derive(Debug, Default)]
struct Added {
    /// Config and layer blob digests.
    blobs: Vec<String>,
    /// Chain ids of layers not unpacked yet.
    chains: Vec<String>,
}

fn pull_parsed(
    client: &RegistryClient,
    store: &ImageStore,
    reference: &Reference,
    options: &PullOptions,
    progress: &dyn Progress,
    added: &mut Added,
) -> Result<PulledImage> {
    let name = store_name(reference);
    let (manifest_bytes, manifest_digest, platform) =
        resolve_manifest(client, reference, &options.platform)?;
    let manifest = parse_manifest(&name, &manifest_bytes)?;

    let config_desc = manifest.config();
    let config_type = config_desc.media_type().to_string();
    if config_type != OCI_CONFIG && config_type != DOCKER_CONFIG {
        return Err(Error::Manifest {
            reference: name,
            reason: format!("not a container image: its config has media type {config_type}"),
        });
    }
    let config_digest = config_desc.digest().to_string();
    for d in std::iter::once(config_desc).chain(manifest.layers()) {
        if !store.has_blob(d.digest().as_ref(), d.size()) {
            added.blobs.push(d.digest().to_string());
        }
    }
    let config = fetch_small_blob(client, store, reference, &config_digest, config_desc.size())?;
    let diff_ids = diff_ids(&config)?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::Manifest {
            reference: name,
            reason: format!(
                "the manifest has {} layers and the config {} DiffIDs",
                manifest.layers().len(),
                diff_ids.len()
            ),
        });
    }
    if options.unpack {
        for chain in chain_ids(&diff_ids) {
            if !layer_dir(store, &chain)?.is_dir() {
                added.chains.push(chain);
            }
        }
    }
    progress.event(PullEvent::Resolved {
        reference: name.clone(),
        digest: manifest_digest.clone(),
        platform: platform.to_string(),
        layers: manifest.layers().len(),
    });

    store.budget().start_image();
    fetch_layers(
        client,
        store,
        reference,
        &manifest,
        &diff_ids,
        options.unpack,
        progress,
    )?;

    store.put_blob(&manifest_digest, &manifest_bytes)?;
    let media_type = manifest
        .media_type()
        .clone()
        .unwrap_or(MediaType::Other(DOCKER_MANIFEST.into()));
    let descriptor = DescriptorBuilder::default()
        .media_type(media_type)
        .digest(parse_digest(&manifest_digest)?)
        .size(manifest_bytes.len() as u64)
        .platform(
            PlatformBuilder::default()
                .os(platform.os.as_str())
                .architecture(platform.architecture.as_str())
                .variant(platform.variant.clone().unwrap_or_default())
                .build()
                .map_err(|e| manifest_error(&name, e))?,
        )
        .build()
        .map_err(|e| manifest_error(&name, e))?;
    store.tag(&name, &descriptor)?;
    progress.event(PullEvent::Done {
        reference: name.clone(),
        digest: manifest_digest.clone(),
    });
    Ok(PulledImage {
        name,
        digest: manifest_digest,
        manifest,
    })
}

fn manifest_error(reference: &str, e: impl std::fmt::Display) -> Error {
    Error::Manifest {
        reference: reference.to_string(),
        reason: e.to_string(),
    }
}

fn parse_digest(digest: &str) -> Result<oci_spec::image::Digest> {
    digest_hex(digest)?;
    digest
        .parse()
        .map_err(|e: oci_spec::OciSpecError| Error::Verify {
            what: "digest",
            digest: digest.to_string(),
            expected: "sha256:<hex>".into(),
            actual: e.to_string(),
        })
}

/// The media type a manifest says it has: its `mediaType` field, else the Content-Type the registry sent.
fn manifest_media_type(body: &[u8], content_type: &str) -> Result<(String, u64)> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "schemaVersion")]
        schema_version: Option<u64>,
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let head: Head = serde_json::from_slice(body).map_err(|e| Error::Manifest {
        reference: String::new(),
        reason: format!("not JSON: {e}"),
    })?;
    let media_type = head
        .media_type
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| content_type.to_string());
    Ok((media_type, head.schema_version.unwrap_or(0)))
}

/// Fetches the manifest the reference names and, for an index or manifest list, the manifest of `platform`.
/// Returns its bytes, digest (verified) and the platform it is for.
fn resolve_manifest(
    client: &RegistryClient,
    reference: &Reference,
    platform: &Platform,
) -> Result<(Vec<u8>, String, Platform)> {
    let name = store_name(reference);
    let (body, content_type) = client.get_manifest(reference, manifest_selector(reference))?;
    let digest = sha256_digest(&body);
    if let Some(pinned) = reference.digest()
        && pinned != digest
    {
        return Err(Error::Verify {
            what: "manifest",
            digest: name,
            expected: pinned.to_string(),
            actual: digest,
        });
    }
    let (media_type, schema) =
        manifest_media_type(&body, &content_type).map_err(|e| with_ref(e, &name))?;
    if schema == 1 || media_type.starts_with("application/vnd.docker.distribution.manifest.v1") {
        return Err(Error::Manifest {
            reference: name,
            reason: "Docker schema 1 manifests are not supported (deprecated since 2017, removed from Docker \
                     and containerd); push the image again with a current client to get a schema 2 or OCI manifest"
                .into(),
        });
    }
    if media_type == MediaType::ImageIndex.to_string() || media_type == DOCKER_LIST {
        let index: ImageIndex =
            serde_json::from_slice(&body).map_err(|e| manifest_error(&name, e))?;
        let chosen = index
            .manifests()
            .iter()
            .find(|d| d.platform().as_ref().is_some_and(|p| platform.matches(p)))
            .ok_or_else(|| Error::Platform {
                reference: name.clone(),
                wanted: platform.to_string(),
                available: available_platforms(&index),
            })?;
        let chosen_platform = chosen
            .platform()
            .as_ref()
            .map(|p| Platform {
                os: p.os().to_string(),
                architecture: p.architecture().to_string(),
                variant: p.variant().clone(),
            })
            .unwrap_or_else(|| platform.clone());
        let child = chosen.digest().to_string();
        let (body, _) = client.get_manifest(reference, &child)?;
        verify_bytes("manifest", &child, chosen.size(), &body)?;
        let (media_type, _) = manifest_media_type(&body, "").map_err(|e| with_ref(e, &name))?;
        if media_type == MediaType::ImageIndex.to_string() || media_type == DOCKER_LIST {
            return Err(manifest_error(
                &name,
                "an index inside an index is not supported",
            ));
        }
        return Ok((body, child, chosen_platform));
    }
    if media_type != MediaType::ImageManifest.to_string() && media_type != DOCKER_MANIFEST {
        return Err(manifest_error(
            &name,
            format!("unsupported manifest media type {media_type:?}"),
        ));
    }
    Ok((body, digest, platform.clone()))
}

fn with_ref(e: Error, reference: &str) -> Error {
    match e {
        Error::Manifest { reason, .. } => Error::Manifest {
            reference: reference.to_string(),
            reason,
        },
        other => other,
    }
}

fn available_platforms(index: &ImageIndex) -> String {
    let list: Vec<String> = index
        .manifests()
        .iter()
        .filter_map(|d| d.platform().as_ref())
        .map(|p| {
            let mut s = format!("{}/{}", p.os(), p.architecture());
            if let Some(v) = p.variant() {
                s.push('/');
                s.push_str(v);
            }
            s
        })
        .collect();
    if list.is_empty() {
        "no platforms".into()
    } else {
        list.join(", ")
    }
}

fn parse_manifest(name: &str, body: &[u8]) -> Result<ImageManifest> {
    let manifest: ImageManifest =
        serde_json::from_slice(body).map_err(|e| manifest_error(name, e))?;
    for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
        digest_hex(d.digest().as_ref())?;
    }
    Ok(manifest)
}

fn verify_bytes(what: &'static str, digest: &str, size: u64, body: &[u8]) -> Result<()> {
    if body.len() as u64 != size {
        return Err(Error::Verify {
            what,
            digest: digest.to_string(),
            expected: format!("{size} bytes"),
            actual: format!("{} bytes", body.len()),
        });
    }
    let actual = sha256_digest(body);
    if actual != digest {
        return Err(Error::Verify {
            what,
            digest: digest.to_string(),
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(())
}

/// A config blob: from the store, or fetched, verified and stored.
fn fetch_small_blob(
    client: &RegistryClient,
    store: &ImageStore,
    reference: &Reference,
    digest: &str,
    size: u64,
) -> Result<Vec<u8>> {
    if store.has_blob(digest, size) {
        return store.read_blob(digest);
    }
    if size > MAX_CONFIG_SIZE {
        return Err(Error::Manifest {
            reference: store_name(reference),
            reason: format!(
                "config blob {digest} of {size} bytes is larger than {MAX_CONFIG_SIZE}"
            ),
        });
    }
    let resp = client.get_blob(reference, digest, 0)?;
    let mut body = Vec::new();
    resp.body
        .take(size + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::Http {
            op: "reading blob",
            url: digest.to_string(),
            reason: e.to_string(),
        })?;
    verify_bytes("config blob", digest, size, &body)?;
    store.put_blob(digest, &body)?;
    Ok(body)
}

/// How far a blob download has got, for the unpacker reading behind it.
struct Feed {
    state: Mutex<FeedState>,
    changed: Condvar,
}

#[derive(Default)]
struct FeedState {
    /// The file being written (the partial download, later renamed into the store) or the stored blob.
    file: Option<Arc<File>>,
    written: u64,
    /// Some(true): complete and verified; Some(false): failed.
    done: Option<bool>,
    /// The unpacker gave up: the download may stop.
    abandoned: bool,
}

impl Feed {
    fn new() -> Arc<Feed> {
        Arc::new(Feed {
            state: Mutex::new(FeedState::default()),
            changed: Condvar::new(),
        })
    }

    fn update(&self, f: impl FnOnce(&mut FeedState)) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
        self.changed.notify_all();
    }

    fn abandoned(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abandoned
    }
}

/// Reads a blob while it downloads: waits for bytes that are not written yet, ends at the end of a verified blob,
/// fails when the download failed.
struct FeedReader {
    feed: Arc<Feed>,
    pos: u64,
    layer: String,
}

impl Read for FeedReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut s = self.feed.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if stop_requested() {
                return Err(std::io::Error::other("stopped by a signal"));
            }
            if s.done == Some(false) {
                return Err(std::io::Error::other(format!(
                    "the download of {} failed",
                    self.layer
                )));
            }
            if let Some(file) = s.file.clone()
                && s.written > self.pos
            {
                let n = ((s.written - self.pos) as usize).min(buf.len());
                drop(s);
                let n = file.read_at(&mut buf[..n], self.pos)?;
                self.pos += n as u64;
                return Ok(n);
            }
            if s.done == Some(true) {
                return Ok(0);
            }
            s = self.changed_wait(s);
        }
    }
}

impl FeedReader {
    fn changed_wait<'a>(
        &self,
        s: std::sync::MutexGuard<'a, FeedState>,
    ) -> std::sync::MutexGuard<'a, FeedState> {
        // Timed, so that a stop request is seen while a download stalls.
        self.feed
            .changed
            .wait_timeout(s, Duration::from_millis(100))
            .map(|(s, _)| s)
            .unwrap_or_else(|p| p.into_inner().0)
    }
}

/// Downloads every layer blob (in parallel) and, with `unpack`, unpacks them in order as they arrive.
fn fetch_layers(
    client: &RegistryClient,
    store: &ImageStore,
    reference: &Reference,
    manifest: &ImageManifest,
    diff_ids: &[String],
    unpack: bool,
    progress: &dyn Progress,
) -> Result<()> {
    let layers = manifest.layers();
    let mut feeds: HashMap<String, Arc<Feed>> = HashMap::new();
    let mut unique: Vec<&Descriptor> = Vec::new();
    for layer in layers {
        let digest = layer.digest().to_string();
        if let std::collections::hash_map::Entry::Vacant(slot) = feeds.entry(digest) {
            slot.insert(Feed::new());
            unique.push(layer);
        }
    }
    let queue = Mutex::new(unique.into_iter());
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let fail = |e: Error| {
        let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_DOWNLOADS.min(feeds.len()) {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some(layer) = next else { break };
                    let feed = &feeds[&layer.digest().to_string()];
                    if let Err(e) = download_blob(client, store, reference, layer, feed, progress) {
                        // The real cause first: the unpacker reading this feed fails next, with less to say.
                        fail(e);
                        feed.update(|s| s.done = Some(false));
                    }
                }
            });
        }
        if unpack {
            let chains = chain_ids(diff_ids);
            let mut lowers: Vec<PathBuf> = Vec::new();
            for (i, layer) in layers.iter().enumerate() {
                let digest = layer.digest().to_string();
                let feed = feeds[&digest].clone();
                let reader = FeedReader {
                    feed: feed.clone(),
                    pos: 0,
                    layer: digest.clone(),
                };
                let result = unpack_into_store(
                    store,
                    &digest,
                    layer.media_type().as_ref(),
                    &chains[i],
                    &diff_ids[i],
                    reader,
                    &lowers,
                );
                match result {
                    Ok(cached) => progress.event(PullEvent::LayerUnpacked {
                        layer: digest,
                        chain_id: chains[i].clone(),
                        cached,
                    }),
                    Err(e) => {
                        // A layer that cannot be unpacked (hostile, or not what its DiffID says) is not kept.
                        if matches!(
                            e,
                            Error::HostileLayer { .. }
                                | Error::Verify { .. }
                                | Error::LayerFormat { .. }
                        ) && let Ok(path) = store.blob_path(&digest)
                        {
                            let _ = fs::remove_file(path);
                        }
                        // The cause first: the downloads stopped next fail with less to say.
                        fail(e);
                        for f in feeds.values() {
                            f.update(|s| s.abandoned = true);
                        }
                        break;
                    }
                }
                match layer_dir(store, &chains[i]) {
                    Ok(dir) => lowers.insert(0, dir),
                    Err(e) => {
                        fail(e);
                        break;
                    }
                }
            }
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Gets one layer blob into the store (verified), feeding the unpacker as bytes arrive.
fn download_blob(
    client: &RegistryClient,
    store: &ImageStore,
    reference: &Reference,
    layer: &Descriptor,
    feed: &Feed,
    progress: &dyn Progress,
) -> Result<()> {
    let digest = layer.digest().to_string();
    let size = layer.size();
    let blob_path = store.blob_path(&digest)?;
    let cached = |feed: &Feed| -> Result<()> {
        let file = File::open(&blob_path).map_err(io("opening blob", &blob_path))?;
        feed.update(|s| {
            s.file = Some(Arc::new(file));
            s.written = size;
            s.done = Some(true);
        });
        progress.event(PullEvent::LayerDownloaded {
            layer: digest.clone(),
            size,
            cached: true,
        });
        Ok(())
    };
    if store.has_blob(&digest, size) {
        return cached(feed);
    }
    let (partial_path, lock_path) = store.ingest_paths(&digest)?;
    // Another pull of the same blob holds this while it downloads: wait, then use its result.
    let _lock = FileLock::acquire(&lock_path)?;
    if store.has_blob(&digest, size) {
        return cached(feed);
    }
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&partial_path)
        .map_err(io("opening partial download", &partial_path))?;
    let mut have = file
        .metadata()
        .map_err(io("inspecting partial download", &partial_path))?
        .len();
    if have > size {
        have = 0;
    }
    // The digest covers the whole blob: hash what an earlier pull left first.
    let mut hasher = Sha256::new();
    if have > 0 {
        let mut prefix = (&file).take(have);
        std::io::copy(&mut prefix, &mut HashWriter(&mut hasher))
            .map_err(io("reading partial download", &partial_path))?;
    }
    let shared = Arc::new(
        file.try_clone()
            .map_err(io("opening partial download", &partial_path))?,
    );
    feed.update(|s| {
        s.file = Some(shared.clone());
        s.written = have;
    });
    let limits = *store.limits();
    let ingest = store.root().join("ingest");
    check_free_space(&limits, &ingest, &digest, size - have)?;
    progress.event(PullEvent::LayerStart {
        layer: digest.clone(),
        size,
        offset: have,
    });
    // The manifest's size is wrong, or the registry's blob is: no retry helps, and what was written is no use.
    let mismatch = |sent: String| {
        let _ = fs::remove_file(&partial_path);
        Error::SizeMismatch {
            layer: digest.clone(),
            declared: size,
            sent,
        }
    };
    let mut retries = 0;
    let mut flushed = have;
    let mut next_space_check = have + SPACE_CHECK_INTERVAL;
    let mut buf = vec![0u8; 256 << 10];
    while have < size {
        let resp = client.get_blob(reference, &digest, have)?;
        if let Some(total) = resp.total.filter(|&t| t != size) {
            let header = if resp.offset > 0 {
                "Content-Range"
            } else {
                "Content-Length"
            };
            return Err(mismatch(format!("sends {total} bytes (its {header})")));
        }
        if resp.offset != have {
            // The registry sent the whole blob: start over.
            have = 0;
            hasher = Sha256::new();
            file.set_len(0)
                .map_err(io("truncating partial download", &partial_path))?;
        }
        file.seek(SeekFrom::Start(have))
            .map_err(io("seeking partial download", &partial_path))?;
        let mut body = resp.body;
        // The body ended cleanly (not broken off) before the size.
        let mut ended_short = false;
        let broken = loop {
            if feed.abandoned() || stop_requested() {
                let why = if stop_requested() {
                    "stopped by a signal"
                } else {
                    "stopped: another layer of the image failed"
                };
                return Err(Error::Http {
                    op: "pulling blob",
                    url: digest.clone(),
                    reason: why.into(),
                });
            }
            let n = match body.read(&mut buf) {
                Ok(0) => {
                    ended_short = have < size;
                    break ended_short;
                }
                Ok(n) => n,
                Err(e) => {
                    tracing::info!(layer = %digest, received = have, error = %e, "blob download broke off");
                    break true;
                }
            };
            if have + n as u64 > size {
                return Err(mismatch("sends more than that".into()));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n])
                .map_err(io("writing partial download", &partial_path))?;
            have += n as u64;
            if have - flushed >= WRITEBACK_CHUNK {
                start_writeback(&file, flushed, have - flushed);
                flushed = have;
            }
            if have >= next_space_check {
                check_free_space(&limits, &ingest, &digest, 0)?;
                next_space_check = have + SPACE_CHECK_INTERVAL;
            }
            feed.update(|s| s.written = have);
            progress.event(PullEvent::LayerProgress {
                layer: digest.clone(),
                downloaded: have,
                size,
            });
        };
        if broken {
            retries += 1;
            if retries > BLOB_RETRIES && ended_short {
                // The last answer was complete by HTTP's framing (no Content-Length to hold it to), and short.
                return Err(mismatch(format!("ends it after {have} bytes")));
            }
            if retries > BLOB_RETRIES {
                return Err(Error::Http {
                    op: "pulling blob",
                    url: digest.clone(),
                    reason: format!(
                        "the connection broke off {retries} times; {have} of {size} bytes are kept for the next pull"
                    ),
                });
            }
        }
    }
    let actual = format!("sha256:{:x}", hasher.finalize());
    if actual != digest {
        drop(file);
        let _ = fs::remove_file(&partial_path);
        return Err(Error::Verify {
            what: "blob",
            digest: digest.clone(),
            expected: digest.clone(),
            actual,
        });
    }
    file.sync_data()
        .map_err(io("syncing download", &partial_path))?;
    fs::rename(&partial_path, &blob_path)
        .map_err(io("moving download into the store", &blob_path))?;
    let _ = fs::remove_file(&lock_path);
    feed.update(|s| s.done = Some(true));
    progress.event(PullEvent::LayerDownloaded {
        layer: digest,
        size,
        cached: false,
    });
    Ok(())
}

/// Asks the kernel to start writing `len` bytes at `offset` to disk now (sync_file_range(2) without waiting), so
/// that the fsync at the end of a download finds little left to write. Advisory: an error changes nothing.
fn start_writeback(file: &File, offset: u64, len: u64) {
    // SAFETY: a plain syscall on an fd we own; SYNC_FILE_RANGE_WRITE does not wait and touches no memory of ours.
    unsafe {
        libc::sync_file_range(
            std::os::fd::AsRawFd::as_raw_fd(file),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ImageIndex;

    #[test]
    fn platforms_parse_and_print() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//v7".parse::<Platform>().is_err());
        assert_eq!(Platform::host().os, "linux");
    }

    /// image-index.md "platform": os and architecture must match; the variant when one is asked for.
    #[test]
    fn the_index_entry_of_the_platform_is_chosen() {
        let index: ImageIndex = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
                 "digest": format!("sha256:{}", "1".repeat(64)), "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
                 "digest": format!("sha256:{}", "2".repeat(64)), "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
                 "digest": format!("sha256:{}", "3".repeat(64)), "platform": {"os": "linux", "architecture": "amd64"}}
            ]
        }))
        .unwrap();
        let pick = |p: &str| {
            let p: Platform = p.parse().unwrap();
            index
                .manifests()
                .iter()
                .position(|d| p.matches(d.platform().as_ref().unwrap()))
        };
        assert_eq!(pick("linux/arm/v7"), Some(0));
        assert_eq!(pick("linux/arm/v6"), None);
        assert_eq!(pick("linux/arm64/v8"), Some(1));
        assert_eq!(pick("linux/amd64"), Some(2));
        assert_eq!(pick("windows/amd64"), None);
        assert_eq!(
            available_platforms(&index),
            "linux/arm/v7, linux/arm64, linux/amd64"
        );
    }

    #[test]
    fn schema1_is_recognised_by_its_version() {
        let (_, schema) =
            manifest_media_type(br#"{"schemaVersion":1,"name":"x"}"#, "application/json").unwrap();
        assert_eq!(schema, 1);
        let (mt, _) = manifest_media_type(br#"{"schemaVersion":2}"#, DOCKER_MANIFEST).unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
    }
}
