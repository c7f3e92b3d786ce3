//! The Milvus store behind the collection-store seam: each collection is a Milvus collection
//! (`index.milvus.collection_prefix` + an encoding of its name) with an id (VarChar primary
//! key), a FloatVector under an HNSW index searched by inner product (vectors are unit length,
//! so the scores are cosines, as the embedded store's), and the metadata as JSON. The manifest
//! (model, dimension, probe, HNSW settings) is a property of the Milvus collection, so every
//! replica reads the same one and refuses another model's collection the same way.
//!
//! Reads see this process's acknowledged writes: each search and query carries the timestamp
//! of the last write Milvus acknowledged to it (Milvus' Session consistency); with
//! `index.milvus.consistency = "strong"` they see every replica's.

mod client;
mod expr;
pub mod pb;
mod settings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use prost::Message;
use tokio::sync::watch;

pub use settings::{Consistency, MilvusSettings};

use super::backend::{CollectionStore, StoredCollection, Totals};
use super::{
    check_name, resolve_hnsw, Found, Hit, IndexError, IndexSettings, Info, Item, Listed, Manifest,
    Metadata, ModelIdentity, Search, Target,
};
use crate::ann::HnswSettings;
use crate::secret::Secret;
use client::{check, transport, Client, Credentials, Failure};
use pb::common::{self, KeyValuePair};
use pb::milvus as api;
use pb::schema::{self, field_data, scalar_field, vector_field, DataType, FieldData, FieldSchema};

/// The property of a Milvus collection that holds clipd's manifest.
const MANIFEST_PROPERTY: &str = "clipd.manifest";
const VECTOR: &str = "vector";
/// The text an item was made from ("" when it was not made from a text).
const TEXT: &str = "text";
/// The longest text a collection keeps: Milvus' limit for a VarChar field.
pub const MAX_TEXT_BYTES: usize = 65_535;
/// The most rows one Milvus search or query returns (its `topk` and `limit` ceiling).
pub const MAX_WINDOW: usize = 16_384;
/// The longest id an item may have (`index::MAX_ID_BYTES`) is what the key field holds.
const ID_MAX_LENGTH: usize = super::MAX_ID_BYTES;

pub struct MilvusStore {
    client: Client,
    credentials: Credentials,
    settings: MilvusSettings,
    index: Arc<IndexSettings>,
    model: ModelIdentity,
    /// The timestamp of the last write Milvus acknowledged to this process.
    last_write: Arc<AtomicU64>,
    /// Counts as last seen, for the metrics (counting asks Milvus, so it is not done per scrape).
    totals: Mutex<Totals>,
    /// Whether Milvus answered the last probe and no call since found it away.
    reachable: Arc<watch::Sender<bool>>,
}

/// The name of a clipd collection in Milvus: the prefix, then the name with every character
/// Milvus does not allow in names written as `_XX` (its hex code), '_' included, so that two
/// names never meet.
fn milvus_name(prefix: &str, name: &str) -> String {
    let mut out = String::from(prefix);
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push_str(&format!("_{:02x}", c as u32));
        }
    }
    out
}

/// What a request on the collection `name` answers when Milvus did not do what it asked.
fn failure(name: &str, failure: Failure) -> IndexError {
    match failure {
        Failure::NoCollection => IndexError::UnknownCollection(name.to_owned()),
        Failure::Unavailable(reason) => IndexError::Unavailable(reason),
        Failure::Refused(reason) => {
            IndexError::InvalidRequest(format!("Milvus refused it: {reason}"))
        }
        // A revoked or rotated-away token: the operator's to fix, and retrying helps once done.
        Failure::Unauthorized(reason) => {
            tracing::error!(collection = name, %reason, "Milvus refused clipd's token");
            IndexError::Unavailable(format!("Milvus refused clipd's token: {reason}"))
        }
        other => {
            tracing::error!(collection = name, error = %other, "Milvus call failed");
            IndexError::Storage(name.to_owned())
        }
    }
}

/// The clipd name that `milvus_name` wrote as `milvus`, if it is one.
fn clipd_name(prefix: &str, milvus: &str) -> Option<String> {
    let mut rest = milvus.strip_prefix(prefix)?.chars();
    let mut out = String::new();
    while let Some(c) = rest.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        let code: String = rest.by_ref().take(2).collect();
        out.push(char::from(u8::from_str_radix(&code, 16).ok()?));
    }
    Some(out)
}

