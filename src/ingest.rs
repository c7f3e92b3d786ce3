//! `clipd ingest`: a folder of images into a collection of a running server, in batches, with
//! resumption (ids already present are skipped) and a report of the files that failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::grpc::pb;
use crate::grpc::pb::collections_client::CollectionsClient;

/// The extensions of the image formats the server decodes.
const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"];

/// Adds `authorization: Bearer KEY` to every call when there is a key.
#[derive(Clone, Default)]
pub struct ApiKey(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl ApiKey {
    pub fn new(key: Option<&str>) -> Result<Self, IngestError> {
        key.map(|k| format!("Bearer {k}").parse())
            .transpose()
            .map(Self)
            .map_err(|_| {
                IngestError::Server("the API key has characters a header cannot carry".into())
            })
    }
}

impl tonic::service::Interceptor for ApiKey {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel to the server that sends the API key.
pub type Authorized = InterceptedService<Channel, ApiKey>;

pub struct IngestOptions {
    pub collection: String,
    pub dir: PathBuf,
    /// Images per Upsert request at most.
    pub batch_size: usize,
    /// Encoded bytes per Upsert request at most (under the server's message limit).
    pub max_request_bytes: u64,
    /// Upsert requests in flight.
    pub concurrency: usize,
    /// Metadata given to every item (each also gets `folder`: its folder relative to `dir`).
    pub metadata: Vec<(String, String)>,
}

/// What an ingest did.
#[derive(Debug, Default)]
pub struct IngestReport {
    pub found: usize,
    pub inserted: usize,
    pub already_present: usize,
    /// Files without an image extension, left alone.
    pub not_images: usize,
    /// Files that could not be read or that the server refused, with the reason.
    pub failed: Vec<(String, String)>,
    pub created_collection: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot walk {dir}: {source}")]
    Walk {
        dir: PathBuf,
        source: walkdir::Error,
    },
    #[error("{0}")]
    Server(String),
}

fn server(context: &str, status: Status) -> IngestError {
    IngestError::Server(format!(
        "{context}: {:?}: {}",
        status.code(),
        status.message()
    ))
}

/// An image file to ingest.
struct File {
    id: String,
    path: PathBuf,
    size: u64,
}

/// Called as batches finish: (files done, files in all).
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Sync);

pub async fn ingest(
    channel: Channel,
    key: ApiKey,
    options: &IngestOptions,
    progress: Progress<'_>,
) -> Result<IngestReport, IngestError> {
    let mut report = IngestReport::default();
    let files = walk(&options.dir, &mut report)?;
    // Images whose path cannot be an id failed during the walk; they were found all the same.
    report.found = files.len() + report.failed.len();
    let total = files.len();
    let info = retrying(|| {
        let mut clip = crate::grpc::pb::clip_client::ClipClient::with_interceptor(
            channel.clone(),
            key.clone(),
        );
        async move { clip.get_model_info(pb::GetModelInfoRequest {}).await }
    })
    .await
    .map_err(|s| server("asking for the server's limits", s))?;
    let mut client =
        CollectionsClient::with_interceptor(channel, key).max_decoding_message_size(usize::MAX);
    report.created_collection = ensure_collection(&mut client, &options.collection).await?;
    // A batch is one Upsert of images and one GetItems of their ids.
    let most = (info.max_inputs_per_request as usize).min(info.max_items_per_request as usize);
    let batch_size = options.batch_size.clamp(1, most.max(1));
    let batches = batches(files, batch_size, options.max_request_bytes);
    progress(0, total);
    let mut done = 0;
    let mut results = stream::iter(batches)
        .map(|batch| {
            let client = client.clone();
            async move { ingest_batch(client, options, batch).await }
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some(result) = results.next().await {
        let outcome = result?;
        done += outcome.files;
        report.inserted += outcome.inserted;
        report.already_present += outcome.present;
        report.failed.extend(outcome.failed);
        progress(done, total);
    }
    report.failed.sort();
    Ok(report)
}

/// The image files under `dir`, sorted by id (the path relative to `dir`, with '/').
fn walk(dir: &Path, report: &mut IngestReport) -> Result<Vec<File>, IngestError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if e.depth() > 0 => {
                let path = e
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                report.failed.push((path, e.to_string()));
                continue;
            }
            Err(source) => {
                return Err(IngestError::Walk {
                    dir: dir.to_owned(),
                    source,
                })
            }
        };
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let is_image = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        if !is_image {
            report.not_images += 1;
            continue;
        }
        let relative = path.strip_prefix(dir).expect("walked from dir");
        let Some(id) = relative
            .to_str()
            .map(|s| s.replace(std::path::MAIN_SEPARATOR, "/"))
        else {
            report.failed.push((
                path.display().to_string(),
                "the path is not UTF-8, so it cannot be an id".into(),
            ));
            continue;
        };
        if let Some(problem) = crate::index::id_problem(&id) {
            // Sent, it would fail the lookup of its whole batch.
            report
                .failed
                .push((id, format!("it cannot be an id: {problem}")));
            continue;
        }
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        files.push(File {
            id,
            path: path.to_owned(),
            size,
        });
    }
    Ok(files)
}

