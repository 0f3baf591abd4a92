//! polis-imagesvc: pulls images from OCI registries into a content store (an OCI image-layout directory), unpacks
//! their layers once per ChainID, and makes runnable bundles from them.

pub mod bundle;
pub mod digest;
pub mod error;
pub mod fsutil;
pub mod inspect;
pub mod layers;
pub mod limits;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod seccomp;
pub mod spec;
pub mod store;
pub mod tar;
pub mod unpack;

pub use error::{Error, Result};
