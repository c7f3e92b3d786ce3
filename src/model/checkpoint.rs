//! A checkpoint loaded for serving, whatever its family: its towers, tokenizer, image pipeline
//! and scoring rule. The engine, `clipd embed`, the demo trainer's evaluation and the collections'
//! identity all see a model through this type.

use std::path::Path;
use std::sync::Arc;

use tch::Tensor;

use super::family::{Family, Scoring, Towers};
use super::{ModelError, ModelOptions};
use crate::preprocess::{ClipTokenizer, ImageProcessor, InputError, InputLimits, TokenizedText};

/// The text embedded to fingerprint a model (see `index::ModelIdentity`).
pub const PROBE_TEXT: &str = "a photo of a red apple on a wooden table";

/// One text's embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEmbedding {
    pub values: Vec<f32>,
    pub truncated: bool,
}

pub struct Checkpoint {
    /// What clients see as the model's name (see `source::ModelSource::name`).
    pub name: String,
    /// The family and what its configuration file said.
    pub family: Family,
    pub towers: Box<dyn Towers>,
    /// Shared with the threads that prepare inputs while the model runs.
    pub tokenizer: Arc<ClipTokenizer>,
    pub images: Arc<ImageProcessor>,
    pub scoring: Scoring,
}

impl Checkpoint {
    /// Loads the checkpoint in `dir`, of whichever family its files say, named after the
    /// directory.
    pub fn load(
        dir: &Path,
        options: &ModelOptions,
        limits: &InputLimits,
    ) -> Result<Self, ModelError> {
        Family::detect(dir)?.load(dir, options, limits)
    }

    pub fn dim(&self) -> usize {
        self.family.dim()
    }

    pub fn image_size(&self) -> usize {
        self.family.image_size()
    }

    /// The embedding of `PROBE_TEXT`, which tells this checkpoint's collections from another's.
    /// The text is not held to the request limit on text length.
    pub fn probe(&self) -> Result<Vec<f32>, ModelError> {
        let probe = self
            .tokenizer
            .encode_without_limit(PROBE_TEXT)
            .map_err(|e| ModelError::Probe(e.to_string()))?;
        let probe = self.embed_tokenized(&[&probe]).remove(0);
        if !probe.iter().all(|x| x.is_finite()) {
            return Err(ModelError::Probe(
                "the model's embedding of it is not finite: the checkpoint is broken".into(),
            ));
        }
        Ok(probe)
    }

    /// Embeds already tokenised texts in one batch.
    pub fn embed_tokenized(&self, texts: &[&TokenizedText]) -> Vec<Vec<f32>> {
        if texts.is_empty() {
            return Vec::new();
        }
        rows(&self.towers.embed_text(&self.tokenizer.batch(texts)))
    }

    /// Embeds already preprocessed `[3, size, size]` pixel arrays in one batch.
    pub fn embed_pixels(&self, pixels: &[&[f32]]) -> Vec<Vec<f32>> {
        if pixels.is_empty() {
            return Vec::new();
        }
        let s = self.image_size() as i64;
        let flat: Vec<f32> = pixels.iter().flat_map(|p| p.iter().copied()).collect();
        let batch = Tensor::from_slice(&flat).view([pixels.len() as i64, 3, s, s]);
        rows(&self.towers.embed_image(&batch))
    }

    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<TextEmbedding>, (usize, InputError)> {
        let tokenized = texts
            .iter()
            .enumerate()
            .map(|(i, t)| self.tokenizer.encode(t).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&TokenizedText> = tokenized.iter().collect();
        Ok(self
            .embed_tokenized(&refs)
            .into_iter()
            .zip(&tokenized)
            .map(|(values, t)| TextEmbedding {
                values,
                truncated: t.truncated,
            })
            .collect())
    }

    pub fn embed_images(&self, images: &[&[u8]]) -> Result<Vec<Vec<f32>>, (usize, InputError)> {
        let pixels = images
            .iter()
            .enumerate()
            .map(|(i, bytes)| self.images.process(bytes).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&[f32]> = pixels.iter().map(Vec::as_slice).collect();
        Ok(self.embed_pixels(&refs))
    }
}

fn rows(matrix: &Tensor) -> Vec<Vec<f32>> {
    let (n, d) = matrix.size2().expect("embeddings are [batch, dim]");
    let flat: Vec<f32> = Vec::try_from(matrix.contiguous().view([-1])).expect("f32 embeddings");
    debug_assert_eq!(flat.len() as i64, n * d);
    flat.chunks_exact(d.max(1) as usize)
        .map(<[f32]>::to_vec)
        .take(n as usize)
        .collect()
}
