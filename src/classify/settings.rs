//! The `classify` settings section and the named `classifiers`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{label_set_problem, TemplateSet};
use crate::ann::HnswSettings;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifySettings {
    /// Memory for label vectors of request label sets (named classifiers keep their own).
    pub cache_bytes: usize,
    /// Labels in one request's label set.
    pub max_labels: usize,
    /// Templates in one request's label set.
    pub max_templates: usize,
    /// Scores returned per input; `top_k` 0 asks for every label up to this.
    pub max_top_k: usize,
    /// Classifiers with at least this many labels answer from an HNSW index of their label
    /// vectors (candidates re-scored exactly) instead of scoring every label.
    pub hnsw_min_labels: usize,
    pub hnsw: HnswSettings,
}

impl Default for ClassifySettings {
    fn default() -> Self {
        Self {
            cache_bytes: 64 << 20,
            max_labels: 1000,
            max_templates: 100,
            max_top_k: 1000,
            hnsw_min_labels: 2000,
            hnsw: HnswSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierSettings {
    pub labels: Vec<String>,
    /// Prompt templates, each with `{}` for the label; none: `template_set`'s.
    pub templates: Vec<String>,
    /// A built-in template set: "default" (one prompt) or "imagenet" (CLIP's 80).
    pub template_set: Option<TemplateSet>,
    /// Per label: the probability at which the label is flagged.
    pub thresholds: BTreeMap<String, f32>,
}

impl ClassifierSettings {
    /// The templates its labels are embedded with (validated at start-up).
    pub fn templates(&self) -> Vec<String> {
        match (&self.template_set, self.templates.is_empty()) {
            (Some(set), true) => set.templates(),
            (None, true) => TemplateSet::Default.templates(),
            (_, false) => self.templates.clone(),
        }
    }

    pub fn problem(&self) -> Option<String> {
        if let Some(problem) = label_set_problem(&self.labels, &self.templates) {
            return Some(problem);
        }
        if self.template_set.is_some() && !self.templates.is_empty() {
            return Some("set templates or template_set, not both".into());
        }
        self.thresholds.iter().find_map(|(label, t)| {
            if !self.labels.contains(label) {
                Some(format!(
                    "threshold for {label:?}, which is not one of the labels"
                ))
            } else if !(0.0..=1.0).contains(t) {
                Some(format!(
                    "threshold for {label:?} is {t}; probabilities are 0 to 1"
                ))
            } else {
                None
            }
        })
    }
}
