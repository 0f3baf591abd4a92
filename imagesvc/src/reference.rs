//! Image references as `docker pull` reads them: `busybox` is `docker.io/library/busybox:latest`,
//! `registry:5000/a/b@sha256:...` names a digest.
//!
//! A hand-written parser of the grammar of Docker's `distribution/reference` package (reference.go, regexp.go):
//!
//! ```text
//! reference                  := name [ ":" tag ] [ "@" digest ]
//! name                       := [domain '/'] remote-name
//! domain                     := host [':' port-number]
//! host                       := domain-name | IPv4address | \[ IPv6address \]   ; rfc3986 appendix-A
//! domain-name                := domain-component ['.' domain-component]*
//! domain-component           := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! port-number                := /[0-9]+/
//! path-component             := alpha-numeric [separator alpha-numeric]*
//! path (or "remote-name")    := path-component ['/' path-component]*
//! alpha-numeric              := /[a-z0-9]+/
//! separator                  := /[_.]|__|[-]*/
//!
//! tag                        := /[\w][\w.-]{0,127}/
//!
//! digest                     := digest-algorithm ":" digest-hex
//! digest-algorithm           := digest-algorithm-component [ digest-algorithm-separator digest-algorithm-component ]*
//! digest-algorithm-separator := /[+.-_]/ ; the four characters (regexp.go: `[-_+.]`)
//! digest-algorithm-component := /[A-Za-z][A-Za-z0-9]*/
//! digest-hex                 := /[0-9a-fA-F]{32,}/ ; At least 128 bit digest value
//! ```
//!
//! with its limits and checks: the IPv6 address is `\[[a-fA-F0-9:]+\]` (no zone, no embedded IPv4), the path is at
//! most 255 characters, and the digest must then be valid for go-digest: a known algorithm (`sha256`, `sha384`,
//! `sha512`) with exactly 64, 96 or 128 lowercase hex digits.
//!
//! Names are normalised as `ParseNormalizedNamed` (normalize.go) does: a full 64-hex-digit string is refused (it is
//! an image ID, not a name); the first `/`-separated component is the domain only if it contains `.` or `:` or is
//! `localhost`, else the domain is `docker.io`; `index.docker.io` becomes `docker.io`; a single path component on
//! `docker.io` gets `library/` in front; the domain may hold upper-case letters but the path may not ("repository
//! name must be lowercase"). `name:tag@digest` keeps both; a reference with neither gets the tag `latest`.
//!
//! Two choices where Docker is loose or has changed: a first component with `.` or `:` that is not a valid host
//! (`a_b.com/x`) is refused, where Docker's `Parse` would keep it as a path with no domain; and an upper-case first
//! component (`UPPER/x`) is a path, hence refused, as the normalisation above says (recent distribution/reference
//! releases read it as a domain instead).
//!
//! Why not a regex: oci-spec's `Reference` compiles one large Unicode regex on first use and keeps it for the life
//! of the process (about 5.4 MB of polisd's heap after its first pull).

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Docker Hub's domain in normalised names.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy domain, normalised to [`DOCKER_HUB`].
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Where Docker Hub's registry API answers.
const DOCKER_HUB_REGISTRY: &str = "index.docker.io";
/// The namespace of Docker Hub's official images.
const OFFICIAL_PREFIX: &str = "library/";
const DEFAULT_TAG: &str = "latest";
/// `RepositoryNameTotalLengthMax`: the longest path (the name without its domain).
const NAME_MAX: usize = 255;
/// The longest tag: `[\w][\w.-]{0,127}`.
const TAG_MAX: usize = 128;

/// A normalised image reference: `registry/repository[:tag][@digest]`, with at least a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    /// The domain of the normalised name, e.g. `docker.io`, `127.0.0.1:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host[:port] to send registry API requests to: Docker Hub's API is at `index.docker.io`.
    pub fn resolve_registry(&self) -> &str {
        match self.registry.as_str() {
            DOCKER_HUB => DOCKER_HUB_REGISTRY,
            registry => registry,
        }
    }

    /// The path of the name, e.g. `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The fully qualified reference, e.g. `docker.io/library/busybox:latest`.
    pub fn whole(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Parses and normalises as [`parse`] does.
impl FromStr for Reference {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        parse_normalized(text).map_err(|reason| Error::Reference {
            reference: text.to_string(),
            reason,
        })
    }
}

/// Parses a reference as `docker pull` does (the module's header gives the grammar and the normalisation).
pub fn parse(text: &str) -> Result<Reference> {
    text.parse()
}

