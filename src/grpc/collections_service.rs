//! `clipd.v1.Collections` and `Clip.Search`: validate, convert, embed what needs embedding, call
//! the collection store, map the error.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::convert::{self, metadata};
use super::state::{Loaded, State};
use super::{deadline, pb};
use crate::ann::HnswSettings;
use crate::engine::{EmbedInput, Engine, EngineError};
use crate::index::{
    self, IndexError, Item, Listed, Metadata, Search, StoredCollection, Subject, Target,
};

pub struct CollectionsService {
    pub state: State,
}

fn invalid(message: String) -> IndexError {
    IndexError::InvalidRequest(message)
}

/// A request's count of `what` (items, ids): at least one, at most `max`.
fn checked_count(count: usize, max: usize, what: &str) -> Result<(), IndexError> {
    if count == 0 {
        return Err(invalid(format!("the request has no {what}")));
    }
    if count > max {
        return Err(invalid(format!(
            "the request has {count} {what}; the limit is {max}"
        )));
    }
    Ok(())
}

/// The ids of a Delete or GetItems: at least one, at most `max`, each a possible item id.
fn checked_ids(ids: &[String], max: usize) -> Result<(), IndexError> {
    checked_count(ids.len(), max, "ids")?;
    let problem = ids
        .iter()
        .enumerate()
        .find_map(|(i, id)| index::id_problem(id).map(|p| (i, p)));
    match problem {
        Some((i, problem)) => Err(invalid(format!("id {i}: {problem}"))),
        None => Ok(()),
    }
}

/// What an item or a query is made from, before embedding.
enum Content {
    Embed(EmbedInput),
    Vector(Vec<f32>),
}

/// Unit vectors for the contents, in order: given vectors are checked and normalised, texts and
/// images are embedded together in one engine request. Errors name the content's subject.
async fn vectors(
    engine: &Engine,
    dim: usize,
    contents: Vec<(Subject, Content)>,
    deadline: Option<Instant>,
) -> Result<(Vec<Vec<f32>>, Option<pb::Timing>), IndexError> {
    let mut out: Vec<Option<Vec<f32>>> = vec![None; contents.len()];
    let mut to_embed = Vec::new();
    let mut embedded_at = Vec::new();
    for (position, (of, content)) in contents.into_iter().enumerate() {
        match content {
            Content::Vector(values) => {
                let unit = index::unit_vector(values, dim)
                    .map_err(|reason| IndexError::Content { of, reason })?;
                out[position] = Some(unit);
            }
            Content::Embed(input) => {
                to_embed.push(input);
                embedded_at.push((position, of));
            }
        }
    }
    let mut timing_out = None;
    if !to_embed.is_empty() {
        let embedded = engine
            .embed(to_embed, deadline)
            .await
            .map_err(|e| match e {
                EngineError::Input { index, source } => IndexError::Content {
                    of: embedded_at[index].1,
                    reason: source.to_string(),
                },
                other => IndexError::Engine(other),
            })?;
        for ((position, _), embedding) in embedded_at.iter().zip(embedded.embeddings) {
            out[*position] = Some(embedding.values);
        }
        timing_out = Some(embedded.timing.into());
    }
    Ok((
        out.into_iter()
            .map(|v| v.expect("every content has a vector"))
            .collect(),
        timing_out,
    ))
}

/// `Clip.Search`.
pub async fn search(
    loaded: &Loaded,
    request: pb::SearchRequest,
    deadline: Option<Instant>,
) -> Result<pb::SearchResponse, IndexError> {
    let store = &loaded.collections;
    let max_top_k = store.max_top_k();
    let top_k = match request.top_k as usize {
        0 => 10.min(max_top_k),
        k if k > max_top_k => {
            return Err(invalid(format!(
                "top_k is {k}; the limit is {max_top_k} (index.max_top_k)"
            )))
        }
        k => k,
    };
    if request.ef_search as usize > crate::ann::MAX_EF {
        return Err(invalid(format!(
            "ef_search is {}; the limit is {}",
            request.ef_search,
            crate::ann::MAX_EF
        )));
    }
    let filter = checked_filter(request.filter)?;
    let floor = match request.min_score {
        Some(s) if !s.is_finite() => {
            return Err(invalid(format!("min_score is {s}; it must be a number")))
        }
        other => other,
    };
    let collection = store.open(&request.collection).await?;
    let dim = collection.dim();
    use pb::search_request::Query;
    let content = match request.query {
        Some(Query::Text(text)) => Content::Embed(EmbedInput::Text(text)),
        Some(Query::Image(bytes)) => Content::Embed(EmbedInput::Image(bytes)),
        Some(Query::Vector(v)) => Content::Vector(v.values),
        Some(Query::Id(id)) => {
            let search = Search {
                target: Target::Id(id),
                top_k,
                ef_search: (request.ef_search > 0).then_some(request.ef_search as usize),
                filter,
            };
            return run_search(collection, search, floor, None).await;
        }
        None => return Err(invalid("set a query: text, image, vector or id".into())),
    };
    let (mut vectors, timing) = vectors(
        &loaded.engine,
        dim,
        vec![(Subject::Query, content)],
        deadline,
    )
    .await?;
    let search = Search {
        target: Target::Vector(vectors.pop().expect("one vector")),
        top_k,
        ef_search: (request.ef_search > 0).then_some(request.ef_search as usize),
        filter,
    };
    run_search(collection, search, floor, timing).await
}

