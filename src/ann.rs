//! Approximate nearest neighbours over unit vectors by cosine similarity: graphs built with
//! `hnsw_rs` and searched in a flat copy ([`FlatGraph`]).

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;
use serde::{Deserialize, Serialize};

mod flat;

pub use flat::{reserve_in_huge_pages, FlatGraph};

/// HNSW's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HnswSettings {
    /// Links per node (hnsw_rs's max_nb_connection): 4 to 255.
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
    /// What is wrong with the parameters, if anything. hnsw_rs exits the process for m > 256,
    /// and its dump keeps m in one byte: a graph with m 256 reloads with m 0 and links nothing
    /// inserted after a restart.
    pub fn problem(&self) -> Option<String> {
        if !(4..=255).contains(&self.m) {
            return Some(format!("m is {}; it must be 4 to 255", self.m));
        }
        if !(self.m..=MAX_EF).contains(&self.ef_construction) {
            return Some(format!(
                "ef_construction is {}; it must be m ({}) to {MAX_EF}",
                self.ef_construction, self.m
            ));
        }
        if !(1..=MAX_EF).contains(&self.ef_search) {
            return Some(format!(
                "ef_search is {}; it must be 1 to {MAX_EF}",
                self.ef_search
            ));
        }
        None
    }
}

/// The most candidates a search or an insertion may keep: hnsw_rs allocates room for all of them
/// up front, and beyond a few thousand a search is a slow exhaustive walk anyway.
pub const MAX_EF: usize = 4096;

/// 1 - cosine for unit vectors, never negative: rounding can put the dot product of a vector with
/// itself a hair above 1, and hnsw_rs's own `DistDot` panics on that.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// The dot product over the shorter of the two slices.
///
/// A plain iterator sum stays one scalar add at a time: Rust promises the sum in order, so LLVM may
/// not reassociate it into vector lanes. Summing into independent lanes is a different (and more
/// accurate, being closer to pairwise) rounding order that it can vectorise.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { dot_avx2_fma(a, b) };
    }
    dot_lanes::<false>(a, b)
}

/// Lanes summed separately: 8 AVX2 registers, enough to hide the FMA latency. LLVM's SLP
/// vectoriser only turned the accumulator array into whole registers from 64 lanes on (at 32 it
/// used 2-float halves); AVX-512 at 64 lanes measured no faster, since loading the stored vector
/// is the bound, so there is no AVX-512 variant.
const LANES: usize = 64;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes::<true>(a, b)
}

/// `FUSED` only where the target has FMA: elsewhere `mul_add` is a slow library call.
#[inline(always)]
fn dot_lanes<const FUSED: bool>(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a_chunks, a_tail) = a[..n].as_chunks::<LANES>();
    let (b_chunks, b_tail) = b[..n].as_chunks::<LANES>();
    let mut lanes = [0.0f32; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for i in 0..LANES {
            lanes[i] = if FUSED {
                x[i].mul_add(y[i], lanes[i])
            } else {
                lanes[i] + x[i] * y[i]
            };
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in a_tail.iter().zip(b_tail) {
        tail = if FUSED {
            x.mul_add(*y, tail)
        } else {
            tail + x * y
        };
    }
    // Folding whole registers first keeps the lanes in registers: halving the array in place
    // made LLVM spill it to the stack and reload it scalar by scalar.
    let mut eight = [0.0f32; 8];
    for register in lanes.as_chunks::<8>().0 {
        for i in 0..8 {
            eight[i] += register[i];
        }
    }
    let four = [
        eight[0] + eight[4],
        eight[1] + eight[5],
        eight[2] + eight[6],
        eight[3] + eight[7],
    ];
    ((four[0] + four[2]) + (four[1] + four[3])) + tail
}

/// An index of unit vectors, identified by their position in the list it was built from.
///
/// hnsw_rs builds the graph, which is then flattened and dropped: the index keeps the flat copy
/// and the vectors.
pub struct UnitIndex {
    vectors: Vec<f32>,
    graph: FlatGraph,
    ef_search: usize,
}

impl UnitIndex {
    /// Builds the index from `dim`-sized rows of `matrix`, all finite and of unit length.
    pub fn build(matrix: &[f32], dim: usize, settings: &HnswSettings) -> Self {
        let hnsw = Self::build_hnsw(matrix, dim, settings);
        Self::from_hnsw(&hnsw, matrix, dim, settings.ef_search)
    }

    /// [`Self::build`]'s first step, apart so that it can be timed apart: hnsw_rs's graph.
    pub fn build_hnsw(
        matrix: &[f32],
        dim: usize,
        settings: &HnswSettings,
    ) -> Hnsw<'static, f32, UnitCosine> {
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
        hnsw
    }

    /// [`Self::build`]'s second step: the index over `hnsw`, built from the same `matrix`.
    pub fn from_hnsw(
        hnsw: &Hnsw<'static, f32, UnitCosine>,
        matrix: &[f32],
        dim: usize,
        ef_search: usize,
    ) -> Self {
        let count = matrix.len() / dim.max(1);
        let mut vectors = Vec::new();
        reserve_in_huge_pages(&mut vectors, count * dim);
        vectors.extend_from_slice(&matrix[..count * dim]);
        Self {
            vectors,
            graph: FlatGraph::from_hnsw(hnsw),
            ef_search,
        }
    }

    pub fn ef_search(&self) -> usize {
        self.ef_search
    }

    /// The ids of (about) the `k` rows most similar to `query`.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<usize> {
        self.search_ef(query, k, self.ef_search)
    }

    /// [`Self::search`] with another `ef_search`: one built index can be measured at several.
    pub fn search_ef(&self, query: &[f32], k: usize, ef_search: usize) -> Vec<usize> {
        self.graph
            .search(&self.vectors, query, k, ef_search.max(k), None)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        (0..len).map(|_| rng.range(-1.0, 1.0) as f32).collect()
    }

    #[test]
    fn dot_is_within_rounding_of_an_exact_sum() {
        for len in [0, 1, 7, 17, 64, 512, 513] {
            let (a, b) = (vector(len, 1), vector(len, 2));
            let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let magnitude: f64 = a
                .iter()
                .zip(&b)
                .map(|(&x, &y)| (x as f64 * y as f64).abs())
                .sum();
            // The bound for any order of summation, up to the rounding of the result.
            let bound = len as f64 * f32::EPSILON as f64 * magnitude + exact.abs() * 1e-7;
            for (name, got) in [
                ("dot", dot(&a, &b)),
                ("portable", dot_lanes::<false>(&a, &b)),
            ] {
                let error = (got as f64 - exact).abs();
                assert!(error <= bound, "{name}, len {len}: {got} vs {exact}");
            }
        }
    }

    #[test]
    fn dot_stops_at_the_shorter_slice() {
        let (a, b) = (vector(100, 3), vector(70, 4));
        assert_eq!(dot(&a, &b), dot(&a[..70], &b));
    }

    #[test]
    fn unit_cosine_is_never_negative() {
        let mut a = vector(513, 5);
        let norm = dot(&a, &a).sqrt();
        a.iter_mut().for_each(|x| *x /= norm * 0.999_999);
        assert_eq!(UnitCosine.eval(&a, &a), 0.0);
    }
}
