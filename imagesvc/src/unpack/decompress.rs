//! The layer blob as a stream of uncompressed bytes: the compression a media type names, the decompressor (none,
//! gzip or zstd) and the SHA-256 of what it yields (the DiffID), each byte counted against the limits (limits.rs).
//! A failure of the blob reader itself is told apart from a corrupt stream ([`BlobError`]).

use std::fmt;
use std::io::{self, BufReader, Read};

use flate2::read::MultiGzDecoder;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::limits::Meter;

/// How a layer blob is compressed, from its descriptor's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// OCI: application/vnd.oci.image.layer.v1.tar, .tar+gzip, .tar+zstd, and the .nondistributable. variants;
    /// Docker: application/vnd.docker.image.rootfs.diff.tar.gzip and ...foreign.diff.tar.gzip (and, as containerd
    /// accepts them, their uncompressed forms ...diff.tar and ...foreign.diff.tar). Anything else:
    /// Error::LayerFormat naming the media type.
    pub fn from_media_type(layer: &str, media_type: &str) -> Result<Compression> {
        Ok(match media_type {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar" => Compression::None,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Compression::Zstd,
            other => {
                return Err(Error::LayerFormat {
                    layer: layer.to_string(),
                    reason: format!("unsupported layer media type {other:?}"),
                });
            }
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// An error of the blob reader itself (storage, network), told apart from the decompressor's "corrupt stream".
#[derive(Debug)]
pub(super) struct BlobError(pub(super) io::Error);

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BlobError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The blob as read from storage or the network, its errors wrapped in [`BlobError`].
pub(super) struct BlobReader<R>(R);

impl<R: Read> Read for BlobReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::other(BlobError(e))),
                Ok(n) => return Ok(n),
            }
        }
    }
}

/// The blob's uncompressed bytes, through the decompressor its [`Compression`] names.
pub(super) enum Decoded<R: Read> {
    Plain(BlobReader<R>),
    Gzip(Box<MultiGzDecoder<BlobReader<R>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<BlobReader<R>>>>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Plain(r) => r.read(buf),
            Decoded::Gzip(r) => r.read(buf),
            Decoded::Zstd(r) => r.read(buf),
        }
    }
}

/// Hashes every byte of the uncompressed stream on its way to the tar reader (the DiffID), and counts them against
/// the limits (an Error::Limit inside the io::Error when one is crossed).
pub(super) struct DigestReader<'a, R> {
    inner: R,
    hasher: Sha256,
    len: u64,
    meter: Meter<'a>,
}

impl<R: Read> Read for DigestReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        self.meter.add(n as u64).map_err(io::Error::other)?;
        Ok(n)
    }
}

impl<R> DigestReader<'_, R> {
    /// The stream has been read to its end: its bytes count for the image (limits.rs); returns the DiffID and the
    /// uncompressed size.
    pub(super) fn finish(self) -> (String, u64) {
        self.meter.commit();
        (format!("sha256:{:x}", self.hasher.finalize()), self.len)
    }
}

/// The uncompressed stream of the layer blob `blob` (compressed as `compression`; `layer` is its digest, for
/// messages), hashed and counted by `meter` on its way to the tar framing.
pub(super) fn uncompressed<'a, R: Read>(
    layer: &str,
    blob: R,
    compression: Compression,
    meter: Meter<'a>,
) -> Result<DigestReader<'a, Decoded<R>>> {
    let source = BlobReader(blob);
    let decoded = match compression {
        Compression::None => Decoded::Plain(source),
        Compression::Gzip => Decoded::Gzip(Box::new(MultiGzDecoder::new(source))),
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(source).map_err(|e| Error::LayerFormat {
                    layer: layer.to_string(),
                    reason: format!("starting the zstd decoder: {e}"),
                })?;
            Decoded::Zstd(Box::new(decoder))
        }
    };
    Ok(DigestReader {
        inner: decoded,
        hasher: Sha256::new(),
        len: 0,
        meter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::fixture::*;
    use crate::unpack::unpack_layer;
    use std::fs;

    /// config.md "Layer DiffID": the digest of the uncompressed stream, whatever follows the end-of-archive
    /// marker included, for each compression the media types name.
    #[test]
    fn diff_id_covers_the_whole_uncompressed_stream_for_every_compression() {
        let mut tar = Layer::new().file("f", b"data", 0o644).finish();
        tar.extend_from_slice(&[0u8; 4096]); // record padding, as some tar writers add
        let want = sha256(&tar);
        for (compression, blob) in [
            (Compression::None, tar.clone()),
            (Compression::Gzip, gzip(&tar)),
            (Compression::Zstd, zstd::encode_all(&tar[..], 3).unwrap()),
        ] {
            let fx = Fixture::new();
            let unpacked = unpack_layer(LAYER, &blob[..], compression, &fx.dir, &[]).unwrap();
            assert_eq!(unpacked.diff_id, want, "{compression:?}");
            assert_eq!(unpacked.size, tar.len() as u64, "{compression:?}");
            assert_eq!(fs::read(fx.path("f")).unwrap(), b"data");
        }
    }

    #[test]
    fn media_types_name_their_compression() {
        let cases = [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                Compression::None,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
        ];
        for (media_type, want) in cases {
            assert_eq!(
                Compression::from_media_type(LAYER, media_type).unwrap(),
                want
            );
        }
        let err = Compression::from_media_type(LAYER, "application/vnd.oci.image.config.v1+json")
            .unwrap_err();
        assert!(matches!(err, Error::LayerFormat { .. }));
        assert!(
            err.to_string()
                .contains("application/vnd.oci.image.config.v1+json")
        );
    }

    /// A blob reader's own failure (disk, network) is an I/O error, not a malformed layer.
    #[test]
    fn blob_read_errors_are_io_errors() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "peer went away",
                ))
            }
        }
        let fx = Fixture::new();
        let err = unpack_layer(LAYER, Failing, Compression::Gzip, &fx.dir, &[]).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("peer went away"));
    }
}
