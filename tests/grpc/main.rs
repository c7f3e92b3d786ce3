//! The gRPC server end to end: a real server on 127.0.0.1:0 with a fixture checkpoint, and the
//! generated client.

#[path = "../common/mod.rs"]
mod common;

mod admission;
mod classify;
mod embed;
mod health;
mod ingest;
mod metrics;
mod search;
mod security;
mod stores;
mod streaming;
mod support;
