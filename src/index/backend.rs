//! The collection-store seam: what the Collections service and Search need of wherever
//! collections live. The embedded hnsw_rs store (`embedded`) is the first implementation; a store
//! behind the network (Milvus) is the next. Methods are async because such a store waits on the
//! network; the embedded one runs its work on the blocking pool.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{Found, IndexError, Info, Item, Listed, Metadata, Search};
use crate::ann::HnswSettings;

/// Items, tombstones and collections over all of a store's collections (for the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub collections: usize,
    pub items: usize,
    pub tombstones: usize,
}

/// Every collection of one model, by name.
#[async_trait]
pub trait CollectionStore: Send + Sync {
    /// Hits one search may ask for.
    fn max_top_k(&self) -> usize;

    /// Creates an empty collection; `hnsw` fields left at 0 take the configured defaults.
    async fn create(&self, name: &str, hnsw: HnswSettings) -> Result<Info, IndexError>;

    async fn drop_collection(&self, name: &str) -> Result<(), IndexError>;

    /// Every collection by name, also those that cannot be served (with the reason).
    async fn list(&self) -> Result<Vec<(String, Listed)>, IndexError>;

    /// The collection named `name`, or why it cannot be served.
    async fn open(&self, name: &str) -> Result<Arc<dyn StoredCollection>, IndexError>;

    fn totals(&self) -> Totals;

    /// Whether the store can be reached now (false while a store behind the network is away),
    /// and every change to it: what the health of `clipd.v1.Collections` reports.
    fn reachable(&self) -> watch::Receiver<bool>;

    /// Makes what was written durable beyond the store's own log (snapshots), for the
    /// collections written since the last time; returns how many were saved.
    async fn persist(&self) -> usize;
}

/// One collection, as the requests that name it see it.
#[async_trait]
pub trait StoredCollection: Send + Sync {
    /// Values in each vector.
    fn dim(&self) -> usize;

    async fn info(&self) -> Result<Info, IndexError>;

    async fn search(&self, search: Search) -> Result<Found, IndexError>;

    /// The items with these ids, in order, skipping ids it does not hold; their vectors may be
    /// left empty unless `with_vectors`.
    async fn get(&self, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Item>, IndexError>;

    /// Up to `limit` items that pass the filter, in the bytewise order of their ids, from the
    /// first id after `after`; vectors as for `get`.
    async fn page(
        &self,
        after: Option<String>,
        filter: Metadata,
        limit: usize,
        with_vectors: bool,
    ) -> Result<Vec<Item>, IndexError>;

    /// Inserts or replaces (by id) unit-length items of the collection's dimension; returns
    /// (inserted, replaced).
    async fn upsert(&self, items: Vec<Item>) -> Result<(usize, usize), IndexError>;

    /// Returns how many of the ids it held.
    async fn delete(&self, ids: Vec<String>) -> Result<usize, IndexError>;

    /// Removes every item that the (non-empty) filter matches; returns how many.
    async fn delete_matching(&self, filter: Metadata) -> Result<usize, IndexError>;
}
