//! A flat, read-only copy of a finished hnsw_rs graph, searched instead of it.
//!
//! hnsw_rs builds a good graph but searches it slowly: every point sits behind an `Arc` with its
//! links in a locked vector of more `Arc`s, and every search allocates a `HashMap` of the points it
//! visited and two `Arc`s per accepted candidate. On 100,000 vectors of 512 dimensions its searches
//! were mostly pointer chasing, at a quarter of hnswlib's speed. The same links in flat arrays,
//! with a visited set reused from search to search and the next vectors prefetched while one is
//! compared, answered 4.3 to 4.6 times as many queries at the same recall: 0.83 to 1.32 times
//! hnswlib's rate for ef_search 16 to 256, 1.03 at the default 128 (benches/index.rs).
//!
//! hnsw_rs stays the builder (and what snapshots store); a graph it has grown since is copied
//! again. Nodes are hnsw_rs's data ids, and the vectors are read from a row matrix indexed by data
//! id that the caller passes to each search: the callers keep one anyway, and a third copy of the
//! vectors (after theirs and hnsw_rs's) would cost as much memory as the rest of the index.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::{Hnsw, Neighbour};

use super::dot;

/// In `upper_at`: a node only on layer 0.
const GROUND: u32 = u32::MAX;

#[derive(Debug, Default)]
pub struct FlatGraph {
    dim: usize,
    /// Nodes are data ids 0..len; an id missing from hnsw_rs's graph is a node without links.
    len: usize,
    /// `stride0` values per node: how many layer-0 neighbours it has, then their ids. One array
    /// and a fixed stride: a node's links are found by multiplication, and sit in one or two
    /// cache lines.
    layer0: Vec<u32>,
    stride0: usize,
    /// Per node, where its upper layers start in `upper`; GROUND for most nodes.
    upper_at: Vec<u32>,
    /// Per node above layer 0: its level, then for each of layers 1..=level, `stride_up` values
    /// laid out like a node's in `layer0`.
    upper: Vec<u32>,
    stride_up: usize,
    /// Where searches start, and its level: the top of the graph.
    entry: Option<(u32, usize)>,
}

impl FlatGraph {
    /// A copy of `hnsw`'s graph as it is now; later insertions into it are not seen.
    pub fn from_hnsw<D: Distance<f32> + Send + Sync>(hnsw: &Hnsw<'_, f32, D>) -> Self {
        let indexation = hnsw.get_point_indexation();
        // Nothing to enter by (and hnsw_rs's iterator over all points panics on an empty graph).
        if hnsw.get_nb_point() == 0 {
            return Self::default();
        }
        let top = indexation.get_max_level_observed() as usize;
        // hnsw_rs hands m back as a u8, so 256 (its largest) comes back as 0. It keeps at most 2m
        // links per point on layer 0 and m above; a longer list would be cut short, farthest
        // links first (hnsw_rs keeps them sorted), rather than overrun its neighbour's room.
        let m = match hnsw.get_max_nb_connection() {
            0 => 256,
            m => m as usize,
        };
        let (stride0, stride_up) = (2 * m + 1, m + 1);
        let points = || (0..=top).flat_map(|level| indexation.get_layer_iterator(level));
        let len = points()
            .map(|p| p.get_origin_id())
            .max()
            .map_or(0, |id| id + 1);
        assert!(len < GROUND as usize, "more points than u32 ids");
        let mut layer0 = Vec::new();
        reserve_in_huge_pages(&mut layer0, len * stride0);
        layer0.resize(len * stride0, 0);
        let mut graph = Self {
            dim: indexation.get_data_dimension(),
            len,
            layer0,
            stride0,
            upper_at: vec![GROUND; len],
            upper: Vec::new(),
            stride_up,
            entry: None,
        };
        // hnsw_rs's layer lists hold each point once, on its own level.
        for level in 0..=top {
            for point in indexation.get_layer_iterator(level) {
                let id = point.get_origin_id();
                let links = point.get_neighborhood_id();
                copy_links(
                    &links[0],
                    &mut graph.layer0[id * stride0..(id + 1) * stride0],
                );
                if level > 0 {
                    graph.upper_at[id] = graph.upper.len() as u32;
                    graph.upper.push(level as u32);
                    // A point's lists above its own level hold links hnsw_rs collected on its way
                    // down while inserting it; no search reaches them.
                    for layer_links in &links[1..=level] {
                        let start = graph.upper.len();
                        graph.upper.resize(start + stride_up, 0);
                        copy_links(layer_links, &mut graph.upper[start..]);
                    }
                }
                // Any point on the top layer reaches the rest of it; hnsw_rs does not say
                // which one it starts from.
                if level == top && graph.entry.is_none() {
                    graph.entry = Some((id as u32, top));
                }
            }
        }
        graph
    }

