//! Snapshots: a collection's state as of one log sequence number, in a directory of its own.
//!
//! `snapshot-<lsn>/items.bin` holds every slot (tombstones as a flag; live items with id, metadata
//! and vector) under a CRC-32, and `graph.hnsw.{graph,data}` is hnsw_rs's dump of the graph, so a
//! restart loads the graph instead of rebuilding it. A snapshot is written under a temporary name,
//! flushed, renamed, and only then named in `CURRENT` (itself replaced by a rename): a crash at
//! any point leaves the previous snapshot in force.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use hnsw_rs::api::AnnT;
use hnsw_rs::hnswio::HnswIo;

use super::codec::{Reader, Writer};
use super::store::Store;
use crate::ann::{HnswSettings, UnitCosine};

/// Snapshots with items that keep their text; `MAGIC_WITHOUT_TEXTS` ones (written before) still
/// load.
const MAGIC: &[u8; 8] = b"CLIPDSN2";
const MAGIC_WITHOUT_TEXTS: &[u8; 8] = b"CLIPDSN1";
const CURRENT: &str = "CURRENT";
const ITEMS: &str = "items.bin";
const GRAPH: &str = "graph";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes the store as of `lsn` into `dir` and makes it the current snapshot; older ones are
/// removed.
pub fn write(dir: &Path, lsn: u64, store: &Store) -> Result<(), SnapshotError> {
    let name = format!("snapshot-{lsn:020}");
    let current = dir.join(CURRENT);
    if std::fs::read_to_string(&current).is_ok_and(|named| named.trim() == name) {
        // Written before, and the log was not emptied after it: nothing new to write (and the
        // current snapshot must not be removed to write it again).
        return Ok(());
    }
    let tmp = dir.join(format!("{name}.tmp"));
    let done = dir.join(&name);
    for stale in [&tmp, &done] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(io(stale))?;
        }
    }
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let graph = if store.slot_count() > 0 {
        dump_graph(&tmp, store)?;
        GRAPH
    } else {
        ""
    };
    write_items(&tmp.join(ITEMS), lsn, graph, store)?;
    for file in std::fs::read_dir(&tmp).map_err(io(&tmp))? {
        let path = file.map_err(io(&tmp))?.path();
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(io(&path))?;
    }
    sync_dir(&tmp)?;
    std::fs::rename(&tmp, &done).map_err(io(&done))?;
    sync_dir(dir)?;
    let current_tmp = dir.join("CURRENT.tmp");
    std::fs::write(&current_tmp, &name)
        .and_then(|()| File::open(&current_tmp)?.sync_all())
        .map_err(io(&current_tmp))?;
    std::fs::rename(&current_tmp, &current).map_err(io(&current))?;
    sync_dir(dir)?;
    // The new snapshot is in force: failing to remove the old ones costs only disk space.
    let old = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for path in old.map(|entry| entry.path()) {
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if file_name.starts_with("snapshot-") && file_name != name {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove an old snapshot");
            }
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

fn dump_graph(dir: &Path, store: &Store) -> Result<(), SnapshotError> {
    // hnsw_rs panics when it cannot create its files.
    let dumped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.hnsw().file_dump(dir, GRAPH)
    }));
    match dumped {
        Ok(Ok(name)) if name == GRAPH => Ok(()),
        Ok(Ok(name)) => Err(SnapshotError::Corrupt {
            path: dir.to_owned(),
            reason: format!("hnsw_rs dumped the graph as {name:?}, not {GRAPH:?}"),
        }),
        Ok(Err(e)) => Err(SnapshotError::Corrupt {
            path: dir.to_owned(),
            reason: format!("dumping the graph: {e}"),
        }),
        Err(_) => Err(SnapshotError::Corrupt {
            path: dir.to_owned(),
            reason: "dumping the graph panicked (see the log)".into(),
        }),
    }
}

