//! Digests as the store names content: `sha256:<hex>` digests checked and computed, and the identities of an
//! image's layers, the DiffIDs its config lists and the ChainIDs they make (image-spec config.md).

use crate::error::{Error, Result};
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;

/// A validated `sha256:<64 lowercase hex>` digest.
pub fn digest_hex(digest: &str) -> Result<&str> {
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(hex)
    } else {
        Err(Error::Verify {
            what: "digest",
            digest: digest.to_string(),
            expected: "sha256:<64 lowercase hex digits>".into(),
            actual: digest.to_string(),
        })
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// The DiffIDs (`rootfs.diff_ids`) of an image config.
pub fn diff_ids(config: &[u8]) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(serde::Deserialize)]
    struct RootFs {
        diff_ids: Vec<String>,
    }
    let config: Config = serde_json::from_slice(config).map_err(|e| Error::Malformed {
        what: "image config",
        path: PathBuf::new(),
        reason: e.to_string(),
    })?;
    for d in &config.rootfs.diff_ids {
        digest_hex(d)?;
    }
    Ok(config.rootfs.diff_ids)
}

/// config.md: ChainID(L0) = DiffID(L0); ChainID(L0|...|Ln) = SHA256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let chain = match chains.last() {
            None => diff_id.clone(),
            Some(parent) => format!("sha256:{:x}", Sha256::digest(format!("{parent} {diff_id}"))),
        };
        chains.push(chain);
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_must_be_sha256_hex() {
        assert!(digest_hex(&sha256_digest(b"x")).is_ok());
        for bad in [
            "",
            "sha256:",
            "sha256:../../etc",
            "md5:abc",
            &format!("sha256:{}", "A".repeat(64)),
        ] {
            assert!(digest_hex(bad).is_err(), "{bad}");
        }
    }

    /// config.md "Layer ChainID": the worked definition, checked against an independent computation.
    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = format!("sha256:{}", "c".repeat(64));
        let chains = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(chains[0], a);
        let ab = format!("sha256:{:x}", Sha256::digest(format!("{a} {b}").as_bytes()));
        assert_eq!(chains[1], ab);
        let abc = format!(
            "sha256:{:x}",
            Sha256::digest(format!("{ab} {c}").as_bytes())
        );
        assert_eq!(chains[2], abc);
    }

    #[test]
    fn malformed_configs_and_diff_ids_are_refused() {
        assert!(diff_ids(b"{}").is_err());
        assert!(diff_ids(br#"{"rootfs":{"type":"layers","diff_ids":["sha256:../x"]}}"#).is_err());
        let good = format!(
            r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}}}}"#,
            "0".repeat(64)
        );
        assert_eq!(diff_ids(good.as_bytes()).unwrap().len(), 1);
    }
}
