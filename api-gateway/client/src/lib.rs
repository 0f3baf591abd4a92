//! A client of polisd's gRPC API, `polis.v1`, over polisd's unix socket (`/run/polis/polis-grpc.sock` by default).
//!
//! [`Client`] wraps the generated clients in typed methods: each returns a [`Result`] whose error is an [`Error`]
//! naming what went wrong (a missing container is [`Error::NotFound`] with polisd's message, "No such container:
//! NAME"), and the streaming calls (logs, pulls, events) return a [`Stream`] of typed messages.
//!
//! ```no_run
//! # async fn run() -> Result<(), polis_client::Error> {
//! use polis_client::{Client, proto::ContainerSpec};
//! let client = Client::connect("/run/polis/polis-grpc.sock").await?;
//! let image = client.pull("busybox:latest").await?.image().await?;
//! let id = client
//!     .create_container("hello", ContainerSpec {
//!         image: image.name,
//!         command: vec!["echo".into(), "hello".into()],
//!         ..Default::default()
//!     })
//!     .await?;
//! client.start_container(&id).await?;
//! let exit_code = client.wait_container(&id).await?;
//! # let _ = exit_code;
//! # Ok(())
//! # }
//! ```
//!
//! The generated messages and clients are in [`proto`]; with the `server` feature, so are the server traits polisd
//! implements, and `FILE_DESCRIPTOR_SET` for gRPC server reflection.

#![warn(missing_docs)]

/// The messages and services of `polis.v1`, generated from `api-gateway/proto/polis/v1/*.proto` (each message and
/// field is documented there).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("polis.v1");
}

/// The encoded `FileDescriptorSet` of `polis.v1`, for gRPC server reflection.
#[cfg(feature = "server")]
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/polis_v1_descriptor.bin"));

/// The default path of polisd's gRPC socket.
pub const DEFAULT_SOCKET: &str = "/run/polis/polis-grpc.sock";

/// What can go wrong talking to polisd.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be reached.
    #[error("connect to {path}: {message}")]
    Connect {
        /// The socket's path.
        path: String,
        /// Why.
        message: String,
    },
    /// No such container, image, network or volume (gRPC NOT_FOUND); the message names it.
    #[error("{0}")]
    NotFound(String),
    /// A name already in use (gRPC ALREADY_EXISTS).
    #[error("{0}")]
    AlreadyExists(String),
    /// A malformed request (gRPC INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArgument(String),
    /// The object's state forbids the operation, e.g. removing a running container without force (gRPC
    /// FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// polisd does not implement this call yet (gRPC UNIMPLEMENTED).
    #[error("{0}")]
    Unimplemented(String),
    /// polisd or what it drives failed, or the connection broke (any other gRPC code).
    #[error("{code:?}: {message}")]
    Other {
        /// The gRPC status code.
        code: tonic::Code,
        /// polisd's message.
        message: String,
    },
    /// polisd answered something this client does not understand (a stream ended early, a missing field).
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        let message = s.message().to_string();
        match s.code() {
            tonic::Code::NotFound => Error::NotFound(message),
            tonic::Code::AlreadyExists => Error::AlreadyExists(message),
            tonic::Code::InvalidArgument => Error::InvalidArgument(message),
            tonic::Code::FailedPrecondition => Error::FailedPrecondition(message),
            tonic::Code::Unimplemented => Error::Unimplemented(message),
            code => Error::Other { code, message },
        }
    }
}

/// The result of the client's calls.
pub type Result<T> = std::result::Result<T, Error>;

/// A stream of messages from polisd: a [`futures_core::Stream`] of `Result<T>`, or read with [`Stream::next`].
pub struct Stream<T> {
    inner: tonic::Streaming<T>,
}

impl<T> Stream<T> {
    /// The next message; `None` when the stream ended.
    pub async fn next(&mut self) -> Result<Option<T>> {
        Ok(self.inner.message().await?)
    }

    /// Every remaining message, until the stream ends.
    pub async fn collect(mut self) -> Result<Vec<T>> {
        let mut all = Vec::new();
        while let Some(m) = self.next().await? {
            all.push(m);
        }
        Ok(all)
    }
}

