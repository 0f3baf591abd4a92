//! /proc/PID/mountinfo (proc(5)): one parser for every binary, with the kernel's octal escapes decoded.
//!
//! A line reads `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`: mount ID,
//! parent ID, device, root of the mount within its file system, mount point, per-mount options, optional fields
//! up to `-`, file system type, source and super-block options. The kernel writes space, tab, newline and
//! backslash in the root, the mount point and the source as `\040`, `\011`, `\012` and `\134`.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One mount, as one line of mountinfo describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    /// The directory of its file system that is mounted (`/` for the whole file system).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `nosuid`, `relatime`, ...).
    pub options: Vec<String>,
    /// Propagation and other optional fields (`shared:1`, `master:2`, `unbindable`).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Super-block options (for a cgroup v1 hierarchy, its controllers: `rw,cpu,cpuacct`).
    pub super_options: Vec<String>,
}

impl Mount {
    /// Parses one line; None for a line that is not mountinfo.
    pub fn parse(line: &str) -> Option<Mount> {
        let (head, tail) = line.split_once(" - ")?;
        let mut head = head.split(' ');
        let id = head.next()?.parse().ok()?;
        let parent = head.next()?.parse().ok()?;
        let _device = head.next()?;
        let root = PathBuf::from(unescape(head.next()?));
        let mount_point = PathBuf::from(unescape(head.next()?));
        let options = split_options(head.next()?);
        let optional = head.filter(|f| !f.is_empty()).map(str::to_string).collect();
        let mut tail = tail.splitn(3, ' ');
        let fstype = tail.next()?.to_string();
        let source = unescape(tail.next().unwrap_or_default());
        let super_options = split_options(tail.next().unwrap_or_default());
        Some(Mount {
            id,
            parent,
            root,
            mount_point,
            options,
            optional,
            fstype,
            source,
            super_options,
        })
    }

    /// Whether a per-mount option (`ro`, `nosuid`, ...) is set.
    pub fn has_option(&self, option: &str) -> bool {
        self.options.iter().any(|o| o == option)
    }
}

/// Options split on `,` and then decoded (the kernel escapes a comma inside an option, such as a path in
/// overlayfs's `lowerdir=`, so splitting comes first).
fn split_options(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter(|o| !o.is_empty())
        .map(unescape)
        .collect()
}

impl Mount {
    /// The value of a super-block option (`lowerdir` of an overlayfs gives `/a:/b`).
    pub fn super_option(&self, name: &str) -> Option<&str> {
        self.super_options
            .iter()
            .find_map(|o| o.strip_prefix(name)?.strip_prefix('='))
    }
}

/// Every mount of a mountinfo text, in its order (parents before children).
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(Mount::parse).collect()
}

/// The mounts of process `pid` (None: this process), as that process sees them.
pub fn read(pid: Option<i32>) -> Result<Vec<Mount>> {
    let path = match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/mountinfo")),
        None => PathBuf::from("/proc/self/mountinfo"),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    Ok(parse(&text))
}

/// The mounts at `dir` or below it.
pub fn at_or_below<'a>(mounts: &'a [Mount], dir: &'a Path) -> impl Iterator<Item = &'a Mount> + 'a {
    mounts
        .iter()
        .filter(move |m| m.mount_point.starts_with(dir))
}

/// Decodes the kernel's `\ooo` escapes; anything else stays as it is.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], code) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_a_line() {
        let m = Mount::parse(
            "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:4 - ext3 /dev/root rw,errors=continue",
        )
        .unwrap();
        assert_eq!((m.id, m.parent), (36, 35));
        assert_eq!(m.root, PathBuf::from("/mnt1"));
        assert_eq!(m.mount_point, PathBuf::from("/mnt2"));
        assert_eq!(m.options, ["rw", "noatime"]);
        assert_eq!(m.optional, ["master:1", "shared:4"]);
        assert_eq!(
            (m.fstype.as_str(), m.source.as_str()),
            ("ext3", "/dev/root")
        );
        assert_eq!(m.super_options, ["rw", "errors=continue"]);
        assert!(m.has_option("noatime") && !m.has_option("ro"));
    }

    #[test]
    fn the_kernels_escapes_are_decoded() {
        let m = Mount::parse(
            r"40 1 0:5 /a\134b /mnt/with\040space\011tab\012nl rw - tmpfs my\040src rw",
        )
        .unwrap();
        assert_eq!(m.root, PathBuf::from(r"/a\b"));
        assert_eq!(m.mount_point, PathBuf::from("/mnt/with space\ttab\nnl"));
        assert_eq!(m.source, "my src");
        assert_eq!(unescape(r"/trailing\"), r"/trailing\");
        assert_eq!(unescape(r"/not\9999"), r"/not\9999");
    }

    #[test]
    fn overlay_options_are_split_then_decoded() {
        let m = Mount::parse(
            r"50 1 0:40 / /b/root\040fs rw - overlay overlay rw,lowerdir=/l/a\054x:/l/b,upperdir=/b/up",
        )
        .unwrap();
        assert_eq!(m.mount_point, PathBuf::from("/b/root fs"));
        assert_eq!(m.super_option("lowerdir"), Some("/l/a,x:/l/b"));
        assert_eq!(m.super_option("upperdir"), Some("/b/up"));
        assert_eq!(m.super_option("workdir"), None);
    }

    #[test]
    fn no_optional_fields_and_junk_lines() {
        let text = "22 27 0:21 / /proc rw,relatime - proc proc rw\nnot mountinfo\n\n";
        let mounts = parse(text);
        assert_eq!(mounts.len(), 1);
        assert!(mounts[0].optional.is_empty());
        let sys = Path::new("/proc");
        assert_eq!(at_or_below(&mounts, sys).count(), 1);
    }

    #[test]
    fn reads_this_process() {
        let mounts = read(None).unwrap();
        assert!(mounts.iter().any(|m| m.mount_point == Path::new("/")));
    }
}