/// Groups files by count and by bytes; a file larger than the byte limit goes alone (and the
/// server names the limit it passes).
fn batches(files: Vec<File>, size: usize, max_bytes: u64) -> Vec<Vec<File>> {
    let mut batches: Vec<Vec<File>> = Vec::new();
    let mut bytes = 0;
    for file in files {
        match batches.last_mut() {
            Some(batch) if batch.len() < size && bytes + file.size <= max_bytes => {
                bytes += file.size;
                batch.push(file);
            }
            _ => {
                bytes = file.size;
                batches.push(vec![file]);
            }
        }
    }
    batches
}

/// Creates the collection unless it exists: whether it created it.
async fn ensure_collection(
    client: &mut CollectionsClient<Authorized>,
    name: &str,
) -> Result<bool, IngestError> {
    let get = pb::GetCollectionRequest { name: name.into() };
    match retrying(|| {
        let mut c = client.clone();
        let get = get.clone();
        async move { c.get_collection(get).await }
    })
    .await
    {
        Ok(_) => Ok(false),
        Err(s) if s.code() == Code::NotFound => {
            let create = pb::CreateCollectionRequest {
                name: name.into(),
                ..Default::default()
            };
            match client.create_collection(create).await {
                Ok(_) => Ok(true),
                // Another ingest created it first.
                Err(s) if s.code() == Code::AlreadyExists => Ok(false),
                Err(s) => Err(server(&format!("creating collection {name:?}"), s)),
            }
        }
        Err(s) => Err(server(&format!("collection {name:?}"), s)),
    }
}

/// Retries while the server is busy or restarting, with exponential back-off (about a minute in
/// all).
async fn retrying<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
{
    let mut wait = Duration::from_millis(100);
    for _ in 0..10 {
        match call().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if matches!(s.code(), Code::ResourceExhausted | Code::Unavailable) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(s) => return Err(s),
        }
    }
    call().await.map(tonic::Response::into_inner)
}

#[derive(Default)]
struct Outcome {
    files: usize,
    inserted: usize,
    present: usize,
    failed: Vec<(String, String)>,
}

