//! OCI image layouts built in Rust for the image tests, with any layer content a test needs.
//!
//! An [`OciLayout`] is a directory (`oci-layout`, `index.json`, `blobs/sha256/`) that skopeo, umoci and the puller
//! read. [`OciLayout::write_image`] writes one [`Image`] (its [`Layer`]s compressed as asked, its config with
//! `rootfs.diff_ids` computed from the uncompressed layers, its manifest) and names it in `index.json` with
//! `org.opencontainers.image.ref.name`; [`OciLayout::write_index`] writes a multi-platform image index. Both return the
//! digests of everything they wrote ([`BuiltImage`], [`BuiltIndex`]) for tests to compare with what a client saw.
//!
//! Layers hold ordinary entries (files, directories, links, devices, fifos, xattrs, whiteouts) and hostile ones a
//! well-behaved archiver refuses to write: names like `../escape` or `/abs/path` written straight into the header,
//! and entries whose header size is smaller than the data that follows. Everything is deterministic (fixed mtimes,
//! seeded random data), so the same image gives the same digests.
//!
//! To put a layout into a registry: [`OciLayout::push_with_skopeo`] (`skopeo copy oci:LAYOUT:REF docker://...`, which
//! may recompress layers and convert formats, so digests can change) or [`OciLayout::push_exact`] (the distribution
//! API driven directly, so the registry holds these very bytes and digests).
//!
//! ```no_run
//! use polis_integration::image_builder::{Compression, Entry, Image, Layer, OciLayout};
//! let dir = polis_integration::temp_dir("polis-it-image-");
//! let layout = OciLayout::create(&dir.path().join("layout"));
//! let image = Image::new()
//!     .layer(
//!         Layer::new()
//!             .compression(Compression::Zstd)
//!             .dir("etc")
//!             .entry(Entry::file("etc/motd", "hello\n").mode(0o600).owner(1000, 1000))
//!             .symlink("etc/link", "motd"),
//!     )
//!     .layer(Layer::new().whiteout("etc/link"))
//!     .entrypoint(["/bin/sh"])
//!     .label("polis.test", "yes");
//! let built = layout.write_image(&image, "latest");
//! println!("manifest {} config {}", built.manifest.digest, built.config.digest);
//! ```

use crate::NetNs;
use crate::registry_front::{HttpResponse, http_request};
use crate::{Output, run_command, temp_dir};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub const OCI_LAYOUT_VERSION: &str = "1.0.0";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_SCHEMA1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// The annotation that names an image in a layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The mtime of every entry unless set otherwise (2023-11-14T22:13:20Z), so builds are reproducible.
pub const DEFAULT_MTIME: u64 = 1_700_000_000;
/// The `created` time written into image configs.
const CREATED: &str = "2023-11-14T22:13:20Z";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::None => MEDIA_TYPE_LAYER,
            Compression::Gzip => MEDIA_TYPE_LAYER_GZIP,
            Compression::Zstd => MEDIA_TYPE_LAYER_ZSTD,
        }
    }
}

/// A content descriptor: media type, `sha256:<hex>` digest and size of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Descriptor {
    /// The digest's hex part (the blob's file name under `blobs/sha256`).
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// The descriptor as OCI JSON (`mediaType`, `digest`, `size`).
    pub fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Layer content

/// What one tar entry is.
#[derive(Debug, Clone)]
pub enum EntryKind {
    File(Vec<u8>),
    /// A regular file of `size` bytes from a seeded PRNG ([`random_bytes`]), generated while the layer is written so
    /// that big layers never sit in memory.
    RandomFile {
        size: u64,
        seed: u64,
    },
    Dir,
    Symlink(String),
    HardLink(String),
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
    /// A header written byte for byte: `name` and `link_name` go into the header's 100-byte fields unchecked
    /// (truncated at 100 bytes), so they may be `../escape` or `/abs/path`, which the tar crate refuses to write.
    Raw {
        entry_type: tar::EntryType,
        name: Vec<u8>,
        link_name: Vec<u8>,
        data: Vec<u8>,
    },
    /// A regular file whose header claims `claimed` bytes while all of `data` follows it (padded to 512): a reader
    /// that trusts the header reads the rest of `data` as the next header.
    LyingSize {
        claimed: u64,
        data: Vec<u8>,
    },
}

/// One tar entry with its metadata. Build with [`Entry::file`] and friends, then `.mode()`, `.owner()`,
/// `.mtime()`, `.xattr()`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the layer, relative (`etc/motd`); ignored for [`EntryKind::Raw`].
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (with setuid/setgid/sticky), without the file type.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Extended attributes, written as PAX `SCHILY.xattr.<name>` records before the entry.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    fn with(path: &str, kind: EntryKind, mode: u32) -> Entry {
        Entry {
            path: path.to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: DEFAULT_MTIME,
            xattrs: Vec::new(),
        }
    }

    /// A regular file, mode 0644.
    pub fn file(path: &str, content: impl Into<Vec<u8>>) -> Entry {
        Entry::with(path, EntryKind::File(content.into()), 0o644)
    }

    /// A regular file of `size` seeded random (incompressible) bytes, mode 0644.
    pub fn random_file(path: &str, size: u64, seed: u64) -> Entry {
        Entry::with(path, EntryKind::RandomFile { size, seed }, 0o644)
    }

    /// A directory, mode 0755.
    pub fn dir(path: &str) -> Entry {
        Entry::with(path, EntryKind::Dir, 0o755)
    }

    /// A symbolic link to `target` (written as given), mode 0777.
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::with(path, EntryKind::Symlink(target.to_string()), 0o777)
    }

    /// A hard link to `target`, a path inside the layer (or a lower one).
    pub fn hard_link(path: &str, target: &str) -> Entry {
        Entry::with(path, EntryKind::HardLink(target.to_string()), 0o644)
    }

    /// A character device, mode 0666.
    pub fn char_device(path: &str, major: u32, minor: u32) -> Entry {
        Entry::with(path, EntryKind::CharDevice { major, minor }, 0o666)
    }

    /// A block device, mode 0660.
    pub fn block_device(path: &str, major: u32, minor: u32) -> Entry {
        Entry::with(path, EntryKind::BlockDevice { major, minor }, 0o660)
    }

    /// A named pipe, mode 0644.
    pub fn fifo(path: &str) -> Entry {
        Entry::with(path, EntryKind::Fifo, 0o644)
    }

    /// A header with `name` and `link_name` written raw (see [`EntryKind::Raw`]) and `data` as its content;
    /// mode 0644.
    pub fn raw(
        entry_type: tar::EntryType,
        name: impl Into<Vec<u8>>,
        link_name: impl Into<Vec<u8>>,
        data: impl Into<Vec<u8>>,
    ) -> Entry {
        let name = name.into();
        let kind = EntryKind::Raw {
            entry_type,
            name: name.clone(),
            link_name: link_name.into(),
            data: data.into(),
        };
        Entry::with(&String::from_utf8_lossy(&name), kind, 0o644)
    }

    /// A regular file whose header says `claimed` bytes while all of `data` follows (see [`EntryKind::LyingSize`]).
    pub fn lying_size(path: &str, claimed: u64, data: impl Into<Vec<u8>>) -> Entry {
        let kind = EntryKind::LyingSize {
            claimed,
            data: data.into(),
        };
        Entry::with(path, kind, 0o644)
    }

    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }

    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }

    pub fn mtime(mut self, mtime: u64) -> Entry {
        self.mtime = mtime;
        self
    }

    /// Adds the extended attribute `name` (e.g. `user.polis`, `security.capability`) with `value`.
    pub fn xattr(mut self, name: &str, value: impl Into<Vec<u8>>) -> Entry {
        self.xattrs.push((name.to_string(), value.into()));
        self
    }
}

