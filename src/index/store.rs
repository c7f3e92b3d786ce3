//! One collection in memory: its items, an HNSW graph over their vectors, and the maps around it.
//!
//! hnsw_rs cannot delete or update a point, so every write adds a point under a new slot number
//! (hnsw_rs's data id) and a replaced or deleted item leaves a tombstone: its slot is empty and
//! searches skip it until the collection is rebuilt from its live items.
//!
//! hnsw_rs builds the graph, but searches go to a flat copy of it ([`FlatGraph`], several times
//! faster). The copy covers the slots that existed when it was made; the slots added since (the
//! tail) are scanned exactly and merged in, and once the tail is long enough to slow searches
//! down, the writer copies the graph again ([`Store::copy_is_stale`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use hnsw_rs::hnsw::Hnsw;

use crate::ann::{dot, reserve_in_huge_pages, FlatGraph, HnswSettings, UnitCosine};

pub type Metadata = BTreeMap<String, String>;

/// An item as stored: its vector is finite and of unit length.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: String,
    pub metadata: Metadata,
    pub vector: Vec<f32>,
    /// The text it was embedded from, when it was upserted as a text.
    pub text: Option<String>,
}

/// A live item's slot.
#[derive(Debug, Clone)]
struct Slot {
    id: String,
    metadata: Metadata,
    text: Option<String>,
}

/// A search.
pub struct Query<'a> {
    /// Unit length, the collection's dimension.
    pub vector: &'a [f32],
    pub top_k: usize,
    pub ef_search: usize,
    /// Every pair must be in an item's metadata.
    pub filter: &'a Metadata,
    /// An item left out of the hits (the query's own, for a query by id).
    pub exclude: Option<&'a str>,
    /// Filters matching at most this many items, and collections this small, are scanned exactly.
    pub exact_scan_max: usize,
    /// The graph's links per node (its m), which sets what a filtered graph search costs.
    pub links: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub score: f32,
    pub metadata: Metadata,
    pub text: Option<String>,
}

#[derive(Debug, Default)]
pub struct Found {
    pub hits: Vec<Hit>,
    /// Answered by scanning, not by the graph.
    pub exact: bool,
}

pub struct Store {
    dim: usize,
    /// Takes the writes, and is what snapshots store.
    hnsw: Hnsw<'static, f32, UnitCosine>,
    /// What searches walk: `hnsw` as it was over slots 0..flat.len().
    flat: FlatGraph,
    /// By slot; None: a tombstone.
    slots: Vec<Option<Slot>>,
    /// `dim` values per slot; a tombstone's stay until the next rebuild, since the graph still
    /// routes searches through it.
    vectors: Vec<f32>,
    /// Ordered, so that items can be paged through by id.
    ids: BTreeMap<String, usize>,
    /// key -> value -> live slots with that pair.
    postings: HashMap<String, HashMap<String, BTreeSet<usize>>>,
}

/// hnsw_rs caps the layers at 16; more than the graph needs costs nothing.
const MAX_LAYERS: usize = 16;

/// The graph is copied again once more slots than this, or than 1% of all slots, are outside the
/// copy: a balance between writes and searches. Measured on 512 dimensions, a copy takes about
/// 3 µs per slot (0.3 s for 100,000, as long as about 100 insertions into hnsw_rs), so copying
/// every 1% adds about a tenth to the cost of a write; scanning the tail takes about 0.3 µs per
/// slot, so at 1% of 100,000 slots it adds about a quarter to a search at the default ef_search.
const TAIL_MIN: usize = 256;

impl Store {
    pub fn new(dim: usize, settings: HnswSettings) -> Self {
        Self::with_graph(dim, new_graph(&settings, 0))
    }

    fn with_graph(dim: usize, hnsw: Hnsw<'static, f32, UnitCosine>) -> Self {
        Self {
            dim,
            hnsw,
            flat: FlatGraph::default(),
            slots: Vec::new(),
            vectors: Vec::new(),
            ids: BTreeMap::new(),
            postings: HashMap::new(),
        }
    }

    /// A store holding `items` (distinct ids) and no tombstones; the graph is built in parallel.
    pub fn build(dim: usize, settings: HnswSettings, items: Vec<Item>) -> Self {
        let mut store = Self::with_graph(dim, new_graph(&settings, items.len()));
        store.reserve_vectors(items.len());
        for item in items {
            store.place(item);
        }
        let rows: Vec<(&[f32], usize)> = store.vectors.chunks_exact(dim).zip(0..).collect();
        store.hnsw.parallel_insert_slice(&rows);
        store.flatten();
        store
    }

