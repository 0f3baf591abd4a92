//! Image references as `docker pull` reads them: `busybox` is `docker.io/library/busybox:latest`,
//! `registry:5000/a/b@sha256:...` names a digest (distribution reference grammar, via oci-spec).

use crate::error::{Error, Result};
use oci_spec::distribution::Reference;

pub fn parse(text: &str) -> Result<Reference> {
    let bad = |reason: String| Error::Reference {
        reference: text.to_string(),
        reason,
    };
    let reference = text.parse::<Reference>().map_err(|e| bad(e.to_string()))?;
    // oci-spec's grammar lets an upper-case first component through as part of the repository (`UPPER/x` is
    // read as docker.io/UPPER/x); docker refuses it.
    if reference
        .repository()
        .bytes()
        .any(|b| b.is_ascii_uppercase())
    {
        return Err(bad("repository name must be lowercase".into()));
    }
    Ok(reference)
}

/// The name an image is stored under (the `org.opencontainers.image.ref.name` of its index.json entry): the
/// fully qualified reference, e.g. `docker.io/library/busybox:latest`.
pub fn store_name(reference: &Reference) -> String {
    reference.whole()
}

/// What to ask the registry for: the digest when the reference pins one, else the tag.
pub fn manifest_selector(reference: &Reference) -> &str {
    reference.digest().or(reference.tag()).unwrap_or("latest")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// distribution/reference normalisation, as `docker pull` and `podman pull` apply it.
    #[test]
    fn names_normalise_as_docker_pull_does() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
            ("user/app", "docker.io/user/app:latest"),
            ("localhost/app:v1", "localhost/app:v1"),
            ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
            ("quay.io/x/y:z", "quay.io/x/y:z"),
        ];
        for (input, want) in cases {
            assert_eq!(store_name(&parse(input).unwrap()), want, "{input}");
        }
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("127.0.0.1:5000/a@{digest}")).unwrap();
        assert_eq!(manifest_selector(&r), digest);
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn bad_references_name_the_problem() {
        for bad in ["", "UPPER/case", "a b", "x@sha256:short", "-lead"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid image reference"), "{bad}: {err}");
        }
    }
}
