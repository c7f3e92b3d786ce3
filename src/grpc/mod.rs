//! The gRPC surface: thin service implementations over the domain, sharing one state; proto
//! conversions in `convert`, error statuses in `status`; the port's own settings, API keys, TLS
//! and metrics layer.

mod auth;
mod clip_service;
mod collections_service;
mod convert;
mod deadline;
mod observe;
mod settings;
mod state;
mod status;
mod tls;
mod too_large;

pub use auth::{Access, ApiKeys, KeyFileError};
pub use clip_service::ClipService;
pub use collections_service::CollectionsService;
pub use deadline::stamp as stamp_deadline;
pub use observe::ObserveLayer;
pub use settings::{AuthSettings, ServerSettings, TlsSettings};
pub use state::{Advertised, Loaded, State};
pub use tls::{Tls, TlsError};
pub use too_large::rewrite as rewrite_too_large;

/// The generated protobuf types, client and server.
pub mod pb {
    tonic::include_proto!("clipd.v1");

    /// The encoded descriptors of clipd.proto, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/clipd_descriptor.bin"));
}
