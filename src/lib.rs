//! clipd: OpenAI's CLIP on libtorch, served over gRPC.

pub mod ann;
pub mod classify;
pub mod clip;
pub mod config;
pub mod demo;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod hub;
pub mod index;
pub mod ingest;
pub mod model;
pub mod model_source;
pub mod preprocess;
pub mod telemetry;
