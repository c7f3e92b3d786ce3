//! One collection on disk and in memory: writes go to the log, then to the store; snapshots and
//! background rebuilds keep the log short and the graph free of tombstones.
//!
//! Locks: `writer` orders writes, snapshots and the end of a rebuild (held while the log is
//! flushed, so writes wait for each other and for a snapshot); `store` is held for reading by
//! searches, and for writing only for the bookkeeping of one written item at a time: the
//! writer, holding `writer`, does its slow parts under a read lock. A snapshot reads the store
//! under `writer`, so searches go on while it is written.
//!
//! `store` is parking_lot's lock, not std's: measured with one thread searching in a loop, std's
//! let each new search in ahead of a waiting writer (it wakes the writer but the lock is free
//! again before the writer runs), and a one-item write took 2 s instead of 6 ms.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use parking_lot::{RwLock, RwLockReadGuard};
use serde::{Deserialize, Serialize};

use super::snapshot;
use super::store::{Found, Item, Metadata, Query, Store};
use super::wal::{Op, Wal};
use super::IndexError;
use super::IndexSettings;
use crate::ann::HnswSettings;

const MANIFEST: &str = "collection.json";
const WAL: &str = "wal.log";

/// What a collection was created with; kept in its directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    /// The model whose embeddings it holds, and their dimension.
    pub model: String,
    pub dim: usize,
    pub hnsw: HnswSettings,
    /// The model's embedding of `PROBE_TEXT` (absent in collections made before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Vec<f32>>,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join(MANIFEST);
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        match manifest.hnsw.problem() {
            Some(problem) => Err(format!("{}: {problem}", path.display())),
            None => Ok(manifest),
        }
    }

    pub(super) fn write(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{MANIFEST}.tmp"));
        let text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        std::fs::write(&tmp, text)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join(MANIFEST))
    }
}

/// A collection's counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    pub manifest: Manifest,
    pub count: usize,
    pub tombstones: usize,
    pub unsnapshotted_writes: u64,
    /// Whether a rebuild runs now, and how many have finished since the collection opened.
    pub rebuilding: bool,
    pub rebuilds: u64,
}

/// What a search looks for.
pub enum Target {
    /// Unit length, the collection's dimension.
    Vector(Vec<f32>),
    /// An item of the collection; it is left out of the hits.
    Id(String),
}

pub struct Search {
    pub target: Target,
    pub top_k: usize,
    /// None: the collection's.
    pub ef_search: Option<usize>,
    pub filter: Metadata,
}

struct WriterState {
    wal: Wal,
    /// The last logged write.
    lsn: u64,
    dropped: bool,
}

pub struct Collection {
    manifest: Manifest,
    dir: PathBuf,
    settings: Arc<IndexSettings>,
    store: RwLock<Store>,
    writer: Mutex<WriterState>,
    /// Writes logged since the last snapshot (read without waiting for a write or a snapshot).
    unsnapshotted: AtomicU64,
    /// While a rebuild runs: the writes since it copied the items, to replay on the new store.
    journal: Mutex<Option<Vec<Op>>>,
    /// Rebuilds swapped in since the collection opened.
    rebuilds: AtomicU64,
}

impl Collection {
    /// Creates the collection's directory at `dir`, which must not exist.
    pub fn create(
        dir: &Path,
        manifest: Manifest,
        settings: Arc<IndexSettings>,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir(dir)?;
        manifest.write(dir)?;
        let (wal, _) = Wal::open(&dir.join(WAL), manifest.dim, 0).map_err(std::io::Error::other)?;
        let store = Store::new(manifest.dim, manifest.hnsw);
        Ok(Self::assemble(dir, manifest, settings, store, wal, 0, 0))
    }