/// Runs the search; hits under `floor` are left out (hits come best first, so the top_k best
/// over the floor are the top_k best cut there).
async fn run_search(
    collection: Arc<dyn StoredCollection>,
    search: Search,
    floor: Option<f32>,
    timing: Option<pb::Timing>,
) -> Result<pb::SearchResponse, IndexError> {
    let started = Instant::now();
    let found = collection.search(search).await?;
    let took = started.elapsed();
    crate::telemetry::searched(took);
    let over = |hit: &index::Hit| floor.is_none_or(|floor| hit.score >= floor);
    Ok(pb::SearchResponse {
        hits: found
            .hits
            .into_iter()
            .take_while(over)
            .map(Into::into)
            .collect(),
        exact: found.exact,
        search_micros: took.as_micros() as u64,
        timing,
    })
}

/// A filter's pairs, checked as metadata is.
fn checked_filter(
    given: std::collections::HashMap<String, String>,
) -> Result<Metadata, IndexError> {
    let filter = metadata(given);
    match index::metadata_problem(&filter) {
        Some(problem) => Err(invalid(format!("filter: {problem}"))),
        None => Ok(filter),
    }
}

/// Checks an Upsert's items and embeds their contents: at most `max_items` items, of which at
/// most the engine's per-request limit need embedding.
async fn items(
    engine: &Engine,
    collection: &dyn StoredCollection,
    given: Vec<pb::Item>,
    max_items: usize,
    deadline: Option<Instant>,
) -> Result<(Vec<Item>, Option<pb::Timing>), IndexError> {
    checked_count(given.len(), max_items, "items")?;
    let to_embed = given
        .iter()
        .filter(|i| !matches!(i.content, Some(pb::item::Content::Vector(_))))
        .count();
    let max_inputs = engine.max_inputs_per_request();
    if to_embed > max_inputs {
        return Err(invalid(format!(
            "the request has {to_embed} texts and images to embed; the limit is {max_inputs} \
             (limits.max_inputs_per_request; vectors count only towards \
             index.max_items_per_request)"
        )));
    }
    let mut seen = std::collections::HashMap::new();
    let mut contents = Vec::with_capacity(given.len());
    let mut heads = Vec::with_capacity(given.len());
    for (index, item) in given.into_iter().enumerate() {
        let of = Subject::Item(index);
        if let Some(reason) = index::id_problem(&item.id) {
            return Err(IndexError::Content { of, reason });
        }
        if let Some(first) = seen.insert(item.id.clone(), index) {
            return Err(invalid(format!(
                "items {first} and {index} have the same id {:?}",
                item.id
            )));
        }
        let meta = metadata(item.metadata);
        if let Some(reason) = index::metadata_problem(&meta) {
            return Err(IndexError::Content { of, reason });
        }
        use pb::item::Content as Given;
        let text = match &item.content {
            Some(Given::Text(text)) => Some(text.clone()),
            _ => None,
        };
        let content = match item.content {
            Some(Given::Text(text)) => Content::Embed(EmbedInput::Text(text)),
            Some(Given::Image(bytes)) => Content::Embed(EmbedInput::Image(bytes)),
            Some(Given::Vector(v)) => Content::Vector(v.values),
            None => {
                return Err(invalid(format!(
                    "item {index} is empty: set text, image or vector"
                )))
            }
        };
        contents.push((of, content));
        heads.push((item.id, meta, text));
    }
    let dim = collection.dim();
    let (vectors, timing) = vectors(engine, dim, contents, deadline).await?;
    let items = heads
        .into_iter()
        .zip(vectors)
        .map(|((id, metadata, text), vector)| Item {
            id,
            metadata,
            vector,
            text,
        })
        .collect();
    Ok((items, timing))
}

