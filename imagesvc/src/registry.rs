//! The OCI distribution protocol as registries serve it (distribution-spec "Pulling manifests", "Pulling blobs",
//! Docker's token authentication).
//!
//! Departure from the first design (which named `oci-client`; docs/ARCHITECTURE.md): oci-client 0.18 hides the response of a failed request
//! (no status for a JSON error body, no `Retry-After`), never renews a token the registry stopped accepting, and
//! resumes a blob only without a way to tell a 200 from a 206 after a retry. This client is a thin layer over
//! `reqwest` that does those three things; references are parsed by reference.rs.
//!
//! - Auth: anonymous first; on 401 the `WWW-Authenticate` challenge says Basic (credentials from the docker
//!   config) or Bearer (a token from the realm, with the credentials if any). Tokens are cached per registry and
//!   scope until they expire, and renewed when the registry answers 401 to one.
//! - 429 and 503 are retried after `Retry-After` seconds (at most [`MAX_RETRY_AFTER`] each, [`MAX_RETRIES`] times).
//! - Redirects are followed by reqwest, which drops the Authorization header when the host, port or scheme changes.
//! - Plain HTTP is used only for registries the caller lists as insecure.

use crate::error::{Error, Result};
use crate::reference::Reference;
use reqwest::StatusCode;
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{self, HeaderMap};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Every manifest type we can use, always sent: registry 2.8 answers 404 for an OCI manifest when the Accept
/// header does not list the OCI types (docs/ARCHITECTURE.md).
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The largest manifest accepted (distribution-spec: registries SHOULD accept manifests up to 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;
pub const MAX_RETRIES: u32 = 5;
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long a registry may send nothing before a request or download is given up.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Docker token spec: a token without `expires_in` lasts 60 seconds.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Credentials for one registry, from the docker config (`auths` or `credHelpers`).
#[derive(Clone)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in the docker config).
    IdentityToken(String),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <hidden>)"),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<hidden>)"),
        }
    }
}

/// Looks up the credentials the docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`) has for
/// `registry`, running a credential helper if the config names one. None when there are none.
pub fn docker_config_credential(registry: &str) -> Option<Credential> {
    // Docker Hub's credentials are stored under its v1 index address.
    let server = if registry == "docker.io" || registry == "index.docker.io" {
        "https://index.docker.io/v1/"
    } else {
        registry
    };
    match docker_credential::get_credential(server) {
        Ok(docker_credential::DockerCredential::UsernamePassword(username, password)) => {
            Some(Credential::Basic { username, password })
        }
        Ok(docker_credential::DockerCredential::IdentityToken(token)) => {
            Some(Credential::IdentityToken(token))
        }
        Err(_) => None,
    }
}

/// A challenge from `WWW-Authenticate` (RFC 7235 auth-params, as registries send them).
#[derive(Debug, Clone, PartialEq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parses `Bearer realm="https://auth",service="registry",scope="repository:a:pull"` or `Basic realm="x"`.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => val.push(c),
                }
            }
            (val, &quoted[end?..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, val);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// Seconds to wait from a `Retry-After` header: delay-seconds, or an HTTP date (then one second, as we do not
/// trust the clocks to agree); capped at [`MAX_RETRY_AFTER`].
pub fn retry_after(headers: &HeaderMap) -> Duration {
    let wait = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1));
    wait.min(MAX_RETRY_AFTER)
}

/// Where a client gets the credentials of a registry.
pub type CredentialSource = Box<dyn Fn(&str) -> Option<Credential> + Send + Sync>;

struct Token {
    value: String,
    expires: Instant,
}

/// A registry client shared by the threads of one pull.
pub struct RegistryClient {
    http: Client,
    insecure: Vec<String>,
    credentials: CredentialSource,
    /// Bearer tokens by (registry, scope).
    tokens: Mutex<HashMap<(String, String), Token>>,
    /// Registries that asked for Basic auth.
    basic: Mutex<HashMap<String, bool>>,
}

