//! Zero-shot classification: labels are embedded through prompt templates (averaged, CLIP's
//! prompt ensembling), inputs are embedded, and scored against them.

mod cache;
mod classifier;
mod error;
mod settings;
pub mod templates;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, StreamExt, TryStreamExt};

pub use cache::CacheStats;
pub use classifier::{Classification, Classifier, LabelScore};
pub use error::ClassifyError;
pub use settings::{ClassifierSettings, ClassifySettings};
pub use templates::TemplateSet;

use crate::engine::{EmbedInput, Engine, EngineError, Timing};
use crate::model::Scoring;
use cache::LabelCache;

/// Which labels a request is classified against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Labels {
    /// A classifier from the configuration.
    Named(String),
    /// Labels given in the request; no templates: `template_set`'s.
    Set {
        labels: Vec<String>,
        templates: Vec<String>,
        template_set: TemplateSet,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub results: Vec<Classification>,
    pub timing: Timing,
}

/// Label-set rules shared by the configuration and requests: what is wrong, if anything.
pub fn label_set_problem(labels: &[String], templates: &[String]) -> Option<String> {
    if labels.is_empty() {
        return Some("the label set is empty".into());
    }
    if let Some(i) = labels.iter().position(|l| l.trim().is_empty()) {
        return Some(format!("label {i} is empty"));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(label) = labels.iter().find(|l| !seen.insert(l.as_str())) {
        return Some(format!("label {label:?} appears twice"));
    }
    if let Some(i) = templates
        .iter()
        .position(|t| !t.contains(templates::PLACEHOLDER))
    {
        return Some(format!(
            "template {i} ({:?}) has no {{}} for the label",
            templates[i]
        ));
    }
    None
}

/// The classifiers of the configuration, embedded, and the cache of ad-hoc label vectors.
pub struct Classify {
    engine: Engine,
    settings: ClassifySettings,
    named: HashMap<String, Arc<Classifier>>,
    cache: LabelCache,
    scoring: Scoring,
}

impl Classify {
    /// Embeds the configured classifiers' labels through the engine.
    pub async fn start(
        engine: Engine,
        settings: &ClassifySettings,
        classifiers: &BTreeMap<String, ClassifierSettings>,
    ) -> Result<Self, EngineError> {
        let mut classify = Self {
            scoring: engine.description().scoring,
            engine,
            settings: settings.clone(),
            named: HashMap::new(),
            cache: LabelCache::new(settings.cache_bytes),
        };
        for (name, configured) in classifiers {
            let started = Instant::now();
            let classifier = classify.build_named(configured).await?;
            tracing::info!(
                classifier = %name,
                labels = classifier.len(),
                hnsw = classifier.uses_index(),
                seconds = format!("{:.2}", started.elapsed().as_secs_f32()),
                "classifier ready"
            );
            classify.named.insert(name.clone(), Arc::new(classifier));
        }
        Ok(classify)
    }

    async fn build_named(
        &self,
        configured: &ClassifierSettings,
    ) -> Result<Classifier, EngineError> {
        let templates = configured.templates();
        let vectors = self
            .label_vectors(&configured.labels, &templates, None)
            .await?;
        let thresholds = configured
            .labels
            .iter()
            .map(|l| configured.thresholds.get(l).copied())
            .collect();
        Ok(self
            .classifier(configured.labels.clone(), vectors, thresholds)
            .await)
    }

    async fn classifier(
        &self,
        labels: Vec<String>,
        vectors: Vec<f32>,
        thresholds: Vec<Option<f32>>,
    ) -> Classifier {
        let dim = self.engine.description().dim;
        let (min, hnsw) = (self.settings.hnsw_min_labels, self.settings.hnsw);
        // Building an index is CPU work of its own: keep it off the async threads.
        tokio::task::spawn_blocking(move || {
            Classifier::new(labels, vectors, dim, thresholds, min, &hnsw)
        })
        .await
        .expect("building a classifier does not panic")
    }

    pub fn cache_stats(&self) -> CacheStats {
        self.cache.stats()
    }

    /// Classifies each input; `top_k` 0: every label, up to `classify.max_top_k`.
    pub async fn classify(
        &self,
        inputs: Vec<EmbedInput>,
        labels: Labels,
        top_k: usize,
        deadline: Option<Instant>,
    ) -> Result<Classified, ClassifyError> {
        let max_top_k = self.settings.max_top_k;
        if top_k > max_top_k {
            return Err(ClassifyError::InvalidRequest(format!(
                "top_k is {top_k}; the limit is {max_top_k}"
            )));
        }
        // Labels first: their prompts wait for room in the queue, and must not crowd out the
        // request's own inputs, which are refused at once when the queue is full.
        let classifier = self.resolve(labels, deadline).await?;
        let embedded = self.engine.embed(inputs, deadline).await?;
        let top_k = match top_k {
            0 => classifier.len().min(max_top_k),
            k => k,
        };
        let results = embedded
            .embeddings
            .iter()
            .map(|e| classifier.classify(&e.values, top_k, self.scoring))
            .collect();
        Ok(Classified {
            results,
            timing: embedded.timing,
        })
    }

    async fn resolve(
        &self,
        labels: Labels,
        deadline: Option<Instant>,
    ) -> Result<Arc<Classifier>, ClassifyError> {
        match labels {
            Labels::Named(name) => self
                .named
                .get(&name)
                .cloned()
                .ok_or(ClassifyError::UnknownClassifier(name)),
            Labels::Set {
                labels,
                templates,
                template_set,
            } => {
                let limits = &self.settings;
                if labels.len() > limits.max_labels {
                    return Err(ClassifyError::InvalidRequest(format!(
                        "the label set has {} labels; the limit is {}",
                        labels.len(),
                        limits.max_labels
                    )));
                }
                if templates.len() > limits.max_templates {
                    return Err(ClassifyError::InvalidRequest(format!(
                        "the label set has {} templates; the limit is {}",
                        templates.len(),
                        limits.max_templates
                    )));
                }
                if let Some(problem) = label_set_problem(&labels, &templates) {
                    return Err(ClassifyError::InvalidRequest(problem));
                }
                let templates = match templates.is_empty() {
                    true => template_set.templates(),
                    false => templates,
                };
                let vectors = self.label_vectors(&labels, &templates, deadline).await?;
                let none = vec![None; labels.len()];
                Ok(Arc::new(self.classifier(labels, vectors, none).await))
            }
        }
    }

    /// One unit vector per label, rows in order: each label's prompts are embedded (through the
    /// batcher, like any text), averaged and normalised again; cached per (label, templates).
    async fn label_vectors(
        &self,
        labels: &[String],
        templates: &[String],
        deadline: Option<Instant>,
    ) -> Result<Vec<f32>, EngineError> {
        let mut vectors: Vec<Option<Arc<[f32]>>> = labels
            .iter()
            .map(|l| self.cache.get(&cache::key(l, templates)))
            .collect();
        let missing: Vec<usize> = (0..labels.len())
            .filter(|&i| vectors[i].is_none())
            .collect();
        let prompts: Vec<EmbedInput> = missing
            .iter()
            .flat_map(|&i| {
                templates
                    .iter()
                    .map(move |t| EmbedInput::Text(templates::fill(t, &labels[i])))
            })
            .collect();
        // Chunks in flight so that batches fill, on at most half the queue budget so that other
        // requests still get in; each chunk waits for room rather than fail against the others.
        let chunk = self.engine.max_inputs_per_request();
        let in_flight = (self.engine.max_queued_inputs() / chunk / 2).max(1);
        let chunks: Vec<Vec<EmbedInput>> = prompts.chunks(chunk).map(<[_]>::to_vec).collect();
        let embedded: Vec<Vec<f32>> = stream::iter(chunks)
            .map(|chunk| self.engine.embed_when_admitted(chunk, deadline))
            .buffered(in_flight)
            .map_ok(|e| stream::iter(e.embeddings.into_iter().map(|e| Ok(e.values))))
            .try_flatten()
            .try_collect()
            .await?;
        for (&label, prompts) in missing.iter().zip(embedded.chunks(templates.len())) {
            let vector: Arc<[f32]> = mean_direction(prompts).into();
            self.cache
                .insert(cache::key(&labels[label], templates), vector.clone());
            vectors[label] = Some(vector);
        }
        Ok(vectors
            .into_iter()
            .flat_map(|v| v.expect("every label embedded").to_vec())
            .collect())
    }
}

/// The normalised mean of unit vectors.
fn mean_direction(vectors: &[Vec<f32>]) -> Vec<f32> {
    let dim = vectors.first().map_or(0, Vec::len);
    let mut mean = vec![0f32; dim];
    for v in vectors {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += x;
        }
    }
    let norm = mean.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    mean.iter_mut().for_each(|m| *m /= norm);
    mean
}
