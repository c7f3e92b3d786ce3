//! Approximate nearest neighbours over unit vectors with `hnsw_rs`, by cosine similarity.

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;
use serde::{Deserialize, Serialize};

/// HNSW's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HnswSettings {
    /// Links per node (hnsw_rs's max_nb_connection): 4 to 256.
    pub m: usize,
    /// Candidates considered while inserting.
    pub ef_construction: usize,
    /// Candidates considered while searching (at least the number of results asked for).
    pub ef_search: usize,
}

impl Default for HnswSettings {
    fn default() -> Self {
        Self {
            m: 24,
            ef_construction: 200,
            ef_search: 128,
        }
    }
}

impl HnswSettings {
    /// What is wrong with the parameters, if anything: hnsw_rs exits the process for m > 256.
    pub fn problem(&self) -> Option<String> {
        if !(4..=256).contains(&self.m) {
            return Some(format!("m is {}; it must be 4 to 256", self.m));
        }
        if self.ef_construction < self.m {
            return Some(format!(
                "ef_construction is {}; it must be at least m ({})",
                self.ef_construction, self.m
            ));
        }
        if self.ef_search == 0 {
            return Some("ef_search must be at least 1".into());
        }
        None
    }
}

/// 1 - cosine for unit vectors, never negative: rounding can put the dot product of a vector with
/// itself a hair above 1, and hnsw_rs's own `DistDot` panics on that.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// An index of unit vectors, identified by their position in the list it was built from.
pub struct UnitIndex {
    hnsw: Hnsw<'static, f32, UnitCosine>,
    ef_search: usize,
}

impl UnitIndex {
    /// Builds the index from `dim`-sized rows of `matrix`, all finite and of unit length.
    pub fn build(matrix: &[f32], dim: usize, settings: &HnswSettings) -> Self {
        let count = matrix.len() / dim.max(1);
        let layers =
            16.min(((count.max(2) as f64).ln() / (settings.m as f64).ln()).ceil() as usize + 2);
        let mut hnsw = Hnsw::new(
            settings.m,
            count,
            layers,
            settings.ef_construction,
            UnitCosine,
        );
        let rows: Vec<(&[f32], usize)> = matrix.chunks_exact(dim).zip(0..).collect();
        hnsw.parallel_insert_slice(&rows);
        hnsw.set_searching_mode(true);
        Self {
            hnsw,
            ef_search: settings.ef_search,
        }
    }

    pub fn ef_search(&self) -> usize {
        self.ef_search
    }

    /// The ids of (about) the `k` rows most similar to `query`.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<usize> {
        self.hnsw
            .search(query, k, self.ef_search.max(k))
            .into_iter()
            .map(|n| n.d_id)
            .collect()
    }
}
