//! Where polisd is: `-H PATH` (or `unix://PATH`) for its gRPC socket, or `-H tcp://HOST:PORT` with `--tlscacert`,
//! `--tlscert` and `--tlskey` for its mutual-TLS TCP listener (`[grpc_tcp]`), as the docker CLI's flags.

use crate::error::{Failure, Result};
use polis_client::{Client, TlsFiles};
use std::path::PathBuf;

/// polisd's address and, for TCP, the TLS files.
pub struct Target {
    host: String,
    tls: [Option<PathBuf>; 3],
}

impl Target {
    pub fn new(
        host: String,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Target {
        Target {
            host,
            tls: [ca, cert, key],
        }
    }

    /// Connects to polisd.
    pub async fn connect(&self) -> Result<Client> {
        if let Some(address) = self.host.strip_prefix("tcp://") {
            let [Some(ca), Some(cert), Some(key)] = self.tls.clone() else {
                return Err(Failure::new(format!(
                    "{}: polisd's TCP API needs --tlscacert, --tlscert and --tlskey",
                    self.host
                )));
            };
            return Ok(Client::connect_tls(address, &TlsFiles { ca, cert, key }).await?);
        }
        if self.tls.iter().any(Option::is_some) {
            return Err(Failure::new(format!(
                "--tlscacert, --tlscert and --tlskey are for a tcp:// host, not {}",
                self.host
            )));
        }
        let path = self.host.strip_prefix("unix://").unwrap_or(&self.host);
        Ok(Client::connect(path).await?)
    }
}
