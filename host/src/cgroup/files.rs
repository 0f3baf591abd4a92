//! Reading a cgroup directory: a file the kernel does not provide is `None`, not an error; a file that exists but
//! cannot be read, or a single-value file that holds no number, is one.

use std::io::ErrorKind;
use std::path::Path;

use super::error::{Error, Result};
use super::parse;

/// The content of `dir/name`, or `None` when there is no such file.
pub fn read(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    // Not fs::read_to_string: it asks for the size first, which cgroup files do not have (they read as 0 bytes
    // long), so that is a system call for nothing on every file of every scrape.
    let read = std::fs::File::open(&path).and_then(|mut f| {
        let mut text = String::with_capacity(512);
        std::io::Read::read_to_string(&mut f, &mut text).map(|_| text)
    });
    match read {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::io("read", path, source)),
    }
}

/// A single-value file (`max` reads as [`super::UNLIMITED`]), or `None` when there is no such file.
pub fn read_u64(dir: &Path, name: &str) -> Result<Option<u64>> {
    let Some(text) = read(dir, name)? else {
        return Ok(None);
    };
    parse::u64_or_max(&text)
        .map(Some)
        .ok_or_else(|| Error::NotANumber {
            path: dir.join(name),
            content: text.trim().to_owned(),
        })
}

/// The names of the files in a cgroup directory (none if the directory is gone).
pub fn names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::io("list", dir, source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::io("list", dir, source))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_none_and_bad_numbers_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pids.current"), "three\n").unwrap();
        std::fs::write(dir.path().join("pids.max"), "max\n").unwrap();
        assert!(read(dir.path(), "memory.stat").unwrap().is_none());
        assert_eq!(read_u64(dir.path(), "pids.max").unwrap(), Some(u64::MAX));
        match read_u64(dir.path(), "pids.current") {
            Err(Error::NotANumber { path, content }) => {
                assert_eq!(path, dir.path().join("pids.current"));
                assert_eq!(content, "three");
            }
            other => panic!("expected NotANumber, got {other:?}"),
        }
        let mut listed = names(dir.path()).unwrap();
        listed.sort();
        assert_eq!(listed, ["pids.current", "pids.max"]);
        assert!(names(&dir.path().join("gone")).unwrap().is_empty());
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where a file is expected: it exists, but reading it fails.
        std::fs::create_dir(dir.path().join("memory.stat")).unwrap();
        let err = read(dir.path(), "memory.stat").unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("read "), "{message}");
        assert!(message.contains("memory.stat"), "{message}");
    }
}