fn kv(key: &str, value: impl Into<String>) -> KeyValuePair {
    KeyValuePair {
        key: key.to_owned(),
        value: value.into(),
    }
}

impl MilvusStore {
    /// Connects (lazily) and checks the token: a token Milvus refuses is an error now, at
    /// start-up; Milvus being away is not (calls answer UNAVAILABLE until it is back).
    pub async fn connect(
        settings: MilvusSettings,
        index: IndexSettings,
        model: ModelIdentity,
        token: Option<Secret>,
        ca: Option<Vec<u8>>,
    ) -> Result<Self, String> {
        let (client, credentials) = client::connect(&settings, ca)?;
        credentials.set_token(token.as_ref())?;
        let store = Self {
            client,
            credentials,
            settings,
            index: Arc::new(index),
            model,
            last_write: Arc::new(AtomicU64::new(0)),
            totals: Mutex::new(Totals::default()),
            reachable: Arc::new(watch::Sender::new(false)),
        };
        match store.probe().await {
            Ok(_) => store.refresh_totals().await,
            Err(Failure::Unavailable(reason)) => {
                tracing::warn!(url = %store.settings.url, %reason, "Milvus is not reachable yet")
            }
            Err(e) => return Err(format!("{}: {e}", store.settings.url)),
        }
        Ok(store)
    }

    /// Asks Milvus for this store's collections, and records whether it answered: a Milvus
    /// that is starting or recovering (retriable codes) counts as away, as one that is not
    /// reached does.
    pub async fn probe(&self) -> Result<Vec<String>, Failure> {
        let names = self.names().await;
        let away = matches!(names, Err(Failure::Unavailable(_)));
        let changed = self
            .reachable
            .send_if_modified(|now| std::mem::replace(now, !away) == away);
        if changed && !away {
            tracing::info!(url = %self.settings.url, "Milvus answers: Collections and Search serve");
        }
        names
    }

    /// Puts a new token in force (a rotated Secret).
    pub fn set_token(&self, token: Option<&Secret>) -> Result<(), String> {
        self.credentials.set_token(token)
    }

    fn client(&self) -> Client {
        self.client.clone()
    }

    fn name_of(&self, name: &str) -> String {
        milvus_name(&self.settings.collection_prefix, name)
    }

    /// The Milvus collections of this store (with the prefix).
    async fn names(&self) -> Result<Vec<String>, Failure> {
        let request = api::ShowCollectionsRequest {
            db_name: self.settings.database.clone(),
            ..Default::default()
        };
        let answer = self
            .handle()
            .call(self.client().show_collections(request))
            .await?;
        check(answer.status)?;
        let prefix = &self.settings.collection_prefix;
        Ok(answer
            .collection_names
            .into_iter()
            .filter(|n| n.starts_with(prefix.as_str()))
            .collect())
    }

    /// The manifest kept with a Milvus collection.
    async fn manifest(&self, milvus: &str) -> Result<Result<Manifest, String>, Failure> {
        let request = api::DescribeCollectionRequest {
            db_name: self.settings.database.clone(),
            collection_name: milvus.to_owned(),
            ..Default::default()
        };
        let answer = self
            .handle()
            .call(self.client().describe_collection(request))
            .await?;
        check(answer.status)?;
        let Some(property) = answer
            .properties
            .iter()
            .find(|p| p.key == MANIFEST_PROPERTY)
        else {
            return Ok(Err(format!(
                "Milvus collection {milvus} has no {MANIFEST_PROPERTY} property: not made by clipd"
            )));
        };
        Ok(serde_json::from_str::<Manifest>(&property.value)
            .map_err(|e| format!("Milvus collection {milvus}: its manifest: {e}"))
            .and_then(|m| match m.hnsw.problem() {
                Some(problem) => Err(format!("Milvus collection {milvus}: {problem}")),
                None => Ok(m),
            }))
    }

    /// The collection, if it is this model's.
    async fn served(&self, name: &str) -> Result<Manifest, IndexError> {
        let milvus = self.name_of(name);
        let manifest = self
            .manifest(&milvus)
            .await
            .map_err(|e| failure(name, e))?
            .map_err(|reason| IndexError::Unopened {
                name: name.to_owned(),
                reason,
            })?;
        if !self
            .model
            .made(&manifest.model, manifest.dim, manifest.probe.as_deref())
        {
            return Err(IndexError::OtherModel {
                name: name.to_owned(),
                model: manifest.model,
                dim: manifest.dim,
                loaded: self.model.name.clone(),
                loaded_dim: self.model.dim,
            });
        }
        Ok(manifest)
    }

