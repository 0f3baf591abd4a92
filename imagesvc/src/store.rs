//! The content store: an OCI image-layout directory (image-spec image-layout.md) that skopeo and umoci can read
//! (`oci:ROOT/layout:NAME`), beside the store's own working directories.
//!
//! ```text
//! ROOT/layout/oci-layout, index.json, blobs/sha256/<hex>   the image layout: manifests, configs, layer blobs
//! ROOT/ingest/<hex>.partial, <hex>.lock                    downloads in progress (resumable), one writer each
//! ROOT/layers/<chain-id hex>/                              unpacked layers (overlayfs lower directories)
//! ROOT/lock                                                held while index.json is rewritten
//! ROOT/gc.lock                                             shared by pulls and bundles, exclusive for garbage collection
//! ```
//! index.json lists one manifest descriptor per image name, with the name in the
//! `org.opencontainers.image.ref.name` annotation (the fully qualified reference, e.g.
//! `docker.io/library/busybox:latest`).
//!
//! The store is private to its owner (root): ROOT and every directory of it are 0700, because unpacked layers keep
//! what images ship, setuid-root binaries and device nodes included, and any user who could reach them could run
//! or open them (moby CVE-2021-41091). Nothing needs more: overlayfs reaches the layers with the credentials of
//! whoever mounted the bundle, and containers see them only through their bundle's rootfs. [`ImageStore::open`]
//! tightens a store made before this (and the bundles mounted from it) on every start.

use crate::digest::{chain_ids, diff_ids, digest_hex, sha256_digest};
use crate::error::{Error, Result, io};
use crate::fsutil::{FileLock, remove_tree, try_lock, write_atomic};
use crate::limits::{Budget, Limits};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};
use std::collections::{HashMap, HashSet};
use std::fs::{self, DirBuilder};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The mode of the store's directories, and of the bundles made from it.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// One image of the store: its name and manifest descriptor.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub name: String,
    pub manifest: Descriptor,
}

pub struct ImageStore {
    root: PathBuf,
    budget: Budget,
}

impl ImageStore {
    /// Opens the store at `root` with the default limits (limits.rs), creating its directories and an empty layout
    /// on first use, and making every directory of it private (0700) if it is not.
    pub fn open(root: &Path) -> Result<ImageStore> {
        ImageStore::open_with(root, Limits::default())
    }