    /// A store from a snapshot: slots as they were (None: a tombstone) and the graph over them.
    pub fn restore(
        dim: usize,
        settings: HnswSettings,
        slots: Vec<Option<Item>>,
        hnsw: Option<Hnsw<'static, f32, UnitCosine>>,
    ) -> Self {
        let hnsw = hnsw.unwrap_or_else(|| new_graph(&settings, 0));
        let mut store = Self::with_graph(dim, hnsw);
        store.reserve_vectors(slots.len());
        for slot in slots {
            match slot {
                Some(item) => {
                    store.place(item);
                }
                None => {
                    store.slots.push(None);
                    store.vectors.resize(store.vectors.len() + dim, 0.0);
                }
            }
        }
        store.recover_tombstone_vectors();
        store.flatten();
        store
    }

    /// Snapshots keep no vectors for tombstones, but the flat graph reads every node's vector
    /// from `vectors`: one left at zero would misdirect searches passing through it. hnsw_rs's
    /// graph still has them.
    fn recover_tombstone_vectors(&mut self) {
        if self.tombstones() == 0 || self.hnsw.get_nb_point() == 0 {
            return;
        }
        let indexation = self.hnsw.get_point_indexation();
        for level in 0..=indexation.get_max_level_observed() as usize {
            for point in indexation.get_layer_iterator(level) {
                let slot = point.get_origin_id();
                if self.slots.get(slot).is_some_and(Option::is_none) {
                    self.vectors[slot * self.dim..(slot + 1) * self.dim]
                        .copy_from_slice(point.get_v());
                }
            }
        }
    }

    /// Room for `slots` more vectors, in memory asked to be backed by huge pages, since searches
    /// read the vectors at random.
    fn reserve_vectors(&mut self, slots: usize) {
        reserve_in_huge_pages(&mut self.vectors, slots * self.dim);
    }

    /// Copies the graph as it is now, so that searches walk every slot's links.
    fn flatten(&mut self) {
        self.flat = self.copy_graph();
    }

    /// Whether the tail has grown long enough to slow searches down more than copying the graph
    /// again would cost.
    pub fn copy_is_stale(&self) -> bool {
        self.tail().len() > TAIL_MIN.max(self.slots.len() / 100)
    }

    /// A copy of the graph as it is now, for [`Self::use_copy`]: it can be made under a read
    /// lock, while searches go on.
    pub fn copy_graph(&self) -> FlatGraph {
        FlatGraph::from_hnsw(&self.hnsw)
    }

    /// Makes searches walk `flat`, a copy of this store's graph made since its last rebuild:
    /// slots added since the copy are in the tail. A copy of another store's graph would send
    /// searches to the wrong items: the caller holds writes off between the copy and this.
    pub fn use_copy(&mut self, flat: FlatGraph) {
        assert!(flat.len() <= self.slots.len(), "a copy of another graph");
        self.flat = flat;
    }

    /// Copies the graph again if the copy is stale: for a store that no search is waiting on.
    pub fn refresh_copy(&mut self) {
        if self.copy_is_stale() {
            self.flatten();
        }
    }

    /// The slots searches scan rather than walk: those added since the graph was copied.
    fn tail(&self) -> std::ops::Range<usize> {
        self.flat.len().min(self.slots.len())..self.slots.len()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn hnsw(&self) -> &Hnsw<'static, f32, UnitCosine> {
        &self.hnsw
    }

    /// Live items.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Slots in the graph, tombstones included.
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub fn tombstones(&self) -> usize {
        self.slots.len() - self.ids.len()
    }

    pub fn get(&self, id: &str) -> Option<Item> {
        self.ids.get(id).map(|&slot| self.item(slot))
    }

    /// A live slot's item.
    fn item(&self, slot: usize) -> Item {
        let s = self.slots[slot].as_ref().expect("a live slot");
        Item {
            id: s.id.clone(),
            metadata: s.metadata.clone(),
            vector: self.vector(slot).to_vec(),
            text: s.text.clone(),
        }
    }

