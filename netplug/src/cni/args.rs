//! `CNI_ARGS` (CNI spec "Parameters"): "Extra arguments passed in by the user at invocation time. Alphanumeric
//! key-value pairs separated by semicolons; for example, "FOO=BAR;ABC=123"".
//!
//! Unknown keys are refused unless `IgnoreUnknown` is true (`1` or `true`), as in the reference plugins: runtimes
//! such as containerd and CRI-O pass `IgnoreUnknown=1;K8S_POD_NAMESPACE=...;K8S_POD_NAME=...` to every plugin.

use crate::{Error, Result};

/// The key that makes unknown keys acceptable.
pub const IGNORE_UNKNOWN: &str = "IgnoreUnknown";

/// Parsed `CNI_ARGS`, in their order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pairs: Vec<(String, String)>,
}

impl CniArgs {
    /// Parses `K=V;K2=V2`. An empty string has no pairs; empty segments (a trailing `;`) are skipped. Each pair
    /// needs a non-empty key and exactly one `=`; anything else is code 4 naming `CNI_ARGS`.
    pub fn parse(s: &str) -> Result<CniArgs> {
        let mut pairs = Vec::new();
        for segment in s.split(';').filter(|seg| !seg.is_empty()) {
            let mut parts = segment.split('=');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(k), Some(v), None) if !k.is_empty() => {
                    pairs.push((k.to_string(), v.to_string()))
                }
                _ => {
                    return Err(Error::Environment {
                        var: "CNI_ARGS",
                        reason: format!("invalid pair {segment:?}: expected KEY=VALUE"),
                    });
                }
            }
        }
        Ok(CniArgs { pairs })
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `IgnoreUnknown` is set: `1`/`true` (any case) yes, `0`/`false`/absent no, anything else code 4.
    pub fn ignore_unknown(&self) -> Result<bool> {
        match self.get(IGNORE_UNKNOWN) {
            None => Ok(false),
            Some(v) if v == "1" || v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v == "0" || v.eq_ignore_ascii_case("false") => Ok(false),
            Some(v) => Err(Error::Environment {
                var: "CNI_ARGS",
                reason: format!("{IGNORE_UNKNOWN}={v:?} is not a boolean (1, 0, true, false)"),
            }),
        }
    }

    /// Refuses keys outside `known` (and `IgnoreUnknown`) unless `IgnoreUnknown` is true: code 4.
    pub fn check_known(&self, known: &[&str]) -> Result<()> {
        if self.ignore_unknown()? {
            return Ok(());
        }
        let unknown: Vec<&str> = self
            .pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| *k != IGNORE_UNKNOWN && !known.contains(k))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(Error::Environment {
                var: "CNI_ARGS",
                reason: format!("unknown keys {unknown:?} (set {IGNORE_UNKNOWN}=1 to ignore them)"),
            })
        }
    }

    /// Back to `K=V;K2=V2`.
    pub fn to_env_string(&self) -> String {
        self.pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CNI spec "Parameters", `CNI_ARGS`: "FOO=BAR;ABC=123".
    #[test]
    fn parses_pairs() {
        let a = CniArgs::parse("FOO=BAR;ABC=123;").unwrap();
        assert_eq!(a.get("FOO"), Some("BAR"));
        assert_eq!(a.get("ABC"), Some("123"));
        assert_eq!(a.get("X"), None);
        assert_eq!(a.to_env_string(), "FOO=BAR;ABC=123");
        assert!(CniArgs::parse("").unwrap().pairs.is_empty());
        assert_eq!(CniArgs::parse("K=").unwrap().get("K"), Some(""));
    }

    /// CNI spec "Error codes" 4: a malformed `CNI_ARGS` names the variable.
    #[test]
    fn malformed_pairs_are_code_4() {
        for bad in ["FOO", "=x", "A=b=c", "A=1;;B"] {
            match CniArgs::parse(bad) {
                Err(
                    e @ Error::Environment {
                        var: "CNI_ARGS", ..
                    },
                ) => assert_eq!(e.cni_code(), 4),
                // "A=1;;B": the empty segment is skipped, "B" is not.
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    /// IgnoreUnknown semantics (reference plugins' `types.LoadArgs`, used by containerd and CRI-O).
    #[test]
    fn unknown_keys_need_ignore_unknown() {
        let a = CniArgs::parse("K8S_POD_NAME=web;MAC=00:11:22:33:44:55").unwrap();
        assert_eq!(a.check_known(&["MAC"]).unwrap_err().cni_code(), 4);
        assert!(a.check_known(&["MAC", "K8S_POD_NAME"]).is_ok());
        for yes in ["1", "true", "TRUE"] {
            let a = CniArgs::parse(&format!("IgnoreUnknown={yes};K8S_POD_NAME=web")).unwrap();
            assert!(a.check_known(&[]).is_ok(), "{yes}");
        }
        let a = CniArgs::parse("IgnoreUnknown=0;K8S_POD_NAME=web").unwrap();
        assert!(a.check_known(&[]).is_err());
        let a = CniArgs::parse("IgnoreUnknown=maybe").unwrap();
        assert_eq!(a.check_known(&[]).unwrap_err().cni_code(), 4);
    }
}