    fn collection(&self, name: &str, manifest: Manifest) -> MilvusCollection {
        MilvusCollection {
            store: self.handle(),
            milvus: self.name_of(name),
            manifest,
        }
    }

    fn handle(&self) -> Handle {
        Handle {
            client: self.client(),
            database: self.settings.database.clone(),
            timeout: self.settings.request_timeout(),
            last_write: Arc::clone(&self.last_write),
            consistency: self.settings.consistency,
            reachable: Arc::clone(&self.reachable),
        }
    }

    async fn refresh_totals(&self) {
        let Ok(names) = self.names().await else {
            return;
        };
        let mut totals = Totals::default();
        for milvus in names {
            if let Ok(count) = self.handle().count(&milvus).await {
                totals.collections += 1;
                totals.items += count;
            }
        }
        *self.totals.lock() = totals;
    }

    async fn create_in_milvus(&self, milvus: &str, manifest: &Manifest) -> Result<(), Failure> {
        let field = |name: &str, data_type: DataType, params: Vec<KeyValuePair>| FieldSchema {
            name: name.to_owned(),
            data_type: data_type as i32,
            type_params: params,
            ..Default::default()
        };
        let schema = schema::CollectionSchema {
            name: milvus.to_owned(),
            description: format!("clipd collection {:?}", manifest.name),
            fields: vec![
                FieldSchema {
                    is_primary_key: true,
                    ..field(
                        expr::ID,
                        DataType::VarChar,
                        vec![kv("max_length", ID_MAX_LENGTH.to_string())],
                    )
                },
                field(
                    VECTOR,
                    DataType::FloatVector,
                    vec![kv("dim", manifest.dim.to_string())],
                ),
                field(expr::METADATA, DataType::Json, Vec::new()),
                field(
                    TEXT,
                    DataType::VarChar,
                    vec![kv("max_length", MAX_TEXT_BYTES.to_string())],
                ),
            ],
            ..Default::default()
        };
        let request = api::CreateCollectionRequest {
            db_name: self.settings.database.clone(),
            collection_name: milvus.to_owned(),
            schema: schema.encode_to_vec(),
            shards_num: 1,
            consistency_level: common::ConsistencyLevel::Session as i32,
            properties: vec![kv(
                MANIFEST_PROPERTY,
                serde_json::to_string(manifest).expect("a manifest serialises"),
            )],
            ..Default::default()
        };
        check(Some(
            self.handle()
                .call(self.client().create_collection(request))
                .await?,
        ))
    }

    /// The new collection's index, and the collection loaded for searches.
    async fn index_and_load(&self, milvus: &str, manifest: &Manifest) -> Result<(), Failure> {
        let params = serde_json::json!({
            "M": manifest.hnsw.m,
            "efConstruction": manifest.hnsw.ef_construction,
        });
        let request = api::CreateIndexRequest {
            db_name: self.settings.database.clone(),
            collection_name: milvus.to_owned(),
            field_name: VECTOR.to_owned(),
            extra_params: vec![
                kv("index_type", "HNSW"),
                kv("metric_type", "IP"),
                kv("params", params.to_string()),
            ],
            index_name: VECTOR.to_owned(),
            ..Default::default()
        };
        check(Some(
            self.handle()
                .call(self.client().create_index(request))
                .await?,
        ))?;
        self.handle().load(milvus).await
    }
}

#[async_trait]
impl CollectionStore for MilvusStore {
    fn max_top_k(&self) -> usize {
        self.index.max_top_k
    }

