//! clipd: OpenAI's CLIP on libtorch, served over gRPC.

pub mod clip;
pub mod demo;
pub mod error;
pub mod model;
pub mod preprocess;
