//! The `index` settings section: where collections live and how they are searched and kept.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::milvus::MilvusSettings;
use crate::ann::HnswSettings;

/// Where collections live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In this process, under `data_dir` (hnsw_rs): nothing else to run, one replica.
    #[default]
    Embedded,
    /// In Milvus (`index.milvus`): every replica serves the same collections.
    Milvus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexSettings {
    /// "embedded" or "milvus".
    pub backend: Backend,
    /// Where the embedded store keeps collections (`<data_dir>/collections/<name>`).
    pub data_dir: PathBuf,
    /// How often collections written to are snapshotted (and their logs emptied); 0: only at
    /// shutdown.
    pub snapshot_interval_s: u64,
    /// Searches whose filter matches at most this many items, and searches of collections this
    /// small, scan those items exactly instead of walking the graph.
    pub exact_scan_max_items: usize,
    /// A collection's graph is rebuilt without its tombstones (replaced and deleted items) once
    /// they are at least this share of it...
    pub rebuild_tombstone_ratio: f64,
    /// ...and at least this many.
    pub rebuild_min_tombstones: usize,
    /// Hits one search may ask for.
    pub max_top_k: usize,
    /// Items one Upsert may hold (texts and images among them: at most
    /// `limits.max_inputs_per_request`), ids one Delete or GetItems may name, items one
    /// ListItems page may hold.
    pub max_items_per_request: usize,
    pub max_collections: usize,
    /// Defaults for new collections (CreateCollection can set each).
    pub hnsw: HnswSettings,
    pub milvus: MilvusSettings,
}

impl Default for IndexSettings {
    fn default() -> Self {
        Self {
            data_dir: "clipd-data".into(),
            snapshot_interval_s: 300,
            exact_scan_max_items: 2000,
            rebuild_tombstone_ratio: 0.2,
            rebuild_min_tombstones: 1000,
            max_top_k: 1000,
            max_items_per_request: 4096,
            max_collections: 1000,
            hnsw: HnswSettings::default(),
            backend: Backend::Embedded,
            milvus: MilvusSettings::default(),
        }
    }
}

impl IndexSettings {
    pub fn snapshot_interval(&self) -> Option<Duration> {
        (self.snapshot_interval_s > 0).then(|| Duration::from_secs(self.snapshot_interval_s))
    }
}
