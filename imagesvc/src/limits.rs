//! Bounds on what unpacking and downloading may write, so that a hostile or broken image (a 3 MB gzip layer that
//! expands to gigabytes, a manifest declaring a huge blob) stops with an error instead of filling the disk:
//!
//! - uncompressed bytes per layer (`--max-layer-size`, default [`DEFAULT_MAX_LAYER_SIZE`]),
//! - uncompressed bytes per image (`--max-image-size`, default [`DEFAULT_MAX_IMAGE_SIZE`]): what one pull or bundle
//!   unpacks for one image; layers already unpacked in the store cost nothing and do not count,
//! - a reserve of free space on the store's file system (`--min-free-space`, default [`DEFAULT_MIN_FREE_SPACE`]),
//!   checked before a download and every [`SPACE_CHECK_INTERVAL`] bytes while a download or an unpacking writes.
//!
//! 0 turns a limit off. Crossing one is [`Error::Limit`], naming the layer, the limit and the flag that changes it.

use crate::error::{Error, Result};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Uncompressed bytes one layer may unpack to. The largest layers of public images (CUDA and ML frameworks) are a
/// few GiB; this is several times that.
pub const DEFAULT_MAX_LAYER_SIZE: u64 = 16 << 30;
/// Uncompressed bytes one image may unpack to. The largest public images are 20-30 GiB unpacked.
pub const DEFAULT_MAX_IMAGE_SIZE: u64 = 64 << 30;
/// Bytes kept free on the store's file system: room for the rest of the host (logs, containers' writes, the
/// store's own index) when a pull would otherwise fill it.
pub const DEFAULT_MIN_FREE_SPACE: u64 = 1 << 30;
/// How often (in bytes written) the free space is looked at again.
pub const SPACE_CHECK_INTERVAL: u64 = 1 << 20;

pub const LAYER_FLAG: &str = "--max-layer-size";
pub const IMAGE_FLAG: &str = "--max-image-size";
pub const FREE_FLAG: &str = "--min-free-space";

/// The limits of one store (0: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_layer_size: u64,
    pub max_image_size: u64,
    pub min_free_space: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_layer_size: DEFAULT_MAX_LAYER_SIZE,
            max_image_size: DEFAULT_MAX_IMAGE_SIZE,
            min_free_space: DEFAULT_MIN_FREE_SPACE,
        }
    }
}

impl Limits {
    /// No limit at all (library callers that bound things themselves, tests).
    pub fn none() -> Limits {
        Limits {
            max_layer_size: 0,
            max_image_size: 0,
            min_free_space: 0,
        }
    }
}

/// A size as a user writes it: bytes, or a number with K, M, G or T (powers of 1024; `KiB`, `MB`, `g` and the
/// like mean the same), e.g. `512M`, `16GiB`, `0`.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let bad = || {
        format!(
            "{text:?} is not a size: give bytes, or a number with K, M, G or T (e.g. 512M, 16G)"
        )
    };
    let number: u64 = number.parse().map_err(|_| bad())?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `n` bytes in the largest binary unit it reaches: whole when it divides (`16 GiB`), else to a tenth (`1.5 MiB`).
pub fn format_size(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n >= 1 << shift {
            return if n % (1 << shift) == 0 {
                format!("{} {unit}", n >> shift)
            } else {
                format!("{:.1} {unit}", n as f64 / (1u64 << shift) as f64)
            };
        }
    }
    format!("{n} bytes")
}

/// Bytes an unprivileged writer may still use on the file system of `path` (statvfs(2) f_bavail).
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    // The field types differ between targets (u32 on some 32-bit ones).
    #[allow(clippy::unnecessary_cast)]
    let (blocks, size) = (st.blocks_available() as u64, st.fragment_size() as u64);
    Ok(blocks.saturating_mul(size))
}

