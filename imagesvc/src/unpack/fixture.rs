//! Fixtures of the unpack tests. Each test builds layers with the tar crate (raw header bytes where tar's own
//! checks would refuse a hostile name), unpacks them under a temporary directory beside a sentinel file, and looks
//! at the result as a user would. The clauses cited are from the OCI image-spec, layer.md.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use super::beneath::Node;
use super::{Compression, UnpackedLayer, unpack_layer};
use crate::error::{Error, Result};

pub(super) const LAYER: &str =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const SENTINEL: &[u8] = b"sentinel: must never change";

/// tmp/layer (the directory unpacked into) and tmp/sentinel.
pub(super) struct Fixture {
    tmp: tempfile::TempDir,
    pub(super) dir: PathBuf,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layer");
        fs::create_dir(&dir).unwrap();
        fs::write(tmp.path().join("sentinel"), SENTINEL).unwrap();
        Fixture { tmp, dir }
    }

    pub(super) fn unpack(&self, tar: &[u8]) -> Result<UnpackedLayer> {
        unpack_layer(LAYER, tar, Compression::None, &self.dir, &[])
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Nothing was written beside `layer`: the sentinel is unchanged and nothing new appeared.
    pub(super) fn assert_contained(&self) {
        let names: BTreeSet<String> = fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["layer".to_string(), "sentinel".to_string()])
        );
        assert_eq!(
            fs::read(self.tmp.path().join("sentinel")).unwrap(),
            SENTINEL
        );
    }
}

pub(super) fn header(kind: EntryType, mode: u32, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_500_000_000);
    h.set_size(size);
    h
}

/// Appends entries to an in-memory archive.
pub(super) struct Layer(pub(super) tar::Builder<Vec<u8>>);

impl Layer {
    pub(super) fn new() -> Layer {
        Layer(tar::Builder::new(Vec::new()))
    }

    pub(super) fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        let mut h = header(EntryType::Regular, mode, data.len() as u64);
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }

    pub(super) fn file_owned(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = header(EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.0.append_data(&mut h, name, data).unwrap();
        self
    }

    pub(super) fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let mut h = header(EntryType::Directory, mode, 0);
        self.0.append_data(&mut h, name, io::empty()).unwrap();
        self
    }

    pub(super) fn dir_owned(
        &mut self,
        name: &str,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> &mut Self {
        let mut h = header(EntryType::Directory, mode, 0);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(mtime);
        self.0.append_data(&mut h, name, io::empty()).unwrap();
        self
    }

    pub(super) fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = header(EntryType::Symlink, 0o777, 0);
        self.0.append_link(&mut h, name, target).unwrap();
        self
    }

    pub(super) fn hard_link(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = header(EntryType::Link, 0o644, 0);
        self.0.append_link(&mut h, name, target).unwrap();
        self
    }

    pub(super) fn device(
        &mut self,
        kind: EntryType,
        name: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> &mut Self {
        let mut h = header(kind, mode, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.0.append_data(&mut h, name, io::empty()).unwrap();
        self
    }

    pub(super) fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.0
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }

    /// An entry whose name (and link name) bytes go straight into the header, as a hostile archive would
    /// write them: tar's own set_path refuses `..` and absolute names.
    pub(super) fn raw(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link: &[u8],
        data: &[u8],
    ) -> &mut Self {
        let mut h = header(kind, 0o644, data.len() as u64);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    pub(super) fn bytes(&mut self, raw: &[u8]) -> &mut Self {
        self.0.get_mut().extend_from_slice(raw);
        self
    }

    pub(super) fn finish(&mut self) -> Vec<u8> {
        let builder = std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()));
        builder.into_inner().unwrap()
    }
}

pub(super) fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    match Node::Path(p).get_xattr(&CString::new(name).unwrap()) {
        Err(Errno::ENOENT) => None,
        r => r.unwrap(),
    }
}

pub(super) fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub(super) fn assert_hostile(result: Result<UnpackedLayer>, entry: &str) {
    match result {
        Err(Error::HostileLayer {
            layer,
            entry: e,
            reason,
        }) => {
            assert_eq!(layer, LAYER);
            assert!(
                e.contains(entry),
                "entry {e:?} should name {entry:?} ({reason})"
            );
        }
        other => panic!("expected HostileLayer for {entry:?}, got {other:?}"),
    }
}

pub(super) fn assert_format(result: Result<UnpackedLayer>, mention: &str) -> String {
    match result {
        Err(err @ Error::LayerFormat { .. }) => {
            let text = err.to_string();
            assert!(text.contains(LAYER), "{text}");
            assert!(
                text.contains(mention),
                "{text:?} should mention {mention:?}"
            );
            text
        }
        other => panic!("expected LayerFormat mentioning {mention:?}, got {other:?}"),
    }
}

/// Unmounts (lazily) when dropped, whatever the test's outcome.
pub(super) struct Mounted(pub(super) PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

pub(super) fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

pub(super) fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

pub(super) fn is_opaque(path: &Path) -> bool {
    xattr(path, "trusted.overlay.opaque").as_deref() == Some(&b"y"[..])
}

/// Mounts `layers` (top first) read-only as overlayfs lower directories.
pub(super) fn mount_merged(layers: &[&Path]) -> (tempfile::TempDir, Mounted) {
    let merged = tempfile::tempdir().unwrap();
    let lowers: Vec<String> = layers.iter().map(|p| p.display().to_string()).collect();
    let options = format!("lowerdir={}", lowers.join(":"));
    nix::mount::mount(
        Some("overlay"),
        merged.path(),
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(options.as_str()),
    )
    .unwrap();
    let mounted = Mounted(merged.path().to_path_buf());
    (merged, mounted)
}