    /// Up to `limit` live items that pass the filter, in id order, from the first id after
    /// `after`. A selective filter pages through its posting list rather than every id.
    pub fn page(&self, after: Option<&str>, filter: &Metadata, limit: usize) -> Vec<Item> {
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let passes = |slot: &usize| self.passes_filter(*slot, filter);
        let slots: Vec<usize> = match self.candidates(filter) {
            // Sorting the matches beats walking ids past many items that do not match.
            Some(candidates) if candidates.len() < self.len() / 8 => {
                let mut ids: Vec<(&str, usize)> = candidates
                    .iter()
                    .filter(|slot| passes(slot))
                    .map(|&slot| (self.slots[slot].as_ref().expect("live").id.as_str(), slot))
                    .filter(|(id, _)| after.is_none_or(|after| *id > after))
                    .collect();
                ids.sort_unstable();
                ids.into_iter().take(limit).map(|(_, slot)| slot).collect()
            }
            _ => self
                .ids
                .range::<str, _>((start, Bound::Unbounded))
                .map(|(_, &slot)| slot)
                .filter(passes)
                .take(limit)
                .collect(),
        };
        slots.into_iter().map(|slot| self.item(slot)).collect()
    }

    /// The ids of every live item that passes the (non-empty) filter.
    pub fn matching(&self, filter: &Metadata) -> Vec<String> {
        let Some(candidates) = self.candidates(filter) else {
            return self.ids.keys().cloned().collect();
        };
        candidates
            .iter()
            .filter(|&&slot| self.passes_filter(slot, filter))
            .map(|&slot| self.slots[slot].as_ref().expect("live").id.clone())
            .collect()
    }

    fn vector(&self, slot: usize) -> &[f32] {
        &self.vectors[slot * self.dim..(slot + 1) * self.dim]
    }