impl Stream<proto::PullImageEvent> {
    /// Reads the pull to its end and returns the image it pulled (the stream's last message).
    pub async fn image(mut self) -> Result<proto::Image> {
        while let Some(event) = self.next().await? {
            if let Some(proto::pull_image_event::Event::Image(image)) = event.event {
                return Ok(image);
            }
        }
        Err(Error::Protocol(
            "the pull stream ended without the image".into(),
        ))
    }
}

impl<T> futures_core::Stream for Stream<T> {
    type Item = Result<T>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|m| m.map(|r| r.map_err(Error::from)))
    }
}

#[cfg(feature = "client")]
pub use client::Client;

#[cfg(feature = "client")]
mod client {
    use super::proto::{
        self, containers_client::ContainersClient, images_client::ImagesClient,
        system_client::SystemClient,
    };
    use super::{Error, Result, Stream};
    use std::path::{Path, PathBuf};
    use tonic::transport::{Channel, Endpoint, Uri};

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
                .map_err(|e| {
                    let mut text = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        text = format!("{text}: {s}");
                        source = s.source();
                    }
                    connect_error(&text)
                })?;
            Ok(Client { channel })
        }

        /// The underlying channel, for the generated clients of [`crate::proto`] or the standard services
        /// (grpc.health.v1, server reflection).
        pub fn channel(&self) -> Channel {
            self.channel.clone()
        }

        fn system(&self) -> SystemClient<Channel> {
            SystemClient::new(self.channel.clone())
        }

        fn containers(&self) -> ContainersClient<Channel> {
            ContainersClient::new(self.channel.clone())
        }

        fn images(&self) -> ImagesClient<Channel> {
            ImagesClient::new(self.channel.clone())
        }

        /// polisd's version.
        pub async fn version(&self) -> Result<proto::VersionResponse> {
            Ok(self
                .system()
                .version(proto::VersionRequest {})
                .await?
                .into_inner())
        }

        /// What polisd runs on and what it holds.
        pub async fn info(&self) -> Result<proto::InfoResponse> {
            Ok(self
                .system()
                .info(proto::InfoRequest {})
                .await?
                .into_inner())
        }

        /// Events as they happen, filtered (see [`proto::EventsRequest`] for replaying past ones and an end).
        pub async fn events(&self, request: proto::EventsRequest) -> Result<Stream<proto::Event>> {
            let inner = self.system().events(request).await?.into_inner();
            Ok(Stream { inner })
        }

        /// Pulls an image anonymously: progress, then the image (see [`Stream::image`]).
        pub async fn pull(&self, reference: &str) -> Result<Stream<proto::PullImageEvent>> {
            self.pull_with(proto::PullImageRequest {
                reference: reference.to_string(),
                auth: None,
            })
            .await
        }

        /// Pulls an image with the request's credentials.
        pub async fn pull_with(
            &self,
            request: proto::PullImageRequest,
        ) -> Result<Stream<proto::PullImageEvent>> {
            let inner = self.images().pull(request).await?.into_inner();
            Ok(Stream { inner })
        }

        /// Every image of polisd's store, one per name.
        pub async fn list_images(&self) -> Result<Vec<proto::Image>> {
            Ok(self
                .images()
                .list(proto::ListImagesRequest::default())
                .await?
                .into_inner()
                .images)
        }

        /// Removes an image's name (and the image when no name is left); `force` also when a container uses it.
        pub async fn remove_image(
            &self,
            reference: &str,
            force: bool,
        ) -> Result<proto::RemoveImageResponse> {
            Ok(self
                .images()
                .remove(proto::RemoveImageRequest {
                    reference: reference.to_string(),
                    force,
                })
                .await?
                .into_inner())
        }

        /// Creates a container named `name` (empty: a generated name); returns its ID.
        pub async fn create_container(
            &self,
            name: &str,
            spec: proto::ContainerSpec,
        ) -> Result<String> {
            Ok(self
                .containers()
                .create(proto::CreateContainerRequest {
                    name: name.to_string(),
                    spec: Some(spec),
                })
                .await?
                .into_inner()
                .id)
        }

        /// Starts a container (by ID, ID prefix or name).
        pub async fn start_container(&self, id: &str) -> Result<()> {
            self.containers()
                .start(proto::StartContainerRequest { id: id.into() })
                .await?;
            Ok(())
        }

        /// Stops a container: its stop signal, then SIGKILL after `timeout_seconds` (None: its stop timeout).
        pub async fn stop_container(&self, id: &str, timeout_seconds: Option<i64>) -> Result<()> {
            self.containers()
                .stop(proto::StopContainerRequest {
                    id: id.into(),
                    timeout_seconds,
                })
                .await?;
            Ok(())
        }

        /// Sends a signal ("SIGTERM", "15"; empty: SIGKILL) to a running container.
        pub async fn kill_container(&self, id: &str, signal: &str) -> Result<()> {
            self.containers()
                .kill(proto::KillContainerRequest {
                    id: id.into(),
                    signal: signal.into(),
                })
                .await?;
            Ok(())
        }

        /// Removes a container; `force`: kill it first if it runs.
        pub async fn remove_container(&self, id: &str, force: bool) -> Result<()> {
            self.containers()
                .remove(proto::RemoveContainerRequest {
                    id: id.into(),
                    force,
                    remove_volumes: false,
                })
                .await?;
            Ok(())
        }

        /// One container.
        pub async fn inspect_container(&self, id: &str) -> Result<proto::Container> {
            Ok(self
                .containers()
                .inspect(proto::InspectContainerRequest { id: id.into() })
                .await?
                .into_inner())
        }

        /// Containers, newest first; `all`: also those not running.
        pub async fn list_containers(&self, all: bool) -> Result<Vec<proto::Container>> {
            self.list_containers_with(proto::ListContainersRequest {
                all,
                ..Default::default()
            })
            .await
        }

        /// Containers, newest first, with the request's filters and limit.
        pub async fn list_containers_with(
            &self,
            request: proto::ListContainersRequest,
        ) -> Result<Vec<proto::Container>> {
            Ok(self
                .containers()
                .list(request)
                .await?
                .into_inner()
                .containers)
        }

        /// Waits until a container is not running; its exit code.
        pub async fn wait_container(&self, id: &str) -> Result<i64> {
            self.wait_container_for(id, proto::WaitCondition::NotRunning)
                .await
        }

        /// Waits for a condition; the container's exit code.
        pub async fn wait_container_for(
            &self,
            id: &str,
            condition: proto::WaitCondition,
        ) -> Result<i64> {
            Ok(self
                .containers()
                .wait(proto::WaitContainerRequest {
                    id: id.into(),
                    condition: condition.into(),
                })
                .await?
                .into_inner()
                .exit_code)
        }

        /// A container's stdout and stderr: what its log holds, then, with `follow`, its output until it stops.
        pub async fn logs(&self, id: &str, follow: bool) -> Result<Stream<proto::LogEntry>> {
            self.logs_with(proto::ContainerLogsRequest {
                id: id.into(),
                follow,
                ..Default::default()
            })
            .await
        }

        /// A container's logs as the request selects them (streams, times, tail).
        pub async fn logs_with(
            &self,
            request: proto::ContainerLogsRequest,
        ) -> Result<Stream<proto::LogEntry>> {
            let inner = self.containers().logs(request).await?.into_inner();
            Ok(Stream { inner })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_become_errors_with_their_message() {
        let e = Error::from(tonic::Status::not_found("No such container: x"));
        assert!(matches!(&e, Error::NotFound(m) if m == "No such container: x"));
        assert_eq!(e.to_string(), "No such container: x");
        assert!(matches!(
            Error::from(tonic::Status::failed_precondition("running")),
            Error::FailedPrecondition(_)
        ));
        assert!(matches!(
            Error::from(tonic::Status::internal("boom")),
            Error::Other {
                code: tonic::Code::Internal,
                ..
            }
        ));
    }

    #[cfg(feature = "client")]
    #[tokio::test]
    async fn a_missing_socket_is_a_connect_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("polis-client-test-{}", std::process::id()));
        let path = dir.join("none.sock");
        let e = Client::connect(&path).await.err().expect("no socket");
        match e {
            Error::Connect { path: p, .. } => assert_eq!(p, path.display().to_string()),
            other => panic!("{other:?}"),
        }
    }
}