    async fn create(&self, name: &str, hnsw: HnswSettings) -> Result<Info, IndexError> {
        check_name(name)?;
        let hnsw = resolve_hnsw(hnsw, self.index.hnsw)?;
        let milvus = self.name_of(name);
        let names = self.names().await.map_err(|e| failure(name, e))?;
        if names.contains(&milvus) {
            return Err(IndexError::Exists(name.to_owned()));
        }
        if names.len() >= self.index.max_collections {
            return Err(IndexError::TooManyCollections(names.len()));
        }
        let manifest = Manifest {
            name: name.to_owned(),
            model: self.model.name.clone(),
            dim: self.model.dim,
            hnsw,
            probe: Some(self.model.probe.clone()),
        };
        match self.create_in_milvus(&milvus, &manifest).await {
            // Another request or replica made it between the check and here: theirs stands.
            Err(Failure::Failed(reason)) if reason.contains("already exist") => {
                return Err(IndexError::Exists(name.to_owned()))
            }
            Err(e) => return Err(failure(name, e)),
            Ok(()) => {}
        }
        if let Err(e) = self.index_and_load(&milvus, &manifest).await {
            // Half made (say, no index) it would be listed but not searchable: take it back.
            let request = api::DropCollectionRequest {
                db_name: self.settings.database.clone(),
                collection_name: milvus.clone(),
                ..Default::default()
            };
            let _ = self
                .handle()
                .call(self.client().drop_collection(request))
                .await;
            return Err(failure(name, e));
        }
        tracing::info!(collection = name, milvus, "created collection");
        Ok(empty_info(manifest))
    }

    async fn drop_collection(&self, name: &str) -> Result<(), IndexError> {
        let milvus = self.name_of(name);
        let names = self.names().await.map_err(|e| failure(name, e))?;
        if !names.contains(&milvus) {
            return Err(IndexError::UnknownCollection(name.to_owned()));
        }
        let request = api::DropCollectionRequest {
            db_name: self.settings.database.clone(),
            collection_name: milvus,
            ..Default::default()
        };
        let answer = self
            .handle()
            .call(self.client().drop_collection(request))
            .await
            .map_err(|e| failure(name, e))?;
        check(Some(answer)).map_err(|e| failure(name, e))?;
        tracing::info!(collection = name, "dropped collection");
        Ok(())
    }

    async fn list(&self) -> Result<Vec<(String, Listed)>, IndexError> {
        let names = self.names().await.map_err(|e| failure("(list)", e))?;
        let mut listed = Vec::with_capacity(names.len());
        let mut totals = Totals::default();
        for milvus in names {
            let manifest = match self.manifest(&milvus).await {
                Ok(manifest) => manifest,
                // Dropped meanwhile.
                Err(Failure::NoCollection) => continue,
                Err(e) => return Err(failure(&milvus, e)),
            };
            let entry = match manifest {
                // Listed under the name that DropCollection takes.
                Err(reason) => {
                    let name =
                        clipd_name(&self.settings.collection_prefix, &milvus).unwrap_or(milvus);
                    (name, Listed::Closed(None, reason))
                }
                Ok(manifest) => {
                    let name = manifest.name.clone();
                    match self.served(&name).await {
                        Ok(manifest) => {
                            match self.collection(&name, manifest.clone()).info().await {
                                Ok(info) => {
                                    totals.collections += 1;
                                    totals.items += info.count;
                                    (name, Listed::Open(info))
                                }
                                // Listed all the same, as the embedded store lists what it
                                // cannot open.
                                Err(e) => (name, Listed::Closed(Some(manifest), e.to_string())),
                            }
                        }
                        Err(e) => (name, Listed::Closed(Some(manifest), e.to_string())),
                    }
                }
            };
            listed.push(entry);
        }
        *self.totals.lock() = totals;
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(listed)
    }

    async fn open(&self, name: &str) -> Result<Arc<dyn StoredCollection>, IndexError> {
        let manifest = self.served(name).await?;
        Ok(Arc::new(self.collection(name, manifest)))
    }

    fn totals(&self) -> Totals {
        *self.totals.lock()
    }

    fn reachable(&self) -> watch::Receiver<bool> {
        self.reachable.subscribe()
    }

    /// Milvus keeps what it acknowledged; this only refreshes the counts the metrics show.
    async fn persist(&self) -> usize {
        // Bounded: at shutdown a slow Milvus must not hold the server for a count per collection.
        let limit = self.settings.request_timeout();
        let _ = tokio::time::timeout(limit, self.refresh_totals()).await;
        0
    }
}

fn empty_info(manifest: Manifest) -> Info {
    Info {
        manifest,
        count: 0,
        tombstones: 0,
        unsnapshotted_writes: 0,
        rebuilding: false,
        rebuilds: 0,
    }
}