    /// [`ImageStore::open`] with the limits that unpacking and downloading into it keep.
    pub fn open_with(root: &Path, limits: Limits) -> Result<ImageStore> {
        let store = ImageStore {
            root: root.to_path_buf(),
            budget: Budget::new(limits),
        };
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io("creating store directory", parent))?;
        }
        let layout = store.layout_dir();
        for dir in [
            store.root.clone(),
            layout.clone(),
            layout.join("blobs"),
            layout.join("blobs/sha256"),
            store.root.join("ingest"),
            store.layers_dir(),
        ] {
            private_dir(&dir)?;
        }
        store.tighten_layers()?;
        store.tighten_mounted_bundles();
        let layout = store.layout_dir().join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = store.layout_dir().join("index.json");
        if !index.exists() {
            let _lock = store.lock()?;
            if !index.exists() {
                store.write_index(&empty_index())?;
            }
        }
        Ok(store)
    }

    /// The limits of this store and the count of the image being unpacked (limits.rs).
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    pub fn limits(&self) -> &Limits {
        self.budget.limits()
    }

    /// Unpacked layers (and half-unpacked ones) that a store made before they were private still has open to
    /// everyone: 0700 like the rest.
    fn tighten_layers(&self) -> Result<()> {
        for entry in read_dir(&self.layers_dir())? {
            let path = entry.path();
            if let Ok(meta) = fs::symlink_metadata(&path)
                && meta.is_dir()
                && meta.mode() & 0o7777 != PRIVATE_DIR_MODE
            {
                fs::set_permissions(&path, fs::Permissions::from_mode(PRIVATE_DIR_MODE))
                    .map_err(io("making private", &path))?;
            }
        }
        Ok(())
    }

    /// Bundles made from this store before bundles were private, and still mounted: their directory (holding the
    /// rootfs mount, `.overlay` and config.json) becomes 0700. Best effort: a bundle that cannot be changed is
    /// left as it is, with a warning.
    fn tighten_mounted_bundles(&self) {
        let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let layers = fs::canonicalize(self.layers_dir()).unwrap_or_else(|_| self.layers_dir());
        for dir in bundles_mounted_from(&text, &[layers, self.layers_dir()]) {
            let Ok(meta) = fs::metadata(&dir) else {
                continue;
            };
            if meta.mode() & 0o077 != 0
                && let Err(e) =
                    fs::set_permissions(&dir, fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            {
                tracing::warn!(bundle = %dir.display(), error = %e, "cannot make the bundle private");
            }
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI image-layout directory.
    pub fn layout_dir(&self) -> PathBuf {
        self.root.join("layout")
    }

    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// Non-blocking: None when a pull is unpacking this layer (chain id hex) now.
    fn try_lock_layer(&self, hex: &str) -> Result<Option<polis_host::lock::FileLock>> {
        try_lock(&self.layers_dir().join(format!("{hex}.lock")))
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self
            .layout_dir()
            .join("blobs/sha256")
            .join(digest_hex(digest)?))
    }

    /// The partial download of `digest` and its lock file.
    pub fn ingest_paths(&self, digest: &str) -> Result<(PathBuf, PathBuf)> {
        let hex = digest_hex(digest)?;
        let dir = self.root.join("ingest");
        Ok((
            dir.join(format!("{hex}.partial")),
            dir.join(format!("{hex}.lock")),
        ))
    }

    /// Whether the blob is in the store with the size its descriptor gives (its digest was verified on the way
    /// in).
    pub fn has_blob(&self, digest: &str, size: u64) -> bool {
        self.blob_path(digest)
            .ok()
            .and_then(|p| fs::metadata(p).ok())
            .is_some_and(|m| m.len() == size)
    }

    /// Stores a small blob held in memory (manifest, config) after checking its digest.
    pub fn put_blob(&self, digest: &str, data: &[u8]) -> Result<()> {
        let actual = sha256_digest(data);
        if actual != digest {
            return Err(Error::Verify {
                what: "blob",
                digest: digest.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        let path = self.blob_path(digest)?;
        if fs::metadata(&path).is_ok_and(|m| m.len() == data.len() as u64) {
            return Ok(());
        }
        write_atomic(&path, data)
    }

    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let data = fs::read(&path).map_err(io("reading blob", &path))?;
        Ok(data)
    }

    /// Held (shared) by every pull and bundle while it adds content that no image names yet, so that garbage
    /// collection, which takes it exclusively, never removes a blob or layer a pull is about to name.
    pub fn content_in_use(&self) -> Result<FileLock> {
        FileLock::acquire_shared(&self.root.join("gc.lock"))
    }

    /// The store's lock, held while index.json is read, changed and written.
    pub fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.root.join("lock"))
    }

    pub fn read_index(&self) -> Result<ImageIndex> {
        let path = self.layout_dir().join("index.json");
        let data = fs::read(&path).map_err(io("reading", &path))?;
        serde_json::from_slice(&data).map_err(|e| Error::Malformed {
            what: "image index",
            path,
            reason: e.to_string(),
        })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<()> {
        let path = self.layout_dir().join("index.json");
        let data = serde_json::to_vec(index).map_err(|e| Error::Malformed {
            what: "image index",
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &data)
    }

    /// The images of the store, in index.json order.
    pub fn images(&self) -> Result<Vec<StoredImage>> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .filter_map(|d| {
                let name = d.annotations().as_ref()?.get(REF_NAME)?.clone();
                Some(StoredImage {
                    name,
                    manifest: d.clone(),
                })
            })
            .collect())
    }

    /// Names `manifest` `name`, replacing what the name pointed at before.
    pub fn tag(&self, name: &str, manifest: &Descriptor) -> Result<()> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        let mut desc = manifest.clone();
        let mut annotations = desc.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME.to_string(), name.to_string());
        desc.set_annotations(Some(annotations));
        manifests.push(desc);
        let mut index = index;
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    /// Removes the name; the content stays until [`ImageStore::collect_garbage`].
    pub fn untag(&self, name: &str) -> Result<StoredImage> {
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let found = index
            .manifests()
            .iter()
            .find(|d| ref_name(d) == Some(name))
            .cloned()
            .ok_or_else(|| Error::NotFound {
                reference: name.to_string(),
            })?;
        let manifests = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(name))
            .cloned()
            .collect();
        index.set_manifests(manifests);
        self.write_index(&index)?;
        Ok(StoredImage {
            name: name.to_string(),
            manifest: found,
        })
    }

    /// Finds an image by the name a user typed (normalised as `docker pull` does: `busybox` is
    /// `docker.io/library/busybox:latest`), by its manifest digest, or by a prefix of at least 12 hex digits of it.
    pub fn find(&self, wanted: &str) -> Result<StoredImage> {
        let images = self.images()?;
        if let Ok(name) = crate::reference::parse(wanted) {
            let name = crate::reference::store_name(&name);
            if let Some(found) = images.iter().find(|i| i.name == name) {
                return Ok(found.clone());
            }
        }
        let hex = wanted.strip_prefix("sha256:").unwrap_or(wanted);
        if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let matches: Vec<&StoredImage> = images
                .iter()
                .filter(|i| {
                    i.manifest
                        .digest()
                        .to_string()
                        .strip_prefix("sha256:")
                        .is_some_and(|h| h.starts_with(hex))
                })
                .collect();
            if let Some(first) = matches.first() {
                return Ok((*first).clone());
            }
        }
        Err(Error::NotFound {
            reference: wanted.to_string(),
        })
    }

    /// The blobs (hex) and unpacked layers (chain id hex) that the images of index.json use.
    fn referenced(&self) -> Result<(HashSet<String>, HashSet<String>)> {
        let mut keep_blobs = HashSet::new();
        let mut keep_layers = HashSet::new();
        for image in self.images()? {
            let digest = image.manifest.digest().to_string();
            keep_blobs.insert(digest_hex(&digest)?.to_string());
            let Ok(data) = self.read_blob(&digest) else {
                continue;
            };
            let Ok(manifest) = serde_json::from_slice::<oci_spec::image::ImageManifest>(&data)
            else {
                continue;
            };
            let config = manifest.config().digest().to_string();
            keep_blobs.insert(digest_hex(&config)?.to_string());
            for layer in manifest.layers() {
                keep_blobs.insert(digest_hex(layer.digest().as_ref())?.to_string());
            }
            if let Ok(config) = self.read_blob(&config).and_then(|d| diff_ids(&d)) {
                for chain in chain_ids(&config) {
                    keep_layers.insert(digest_hex(&chain)?.to_string());
                }
            }
        }
        Ok((keep_blobs, keep_layers))
    }

    /// Removes what no image references: blobs and unpacked layers (unless a mounted bundle still uses them). With
    /// `leftovers` (`prune`), also what interrupted or crashed pulls and bundles left: partial downloads, the
    /// directories of unpackings that never finished, temporary files and lock files. Waits for running pulls and
    /// bundles first, so none of that is in use. Returns what it removed and the disk space that freed.
    pub fn collect_garbage(&self, leftovers: bool) -> Result<Garbage> {
        let _no_pulls = FileLock::acquire(&self.root.join("gc.lock"))?;
        let _lock = self.lock()?;
        let (keep_blobs, keep_layers) = self.referenced()?;
        let mounted = mounted_layer_dirs()?;
        let mut removed = Garbage::default();
        let blobs = self.layout_dir().join("blobs/sha256");
        for entry in read_dir(&blobs)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // write_atomic's temporary file of a blob whose writer died.
                if leftovers {
                    removed.bytes += remove_path(&entry.path())?;
                    removed.temporary += 1;
                }
            } else if !keep_blobs.contains(&name) {
                removed.bytes += remove_path(&entry.path())?;
                removed.blobs += 1;
            }
        }
        if leftovers {
            for entry in read_dir(&self.layout_dir())? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.contains(".tmp-") {
                    removed.bytes += remove_path(&entry.path())?;
                    removed.temporary += 1;
                }
            }
        }
        if leftovers {
            for entry in read_dir(&self.layers_dir())? {
                let name = entry.file_name().to_string_lossy().into_owned();
                // `.tmp-<hex>-<pid>`: an unpacking that never finished; the layer's lock says whether one still runs.
                let Some(rest) = name.strip_prefix(".tmp-") else {
                    continue;
                };
                // (An unpacker makes the lock file before its directory: without one, nobody is at work.)
                let hex = rest.split('-').next().unwrap_or("");
                let lock = self.layers_dir().join(format!("{hex}.lock"));
                let held = lock.exists() && !matches!(try_lock(&lock), Ok(Some(_)));
                if digest_hex(&format!("sha256:{hex}")).is_ok() && !held {
                    removed.bytes += remove_path(&entry.path())?;
                    removed.temporary += 1;
                }
            }
        }
        for entry in read_dir(&self.layers_dir())? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with(".lock") {
                continue;
            }
            if keep_layers.contains(&name) || mounted.contains(&self.layers_dir().join(&name)) {
                continue;
            }
            // A half-unpacked directory of a running pull holds the layer's lock: skip it.
            let Ok(Some(_layer_lock)) = self.try_lock_layer(&name) else {
                continue;
            };
            removed.bytes += remove_path(&entry.path())?;
            removed.layers += 1;
        }
        // The lock files of layers that are gone, and with `leftovers` all that nobody holds.
        for entry in read_dir(&self.layers_dir())? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".lock") else {
                continue;
            };
            if (leftovers || !self.layers_dir().join(hex).exists())
                && matches!(try_lock(&entry.path()), Ok(Some(_)))
            {
                removed.bytes += remove_path(&entry.path())?;
                removed.locks += 1;
            }
        }
        if leftovers {
            let dir = self.root.join("ingest");
            for entry in read_dir(&dir)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(hex) = name.strip_suffix(".partial") {
                    let (_, lock_path) = self.ingest_paths(&format!("sha256:{hex}"))?;
                    if let Ok(Some(_held)) = try_lock(&lock_path) {
                        removed.bytes += remove_path(&entry.path())?;
                        removed.partial += 1;
                    }
                }
            }
            // Their lock files, and those a crash left without a partial download.
            for entry in read_dir(&dir)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(hex) = name.strip_suffix(".lock")
                    && !dir.join(format!("{hex}.partial")).exists()
                    && matches!(try_lock(&entry.path()), Ok(Some(_)))
                {
                    removed.bytes += remove_path(&entry.path())?;
                    removed.locks += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Removes what a failed pull added: of `blobs` (digests) and `chains` (chain ids), which it found missing when
    /// it started, those no image names by now, with their partial downloads and lock files. Waits for running
    /// pulls and bundles (the exclusive side of `gc.lock`), so nothing another pull is using goes.
    pub fn discard(&self, blobs: &[String], chains: &[String]) -> Result<()> {
        let _no_pulls = FileLock::acquire(&self.root.join("gc.lock"))?;
        let _lock = self.lock()?;
        let (keep_blobs, keep_layers) = self.referenced()?;
        let mounted = mounted_layer_dirs()?;
        for digest in blobs {
            let hex = digest_hex(digest)?;
            if keep_blobs.contains(hex) {
                continue;
            }
            let (partial, lock) = self.ingest_paths(digest)?;
            for path in [self.blob_path(digest)?, partial, lock] {
                remove_path(&path)?;
            }
        }
        for chain in chains {
            let hex = digest_hex(chain)?;
            let dir = self.layers_dir().join(hex);
            if keep_layers.contains(hex) || mounted.contains(&dir) {
                continue;
            }
            remove_path(&dir)?;
            remove_path(&self.layers_dir().join(format!("{hex}.lock")))?;
        }
        Ok(())
    }

    /// The temporary directories and files of process `pid`: unpackings in `layers/` (`.tmp-<hex>-<pid>`), and
    /// write_atomic's files in the layout (`.<name>.tmp-<pid>`).
    pub fn temporaries_of(&self, pid: u32) -> Vec<PathBuf> {
        let own_dir = format!("-{pid}");
        let own_file = format!(".tmp-{pid}");
        let dirs = [
            (self.layers_dir(), true),
            (self.layout_dir(), false),
            (self.layout_dir().join("blobs/sha256"), false),
        ];
        let mut found = Vec::new();
        for (dir, unpacking) in dirs {
            for entry in read_dir(&dir).unwrap_or_default() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = if unpacking {
                    name.starts_with(".tmp-") && name.ends_with(&own_dir)
                } else {
                    name.starts_with('.') && name.ends_with(&own_file)
                };
                if ours {
                    found.push(entry.path());
                }
            }
        }
        found
    }

    /// Removes [`ImageStore::temporaries_of`] `pid` (this process, stopped by a signal). Takes no lock: the process
    /// that holds them is the one ending. Returns how many it removed.
    pub fn remove_temporaries_of(&self, pid: u32) -> usize {
        let mut removed = 0;
        for path in self.temporaries_of(pid) {
            // An unpacker may still add to a directory for a moment: try again until it is gone.
            for _ in 0..50 {
                if remove_path(&path).is_ok() {
                    removed += 1;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        removed
    }
}

/// What garbage collection removed, and the disk space that gave back.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Garbage {
    pub blobs: u64,
    pub layers: u64,
    pub partial: u64,
    /// Directories of unfinished unpackings and temporary files.
    pub temporary: u64,
    pub locks: u64,
    /// The blocks of every inode whose last link went (st_blocks), not file lengths: what `df` gains.
    pub bytes: u64,
}

/// Makes `path` a directory of mode 0700, or makes an existing one 0700.
fn private_dir(path: &Path) -> Result<()> {
    match DirBuilder::new().mode(PRIVATE_DIR_MODE).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("creating store directory", path)(e)),
    }
    let meta = fs::metadata(path).map_err(io("inspecting store directory", path))?;
    if !meta.is_dir() {
        return Err(io("creating store directory", path)(std::io::Error::from(
            std::io::ErrorKind::NotADirectory,
        )));
    }
    if meta.mode() & 0o7777 != PRIVATE_DIR_MODE {
        fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(io("making private", path))?;
    }
    Ok(())
}

