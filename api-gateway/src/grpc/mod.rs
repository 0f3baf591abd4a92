//! polisd's own API, `polis.v1` over gRPC (tonic), a second thin layer over the core beside the REST API: each RPC
//! converts its message, calls the same core operation the REST handler calls, and converts the result. Served on
//! the unix socket `grpc_socket` (root and the socket group only, mode 0660), with the standard health service and
//! server reflection. The protos are in api-gateway/proto/polis/v1, compiled once by polis-client.

// tonic's service traits return `Result<_, tonic::Status>` (176 bytes); the helpers beside them return the same.
#![allow(clippy::result_large_err)]

mod containers;
mod images;
mod networks;
mod system;
mod volumes;

use crate::core::{Core, Error};
use anyhow::{Context, Result};
use polis_client::proto;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

/// A server stream of an RPC.
pub type RpcStream<T> =
    Pin<Box<dyn futures_util::Stream<Item = std::result::Result<T, tonic::Status>> + Send>>;

/// The core's errors as gRPC statuses; the message (which names the object) is kept.
pub fn status(e: Error) -> tonic::Status {
    match e {
        Error::NotFound(m) => tonic::Status::not_found(m),
        Error::AlreadyExists(m) => tonic::Status::already_exists(m),
        Error::Conflict(m) | Error::Forbidden(m) | Error::NotModified(m) => {
            tonic::Status::failed_precondition(m)
        }
        Error::Invalid(m) => tonic::Status::invalid_argument(m),
        Error::Failed(m) => tonic::Status::internal(m),
    }
}

/// Runs a core operation that reads or writes files (the image store, volumes' directories) on a blocking thread;
/// `what` names it if the thread fails.
pub async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> crate::core::Result<T> + Send + 'static,
) -> std::result::Result<T, tonic::Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| tonic::Status::internal(format!("{what}: {e}")))?
        .map_err(status)
}

/// RFC 3339 (the core's times) as Unix nanoseconds; 0 for none.
pub fn unix_nanos(rfc3339: Option<&str>) -> i64 {
    rfc3339
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or(0)
}

/// Unix nanoseconds as a time; None for 0.
pub fn time_of(nanos: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    (nanos != 0).then(|| chrono::DateTime::from_timestamp_nanos(nanos))
}

/// The running gRPC server: dropping it stops serving and removes the socket.
pub struct GrpcServer {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    socket: PathBuf,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Binds `grpc_socket` (a failure stops polisd at start, naming the socket) and, when configured, `grpc_tcp` with
/// mutual TLS, and serves polis.v1, health and reflection on them until the returned server is dropped.
pub async fn serve(core: &Arc<Core>) -> Result<GrpcServer> {
    use proto::containers_server::ContainersServer;
    use proto::images_server::ImagesServer;
    use proto::networks_server::NetworksServer;
    use proto::system_server::SystemServer;
    use proto::volumes_server::VolumesServer;

    let socket = core.config.grpc_socket.clone();
    let listener = crate::server::bind_api_socket(&socket, core.config.socket_group.as_deref())?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SystemServer<system::SystemApi>>()
        .await;
    health
        .set_serving::<ContainersServer<containers::ContainersApi>>()
        .await;
    health
        .set_serving::<ImagesServer<images::ImagesApi>>()
        .await;
    health
        .set_serving::<NetworksServer<networks::NetworksApi>>()
        .await;
    health
        .set_serving::<VolumesServer<volumes::VolumesApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(polis_client::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("gRPC reflection")?;
    let mut routes = tonic::service::RoutesBuilder::default();
    routes
        .add_service(health_service)
        .add_service(reflection)
        .add_service(SystemServer::new(system::SystemApi(core.clone())))
        .add_service(ContainersServer::new(containers::ContainersApi(
            core.clone(),
        )))
        .add_service(ImagesServer::new(images::ImagesApi(core.clone())))
        .add_service(NetworksServer::new(networks::NetworksApi(core.clone())))
        .add_service(VolumesServer::new(volumes::VolumesApi(core.clone())));
    let routes = routes.routes();
    let mut tasks = Vec::new();
    if let Some(tcp) = &core.config.grpc_tcp {
        // Checked and bound before serving: a bad certificate or a taken address stops polisd at start, naming it.
        let tls = crate::tls::grpc_config(tcp)?;
        let listener = tokio::net::TcpListener::bind(&tcp.address)
            .await
            .with_context(|| format!("grpc_tcp: listen on {}", tcp.address))?;
        let router = tonic::transport::Server::builder()
            .tls_config(tls)
            .context("grpc_tcp: TLS")?
            .layer(tower::layer::layer_fn(Timed))
            .add_routes(routes.clone());
        tracing::info!(
            address = tcp.address,
            "polisd serves the polis.v1 gRPC API over mutual TLS"
        );
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = router.serve_with_incoming(incoming).await {
                tracing::error!(error = %e, "gRPC API over TCP");
            }
        }));
    }
    let router = tonic::transport::Server::builder()
        .layer(tower::layer::layer_fn(Timed))
        .add_routes(routes);
    tracing::info!(socket = %socket.display(), "polisd serves the polis.v1 gRPC API");
    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
    tasks.push(tokio::spawn(async move {
        if let Err(e) = router.serve_with_incoming(incoming).await {
            tracing::error!(error = %e, "gRPC API");
        }
    }));
    Ok(GrpcServer { tasks, socket })
}

/// Times each call: `polis_api_request_duration_seconds{api="grpc", operation="/polis.v1.SERVICE/METHOD"}` (for
/// server streams, the time to the response's head).
#[derive(Clone)]
struct Timed<S>(S);

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for Timed<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<
        Box<dyn std::future::Future<Output = std::result::Result<S::Response, S::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let operation = req.uri().path().to_string();
        let started = std::time::Instant::now();
        let answer = self.0.call(req);
        Box::pin(async move {
            let result = answer.await;
            crate::metrics::global().observe_request("grpc", &operation, started.elapsed());
            result
        })
    }
}