    /// Every slot in order, None for tombstones: what a snapshot stores.
    pub fn slots(&self) -> impl Iterator<Item = Option<Item>> + '_ {
        (0..self.slots.len()).map(|slot| self.slots[slot].as_ref().map(|_| self.item(slot)))
    }

    /// The live items: what a rebuild starts from.
    pub fn items(&self) -> Vec<Item> {
        let mut live: Vec<usize> = self.ids.values().copied().collect();
        live.sort_unstable();
        live.into_iter().map(|slot| self.item(slot)).collect()
    }

    /// Adds the item (replacing any with its id) and returns whether it replaced one.
    pub fn upsert(&mut self, item: Item) -> bool {
        let (replaced, slot) = self.add(item);
        self.link(slot);
        replaced
    }

    /// [`Self::upsert`] but for the graph: the item gets a slot in the tail, where searches find
    /// it, and [`Self::link`] then puts that slot into the graph. Returns whether it replaced an
    /// item, and its slot.
    pub fn add(&mut self, item: Item) -> (bool, usize) {
        let replaced = self.remove(&item.id);
        (replaced, self.place(item))
    }

    /// Inserts an added slot into hnsw_rs's graph: milliseconds in a large graph, but searches
    /// read only the flat copy and the tail, not this graph, so it can run under a read lock
    /// while they go on. The caller keeps other writes out until it returns.
    pub fn link(&self, slot: usize) {
        self.hnsw
            .insert_slice((&self.vectors[slot * self.dim..(slot + 1) * self.dim], slot));
    }

    /// Removes the item; false if there was none.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.ids.remove(id) else {
            return false;
        };
        let old = self.slots[slot].take().expect("a live slot");
        for (k, v) in &old.metadata {
            let values = self.postings.get_mut(k).expect("posted");
            let slots = values.get_mut(v).expect("posted");
            slots.remove(&slot);
            if slots.is_empty() {
                values.remove(v);
                if values.is_empty() {
                    self.postings.remove(k);
                }
            }
        }
        true
    }

    /// Gives the item the next slot, outside the graph.
    fn place(&mut self, item: Item) -> usize {
        let slot = self.slots.len();
        for (k, v) in &item.metadata {
            self.postings
                .entry(k.clone())
                .or_default()
                .entry(v.clone())
                .or_default()
                .insert(slot);
        }
        if self.vectors.capacity() - self.vectors.len() < self.dim {
            self.reserve_vectors(self.slots.len().max(64));
        }
        self.vectors.extend_from_slice(&item.vector);
        self.ids.insert(item.id.clone(), slot);
        self.slots.push(Some(Slot {
            id: item.id,
            metadata: item.metadata,
            text: item.text,
        }));
        slot
    }

    /// A live item that passes the filter and is not the excluded one.
    fn matches(&self, slot: usize, query: &Query) -> bool {
        self.passes_filter(slot, query.filter)
            && self.slots[slot]
                .as_ref()
                .is_some_and(|s| query.exclude != Some(s.id.as_str()))
    }

    /// A live item whose metadata has every pair of the filter.
    fn passes_filter(&self, slot: usize, filter: &Metadata) -> bool {
        self.slots[slot]
            .as_ref()
            .is_some_and(|s| filter.iter().all(|(k, v)| s.metadata.get(k) == Some(v)))
    }

    /// The live slots that can match the filter: the shortest posting list among its pairs.
    /// None: no filter, every live slot can.
    fn candidates(&self, filter: &Metadata) -> Option<&BTreeSet<usize>> {
        static NONE: BTreeSet<usize> = BTreeSet::new();
        filter
            .iter()
            .map(|(k, v)| {
                self.postings
                    .get(k)
                    .and_then(|values| values.get(v))
                    .unwrap_or(&NONE)
            })
            .min_by_key(|slots| slots.len())
    }

    pub fn search(&self, query: &Query) -> Found {
        let candidates = self.candidates(query.filter);
        let passes = |slot: usize| self.passes_filter(slot, query.filter);
        // How many live items pass the filter, counted over the shortest posting list.
        let matching = match candidates {
            None => self.len(),
            Some(slots) if query.filter.len() == 1 => slots.len(),
            Some(slots) => slots.iter().filter(|&&s| passes(s)).count(),
        };
        let excluded = query
            .exclude
            .and_then(|id| self.ids.get(id))
            .is_some_and(|&slot| passes(slot));
        let wanted = query.top_k.min(matching - usize::from(excluded));
        if wanted == 0 {
            return Found {
                hits: Vec::new(),
                exact: true,
            };
        }
        let ef = query.ef_search.max(query.top_k);
        // A graph search for a filter that lets a share s of the items through visits about
        // ef·m/s points; a scan visits the matches. Scan when that is fewer (matches² ≤
        // ef·m·items), and whenever few items match.
        let scan_below = match query.filter.is_empty() {
            true => query.exact_scan_max,
            false => query
                .exact_scan_max
                .max(((ef * query.links * self.len()) as f64).sqrt() as usize),
        };
        if matching <= scan_below {
            return self.scan(query, candidates);
        }
        let score = |slots: Vec<usize>| -> Vec<(usize, f32)> {
            slots
                .into_iter()
                .filter(|&slot| self.matches(slot, query))
                .map(|slot| (slot, dot(query.vector, self.vector(slot))))
                .collect()
        };
        if query.filter.is_empty() {
            // Only tombstones and the query's own item to skip: an unfiltered search (a filtered
            // one explores further) asked for enough extra neighbours usually does.
            let extra = usize::from(query.exclude.is_some()) + self.tombstones().min(query.top_k);
            let k = query.top_k + extra;
            let hits = score(self.graph_search(query.vector, k, ef.max(k), None));
            if hits.len() >= wanted {
                return Found {
                    hits: self.ranked(hits, query.top_k),
                    exact: false,
                };
            }
        }
        let keep = |slot: usize| self.matches(slot, query);
        let hits = score(self.graph_search(query.vector, query.top_k, ef, Some(&keep)));
        if hits.len() < wanted {
            // The graph search ran out of matching candidates (a selective filter far from the
            // query): the hits exist, so find them by scanning.
            return self.scan(query, candidates);
        }
        Found {
            hits: self.ranked(hits, query.top_k),
            exact: false,
        }
    }

    /// The slots the flat graph finds, then every slot of the tail, for the caller to filter and
    /// rank: the tail is short enough to scan, and scanning it is exact.
    fn graph_search(
        &self,
        vector: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&dyn Fn(usize) -> bool>,
    ) -> Vec<usize> {
        let found = self.flat.search(&self.vectors, vector, k, ef, keep);
        found
            .into_iter()
            .map(|(slot, _)| slot)
            .chain(self.tail())
            .collect()
    }

    /// Exact search over the candidates (or every slot).
    fn scan(&self, query: &Query, candidates: Option<&BTreeSet<usize>>) -> Found {
        let score = |slot: usize| (slot, dot(query.vector, self.vector(slot)));
        let scored: Vec<(usize, f32)> = match candidates {
            Some(slots) => slots
                .iter()
                .copied()
                .filter(|&s| self.matches(s, query))
                .map(score)
                .collect(),
            None => (0..self.slots.len())
                .filter(|&s| self.matches(s, query))
                .map(score)
                .collect(),
        };
        Found {
            hits: self.ranked(scored, query.top_k),
            exact: true,
        }
    }

    /// The best `k`, best first; ties broken by slot so results are deterministic.
    fn ranked(&self, mut scored: Vec<(usize, f32)>, k: usize) -> Vec<Hit> {
        let order = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if scored.len() > k {
            scored.select_nth_unstable_by(k - 1, order);
            scored.truncate(k);
        }
        scored.sort_unstable_by(order);
        scored
            .into_iter()
            .map(|(slot, score)| {
                let s = self.slots[slot].as_ref().expect("a live slot");
                Hit {
                    id: s.id.clone(),
                    score,
                    metadata: s.metadata.clone(),
                    text: s.text.clone(),
                }
            })
            .collect()
    }
}