/// The directories of bundles (`DIR` of a `DIR/rootfs` overlayfs with upper `DIR/.overlay/upper`) whose lower
/// layers are in one of `layers_dirs`, from /proc/self/mountinfo text.
fn bundles_mounted_from(mountinfo: &str, layers_dirs: &[PathBuf]) -> Vec<PathBuf> {
    polis_host::mountinfo::parse(mountinfo)
        .into_iter()
        .filter(|m| m.fstype == "overlay" && m.mount_point.file_name() == Some("rootfs".as_ref()))
        .filter(|m| {
            m.super_option("lowerdir").is_some_and(|lowers| {
                lowers.split(':').any(|l| {
                    Path::new(l)
                        .parent()
                        .is_some_and(|p| layers_dirs.iter().any(|d| d == p))
                })
            })
        })
        .filter_map(|m| {
            let bundle = m.mount_point.parent()?.to_path_buf();
            let upper = m.super_option("upperdir")?;
            (Path::new(upper) == bundle.join(".overlay/upper")).then_some(bundle)
        })
        .collect()
}

/// Removes a file or a whole tree (never following symlinks; nothing there is fine) and returns the disk space
/// that freed.
fn remove_path(path: &Path) -> Result<u64> {
    let freed = freed_by_removing(path);
    remove_tree(path)?;
    Ok(freed)
}