/// The name an image is stored under (the `org.opencontainers.image.ref.name` of its index.json entry): the
/// fully qualified reference, e.g. `docker.io/library/busybox:latest`.
pub fn store_name(reference: &Reference) -> String {
    reference.whole()
}

/// What to ask the registry for: the digest when the reference pins one, else the tag.
pub fn manifest_selector(reference: &Reference) -> &str {
    reference
        .digest()
        .or(reference.tag())
        .unwrap_or(DEFAULT_TAG)
}

/// `ParseNormalizedNamed`, followed by `TagNameOnly` when there is no digest; the error is the reason alone.
fn parse_normalized(text: &str) -> std::result::Result<Reference, String> {
    if text.is_empty() {
        return Err("repository name must have at least one component".into());
    }
    if text.len() == 64 && text.bytes().all(is_lower_hex) {
        return Err("cannot specify 64-byte hexadecimal strings as a repository name".into());
    }
    // Neither a name nor a tag holds '@', and the digest holds no '/' or '@': the digest is what follows the
    // first '@'. The tag follows the ':' of the last path component (a port's ':' is in the first component,
    // and only when a '/' follows it).
    let (rest, digest) = match text.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (text, None),
    };
    let last = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last..].find(':') {
        Some(i) => (&rest[..last + i], Some(&rest[last + i + 1..])),
        None => (rest, None),
    };
    if name.is_empty() {
        return Err(
            "invalid reference format: repository name must have at least one component".into(),
        );
    }

    let (domain, path) = split_docker_domain(name);
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "invalid reference format: repository name ({path}) must be lowercase"
        ));
    }
    check_domain(domain)?;
    check_path(&path)?;
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if let Some(digest) = digest {
        check_digest_syntax(digest)?;
    }
    if path.len() > NAME_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_MAX} characters ({} here)",
            path.len()
        ));
    }
    if let Some(digest) = digest {
        check_digest_algorithm(digest)?;
    }
    Ok(Reference {
        registry: domain.to_string(),
        repository: path,
        // `TagNameOnly`: `latest` only when there is neither a tag nor a digest.
        tag: match (tag, digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag.map(str::to_string),
        },
        digest: digest.map(str::to_string),
    })
}

/// `splitDockerDomain`: the domain (not yet checked) and the path with Docker Hub's `library/` added.
fn split_docker_domain(name: &str) -> (&str, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if first == "localhost" || first.contains(['.', ':']) => (first, rest),
        _ => (DOCKER_HUB, name),
    };
    let domain = if domain == DOCKER_HUB_LEGACY {
        DOCKER_HUB
    } else {
        domain
    };
    if domain == DOCKER_HUB && !path.contains('/') {
        (domain, format!("{OFFICIAL_PREFIX}{path}"))
    } else {
        (domain, path.to_string())
    }
}

/// `domain := host [':' port-number]`, `host := domain-name | '[' IPv6address ']'`.
fn check_domain(domain: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "invalid reference format: registry domain {domain:?} {why}"
        ))
    };
    let (host, port) = if let Some(ipv6) = domain.strip_prefix('[') {
        let Some((address, after)) = ipv6.split_once(']') else {
            return bad("has no ']' to close its IPv6 address");
        };
        if address.is_empty() || !address.bytes().all(|b| b == b':' || b.is_ascii_hexdigit()) {
            return bad("has an IPv6 address that is not hex digits and ':'");
        }
        match after {
            "" => (domain, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (&domain[..domain.len() - after.len()], Some(port)),
                None => return bad("has something other than ':port' after its IPv6 address"),
            },
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if !host.starts_with('[') {
        let component_ok = |c: &str| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
        };
        if !host.split('.').all(component_ok) {
            return bad(
                "is not a host name (components of letters, digits and inner '-', joined by '.'), an IPv4 address \
                 or a bracketed IPv6 address",
            );
        }
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("has a port that is not a number");
    }
    Ok(())
}

/// `path := path-component ['/' path-component]*`, `path-component := [a-z0-9]+ (separator [a-z0-9]+)*`,
/// `separator := [_.] | '__' | '-'*`.
fn check_path(path: &str) -> std::result::Result<(), String> {
    for component in path.split('/') {
        if !path_component_ok(component) {
            return Err(if component.is_empty() {
                "invalid reference format: the repository name has an empty path component".into()
            } else {
                format!(
                    "invalid reference format: path component {component:?} must be runs of [a-z0-9] joined by \
                     one '.', one or two '_', or any number of '-'"
                )
            });
        }
    }
    Ok(())
}

