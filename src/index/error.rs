//! Why a Search or a Collections request was not answered.

use crate::engine::EngineError;

/// Which content of a request a problem is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// An Upsert's item, by its index.
    Item(usize),
    /// A Search's query.
    Query,
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Item(index) => write!(f, "item {index}"),
            Self::Query => f.write_str("the query"),
        }
    }
}

/// Why a Search or a Collections request was not answered.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no collection named {0:?}")]
    UnknownCollection(String),
    #[error("collection {collection:?} has no item {id:?}")]
    UnknownItem { collection: String, id: String },
    #[error("a collection named {0:?} exists")]
    Exists(String),
    #[error("{0}")]
    InvalidRequest(String),
    /// One item of an Upsert, or a Search's query, cannot be used.
    #[error("{of}: {reason}")]
    Content { of: Subject, reason: String },
    #[error("the server holds {0} collections, its limit (index.max_collections)")]
    TooManyCollections(usize),
    #[error(
        "collection {name:?} holds embeddings of {model} ({dim} values); the server runs \
         {loaded} ({loaded_dim} values), which embeds differently: serve the collection with the \
         model that made it, or drop it"
    )]
    OtherModel {
        name: String,
        model: String,
        dim: usize,
        loaded: String,
        loaded_dim: usize,
    },
    #[error("collection {name:?} could not be opened at start-up: {reason}")]
    Unopened { name: String, reason: String },
    #[error("collection {0:?} cannot be written: its storage failed (see the server's log)")]
    Storage(String),
    #[error("{0} failed (see the server's log)")]
    Failed(&'static str),
    /// The store is away (Milvus unreachable, or too slow): worth retrying.
    #[error("the collection store is unavailable; retry with back-off ({0})")]
    Unavailable(String),
}