/// The blocks (st_blocks) of every inode whose last link is `path` or in the tree below it: what removing it frees.
fn freed_by_removing(path: &Path) -> u64 {
    let mut freed = 0u64;
    // Files with more than one link, by (dev, ino): (links, links seen here, bytes).
    let mut linked: HashMap<(u64, u64), (u64, u64, u64)> = HashMap::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        let bytes = meta.blocks() * 512;
        if meta.is_dir() {
            freed += bytes;
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
            }
        } else if meta.nlink() <= 1 {
            freed += bytes;
        } else {
            let seen = linked
                .entry((meta.dev(), meta.ino()))
                .or_insert((meta.nlink(), 0, bytes));
            seen.1 += 1;
        }
    }
    freed
        + linked
            .values()
            .filter(|(links, seen, _)| seen >= links)
            .map(|(_, _, bytes)| bytes)
            .sum::<u64>()
}

/// The lower directories of every overlayfs mounted on this host (from /proc/self/mountinfo), so that
/// garbage collection never removes a layer a bundle still uses.
fn mounted_layer_dirs() -> Result<HashSet<PathBuf>> {
    Ok(overlay_lowers(&polis_host::mountinfo::read(None)?))
}

fn overlay_lowers(mounts: &[polis_host::mountinfo::Mount]) -> HashSet<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.fstype == "overlay")
        .filter_map(|m| m.super_option("lowerdir"))
        .flat_map(|lowers| lowers.split(':').map(PathBuf::from))
        .collect()
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations().as_ref()?.get(REF_NAME).map(String::as_str)
}

