//! `bundle IMAGE DIR`: a runtime-spec bundle (bundle.md) for `polis-runc run --bundle DIR ID`:
//!
//! ```text
//! DIR/config.json      from the image config (spec.rs)
//! DIR/rootfs           overlayfs: the image's unpacked layers (shared, read-only) under DIR/.overlay/upper,
//!                      from the topmost layer with an opaque whiteout at its root up (layers.rs `visible_layers`)
//! DIR/.overlay/        upper and work directories: what the container writes
//! ```
//! The layers are the store's, one directory per ChainID, so ten bundles of one image share them. `unbundle DIR`
//! unmounts the rootfs and removes what `bundle` made.

use crate::digest::{chain_ids, diff_ids};
use crate::error::{Error, Result, io};
use crate::fsutil::remove_tree;
use crate::layers::{layer_dir, unpack_into_store, visible_layers};
use crate::spec::{ImageConfig, runtime_config};
use crate::store::{ImageStore, StoredImage};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use oci_spec::image::ImageManifest;
use std::fs;
use std::path::{Path, PathBuf};

/// The longest overlayfs option string the kernel takes (one page).
const MAX_MOUNT_DATA: usize = 4095;

fn bundle_err(dir: &Path, reason: impl Into<String>) -> Error {
    Error::Bundle {
        dir: dir.to_path_buf(),
        reason: reason.into(),
    }
}

/// The unpacked layer directories of an image, bottom first; layers not unpacked yet (a `pull --no-unpack`) are
/// unpacked from the store's blobs now.
pub fn image_layers(
    store: &ImageStore,
    image: &StoredImage,
) -> Result<(ImageManifest, Vec<u8>, Vec<PathBuf>)> {
    let manifest_bytes = store.read_blob(image.manifest.digest().as_ref())?;
    let manifest: ImageManifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| Error::Manifest {
            reference: image.name.clone(),
            reason: e.to_string(),
        })?;
    let config = store.read_blob(manifest.config().digest().as_ref())?;
    let diff_ids = diff_ids(&config)?;
    let chains = chain_ids(&diff_ids);
    // What is unpacked here counts against the store's per-image limit (limits.rs).
    store.budget().start_image();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for (i, layer) in manifest.layers().iter().enumerate() {
        let dir = layer_dir(store, &chains[i])?;
        if !dir.is_dir() {
            let digest = layer.digest().to_string();
            let blob = store.blob_path(&digest)?;
            let file = fs::File::open(&blob).map_err(io("opening layer blob", &blob))?;
            let lowers: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
            unpack_into_store(
                store,
                &digest,
                layer.media_type().as_ref(),
                &chains[i],
                &diff_ids[i],
                std::io::BufReader::with_capacity(256 << 10, file),
                &lowers,
            )?;
        }
        dirs.push(dir);
    }
    Ok((manifest, config, dirs))
}

/// Makes the bundle `dir` for `image`; `args`, when not empty, replaces the image's Cmd. `dir` must not exist or
/// be empty; on failure nothing of it is left.
pub fn create_bundle(
    store: &ImageStore,
    image: &StoredImage,
    dir: &Path,
    args: &[String],
) -> Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(bundle_err(dir, "the directory is not empty"));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io("creating bundle directory", dir))?;
        }
        Err(e) => return Err(io("reading bundle directory", dir)(e)),
    }
    let _in_use = store.content_in_use()?;
    let result = fill_bundle(store, image, dir, args);
    if result.is_err() {
        // Best effort (the directory was empty or new): the error that matters is the one being returned.
        let _ = remove_bundle_parts(dir);
    }
    result
}

fn fill_bundle(store: &ImageStore, image: &StoredImage, dir: &Path, args: &[String]) -> Result<()> {
    // Private like the store (store.rs): the rootfs shows the image's setuid binaries and device nodes, and a
    // container without a user namespace needs no one else to reach it.
    let private = <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(
        crate::store::PRIVATE_DIR_MODE,
    );
    fs::set_permissions(dir, private).map_err(io("making the bundle directory private", dir))?;
    let (_, config, layers) = image_layers(store, image)?;
    let image_config: ImageConfig =
        serde_json::from_slice(&config).map_err(|e| Error::Malformed {
            what: "image config",
            path: store
                .blob_path(image.manifest.digest().as_ref())
                .unwrap_or_default(),
            reason: e.to_string(),
        })?;
    let rootfs = dir.join("rootfs");
    let upper = dir.join(".overlay/upper");
    let work = dir.join(".overlay/work");
    for d in [&rootfs, &upper, &work] {
        fs::create_dir_all(d).map_err(io("creating bundle directory", d))?;
    }
    // A layer whose root is opaque hides every layer below it: they are not part of the overlay.
    mount_rootfs(dir, visible_layers(&layers)?, &upper, &work, &rootfs)?;
    let spec = runtime_config(&image_config, &rootfs, args, dir)?;
    let text = serde_json::to_vec_pretty(&spec).map_err(|e| bundle_err(dir, e.to_string()))?;
    crate::fsutil::write_atomic(&dir.join("config.json"), &text)
}