/// A blob response: the body from `offset`, and the whole blob's length when the registry said it.
pub struct BlobResponse {
    pub offset: u64,
    /// The length of the whole blob by the registry's headers: Content-Length of a 200, the complete length of a
    /// 206's Content-Range (or offset + Content-Length). None when it sent neither (a chunked body).
    pub total: Option<u64>,
    pub body: Response,
}

impl RegistryClient {
    /// `insecure`: registries (`host` or `host:port`) reached over plain HTTP. Credentials come from the docker
    /// config.
    pub fn new(insecure: Vec<String>) -> Result<RegistryClient> {
        RegistryClient::with_credentials(insecure, Box::new(docker_config_credential))
    }

    pub fn with_credentials(
        insecure: Vec<String>,
        credentials: CredentialSource,
    ) -> Result<RegistryClient> {
        // reqwest is built without a default crypto provider (ring builds far faster than aws-lc); installing
        // it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Client::builder()
            .user_agent(concat!("polis-image/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // In reqwest's blocking client this bounds each read of a body, not the whole download: a registry
            // that stops sending for this long breaks the download off (and it resumes from where it was).
            .timeout(STALL_TIMEOUT)
            .build()
            .map_err(|e| Error::Http {
                op: "creating the HTTP client",
                url: String::new(),
                reason: e.to_string(),
            })?;
        Ok(RegistryClient {
            http,
            insecure,
            credentials,
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(HashMap::new()),
        })
    }

    fn base_url(&self, reference: &Reference) -> String {
        let registry = reference.resolve_registry();
        let scheme = if self
            .insecure
            .iter()
            .any(|r| r == registry || r == reference.registry())
        {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{registry}/v2/{}", reference.repository())
    }

    /// GET of a manifest by tag or digest: its bytes and the media type the registry gave.
    pub fn get_manifest(
        &self,
        reference: &Reference,
        tag_or_digest: &str,
    ) -> Result<(Vec<u8>, String)> {
        let url = format!("{}/manifests/{tag_or_digest}", self.base_url(reference));
        let resp = self.get(reference, &url, "pulling manifest", |r| {
            r.header(header::ACCEPT, MANIFEST_TYPES.join(", "))
        })?;
        let media_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
            .unwrap_or_default();
        if resp
            .content_length()
            .is_some_and(|n| n as usize > MAX_MANIFEST_SIZE)
        {
            return Err(Error::Manifest {
                reference: reference.whole(),
                reason: format!("manifest larger than {MAX_MANIFEST_SIZE} bytes"),
            });
        }
        let announced = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        resp.take(MAX_MANIFEST_SIZE as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| Error::Http {
                op: "reading manifest",
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(Error::Manifest {
                reference: reference.whole(),
                reason: format!("manifest larger than {MAX_MANIFEST_SIZE} bytes"),
            });
        }
        // distribution-spec "Pulling manifests": the Docker-Content-Digest header, when sent, is the digest of the
        // body; a client verifies it.
        if let Some(announced) = announced.filter(|d| d.starts_with("sha256:")) {
            let actual = crate::digest::sha256_digest(&body);
            if actual != announced {
                return Err(Error::Verify {
                    what: "manifest",
                    digest: reference.whole(),
                    expected: announced,
                    actual,
                });
            }
        }
        Ok((body, media_type))
    }

    /// GET of a blob from byte `offset` (HTTP Range when not 0). When the registry ignores the range and sends
    /// the whole blob (200), the response's `offset` is 0.
    pub fn get_blob(
        &self,
        reference: &Reference,
        digest: &str,
        offset: u64,
    ) -> Result<BlobResponse> {
        let url = format!("{}/blobs/{digest}", self.base_url(reference));
        let resp = self.get(reference, &url, "pulling blob", |r| {
            if offset > 0 {
                r.header(header::RANGE, format!("bytes={offset}-"))
            } else {
                r
            }
        });
        let resp = match resp {
            // The partial file is the whole blob or more: start again.
            Err(Error::Registry { status: 416, .. }) if offset > 0 => {
                return self.get_blob(reference, digest, 0);
            }
            other => other?,
        };
        let length = resp.content_length();
        let (offset, total) = if resp.status() == StatusCode::PARTIAL_CONTENT {
            let range = resp
                .headers()
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .map(str::to_string)
                .unwrap_or_default();
            // RFC 9110 Content-Range: `bytes FIRST-LAST/COMPLETE` (COMPLETE may be `*`).
            let (span, complete) = range.split_once('/').unwrap_or((&range, "*"));
            let start = span.split('-').next().and_then(|v| v.parse::<u64>().ok());
            if start != Some(offset) {
                return Err(Error::Http {
                    op: "pulling blob",
                    url,
                    reason: format!(
                        "asked for bytes from {offset}, got Content-Range starting at {start:?}"
                    ),
                });
            }
            let total = complete.parse::<u64>().ok().or(length.map(|n| offset + n));
            (offset, total)
        } else {
            (0, length)
        };
        Ok(BlobResponse {
            offset,
            total,
            body: resp,
        })
    }

    /// A GET with auth, 401 renewal and 429/503 retries. Any other non-2xx status is an error.
    fn get(
        &self,
        reference: &Reference,
        url: &str,
        op: &'static str,
        decorate: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response> {
        let registry = reference.resolve_registry().to_string();
        let scope = format!("repository:{}:pull", reference.repository());
        let mut auth_tries = 0;
        let mut retries = 0;
        loop {
            let mut req = decorate(self.http.get(url));
            req = self.authorize(req, &registry, &scope);
            let resp = req.send().map_err(|e| {
                let mut reason = error_chain(&e);
                if url.starts_with("https:") && (reason.contains("InvalidContentType") || reason.contains("corrupt message")) {
                    reason.push_str(&format!(
                        " (the registry does not speak TLS; if {registry} serves plain HTTP, name it with \
                         --insecure-registry {registry})"
                    ));
                }
                Error::Http {
                    op,
                    url: url.to_string(),
                    reason,
                }
            })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED && auth_tries < 2 {
                auth_tries += 1;
                self.forget_token(&registry, &scope);
                let challenge = resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                let Some(challenge) = challenge else {
                    return Err(registry_error(op, url, resp));
                };
                self.answer_challenge(&registry, &scope, &challenge)?;
                continue;
            }
            if (status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE)
                && retries < MAX_RETRIES
            {
                retries += 1;
                let wait = retry_after(resp.headers());
                tracing::info!(
                    url,
                    status = status.as_u16(),
                    wait_s = wait.as_secs_f64(),
                    "registry asked to retry later"
                );
                std::thread::sleep(wait);
                continue;
            }
            return Err(registry_error(op, url, resp));
        }
    }

    fn authorize(&self, req: RequestBuilder, registry: &str, scope: &str) -> RequestBuilder {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = tokens.get(&(registry.to_string(), scope.to_string()))
            && token.expires > Instant::now()
        {
            return req.bearer_auth(&token.value);
        }
        drop(tokens);
        let basic = self.basic.lock().unwrap_or_else(|p| p.into_inner());
        if basic.get(registry).copied().unwrap_or(false)
            && let Some(Credential::Basic { username, password }) = (self.credentials)(registry)
        {
            return req.basic_auth(username, Some(password));
        }
        req
    }

    fn forget_token(&self, registry: &str, scope: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.remove(&(registry.to_string(), scope.to_string()));
    }

    fn answer_challenge(&self, registry: &str, scope: &str, challenge: &Challenge) -> Result<()> {
        let credential = (self.credentials)(registry);
        match challenge.scheme.as_str() {
            "basic" => {
                if !matches!(credential, Some(Credential::Basic { .. })) {
                    return Err(Error::Auth {
                        registry: registry.to_string(),
                        reason: "the registry asks for a user name and password, and the docker config \
                                 ($DOCKER_CONFIG/config.json or ~/.docker/config.json) has none for it"
                            .into(),
                    });
                }
                let mut basic = self.basic.lock().unwrap_or_else(|p| p.into_inner());
                if basic.insert(registry.to_string(), true) == Some(true) {
                    return Err(Error::Auth {
                        registry: registry.to_string(),
                        reason:
                            "the registry refused the user name and password from the docker config"
                                .into(),
                    });
                }
                Ok(())
            }
            "bearer" => {
                let token = self.fetch_token(registry, scope, challenge, credential.as_ref())?;
                let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                tokens.insert((registry.to_string(), scope.to_string()), token);
                Ok(())
            }
            other => Err(Error::Auth {
                registry: registry.to_string(),
                reason: format!("unsupported authentication scheme {other:?}"),
            }),
        }
    }

    /// Docker token spec: GET realm?service=S&scope=SCOPE, with Basic credentials when we have them; with an
    /// identity token, the OAuth2 refresh-token grant (POST).
    fn fetch_token(
        &self,
        registry: &str,
        scope: &str,
        challenge: &Challenge,
        credential: Option<&Credential>,
    ) -> Result<Token> {
        let auth_err = |reason: String| Error::Auth {
            registry: registry.to_string(),
            reason,
        };
        let realm = challenge
            .params
            .get("realm")
            .ok_or_else(|| auth_err("Bearer challenge without a realm".into()))?;
        let service = challenge.params.get("service").cloned().unwrap_or_default();
        let scope = challenge
            .params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| scope.to_string());
        let mut query = vec![("scope", scope.as_str())];
        if !service.is_empty() {
            query.push(("service", service.as_str()));
        }
        let req = match credential {
            Some(Credential::IdentityToken(refresh)) => self.http.post(realm.as_str()).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("service", service.as_str()),
                ("scope", scope.as_str()),
                ("client_id", "polis-image"),
            ]),
            Some(Credential::Basic { username, password }) => self
                .http
                .get(realm.as_str())
                .query(&query)
                .basic_auth(username, Some(password)),
            None => self.http.get(realm.as_str()).query(&query),
        };
        let resp = req
            .send()
            .map_err(|e| auth_err(format!("token request to {realm}: {}", error_chain(&e))))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().unwrap_or_default();
            return Err(auth_err(format!(
                "token server {realm} answered {status}: {}",
                body.trim()
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenReply {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let reply: TokenReply = resp
            .json()
            .map_err(|e| auth_err(format!("token server {realm} sent no JSON token: {e}")))?;
        let value = reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| auth_err(format!("token server {realm} sent an empty token")))?;
        let lifetime = reply
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        // Renew a little early, so a token does not expire between the check and the request.
        let margin = (lifetime / 10).min(Duration::from_secs(10));
        Ok(Token {
            value,
            expires: Instant::now() + lifetime - margin,
        })
    }
}

/// The error of a non-2xx answer, with the message of the distribution-spec error body when there is one.
fn registry_error(op: &'static str, url: &str, resp: Response) -> Error {
    let status = resp.status().as_u16();
    let body = resp.text().unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<ErrorInfo>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorInfo {
        code: Option<String>,
        message: Option<String>,
    }
    let message = match serde_json::from_str::<Envelope>(&body) {
        Ok(env) if !env.errors.is_empty() => env
            .errors
            .iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.code.as_deref().unwrap_or("UNKNOWN"),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => body
            .chars()
            .take(300)
            .collect::<String>()
            .trim()
            .to_string(),
    };
    Error::Registry {
        op,
        url: url.to_string(),
        status,
        message,
    }
}

/// reqwest's error with its causes (the top level alone says only "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_quotes_and_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let c = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.params["realm"], "Registry Realm");
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn retry_after_reads_seconds_and_caps_them() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), Duration::from_secs(1));
        h.insert(header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Duration::from_secs(3));
        h.insert(header::RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&h), MAX_RETRY_AFTER);
        h.insert(
            header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Duration::from_secs(1));
    }

    #[test]
    fn plain_http_only_for_listed_registries() {
        let c = RegistryClient::with_credentials(vec!["127.0.0.1:5000".into()], Box::new(|_| None))
            .unwrap();
        let local: Reference = "127.0.0.1:5000/a/b:1".parse().unwrap();
        assert_eq!(c.base_url(&local), "http://127.0.0.1:5000/v2/a/b");
        let hub: Reference = "busybox".parse().unwrap();
        assert_eq!(
            c.base_url(&hub),
            "https://index.docker.io/v2/library/busybox"
        );
    }
}
