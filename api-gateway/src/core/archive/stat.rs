//! The stat of a path as Docker's `X-Docker-Container-Path-Stat` header carries it: Go's file modes and times.

use super::*;

// Go's os.FileMode bits, which the stat header carries (dockerd marshals an os.FileMode).
const GO_MODE_DIR: u32 = 1 << 31;
const GO_MODE_SYMLINK: u32 = 1 << 27;
const GO_MODE_DEVICE: u32 = 1 << 26;
const GO_MODE_NAMED_PIPE: u32 = 1 << 25;
const GO_MODE_SOCKET: u32 = 1 << 24;
const GO_MODE_SETUID: u32 = 1 << 23;
const GO_MODE_SETGID: u32 = 1 << 22;
const GO_MODE_CHAR_DEVICE: u32 = 1 << 21;
const GO_MODE_STICKY: u32 = 1 << 20;

/// dockerd's `ContainerPathStat`, the `X-Docker-Container-Path-Stat` header (base64 of its JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// Go's os.FileMode.
    pub mode: u32,
    /// RFC 3339 with nanoseconds, as Go marshals a time.Time.
    pub mtime: String,
    /// The path a symlink finally leads to in the container, resolved as far as it goes.
    #[serde(rename = "linkTarget")]
    pub link_target: String,
}

impl PathStat {
    pub fn is_dir(&self) -> bool {
        self.mode & GO_MODE_DIR != 0
    }

    /// The header's value.
    pub fn header_value(&self) -> String {
        use base64::Engine;
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::STANDARD.encode(json)
    }
}

/// Go's os.FileMode of a Unix mode (`fs.FileMode` as os.Lstat fills it).
pub fn go_file_mode(st_mode: u32) -> u32 {
    let mut mode = st_mode & 0o777;
    match st_mode & libc::S_IFMT {
        libc::S_IFBLK => mode |= GO_MODE_DEVICE,
        libc::S_IFCHR => mode |= GO_MODE_DEVICE | GO_MODE_CHAR_DEVICE,
        libc::S_IFDIR => mode |= GO_MODE_DIR,
        libc::S_IFIFO => mode |= GO_MODE_NAMED_PIPE,
        libc::S_IFLNK => mode |= GO_MODE_SYMLINK,
        libc::S_IFSOCK => mode |= GO_MODE_SOCKET,
        _ => {}
    }
    if st_mode & libc::S_ISUID != 0 {
        mode |= GO_MODE_SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        mode |= GO_MODE_SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        mode |= GO_MODE_STICKY;
    }
    mode
}

/// Go's RFC3339Nano of a UTC time: the fraction without trailing zeros, none when zero.
pub fn go_time(secs: i64, nanos: u32) -> String {
    let t = chrono::DateTime::from_timestamp(secs, nanos.min(999_999_999)).unwrap_or_default();
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        s.push('.');
        s.push_str(fraction.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_header_is_dockers_json_in_base64() {
        let stat = PathStat {
            name: "hostname".into(),
            size: 13,
            mode: go_file_mode(libc::S_IFREG | 0o644),
            mtime: go_time(1_700_000_000, 120_000_000),
            link_target: String::new(),
        };
        use base64::Engine;
        let json = base64::engine::general_purpose::STANDARD
            .decode(stat.header_value())
            .unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"name":"hostname","size":13,"mode":420,"mtime":"2023-11-14T22:13:20.12Z","linkTarget":""}"#
        );
        assert_eq!(go_time(0, 0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn modes_are_gos_file_modes() {
        assert_eq!(go_file_mode(libc::S_IFDIR | 0o755), (1 << 31) | 0o755);
        assert_eq!(go_file_mode(libc::S_IFLNK | 0o777), (1 << 27) | 0o777);
        assert_eq!(
            go_file_mode(libc::S_IFCHR | 0o666),
            (1 << 26) | (1 << 21) | 0o666
        );
        assert_eq!(
            go_file_mode(libc::S_IFREG | libc::S_ISUID | 0o755),
            (1 << 23) | 0o755
        );
        assert_eq!(
            go_file_mode(libc::S_IFDIR | libc::S_ISVTX | 0o777),
            (1 << 31) | (1 << 20) | 0o777
        );
    }
}