    /// Data ids 0..len are nodes of the graph (some maybe without links).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.entry.is_none()
    }

    /// The `k` nodes nearest `query` (by 1 - dot product) that `keep` accepts, nearest first, as
    /// (data id, distance), from a search that keeps the `ef` best (at least `k`) candidates.
    ///
    /// `vectors` holds `dim` values per data id, at least for ids 0..len. Nodes that `keep`
    /// rejects are still walked through, as in hnsw_rs, but never returned; the search stops
    /// once its nearest unexplored candidate is farther than the worst of `ef` accepted nodes, or
    /// when it runs out of candidates (a filter that accepts fewer than `ef` nodes walks every
    /// node reachable from the entry).
    pub fn search(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(usize) -> bool>,
    ) -> Vec<(usize, f32)> {
        let Some(entry) = self.entry else {
            return Vec::new();
        };
        if k == 0 {
            return Vec::new();
        }
        assert_eq!(query.len(), self.dim, "the query's dimension");
        assert!(
            vectors.len() >= self.len * self.dim,
            "a vector for every node"
        );
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.search_with(&mut scratch, vectors, query, k, ef, keep, entry),
            // Only a `keep` that searches again gets here.
            Err(_) => self.search_with(&mut Scratch::default(), vectors, query, k, ef, keep, entry),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn search_with(
        &self,
        scratch: &mut Scratch,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(usize) -> bool>,
        (entry, top): (u32, usize),
    ) -> Vec<(usize, f32)> {
        let ef = ef.max(k);
        let dim = self.dim;
        let row = |node: u32| &vectors[node as usize * dim..(node as usize + 1) * dim];
        let distance = |node: u32| 1.0 - dot(query, row(node));
        let kept = |node: u32| keep.is_none_or(|keep| keep(node as usize));

        // Greedy descent to the node nearest the query on layer 1, as hnsw_rs does (its layer
        // search with ef 1).
        let (mut near, mut near_d) = (entry, distance(entry));
        for layer in (1..=top).rev() {
            let mut moved = true;
            while moved {
                moved = false;
                let links = self.upper_links(near, layer);
                links.iter().for_each(|&n| prefetch(row(n)));
                for &n in links {
                    let d = distance(n);
                    if d < near_d {
                        (near, near_d) = (n, d);
                        moved = true;
                    }
                }
            }
        }

        let Scratch {
            visited,
            candidates,
            results,
            fresh,
        } = scratch;
        let stamp = visited.next(self.len);
        candidates.clear();
        results.clear();
        visited.marks[near as usize] = stamp;
        candidates.push(Reverse(Near(near_d, near)));
        if kept(near) {
            results.push(Near(near_d, near));
        }
        let worst = |results: &BinaryHeap<Near>| results.peek().map_or(f32::INFINITY, |w| w.0);
        while let Some(Reverse(Near(d, node))) = candidates.pop() {
            if results.len() >= ef && d > worst(results) {
                break;
            }
            // Marking first and comparing after lets the vectors ahead be prefetched.
            fresh.clear();
            for &n in self.links0(node) {
                let mark = &mut visited.marks[n as usize];
                if *mark != stamp {
                    *mark = stamp;
                    fresh.push(n);
                }
            }
            // The first line of every vector to compare, and the whole of the next one. Whole
            // vectors further ahead measured slower, not faster: at 2 KB each they fill the
            // core's few outstanding-miss buffers, and the prefetches themselves stall.
            fresh.iter().for_each(|&n| prefetch_first_line(row(n)));
            if let Some(&first) = fresh.first() {
                prefetch(row(first));
            }
            for (i, &n) in fresh.iter().enumerate() {
                if let Some(&next) = fresh.get(i + 1) {
                    prefetch(row(next));
                }
                let d = distance(n);
                if results.len() < ef || d < worst(results) {
                    candidates.push(Reverse(Near(d, n)));
                    if kept(n) {
                        results.push(Near(d, n));
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        let mut found: Vec<Near> = results.drain().collect();
        found.sort_unstable();
        found.truncate(k);
        // Never negative, like UnitCosine: rounding can put a vector's dot product with itself a
        // hair above 1.
        found
            .into_iter()
            .map(|Near(d, node)| (node as usize, d.max(0.0)))
            .collect()
    }

    fn links0(&self, node: u32) -> &[u32] {
        let start = node as usize * self.stride0;
        let count = self.layer0[start] as usize;
        &self.layer0[start + 1..start + 1 + count]
    }

    fn upper_links(&self, node: u32, layer: usize) -> &[u32] {
        let at = self.upper_at[node as usize];
        if at == GROUND || layer > self.upper[at as usize] as usize {
            return &[];
        }
        let start = at as usize + 1 + (layer - 1) * self.stride_up;
        let count = self.upper[start] as usize;
        &self.upper[start + 1..start + 1 + count]
    }
}

/// Writes the count and as many ids as fit.
fn copy_links(links: &[Neighbour], out: &mut [u32]) {
    let (count, ids) = out.split_first_mut().expect("room for the count");
    *count = links.len().min(ids.len()) as u32;
    for (id, link) in ids.iter_mut().zip(links) {
        *id = link.d_id as u32;
    }
}

/// Asks for a vector to be brought into the cache.
#[inline(always)]
fn prefetch(row: &[f32]) {
    const LINE: usize = 64;
    let start = row.as_ptr().cast::<i8>();
    let skew = start as usize % LINE;
    let first = start.wrapping_sub(skew);
    for offset in (0..skew + std::mem::size_of_val(row)).step_by(LINE) {
        prefetch_line(first.wrapping_add(offset));
    }
}

/// Asks for the start of a vector to be brought into the cache.
#[inline(always)]
fn prefetch_first_line(row: &[f32]) {
    prefetch_line(row.as_ptr().cast());
}

#[inline(always)]
fn prefetch_line(address: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Reserves room for `additional` more values and asks Linux to back the memory of `values` (its
/// spare capacity included) with 2 MB pages, for the vectors and links that searches read at
/// random: with 4 KB pages nearly every vector read also misses the TLB, and a page walk is
/// dearer still in a virtual machine. Searches of 100,000 vectors of 512 dimensions measured
/// 5-10% faster, alternating with the same vectors in plain pages. Only memory not yet touched is
/// backed at once (the kernel merges touched pages in the background), hence the advice comes
/// with the reservation, before the values are written. A hint: a kernel that does not take it
/// changes nothing.
pub fn reserve_in_huge_pages<T>(values: &mut Vec<T>, additional: usize) {
    values.reserve_exact(additional);
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        const MADV_HUGEPAGE: std::ffi::c_int = 14;
        extern "C" {
            fn madvise(
                addr: *mut std::ffi::c_void,
                len: usize,
                advice: std::ffi::c_int,
            ) -> std::ffi::c_int;
        }
        let start = values.as_ptr() as usize;
        let end = start + values.capacity() * std::mem::size_of::<T>();
        // Only whole huge pages inside the allocation: the advice applies to whole pages.
        let (first, last) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if first < last {
            // SAFETY: the range lies inside the vector's allocation, and this advice changes
            // only how the memory is backed, never its contents.
            unsafe { madvise(first as *mut std::ffi::c_void, last - first, MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = values;
}

/// A candidate: its distance to the query, then its node, which breaks ties so that results do
/// not depend on the order the heap saw them in.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Near(f32, u32);

impl Eq for Near {}

impl PartialOrd for Near {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Near {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// A visited set cleared in O(1): a node is visited when its mark equals the current stamp.
#[derive(Default)]
struct Visited {
    marks: Vec<u32>,
    stamp: u32,
}

impl Visited {
    /// The stamp for a new search over `len` nodes.
    fn next(&mut self, len: usize) -> u32 {
        if self.marks.len() < len {
            self.marks.resize(len, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.marks.fill(0);
            self.stamp = 1;
        }
        self.stamp
    }
}

/// What a search needs besides the graph, kept from one search to the next on each thread: the
/// visited set alone would otherwise be allocated and zeroed per search, at a cost that grows
/// with the graph rather than with the search. It holds 4 bytes per node of the largest graph
/// the thread has searched.
#[derive(Default)]
struct Scratch {
    visited: Visited,
    candidates: BinaryHeap<Reverse<Near>>,
    results: BinaryHeap<Near>,
    /// The unvisited neighbours of the node being explored.
    fresh: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ann::UnitCosine;
    use crate::rng::SplitMix64;

    const DIM: usize = 24;

    fn unit_rows(count: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        let mut rows: Vec<f32> = (0..count * DIM)
            .map(|_| rng.range(-1.0, 1.0) as f32)
            .collect();
        for row in rows.chunks_exact_mut(DIM) {
            let norm = dot(row, row).sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        rows
    }

    fn graph(rows: &[f32], m: usize) -> Hnsw<'static, f32, UnitCosine> {
        let hnsw = Hnsw::new(m, rows.len() / DIM, 16, 100, UnitCosine);
        for (id, row) in rows.chunks_exact(DIM).enumerate() {
            hnsw.insert_slice((row, id));
        }
        hnsw
    }

    fn exact(rows: &[f32], query: &[f32], k: usize) -> Vec<usize> {
        let mut scored: Vec<(usize, f32)> = rows
            .chunks_exact(DIM)
            .map(|row| 1.0 - dot(query, row))
            .enumerate()
            .collect();
        scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        scored.into_iter().take(k).map(|(id, _)| id).collect()
    }

    fn recall(found: &[Vec<usize>], truth: &[Vec<usize>]) -> f64 {
        let hits: usize = found
            .iter()
            .zip(truth)
            .map(|(f, t)| f.iter().filter(|id| t.contains(id)).count())
            .sum();
        hits as f64 / truth.iter().map(Vec::len).sum::<usize>() as f64
    }

    #[test]
    fn finds_what_hnsw_rs_finds() {
        let rows = unit_rows(3000, 1);
        let hnsw = graph(&rows, 8);
        let flat = FlatGraph::from_hnsw(&hnsw);
        assert_eq!(flat.len(), 3000);
        let queries = unit_rows(200, 2);
        let k = 10;
        for ef in [10, 32, 100] {
            let (mut ours, mut theirs, mut truth) = (Vec::new(), Vec::new(), Vec::new());
            for query in queries.chunks_exact(DIM) {
                let found = flat.search(&rows, query, k, ef, None);
                assert_eq!(found.len(), k);
                assert!(found.windows(2).all(|w| w[0].1 <= w[1].1), "nearest first");
                for &(id, d) in &found {
                    let expected = UnitCosine.eval(query, &rows[id * DIM..(id + 1) * DIM]);
                    assert!((d - expected).abs() < 1e-6);
                }
                ours.push(found.into_iter().map(|(id, _)| id).collect());
                theirs.push(
                    hnsw.search(query, k, ef)
                        .into_iter()
                        .map(|n| n.d_id)
                        .collect(),
                );
                truth.push(exact(&rows, query, k));
            }
            let (ours, theirs) = (recall(&ours, &truth), recall(&theirs, &truth));
            assert!(ours >= theirs - 0.01, "ef {ef}: recall {ours} vs {theirs}");
        }
    }

    #[test]
    fn a_filter_is_respected_and_still_fills_k() {
        let rows = unit_rows(2000, 3);
        let hnsw = graph(&rows, 8);
        let flat = FlatGraph::from_hnsw(&hnsw);
        let query = &unit_rows(1, 4)[..];
        for modulus in [2, 7, 500, 3000] {
            let keep = |id: usize| id.is_multiple_of(modulus);
            let found = flat.search(&rows, query, 10, 40, Some(&keep));
            let expected = (2000usize).div_ceil(modulus).min(10);
            assert_eq!(found.len(), expected, "every {modulus}th");
            assert!(found.iter().all(|&(id, _)| keep(id)));
        }
        // A filter that accepts few nodes walks the whole graph, so finds exactly.
        let keep = |id: usize| id.is_multiple_of(500);
        let found: Vec<usize> = flat
            .search(&rows, query, 3, 10, Some(&keep))
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let mut wanted: Vec<(usize, f32)> = (0..2000)
            .filter(|&id| keep(id))
            .map(|id| (id, 1.0 - dot(query, &rows[id * DIM..(id + 1) * DIM])))
            .collect();
        wanted.sort_by(|a, b| a.1.total_cmp(&b.1));
        assert_eq!(
            found,
            wanted.iter().take(3).map(|w| w.0).collect::<Vec<_>>()
        );
        let none = |_: usize| false;
        assert!(flat.search(&rows, query, 10, 40, Some(&none)).is_empty());
    }

    #[test]
    fn an_empty_graph_finds_nothing() {
        let hnsw = Hnsw::<f32, UnitCosine>::new(8, 10, 16, 100, UnitCosine);
        let flat = FlatGraph::from_hnsw(&hnsw);
        assert!(flat.is_empty());
        assert_eq!(flat.len(), 0);
        assert!(flat.search(&[], &[0.0; DIM], 10, 10, None).is_empty());
    }

    #[test]
    fn k_beyond_the_graph_returns_every_node() {
        let rows = unit_rows(30, 5);
        let flat = FlatGraph::from_hnsw(&graph(&rows, 8));
        let query = &rows[..DIM];
        let found = flat.search(&rows, query, 100, 10, None);
        let mut ids: Vec<usize> = found.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids[0], 0);
        assert!(found[0].1 < 1e-6);
        ids.sort_unstable();
        assert_eq!(ids, (0..30).collect::<Vec<_>>());
        assert!(flat.search(&rows, query, 0, 10, None).is_empty());
    }

    #[test]
    fn one_point_is_found() {
        let rows = unit_rows(1, 6);
        let flat = FlatGraph::from_hnsw(&graph(&rows, 8));
        let found = flat.search(&rows, &rows, 5, 5, None);
        assert_eq!(found.len(), 1);
        assert!(found[0].0 == 0 && found[0].1 < 1e-6);
    }

    #[test]
    fn searches_share_a_visited_set_across_graphs_and_stamps() {
        let (small, large) = (unit_rows(50, 7), unit_rows(500, 8));
        let (a, b) = (
            FlatGraph::from_hnsw(&graph(&small, 8)),
            FlatGraph::from_hnsw(&graph(&large, 8)),
        );
        let query = &large[..DIM];
        let first = b.search(&large, query, 5, 20, None);
        SCRATCH.with(|s| s.borrow_mut().visited.stamp = u32::MAX - 1);
        for _ in 0..3 {
            a.search(&small, &small[..DIM], 5, 20, None);
            assert_eq!(b.search(&large, query, 5, 20, None), first);
        }
    }
}