    /// Opens the collection in `dir`: its snapshot, then every logged write after it.
    pub fn open(
        dir: &Path,
        manifest: Manifest,
        settings: Arc<IndexSettings>,
    ) -> Result<Arc<Self>, String> {
        let (lsn, mut store) =
            match snapshot::load(dir, manifest.hnsw).map_err(|e| e.to_string())? {
                Some((lsn, store)) => (lsn, store),
                None => (0, Store::new(manifest.dim, manifest.hnsw)),
            };
        if store.dim() != manifest.dim {
            return Err(format!(
                "the snapshot holds {}-value vectors, the manifest says {}",
                store.dim(),
                manifest.dim
            ));
        }
        let (wal, replayed) =
            Wal::open(&dir.join(WAL), manifest.dim, lsn).map_err(|e| e.to_string())?;
        if replayed.torn_bytes > 0 {
            tracing::warn!(
                collection = manifest.name,
                bytes = replayed.torn_bytes,
                "cut off a torn last record of the write-ahead log (a write that was never \
                 acknowledged)"
            );
        }
        let mut last = lsn;
        let mut unsnapshotted = 0;
        for (record_lsn, op) in replayed.records {
            if record_lsn <= lsn {
                continue;
            }
            apply(&mut store, op);
            last = record_lsn;
            unsnapshotted += 1;
        }
        tracing::info!(
            collection = manifest.name,
            items = store.len(),
            snapshot_lsn = lsn,
            replayed = unsnapshotted,
            "opened collection"
        );
        Ok(Self::assemble(
            dir,
            manifest,
            settings,
            store,
            wal,
            last,
            unsnapshotted,
        ))
    }

    fn assemble(
        dir: &Path,
        manifest: Manifest,
        settings: Arc<IndexSettings>,
        store: Store,
        wal: Wal,
        lsn: u64,
        unsnapshotted: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            manifest,
            dir: dir.to_owned(),
            settings,
            store: RwLock::new(store),
            writer: Mutex::new(WriterState {
                wal,
                lsn,
                dropped: false,
            }),
            unsnapshotted: AtomicU64::new(unsnapshotted),
            journal: Mutex::new(None),
            rebuilds: AtomicU64::new(0),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read()
    }

