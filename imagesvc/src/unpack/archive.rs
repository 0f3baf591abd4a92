//! The tar framing of a layer's uncompressed stream: the shared reader of `crate::tar` (archive/tar's framing; see
//! the header of unpack/mod.rs for why not `tar::Archive`), its errors made the layer's: `Error::LayerFormat` naming
//! the layer, the byte of the uncompressed stream and the entry before it; a limit of limits.rs crossed and a
//! failure of the blob reader passed through as they are. It reads through the DigestReader, so the stream read to
//! its end gives the DiffID.

use std::fmt;
use std::io::{self, Read};

use super::decompress::{BlobError, Compression, Decoded, DigestReader};
use crate::error::{Error, Result, io};
use crate::tar::{Entry, Error as TarError, Reader, Reason};

/// The buffer that headers are read from; file data bypasses it once it is drained.
const STREAM_BUFFER: usize = 256 << 10;

/// Reads the tar framing of the uncompressed stream of a layer.
pub(super) struct TarReader<'a, R: Read> {
    layer: &'a str,
    compression: Compression,
    tar: Reader<DigestReader<'a, Decoded<R>>>,
}

/// `layer`'s error for a failure of the framing, or of the stream under it: a malformed archive is LayerFormat
/// ("<reason> (at byte N of the tar stream, after entry ...)"), and so is a stream that does not decompress; a limit
/// crossed and a failing blob reader are their own errors.
fn layer_error(layer: &str, compression: Compression, e: TarError) -> Error {
    let place = e.place();
    let format = |reason: &dyn fmt::Display| Error::LayerFormat {
        layer: layer.to_string(),
        reason: format!("{reason} ({place})"),
    };
    let source = match e.reason {
        Reason::Format(reason) => return format(&reason),
        Reason::Read(source) => source,
    };
    if source.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        // A limit crossed (limits.rs): that is the error, not the stream.
        return match source.into_inner().map(|inner| inner.downcast::<Error>()) {
            Some(Ok(limit)) => *limit,
            _ => format(&"reading the stream failed"),
        };
    }
    if source
        .get_ref()
        .is_some_and(|inner| inner.is::<BlobError>())
    {
        let source = match source
            .into_inner()
            .map(|inner| inner.downcast::<BlobError>())
        {
            Some(Ok(blob)) => blob.0,
            Some(Err(other)) => io::Error::other(other),
            None => io::Error::other("unknown error"),
        };
        return io("reading layer blob", layer)(source);
    }
    format(&format_args!(
        "decoding the {} stream: {source}",
        compression.name()
    ))
}

impl<'a, R: Read> TarReader<'a, R> {
    /// Reads `stream`, the uncompressed stream of `layer` (compressed as `compression`: both name it in messages).
    pub(super) fn new(
        layer: &'a str,
        compression: Compression,
        stream: DigestReader<'a, Decoded<R>>,
    ) -> Self {
        TarReader {
            layer,
            compression,
            tar: Reader::with_capacity(STREAM_BUFFER, stream),
        }
    }

    /// The layer's error for a failure of the framing or of the stream under it.
    fn error(&self, e: TarError) -> Error {
        layer_error(self.layer, self.compression, e)
    }

    /// The next entry; None at the end of the archive.
    pub(super) fn next_entry(&mut self) -> Result<Option<Entry>> {
        self.tar.next_entry().map_err(|e| self.error(e))
    }

    /// Reads the current entry's data; Ok(0) at its end.
    pub(super) fn read_data(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.tar.read_data(buf).map_err(|e| self.error(e))
    }

