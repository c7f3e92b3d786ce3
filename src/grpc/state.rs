//! What both gRPC services share: the domain once the model has loaded, the shutdown flag, and
//! the limits they enforce or tell clients about.

use std::sync::{Arc, OnceLock};

use tokio::sync::watch;
use tonic::Status;

use crate::classify::Classify;
use crate::engine::{BatchingSettings, Engine, LimitSettings};
use crate::index::CollectionStore;

/// What the services answer with, once the model has loaded.
pub struct Loaded {
    pub engine: Engine,
    pub classify: Classify,
    pub collections: Arc<dyn CollectionStore>,
}

/// The server's limits, as `GetModelInfo` reports them and EmbedStream applies them.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub limits: LimitSettings,
    pub batching: BatchingSettings,
    pub max_message_bytes: usize,
    pub stream_max_in_flight: usize,
    /// The configured classifiers' names.
    pub classifiers: Vec<String>,
    pub max_top_k: usize,
    pub max_items_per_request: usize,
}

#[derive(Clone)]
pub struct State {
    /// Set once the model has loaded; until then every RPC is UNAVAILABLE.
    pub loaded: Arc<OnceLock<Loaded>>,
    /// Set at shutdown: new requests are refused.
    pub stopping: watch::Receiver<bool>,
    pub advertised: Arc<Advertised>,
}

impl State {
    /// The domain, or UNAVAILABLE while the model loads and once shutdown has begun.
    pub fn loaded(&self) -> Result<&Loaded, Status> {
        if *self.stopping.borrow() {
            return Err(Status::unavailable("the server is shutting down"));
        }
        self.loaded
            .get()
            .ok_or_else(|| Status::unavailable("the model is loading; retry shortly"))
    }
}