    fn writer(&self) -> MutexGuard<'_, WriterState> {
        self.writer
            .lock()
            .expect("the writer lock is never poisoned")
    }

    pub fn info(&self) -> Info {
        let unsnapshotted_writes = self.unsnapshotted.load(Ordering::Relaxed);
        let rebuilding = self.journal.lock().expect("never poisoned").is_some();
        let rebuilds = self.rebuilds.load(Ordering::Relaxed);
        let store = self.read();
        Info {
            manifest: self.manifest.clone(),
            count: store.len(),
            tombstones: store.tombstones(),
            unsnapshotted_writes,
            rebuilding,
            rebuilds,
        }
    }

    /// Live items and tombstones.
    pub fn counts(&self) -> (usize, usize) {
        let store = self.read();
        (store.len(), store.tombstones())
    }

    pub fn search(&self, search: &Search) -> Result<Found, IndexError> {
        let store = self.read();
        let (vector, exclude) = match &search.target {
            Target::Vector(v) => (v.clone(), None),
            Target::Id(id) => match store.get(id) {
                Some(item) => (item.vector, Some(id.as_str())),
                None => {
                    return Err(IndexError::UnknownItem {
                        collection: self.manifest.name.clone(),
                        id: id.clone(),
                    })
                }
            },
        };
        Ok(store.search(&Query {
            vector: &vector,
            top_k: search.top_k,
            ef_search: search.ef_search.unwrap_or(self.manifest.hnsw.ef_search),
            filter: &search.filter,
            exclude,
            exact_scan_max: self.settings.exact_scan_max_items,
            links: self.manifest.hnsw.m,
        }))
    }

    /// The items with these ids that exist, in the order asked.
    pub fn get(&self, ids: &[String]) -> Vec<Item> {
        let store = self.read();
        ids.iter().filter_map(|id| store.get(id)).collect()
    }

    /// Adds or replaces the items (distinct ids, checked vectors): (inserted, replaced).
    pub fn upsert(self: &Arc<Self>, items: Vec<Item>) -> Result<(usize, usize), IndexError> {
        let count = items.len();
        let replaced = self.write(|_| Op::Upsert(items))?;
        Ok((count - replaced, replaced))
    }

    /// Removes the items that exist: how many did.
    pub fn delete(self: &Arc<Self>, ids: Vec<String>) -> Result<usize, IndexError> {
        self.write(|_| Op::Delete(ids))
    }

    /// Removes every item the filter matches, as one logged write (so that no write slips in
    /// between finding them and removing them): how many there were.
    pub fn delete_matching(self: &Arc<Self>, filter: &Metadata) -> Result<usize, IndexError> {
        self.write(|store| Op::Delete(store.matching(filter)))
    }

    /// A page of the items that pass the filter, in id order, after the id `after`.
    pub fn page(&self, after: Option<&str>, filter: &Metadata, limit: usize) -> Vec<Item> {
        self.read().page(after, filter, limit)
    }

    /// Logs the write that `op` makes of the store as it is once other writes are held off,
    /// applies it, and returns what `apply` counts.
    fn write(self: &Arc<Self>, op: impl FnOnce(&Store) -> Op) -> Result<usize, IndexError> {
        let mut writer = self.writer();
        if writer.dropped {
            return Err(IndexError::UnknownCollection(self.manifest.name.clone()));
        }
        let op = op(&self.read());
        if matches!(&op, Op::Delete(ids) if ids.is_empty()) {
            return Ok(0);
        }
        let lsn = writer.lsn + 1;
        if let Err(e) = writer.wal.append(lsn, &op) {
            tracing::error!(collection = self.manifest.name, error = %e, "write-ahead log append failed");
            return Err(IndexError::Storage(self.manifest.name.clone()));
        }
        writer.lsn = lsn;
        self.unsnapshotted.fetch_add(1, Ordering::Relaxed);
        if let Some(journal) = self.journal.lock().expect("never poisoned").as_mut() {
            journal.push(op.clone());
        }
        let counted = apply_each(&self.store, op);
        // Decided while writes are held: a rebuild that starts now copies every write before
        // this point, and the journal gets every write after it.
        self.maybe_rebuild();
        drop(writer);
        Ok(counted)
    }

    /// Starts a rebuild in the background when tombstones pass the configured share of the
    /// graph. Called with `writer` held.
    fn maybe_rebuild(self: &Arc<Self>) {
        let (tombstones, slots) = {
            let store = self.read();
            (store.tombstones(), store.slot_count())
        };
        let s = &self.settings;
        if tombstones < s.rebuild_min_tombstones.max(1)
            || (tombstones as f64) < s.rebuild_tombstone_ratio * slots as f64
        {
            return;
        }
        let mut journal = self.journal.lock().expect("never poisoned");
        if journal.is_some() {
            return;
        }
        *journal = Some(Vec::new());
        drop(journal);
        let collection = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name(format!("clipd-rebuild-{}", self.manifest.name))
            .spawn(move || {
                let rebuilding = Rebuilding(&collection);
                collection.rebuild();
                drop(rebuilding);
            });
        if let Err(e) = started {
            tracing::error!(collection = self.manifest.name, error = %e, "cannot start a rebuild");
            *self.journal.lock().expect("never poisoned") = None;
        }
    }

    /// Builds a new graph from the live items while searches and writes go on against the old
    /// one, replays the writes made meanwhile, and swaps it in.
    ///
    /// The journal was switched on (with writes held) before the items were copied, so it holds
    /// every write the copy may have missed, and maybe some it has: replaying writes in order
    /// over a later state ends in the same state, since each id ends as its last write left it.
    fn rebuild(&self) {
        let started = std::time::Instant::now();
        let items = self.read().items();
        let count = items.len();
        let mut store = Store::build(self.manifest.dim, self.manifest.hnsw, items);
        let drain = || {
            std::mem::take(
                self.journal
                    .lock()
                    .expect("never poisoned")
                    .as_mut()
                    .expect("on while rebuilding"),
            )
        };
        // Catch up without blocking writes until little is left, then block them for the rest.
        loop {
            let ops = drain();
            let caught_up = ops.len() <= 16;
            for op in ops {
                apply(&mut store, op);
            }
            if caught_up {
                break;
            }
        }
        let writer = self.writer();
        for op in drain() {
            apply(&mut store, op);
        }
        let old = std::mem::replace(&mut *self.store.write(), store);
        *self.journal.lock().expect("never poisoned") = None;
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        drop(writer);
        tracing::info!(
            collection = self.manifest.name,
            items = count,
            tombstones = old.tombstones(),
            seconds = started.elapsed().as_secs_f64(),
            "rebuilt the index"
        );
        // Freeing a large graph takes a while: not under a lock.
        drop(old);
    }

    /// Writes a snapshot if anything was written since the last one, and empties the log.
    pub fn snapshot(&self) -> Result<bool, IndexError> {
        let mut writer = self.writer();
        if writer.dropped || self.unsnapshotted.load(Ordering::Relaxed) == 0 {
            return Ok(false);
        }
        let written = snapshot::write(&self.dir, writer.lsn, &self.read())
            .map_err(|e| e.to_string())
            .and_then(|()| writer.wal.clear().map_err(|e| e.to_string()));
        if let Err(e) = written {
            // The log still holds every write since the last good snapshot.
            tracing::error!(collection = self.manifest.name, error = %e, "snapshot failed");
            return Err(IndexError::Storage(self.manifest.name.clone()));
        }
        self.unsnapshotted.store(0, Ordering::Relaxed);
        Ok(true)
    }

    /// Refuses every later write (or takes writes again: the drop failed); the caller removes
    /// the directory.
    pub fn set_dropped(&self, dropped: bool) {
        self.writer().dropped = dropped;
    }
}

