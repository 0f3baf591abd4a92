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
    /// The socket or TCP address could not be reached, or the TLS handshake failed.
    #[error("connect to {path}: {message}")]
    Connect {
        /// The socket's path, or the TCP address.
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
mod client;
#[cfg(feature = "client")]
mod containers;
#[cfg(feature = "client")]
mod images;
#[cfg(feature = "client")]
mod networks;
mod serde_enums;
#[cfg(feature = "client")]
mod system;
#[cfg(feature = "client")]
mod volumes;

#[cfg(feature = "client")]
pub use client::{Client, TlsFiles};
#[cfg(feature = "client")]
pub use containers::Input;

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