/// One layer: its entries in order, and how its blob is compressed (gzip unless set).
#[derive(Debug, Clone, Default)]
pub struct Layer {
    pub entries: Vec<Entry>,
    pub compression: Compression,
    /// When set, the layer's uncompressed bytes are exactly these (not a tar at all, a truncated tar, ...), and
    /// `entries` is ignored.
    pub verbatim: Option<Vec<u8>>,
}

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }

    /// A layer whose uncompressed content is `bytes`, whatever they are.
    pub fn verbatim(bytes: impl Into<Vec<u8>>) -> Layer {
        Layer {
            verbatim: Some(bytes.into()),
            ..Layer::default()
        }
    }

    /// A layer of one file `path` holding `mib` MiB of seeded random bytes, for benchmarks. Incompressible, so
    /// it is best left uncompressed ([`Compression::None`]) unless the compressor's cost is what is measured.
    pub fn random(path: &str, mib: u64, seed: u64) -> Layer {
        Layer::new().entry(Entry::random_file(path, mib << 20, seed))
    }

    pub fn compression(mut self, compression: Compression) -> Layer {
        self.compression = compression;
        self
    }

    pub fn entry(mut self, entry: Entry) -> Layer {
        self.entries.push(entry);
        self
    }

    pub fn file(self, path: &str, content: impl Into<Vec<u8>>) -> Layer {
        self.entry(Entry::file(path, content))
    }

    pub fn dir(self, path: &str) -> Layer {
        self.entry(Entry::dir(path))
    }

    pub fn symlink(self, path: &str, target: &str) -> Layer {
        self.entry(Entry::symlink(path, target))
    }

    pub fn hard_link(self, path: &str, target: &str) -> Layer {
        self.entry(Entry::hard_link(path, target))
    }

    pub fn char_device(self, path: &str, major: u32, minor: u32) -> Layer {
        self.entry(Entry::char_device(path, major, minor))
    }

    pub fn block_device(self, path: &str, major: u32, minor: u32) -> Layer {
        self.entry(Entry::block_device(path, major, minor))
    }

    pub fn fifo(self, path: &str) -> Layer {
        self.entry(Entry::fifo(path))
    }

    /// Deletes `path` of a lower layer: the whiteout file `dir/.wh.name`.
    pub fn whiteout(self, path: &str) -> Layer {
        let path = path.trim_end_matches('/');
        let whiteout = match path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        self.entry(Entry::file(&whiteout, Vec::new()))
    }

    /// Hides everything lower layers put in `dir`: the opaque whiteout `dir/.wh..wh..opq`.
    pub fn opaque_whiteout(self, dir: &str) -> Layer {
        let dir = dir.trim_end_matches('/');
        let marker = if dir.is_empty() {
            ".wh..wh..opq".to_string()
        } else {
            format!("{dir}/.wh..wh..opq")
        };
        self.entry(Entry::file(&marker, Vec::new()))
    }

    /// See [`Entry::raw`].
    pub fn raw(
        self,
        entry_type: tar::EntryType,
        name: impl Into<Vec<u8>>,
        link_name: impl Into<Vec<u8>>,
        data: impl Into<Vec<u8>>,
    ) -> Layer {
        self.entry(Entry::raw(entry_type, name, link_name, data))
    }

    /// See [`Entry::lying_size`].
    pub fn lying_size(self, path: &str, claimed: u64, data: impl Into<Vec<u8>>) -> Layer {
        self.entry(Entry::lying_size(path, claimed, data))
    }

    /// The layer's uncompressed tar, in memory (for tests that want the bytes; writing a layout streams instead).
    pub fn tar_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_tar(&mut out).expect("write layer tar to memory");
        out
    }

    /// Writes the uncompressed tar stream to `out`.
    pub fn write_tar<W: Write>(&self, out: W) -> io::Result<W> {
        if let Some(bytes) = &self.verbatim {
            let mut out = out;
            out.write_all(bytes)?;
            return Ok(out);
        }
        let mut builder = tar::Builder::new(out);
        for (n, entry) in self.entries.iter().enumerate() {
            append_entry(&mut builder, entry, n)?;
        }
        builder.into_inner()
    }
}

fn base_header(entry: &Entry, entry_type: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(entry_type);
    h.set_mode(entry.mode);
    h.set_uid(entry.uid);
    h.set_gid(entry.gid);
    h.set_mtime(entry.mtime);
    h.set_size(size);
    h
}