/// Error::Limit unless writing `more` bytes still leaves the reserve free on the file system of `path`.
pub fn check_free_space(limits: &Limits, path: &Path, layer: &str, more: u64) -> Result<()> {
    if limits.min_free_space == 0 {
        return Ok(());
    }
    let free = free_space(path).map_err(crate::error::io("measuring the free space of", path))?;
    if free >= limits.min_free_space.saturating_add(more) {
        return Ok(());
    }
    let what = if more > 0 {
        format!(
            "the file system of the store ({}) has {} free; writing the {} this layer still needs would leave less \
             than the {} kept free",
            path.display(),
            format_size(free),
            format_size(more),
            format_size(limits.min_free_space)
        )
    } else {
        format!(
            "the file system of the store ({}) has only {} free, less than the {} kept free",
            path.display(),
            format_size(free),
            format_size(limits.min_free_space)
        )
    };
    Err(Error::Limit {
        layer: layer.to_string(),
        what,
        flag: FREE_FLAG,
        hint: "make room, or lower the reserve with",
    })
}

/// The limits of a store and the count of what the image being unpacked has unpacked so far.
#[derive(Debug, Default)]
pub struct Budget {
    limits: Limits,
    image_used: AtomicU64,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget {
            limits,
            image_used: AtomicU64::new(0),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Starts counting a new image: called by a pull and a bundle before their first layer.
    pub fn start_image(&self) {
        self.image_used.store(0, Ordering::Relaxed);
    }

    /// Uncompressed bytes of the current image unpacked so far (layers that finished).
    pub fn image_used(&self) -> u64 {
        self.image_used.load(Ordering::Relaxed)
    }

    /// The meter of one layer unpacked into `dir`.
    pub fn meter<'a>(&'a self, layer: &'a str, dir: &'a Path) -> Meter<'a> {
        Meter {
            budget: self,
            layer,
            dir,
            used: 0,
            next_space_check: 0,
        }
    }
}

/// Counts the uncompressed bytes of one layer as they are unpacked and stops at a limit.
pub struct Meter<'a> {
    budget: &'a Budget,
    layer: &'a str,
    dir: &'a Path,
    used: u64,
    next_space_check: u64,
}