fn path_component_ok(component: &str) -> bool {
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = component.as_bytes();
    let mut i = 0;
    loop {
        // alpha-numeric
        let start = i;
        while i < b.len() && is_alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // separator, which must be followed by another alpha-numeric
        let sep = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let ok = match &b[sep..i] {
            b"." | b"_" | b"__" => true,
            dashes => dashes.iter().all(|&x| x == b'-'),
        };
        if !ok {
            return false;
        }
    }
}

/// `tag := [\w][\w.-]{0,127}` (`\w` is `[0-9A-Za-z_]`).
fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let b = tag.as_bytes();
    if b.len() > TAG_MAX {
        return Err(format!(
            "invalid tag format: a tag must not be more than {TAG_MAX} characters ({} here)",
            b.len()
        ));
    }
    if b.is_empty() || !word(b[0]) || !b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-') {
        return Err(format!(
            "invalid tag format: {tag:?} must be a letter, digit or '_', then letters, digits, '_', '.' or '-'"
        ));
    }
    Ok(())
}

/// `digest := digest-algorithm ":" digest-hex` as the reference grammar has it.
fn check_digest_syntax(digest: &str) -> std::result::Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!(
            "invalid digest format: {digest:?} is not algorithm:hex"
        ));
    };
    let component_ok = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    };
    if !algorithm.split(['+', '.', '-', '_']).all(component_ok) {
        return Err(format!(
            "invalid digest format: algorithm {algorithm:?} must be components [A-Za-z][A-Za-z0-9]* joined by \
             '+', '.', '-' or '_'"
        ));
    }
    if hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid digest format: {hex:?} must be at least 32 hex digits"
        ));
    }
    Ok(())
}

