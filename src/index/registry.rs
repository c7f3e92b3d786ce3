//! Every collection of the data directory, by name: opened at start-up, created and dropped by
//! requests, snapshotted together.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use parking_lot::RwLock;

use super::collection::{Collection, Info, Manifest};
use super::identity::ModelIdentity;
use super::IndexSettings;
use super::{check_name, resolve_hnsw, IndexError};
use crate::ann::HnswSettings;

/// Directory prefixes of collections being created or dropped; left-overs of a crash are removed.
const CREATING: &str = ".creating-";
const DROPPING: &str = ".dropping-";

enum Entry {
    Open(Arc<Collection>),
    /// Found at start-up, not served: it holds another model's embeddings.
    OtherModel(Manifest),
    /// Found at start-up, not served: it could not be read (the reason).
    Unopened(Option<Manifest>, String),
}

impl Entry {
    /// Why a closed collection is not served.
    fn refusal(&self, name: &str, model: &ModelIdentity) -> Option<IndexError> {
        match self {
            Entry::Open(_) => None,
            Entry::OtherModel(manifest) => Some(IndexError::OtherModel {
                name: name.to_owned(),
                model: manifest.model.clone(),
                dim: manifest.dim,
                loaded: model.name.clone(),
                loaded_dim: model.dim,
            }),
            Entry::Unopened(_, reason) => Some(IndexError::Unopened {
                name: name.to_owned(),
                reason: reason.clone(),
            }),
        }
    }
}

/// The collections, for the model the server runs.
pub struct Registry {
    root: PathBuf,
    settings: Arc<IndexSettings>,
    model: ModelIdentity,
    /// Read by every search and write; parking_lot's lock, for the reason the collection's store
    /// uses it: std's can keep a waiting writer out while reads come one after another.
    entries: RwLock<BTreeMap<String, Entry>>,
    /// Held by CreateCollection and DropCollection.
    admin: Mutex<()>,
}

/// A collection's description, whether or not it could be opened.
pub enum Listed {
    Open(Info),
    Closed(Option<Manifest>, String),
}

