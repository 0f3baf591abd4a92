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

use crate::error::{Error, Result, io};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A validated `sha256:<64 lowercase hex>` digest.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(Error::Verify {
            what: "digest",
            digest: digest.to_string(),
            expected: "sha256:<64 lowercase hex digits>".into(),
            actual: digest.to_string(),
        })
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// An exclusive flock(2) on a file, released on drop (also when the process dies).
pub struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<FileLock> {
        FileLock::acquire_as(path, libc::LOCK_EX)
    }

    /// A shared flock: many holders at once, none while someone holds it exclusively.
    pub fn acquire_shared(path: &Path) -> Result<FileLock> {
        FileLock::acquire_as(path, libc::LOCK_SH)
    }

    fn acquire_as(path: &Path, operation: libc::c_int) -> Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io("opening lock file", path))?;
        // SAFETY: flock on an fd we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
        if rc != 0 {
            return Err(io("locking", path)(std::io::Error::last_os_error()));
        }
        Ok(FileLock { _file: file })
    }
}

/// One image of the store: its name and manifest descriptor.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub name: String,
    pub manifest: Descriptor,
}

pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens the store at `root`, creating its directories and an empty layout on first use.
    pub fn open(root: &Path) -> Result<ImageStore> {
        let store = ImageStore {
            root: root.to_path_buf(),
        };
        for dir in [
            store.layout_dir().join("blobs/sha256"),
            store.root.join("ingest"),
            store.layers_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(io("creating store directory", &dir))?;
        }
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

    /// Removes what no image references: blobs, unpacked layers (unless a mounted bundle still uses them) and,
    /// with `ingest`, partial downloads no pull is writing. Returns what it removed.
    pub fn collect_garbage(&self, ingest: bool) -> Result<Garbage> {
        let _no_pulls = FileLock::acquire(&self.root.join("gc.lock"))?;
        let _lock = self.lock()?;
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
            if let Ok(config) = self
                .read_blob(&config)
                .and_then(|d| crate::layers::diff_ids(&d))
            {
                for chain in crate::layers::chain_ids(&config) {
                    keep_layers.insert(digest_hex(&chain)?.to_string());
                }
            }
        }
        let mounted = crate::layers::mounted_layer_dirs()?;
        let mut removed = Garbage::default();
        let blobs = self.layout_dir().join("blobs/sha256");
        for entry in read_dir(&blobs)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep_blobs.contains(&name) {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).map_err(io("removing blob", entry.path()))?;
                removed.blobs += 1;
                removed.bytes += size;
            }
        }
        for entry in read_dir(&self.layers_dir())? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let hex = name.strip_suffix(".lock").unwrap_or(&name);
            if keep_layers.contains(hex) || mounted.contains(&self.layers_dir().join(hex)) {
                continue;
            }
            if name.ends_with(".lock") {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            // A half-unpacked directory of a running pull holds the layer's lock: skip it.
            let Ok(_layer_lock) = crate::layers::try_lock_layer(self, hex) else {
                continue;
            };
            fs::remove_dir_all(entry.path())
                .map_err(io("removing unpacked layer", entry.path()))?;
            removed.layers += 1;
        }
        if ingest {
            let dir = self.root.join("ingest");
            for entry in read_dir(&dir)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(hex) = name.strip_suffix(".partial") else {
                    continue;
                };
                let (_, lock_path) = self.ingest_paths(&format!("sha256:{hex}"))?;
                if let Ok(_held) = try_lock(&lock_path) {
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    fs::remove_file(entry.path())
                        .map_err(io("removing partial download", entry.path()))?;
                    let _ = fs::remove_file(&lock_path);
                    removed.partial += 1;
                    removed.bytes += size;
                }
            }
        }
        Ok(removed)
    }
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Garbage {
    pub blobs: u64,
    pub layers: u64,
    pub partial: u64,
    pub bytes: u64,
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

/// A non-blocking flock: Err when another process holds it.
pub fn try_lock(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    // SAFETY: flock on an fd we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Writes `data` to a temporary file beside `path` and renames it over `path`, so readers see the old or the new
/// content, never a part.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
    f.write_all(data).map_err(io("writing", &tmp))?;
    f.sync_data().map_err(io("syncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("renaming into place", path))
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
    fn digests_must_be_sha256_hex() {
        assert!(digest_hex(&sha256_digest(b"x")).is_ok());
        for bad in [
            "",
            "sha256:",
            "sha256:../../etc",
            "md5:abc",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(digest_hex(bad).is_err(), "{bad}");
        }
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

    #[test]
    fn a_blob_with_the_wrong_digest_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(tmp.path()).unwrap();
        let err = store.put_blob(&sha256_digest(b"one"), b"two").unwrap_err();
        assert!(matches!(err, Error::Verify { .. }), "{err}");
        assert!(!store.has_blob(&sha256_digest(b"one"), 3));
    }
}
