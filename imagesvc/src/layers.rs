//! Unpacked layers, kept once per ChainID (image-spec config.md "Layer ChainID") under `ROOT/layers/<hex>`, each
//! holding one layer's changes in overlayfs form, so every image and container that shares a chain shares the
//! directory: overlayfs combines them into a rootfs.

use crate::digest::digest_hex;
use crate::error::{Error, Result, io};
use crate::fsutil::{FileLock, remove_tree};
use crate::store::{ImageStore, PRIVATE_DIR_MODE};
use crate::unpack::{Compression, OPAQUE_XATTR, unpack_layer_within};
use nix::errno::Errno;
use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub fn layer_dir(store: &ImageStore, chain_id: &str) -> Result<PathBuf> {
    Ok(store.layers_dir().join(digest_hex(chain_id)?))
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
        let private =
            <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(PRIVATE_DIR_MODE);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
