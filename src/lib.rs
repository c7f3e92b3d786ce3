//! clipd: OpenAI's CLIP on libtorch, served over gRPC.
//!
//! Modules from the top down (arrows point down; no two import each other): `copy` moves a
//! collection between the stores that `server` opens; `server` starts everything from the
//! `config` tree; `grpc` and `ingest` are transports and clients; `classify`
//! and `index` are the domain over the `engine` (batching, the model thread); `model` holds the
//! model families behind one seam, over `preprocess` (tokenisers, image pipelines), `hub`,
//! `files`, `ann`, `reload`, `telemetry`, `secret` and `rng`. `demo` trains the bundled demo model.

pub mod ann;
pub mod classify;
pub mod config;
pub mod copy;
pub mod demo;
pub mod engine;
pub mod files;
pub mod grpc;
pub mod hub;
pub mod index;
pub mod ingest;
pub mod model;
pub mod preprocess;
pub mod reload;
pub mod rng;
pub mod secret;
pub mod server;
pub mod telemetry;
