//! The embedded store behind the collection-store seam: the `Registry` of hnsw_rs collections in
//! the data directory. Its work (log flushes, graph updates, snapshots) blocks, so it runs on
//! tokio's blocking pool.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::backend::{CollectionStore, StoredCollection, Totals};
use super::{Collection, Found, IndexError, Info, Item, Listed, Metadata, Registry, Search};
use crate::ann::HnswSettings;

pub struct EmbeddedStore {
    registry: Arc<Registry>,
    /// Always true: the collections are on this pod's disk. Kept so the channel stays open.
    reachable: watch::Sender<bool>,
}

impl EmbeddedStore {
    pub fn new(registry: Registry) -> Self {
        Self {
            registry: Arc::new(registry),
            reachable: watch::Sender::new(true),
        }
    }
}

/// Runs `work` on the blocking pool; a panic there fails the request as `what` failing.
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, IndexError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) => {
            tracing::error!(error = %e, "{what} panicked");
            Err(IndexError::Failed(what))
        }
    }
}

#[async_trait]
impl CollectionStore for EmbeddedStore {
    fn max_top_k(&self) -> usize {
        self.registry.settings().max_top_k
    }

    async fn create(&self, name: &str, hnsw: HnswSettings) -> Result<Info, IndexError> {
        let (registry, name) = (Arc::clone(&self.registry), name.to_owned());
        blocking("collection work", move || registry.create(&name, hnsw)).await
    }

    async fn drop_collection(&self, name: &str) -> Result<(), IndexError> {
        let (registry, name) = (Arc::clone(&self.registry), name.to_owned());
        blocking("collection work", move || registry.drop_collection(&name)).await
    }

    async fn list(&self) -> Result<Vec<(String, Listed)>, IndexError> {
        let registry = Arc::clone(&self.registry);
        blocking("collection work", move || Ok(registry.list())).await
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn StoredCollection>, IndexError> {
        Ok(Arc::new(Embedded(self.registry.get(name)?)))
    }

    fn totals(&self) -> Totals {
        let (collections, items, tombstones) = self.registry.totals();
        Totals {
            collections,
            items,
            tombstones,
        }
    }

    fn reachable(&self) -> watch::Receiver<bool> {
        self.reachable.subscribe()
    }

    async fn persist(&self) -> usize {
        let registry = Arc::clone(&self.registry);
        blocking("snapshotting", move || Ok(registry.snapshot_all()))
            .await
            .unwrap_or(0)
    }
}

/// One open collection of the registry.
struct Embedded(Arc<Collection>);

impl Embedded {
    fn collection(&self) -> Arc<Collection> {
        Arc::clone(&self.0)
    }
}

#[async_trait]
impl StoredCollection for Embedded {
    fn dim(&self) -> usize {
        self.0.manifest().dim
    }

    async fn info(&self) -> Result<Info, IndexError> {
        let collection = self.collection();
        blocking("collection work", move || Ok(collection.info())).await
    }

    async fn search(&self, search: Search) -> Result<Found, IndexError> {
        let collection = self.collection();
        blocking("the search", move || collection.search(&search)).await
    }

    async fn get(&self, ids: Vec<String>, _: bool) -> Result<Vec<Item>, IndexError> {
        let collection = self.collection();
        blocking("collection work", move || Ok(collection.get(&ids))).await
    }

    async fn page(
        &self,
        after: Option<String>,
        filter: Metadata,
        limit: usize,
        _: bool,
    ) -> Result<Vec<Item>, IndexError> {
        let collection = self.collection();
        blocking("collection work", move || {
            Ok(collection.page(after.as_deref(), &filter, limit))
        })
        .await
    }

    async fn upsert(&self, items: Vec<Item>) -> Result<(usize, usize), IndexError> {
        let collection = self.collection();
        blocking("collection work", move || collection.upsert(items)).await
    }

    async fn delete(&self, ids: Vec<String>) -> Result<usize, IndexError> {
        let collection = self.collection();
        blocking("collection work", move || collection.delete(ids)).await
    }

    async fn delete_matching(&self, filter: Metadata) -> Result<usize, IndexError> {
        let collection = self.collection();
        blocking("collection work", move || {
            collection.delete_matching(&filter)
        })
        .await
    }
}
