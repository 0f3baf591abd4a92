//! The connection to polisd: [`Client`] and the generated clients it hands to each service's methods.

use super::proto::{
    containers_client::ContainersClient, images_client::ImagesClient,
    networks_client::NetworksClient, system_client::SystemClient, volumes_client::VolumesClient,
};
use super::{Error, Result};
use std::path::{Path, PathBuf};
use tonic::transport::{Channel, Endpoint, Uri};

/// The files of a TLS client: the CA that polisd's certificate chains to, and the client's certificate and key
/// (PEM), as the docker CLI's `--tlscacert`, `--tlscert` and `--tlskey`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The client's certificate.
    pub cert: PathBuf,
    /// The client's private key.
    pub key: PathBuf,
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// A connection to polisd's gRPC API. Cloning it is cheap (the clones share one HTTP/2 connection).
#[derive(Clone)]
pub struct Client {
    channel: Channel,
}

impl Client {
    /// Connects to polisd's gRPC socket at `path` (root's and the socket group's only).
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let connect_error = |e: &dyn std::fmt::Display| Error::Connect {
            path: shown.clone(),
            message: e.to_string(),
        };
        // The URI is not used: every connection is made to the socket.
        let endpoint =
            Endpoint::try_from("http://polisd.invalid").map_err(|e| connect_error(&e))?;
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|e| connect_error(&error_chain(&e)))?;
        Ok(Client { channel })
    }

    /// Connects to polisd's gRPC API over TCP with mutual TLS (polisd's `[grpc_tcp]`): `address` is `HOST:PORT`,
    /// polisd's certificate must chain to `tls.ca` and name HOST, and this client shows `tls.cert`.
    pub async fn connect_tls(address: &str, tls: &TlsFiles) -> Result<Client> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let connect_error = |e: &dyn std::fmt::Display| Error::Connect {
            path: address.to_string(),
            message: e.to_string(),
        };
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| connect_error(&format!("read {}: {e}", p.display())))
        };
        let host = match address.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => return Err(connect_error(&"the address is not HOST:PORT")),
        };
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
            .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
            .domain_name(host);
        let channel = Endpoint::from_shared(format!("https://{address}"))
            .and_then(|e| e.tls_config(config))
            .map_err(|e| connect_error(&e))?
            .connect()
            .await
            .map_err(|e| connect_error(&error_chain(&e)))?;
        Ok(Client { channel })
    }

    /// The underlying channel, for the generated clients of [`crate::proto`] or the standard services
    /// (grpc.health.v1, server reflection).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub(crate) fn system(&self) -> SystemClient<Channel> {
        SystemClient::new(self.channel.clone())
    }

    pub(crate) fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    pub(crate) fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone())
    }

    pub(crate) fn networks(&self) -> NetworksClient<Channel> {
        NetworksClient::new(self.channel.clone())
    }

    pub(crate) fn volumes(&self) -> VolumesClient<Channel> {
        VolumesClient::new(self.channel.clone())
    }
}
