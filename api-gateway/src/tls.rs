//! The API over TCP, only with mutual TLS (as dockerd's `--tlsverify`): polisd's certificate and key, and the CA
//! that client certificates must chain to. A client without a certificate from that CA is refused in the handshake.

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `[tcp]` in polisd.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// `HOST:PORT` to listen on.
    pub address: String,
    /// polisd's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA (PEM) that client certificates must chain to.
    pub ca: PathBuf,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("read {}", path.display()))?
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("parse {}", path.display()))?;
    if certs.is_empty() {
        bail!("{}: no certificate in it", path.display());
    }
    Ok(certs)
}

/// The server's TLS configuration: its certificate, and client certificates required and verified against the CA.
pub fn server_config(tcp: &TcpConfig) -> Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&tcp.ca)? {
        roots
            .add(ca)
            .with_context(|| format!("{}: not a usable CA certificate", tcp.ca.display()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("client certificate verifier")?;
    let key = PrivateKeyDer::from_pem_file(&tcp.key)
        .with_context(|| format!("read the private key {}", tcp.key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&tcp.cert)?, key)
        .with_context(|| format!("{} and {}", tcp.cert.display(), tcp.key.display()))?;
    Ok(Arc::new(config))
}

/// The gRPC API's TLS configuration, as [`server_config`]: polisd's certificate, and client certificates required
/// and verified against the CA. Reading the files here makes a missing or unreadable one stop polisd at start,
/// naming it.
pub fn grpc_config(tcp: &TcpConfig) -> Result<tonic::transport::ServerTlsConfig> {
    use tonic::transport::{Certificate, Identity};
    // Parsed by rustls as the REST API's are, so that a bad file is refused with its name.
    server_config(tcp)?;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("read {}", p.display()));
    Ok(tonic::transport::ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&tcp.cert)?, read(&tcp.key)?))
        .client_ca_root(Certificate::from_pem(read(&tcp.ca)?))
        .client_auth_optional(false))
}

/// Serves `app` on the TCP address over mutual TLS until the task is dropped.
pub async fn serve<S>(tcp: TcpConfig, app: S) -> Result<()>
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&tcp)?);
    let listener = tokio::net::TcpListener::bind(&tcp.address)
        .await
        .with_context(|| format!("listen on {}", tcp.address))?;
    tracing::info!(
        address = tcp.address,
        "polisd serves the Docker Engine API over mutual TLS"
    );
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::info!(%peer, error = %e, "TLS handshake refused");
                    return;
                }
            };
            let app =
                tower::util::MapRequest::new(app, |r: hyper::Request<hyper::body::Incoming>| {
                    r.map(axum::body::Body::new)
                });
            let service = hyper_util::service::TowerToHyperService::new(app);
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection");
            }
        });
    }
}