fn new_graph(settings: &HnswSettings, capacity: usize) -> Hnsw<'static, f32, UnitCosine> {
    Hnsw::new(
        settings.m,
        capacity.max(1024),
        MAX_LAYERS,
        settings.ef_construction,
        UnitCosine,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn unit(rng: &mut SplitMix64, dim: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..dim).map(|_| rng.unit() as f32 - 0.5).collect();
        let norm = dot(&v, &v).sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    fn item(id: usize, vector: Vec<f32>) -> Item {
        Item {
            id: format!("item-{id}"),
            metadata: [
                ("parity".to_string(), (id % 2).to_string()),
                ("tenth".to_string(), (id % 10).to_string()),
            ]
            .into(),
            vector,
            text: id.is_multiple_of(3).then(|| format!("text {id}")),
        }
    }

    fn query<'a>(vector: &'a [f32], filter: &'a Metadata, exact_scan_max: usize) -> Query<'a> {
        Query {
            vector,
            top_k: 10,
            ef_search: 64,
            filter,
            exclude: None,
            exact_scan_max,
            // Small enough that filters matching a sixth of 2000 items walk the graph.
            links: 1,
        }
    }

    fn ids(found: &Found) -> Vec<&str> {
        found.hits.iter().map(|h| h.id.as_str()).collect()
    }

    const DIM: usize = 16;

    fn filled(count: usize) -> (Store, Vec<Vec<f32>>) {
        let mut rng = SplitMix64::new(7);
        let vectors: Vec<Vec<f32>> = (0..count).map(|_| unit(&mut rng, DIM)).collect();
        let mut store = Store::new(DIM, HnswSettings::default());
        for (i, v) in vectors.iter().enumerate() {
            assert!(!store.upsert(item(i, v.clone())));
            store.refresh_copy();
        }
        (store, vectors)
    }

    #[test]
    fn graph_search_agrees_with_an_exact_scan() {
        let (store, vectors) = filled(2000);
        let none = Metadata::new();
        for v in vectors.iter().step_by(97) {
            let graph = store.search(&query(v, &none, 0));
            let exact = store.search(&query(v, &none, usize::MAX));
            assert!(!graph.exact && exact.exact);
            assert_eq!(ids(&graph), ids(&exact));
            assert!((graph.hits[0].score - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn filters_restrict_and_still_fill_top_k() {
        let (store, vectors) = filled(2000);
        for (filter, expected) in [
            (vec![("parity", "1")], 10),
            (vec![("parity", "1"), ("tenth", "3")], 10),
            (vec![("parity", "1"), ("tenth", "4")], 0),
            (vec![("colour", "red")], 0),
        ] {
            let filter: Metadata = filter
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            for exact_scan_max in [0, 100, usize::MAX] {
                let found = store.search(&query(&vectors[0], &filter, exact_scan_max));
                assert_eq!(found.hits.len(), expected, "{filter:?} {exact_scan_max}");
                for hit in &found.hits {
                    for (k, v) in &filter {
                        assert_eq!(hit.metadata.get(k), Some(v));
                    }
                }
                let exact = store.search(&query(&vectors[0], &filter, usize::MAX));
                assert_eq!(ids(&found), ids(&exact), "{filter:?} {exact_scan_max}");
            }
        }
    }

    #[test]
    fn upsert_replaces_and_remove_leaves_tombstones_that_searches_skip() {
        let (mut store, vectors) = filled(300);
        let none = Metadata::new();
        let mut q = query(&vectors[5], &none, 0);
        assert_eq!(store.search(&q).hits[0].id, "item-5");
        assert!(store.upsert(item(5, vectors[6].clone())));
        assert!(store.remove("item-6"));
        assert!(!store.remove("item-6"));
        assert_eq!((store.len(), store.tombstones()), (299, 2));
        q.vector = &vectors[6];
        let found = store.search(&q);
        assert_eq!(found.hits[0].id, "item-5", "item-5 now has item-6's vector");
        assert!(found.hits.iter().all(|h| h.id != "item-6"));
        assert_eq!(store.get("item-5").unwrap().vector, vectors[6]);
        q.exclude = Some("item-5");
        assert!(store.search(&q).hits.iter().all(|h| h.id != "item-5"));
        let rebuilt = Store::build(DIM, HnswSettings::default(), store.items());
        assert_eq!((rebuilt.len(), rebuilt.tombstones()), (299, 0));
        q.exclude = None;
        assert_eq!(ids(&rebuilt.search(&q)), ids(&store.search(&q)));
    }

    #[test]
    fn the_tail_is_scanned_until_the_graph_is_copied_again() {
        let (mut store, vectors) = filled(300);
        // Copied when the tail first passed TAIL_MIN, not since.
        assert_eq!(store.flat.len(), TAIL_MIN + 1);
        let none = Metadata::new();
        let odd: Metadata = [("parity".to_string(), "1".to_string())].into();
        for slot in [0, 150, 258, 299] {
            for filter in [&none, &odd] {
                let found = store.search(&query(&vectors[slot], filter, 0));
                let exact = store.search(&query(&vectors[slot], filter, usize::MAX));
                assert!(!found.exact);
                assert_eq!(ids(&found), ids(&exact), "slot {slot} {filter:?}");
            }
        }
        let mut rng = SplitMix64::new(8);
        for i in 300..600 {
            store.upsert(item(i, unit(&mut rng, DIM)));
            store.refresh_copy();
        }
        assert!(store.tail().len() <= TAIL_MIN);
        assert!(store.flat.len() > TAIL_MIN + 1);
    }

    #[test]
    fn a_restored_store_has_its_tombstones_vectors_back() {
        let (mut store, vectors) = filled(300);
        assert!(store.remove("item-3") && store.remove("item-280"));
        let dir = std::env::temp_dir().join(format!("clipd-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        crate::index::snapshot::write(&dir, 1, &store).unwrap();
        let (_, restored) = crate::index::snapshot::load(&dir, HnswSettings::default())
            .unwrap()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(restored.vectors, store.vectors);
        assert_eq!((restored.flat.len(), restored.tail().len()), (300, 0));
        let none = Metadata::new();
        for v in vectors.iter().step_by(29) {
            let q = query(v, &none, 0);
            assert_eq!(ids(&restored.search(&q)), ids(&store.search(&q)));
        }
    }

    #[test]
    fn removing_everything_leaves_nothing_to_find() {
        let (mut store, vectors) = filled(50);
        for i in 0..50 {
            assert!(store.remove(&format!("item-{i}")));
        }
        assert!(store.postings.is_empty());
        let none = Metadata::new();
        assert!(store.search(&query(&vectors[0], &none, 0)).hits.is_empty());
    }

    /// Every page walk, filtered (selective or not) or not, visits each matching item once, in
    /// id order, whatever the page size.
    #[test]
    fn pages_visit_each_matching_item_once_in_id_order() {
        let (mut store, _) = filled(300);
        store.remove("item-7");
        let filters: [&[(&str, &str)]; 4] = [
            &[],
            &[("parity", "1")],
            &[("tenth", "7")],
            &[("parity", "1"), ("tenth", "3")],
        ];
        for pairs in filters {
            let filter: Metadata = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut expected: Vec<String> = store
                .items()
                .into_iter()
                .filter(|i| filter.iter().all(|(k, v)| i.metadata.get(k) == Some(v)))
                .map(|i| i.id)
                .collect();
            expected.sort();
            for size in [1, 7, 1000] {
                let mut walked = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = store.page(after.as_deref(), &filter, size);
                    assert!(page.len() <= size);
                    let Some(last) = page.last() else { break };
                    after = Some(last.id.clone());
                    walked.extend(page.into_iter().map(|i| i.id));
                }
                assert_eq!(walked, expected, "filter {pairs:?}, pages of {size}");
            }
            let mut matching = store.matching(&filter);
            matching.sort();
            assert_eq!(matching, expected, "filter {pairs:?}");
        }
        assert_eq!(store.get("item-3").unwrap().text.as_deref(), Some("text 3"));
        assert_eq!(store.get("item-4").unwrap().text, None);
    }
}