fn empty_index() -> ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .unwrap_or_default()
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    fs::read_dir(dir)
        .map_err(io("listing", dir))?
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io("listing", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::DescriptorBuilder;

    fn descriptor(data: &[u8]) -> Descriptor {
        DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(
                sha256_digest(data)
                    .parse::<oci_spec::image::Digest>()
                    .unwrap(),
            )
            .size(data.len() as u64)
            .build()
            .unwrap()
    }

    #[test]
    fn a_tag_replaces_the_previous_image_of_that_name() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        assert!(tmp.path().join("layout/oci-layout").is_file());
        let (a, b) = (b"manifest a".as_slice(), b"manifest b".as_slice());
        store.put_blob(&sha256_digest(a), a).unwrap();
        store.put_blob(&sha256_digest(b), b).unwrap();
        store.tag("example.org/x:1", &descriptor(a)).unwrap();
        store.tag("example.org/y:1", &descriptor(a)).unwrap();
        store.tag("example.org/x:1", &descriptor(b)).unwrap();
        let images = store.images().unwrap();
        assert_eq!(images.len(), 2);
        let x = store.find("example.org/x:1").unwrap();
        assert_eq!(x.manifest.digest().to_string(), sha256_digest(b));
        store.untag("example.org/y:1").unwrap();
        assert!(matches!(
            store.find("example.org/y:1"),
            Err(Error::NotFound { .. })
        ));
        let hex = sha256_digest(b);
        assert_eq!(store.find(&hex[7..19]).unwrap().name, "example.org/x:1");
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    /// Every directory of the store is 0700 (store.rs header), and a store made before that is made so when it is
    /// opened again, its unpacked layers included.
    #[test]
    fn the_store_is_private_and_an_old_one_is_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("store");
        let store = ImageStore::open(&root).unwrap();
        let dirs = [
            root.clone(),
            root.join("layout"),
            root.join("layout/blobs"),
            root.join("layout/blobs/sha256"),
            root.join("ingest"),
            root.join("layers"),
        ];
        for d in &dirs {
            assert_eq!(mode(d), 0o700, "{}", d.display());
        }
        let layer = store.layers_dir().join("a".repeat(64));
        fs::create_dir(&layer).unwrap();
        for d in dirs.iter().chain([&layer]) {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        drop(store);
        ImageStore::open(&root).unwrap();
        for d in dirs.iter().chain([&layer]) {
            assert_eq!(mode(d), 0o700, "{} tightened", d.display());
        }
    }

    #[test]
    fn overlay_lower_dirs_are_read_from_mountinfo() {
        let text = "36 35 98:0 / /mnt rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    90 24 0:50 / /b/rootfs rw,relatime - overlay overlay rw,lowerdir=/s/layers/aa:/s/layers/bb,upperdir=/b/u,workdir=/b/w\n";
        let dirs = overlay_lowers(&polis_host::mountinfo::parse(text));
        assert!(dirs.contains(Path::new("/s/layers/aa")));
        assert!(dirs.contains(Path::new("/s/layers/bb")));
        assert_eq!(dirs.len(), 2);
    }

    /// The bundles mounted from a store are found in mountinfo by their layers and their upper directory.
    #[test]
    fn bundles_are_found_in_mountinfo() {
        let text = "90 24 0:50 / /b/x\\040y/rootfs rw - overlay overlay rw,lowerdir=/s/layers/aa:/s/layers/bb,upperdir=/b/x\\040y/.overlay/upper,workdir=/b/x\\040y/.overlay/work\n\
                    91 24 0:51 / /c/rootfs rw - overlay overlay rw,lowerdir=/other/layers/aa,upperdir=/c/.overlay/upper,workdir=/c/.overlay/work\n\
                    92 24 0:52 / /d/merged rw - overlay overlay rw,lowerdir=/s/layers/aa,upperdir=/d/up,workdir=/d/work\n";
        assert_eq!(
            bundles_mounted_from(text, &[PathBuf::from("/s/layers")]),
            [PathBuf::from("/b/x y")]
        );
    }

    /// `prune` removes what a crash leaves (an unfinished unpacking, partial downloads, write_atomic's temporary
    /// files, lock files with and without their download) and reports the disk space that frees: the blocks of
    /// what goes, not the lengths, and nothing for a file whose other link stays.
    #[test]
    fn prune_removes_crash_leftovers_and_reports_the_space_freed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let unpacking = store.layers_dir().join(format!(".tmp-{a}-4242"));
        fs::create_dir_all(unpacking.join("usr/bin")).unwrap();
        fs::write(unpacking.join("usr/bin/big"), vec![7u8; 300 << 10]).unwrap();
        let elsewhere = tmp.path().join("kept");
        fs::write(&elsewhere, vec![1u8; 200 << 10]).unwrap();
        fs::hard_link(&elsewhere, unpacking.join("linked")).unwrap();
        let ingest = store.root().join("ingest");
        let leftovers = [
            ingest.join(format!("{a}.partial")),
            ingest.join(format!("{a}.lock")),
            ingest.join(format!("{b}.lock")),
            store.layers_dir().join(format!("{b}.lock")),
            store
                .layout_dir()
                .join(format!("blobs/sha256/.{b}.tmp-4242")),
            store.layout_dir().join(".index.json.tmp-4242"),
        ];
        for (i, f) in leftovers.iter().enumerate() {
            fs::write(f, vec![9u8; i * 10_000]).unwrap();
        }
        let blocks = |p: &Path| fs::symlink_metadata(p).unwrap().blocks() * 512;
        let mut expected: u64 = leftovers.iter().map(|p| blocks(p)).sum();
        for p in [
            unpacking.clone(),
            unpacking.join("usr"),
            unpacking.join("usr/bin"),
            unpacking.join("usr/bin/big"),
        ] {
            expected += blocks(&p);
        }
        let g = store.collect_garbage(true).unwrap();
        assert_eq!(
            (g.partial, g.temporary, g.locks, g.blobs, g.layers),
            (1, 3, 3, 0, 0),
            "{g:?}"
        );
        assert_eq!(g.bytes, expected, "{g:?}");
        assert!(!unpacking.exists());
        for f in &leftovers {
            assert!(!f.exists(), "{} removed", f.display());
        }
        assert!(elsewhere.exists());
        assert_eq!(
            read_dir(&store.layers_dir()).unwrap().len(),
            0,
            "no lock file made on the way stays"
        );
        let again = store.collect_garbage(true).unwrap();
        assert_eq!(again.bytes, 0, "{again:?}");
    }

    /// A stopped pull's discard removes what it added and no image names, and keeps what one does.
    #[test]
    fn discard_keeps_what_an_image_names() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        let (named, added) = (b"named manifest".as_slice(), b"added blob".as_slice());
        store.put_blob(&sha256_digest(named), named).unwrap();
        store.put_blob(&sha256_digest(added), added).unwrap();
        store.tag("example.org/x:1", &descriptor(named)).unwrap();
        let chain = format!("sha256:{}", "c".repeat(64));
        fs::create_dir(store.layers_dir().join("c".repeat(64))).unwrap();
        store
            .discard(
                &[sha256_digest(named), sha256_digest(added)],
                std::slice::from_ref(&chain),
            )
            .unwrap();
        assert!(store.has_blob(&sha256_digest(named), named.len() as u64));
        assert!(!store.has_blob(&sha256_digest(added), added.len() as u64));
        assert!(!store.layers_dir().join("c".repeat(64)).exists());
    }

    #[test]
    fn a_blob_with_the_wrong_digest_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        let err = store.put_blob(&sha256_digest(b"one"), b"two").unwrap_err();
        assert!(matches!(err, Error::Verify { .. }), "{err}");
        assert!(!store.has_blob(&sha256_digest(b"one"), 3));
    }
}
