//! Collections of items searched by embedding, behind the collection-store seam (`backend`).
//! The embedded store (`embedded`, over `registry`): an HNSW graph (hnsw_rs) per collection with
//! tombstones and background rebuilds, metadata filters, a write-ahead log and snapshots.

mod backend;
mod codec;
mod collection;
mod embedded;
mod error;
mod identity;
pub mod milvus;
mod registry;
mod settings;
mod snapshot;
mod store;
mod wal;

pub use backend::{CollectionStore, StoredCollection, Totals};
pub use collection::{Collection, Info, Manifest, Search, Target};
pub use embedded::EmbeddedStore;
pub use error::{IndexError, Subject};
pub use identity::ModelIdentity;
pub use milvus::{Consistency, MilvusSettings, MilvusStore};
pub use registry::{name_problem, Listed, Registry};
pub use settings::{Backend, IndexSettings};
pub use store::{Found, Hit, Item, Metadata};

use crate::ann::{dot, HnswSettings};

/// Limits on what an item carries (vectors are limited by the collection's dimension).
pub const MAX_ID_BYTES: usize = 1024;
pub const MAX_METADATA_PAIRS: usize = 64;
pub const MAX_METADATA_BYTES: usize = 1024;
/// All of an item's metadata, as JSON: what Milvus keeps in a JSON field, so that the same
/// items fit every store.
pub const MAX_METADATA_JSON_BYTES: usize = 65_536;

/// A new collection's name, checked as every store checks it.
pub fn check_name(name: &str) -> Result<(), IndexError> {
    match name_problem(name) {
        Some(problem) => Err(IndexError::InvalidRequest(format!(
            "collection name {name:?}: {problem}"
        ))),
        None => Ok(()),
    }
}

/// A new collection's HNSW settings: fields left at 0 take `defaults`; refused when they cannot
/// work.
pub fn resolve_hnsw(
    given: HnswSettings,
    defaults: HnswSettings,
) -> Result<HnswSettings, IndexError> {
    let pick = |v: usize, default: usize| if v == 0 { default } else { v };
    let hnsw = HnswSettings {
        m: pick(given.m, defaults.m),
        ef_construction: pick(given.ef_construction, defaults.ef_construction),
        ef_search: pick(given.ef_search, defaults.ef_search),
    };
    match hnsw.problem() {
        Some(problem) => Err(IndexError::InvalidRequest(format!(
            "HNSW settings: {problem}"
        ))),
        None => Ok(hnsw),
    }
}

/// What is wrong with an item's id, if anything.
pub fn id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("the id is empty".into());
    }
    if id.len() > MAX_ID_BYTES {
        return Some(format!("the id is {} bytes, over {MAX_ID_BYTES}", id.len()));
    }
    None
}

/// What is wrong with metadata (an item's, or a filter), if anything.
pub fn metadata_problem(metadata: &Metadata) -> Option<String> {
    if metadata.len() > MAX_METADATA_PAIRS {
        return Some(format!(
            "{} metadata pairs, over {MAX_METADATA_PAIRS}",
            metadata.len()
        ));
    }
    let pair = metadata.iter().find_map(|(k, v)| {
        if k.is_empty() {
            Some("a metadata key is empty".into())
        } else if k.len() > MAX_METADATA_BYTES || v.len() > MAX_METADATA_BYTES {
            Some(format!(
                "metadata key {:?}…: keys and values are at most {MAX_METADATA_BYTES} bytes",
                k.chars().take(32).collect::<String>()
            ))
        } else {
            None
        }
    });
    if pair.is_some() {
        return pair;
    }
    let json = serde_json::to_vec(metadata)
        .expect("metadata serialises")
        .len();
    (json > MAX_METADATA_JSON_BYTES)
        .then(|| format!("the metadata is {json} bytes as JSON; at most {MAX_METADATA_JSON_BYTES}"))
}

/// The vector scaled to unit length, or why it cannot be.
pub fn unit_vector(mut values: Vec<f32>, dim: usize) -> Result<Vec<f32>, String> {
    if values.len() != dim {
        return Err(format!(
            "the vector has {} values; the collection's have {dim}",
            values.len()
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!("the vector's value {i} is {}", values[i]));
    }
    let norm = dot(&values, &values).sqrt();
    if !norm.is_normal() {
        return Err(
            "the vector cannot be normalised: it is zero, or its values are too large".into(),
        );
    }
    values.iter_mut().for_each(|v| *v /= norm);
    Ok(values)
}
