//! A label set embedded: one unit vector per label, and scoring a query against them.

use crate::ann::{dot, HnswSettings, UnitIndex};
use crate::model::Scoring;

/// One label's score for one input.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelScore {
    pub label: String,
    /// Softmax over the labels of similarity x the model's logit scale.
    pub probability: f32,
    /// Cosine similarity of the input's and the label's embeddings.
    pub similarity: f32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Classification {
    /// Best first.
    pub scores: Vec<LabelScore>,
    /// Labels whose probability reached their threshold.
    pub flagged: Vec<String>,
}

pub struct Classifier {
    labels: Vec<String>,
    /// Row i: label i's unit vector.
    vectors: Vec<f32>,
    dim: usize,
    /// Per label; NaN: none.
    thresholds: Vec<f32>,
    /// For large vocabularies: candidates come from HNSW, then are scored exactly.
    index: Option<UnitIndex>,
}

impl Classifier {
    /// `vectors`: `labels.len()` unit rows of `dim`. An HNSW index is built when there are at
    /// least `hnsw_min_labels` labels.
    pub fn new(
        labels: Vec<String>,
        vectors: Vec<f32>,
        dim: usize,
        thresholds: Vec<Option<f32>>,
        hnsw_min_labels: usize,
        hnsw: &HnswSettings,
    ) -> Self {
        debug_assert_eq!(vectors.len(), labels.len() * dim);
        let index =
            (labels.len() >= hnsw_min_labels).then(|| UnitIndex::build(&vectors, dim, hnsw));
        Self {
            thresholds: thresholds
                .into_iter()
                .map(|t| t.unwrap_or(f32::NAN))
                .collect(),
            labels,
            vectors,
            dim,
            index,
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn uses_index(&self) -> bool {
        self.index.is_some()
    }

    fn similarity(&self, label: usize, query: &[f32]) -> f32 {
        dot(
            &self.vectors[label * self.dim..(label + 1) * self.dim],
            query,
        )
    }

    /// The `top_k` best labels for a unit `query`. Exactly, over every label; with an index, over
    /// the `ef_search` (at least `top_k`) candidates it returns: probabilities are then a softmax
    /// over those, and only they can be flagged (the labels beyond weigh next to nothing at CLIP's
    /// logit scale).
    pub fn classify(&self, query: &[f32], top_k: usize, scoring: Scoring) -> Classification {
        let candidates: Vec<usize> = match &self.index {
            // A pool of ef_search candidates, not just top_k: the softmax and the thresholds need
            // the labels around the best ones too.
            Some(index) => index.search(query, top_k.max(index.ef_search())),
            None => (0..self.labels.len()).collect(),
        };
        let similarities: Vec<f32> = candidates
            .iter()
            .map(|&label| self.similarity(label, query))
            .collect();
        let probabilities = match scoring {
            Scoring::Softmax { logit_scale } => softmax(&similarities, logit_scale),
        };
        let flagged = candidates
            .iter()
            .zip(&probabilities)
            .filter(|(&label, &p)| p >= self.thresholds[label])
            .map(|(&label, _)| self.labels[label].clone())
            .collect();
        // Only the best top_k are sorted: a large label set is mostly discarded.
        let by_rank = |a: &usize, b: &usize| {
            probabilities[*b]
                .total_cmp(&probabilities[*a])
                .then(candidates[*a].cmp(&candidates[*b]))
        };
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        if top_k < order.len() {
            order.select_nth_unstable_by(top_k, by_rank);
            order.truncate(top_k);
        }
        order.sort_unstable_by(by_rank);
        Classification {
            scores: order
                .into_iter()
                .map(|i| LabelScore {
                    label: self.labels[candidates[i]].clone(),
                    probability: probabilities[i],
                    similarity: similarities[i],
                })
                .collect(),
            flagged,
        }
    }
}

/// A softmax over the labels of `logit_scale` · similarity (shifted by the best for stability).
fn softmax(similarities: &[f32], logit_scale: f32) -> Vec<f32> {
    let best = similarities
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut probabilities: Vec<f32> = similarities
        .iter()
        .map(|s| ((s - best) * logit_scale).exp())
        .collect();
    let total: f32 = probabilities.iter().sum();
    probabilities.iter_mut().for_each(|p| *p /= total);
    probabilities
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax_at(logit_scale: f32) -> Scoring {
        Scoring::Softmax { logit_scale }
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = dot(v, v).sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn classifier(thresholds: Vec<Option<f32>>) -> Classifier {
        let vectors = [unit(&[1.0, 0.0]), unit(&[0.0, 1.0]), unit(&[1.0, 1.0])].concat();
        let labels = ["east", "north", "north-east"].map(String::from).to_vec();
        Classifier::new(
            labels,
            vectors,
            2,
            thresholds,
            1000,
            &HnswSettings::default(),
        )
    }

    #[test]
    fn scores_are_sorted_softmaxed_and_cut_to_top_k() {
        let c = classifier(vec![None; 3]);
        let result = c.classify(&unit(&[1.0, 0.2]), 3, softmax_at(100.0));
        let labels: Vec<&str> = result.scores.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["east", "north-east", "north"]);
        let total: f32 = result.scores.iter().map(|s| s.probability).sum();
        assert!((total - 1.0).abs() < 1e-5);
        let expected = dot(&unit(&[1.0, 0.2]), &unit(&[1.0, 1.0]));
        assert!((result.scores[1].similarity - expected).abs() < 1e-6);
        assert_eq!(
            c.classify(&unit(&[1.0, 0.2]), 1, softmax_at(100.0))
                .scores
                .len(),
            1
        );
    }

    #[test]
    fn flagged_labels_reach_their_threshold_whatever_top_k() {
        let c = classifier(vec![Some(0.5), Some(1e-5), None]);
        let result = c.classify(&unit(&[1.0, 0.0]), 1, softmax_at(10.0));
        assert_eq!(result.scores[0].label, "east");
        assert_eq!(result.flagged, ["east", "north"]);
        let result = c.classify(&unit(&[1.0, 0.0]), 3, softmax_at(100.0));
        assert_eq!(result.flagged, ["east"]);
    }
}
