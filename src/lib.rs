//! clipd: OpenAI's CLIP on libtorch, served over gRPC.

pub mod clip;
pub mod demo;
pub mod error;
pub mod hub;
pub mod model;
pub mod model_source;
pub mod preprocess;