fn write_items(path: &Path, lsn: u64, graph: &str, store: &Store) -> Result<(), SnapshotError> {
    let mut file = BufWriter::new(File::create(path).map_err(io(path))?);
    let mut crc = crc32fast::Hasher::new();
    let mut put = |bytes: &[u8]| {
        crc.update(bytes);
        file.write_all(bytes)
    };
    let mut head = Writer::default();
    head.bytes.extend_from_slice(MAGIC);
    head.u64(lsn);
    head.u32(store.dim() as u32);
    head.u64(store.slot_count() as u64);
    head.str(graph);
    put(&head.bytes).map_err(io(path))?;
    for slot in store.slots() {
        let mut w = Writer::default();
        match slot {
            Some(item) => {
                w.u8(1);
                w.item(&item);
            }
            None => w.u8(0),
        }
        put(&w.bytes).map_err(io(path))?;
    }
    let sum = crc.finalize();
    file.write_all(&sum.to_le_bytes()).map_err(io(path))?;
    file.flush().map_err(io(path))
}

/// The current snapshot: its lsn and the store. None: no snapshot was ever written.
pub fn load(dir: &Path, settings: HnswSettings) -> Result<Option<(u64, Store)>, SnapshotError> {
    let current = dir.join(CURRENT);
    let name = match std::fs::read_to_string(&current) {
        Ok(name) => name,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&current)(e)),
    };
    let snapshot = dir.join(name.trim());
    let path = snapshot.join(ITEMS);
    let corrupt = |reason: String| SnapshotError::Corrupt {
        path: path.clone(),
        reason,
    };
    let mut bytes = Vec::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(&path))?;
    if bytes.len() < MAGIC.len() + 4 {
        return Err(corrupt("not a clipd snapshot".into()));
    }
    let texts = match &bytes[..MAGIC.len()] {
        magic if magic == MAGIC => true,
        magic if magic == MAGIC_WITHOUT_TEXTS => false,
        _ => return Err(corrupt("not a clipd snapshot".into())),
    };
    let (body, sum) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(sum.try_into().expect("4 bytes")) {
        return Err(corrupt("checksum mismatch".into()));
    }
    let mut r = Reader::new(&body[MAGIC.len()..]);
    let parsed = (|| {
        let lsn = r.u64()?;
        let dim = r.u32()? as usize;
        let count = r.u64()?;
        let graph = r.str()?;
        let slots = (0..count)
            .map(|_| match r.u8()? {
                0 => Ok(None),
                _ if texts => r.item(dim).map(Some),
                _ => r.item_without_text(dim).map(Some),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok::<_, super::codec::Malformed>((lsn, dim, graph, slots))
    })();
    let (lsn, dim, graph, slots) = parsed.map_err(|e| corrupt(e.to_string()))?;
    let hnsw = if graph.is_empty() {
        None
    } else {
        Some(load_graph(&snapshot, &graph, slots.len())?)
    };
    Ok(Some((lsn, Store::restore(dim, settings, slots, hnsw))))
}

fn load_graph(
    dir: &Path,
    basename: &str,
    slots: usize,
) -> Result<hnsw_rs::hnsw::Hnsw<'static, f32, UnitCosine>, SnapshotError> {
    let corrupt = |reason: String| SnapshotError::Corrupt {
        path: dir.join(format!("{basename}.hnsw.graph")),
        reason,
    };
    // The loaded graph borrows its loader for as long as it lives (hnsw_rs ties their
    // lifetimes, for memory-mapped data, which is not used here): one small loader per loaded
    // snapshot is kept for the life of the process.
    let (dir_owned, basename_owned) = (dir.to_owned(), basename.to_owned());
    let loaded = std::panic::catch_unwind(move || {
        let loader: &'static mut HnswIo =
            Box::leak(Box::new(HnswIo::new(&dir_owned, &basename_owned)));
        loader.load_hnsw::<f32, UnitCosine>()
    });
    let mut hnsw = match loaded {
        Ok(Ok(hnsw)) => hnsw,
        Ok(Err(e)) => return Err(corrupt(e.to_string())),
        Err(_) => return Err(corrupt("loading the graph panicked (see the log)".into())),
    };
    if hnsw.get_nb_point() != slots {
        return Err(corrupt(format!(
            "the graph has {} points for {slots} slots",
            hnsw.get_nb_point()
        )));
    }
    // What a freshly built graph uses while inserting; the loader turns it on.
    hnsw.set_extend_candidates(false);
    Ok(hnsw)
}