impl Registry {
    /// Opens every collection under `<data_dir>/collections`. One that cannot be opened (another
    /// model's, or damaged) is logged and kept closed: requests naming it get the reason.
    pub fn open(settings: IndexSettings, model: ModelIdentity) -> std::io::Result<Self> {
        let root = settings.data_dir.join("collections");
        std::fs::create_dir_all(&root)?;
        let settings = Arc::new(settings);
        let mut entries = BTreeMap::new();
        for entry in std::fs::read_dir(&root)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            if name.starts_with(CREATING) || name.starts_with(DROPPING) {
                std::fs::remove_dir_all(&path)?;
                continue;
            }
            if name_problem(&name).is_some() || !path.is_dir() {
                tracing::warn!(path = %path.display(), "not a collection; left alone");
                continue;
            }
            let entry = open_one(&path, &settings, &model);
            if let Some(e) = entry.refusal(&name, &model) {
                tracing::error!(collection = name, error = %e, "collection not served");
            }
            entries.insert(name, entry);
        }
        Ok(Self {
            root,
            settings,
            model,
            entries: RwLock::new(entries),
            admin: Mutex::new(()),
        })
    }

    pub fn settings(&self) -> &IndexSettings {
        &self.settings
    }

    pub fn get(&self, name: &str) -> Result<Arc<Collection>, IndexError> {
        match self.entries.read().get(name) {
            Some(Entry::Open(collection)) => Ok(Arc::clone(collection)),
            Some(closed) => Err(closed.refusal(name, &self.model).expect("a closed entry")),
            None => Err(IndexError::UnknownCollection(name.to_owned())),
        }
    }

    /// Creates an empty collection; `hnsw` fields left at 0 take the configured defaults.
    pub fn create(&self, name: &str, hnsw: HnswSettings) -> Result<Info, IndexError> {
        check_name(name)?;
        let hnsw = resolve_hnsw(hnsw, self.settings.hnsw)?;
        // Creates and drops take turns; the disk work happens outside `entries`, which every
        // request reads.
        let _admin = self.admin.lock().expect("never poisoned");
        {
            let entries = self.entries.read();
            if entries.contains_key(name) {
                return Err(IndexError::Exists(name.to_owned()));
            }
            if entries.len() >= self.settings.max_collections {
                return Err(IndexError::TooManyCollections(entries.len()));
            }
        }
        let manifest = Manifest {
            name: name.to_owned(),
            model: self.model.name.clone(),
            dim: self.model.dim,
            hnsw,
            probe: Some(self.model.probe.clone()),
        };
        // Built under a temporary name and renamed: a directory with a collection's name always
        // holds a whole collection.
        let staging = self.root.join(format!("{CREATING}{name}"));
        let created = (|| {
            if staging.exists() {
                std::fs::remove_dir_all(&staging)?;
            }
            drop(Collection::create(
                &staging,
                manifest.clone(),
                Arc::clone(&self.settings),
            )?);
            sync_dir(&staging)?;
            std::fs::rename(&staging, self.root.join(name))?;
            sync_dir(&self.root)?;
            Collection::open(&self.root.join(name), manifest, Arc::clone(&self.settings))
                .map_err(std::io::Error::other)
        })();
        let collection = created.map_err(|e| {
            tracing::error!(collection = name, error = %e, "cannot create collection");
            IndexError::Storage(name.to_owned())
        })?;
        let info = collection.info();
        self.entries
            .write()
            .insert(name.to_owned(), Entry::Open(collection));
        tracing::info!(collection = name, "created collection");
        Ok(info)
    }

    /// Removes the collection and its data.
    pub fn drop_collection(&self, name: &str) -> Result<(), IndexError> {
        let _admin = self.admin.lock().expect("never poisoned");
        let open = match self.entries.read().get(name) {
            None => return Err(IndexError::UnknownCollection(name.to_owned())),
            Some(Entry::Open(collection)) => Some(Arc::clone(collection)),
            Some(_) => None,
        };
        // Waits for a write or a snapshot in progress; later ones are refused.
        let set_dropped = |dropped| {
            if let Some(collection) = &open {
                collection.set_dropped(dropped);
            }
        };
        set_dropped(true);
        let dir = self.root.join(name);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let doomed = self.root.join(format!("{DROPPING}{name}-{stamp}"));
        if let Err(e) = std::fs::rename(&dir, &doomed) {
            // Under its own name the collection would open again at the next start: it stays.
            tracing::error!(collection = name, error = %e, "cannot drop the collection");
            set_dropped(false);
            return Err(IndexError::Storage(name.to_owned()));
        }
        self.entries.write().remove(name);
        let removed = sync_dir(&self.root).and_then(|()| std::fs::remove_dir_all(&doomed));
        if let Err(e) = removed {
            // A directory left under the dropping name is removed at the next start.
            tracing::error!(collection = name, error = %e, "cannot remove the collection's files");
        }
        tracing::info!(collection = name, "dropped collection");
        Ok(())
    }

    pub fn list(&self) -> Vec<(String, Listed)> {
        self.entries
            .read()
            .iter()
            .map(|(name, entry)| {
                let listed = match entry {
                    Entry::Open(c) => Listed::Open(c.info()),
                    Entry::OtherModel(manifest) => Listed::Closed(
                        Some(manifest.clone()),
                        entry
                            .refusal(name, &self.model)
                            .expect("closed")
                            .to_string(),
                    ),
                    Entry::Unopened(manifest, reason) => {
                        Listed::Closed(manifest.clone(), reason.clone())
                    }
                };
                (name.clone(), listed)
            })
            .collect()
    }

    /// Collections served, and their live items and tombstones in all.
    pub fn totals(&self) -> (usize, usize, usize) {
        let entries = self.entries.read();
        let mut totals = (0, 0, 0);
        for entry in entries.values() {
            if let Entry::Open(c) = entry {
                let (items, tombstones) = c.counts();
                totals = (totals.0 + 1, totals.1 + items, totals.2 + tombstones);
            }
        }
        totals
    }

    /// Snapshots every collection written to since its last snapshot; errors are logged.
    pub fn snapshot_all(&self) -> usize {
        let open: Vec<Arc<Collection>> = self
            .entries
            .read()
            .values()
            .filter_map(|e| match e {
                Entry::Open(c) => Some(Arc::clone(c)),
                _ => None,
            })
            .collect();
        open.iter()
            .filter(|c| matches!(c.snapshot(), Ok(true)))
            .count()
    }
}

fn open_one(path: &Path, settings: &Arc<IndexSettings>, model: &ModelIdentity) -> Entry {
    let mut manifest = match Manifest::read(path) {
        Ok(m) => m,
        Err(reason) => return Entry::Unopened(None, reason),
    };
    if !model.made(&manifest.model, manifest.dim, manifest.probe.as_deref()) {
        return Entry::OtherModel(manifest);
    }
    if manifest.probe.is_none() {
        // Made before probes were kept, and accepted by name: from now on the probe decides.
        let recorded = Manifest {
            probe: Some(model.probe.clone()),
            ..manifest.clone()
        };
        match recorded.write(path) {
            Ok(()) => manifest = recorded,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot record the model's probe")
            }
        }
    }
    match Collection::open(path, manifest.clone(), Arc::clone(settings)) {
        Ok(c) => Entry::Open(c),
        Err(reason) => Entry::Unopened(Some(manifest), reason),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// What is wrong with a collection name: it names a directory.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 64 {
        return Some("must be 1 to 64 characters");
    }
    if name.starts_with('.') {
        return Some("must not start with '.'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("may hold only letters, digits, '-', '_' and '.'");
    }
    None
}