#[tonic::async_trait]
impl pb::collections_server::Collections for CollectionsService {
    async fn create_collection(
        &self,
        request: Request<pb::CreateCollectionRequest>,
    ) -> Result<Response<pb::CreateCollectionResponse>, Status> {
        let store = &self.state.loaded()?.collections;
        let r = request.into_inner();
        let hnsw = HnswSettings {
            m: r.m as usize,
            ef_construction: r.ef_construction as usize,
            ef_search: r.ef_search as usize,
        };
        let (info, created) = match store.create(&r.name, hnsw).await {
            Ok(info) => (info, true),
            // The one there is described, if it is this model's (else FAILED_PRECONDITION).
            Err(IndexError::Exists(_)) if r.if_not_exists => {
                (store.open(&r.name).await?.info().await?, false)
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Response::new(pb::CreateCollectionResponse {
            collection: Some(info.into()),
            created,
        }))
    }

    async fn drop_collection(
        &self,
        request: Request<pb::DropCollectionRequest>,
    ) -> Result<Response<pb::DropCollectionResponse>, Status> {
        let store = &self.state.loaded()?.collections;
        store.drop_collection(&request.into_inner().name).await?;
        Ok(Response::new(pb::DropCollectionResponse {}))
    }

    async fn list_collections(
        &self,
        _: Request<pb::ListCollectionsRequest>,
    ) -> Result<Response<pb::ListCollectionsResponse>, Status> {
        let listed = self.state.loaded()?.collections.list().await?;
        let collections = listed
            .into_iter()
            .map(|(name, listed)| match listed {
                Listed::Open(i) => i.into(),
                // Listed so that it can be found and dropped; its counts are unknown.
                Listed::Closed(manifest, _) => pb::CollectionInfo {
                    name,
                    model: manifest
                        .as_ref()
                        .map(|m| m.model.clone())
                        .unwrap_or_default(),
                    dim: manifest.as_ref().map_or(0, |m| m.dim as u32),
                    ..Default::default()
                },
            })
            .collect();
        Ok(Response::new(pb::ListCollectionsResponse { collections }))
    }

    async fn get_collection(
        &self,
        request: Request<pb::GetCollectionRequest>,
    ) -> Result<Response<pb::GetCollectionResponse>, Status> {
        let store = &self.state.loaded()?.collections;
        let collection = store.open(&request.into_inner().name).await?;
        let described = collection.info().await?;
        Ok(Response::new(pb::GetCollectionResponse {
            collection: Some(described.into()),
        }))
    }

    async fn upsert(
        &self,
        request: Request<pb::UpsertRequest>,
    ) -> Result<Response<pb::UpsertResponse>, Status> {
        let deadline = deadline::of(&request);
        let loaded = self.state.loaded()?;
        let r = request.into_inner();
        let collection = loaded.collections.open(&r.collection).await?;
        let max_items = self.state.advertised.max_items_per_request;
        let work = items(&loaded.engine, &*collection, r.items, max_items, deadline);
        let (items, timing) = deadline::within(deadline, work).await?;
        let (inserted, replaced) = collection.upsert(items).await?;
        Ok(Response::new(pb::UpsertResponse {
            inserted: inserted as u32,
            replaced: replaced as u32,
            timing,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let loaded = self.state.loaded()?;
        let r = request.into_inner();
        let max_ids = self.state.advertised.max_items_per_request;
        let deleted = match (r.ids.is_empty(), r.filter.is_empty()) {
            (false, true) => {
                checked_ids(&r.ids, max_ids)?;
                let collection = loaded.collections.open(&r.collection).await?;
                collection.delete(r.ids).await?
            }
            (true, false) => {
                let filter = checked_filter(r.filter)?;
                let collection = loaded.collections.open(&r.collection).await?;
                collection.delete_matching(filter).await?
            }
            (false, false) => {
                return Err(invalid("set ids or a filter, not both".into()).into());
            }
            (true, true) => {
                return Err(invalid(
                    "the request has no ids and no filter (to remove every item, drop the \
                     collection)"
                        .into(),
                )
                .into());
            }
        };
        Ok(Response::new(pb::DeleteResponse {
            deleted: u32::try_from(deleted).unwrap_or(u32::MAX),
        }))
    }

    async fn get_items(
        &self,
        request: Request<pb::GetItemsRequest>,
    ) -> Result<Response<pb::GetItemsResponse>, Status> {
        let loaded = self.state.loaded()?;
        let r = request.into_inner();
        checked_ids(&r.ids, self.state.advertised.max_items_per_request)?;
        let collection = loaded.collections.open(&r.collection).await?;
        let found = collection.get(r.ids, r.with_vectors).await?;
        let items = found
            .into_iter()
            .map(|item| convert::item(item, r.with_vectors))
            .collect();
        Ok(Response::new(pb::GetItemsResponse { items }))
    }

    async fn list_items(
        &self,
        request: Request<pb::ListItemsRequest>,
    ) -> Result<Response<pb::ListItemsResponse>, Status> {
        let loaded = self.state.loaded()?;
        let r = request.into_inner();
        let max = self.state.advertised.max_items_per_request;
        let size = match r.page_size as usize {
            0 => 100.min(max),
            n if n > max => {
                return Err(invalid(format!(
                    "page_size is {n}; the limit is {max} (index.max_items_per_request)"
                ))
                .into())
            }
            n => n,
        };
        let after = match r.page_token.as_str() {
            "" => None,
            token => Some(convert::page_after(token).ok_or_else(|| {
                invalid("page_token is not one this server gave (pass next_page_token back)".into())
            })?),
        };
        let filter = checked_filter(r.filter)?;
        let collection = loaded.collections.open(&r.collection).await?;
        let page = collection.page(after, filter, size, r.with_vectors).await?;
        // A full page may be the last; the next (empty) one says so.
        let next_page_token = match page.len() == size {
            true => page
                .last()
                .map(|i| convert::page_token(&i.id))
                .unwrap_or_default(),
            false => String::new(),
        };
        let items = page
            .into_iter()
            .map(|item| convert::item(item, r.with_vectors))
            .collect();
        Ok(Response::new(pb::ListItemsResponse {
            items,
            next_page_token,
        }))
    }
}
