//! Container IDs: what runc accepts, and nothing that could name a path outside the state root.

use crate::error::{Error, Result};

/// The longest ID accepted, in bytes. Longer IDs would overflow socket paths and file names.
pub const MAX_ID_LEN: usize = 1024;

/// Checks an ID as runc does: letters, digits and `_ + - .`, not `.` or `..`, at most 1024 bytes.
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
        return invalid("it is longer than 1024 bytes");
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
        for id in ["a", "abc-123", "A_b+c.d", "x".repeat(1024).as_str()] {
            assert!(validate_container_id(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_paths_and_odd_names() {
        let long = "x".repeat(1025);
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
