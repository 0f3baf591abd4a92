//! Applies one layer of an OCI image (image-spec layer.md, "Image Layer Filesystem Changeset") to a directory that
//! becomes one overlayfs lower directory. Whiteouts take overlayfs form: `.wh.name` becomes a 0/0 character device
//! `name`, and `.wh..wh..opq` the xattr `trusted.overlay.opaque=y` on its directory, so the kernel merges the layers
//! and a whiteout hides only what the layers below hold. A directory of this layer at a whited-out path (made before
//! or after the whiteout, or in place of it) is opaque too: the lower one is deleted, this layer's entries stay.
//! overlayfs ignores the xattr on a lower directory's root, so there it is a record for `bundle` (layers.rs,
//! `visible_layers`): an opaque whiteout at a layer's root ends the overlay's lower stack at that layer. Directories
//! this layer only implies (the parents of its entries) keep the owner, mode, mtime and xattrs the layers below give
//! them, as overlayfs copies a directory up.
//!
//! The archive is hostile until proven otherwise (docs/ARCHITECTURE.md, "imagesvc: our own tar framing"). Every parent directory is resolved beneath
//! the layer directory with openat2(2) and RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV, and the last component is then made or changed with the `*at` system calls, never following a
//! symlink: nothing is ever written, or read, outside the layer directory (and the lower layers, read only to copy up
//! the target of a hard link).
//!
//! The tar stream is framed by `crate::tar` (shared with polisd's `docker cp`), following Go's archive/tar (which
//! docker and containerd use), rather than by `tar::Archive`. tar 0.4 splits a PAX extended header on newlines
//! before honouring each record's length (composefs/tar-rs#428, #452): it refuses binary xattrs such as a
//! `security.capability` holding a 0x0A byte, and it lets the tail of one value be read as a `path`, `linkpath` or
//! `size` record that archive/tar does not see. It also skips data after a symlink, directory, device or fifo header
//! by the header's size field, which archive/tar ignores. Each difference would unpack a different tree from the
//! one every other runtime makes of the same blob.
//!
//! The stream runs blob -> decompressor -> SHA-256 (`decompress`) -> tar framing (`crate::tar`, its errors made the
//! layer's by `archive`) -> the layer writer (`writer`), which makes every change through the confined file
//! operations of `beneath`.

mod archive;
mod beneath;
mod decompress;
#[cfg(test)]
mod fixture;
mod writer;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::Result;
use crate::limits::{Budget, Limits};
use archive::TarReader;
pub(crate) use beneath::OPAQUE_XATTR;
pub use decompress::Compression;
use writer::LayerWriter;

/// What unpacking one layer did.
#[derive(Debug, Clone)]
pub struct UnpackedLayer {
    /// "sha256:<64 hex>" of the whole uncompressed stream (image-spec config.md "DiffID").
    pub diff_id: String,
    /// Uncompressed bytes.
    pub size: u64,
    /// Archive entries applied (extended headers not counted).
    pub entries: u64,
}

/// Unpacks the layer blob `blob` (compressed as `compression`; `layer` is its digest, for messages) into `dir`, an
/// existing empty directory that becomes one overlayfs lower directory. `lowers` are the unpacked directories of
/// the layers below, nearest first (used only to copy up the target of a hard link that lives in a lower layer).
/// On error `dir` may hold part of the layer: the caller removes it. Nothing is ever written outside `dir`.
pub fn unpack_layer(
    layer: &str,
    blob: impl Read,
    compression: Compression,
    dir: &Path,
    lowers: &[PathBuf],
) -> Result<UnpackedLayer> {
    let unlimited = Budget::new(Limits::none());
    unpack_layer_within(layer, blob, compression, dir, lowers, &unlimited)
}

/// [`unpack_layer`] within the limits of `budget` (limits.rs): the uncompressed bytes of the layer and of the image,
/// and the free space left on the file system of `dir`. Crossing one stops it with Error::Limit; the layer counts
/// for the image only once it is whole.
pub fn unpack_layer_within(
    layer: &str,
    blob: impl Read,
    compression: Compression,
    dir: &Path,
    lowers: &[PathBuf],
    budget: &Budget,
) -> Result<UnpackedLayer> {
    let started = Instant::now();
    let stream = decompress::uncompressed(layer, blob, compression, budget.meter(layer, dir))?;
    let mut tar = TarReader::new(layer, compression, stream);
    let mut out = LayerWriter::open(layer, dir, lowers)?;
    let mut entries = 0u64;
    while let Some(entry) = tar.next_entry()? {
        entries += 1;
        out.apply(&entry, &mut tar)?;
    }
    out.finish()?;
    let (diff_id, size) = tar.finish()?;
    tracing::debug!(
        layer,
        entries,
        size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "unpacked layer"
    );
    Ok(UnpackedLayer {
        diff_id,
        size,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::fixture::*;
    use sha2::{Digest as _, Sha256};

    /// Throughput of one ~100 MB incompressible file, uncompressed, and of 20,000 small files (run with
    /// `--ignored --nocapture`). SHA-256 alone is timed too: it bounds the large case.
    #[test]
    #[ignore]
    fn throughput_of_a_large_uncompressed_layer() {
        let mut data = vec![0u8; 100 << 20];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for chunk in data.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let tar = Layer::new().file("big", &data, 0o644).finish();
        {
            let t = Instant::now();
            let d = Sha256::digest(&tar);
            println!(
                "SHA-256 alone: {:.0} ms ({:x}...)",
                t.elapsed().as_secs_f64() * 1000.0,
                d[0]
            );
        }
        for round in 0..3 {
            let fx = Fixture::new();
            let started = Instant::now();
            let unpacked = fx.unpack(&tar).unwrap();
            let elapsed = started.elapsed();
            assert_eq!(unpacked.size, tar.len() as u64);
            println!(
                "round {round}: {} MB in {:.0} ms = {:.0} MB/s",
                tar.len() >> 20,
                elapsed.as_secs_f64() * 1000.0,
                tar.len() as f64 / 1e6 / elapsed.as_secs_f64()
            );
        }
        let mut layer = Layer::new();
        for i in 0..20_000 {
            layer.file(&format!("d{}/f{i}", i % 100), &data[..1024], 0o644);
        }
        let tar = layer.finish();
        let fx = Fixture::new();
        let started = Instant::now();
        assert_eq!(fx.unpack(&tar).unwrap().entries, 20_000);
        println!(
            "20000 files of 1 KiB: {:.0} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
}
