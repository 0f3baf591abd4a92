//! Container IDs: what runc accepts, and nothing that could name a path outside the state root.

use crate::error::{Error, Result};

/// The longest ID accepted, in bytes: an ID is a file name in the state root, and a file name
/// has at most NAME_MAX (255) bytes.
pub const MAX_ID_LEN: usize = 255;

/// Checks an ID as runc does: letters, digits and `_ + - .`, not `.` or `..`, at most 255 bytes
/// (runc finds that limit only when the file system refuses the name).
pub fn validate_container_id(id: &str) -> Result<()> {
    let invalid = |reason| {
        Err(Error::InvalidId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return invalid("it is empty");
    }
    if id == "." || id == ".." {
        return invalid("it names a directory");
    }
    if id.len() > MAX_ID_LEN {
        return invalid("it is longer than 255 bytes, the longest file name (NAME_MAX)");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return invalid("only letters, digits, '_', '+', '-' and '.' are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_runc_accepts() {
        for id in ["a", "abc-123", "A_b+c.d", "x".repeat(255).as_str()] {
            assert!(validate_container_id(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_paths_and_odd_names() {
        let long = "x".repeat(256);
        for id in [
            "",
            ".",
            "..",
            "a/b",
            "/abs",
            "../up",
            "sp ace",
            "nul\0",
            long.as_str(),
        ] {
            let err = validate_container_id(id).unwrap_err().to_string();
            assert!(err.contains("invalid container id"), "{id}: {err}");
        }
    }
}
