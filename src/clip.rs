//! A checkpoint directory in Hugging Face layout, loaded: model, tokenizer and image pipeline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::Tensor;

use crate::error::{InputError, ModelError};
use crate::model::{ClipConfig, LoadedModel, ModelOptions, TextConfig};
use crate::model_source::directory_name;
use crate::preprocess::{
    ClipTokenizer, ImageLimits, ImageProcessor, ProcessorConfig, TokenizedText,
};

/// Limits on single inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    pub image: ImageLimits,
    pub max_text_bytes: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            image: ImageLimits::default(),
            max_text_bytes: 16 << 10,
        }
    }
}

/// The files of a model directory.
pub struct ModelFiles {
    pub config: PathBuf,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
    pub preprocessor: PathBuf,
}

impl ModelFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            config: dir.join("config.json"),
            weights: dir.join("model.safetensors"),
            tokenizer: dir.join("tokenizer.json"),
            preprocessor: dir.join("preprocessor_config.json"),
        }
    }
}

/// A tokenizer and a text model that do not belong together fail at the first request (an id past
/// the embedding table aborts inside libtorch) or, worse, pool at the wrong token: refuse them.
fn check_tokenizer(tokenizer: &ClipTokenizer, text: &TextConfig) -> Result<(), String> {
    let max_id = tokenizer.max_token_id();
    if i64::from(max_id) >= text.vocab_size {
        return Err(format!(
            "token ids go up to {max_id}, past config.json's vocab_size {}",
            text.vocab_size
        ));
    }
    let last = tokenizer
        .encode("")
        .map_err(|e| e.to_string())?
        .ids
        .last()
        .copied()
        .unwrap_or(-1);
    if text.legacy_eos_pooling() && last != i64::from(max_id) {
        return Err(format!(
            "config.json's eos_token_id 2 means pooling at the highest token id ({max_id}), but \
             texts end with id {last}"
        ));
    }
    if !text.legacy_eos_pooling() && last != text.eos_token_id {
        return Err(format!(
            "texts end with id {last}, but config.json's eos_token_id is {}: pooling would read \
             the wrong token",
            text.eos_token_id
        ));
    }
    Ok(())
}

/// One text's embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct TextEmbedding {
    pub values: Vec<f32>,
    pub truncated: bool,
}

pub struct Clip {
    pub name: String,
    pub config: ClipConfig,
    pub model: LoadedModel,
    /// Shared with the threads that prepare inputs while the model runs.
    pub tokenizer: Arc<ClipTokenizer>,
    pub images: Arc<ImageProcessor>,
}

impl Clip {
    pub fn load(
        dir: &Path,
        options: &ModelOptions,
        limits: &InputLimits,
    ) -> Result<Self, ModelError> {
        let files = ModelFiles::in_dir(dir);
        if !files.weights.is_file() && dir.join("pytorch_model.bin").is_file() {
            return Err(ModelError::Weights {
                path: files.weights.clone(),
                reason: "not found; this checkpoint has only pytorch_model.bin (pickle), which \
                         clipd does not load: convert it with transformers \
                         (save_pretrained(..., safe_serialization=True))"
                    .into(),
            });
        }
        let config = ClipConfig::from_file(&files.config)?;
        let processor = ProcessorConfig::from_file(&files.preprocessor)?;
        let size = config.vision.image_size as u32;
        if processor.output_size() != Some((size, size)) {
            return Err(ModelError::Config {
                path: files.preprocessor.clone(),
                reason: match processor.output_size() {
                    Some((h, w)) => format!(
                        "the pipeline produces {w}x{h} images (crop_size); the vision model \
                         takes {size}x{size} (config.json's image_size)"
                    ),
                    None => format!(
                        "the pipeline's output size varies (no crop_size); the vision model \
                         takes {size}x{size}"
                    ),
                },
            });
        }
        let tokenizer = ClipTokenizer::from_file(
            &files.tokenizer,
            config.text.max_position_embeddings as usize,
            limits.max_text_bytes,
        )?;
        check_tokenizer(&tokenizer, &config.text).map_err(|reason| ModelError::Tokenizer {
            path: files.tokenizer.clone(),
            reason,
        })?;
        let model = LoadedModel::load(&config, &files.weights, options)?;
        let name = directory_name(dir);
        Ok(Self {
            name,
            config,
            model,
            tokenizer: Arc::new(tokenizer),
            images: Arc::new(ImageProcessor::new(processor, limits.image)),
        })
    }

    pub fn dim(&self) -> usize {
        self.config.projection_dim as usize
    }

    pub fn image_size(&self) -> usize {
        self.config.vision.image_size as usize
    }

    /// Embeds already tokenised texts in one batch.
    pub fn embed_tokenized(&self, texts: &[&TokenizedText]) -> Vec<Vec<f32>> {
        if texts.is_empty() {
            return Vec::new();
        }
        rows(&self.model.embed_text(&self.tokenizer.batch(texts)))
    }

    /// Embeds already preprocessed `[3, size, size]` pixel arrays in one batch.
    pub fn embed_pixels(&self, pixels: &[&[f32]]) -> Vec<Vec<f32>> {
        if pixels.is_empty() {
            return Vec::new();
        }
        let s = self.image_size() as i64;
        let flat: Vec<f32> = pixels.iter().flat_map(|p| p.iter().copied()).collect();
        let batch = Tensor::from_slice(&flat).view([pixels.len() as i64, 3, s, s]);
        rows(&self.model.embed_image(&batch))
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