/// Mounts the overlayfs rootfs: `layers` bottom first, as overlayfs wants them top first.
pub fn mount_rootfs(
    dir: &Path,
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    rootfs: &Path,
) -> Result<()> {
    let empty;
    let lowers: Vec<String> = if layers.is_empty() {
        // An image without layers: an empty root.
        empty = dir.join(".overlay/empty");
        fs::create_dir_all(&empty).map_err(io("creating bundle directory", &empty))?;
        vec![empty.display().to_string()]
    } else {
        layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect()
    };
    for l in &lowers {
        if l.contains([',', ':']) {
            return Err(bundle_err(
                dir,
                format!("layer path {l} holds a ',' or ':' that overlayfs cannot take"),
            ));
        }
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(bundle_err(
            dir,
            format!(
                "{} layers make overlayfs options longer than a page; move the store to a shorter path",
                lowers.len()
            ),
        ));
    }
    mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| {
        bundle_err(
            dir,
            format!("mounting the overlayfs rootfs on {}: {e}", rootfs.display()),
        )
    })
}

/// Unmounts the bundle's rootfs and removes what `bundle` made (config.json, rootfs, .overlay), and the directory
/// when nothing else is left in it.
pub fn remove_bundle(dir: &Path) -> Result<()> {
    // Only a bundle `bundle` made: its .overlay directory says so. Any other directory is left alone.
    if !dir.join(".overlay/upper").is_dir() {
        return Err(bundle_err(
            dir,
            "not a bundle made by `polis-image bundle` (no .overlay/upper in it)",
        ));
    }
    remove_bundle_parts(dir)
}

/// Unmounts DIR/rootfs and removes config.json, rootfs and .overlay, then DIR if it is empty.
fn remove_bundle_parts(dir: &Path) -> Result<()> {
    let rootfs = dir.join("rootfs");
    if is_mount_point(&rootfs)? {
        umount2(&rootfs, MntFlags::MNT_DETACH)
            .map_err(|e| bundle_err(dir, format!("unmounting {}: {e}", rootfs.display())))?;
    }
    for p in [dir.join("config.json"), dir.join(".overlay"), rootfs] {
        remove_tree(&p)?;
    }
    let _ = fs::remove_dir(dir);
    Ok(())
}

fn is_mount_point(path: &Path) -> Result<bool> {
    let Ok(canonical) = fs::canonicalize(path) else {
        return Ok(false);
    };
    Ok(polis_host::mountinfo::read(None)?
        .iter()
        .any(|m| m.mount_point == canonical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::visible_layers;
    use crate::unpack::{Compression, unpack_layer};
    use std::collections::BTreeSet;

    const LAYER: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn layer_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn names(dir: &Path) -> BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// image-spec layer.md "Opaque Whiteout": `.wh..wh..opq` at a layer's root hides everything the layers below
    /// hold. overlayfs ignores an opaque xattr on a lower root, so the rootfs is mounted without those layers, and
    /// shows the opaque layer's entries and the ones above it only.
    #[test]
    fn an_opaque_layer_root_leaves_the_layers_below_out_of_the_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        let mut layers: Vec<PathBuf> = Vec::new();
        let tars = [
            layer_tar(&[("below", b"b"), ("d/x", b"x")]),
            layer_tar(&[("kept", b"k"), (".wh..wh..opq", b"")]),
            layer_tar(&[("above", b"a")]),
        ];
        for (i, tar) in tars.iter().enumerate() {
            let dir = tmp.path().join(format!("layer{i}"));
            fs::create_dir(&dir).unwrap();
            let lowers: Vec<PathBuf> = layers.iter().rev().cloned().collect();
            unpack_layer(LAYER, &tar[..], Compression::None, &dir, &lowers).unwrap();
            layers.push(dir);
        }
        let visible = visible_layers(&layers).unwrap();
        assert_eq!(visible, &layers[1..]);
        let bundle = tmp.path().join("bundle");
        let (rootfs, upper, work) = (
            bundle.join("rootfs"),
            bundle.join(".overlay/upper"),
            bundle.join(".overlay/work"),
        );
        for d in [&rootfs, &upper, &work] {
            fs::create_dir_all(d).unwrap();
        }
        mount_rootfs(&bundle, visible, &upper, &work, &rootfs).unwrap();
        let seen = names(&rootfs);
        remove_bundle(&bundle).unwrap();
        assert_eq!(
            seen,
            BTreeSet::from(["above".to_string(), "kept".to_string()])
        );
        assert!(!bundle.exists(), "unbundled");
    }
}