/// Switches the journal off if a rebuild ends without swapping (it panicked), so that writes
/// stop being journaled and a later rebuild can start.
struct Rebuilding<'a>(&'a Collection);

impl Drop for Rebuilding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(collection = self.0.manifest.name, "the rebuild failed");
            *self.0.journal.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// Applies a logged write to the shared store, holding searches off only for the bookkeeping of
/// one item at a time. Called with the writer held, which is what lets the slow parts run under
/// a read lock while searches go on: inserting into the graph (milliseconds per item in a large
/// one), and copying it (about 0.3 s per 100,000 slots) to swap the copy in after.
fn apply_each(store: &RwLock<Store>, op: Op) -> usize {
    let write = || store.write();
    let read = || store.read();
    match op {
        Op::Upsert(items) => items
            .into_iter()
            .map(|item| {
                let (replaced, slot) = write().add(item);
                let copy = {
                    let store = read();
                    store.link(slot);
                    store.copy_is_stale().then(|| store.copy_graph())
                };
                if let Some(copy) = copy {
                    write().use_copy(copy);
                }
                usize::from(replaced)
            })
            .sum(),
        Op::Delete(ids) => ids.iter().map(|id| usize::from(write().remove(id))).sum(),
    }
}

/// Applies a logged write to a store no search is reading: upserts count the items replaced,
/// deletes the items removed.
fn apply(store: &mut Store, op: Op) -> usize {
    let counted = match op {
        Op::Upsert(items) => items
            .into_iter()
            .map(|item| usize::from(store.upsert(item)))
            .sum(),
        Op::Delete(ids) => ids.iter().map(|id| usize::from(store.remove(id))).sum(),
    };
    store.refresh_copy();
    counted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    const DIM: usize = 8;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("clipd-coll-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn manifest() -> Manifest {
        Manifest {
            name: "c".into(),
            model: "m".into(),
            dim: DIM,
            hnsw: HnswSettings::default(),
            probe: None,
        }
    }

    fn items(rng: &mut SplitMix64, ids: std::ops::Range<usize>) -> Vec<Item> {
        ids.map(|i| {
            let v: Vec<f32> = (0..DIM).map(|_| rng.unit() as f32 - 0.5).collect();
            Item {
                id: format!("{i}"),
                metadata: [("even".to_string(), (i % 2 == 0).to_string())].into(),
                vector: crate::index::unit_vector(v, DIM).unwrap(),
                text: i.is_multiple_of(3).then(|| format!("item {i}")),
            }
        })
        .collect()
    }

    fn all_hits(c: &Collection, query: &[f32]) -> Vec<String> {
        let search = Search {
            target: Target::Vector(query.to_vec()),
            top_k: 1000,
            ef_search: Some(1000),
            filter: Metadata::new(),
        };
        c.search(&search)
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect()
    }

    #[test]
    fn a_manifest_with_unusable_hnsw_settings_is_refused() {
        let dir = dir("manifest-m");
        std::fs::create_dir_all(&dir).unwrap();
        let mut bad = manifest();
        bad.hnsw.m = 256;
        bad.write(&dir).unwrap();
        let e = Manifest::read(&dir).unwrap_err();
        assert!(e.ends_with("m is 256; it must be 4 to 255"), "{e}");
    }

    #[test]
    fn a_snapshot_and_the_log_after_it_reopen_to_the_same_state() {
        let dir = dir("reopen");
        let settings = Arc::new(IndexSettings {
            exact_scan_max_items: 0,
            ..IndexSettings::default()
        });
        let c = Collection::create(&dir, manifest(), settings.clone()).unwrap();
        let mut rng = SplitMix64::new(1);
        assert_eq!(c.upsert(items(&mut rng, 0..300)).unwrap(), (300, 0));
        assert!(
            !c.read().copy_is_stale(),
            "the graph was copied for searches"
        );
        assert!(c.snapshot().unwrap());
        assert!(!c.snapshot().unwrap(), "nothing new to snapshot");
        assert_eq!(c.upsert(items(&mut rng, 250..350)).unwrap(), (50, 50));
        assert_eq!(
            c.delete(vec!["1".into(), "2".into(), "x".into()]).unwrap(),
            2
        );
        let before = c.info();
        assert_eq!((before.count, before.tombstones), (348, 52));
        assert_eq!(before.unsnapshotted_writes, 2);
        let query = c.get(&["7".into()])[0].vector.clone();
        let hits = all_hits(&c, &query);
        drop(c);
        let c = Collection::open(&dir, manifest(), settings).unwrap();
        assert_eq!(c.info(), before);
        assert!(!c.read().copy_is_stale());
        assert_eq!(all_hits(&c, &query), hits);
        assert!(c.get(&["1".into()]).is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tombstones_trigger_a_rebuild_that_keeps_writes_made_meanwhile() {
        let dir = dir("rebuild");
        let settings = Arc::new(IndexSettings {
            rebuild_min_tombstones: 100,
            rebuild_tombstone_ratio: 0.2,
            exact_scan_max_items: 0,
            ..IndexSettings::default()
        });
        let c = Collection::create(&dir, manifest(), settings).unwrap();
        let mut rng = SplitMix64::new(2);
        c.upsert(items(&mut rng, 0..2000)).unwrap();
        // Replacing items one write at a time: the rebuild starts partway and writes go on.
        for chunk in (0..600).step_by(20) {
            c.upsert(items(&mut rng, chunk..chunk + 20)).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while c.journal.lock().unwrap().is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let info = c.info();
        assert_eq!(info.count, 2000);
        assert!(info.tombstones < 600, "rebuilt: {info:?}");
        let latest = items(&mut SplitMix64::new(2), 0..2000);
        for item in c.get(&["5".into(), "1999".into()]) {
            let id: usize = item.id.parse().unwrap();
            if id >= 600 {
                assert_eq!(item.vector, latest[id].vector);
            } else {
                assert_ne!(item.vector, latest[id].vector, "replaced");
            }
            assert_eq!(all_hits(&c, &item.vector)[0], item.id);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
