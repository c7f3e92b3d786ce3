//! `clipd copy`: one collection copied from one collection store to the other (embedded ↔
//! Milvus), so that a user who started with the embedded store can move up without embedding
//! anything again.
//!
//! Items go over a page at a time in the order of their ids, vectors, metadata and texts as they
//! are stored. After each acknowledged page the last id is written to a cursor file; run again,
//! the copy resumes after it (an upsert replaces by id, so a page copied twice does no harm). The
//! cursor is removed once the copy is done.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::Settings;
use crate::index::{Backend, CollectionStore, IndexError, Metadata, ModelIdentity};
use crate::server::{open_store, LoadError};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("copy between two different stores (--from and --to are both {0:?})")]
    SameStore(Backend),
    #[error("opening the {backend:?} store: {source}")]
    Open {
        backend: Backend,
        #[source]
        source: LoadError,
    },
    #[error("{what}: {source}")]
    Store {
        what: String,
        #[source]
        source: IndexError,
    },
    #[error("the cursor file {path}: {reason}")]
    Cursor { path: PathBuf, reason: String },
}

/// What to copy.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub from: Backend,
    pub to: Backend,
    pub collection: String,
    /// The target collection's name (default: the same).
    pub target: Option<String>,
    /// Items per page (each one read, then one upsert).
    pub page_size: usize,
    /// Where progress is kept between runs.
    pub cursor: PathBuf,
}

/// How a copy went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Items copied by this run.
    pub copied: usize,
    /// The id a previous, interrupted run had got to.
    pub resumed_after: Option<String>,
    /// Whether the target collection was made by this copy (else it existed).
    pub created: bool,
    /// Items in the source and in the target once done (they differ when the target held
    /// other items, or the source was written to meanwhile).
    pub source_count: usize,
    pub target_count: usize,
}

/// The cursor file: where an interrupted copy got to.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    from: Backend,
    to: Backend,
    collection: String,
    target: String,
    /// The last id copied and acknowledged.
    after: String,
}

fn store_error(what: impl Into<String>) -> impl FnOnce(IndexError) -> CopyError {
    let what = what.into();
    move |source| CopyError::Store { what, source }
}

async fn open(
    settings: &Settings,
    backend: Backend,
    model: ModelIdentity,
    stopping: watch::Receiver<bool>,
) -> Result<Arc<dyn CollectionStore>, CopyError> {
    let mut index = settings.index.clone();
    index.backend = backend;
    open_store(index, model, stopping)
        .await
        .map_err(|source| CopyError::Open { backend, source })
}

fn read_cursor(options: &CopyOptions, target: &str) -> Result<Option<String>, CopyError> {
    let invalid = |reason: String| CopyError::Cursor {
        path: options.cursor.clone(),
        reason,
    };
    let text = match std::fs::read_to_string(&options.cursor) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(invalid(e.to_string())),
    };
    let cursor: Cursor = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let same = cursor.from == options.from
        && cursor.to == options.to
        && cursor.collection == options.collection
        && cursor.target == target;
    if !same {
        return Err(invalid(format!(
            "it is the cursor of copying {:?} ({:?}) to {:?} ({:?}); remove it or give \
             another --cursor",
            cursor.collection, cursor.from, cursor.target, cursor.to
        )));
    }
    Ok(Some(cursor.after))
}

/// Written to a temporary file and renamed, so that an interrupted write leaves the old cursor.
fn write_cursor(path: &Path, cursor: &Cursor) -> Result<(), CopyError> {
    let failed = |e: std::io::Error| CopyError::Cursor {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let partial = path.with_extension("partial");
    let text = serde_json::to_string(cursor).expect("a cursor serialises");
    std::fs::write(&partial, text).map_err(failed)?;
    std::fs::rename(&partial, path).map_err(failed)
}

/// Copies the collection for the model `model` (whose collections both stores serve), calling
/// `progress(done, total)` after each page.
pub async fn copy(
    settings: &Settings,
    model: ModelIdentity,
    options: &CopyOptions,
    progress: impl Fn(usize, usize),
) -> Result<Copied, CopyError> {
    if options.from == options.to {
        return Err(CopyError::SameStore(options.from));
    }
    let target_name = options.target.as_deref().unwrap_or(&options.collection);
    let resumed_after = read_cursor(options, target_name)?;
    // Stops the stores' background tasks (token reloads, probes) when the copy returns.
    let (_stop, stopping) = watch::channel(false);
    let source_store = open(settings, options.from, model.clone(), stopping.clone()).await?;
    let target_store = open(settings, options.to, model, stopping).await?;
    let name = &options.collection;
    let source = source_store
        .open(name)
        .await
        .map_err(store_error(format!("the source collection {name:?}")))?;
    let info = source
        .info()
        .await
        .map_err(store_error("describing the source"))?;
    let created = match target_store.create(target_name, info.manifest.hnsw).await {
        Ok(_) => true,
        Err(IndexError::Exists(_)) => false,
        Err(e) => return Err(store_error(format!("creating {target_name:?}"))(e)),
    };
    let target = target_store
        .open(target_name)
        .await
        .map_err(store_error(format!(
            "the target collection {target_name:?}"
        )))?;
    let total = info.count;
    let mut after = resumed_after.clone();
    let mut done = match &after {
        None => 0,
        Some(_) => target
            .info()
            .await
            .map_err(store_error("counting the target"))?
            .count
            .min(total),
    };
    let mut copied = 0;
    progress(done, total);
    loop {
        let page = source
            .page(
                after.clone(),
                Metadata::new(),
                options.page_size.max(1),
                true,
            )
            .await
            .map_err(store_error("reading the source"))?;
        let Some(last) = page.last().map(|item| item.id.clone()) else {
            break;
        };
        let count = page.len();
        target
            .upsert(page)
            .await
            .map_err(store_error(format!("writing the target after {after:?}")))?;
        write_cursor(
            &options.cursor,
            &Cursor {
                from: options.from,
                to: options.to,
                collection: name.clone(),
                target: target_name.to_owned(),
                after: last.clone(),
            },
        )?;
        after = Some(last);
        copied += count;
        done += count;
        progress(done, total.max(done));
    }
    // Made durable beyond the write-ahead log (the embedded store's snapshot) before the
    // cursor goes: a copy that says it is done is.
    target_store.persist().await;
    match std::fs::remove_file(&options.cursor) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(CopyError::Cursor {
                path: options.cursor.clone(),
                reason: e.to_string(),
            })
        }
    }
    let source_count = source
        .info()
        .await
        .map_err(store_error("counting the source"))?
        .count;
    let target_count = target
        .info()
        .await
        .map_err(store_error("counting the target"))?
        .count;
    Ok(Copied {
        copied,
        resumed_after,
        created,
        source_count,
        target_count,
    })
}