fn append_entry<W: Write>(b: &mut tar::Builder<W>, entry: &Entry, n: usize) -> io::Result<()> {
    use tar::EntryType as T;
    if !entry.xattrs.is_empty() {
        append_pax_xattrs(b, entry, n)?;
    }
    let path = entry.path.as_str();
    match &entry.kind {
        EntryKind::File(data) => {
            let mut h = base_header(entry, T::Regular, data.len() as u64);
            b.append_data(&mut h, path, data.as_slice())
        }
        EntryKind::RandomFile { size, seed } => {
            let mut h = base_header(entry, T::Regular, *size);
            b.append_data(&mut h, path, RandomReader::new(*seed).take(*size))
        }
        EntryKind::Dir => {
            let mut h = base_header(entry, T::Directory, 0);
            b.append_data(&mut h, path, io::empty())
        }
        EntryKind::Symlink(target) => {
            let mut h = base_header(entry, T::Symlink, 0);
            b.append_link(&mut h, path, target)
        }
        EntryKind::HardLink(target) => {
            let mut h = base_header(entry, T::Link, 0);
            b.append_link(&mut h, path, target)
        }
        EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } => {
            let t = if matches!(entry.kind, EntryKind::CharDevice { .. }) {
                T::Char
            } else {
                T::Block
            };
            let mut h = base_header(entry, t, 0);
            h.set_device_major(*major)?;
            h.set_device_minor(*minor)?;
            b.append_data(&mut h, path, io::empty())
        }
        EntryKind::Fifo => {
            let mut h = base_header(entry, T::Fifo, 0);
            b.append_data(&mut h, path, io::empty())
        }
        EntryKind::Raw {
            entry_type,
            name,
            link_name,
            data,
        } => {
            let mut h = base_header(entry, *entry_type, data.len() as u64);
            let old = h.as_old_mut();
            let n = name.len().min(old.name.len());
            old.name[..n].copy_from_slice(&name[..n]);
            let l = link_name.len().min(old.linkname.len());
            old.linkname[..l].copy_from_slice(&link_name[..l]);
            h.set_cksum();
            b.append(&h, data.as_slice())
        }
        EntryKind::LyingSize { claimed, data } => {
            // append_data writes the header as given and then all of `data`, padded to the next block.
            let mut h = base_header(entry, T::Regular, *claimed);
            b.append_data(&mut h, path, data.as_slice())
        }
    }
}