/// What a collection's calls need of the store.
#[derive(Clone)]
struct Handle {
    client: Client,
    database: String,
    timeout: Duration,
    last_write: Arc<AtomicU64>,
    consistency: Consistency,
    reachable: Arc<watch::Sender<bool>>,
}

impl Handle {
    /// Makes one call; Milvus not reached marks it away at once (the store's probe notices it
    /// back).
    async fn call<T, F>(&self, call: F) -> Result<T, Failure>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let answer = match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map(tonic::Response::into_inner).map_err(transport),
            Err(_) => Err(Failure::Unavailable(format!(
                "no answer within {} ms (index.milvus.request_timeout_ms)",
                self.timeout.as_millis()
            ))),
        };
        if let Err(Failure::Unavailable(reason)) = &answer {
            if self
                .reachable
                .send_if_modified(|now| std::mem::replace(now, false))
            {
                tracing::warn!(%reason, "Milvus is away: Collections and Search answer UNAVAILABLE");
            }
        }
        answer
    }

    /// Loads the collection into Milvus' memory and waits until it is (a new collection, or one
    /// after Milvus restarted).
    async fn load(&self, milvus: &str) -> Result<(), Failure> {
        let request = api::LoadCollectionRequest {
            db_name: self.database.clone(),
            collection_name: milvus.to_owned(),
            replica_number: 1,
            ..Default::default()
        };
        check(Some(
            self.call(self.client.clone().load_collection(request))
                .await?,
        ))?;
        let started = Instant::now();
        loop {
            let request = api::GetLoadStateRequest {
                db_name: self.database.clone(),
                collection_name: milvus.to_owned(),
                ..Default::default()
            };
            let answer = self
                .call(self.client.clone().get_load_state(request))
                .await?;
            check(answer.status)?;
            if answer.state == common::LoadState::Loaded as i32 {
                return Ok(());
            }
            if started.elapsed() > self.timeout {
                return Err(Failure::Unavailable(
                    "the collection is still loading into Milvus".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `attempt`, again once the collection is loaded if Milvus had it unloaded.
    async fn loaded<T, F, Fut>(&self, milvus: &str, attempt: F) -> Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        match attempt().await {
            Err(Failure::NotLoaded) => {
                tracing::info!(milvus, "loading the collection into Milvus again");
                self.load(milvus).await?;
                attempt().await
            }
            other => other,
        }
    }

    /// What a read asks of Milvus: the consistency level and the timestamp it must have caught
    /// up to (for Session: the last write Milvus acknowledged to this process).
    fn guarantee(&self) -> (i32, u64) {
        match self.consistency {
            Consistency::Session => (
                common::ConsistencyLevel::Session as i32,
                self.last_write.load(Ordering::Acquire),
            ),
            Consistency::Strong => (common::ConsistencyLevel::Strong as i32, 0),
        }
    }

    /// Sends an upsert or a delete and records the write it acknowledged.
    async fn mutate<F>(&self, call: F) -> Result<(), Failure>
    where
        F: std::future::Future<
            Output = Result<tonic::Response<api::MutationResult>, tonic::Status>,
        >,
    {
        let answer = self.call(call).await?;
        check(answer.status)?;
        self.wrote(answer.timestamp).await
    }

    /// Records a write Milvus acknowledged at `timestamp`, which later reads must see. Milvus
    /// 2.3 answers deletes with timestamp 0: a timestamp allocated after the answer is later
    /// than the delete and does as well.
    async fn wrote(&self, timestamp: u64) -> Result<(), Failure> {
        let timestamp = match timestamp {
            0 => {
                let request = api::AllocTimestampRequest::default();
                let answer = self
                    .call(self.client.clone().alloc_timestamp(request))
                    .await?;
                check(answer.status)?;
                answer.timestamp
            }
            t => t,
        };
        self.last_write.fetch_max(timestamp, Ordering::AcqRel);
        Ok(())
    }

    async fn query(
        &self,
        milvus: &str,
        filter: String,
        output: &[&str],
        limit: Option<usize>,
    ) -> Result<Vec<FieldData>, Failure> {
        let (consistency_level, guarantee_timestamp) = self.guarantee();
        let request = api::QueryRequest {
            db_name: self.database.clone(),
            collection_name: milvus.to_owned(),
            expr: filter,
            output_fields: output.iter().map(|s| s.to_string()).collect(),
            guarantee_timestamp,
            query_params: limit
                .map(|n| vec![kv("limit", n.to_string())])
                .unwrap_or_default(),
            consistency_level,
            ..Default::default()
        };
        self.loaded(milvus, || async {
            let answer = self
                .call(self.client.clone().query(request.clone()))
                .await?;
            check(answer.status)?;
            Ok(answer.fields_data)
        })
        .await
    }

    async fn count(&self, milvus: &str) -> Result<usize, Failure> {
        let fields = self
            .query(milvus, String::new(), &["count(*)"], None)
            .await?;
        let count = fields
            .iter()
            .find_map(|f| match &f.field {
                Some(field_data::Field::Scalars(s)) => match &s.data {
                    Some(scalar_field::Data::LongData(l)) => l.data.first().copied(),
                    _ => None,
                },
                _ => None,
            })
            .unwrap_or(0);
        Ok(count.max(0) as usize)
    }

    /// The ids of `ids` that the collection holds.
    async fn existing(&self, milvus: &str, ids: &[String]) -> Result<Vec<String>, Failure> {
        let fields = self
            .query(milvus, expr::ids_in(ids), &[expr::ID], Some(ids.len()))
            .await?;
        Ok(strings(&fields, expr::ID))
    }
}

/// One Milvus collection, as a request sees it.
struct MilvusCollection {
    store: Handle,
    milvus: String,
    manifest: Manifest,
}

impl MilvusCollection {
    fn failure(&self, e: Failure) -> IndexError {
        failure(&self.manifest.name, e)
    }

    /// The items an expression matches, at most `limit`, in no particular order.
    async fn matching(
        &self,
        filter: String,
        limit: usize,
        with_vectors: bool,
    ) -> Result<Vec<Item>, IndexError> {
        let output: &[&str] = if with_vectors {
            &[expr::ID, VECTOR, expr::METADATA, TEXT]
        } else {
            &[expr::ID, expr::METADATA, TEXT]
        };
        let fields = self
            .store
            .query(&self.milvus, filter, output, Some(limit))
            .await
            .map_err(|e| self.failure(e))?;
        Ok(rows(&fields, self.manifest.dim))
    }

    async fn delete_held(&self, held: &[String]) -> Result<(), IndexError> {
        if held.is_empty() {
            return Ok(());
        }
        let request = api::DeleteRequest {
            db_name: self.store.database.clone(),
            collection_name: self.milvus.clone(),
            expr: expr::ids_in(held),
            ..Default::default()
        };
        self.store
            .mutate(self.store.client.clone().delete(request))
            .await
            .map_err(|e| self.failure(e))
    }

    async fn items(&self, ids: &[String], with_vectors: bool) -> Result<Vec<Item>, IndexError> {
        let found = self
            .matching(expr::ids_in(ids), ids.len(), with_vectors)
            .await?;
        let mut by_id: HashMap<String, Item> =
            found.into_iter().map(|i| (i.id.clone(), i)).collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }
}

#[async_trait]
impl StoredCollection for MilvusCollection {
    fn dim(&self) -> usize {
        self.manifest.dim
    }

    async fn info(&self) -> Result<Info, IndexError> {
        let count = self
            .store
            .count(&self.milvus)
            .await
            .map_err(|e| self.failure(e))?;
        Ok(Info {
            count,
            ..empty_info(self.manifest.clone())
        })
    }

    async fn search(&self, search: Search) -> Result<Found, IndexError> {
        let filter = expr::metadata_filter(&search.filter);
        let (vector, filter) = match search.target {
            Target::Vector(vector) => (vector, filter),
            Target::Id(id) => {
                let found = self.items(std::slice::from_ref(&id), true).await?;
                let Some(item) = found.into_iter().next() else {
                    return Err(IndexError::UnknownItem {
                        collection: self.manifest.name.clone(),
                        id,
                    });
                };
                let others = format!("{} != {}", expr::ID, expr::literal(&id));
                (item.vector, expr::and(filter, Some(others)))
            }
        };
        let ef = search
            .ef_search
            .unwrap_or(self.manifest.hnsw.ef_search)
            .max(search.top_k);
        let placeholders = common::PlaceholderGroup {
            placeholders: vec![common::PlaceholderValue {
                tag: "$0".into(),
                r#type: common::PlaceholderType::FloatVector as i32,
                values: vec![vector.iter().flat_map(|v| v.to_le_bytes()).collect()],
            }],
        };
        let (consistency_level, guarantee_timestamp) = self.store.guarantee();
        let request = api::SearchRequest {
            db_name: self.store.database.clone(),
            collection_name: self.milvus.clone(),
            dsl: filter.unwrap_or_default(),
            dsl_type: common::DslType::BoolExprV1 as i32,
            placeholder_group: placeholders.encode_to_vec(),
            output_fields: vec![expr::METADATA.into(), TEXT.into()],
            search_params: vec![
                kv("anns_field", VECTOR),
                kv("topk", search.top_k.to_string()),
                kv("metric_type", "IP"),
                kv("params", serde_json::json!({ "ef": ef }).to_string()),
                kv("round_decimal", "-1"),
            ],
            guarantee_timestamp,
            nq: 1,
            consistency_level,
            ..Default::default()
        };
        let answer = self
            .store
            .loaded(&self.milvus, || async {
                let answer = self
                    .store
                    .call(self.store.client.clone().search(request.clone()))
                    .await?;
                check(answer.status.clone())?;
                Ok(answer)
            })
            .await
            .map_err(|e| self.failure(e))?;
        let Some(results) = answer.results else {
            return Ok(Found {
                hits: Vec::new(),
                exact: false,
            });
        };
        let ids = match results.ids.and_then(|ids| ids.id_field) {
            Some(schema::i_ds::IdField::StrId(ids)) => ids.data,
            _ => Vec::new(),
        };
        let metadata = json_column(&results.fields_data, expr::METADATA);
        let texts = strings(&results.fields_data, TEXT);
        let hits = ids
            .into_iter()
            .zip(results.scores)
            .enumerate()
            .map(|(i, (id, score))| Hit {
                id,
                score,
                metadata: metadata.get(i).cloned().unwrap_or_default(),
                text: texts.get(i).cloned().filter(|t| !t.is_empty()),
            })
            .collect();
        Ok(Found { hits, exact: false })
    }

    async fn get(&self, ids: Vec<String>, with_vectors: bool) -> Result<Vec<Item>, IndexError> {
        self.items(&ids, with_vectors).await
    }

    /// Milvus answers a query with a limit with the items of the lowest ids (which is how
    /// its own iterators page); sorted here all the same, since it does not promise an order.
    async fn page(
        &self,
        after: Option<String>,
        filter: Metadata,
        limit: usize,
        with_vectors: bool,
    ) -> Result<Vec<Item>, IndexError> {
        let after = after.map(|id| format!("{} > {}", expr::ID, expr::literal(&id)));
        let condition = expr::and(expr::metadata_filter(&filter), after)
            .unwrap_or_else(|| format!("{} != \"\"", expr::ID));
        let mut items = self.matching(condition, limit, with_vectors).await?;
        items.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Ok(items)
    }

    async fn upsert(&self, items: Vec<Item>) -> Result<(usize, usize), IndexError> {
        let ids: Vec<String> = items.iter().map(|i| i.id.clone()).collect();
        let replaced = self
            .store
            .existing(&self.milvus, &ids)
            .await
            .map_err(|e| self.failure(e))?
            .len();
        let rows = items.len() as u32;
        let mut vectors = Vec::with_capacity(items.len() * self.manifest.dim);
        let mut metadata = Vec::with_capacity(items.len());
        let mut texts = Vec::with_capacity(items.len());
        for item in items {
            vectors.extend_from_slice(&item.vector);
            metadata.push(serde_json::to_vec(&item.metadata).expect("metadata serialises"));
            texts.push(item.text.unwrap_or_default());
        }
        let request = api::UpsertRequest {
            db_name: self.store.database.clone(),
            collection_name: self.milvus.clone(),
            fields_data: vec![
                string_column(expr::ID, ids),
                FieldData {
                    r#type: DataType::FloatVector as i32,
                    field_name: VECTOR.into(),
                    field: Some(field_data::Field::Vectors(schema::VectorField {
                        dim: self.manifest.dim as i64,
                        data: Some(vector_field::Data::FloatVector(schema::FloatArray {
                            data: vectors,
                        })),
                    })),
                    ..Default::default()
                },
                FieldData {
                    r#type: DataType::Json as i32,
                    field_name: expr::METADATA.into(),
                    field: Some(field_data::Field::Scalars(schema::ScalarField {
                        data: Some(scalar_field::Data::JsonData(schema::JsonArray {
                            data: metadata,
                        })),
                    })),
                    ..Default::default()
                },
                string_column(TEXT, texts),
            ],
            num_rows: rows,
            ..Default::default()
        };
        self.store
            .mutate(self.store.client.clone().upsert(request))
            .await
            .map_err(|e| self.failure(e))?;
        Ok((rows as usize - replaced, replaced))
    }

    async fn delete(&self, ids: Vec<String>) -> Result<usize, IndexError> {
        let held = self
            .store
            .existing(&self.milvus, &ids)
            .await
            .map_err(|e| self.failure(e))?;
        self.delete_held(&held).await?;
        Ok(held.len())
    }

    /// Milvus removes by expression without saying how many: the matches are found, then
    /// removed by id, a window at a time (each query sees the deletes before it).
    async fn delete_matching(&self, filter: Metadata) -> Result<usize, IndexError> {
        let condition = expr::metadata_filter(&filter).expect("a filter that is not empty");
        let mut deleted = 0;
        loop {
            let fields = self
                .store
                .query(
                    &self.milvus,
                    condition.clone(),
                    &[expr::ID],
                    Some(MAX_WINDOW),
                )
                .await
                .map_err(|e| self.failure(e))?;
            let held = strings(&fields, expr::ID);
            if held.is_empty() {
                return Ok(deleted);
            }
            self.delete_held(&held).await?;
            deleted += held.len();
        }
    }
}

fn string_column(name: &str, values: Vec<String>) -> FieldData {
    FieldData {
        r#type: DataType::VarChar as i32,
        field_name: name.into(),
        field: Some(field_data::Field::Scalars(schema::ScalarField {
            data: Some(scalar_field::Data::StringData(schema::StringArray {
                data: values,
            })),
        })),
        ..Default::default()
    }
}

fn strings(fields: &[FieldData], name: &str) -> Vec<String> {
    fields
        .iter()
        .filter(|f| f.field_name == name)
        .find_map(|f| match &f.field {
            Some(field_data::Field::Scalars(s)) => match &s.data {
                Some(scalar_field::Data::StringData(a)) => Some(a.data.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_default()
}

/// A JSON column of metadata objects; a value that is not a string map reads as no metadata.
fn json_column(fields: &[FieldData], name: &str) -> Vec<Metadata> {
    fields
        .iter()
        .filter(|f| f.field_name == name)
        .find_map(|f| match &f.field {
            Some(field_data::Field::Scalars(s)) => match &s.data {
                Some(scalar_field::Data::JsonData(a)) => Some(
                    a.data
                        .iter()
                        .map(|bytes| serde_json::from_slice(bytes).unwrap_or_default())
                        .collect(),
                ),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_default()
}

/// Query results as items (vectors empty when they were not asked for).
fn rows(fields: &[FieldData], dim: usize) -> Vec<Item> {
    let ids = strings(fields, expr::ID);
    let metadata = json_column(fields, expr::METADATA);
    let texts = strings(fields, TEXT);
    let vectors: Vec<f32> = fields
        .iter()
        .filter(|f| f.field_name == VECTOR)
        .find_map(|f| match &f.field {
            Some(field_data::Field::Vectors(v)) => match &v.data {
                Some(vector_field::Data::FloatVector(a)) => Some(a.data.clone()),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_default();
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| Item {
            id,
            metadata: metadata.get(i).cloned().unwrap_or_default(),
            text: texts.get(i).cloned().filter(|t| !t.is_empty()),
            vector: vectors
                .get(i * dim..(i + 1) * dim)
                .map(<[f32]>::to_vec)
                .unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_milvus_keep_distinct_names_distinct() {
        assert_eq!(milvus_name("clipd_", "shapes"), "clipd_shapes");
        assert_eq!(milvus_name("clipd_", "a-b.c_d"), "clipd_a_2db_2ec_5fd");
        assert_ne!(milvus_name("p_", "a_2d"), milvus_name("p_", "a-"));
        for name in ["shapes", "a-b.c_d", "x_2d", "9"] {
            assert_eq!(clipd_name("p_", &milvus_name("p_", name)).unwrap(), name);
        }
        assert_eq!(clipd_name("p_", "other"), None);
    }
}
