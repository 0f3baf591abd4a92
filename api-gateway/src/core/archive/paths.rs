//! Paths, as Go's path/filepath and dockerd's pkg/archive treat them: cleaning, splitting, and members that would
//! leave the extraction directory.

/// Go's `filepath.Clean`: one slash between names, no `.`, each `..` eats the name before it (and is dropped at
/// the root of a rooted path); `.` for nothing.
pub fn clean(path: &[u8]) -> Vec<u8> {
    let rooted = path.first() == Some(&b'/');
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in path.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.last().is_some_and(|c| *c != b"..") {
                    parts.pop();
                } else if !rooted {
                    parts.push(b"..");
                }
            }
            c => parts.push(c),
        }
    }
    let mut out = if rooted { vec![b'/'] } else { Vec::new() };
    out.extend(parts.join(&b'/'));
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Go's `filepath.Base`: the last name, trailing slashes ignored; `/` for the root, `.` for nothing.
pub fn base(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let trimmed = {
        let mut end = path.len();
        while end > 0 && path[end - 1] == b'/' {
            end -= 1;
        }
        &path[..end]
    };
    if trimmed.is_empty() {
        return b"/".to_vec();
    }
    match trimmed.iter().rposition(|b| *b == b'/') {
        Some(i) => trimmed[i + 1..].to_vec(),
        None => trimmed.to_vec(),
    }
}

/// Go's `filepath.Dir`: the path without its last name, cleaned.
pub fn dir(path: &[u8]) -> Vec<u8> {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => clean(&path[..=i]),
        None => b".".to_vec(),
    }
}

/// The path of `path` in the container as dockerd computes it: `filepath.Join("/", path)` with a trailing `/` or
/// `/.` kept (pkg/archive `PreserveTrailingDotOrSeparator`), since they mean "the directory the name leads to".
pub fn container_path(path: &str) -> Vec<u8> {
    let original = path.as_bytes();
    let mut joined = b"/".to_vec();
    joined.extend_from_slice(original);
    let mut cleaned = clean(&joined);
    if base(&cleaned) != b"." && base(original) == b"." {
        if cleaned.last() != Some(&b'/') {
            cleaned.push(b'/');
        }
        cleaned.push(b'.');
    }
    if cleaned.last() != Some(&b'/') && original.last() == Some(&b'/') {
        cleaned.push(b'/');
    }
    cleaned
}

/// Whether a relative, cleaned name leads out of the directory it is relative to.
fn escapes(cleaned: &[u8]) -> bool {
    cleaned == b".." || cleaned.starts_with(b"../")
}

/// An archive member's name made relative to the extraction directory, as pkg/archive joins it (`filepath.Join`
/// of the directory and the cleaned name); None when it leads out of the directory.
pub fn member_name(name: &[u8]) -> Option<Vec<u8>> {
    let cleaned = clean(name);
    let relative = clean(cleaned.strip_prefix(b"/").unwrap_or(&cleaned));
    (!escapes(&relative)).then_some(relative)
}

/// pkg/archive's symlink check: the link's target taken from the member's directory (an absolute target is joined
/// to it too, as `filepath.Join` does) must stay in the extraction directory.
pub fn symlink_escapes(member: &[u8], target: &[u8]) -> bool {
    let mut joined = dir(member);
    joined.push(b'/');
    joined.extend_from_slice(target);
    escapes(&clean(&joined))
}

pub(super) fn name_str(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Joins a container directory and a relative name.
pub(super) fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    clean(&p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    /// Go's filepath tests (path/filepath `cleantests`, `basetests`, `dirtests`), a selection.
    #[test]
    fn paths_clean_as_go_cleans_them() {
        for (input, want) in [
            ("", "."),
            ("abc", "abc"),
            ("abc/def/", "abc/def"),
            ("/", "/"),
            ("//abc", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/..", "."),
            ("abc/../../..", "../.."),
            ("/abc/../..", "/"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("../../abc", "../../abc"),
            ("/../abc", "/abc"),
        ] {
            assert_eq!(s(clean(input.as_bytes())), want, "clean {input:?}");
        }
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("a/b/", "b"),
            ("/a/.", "."),
            ("x", "x"),
        ] {
            assert_eq!(s(base(input.as_bytes())), want, "base {input:?}");
        }
        for (input, want) in [("a", "."), ("/a", "/"), ("a/b/c", "a/b"), ("/a/b/", "/a/b")] {
            assert_eq!(s(dir(input.as_bytes())), want, "dir {input:?}");
        }
    }

    #[test]
    fn container_paths_keep_a_trailing_slash_or_dot() {
        for (input, want) in [
            ("etc", "/etc"),
            ("/etc/", "/etc/"),
            ("/etc/.", "/etc/."),
            ("etc/./", "/etc/./"),
            ("/", "/"),
            (".", "/."),
            ("../../etc/passwd", "/etc/passwd"),
            ("/a/../b/", "/b/"),
        ] {
            assert_eq!(s(container_path(input)), want, "{input:?}");
        }
    }

    #[test]
    fn members_never_leave_the_extraction_directory() {
        assert_eq!(member_name(b"a/b").unwrap(), b"a/b");
        assert_eq!(member_name(b"./a/../b/").unwrap(), b"b");
        assert_eq!(member_name(b"/etc/passwd").unwrap(), b"etc/passwd");
        assert_eq!(member_name(b"./").unwrap(), b".");
        assert!(member_name(b"..").is_none());
        assert!(member_name(b"../x").is_none());
        assert!(member_name(b"a/../../x").is_none());
        assert!(!symlink_escapes(b"a/link", b"../b"));
        assert!(!symlink_escapes(b"a/link", b"/etc/passwd"));
        assert!(symlink_escapes(b"a/link", b"../../b"));
        assert!(symlink_escapes(b"link", b".."));
    }
}