async fn ingest_batch(
    client: CollectionsClient<Authorized>,
    options: &IngestOptions,
    batch: Vec<File>,
) -> Result<Outcome, IngestError> {
    let mut outcome = Outcome {
        files: batch.len(),
        ..Outcome::default()
    };
    let collection = &options.collection;
    let asked = pb::GetItemsRequest {
        collection: collection.clone(),
        ids: batch.iter().map(|f| f.id.clone()).collect(),
        with_vectors: false,
    };
    let present = retrying(|| {
        let mut c = client.clone();
        let asked = asked.clone();
        async move { c.get_items(asked).await }
    })
    .await
    .map_err(|s| server("looking up ids", s))?;
    let present: std::collections::HashSet<String> =
        present.items.into_iter().map(|i| i.id).collect();
    outcome.present = present.len();
    let mut items = Vec::new();
    for file in batch.into_iter().filter(|f| !present.contains(&f.id)) {
        match tokio::fs::read(&file.path).await {
            Ok(bytes) => items.push(item(file.id, bytes, &options.metadata)),
            Err(e) => outcome.failed.push((file.id, format!("cannot read: {e}"))),
        }
    }
    if items.is_empty() {
        return Ok(outcome);
    }
    match upsert(&client, collection, items.clone()).await {
        Ok(inserted) => outcome.inserted += inserted,
        // One bad image fails its whole request (and one the model cannot take fails its batch):
        // find it by sending the items one by one.
        Err(s) if item_failure(&s) && items.len() > 1 => {
            for item in items {
                let id = item.id.clone();
                match upsert(&client, collection, vec![item]).await {
                    Ok(inserted) => outcome.inserted += inserted,
                    Err(s) if item_failure(&s) => outcome
                        .failed
                        .push((id, s.message().replacen("item 0: ", "", 1))),
                    Err(s) => return Err(server("upserting", s)),
                }
            }
        }
        Err(s) if item_failure(&s) => {
            let id = items.pop().expect("one item").id;
            outcome
                .failed
                .push((id, s.message().replacen("item 0: ", "", 1)));
        }
        Err(s) => return Err(server("upserting", s)),
    }
    Ok(outcome)
}

/// An error that one of a request's items may have caused: a bad item, or a batch the model
/// failed on. A collection whose storage failed (a full disk) fails every item alike: sending
/// them one by one would only report the whole folder as failed.
fn item_failure(status: &Status) -> bool {
    match status.code() {
        Code::InvalidArgument => true,
        Code::Internal => !status.message().contains("storage failed"),
        _ => false,
    }
}

fn item(id: String, bytes: Vec<u8>, extra: &[(String, String)]) -> pb::Item {
    let folder = id
        .rsplit_once('/')
        .map_or("", |(folder, _)| folder)
        .to_owned();
    let mut metadata: std::collections::HashMap<String, String> = extra.iter().cloned().collect();
    metadata.insert("folder".into(), folder);
    pb::Item {
        id,
        content: Some(pb::item::Content::Image(bytes.into())),
        metadata,
    }
}

async fn upsert(
    client: &CollectionsClient<Authorized>,
    collection: &str,
    items: Vec<pb::Item>,
) -> Result<usize, Status> {
    let request = pb::UpsertRequest {
        collection: collection.to_owned(),
        items,
    };
    let response = retrying(|| {
        let mut c = client.clone();
        let request = request.clone();
        async move { c.upsert(request).await }
    })
    .await?;
    Ok(response.inserted as usize + response.replaced as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: &str, size: u64) -> File {
        File {
            id: id.into(),
            path: id.into(),
            size,
        }
    }

    #[test]
    fn a_storage_failure_is_not_blamed_on_an_item() {
        let storage = Status::from(crate::index::IndexError::Storage("c".into()));
        assert!(!item_failure(&storage), "{storage:?}");
        let model = Status::from(crate::index::IndexError::Failed("embedding"));
        assert!(item_failure(&model));
        assert!(item_failure(&Status::invalid_argument("item 0: bad")));
        assert!(!item_failure(&Status::unavailable("shutting down")));
    }

    #[test]
    fn batches_respect_count_and_bytes() {
        let files = vec![
            file("a", 10),
            file("b", 10),
            file("c", 10),
            file("d", 100),
            file("e", 1),
        ];
        let ids = |batches: Vec<Vec<File>>| -> Vec<Vec<String>> {
            batches
                .into_iter()
                .map(|b| b.into_iter().map(|f| f.id).collect())
                .collect()
        };
        assert_eq!(
            ids(batches(files, 2, 25)),
            [vec!["a", "b"], vec!["c"], vec!["d"], vec!["e"]]
        );
    }
}