/// A PAX extended header ('x') for the entry that follows, holding one `SCHILY.xattr.<name>` record per xattr.
fn append_pax_xattrs<W: Write>(b: &mut tar::Builder<W>, entry: &Entry, n: usize) -> io::Result<()> {
    let mut records = Vec::new();
    for (name, value) in &entry.xattrs {
        records.extend(pax_record(&format!("SCHILY.xattr.{name}"), value));
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_mode(0o644);
    h.set_mtime(entry.mtime);
    h.set_size(records.len() as u64);
    // The name of a PAX header is informational; keep it short and unique.
    b.append_data(&mut h, format!("PaxHeaders.0/entry{n}"), records.as_slice())
}

/// One PAX record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including its own digits.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while base + len.to_string().len() != len {
        len = base + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// An endless stream of bytes from SplitMix64 seeded with `seed`: fast, deterministic, incompressible.
pub struct RandomReader {
    state: u64,
    buf: [u8; 8],
    pos: usize,
}

impl RandomReader {
    pub fn new(seed: u64) -> RandomReader {
        RandomReader {
            state: seed,
            buf: [0; 8],
            pos: 8,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl Read for RandomReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() && self.pos < 8 {
            out[n] = self.buf[self.pos];
            self.pos += 1;
            n += 1;
        }
        while out.len() - n >= 8 {
            let v = self.next_u64().to_le_bytes();
            out[n..n + 8].copy_from_slice(&v);
            n += 8;
        }
        if n < out.len() {
            self.buf = self.next_u64().to_le_bytes();
            self.pos = 0;
            while n < out.len() {
                out[n] = self.buf[self.pos];
                self.pos += 1;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// `len` seeded random bytes (the same as a [`EntryKind::RandomFile`] of that seed holds).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0; len];
    RandomReader::new(seed)
        .read_exact(&mut v)
        .expect("read from an endless PRNG");
    v
}

// ---------------------------------------------------------------------------------------------------------------
// Images

/// An image's platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`, e.g. `linux/arm64/v8`.
    pub fn parse(s: &str) -> Platform {
        let mut parts = s.split('/');
        let os = parts.next().unwrap_or("linux").to_string();
        let architecture = parts.next().unwrap_or("amd64").to_string();
        let variant = parts.next().map(str::to_string);
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// The platform as OCI JSON (`os`, `architecture`, `variant` when set).
    pub fn to_json(&self) -> Value {
        let mut p = json!({"os": self.os, "architecture": self.architecture});
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }
}

impl Default for Platform {
    fn default() -> Platform {
        Platform::parse("linux/amd64")
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

/// The runtime part of an image config (`config` in the OCI image config). Empty fields are left out.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// `port/proto`, e.g. `80/tcp`.
    pub exposed_ports: Vec<String>,
}

/// An image to write: platform, runtime config and layers (lowest first).
#[derive(Debug, Clone, Default)]
pub struct Image {
    pub platform: Platform,
    pub config: ImageConfig,
    pub layers: Vec<Layer>,
    /// Replace `rootfs.diff_ids[i]` with a digest of something else, for the DiffID-mismatch test.
    pub corrupt_diff_id: Option<usize>,
    /// Annotations on the manifest.
    pub annotations: BTreeMap<String, String>,
}

fn strings<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

impl Image {
    /// linux/amd64, no layers, an empty config.
    pub fn new() -> Image {
        Image::default()
    }

    pub fn layer(mut self, layer: Layer) -> Image {
        self.layers.push(layer);
        self
    }

    /// One small image per platform (`os/arch[/variant]`), each telling which it is: the label `platform` and the
    /// file `/p` hold the platform's name, and `/p` is the Cmd. For [`OciLayout::write_index`].
    pub fn per_platform(platforms: &[&str]) -> Vec<Image> {
        platforms
            .iter()
            .map(|p| {
                Image::new()
                    .platform(p)
                    .label("platform", p)
                    .layer(Layer::new().file("p", *p))
                    .cmd(["/p"])
            })
            .collect()
    }

    /// `os/arch[/variant]`, e.g. `linux/arm/v7`.
    pub fn platform(mut self, platform: &str) -> Image {
        self.platform = Platform::parse(platform);
        self
    }

    pub fn entrypoint<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Image {
        self.config.entrypoint = Some(strings(args));
        self
    }

    pub fn cmd<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Image {
        self.config.cmd = Some(strings(args));
        self
    }

    /// Adds `KEY=value` to Env.
    pub fn env(mut self, key_value: &str) -> Image {
        self.config.env.push(key_value.to_string());
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Image {
        self.config.working_dir = Some(dir.to_string());
        self
    }

    pub fn user(mut self, user: &str) -> Image {
        self.config.user = Some(user.to_string());
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Image {
        self.config
            .labels
            .insert(key.to_string(), value.to_string());
        self
    }

    pub fn stop_signal(mut self, signal: &str) -> Image {
        self.config.stop_signal = Some(signal.to_string());
        self
    }

    /// Adds `port/proto` (e.g. `8080/tcp`) to ExposedPorts.
    pub fn expose(mut self, port: &str) -> Image {
        self.config.exposed_ports.push(port.to_string());
        self
    }

    pub fn corrupt_diff_id(mut self, layer: usize) -> Image {
        self.corrupt_diff_id = Some(layer);
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Image {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// The image config JSON for these diff_ids.
    fn config_json(&self, diff_ids: &[String]) -> Value {
        let c = &self.config;
        let mut cfg = Map::new();
        if let Some(u) = &c.user {
            cfg.insert("User".into(), json!(u));
        }
        if !c.exposed_ports.is_empty() {
            let ports: Map<String, Value> = c
                .exposed_ports
                .iter()
                .map(|p| (p.clone(), json!({})))
                .collect();
            cfg.insert("ExposedPorts".into(), Value::Object(ports));
        }
        if !c.env.is_empty() {
            cfg.insert("Env".into(), json!(c.env));
        }
        if let Some(e) = &c.entrypoint {
            cfg.insert("Entrypoint".into(), json!(e));
        }
        if let Some(cmd) = &c.cmd {
            cfg.insert("Cmd".into(), json!(cmd));
        }
        if let Some(w) = &c.working_dir {
            cfg.insert("WorkingDir".into(), json!(w));
        }
        if !c.labels.is_empty() {
            cfg.insert("Labels".into(), json!(c.labels));
        }
        if let Some(s) = &c.stop_signal {
            cfg.insert("StopSignal".into(), json!(s));
        }
        let history: Vec<Value> = diff_ids
            .iter()
            .enumerate()
            .map(|(i, _)| json!({"created": CREATED, "created_by": format!("polis-integration layer {i}")}))
            .collect();
        let mut config = json!({
            "created": CREATED,
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": Value::Object(cfg),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        if let Some(v) = &self.platform.variant {
            config["variant"] = json!(v);
        }
        config
    }
}

/// What [`OciLayout::write_image`] wrote.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The `org.opencontainers.image.ref.name` it is listed under in index.json (empty for an index's member).
    pub ref_name: String,
    pub platform: Platform,
    pub manifest: Descriptor,
    pub config: Descriptor,
    /// Layer blobs, lowest first, with their (compressed) media types.
    pub layers: Vec<Descriptor>,
    /// `rootfs.diff_ids` as written in the config (one is wrong when `corrupt_diff_id` was set).
    pub diff_ids: Vec<String>,
    /// The digests of the uncompressed layers (always right).
    pub true_diff_ids: Vec<String>,
    pub manifest_json: Vec<u8>,
    pub config_json: Vec<u8>,
}

/// What [`OciLayout::write_index`] wrote.
#[derive(Debug, Clone)]
pub struct BuiltIndex {
    pub ref_name: String,
    pub index: Descriptor,
    pub index_json: Vec<u8>,
    /// One per platform, in the index's order.
    pub manifests: Vec<BuiltImage>,
}

impl BuiltIndex {
    /// The member image for `platform` (`os/arch[/variant]`).
    pub fn for_platform(&self, platform: &str) -> Option<&BuiltImage> {
        let p = Platform::parse(platform);
        self.manifests.iter().find(|m| m.platform == p)
    }
}

/// Where skopeo, run as root, keeps its blob-info cache.
const SKOPEO_CACHE: &str = "/var/lib/containers/cache";

/// How [`OciLayout::push_with_skopeo`] copies.
#[derive(Debug, Clone, Default)]
pub struct SkopeoPush {
    /// `--format v2s2` (Docker schema 2) or `oci`; skopeo keeps the source's format when unset.
    pub format: Option<String>,
    /// `--dest-compress --dest-compress-format gzip|zstd`. skopeo compresses uncompressed layers anyway (gzip by
    /// default) and cannot push them uncompressed ([`OciLayout::push_exact`] can); zstd needs the OCI format.
    pub compress: Option<Compression>,
    /// `--all`: copy every image of an index, not only the one for this host.
    pub all: bool,
    /// `--dest-creds user:password`.
    pub credentials: Option<(String, String)>,
}

/// An OCI image layout directory, created empty by [`OciLayout::create`]. Not removed on drop: it lives in the
/// test's temp dir.
pub struct OciLayout {
    dir: PathBuf,
    /// Where commands run on the layout leave their captured output.
    scratch: tempfile::TempDir,
}

static BLOB_SEQ: AtomicUsize = AtomicUsize::new(0);

impl OciLayout {
    /// Creates `dir` (and its parents) as an empty layout: `oci-layout`, `index.json`, `blobs/sha256/`. An
    /// existing layout there is kept and added to.
    pub fn create(dir: &Path) -> OciLayout {
        fs::create_dir_all(dir.join("blobs/sha256"))
            .unwrap_or_else(|e| panic!("create layout {}: {e}", dir.display()));
        fs::write(
            dir.join("oci-layout"),
            json!({"imageLayoutVersion": OCI_LAYOUT_VERSION}).to_string(),
        )
        .expect("write oci-layout");
        if !dir.join("index.json").exists() {
            let index = json!({"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": []});
            fs::write(dir.join("index.json"), index.to_string()).expect("write index.json");
        }
        OciLayout {
            dir: dir.to_path_buf(),
            scratch: temp_dir("polis-it-layout-scratch-"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `oci:DIR:REF`, the skopeo/umoci name of an image in this layout.
    pub fn oci_ref(&self, ref_name: &str) -> String {
        format!("oci:{}:{ref_name}", self.dir.display())
    }

    /// The file holding blob `digest`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    /// Reads blob `digest`.
    pub fn read_blob(&self, digest: &str) -> Vec<u8> {
        fs::read(self.blob_path(digest)).unwrap_or_else(|e| panic!("read blob {digest}: {e}"))
    }

    /// Stores `data` as a blob of `media_type`.
    pub fn put_blob(&self, media_type: &str, data: &[u8]) -> Descriptor {
        let digest = sha256_digest(data);
        let d = Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: data.len() as u64,
        };
        let tmp = self.tmp_blob_path();
        fs::write(&tmp, data).expect("write blob");
        fs::rename(&tmp, self.blob_path(&d.digest)).expect("rename blob");
        d
    }

    fn tmp_blob_path(&self) -> PathBuf {
        let n = BLOB_SEQ.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join("blobs/sha256")
            .join(format!(".tmp-{}-{n}", std::process::id()))
    }

    /// Writes `layer`'s blob (compressed as it says) and returns its descriptor and its diff_id.
    pub fn write_layer(&self, layer: &Layer) -> (Descriptor, String) {
        let tmp = self.tmp_blob_path();
        let file = fs::File::create(&tmp).expect("create layer blob");
        let blob = Hashing::new(io::BufWriter::with_capacity(1 << 20, file));
        let compressor = Compressor::new(layer.compression, blob).expect("start compressor");
        let tar = Hashing::new(compressor);
        let tar = layer.write_tar(tar).expect("write layer");
        let (diff_id, _, compressor) = tar.finish();
        let blob = compressor.finish().expect("finish compressor");
        let (digest, size, mut file) = blob.finish();
        file.flush().expect("flush layer blob");
        drop(file);
        fs::rename(&tmp, self.blob_path(&digest)).expect("rename layer blob");
        let d = Descriptor {
            media_type: layer.compression.media_type().to_string(),
            digest,
            size,
        };
        (d, diff_id)
    }

    /// Writes `image` (layers, config, manifest) without naming it in index.json.
    fn write_image_blobs(&self, image: &Image) -> BuiltImage {
        let mut layers = Vec::new();
        let mut true_diff_ids = Vec::new();
        for layer in &image.layers {
            let (d, diff_id) = self.write_layer(layer);
            layers.push(d);
            true_diff_ids.push(diff_id);
        }
        let mut diff_ids = true_diff_ids.clone();
        if let Some(i) = image.corrupt_diff_id {
            assert!(
                i < diff_ids.len(),
                "corrupt_diff_id({i}) of a {}-layer image",
                diff_ids.len()
            );
            diff_ids[i] = sha256_digest(format!("not layer {i}").as_bytes());
        }
        let config_json =
            serde_json::to_vec(&image.config_json(&diff_ids)).expect("serialize config");
        let config = self.put_blob(MEDIA_TYPE_CONFIG, &config_json);
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config.to_json(),
            "layers": layers.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
        });
        if !image.annotations.is_empty() {
            manifest["annotations"] = json!(image.annotations);
        }
        let manifest_json = serde_json::to_vec(&manifest).expect("serialize manifest");
        let manifest = self.put_blob(MEDIA_TYPE_MANIFEST, &manifest_json);
        BuiltImage {
            ref_name: String::new(),
            platform: image.platform.clone(),
            manifest,
            config,
            layers,
            diff_ids,
            true_diff_ids,
            manifest_json,
            config_json,
        }
    }

    /// Writes `image` and lists its manifest in index.json as `ref_name` (replacing an entry of that name).
    pub fn write_image(&self, image: &Image, ref_name: &str) -> BuiltImage {
        let mut built = self.write_image_blobs(image);
        built.ref_name = ref_name.to_string();
        let mut entry = built.manifest.to_json();
        entry["platform"] = built.platform.to_json();
        self.name_in_index(entry, ref_name);
        built
    }

    /// Writes each image (each its own config, manifest and layers) and an image index listing them with their
    /// platforms, named `ref_name` in index.json.
    pub fn write_index(&self, images: &[Image], ref_name: &str) -> BuiltIndex {
        let manifests: Vec<BuiltImage> = images.iter().map(|i| self.write_image_blobs(i)).collect();
        let entries: Vec<Value> = manifests
            .iter()
            .map(|m| {
                let mut e = m.manifest.to_json();
                e["platform"] = m.platform.to_json();
                e
            })
            .collect();
        let index =
            json!({"schemaVersion": 2, "mediaType": MEDIA_TYPE_INDEX, "manifests": entries});
        let index_json = serde_json::to_vec(&index).expect("serialize index");
        let index = self.put_blob(MEDIA_TYPE_INDEX, &index_json);
        self.name_in_index(index.to_json(), ref_name);
        BuiltIndex {
            ref_name: ref_name.to_string(),
            index,
            index_json,
            manifests,
        }
    }

    /// Adds `descriptor` to index.json with the ref.name annotation `ref_name`, dropping any other entry of that
    /// name.
    pub fn name_in_index(&self, mut descriptor: Value, ref_name: &str) {
        let path = self.dir.join("index.json");
        let mut index: Value = serde_json::from_slice(&fs::read(&path).expect("read index.json"))
            .expect("parse index.json");
        descriptor["annotations"][REF_NAME] = json!(ref_name);
        let manifests = index["manifests"]
            .as_array_mut()
            .expect("index.json has manifests");
        manifests.retain(|m| m["annotations"][REF_NAME] != json!(ref_name));
        manifests.push(descriptor);
        fs::write(
            &path,
            serde_json::to_vec(&index).expect("serialize index.json"),
        )
        .expect("write index.json");
    }

    /// The descriptor index.json lists under `ref_name`.
    pub fn resolve(&self, ref_name: &str) -> Descriptor {
        let index: Value = serde_json::from_slice(
            &fs::read(self.dir.join("index.json")).expect("read index.json"),
        )
        .expect("parse index.json");
        let m = index["manifests"]
            .as_array()
            .and_then(|ms| {
                ms.iter()
                    .find(|m| m["annotations"][REF_NAME] == json!(ref_name))
            })
            .unwrap_or_else(|| panic!("no {ref_name} in {}", self.dir.display()));
        Descriptor {
            media_type: m["mediaType"]
                .as_str()
                .unwrap_or(MEDIA_TYPE_MANIFEST)
                .to_string(),
            digest: m["digest"].as_str().expect("descriptor digest").to_string(),
            size: m["size"].as_u64().expect("descriptor size"),
        }
    }

    /// Packs the layout into an `oci-archive:` tarball at `path` (what [`crate::containerd::Registry::push`] takes;
    /// skopeo reads an archive without a `:REF` only when it holds exactly one image).
    pub fn write_archive(&self, path: &Path) {
        let file = fs::File::create(path).expect("create OCI archive");
        let mut b = tar::Builder::new(io::BufWriter::new(file));
        b.follow_symlinks(false);
        for name in ["oci-layout", "index.json"] {
            b.append_path_with_name(self.dir.join(name), name)
                .expect("archive layout file");
        }
        for e in fs::read_dir(self.dir.join("blobs/sha256"))
            .expect("list blobs")
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            b.append_path_with_name(e.path(), format!("blobs/sha256/{name}"))
                .expect("archive blob");
        }
        b.into_inner()
            .and_then(|mut w| w.flush())
            .expect("finish OCI archive");
    }

    /// `skopeo copy oci:LAYOUT:REF docker://DEST` inside `netns` (plain HTTP), e.g. `dest` =
    /// `127.0.0.1:5000/polis/app:v1`. skopeo compresses uncompressed layers (gzip unless `compress` says zstd) and
    /// converts formats, so the registry's digests may differ from the layout's. Returns what skopeo printed; the
    /// caller decides whether failure is expected.
    ///
    /// skopeo runs in a mount namespace of its own with an empty tmpfs over its blob-info cache
    /// (`/var/lib/containers/cache`): with the shared cache, a push reuses any variant of a layer that the same
    /// registry already holds (a zstd copy pushed earlier replaces the gzip one asked for, and then `--format v2s2`
    /// fails), so results would depend on earlier tests.
    pub fn push_with_skopeo(
        &self,
        netns: &NetNs,
        ref_name: &str,
        dest: &str,
        options: &SkopeoPush,
    ) -> Output {
        let mut cmd = netns.command("unshare");
        cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mkdir -p {SKOPEO_CACHE} && mount -t tmpfs polis-skopeo-cache {SKOPEO_CACHE} && exec \"$@\""
            ))
            .arg("sh")
            .arg("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(f) = &options.format {
            cmd.arg(format!("--format={f}"));
        }
        match options.compress {
            None => {}
            Some(Compression::None) => {
                panic!(
                    "skopeo always compresses layers it pushes to a registry: use push_exact for uncompressed ones"
                )
            }
            Some(Compression::Gzip) => {
                cmd.args(["--dest-compress", "--dest-compress-format=gzip"]);
            }
            Some(Compression::Zstd) => {
                cmd.args(["--dest-compress", "--dest-compress-format=zstd"]);
            }
        }
        if options.all {
            cmd.arg("--all");
        }
        if let Some((u, p)) = &options.credentials {
            cmd.arg(format!("--dest-creds={u}:{p}"));
        }
        cmd.arg(self.oci_ref(ref_name))
            .arg(format!("docker://{dest}"));
        run_command(cmd, self.scratch.path(), Duration::from_secs(300))
    }

    /// Uploads the image or index named `ref_name` to `dest` (`127.0.0.1:PORT/REPOSITORY:TAG`, plain HTTP, reached
    /// inside `netns`) byte for byte with the distribution API (blob upload POST + PUT, manifest PUT; an index's
    /// members by digest first), so the registry serves exactly this layout's digests and media types, uncompressed
    /// and zstd layers included. `credentials` are sent as Basic auth. Returns the pushed top descriptor; panics on
    /// any refusal.
    pub fn push_exact(
        &self,
        netns: &NetNs,
        ref_name: &str,
        dest: &str,
        credentials: Option<(&str, &str)>,
    ) -> Descriptor {
        let (registry, rest) = dest
            .split_once('/')
            .unwrap_or_else(|| panic!("{dest} is not HOST:PORT/REPOSITORY:TAG"));
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (rest, "latest"),
        };
        let top = self.resolve(ref_name);
        let auth = credentials.map(|(u, p)| {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let push = Pusher {
            layout: self,
            netns,
            base: format!("http://{registry}/v2/{repository}"),
            auth,
        };
        push.manifest(&top, tag);
        top
    }
}

struct Pusher<'a> {
    layout: &'a OciLayout,
    netns: &'a NetNs,
    base: String,
    auth: Option<String>,
}

impl Pusher<'_> {
    fn request(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &self.auth {
            h.push(("Authorization", a));
        }
        http_request(self.netns, method, url, &h, body)
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    fn blob(&self, digest: &str) {
        let url = format!("{}/blobs/{digest}", self.base);
        if self.request("HEAD", &url, &[], &[]).status == 200 {
            return;
        }
        let started = self.request("POST", &format!("{}/blobs/uploads/", self.base), &[], &[]);
        assert_eq!(started.status, 202, "start upload of {digest}: {started}");
        let location = started
            .header("location")
            .expect("upload Location")
            .to_string();
        let location = if location.starts_with('/') {
            let origin: String = self.base.split('/').take(3).collect::<Vec<_>>().join("/");
            format!("{origin}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let data = self.layout.read_blob(digest);
        let done = self.request(
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            &data,
        );
        assert_eq!(done.status, 201, "finish upload of {digest}: {done}");
    }

    /// Pushes `d`'s blobs (and, for an index, its members by digest), then `d` itself under `reference`.
    fn manifest(&self, d: &Descriptor, reference: &str) {
        let body = self.layout.read_blob(&d.digest);
        let parsed: Value = serde_json::from_slice(&body).expect("parse manifest");
        if d.media_type == MEDIA_TYPE_INDEX || d.media_type == MEDIA_TYPE_DOCKER_MANIFEST_LIST {
            for m in parsed["manifests"].as_array().into_iter().flatten() {
                let child = Descriptor {
                    media_type: m["mediaType"]
                        .as_str()
                        .unwrap_or(MEDIA_TYPE_MANIFEST)
                        .to_string(),
                    digest: m["digest"].as_str().expect("member digest").to_string(),
                    size: m["size"].as_u64().unwrap_or(0),
                };
                self.manifest(&child, &child.digest.clone());
            }
        } else {
            self.blob(parsed["config"]["digest"].as_str().expect("config digest"));
            for l in parsed["layers"].as_array().into_iter().flatten() {
                self.blob(l["digest"].as_str().expect("layer digest"));
            }
        }
        let url = format!("{}/manifests/{reference}", self.base);
        let put = self.request("PUT", &url, &[("Content-Type", &d.media_type)], &body);
        assert_eq!(put.status, 201, "PUT manifest {reference}: {put}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Writers

/// Passes writes through, counting them and computing their sha256.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// (`sha256:<hex>`, length, inner writer)
    fn finish(self) -> (String, u64, W) {
        let digest = format!("sha256:{}", hex(&self.hasher.finalize()));
        (digest, self.len, self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Compressor<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    fn new(c: Compression, w: W) -> io::Result<Compressor<W>> {
        Ok(match c {
            Compression::None => Compressor::None(w),
            Compression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Compressor::Zstd(zstd::stream::write::Encoder::new(w, 3)?),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
        }
    }
}

/// Unpacks `image_ref` of `layout` with `umoci unpack` into `bundle` (which must not exist) and returns the
/// rootfs path; for checking what a built image holds.
pub fn umoci_unpack(layout: &OciLayout, ref_name: &str, bundle: &Path) -> PathBuf {
    let mut cmd = Command::new("umoci");
    cmd.args(["unpack", "--image"])
        .arg(format!("{}:{ref_name}", layout.dir().display()))
        .arg(bundle);
    run_command(cmd, layout.scratch.path(), Duration::from_secs(120)).ok();
    bundle.join("rootfs")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    #[test]
    fn pax_record_counts_its_own_length() {
        let r = pax_record("SCHILY.xattr.user.a", b"1");
        let s = String::from_utf8(r.clone()).unwrap();
        let (len, _) = s.split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
        // 9 + 3 = 12 -> a two-digit length that pushes the record to 14? Check a boundary case.
        for n in 0..200 {
            let v = vec![b'x'; n];
            let r = pax_record("k", &v);
            let s = String::from_utf8(r.clone()).unwrap();
            assert_eq!(
                s.split_once(' ').unwrap().0.parse::<usize>().unwrap(),
                r.len()
            );
        }
    }

    #[test]
    fn random_reader_is_deterministic_whatever_the_read_sizes() {
        let whole = random_bytes(1000, 7);
        let mut r = RandomReader::new(7);
        let mut pieces = Vec::new();
        for size in [1, 3, 8, 13, 64, 911] {
            let mut b = vec![0; size];
            r.read_exact(&mut b).unwrap();
            pieces.extend(b);
        }
        assert_eq!(pieces, whole);
        assert_ne!(random_bytes(64, 8), random_bytes(64, 7));
    }

    #[test]
    fn layer_tar_reads_back_with_its_entries() {
        let layer = Layer::new()
            .dir("etc")
            .entry(
                Entry::file("etc/motd", "hi")
                    .mode(0o600)
                    .owner(7, 8)
                    .xattr("user.polis", "x"),
            )
            .symlink("etc/link", "motd")
            .hard_link("etc/hard", "etc/motd")
            .char_device("dev/null", 1, 3)
            .fifo("run/fifo")
            .whiteout("usr/old")
            .opaque_whiteout("var");
        let bytes = layer.tar_bytes();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            if path == "etc/motd" {
                assert_eq!(e.header().mode().unwrap(), 0o600);
                assert_eq!(e.header().uid().unwrap(), 7);
                let x: Vec<_> = e
                    .pax_extensions()
                    .unwrap()
                    .unwrap()
                    .map(|x| x.unwrap().key().unwrap().to_string())
                    .collect();
                assert_eq!(x, ["SCHILY.xattr.user.polis"]);
            }
            seen.push(path);
        }
        assert_eq!(
            seen,
            [
                "etc",
                "etc/motd",
                "etc/link",
                "etc/hard",
                "dev/null",
                "run/fifo",
                "usr/.wh.old",
                "var/.wh..wh..opq"
            ]
        );
    }

    #[test]
    fn hostile_entries_keep_their_raw_names() {
        let layer = Layer::new()
            .raw(tar::EntryType::Regular, "../escape", "", "boo")
            .raw(tar::EntryType::Symlink, "link", "/abs/path", "")
            .lying_size("short", 10, vec![b'A'; 1024]);
        let bytes = layer.tar_bytes();
        let first = tar::Header::from_byte_slice(&bytes[..512]);
        assert_eq!(&first.path_bytes()[..], b"../escape");
        let second = tar::Header::from_byte_slice(&bytes[1024..1536]);
        assert_eq!(&second.link_name_bytes().unwrap()[..], b"/abs/path");
        let third = tar::Header::from_byte_slice(&bytes[1536..2048]);
        assert_eq!(third.size().unwrap(), 10);
        // All 1024 data bytes follow the lying header, then the two end-of-archive blocks.
        assert_eq!(bytes.len(), 2048 + 1024 + 1024);
    }

    #[test]
    fn written_image_unpacks_with_umoci_and_inspects_with_skopeo() {
        let dir = temp_dir("polis-it-builder-");
        let layout = OciLayout::create(&dir.path().join("layout"));
        let image = Image::new()
            .layer(
                Layer::new()
                    .compression(Compression::Gzip)
                    .dir("etc")
                    .entry(
                        Entry::file("etc/motd", "hello\n")
                            .mode(0o640)
                            .owner(1000, 1001),
                    )
                    .symlink("etc/link", "motd")
                    .fifo("etc/fifo")
                    .file("etc/gone", "x"),
            )
            .layer(
                Layer::new()
                    .compression(Compression::Gzip)
                    .whiteout("etc/gone")
                    .file("etc/two", "2"),
            )
            .layer(
                Layer::new()
                    .compression(Compression::None)
                    .hard_link("etc/hard", "etc/motd"),
            )
            .entrypoint(["/bin/sh", "-c"])
            .cmd(["echo hi"])
            .env("A=1")
            .working_dir("/etc")
            .user("1000:1001")
            .label("polis.test", "builder")
            .stop_signal("SIGINT")
            .expose("8080/tcp");
        let built = layout.write_image(&image, "v1");
        assert_eq!(built.layers.len(), 3);
        assert_eq!(built.diff_ids, built.true_diff_ids);
        assert_eq!(
            built.layers[2].digest, built.diff_ids[2],
            "an uncompressed layer's digest is its diff_id"
        );
        assert_eq!(
            sha256_digest(&layout.read_blob(&built.manifest.digest)),
            built.manifest.digest
        );

        let out = run_command(
            {
                let mut c = Command::new("skopeo");
                c.args(["inspect", "--config"]).arg(layout.oci_ref("v1"));
                c
            },
            dir.path(),
            Duration::from_secs(60),
        );
        let config = out.ok().json();
        assert_eq!(config["config"]["Labels"]["polis.test"], "builder");
        assert_eq!(config["config"]["StopSignal"], "SIGINT");
        assert_eq!(config["rootfs"]["diff_ids"], json!(built.diff_ids));

        let archive = dir.path().join("image.tar");
        layout.write_archive(&archive);
        let mut c = Command::new("skopeo");
        c.args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", archive.display()));
        let raw = run_command(c, dir.path(), Duration::from_secs(60))
            .ok()
            .json();
        assert_eq!(raw["config"]["digest"], built.config.digest.as_str());

        let rootfs = umoci_unpack(&layout, "v1", &dir.path().join("bundle"));
        assert_eq!(
            fs::read_to_string(rootfs.join("etc/motd")).unwrap(),
            "hello\n"
        );
        let meta = fs::metadata(rootfs.join("etc/motd")).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o640, 1000, 1001)
        );
        assert_eq!(
            fs::read_link(rootfs.join("etc/link")).unwrap(),
            Path::new("motd")
        );
        assert!(
            fs::symlink_metadata(rootfs.join("etc/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert!(
            !rootfs.join("etc/gone").exists(),
            "the whiteout removed etc/gone"
        );
        assert_eq!(fs::read_to_string(rootfs.join("etc/two")).unwrap(), "2");
        assert_eq!(
            fs::metadata(rootfs.join("etc/hard")).unwrap().ino(),
            meta.ino()
        );
    }

    /// umoci 0.4.7 cannot unpack zstd layers ("blob is not correct mediatype"): check the blob by decoding it.
    #[test]
    fn zstd_and_uncompressed_layers_decode_to_their_diff_ids() {
        let dir = temp_dir("polis-it-builder-");
        let layout = OciLayout::create(&dir.path().join("layout"));
        let zstd_layer = Layer::new()
            .compression(Compression::Zstd)
            .file("z", "zstd");
        let plain_layer = Layer::new()
            .compression(Compression::None)
            .file("p", "plain");
        let built = layout.write_image(
            &Image::new()
                .layer(zstd_layer.clone())
                .layer(plain_layer.clone()),
            "v1",
        );
        assert_eq!(built.layers[0].media_type, MEDIA_TYPE_LAYER_ZSTD);
        let decoded =
            zstd::decode_all(layout.read_blob(&built.layers[0].digest).as_slice()).unwrap();
        assert_eq!(decoded, zstd_layer.tar_bytes());
        assert_eq!(sha256_digest(&decoded), built.diff_ids[0]);
        assert_eq!(
            layout.read_blob(&built.layers[1].digest),
            plain_layer.tar_bytes()
        );
        let corrupt =
            layout.write_image(&Image::new().layer(plain_layer).corrupt_diff_id(0), "bad");
        assert_ne!(corrupt.diff_ids[0], corrupt.true_diff_ids[0]);
        assert_eq!(corrupt.layers[0].digest, corrupt.true_diff_ids[0]);
    }

    #[test]
    fn index_lists_each_platform_with_its_own_config() {
        let dir = temp_dir("polis-it-builder-");
        let layout = OciLayout::create(&dir.path().join("layout"));
        let images = Image::per_platform(&["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]);
        let built = layout.write_index(&images, "multi");
        let index: Value = serde_json::from_slice(&layout.read_blob(&built.index.digest)).unwrap();
        assert_eq!(
            index["manifests"][1]["platform"],
            json!({"os": "linux", "architecture": "arm64", "variant": "v8"})
        );
        let arm = built.for_platform("linux/arm/v7").unwrap();
        let config: Value = serde_json::from_slice(&arm.config_json).unwrap();
        assert_eq!(config["variant"], "v7");
        assert_eq!(config["config"]["Labels"]["platform"], "linux/arm/v7");
        let distinct: std::collections::HashSet<_> =
            built.manifests.iter().map(|m| &m.manifest.digest).collect();
        assert_eq!(distinct.len(), 3);
        assert_eq!(layout.resolve("multi"), built.index);
    }
}