impl Meter<'_> {
    /// Adds `n` bytes; Error::Limit when the layer or the image passes its limit, or the free space its reserve.
    pub fn add(&mut self, n: u64) -> Result<()> {
        self.used = self.used.saturating_add(n);
        let limits = &self.budget.limits;
        if limits.max_layer_size > 0 && self.used > limits.max_layer_size {
            return Err(Error::Limit {
                layer: self.layer.to_string(),
                what: format!(
                    "it unpacks to more than {}, the limit of uncompressed bytes per layer",
                    format_size(limits.max_layer_size)
                ),
                flag: LAYER_FLAG,
                hint: "raise the limit with",
            });
        }
        let image = self.budget.image_used().saturating_add(self.used);
        if limits.max_image_size > 0 && image > limits.max_image_size {
            return Err(Error::Limit {
                layer: self.layer.to_string(),
                what: format!(
                    "with it the image unpacks to more than {}, the limit of uncompressed bytes per image",
                    format_size(limits.max_image_size)
                ),
                flag: IMAGE_FLAG,
                hint: "raise the limit with",
            });
        }
        if self.used >= self.next_space_check {
            // The directory's parent names the place (the store's layers/), not a temporary directory.
            let place = self.dir.parent().filter(|p| !p.as_os_str().is_empty());
            check_free_space(limits, place.unwrap_or(self.dir), self.layer, 0)?;
            self.next_space_check = self.used + SPACE_CHECK_INTERVAL;
        }
        Ok(())
    }

    /// The layer is unpacked: its bytes count for the image from now on.
    pub fn commit(self) {
        self.budget
            .image_used
            .fetch_add(self.used, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("16GiB"), Ok(16 << 30));
        assert_eq!(parse_size("2 g"), Ok(2 << 30));
        assert_eq!(parse_size("1kb"), Ok(1024));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "M", "1.5G", "-1", "12X", "99999999999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(16 << 30), "16 GiB");
        assert_eq!(format_size(1536 << 10), "1.5 MiB");
        assert_eq!(format_size(3 << 10), "3 KiB");
        assert_eq!(format_size(1000), "1000 bytes");
        assert_eq!(format_size(0), "0 bytes");
    }

    #[test]
    fn a_meter_stops_at_the_layer_and_the_image_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let budget = Budget::new(Limits {
            max_layer_size: 100,
            max_image_size: 150,
            min_free_space: 0,
        });
        budget.start_image();
        let mut m = budget.meter("sha256:aa", tmp.path());
        m.add(100).unwrap();
        let e = m.add(1).unwrap_err().to_string();
        assert!(
            e.contains("sha256:aa") && e.contains("per layer") && e.contains(LAYER_FLAG),
            "{e}"
        );
        let mut m = budget.meter("sha256:bb", tmp.path());
        m.add(90).unwrap();
        m.commit();
        assert_eq!(budget.image_used(), 90);
        let mut m = budget.meter("sha256:cc", tmp.path());
        m.add(60).unwrap();
        let e = m.add(1).unwrap_err().to_string();
        assert!(
            e.contains("sha256:cc") && e.contains("per image") && e.contains(IMAGE_FLAG),
            "{e}"
        );
        budget.start_image();
        assert_eq!(budget.image_used(), 0);
    }

    /// A layer of zeros: a small gzip blob that unpacks to `mib` MiB.
    fn zeros_layer(mib: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let data = vec![0u8; mib << 20];
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, "zeros", &data[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    /// Unpacking stops at the limit with Error::Limit naming the layer and the flag, whatever the compression
    /// ratio; the layer counts for the image only when it is whole.
    #[test]
    fn unpacking_stops_at_a_limit() {
        use crate::unpack::{Compression, unpack_layer_within};
        let tmp = tempfile::tempdir().unwrap();
        let blob = zeros_layer(4);
        assert!(blob.len() < 64 << 10, "a bomb: {} bytes", blob.len());
        let unpack = |budget: &Budget, name: &str| {
            let dir = tmp.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            unpack_layer_within("sha256:ee", &blob[..], Compression::Gzip, &dir, &[], budget)
        };
        let layer_limit = Budget::new(Limits {
            max_layer_size: 1 << 20,
            ..Limits::none()
        });
        match unpack(&layer_limit, "a") {
            Err(Error::Limit { layer, flag, .. }) => {
                assert_eq!((layer.as_str(), flag), ("sha256:ee", LAYER_FLAG))
            }
            other => panic!("{other:?}"),
        }
        let image_limit = Budget::new(Limits {
            max_image_size: 6 << 20,
            ..Limits::none()
        });
        image_limit.start_image();
        let whole = unpack(&image_limit, "b").unwrap();
        assert_eq!(image_limit.image_used(), whole.size);
        match unpack(&image_limit, "c") {
            Err(Error::Limit { flag, .. }) => assert_eq!(flag, IMAGE_FLAG),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            image_limit.image_used(),
            whole.size,
            "a stopped layer does not count"
        );
        let free = free_space(tmp.path()).unwrap();
        let reserve = Budget::new(Limits {
            min_free_space: free + (1 << 40),
            ..Limits::none()
        });
        match unpack(&reserve, "d") {
            Err(Error::Limit { flag, .. }) => assert_eq!(flag, FREE_FLAG),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_free_space_reserve_is_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let free = free_space(tmp.path()).unwrap();
        let limits = Limits {
            min_free_space: free.saturating_add(1 << 40),
            ..Limits::none()
        };
        let e = check_free_space(&limits, tmp.path(), "sha256:dd", 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sha256:dd") && e.contains(FREE_FLAG) && e.contains("kept free"),
            "{e}"
        );
        let budget = Budget::new(limits);
        assert!(budget.meter("sha256:dd", tmp.path()).add(1).is_err());
        check_free_space(&Limits::none(), tmp.path(), "sha256:dd", u64::MAX).unwrap();
    }
}