/// go-digest's `Validate`: a known algorithm, its exact length, lowercase hex.
fn check_digest_algorithm(digest: &str) -> std::result::Result<(), String> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "unsupported digest algorithm {algorithm:?} (sha256, sha384 or sha512)"
            ));
        }
    };
    if hex.len() != want {
        return Err(format!(
            "invalid checksum digest length: {algorithm} needs {want} hex digits, not {}",
            hex.len()
        ));
    }
    if !hex.bytes().all(is_lower_hex) {
        return Err("invalid checksum digest format: hex digits must be lowercase".into());
    }
    Ok(())
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
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

    const SHA256: &str = "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    /// Expands `<N*text>` to `text` N times, so that the tables can show long digests, tags and names by their
    /// lengths: `<64*f>` is 64 `f`s, `<127*a/>` is `a/a/...a/`; `<sha256>` is [`SHA256`].
    fn expand(pattern: &str) -> String {
        let mut out = String::new();
        let mut rest = pattern.replace("<sha256>", SHA256);
        while let Some(open) = rest.find('<') {
            let close = open + rest[open..].find('>').expect("unclosed <");
            let (count, text) = rest[open + 1..close].split_once('*').expect("<N*text>");
            out.push_str(&rest[..open]);
            out.push_str(&text.repeat(count.parse().expect("N")));
            rest = rest[close + 1..].to_string();
        }
        out + &rest
    }

    /// Valid references from the grammar's edge cases (and distribution/reference's own tests), with the
    /// normalised `whole()` each gives.
    #[test]
    fn valid_references_normalise() {
        let cases = [
            // Docker Hub normalisation.
            ("busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/busybox:1", "docker.io/library/busybox:1"),
            ("index.docker.io/user/app", "docker.io/user/app:latest"),
            (
                "docker.io/library/foo/bar",
                "docker.io/library/foo/bar:latest",
            ),
            ("store/foo/bar", "docker.io/store/foo/bar:latest"),
            // A first component without '.' or ':' is a path component, even if it could be a host.
            ("foo/foo_bar.com:8080", "docker.io/foo/foo_bar.com:8080"),
            ("test_com/foo", "docker.io/test_com/foo:latest"),
            // No '/': a ':' is a tag, never a port.
            ("test.com:5000", "docker.io/library/test.com:5000"),
            ("192.168.1.1:tag", "docker.io/library/192.168.1.1:tag"),
            ("foo_bar.com:8080", "docker.io/library/foo_bar.com:8080"),
            // Domains: names, ports, IPv4, localhost, IPv6 in brackets, upper case.
            ("test:5000/repo", "test:5000/repo:latest"),
            ("test-com:8080/foo", "test-com:8080/foo:latest"),
            ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000/repo:5050"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            (
                "sub-dom1.foo.com/bar/baz/quux",
                "sub-dom1.foo.com/bar/baz/quux:latest",
            ),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080/foo:latest"),
            ("Example.COM/repo", "Example.COM/repo:latest"),
            ("[::1]:5000/repo", "[::1]:5000/repo:latest"),
            ("[2001:db8::1]/repo", "[2001:db8::1]/repo:latest"),
            ("[2001:db8:1:2:3:4:5:6]/r:t", "[2001:db8:1:2:3:4:5:6]/r:t"),
            ("[2001:db8::]:5000/repo", "[2001:db8::]:5000/repo:latest"),
            // Separators: '.', '_', '__', any number of '-'.
            ("dock__er/docker", "docker.io/dock__er/docker:latest"),
            (
                "docker---rules/docker",
                "docker.io/docker---rules/docker:latest",
            ),
            ("x/a.b_c-d__e--f/g", "docker.io/x/a.b_c-d__e--f/g:latest"),
            ("d/docker", "docker.io/d/docker:latest"),
            // Tags: case kept, '_' may lead, '.' and '-' inside.
            (
                "lowercase:Uppercase",
                "docker.io/library/lowercase:Uppercase",
            ),
            ("foo:_x.y-z", "docker.io/library/foo:_x.y-z"),
            (
                "b.gcr.io/test.example.com/app:x.y",
                "b.gcr.io/test.example.com/app:x.y",
            ),
            // Only exactly 64 hex digits are an image ID; 63, or 64 after a domain, are names.
            ("<63*a>", "docker.io/library/<63*a>:latest"),
            ("docker.io/<64*a>", "docker.io/library/<64*a>:latest"),
            // Digests: no tag added; tag and digest both kept.
            ("busybox@<sha256>", "docker.io/library/busybox@<sha256>"),
            (
                "busybox:1.36@<sha256>",
                "docker.io/library/busybox:1.36@<sha256>",
            ),
            ("test:5000/repo:tag@<sha256>", "test:5000/repo:tag@<sha256>"),
            (
                "[2001:db8::1]:5000/r@<sha256>",
                "[2001:db8::1]:5000/r@<sha256>",
            ),
            (
                "xn--7o8h.com/i:x@sha512:<128*f>",
                "xn--7o8h.com/i:x@sha512:<128*f>",
            ),
            ("repo@sha384:<96*0>", "docker.io/library/repo@sha384:<96*0>"),
            // Limits: a 128-character tag, a 255-character path ("library/" is 8 of them).
            ("repo:t<127*a>", "docker.io/library/repo:t<127*a>"),
            ("<247*a>", "docker.io/library/<247*a>:latest"),
            ("<127*a/>a:tag", "docker.io/<127*a/>a:tag"),
            ("example.com/<127*a/>a", "example.com/<127*a/>a:latest"),
        ];
        for (input, want) in cases {
            let (input, want) = (expand(input), expand(want));
            match parse(&input) {
                Ok(r) => assert_eq!(r.whole(), want, "{input}"),
                Err(e) => panic!("{input}: {e}"),
            }
        }
    }

    /// Invalid references, each with (part of) the reason its error must give.
    #[test]
    fn invalid_references_name_the_problem() {
        let cases = [
            ("", "at least one component"),
            (":justtag", "at least one component"),
            ("<64*a>", "64-byte hexadecimal"),
            // Upper case: allowed in a domain, never in the path.
            ("UPPER/case", "must be lowercase"),
            ("Uppercase:tag", "must be lowercase"),
            ("docker/Docker", "must be lowercase"),
            ("test:5000/Uppercase/lowercase:tag", "must be lowercase"),
            ("Example.com/Repo", "must be lowercase"),
            // Separators: none leading or trailing, no '..', '___', or mixed runs.
            ("-lead", "path component \"-lead\""),
            ("-docker/docker", "path component \"-docker\""),
            ("docker-/docker", "path component \"docker-\""),
            ("_docker/_docker", "path component \"_docker\""),
            ("trailing.", "path component \"trailing.\""),
            ("____/____", "path component \"____\""),
            ("dock___er/docker", "path component \"dock___er\""),
            ("docker/dock..er", "path component \"dock..er\""),
            ("docker/dock_.er", "path component \"dock_.er\""),
            ("docker/dock-.er", "path component \"dock-.er\""),
            ("a b", "path component \"a b\""),
            ("aa/asdf$$^/aa", "path component \"asdf$$^\""),
            ("docker///docker", "empty path component"),
            ("docker/", "empty path component"),
            ("/docker", "empty path component"),
            // Domains.
            (
                "https://github.com/docker/docker",
                "registry domain \"https:\"",
            ),
            ("-docker.io/docker/docker", "registry domain \"-docker.io\""),
            ("a_b.com/x", "registry domain \"a_b.com\""),
            // A first component with '.' is a domain, so this is a bad domain, not a bad path.
            ("dock..er/docker", "registry domain \"dock..er\""),
            ("foo.-bar.com/x", "registry domain \"foo.-bar.com\""),
            ("test:port/repo", "port that is not a number"),
            ("test:/repo", "port that is not a number"),
            (":5000/repo", "registry domain \":5000\""),
            ("fc00::1:5000/debian", "registry domain \"fc00::1:5000\""),
            ("[fc00::1]", "path component \"[fc00\""),
            ("[2001:db8::1]:5000", "path component \"[2001\""),
            ("[fe80::1%eth0]:5000/repo", "IPv6"),
            ("[2001:db8:3:4::192.0.2.33]:5000/debian", "IPv6"),
            ("[]:5000/repo", "IPv6"),
            ("[::1/repo", "no ']'"),
            ("[::1]x/repo", "after its IPv6 address"),
            // Tags.
            ("repo:", "invalid tag format"),
            ("repo:-tag", "invalid tag format"),
            ("repo:.tag", "invalid tag format"),
            ("repo:a:b", "invalid tag format"),
            ("repo:t+g", "invalid tag format"),
            (
                "repo:t<128*a>",
                "not be more than 128 characters (129 here)",
            ),
            // Digests.
            ("@<sha256>", "at least one component"),
            ("x@sha256:short", "at least 32 hex digits"),
            ("x@sha256:<31*f>", "at least 32 hex digits"),
            ("x@sha256", "not algorithm:hex"),
            ("x@", "not algorithm:hex"),
            ("x@<sha256>@y", "hex digits"),
            ("x@1sha:<64*f>", "algorithm \"1sha\""),
            ("x@sha256+:<64*f>", "algorithm \"sha256+\""),
            (
                "repo@sha256:<34*f>",
                "invalid checksum digest length: sha256 needs 64",
            ),
            ("repo@sha256:<65*f>", "sha256 needs 64 hex digits, not 65"),
            ("repo@sha512:<64*f>", "sha512 needs 128 hex digits, not 64"),
            ("repo@sha256:<64*F>", "must be lowercase"),
            (
                "validname@invaliddigest:<64*f>",
                "unsupported digest algorithm",
            ),
            ("repo@sha256+b64:<64*f>", "unsupported digest algorithm"),
            // Limits: 256 characters of path, with and without Docker Hub's "library/".
            ("<248*a>", "not be more than 255 characters (256 here)"),
            (
                "<128*a/>a:tag",
                "not be more than 255 characters (257 here)",
            ),
            (
                "example.com/<128*a/>a",
                "not be more than 255 characters (257 here)",
            ),
        ];
        for (input, want) in cases {
            let input = expand(input);
            match parse(&input) {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => {
                    let e = e.to_string();
                    assert!(e.starts_with("invalid image reference"), "{input}: {e}");
                    assert!(e.contains(want), "{input}: {e} (wanted {want:?})");
                }
            }
        }
    }

    #[test]
    fn accessors_keep_their_meaning() {
        let hub = parse("busybox").unwrap();
        assert_eq!(hub.registry(), "docker.io");
        assert_eq!(hub.resolve_registry(), "index.docker.io");
        assert_eq!(hub.repository(), "library/busybox");
        assert_eq!(hub.tag(), Some("latest"));
        assert_eq!(hub.digest(), None);
        assert_eq!(manifest_selector(&hub), "latest");

        let both: Reference = format!("[::1]:5000/a/b:v1@{SHA256}").parse().unwrap();
        assert_eq!(both.registry(), "[::1]:5000");
        assert_eq!(both.resolve_registry(), "[::1]:5000");
        assert_eq!(both.repository(), "a/b");
        assert_eq!(both.tag(), Some("v1"));
        assert_eq!(both.digest(), Some(SHA256));
        assert_eq!(manifest_selector(&both), SHA256);
        assert_eq!(both.to_string(), both.whole());
        // Normalising a normalised name changes nothing.
        assert_eq!(parse(&both.whole()).unwrap(), both);
        assert_eq!(parse(&hub.whole()).unwrap(), hub);
    }
}
