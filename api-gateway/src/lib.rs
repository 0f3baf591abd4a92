//! polisd: the Polis daemon. It serves the Docker Engine API (rest/) over a core of operations (core/) that drive
//! polis-image's store, containerd-shim-polis-v2 and polis-runc.

pub mod alerts;
pub mod config;
pub mod core;
pub mod grpc;
pub mod metrics;
pub mod rest;
pub mod server;
pub mod tls;
