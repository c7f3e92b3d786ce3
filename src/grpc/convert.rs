//! Conversions between the protobuf types and the domain's, in one place.

use std::collections::HashMap;

use super::pb;
use crate::classify::{Classification, ClassifyError, Labels, TemplateSet};
use crate::engine::{EmbedInput, Embedded, EngineError, Timing};
use crate::index::{Hit, Info, Item, Metadata};

impl TryFrom<pb::classify_request::Labels> for Labels {
    type Error = ClassifyError;

    fn try_from(labels: pb::classify_request::Labels) -> Result<Self, Self::Error> {
        use pb::classify_request::Labels as Given;
        match labels {
            Given::Classifier(name) => Ok(Labels::Named(name)),
            Given::LabelSet(set) => {
                let template_set = match pb::TemplateSet::try_from(set.template_set) {
                    Ok(pb::TemplateSet::Unspecified | pb::TemplateSet::Default) => {
                        TemplateSet::Default
                    }
                    Ok(pb::TemplateSet::Imagenet) => TemplateSet::Imagenet,
                    Err(_) => {
                        return Err(ClassifyError::InvalidRequest(format!(
                            "unknown template_set {}",
                            set.template_set
                        )))
                    }
                };
                Ok(Labels::Set {
                    labels: set.labels,
                    templates: set.templates,
                    template_set,
                })
            }
        }
    }
}

impl From<Classification> for pb::Classification {
    fn from(classification: Classification) -> Self {
        Self {
            scores: classification
                .scores
                .into_iter()
                .map(|s| pb::LabelScore {
                    label: s.label,
                    probability: s.probability,
                    similarity: s.similarity,
                })
                .collect(),
            flagged: classification.flagged,
        }
    }
}

/// A request's inputs; an empty one is refused by its index.
pub fn inputs(inputs: Vec<pb::Input>) -> Result<Vec<EmbedInput>, EngineError> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(index, input)| match input.kind {
            Some(pb::input::Kind::Text(text)) => Ok(EmbedInput::Text(text)),
            Some(pb::input::Kind::Image(bytes)) => Ok(EmbedInput::Image(bytes)),
            None => Err(EngineError::EmptyInput { index }),
        })
        .collect()
}

impl From<Timing> for pb::Timing {
    fn from(timing: Timing) -> Self {
        let micros = |d: std::time::Duration| d.as_micros().min(u128::from(u64::MAX)) as u64;
        Self {
            preprocess_micros: micros(timing.preprocess),
            queue_micros: micros(timing.queue),
            model_micros: micros(timing.model),
            batches: timing.batches as u32,
            batch_size: timing.batch_size as u32,
        }
    }
}

/// The answer to an Embed request of the model named `model`.
pub fn embed_response(embedded: Embedded, model: &str) -> pb::EmbedResponse {
    pb::EmbedResponse {
        embeddings: embedded
            .embeddings
            .into_iter()
            .map(|e| pb::Embedding {
                values: e.values,
                truncated: e.truncated,
            })
            .collect(),
        model: model.to_owned(),
        timing: Some(embedded.timing.into()),
    }
}

impl From<Info> for pb::CollectionInfo {
    fn from(info: Info) -> Self {
        let m = info.manifest;
        Self {
            name: m.name,
            model: m.model,
            dim: m.dim as u32,
            count: info.count as u64,
            m: m.hnsw.m as u32,
            ef_construction: m.hnsw.ef_construction as u32,
            ef_search: m.hnsw.ef_search as u32,
            tombstones: info.tombstones as u64,
            unsnapshotted_writes: info.unsnapshotted_writes,
            rebuilding: info.rebuilding,
            rebuilds: info.rebuilds,
        }
    }
}

pub fn metadata(map: HashMap<String, String>) -> Metadata {
    map.into_iter().collect()
}

impl From<Hit> for pb::Hit {
    fn from(hit: Hit) -> Self {
        Self {
            id: hit.id,
            score: hit.score,
            metadata: hit.metadata.into_iter().collect(),
            text: hit.text.unwrap_or_default(),
        }
    }
}

/// A stored item as GetItems and ListItems return it: its vector when asked for, else its text
/// (if it was made from one).
pub fn item(item: Item, with_vector: bool) -> pb::Item {
    let content = match with_vector {
        true => Some(pb::item::Content::Vector(pb::Vector {
            values: item.vector,
        })),
        false => item.text.map(pb::item::Content::Text),
    };
    pb::Item {
        id: item.id,
        content,
        metadata: item.metadata.into_iter().collect(),
    }
}

/// The page token after the item `last`: opaque to clients (URL-safe base64 of the id).
pub fn page_token(last: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

/// The id a page token continues after; None: not a token this server made.
pub fn page_after(token: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    String::from_utf8(bytes).ok()
}
