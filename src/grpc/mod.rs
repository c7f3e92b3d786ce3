//! The gRPC surface: thin service implementations over the engine, and the server around them.

mod auth;
mod clip_service;
mod collections_service;
mod deadline;
mod observe;
mod reload;
mod server;
mod tls;
mod too_large;

pub use server::{RunningServer, ServeError};

/// The generated protobuf types, client and server.
pub mod pb {
    tonic::include_proto!("clipd.v1");

    /// The encoded descriptors of clipd.proto, for reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/clipd_descriptor.bin"));
}