    /// Reads the stream to its end (whatever follows the end-of-archive marker is part of the DiffID too) and
    /// returns the DiffID and the uncompressed size.
    pub(super) fn finish(self) -> Result<(String, u64)> {
        let (layer, compression) = (self.layer, self.compression);
        match self.tar.finish() {
            Ok(stream) => Ok(stream.finish()),
            Err(e) => Err(layer_error(layer, compression, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::fixture::*;
    use crate::unpack::unpack_layer;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use tar::EntryType;

    /// Malformed archives are LayerFormat errors that name the entry: data cut short, a header whose size is
    /// smaller than the data after it (the next "header" is data: bad checksum), corrupt compression.
    #[test]
    fn malformed_archives_are_refused() {
        let big = vec![7u8; 100_000];
        let tar = Layer::new()
            .file("first", b"ok", 0o644)
            .file("cut", &big, 0o644)
            .finish();
        let fx = Fixture::new();
        assert_format(fx.unpack(&tar[..60_000]), "\"cut\"");

        let fx = Fixture::new();
        let text = assert_format(fx.unpack(&tar[..1100]), "\"first\""); // cut inside the second header
        assert!(text.contains("truncated"), "{text}");
        fx.assert_contained();

        let mut h = header(EntryType::Regular, 0o644, 100);
        h.set_path("short").unwrap();
        h.set_cksum();
        let mut layer = Layer::new();
        layer.0.append(&h, &[b'a'; 100][..]).unwrap();
        layer.bytes(&[b'z'; 1024]); // the rest of the data the header did not count
        let tar = layer.file("after", b"x", 0o644).finish();
        let fx = Fixture::new();
        let text = assert_format(fx.unpack(&tar), "\"short\"");
        assert!(text.contains("checksum"), "{text}");

        let good = Layer::new().file("f", &big, 0o644).finish();
        let mut gz = gzip(&good);
        let mid = gz.len() / 2;
        for b in &mut gz[mid..mid + 16] {
            *b ^= 0x55;
        }
        let fx = Fixture::new();
        assert_format(
            unpack_layer(LAYER, &gz[..], Compression::Gzip, &fx.dir, &[]),
            "gzip",
        );
        let gz = gzip(&good);
        let fx = Fixture::new();
        assert_format(
            unpack_layer(LAYER, &gz[..gz.len() - 40], Compression::Gzip, &fx.dir, &[]),
            "gzip",
        );
        let fx = Fixture::new();
        let not_zstd = b"this is not a zstd frame at all".repeat(10);
        assert_format(
            unpack_layer(LAYER, &not_zstd[..], Compression::Zstd, &fx.dir, &[]),
            "zstd",
        );
    }

    /// PAX records are framed by their length (POSIX pax "Extended Header"), as Go's archive/tar reads them: a
    /// binary xattr holding newlines (a file capability may) is kept byte for byte, and a newline in a value
    /// cannot smuggle in a `linkpath` record. Header-only entries (symlinks, directories...) have no data, whatever
    /// their size field says, as archive/tar reads them too.
    #[test]
    fn pax_records_and_header_only_entries_are_framed_like_archive_tar() {
        let fx = Fixture::new();
        let binary = b"\x01\x00\x00\x02\x02\x00\x0a\x00\n22 linkpath=/etc/evil\n";
        let smuggler = b"a\n30 linkpath=/etc/polis-evil\n";
        let mut layer = Layer::new();
        layer
            .pax(&[("SCHILY.xattr.user.caps", &binary[..])])
            .file("caps", b"x", 0o644)
            .pax(&[("SCHILY.xattr.user.note", &smuggler[..])])
            .symlink("lnk", "safe-target")
            .pax(&[("path", b"pax/long/name"), ("mtime", b"1234567890.5")])
            .file("short", b"pax", 0o644);
        let mut h = header(EntryType::Symlink, 0o777, 512);
        h.set_path("sized-symlink").unwrap();
        h.set_link_name("t").unwrap();
        h.set_cksum();
        layer.bytes(h.as_bytes()); // no data block follows: the next header comes straight after
        let tar = layer.file("after-sized", b"seen", 0o644).finish();
        fx.unpack(&tar).unwrap();
        assert_eq!(
            xattr(&fx.path("caps"), "user.caps").as_deref(),
            Some(&binary[..])
        );
        assert_eq!(
            fs::read_link(fx.path("lnk")).unwrap(),
            Path::new("safe-target")
        );
        assert_eq!(fs::read(fx.path("pax/long/name")).unwrap(), b"pax");
        let t = fs::metadata(fx.path("pax/long/name")).unwrap();
        assert_eq!((t.mtime(), t.mtime_nsec()), (1_234_567_890, 500_000_000));
        assert_eq!(
            fs::read_link(fx.path("sized-symlink")).unwrap(),
            Path::new("t")
        );
        assert_eq!(fs::read(fx.path("after-sized")).unwrap(), b"seen");
        fx.assert_contained();
    }
}
