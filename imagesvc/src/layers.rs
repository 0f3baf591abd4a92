//! Unpacked layers, kept once per ChainID (image-spec config.md "Layer ChainID") under `ROOT/layers/<hex>`, each
//! holding one layer's changes in overlayfs form, so every image and container that shares a chain shares the
//! directory: overlayfs combines them into a rootfs.

use crate::error::{Error, Result, io};
use crate::store::{FileLock, ImageStore, digest_hex, try_lock};
use crate::unpack::{Compression, OPAQUE_XATTR, unpack_layer_within};
use nix::errno::Errno;
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The DiffIDs (`rootfs.diff_ids`) of an image config.
pub fn diff_ids(config: &[u8]) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let config: Config = serde_json::from_slice(config).map_err(|e| Error::Malformed {
        what: "image config",
        path: PathBuf::new(),
        reason: e.to_string(),
    })?;
    for d in &config.rootfs.diff_ids {
        digest_hex(d)?;
    }
    Ok(config.rootfs.diff_ids)
}

/// config.md: ChainID(L0) = DiffID(L0); ChainID(L0|...|Ln) = SHA256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let chain = match chains.last() {
            None => diff_id.clone(),
            Some(parent) => format!("sha256:{:x}", Sha256::digest(format!("{parent} {diff_id}"))),
        };
        chains.push(chain);
    }
    chains
}

pub fn layer_dir(store: &ImageStore, chain_id: &str) -> Result<PathBuf> {
    Ok(store.layers_dir().join(digest_hex(chain_id)?))
}

/// Non-blocking: None when a pull is unpacking this layer now.
pub fn try_lock_layer(store: &ImageStore, hex: &str) -> Result<Option<polis_host::lock::FileLock>> {
    try_lock(&store.layers_dir().join(format!("{hex}.lock")))
}

/// Unpacks one layer blob into the directory of `chain_id`, unless it is there already (then Ok(true)). The
/// layer's DiffID must be `diff_id`. The directory appears complete or not at all: it is unpacked beside it and
/// renamed into place; on any error the partial directory is removed.
pub fn unpack_into_store(
    store: &ImageStore,
    layer: &str,
    media_type: &str,
    chain_id: &str,
    diff_id: &str,
    blob: impl Read,
    lowers: &[PathBuf],
) -> Result<bool> {
    let compression = Compression::from_media_type(layer, media_type)?;
    let dir = layer_dir(store, chain_id)?;
    let hex = digest_hex(chain_id)?;
    let _lock = FileLock::acquire(&store.layers_dir().join(format!("{hex}.lock")))?;
    if dir.is_dir() {
        return Ok(true);
    }
    let tmp = store
        .layers_dir()
        .join(format!(".tmp-{hex}-{}", std::process::id()));
    remove_tree(&tmp)?;
    fs::create_dir(&tmp).map_err(io("creating layer directory", &tmp))?;
    // Within the store's limits (limits.rs): a layer or image too large, or a disk filling up, stops it.
    let unpacked = unpack_layer_within(layer, blob, compression, &tmp, lowers, store.budget());
    let result = unpacked.and_then(|unpacked| {
        if unpacked.diff_id != diff_id {
            return Err(Error::Verify {
                what: "layer DiffID of",
                digest: layer.to_string(),
                expected: diff_id.to_string(),
                actual: unpacked.diff_id,
            });
        }
        // Private like the rest of the store (store.rs): the archive's `./` entry may have set another mode.
        let private = <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(
            crate::store::PRIVATE_DIR_MODE,
        );
        fs::set_permissions(&tmp, private).map_err(io("making private", &tmp))?;
        fs::rename(&tmp, &dir).map_err(io("renaming unpacked layer into place", &dir))
    });
    if result.is_err() {
        remove_tree(&tmp)?;
    }
    result.map(|()| false)
}

