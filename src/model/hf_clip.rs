//! The Hugging Face `CLIPModel` family: `config.json`, `model.safetensors`, `tokenizer.json` and
//! `preprocessor_config.json` in one directory, loaded as `transformers` loads them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::{Device, Tensor};

use super::checkpoint::Checkpoint;
use super::family::{Family, Scoring, Towers};
use super::source::directory_name;
use super::{ClipConfig, Dtype, LoadedModel, ModelError, ModelOptions, TextConfig};
use crate::files::FileError;
use crate::preprocess::{ClipTokenizer, ImageProcessor, InputLimits, ProcessorConfig};

/// The files of a checkpoint directory, in the order a hub download fetches them.
pub const FILES: [&str; 4] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "preprocessor_config.json",
];

/// The files of a model directory.
pub struct ModelFiles {
    pub config: PathBuf,
    pub weights: PathBuf,
    pub tokenizer: PathBuf,
    pub preprocessor: PathBuf,
}

impl ModelFiles {
    pub fn in_dir(dir: &Path) -> Self {
        let [config, weights, tokenizer, preprocessor] = FILES.map(|name| dir.join(name));
        Self {
            config,
            weights,
            tokenizer,
            preprocessor,
        }
    }
}

pub fn detect(dir: &Path) -> Result<ClipConfig, ModelError> {
    ClipConfig::from_file(&ModelFiles::in_dir(dir).config)
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

pub fn load(
    config: ClipConfig,
    dir: &Path,
    options: &ModelOptions,
    limits: &InputLimits,
) -> Result<Checkpoint, ModelError> {
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
    let processor = ProcessorConfig::from_file(&files.preprocessor)?;
    let size = config.vision.image_size as u32;
    if processor.output_size() != Some((size, size)) {
        return Err(FileError::Invalid {
            path: files.preprocessor.clone(),
            reason: match processor.output_size() {
                Some((h, w)) => format!(
                    "the pipeline produces {w}x{h} images (crop_size); the vision model takes \
                     {size}x{size} (config.json's image_size)"
                ),
                None => format!(
                    "the pipeline's output size varies (no crop_size); the vision model takes \
                     {size}x{size}"
                ),
            },
        }
        .into());
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
    let scoring = Scoring::Softmax {
        logit_scale: model.logit_scale(),
    };
    Ok(Checkpoint {
        name: directory_name(dir),
        family: Family::HfClip(config),
        towers: Box::new(model),
        tokenizer: Arc::new(tokenizer),
        images: Arc::new(ImageProcessor::new(processor, limits.image)),
        scoring,
    })
}

impl Towers for LoadedModel {
    fn embed_text(&self, input_ids: &Tensor) -> Tensor {
        LoadedModel::embed_text(self, input_ids)
    }

    fn embed_image(&self, pixel_values: &Tensor) -> Tensor {
        LoadedModel::embed_image(self, pixel_values)
    }

    fn device(&self) -> Device {
        self.device
    }

    fn dtype(&self) -> Dtype {
        self.dtype
    }
}
