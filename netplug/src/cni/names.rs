//! The names the CNI spec constrains, checked by both sides of the protocol: the attachment parameters
//! `CNI_CONTAINERID` and `CNI_IFNAME` (CNI spec "Section 2: Execution Protocol", "Parameters"; and "Section 3",
//! "Attachment Parameters"), the network `name` ("Section 1: Network configuration format") and a plugin's `type`
//! ("Plugin configuration objects").
//!
//! The plugin side ([`super::plugin`]) checks the environment and configuration it is given, the configuration
//! types ([`super::types`]) the network name, the runtime side ([`super::conflist`], [`super::runner`],
//! [`super::cache`]) what it is about to pass on or to make a cache file name of. This module depends on none of
//! them.

use crate::{Error, Result};

/// Linux's IFNAMSIZ (16) less the terminating NUL.
pub const MAX_IFNAME_LEN: usize = 15;

/// `CNI_CONTAINERID` (CNI spec "Parameters"): not empty, an alphanumeric first character, then alphanumerics,
/// `_`, `.` or `-`. Code 4.
pub fn validate_container_id(id: &str) -> Result<()> {
    let bad = |reason: &str| Error::Environment {
        var: "CNI_CONTAINERID",
        reason: format!("{id:?}: {reason}"),
    };
    let mut chars = id.chars();
    match chars.next() {
        None => return Err(bad("empty")),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return Err(bad("must start with a letter or digit"));
        }
        Some(_) => {}
    }
    if chars.any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(bad("only letters, digits, '_', '.' and '-' are allowed"));
    }
    Ok(())
}

/// `CNI_IFNAME` (CNI spec "Parameters", and the Linux rules it refers to): not empty, at most 15 bytes, not `.`
/// or `..`, no `/`, `:` or whitespace. Code 4.
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = |reason: String| Error::Environment {
        var: "CNI_IFNAME",
        reason: format!("{name:?}: {reason}"),
    };
    if name.is_empty() {
        return Err(bad("empty".into()));
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(bad(format!("longer than {MAX_IFNAME_LEN} bytes")));
    }
    if name == "." || name == ".." {
        return Err(bad("not a valid interface name".into()));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        return Err(bad("contains '/', ':' or whitespace".into()));
    }
    Ok(())
}

/// The network `name` (CNI spec "Section 1": "Must start with an alphanumeric character, optionally followed by
/// any combination of one or more alphanumeric characters, underscore, dot (.) or hyphen (-)"). Code 7.
pub fn validate_network_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() {
        return Err(Error::InvalidConfig {
            reason: "missing network name".into(),
        });
    }
    if !first_ok || chars.any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(Error::InvalidConfig {
            reason: format!(
                "network name {name:?}: must start with a letter or digit, then letters, digits, '_', '.' or '-'"
            ),
        });
    }
    Ok(())
}

/// A plugin `type` names a file in `CNI_PATH` (CNI spec "Plugin configuration objects": "Must not contain
/// characters disallowed in file paths for the system (e.g. / or \\)"). Code 7.
pub fn validate_plugin_type(plugin_type: &str) -> Result<()> {
    if plugin_type.is_empty()
        || plugin_type == "."
        || plugin_type == ".."
        || plugin_type.contains(['/', '\\', '\0'])
    {
        return Err(Error::InvalidConfig {
            reason: format!("plugin type {plugin_type:?} is not a file name"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CNI spec "Parameters": container ID and interface name rules, code 4 (the dispatcher's side of it, naming
    /// the variable, is tested in `plugin`).
    #[test]
    fn container_id_and_ifname_rules() {
        assert!(validate_ifname("abcdefghijklmno").is_ok());
        assert!(validate_container_id("3f6940ab5a.b_c-d").is_ok());
        assert!(validate_ifname("eth0.100").is_ok());
        for id in ["", "-abc", "_abc", "ab/c", "ab c"] {
            assert_eq!(
                validate_container_id(id).unwrap_err().cni_code(),
                4,
                "{id:?}"
            );
        }
        for name in [
            "",
            "abcdefghijklmnop",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
        ] {
            assert_eq!(validate_ifname(name).unwrap_err().cni_code(), 4, "{name:?}");
        }
    }

    /// CNI spec "Section 1": the network name and the plugin type, code 7.
    #[test]
    fn network_name_and_plugin_type_rules() {
        assert!(validate_network_name("polis-net_1.a").is_ok());
        for name in ["", "bad name", "-net", "a/b"] {
            assert_eq!(
                validate_network_name(name).unwrap_err().cni_code(),
                7,
                "{name:?}"
            );
        }
        assert!(validate_plugin_type("polis-netplug").is_ok());
        for t in ["", ".", "..", "../x", "a\\b", "a\0b"] {
            assert_eq!(validate_plugin_type(t).unwrap_err().cni_code(), 7, "{t:?}");
        }
    }
}