/// Whether the unpacked layer `dir` hides every layer below it: its archive has an opaque whiteout at its root
/// (`.wh..wh..opq`, image-spec layer.md "Opaque Whiteout"), which unpacking records as `trusted.overlay.opaque=y` on
/// the layer directory itself. overlayfs ignores that xattr on a lower directory's root, so bundles apply it by
/// leaving the layers below out ([`visible_layers`]); reading it costs one getxattr, never a walk of the layer.
pub fn hides_lower_layers(dir: &Path) -> Result<bool> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| Error::Malformed {
        what: "layer directory name",
        path: dir.to_path_buf(),
        reason: "holds a NUL byte".into(),
    })?;
    let mut value = [0u8; 8];
    // SAFETY: both names are NUL-terminated; `value` is a live, writable buffer of its length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            OPAQUE_XATTR.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    match Errno::result(n) {
        Ok(n) => Ok(value.get(..n as usize) == Some(&b"y"[..])),
        // Absent, or longer than "y": not opaque (overlayfs reads only "y").
        Err(Errno::ENODATA | Errno::ERANGE) => Ok(false),
        Err(e) => Err(io("reading the opaque mark of layer directory", dir)(
            e.into(),
        )),
    }
}

/// The part of `layers` (an image's unpacked layer directories, bottom first) that its rootfs is made of: from the
/// topmost layer that hides those below it ([`hides_lower_layers`]) up, or all of them.
pub fn visible_layers(layers: &[PathBuf]) -> Result<&[PathBuf]> {
    for (i, dir) in layers.iter().enumerate().rev() {
        if hides_lower_layers(dir)? {
            return Ok(&layers[i..]);
        }
    }
    Ok(layers)
}

/// Removes a directory tree if it exists (never following symlinks in it).
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("inspecting", path)(e)),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io("removing", path)),
        Ok(_) => fs::remove_file(path).map_err(io("removing", path)),
    }
}

/// The lower directories of every overlayfs mounted on this host (from /proc/self/mountinfo), so that
/// garbage collection never removes a layer a bundle still uses.
pub fn mounted_layer_dirs() -> Result<HashSet<PathBuf>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// config.md "Layer ChainID": the worked definition, checked against an independent computation.
    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = format!("sha256:{}", "c".repeat(64));
        let chains = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(chains[0], a);
        let ab = format!("sha256:{:x}", Sha256::digest(format!("{a} {b}").as_bytes()));
        assert_eq!(chains[1], ab);
        let abc = format!(
            "sha256:{:x}",
            Sha256::digest(format!("{ab} {c}").as_bytes())
        );
        assert_eq!(chains[2], abc);
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

    fn mark(dir: &Path, value: &[u8]) {
        let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated names and a live buffer of value.len() bytes.
        let r = unsafe {
            libc::setxattr(
                path.as_ptr(),
                OPAQUE_XATTR.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
    }

    /// layer.md "Opaque Whiteout" at a layer's root hides every layer below: the rootfs is made of the layers
    /// from the topmost such layer up, read from one xattr per layer directory.
    #[test]
    fn an_opaque_root_ends_the_visible_layers() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..4).map(|i| tmp.path().join(format!("l{i}"))).collect();
        for d in &dirs {
            fs::create_dir(d).unwrap();
        }
        assert_eq!(visible_layers(&dirs).unwrap(), &dirs[..]);
        mark(&dirs[3], b"n");
        assert!(
            !hides_lower_layers(&dirs[3]).unwrap(),
            "only \"y\" is opaque"
        );
        assert_eq!(visible_layers(&dirs).unwrap(), &dirs[..]);
        mark(&dirs[1], b"y");
        assert!(hides_lower_layers(&dirs[1]).unwrap());
        assert_eq!(visible_layers(&dirs).unwrap(), &dirs[1..]);
        mark(&dirs[2], b"y");
        assert_eq!(visible_layers(&dirs).unwrap(), &dirs[2..]);
        assert_eq!(visible_layers(&[]).unwrap(), &[] as &[PathBuf]);
        assert!(hides_lower_layers(&tmp.path().join("missing")).is_err());
    }

    #[test]
    fn malformed_configs_and_diff_ids_are_refused() {
        assert!(diff_ids(b"{}").is_err());
        assert!(diff_ids(br#"{"rootfs":{"type":"layers","diff_ids":["sha256:../x"]}}"#).is_err());
        let good = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
            "0".repeat(64)
        );
        assert_eq!(diff_ids(good.as_bytes()).unwrap().len(), 1);
    }
}
