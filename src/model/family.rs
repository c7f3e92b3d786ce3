//! The model-family seam: what a checkpoint directory is, and what every family yields once
//! loaded (towers behind `Towers`, a tokenizer, an image pipeline and a `Scoring` rule). A new
//! family is a new variant here and a module of its own beside `hf_clip`.

use std::path::Path;

use tch::{Device, Tensor};

use super::checkpoint::Checkpoint;
use super::{hf_clip, ClipConfig, Dtype, ModelError, ModelOptions};
use crate::preprocess::InputLimits;

/// A checkpoint's family, with what its configuration file said.
#[derive(Debug, Clone, PartialEq)]
pub enum Family {
    /// Hugging Face `CLIPModel` (`config.json` + `model.safetensors`).
    HfClip(ClipConfig),
}

impl Family {
    /// Reads the configuration that says which family the checkpoint in `dir` belongs to.
    pub fn detect(dir: &Path) -> Result<Self, ModelError> {
        hf_clip::detect(dir).map(Self::HfClip)
    }

    /// The files a hub download fetches for a repository of this layout. Every family so far
    /// shares Hugging Face's, so the hub is asked for these before any configuration is read.
    pub fn hub_files() -> &'static [&'static str] {
        &hf_clip::FILES
    }

    pub fn load(
        self,
        dir: &Path,
        options: &ModelOptions,
        limits: &InputLimits,
    ) -> Result<Checkpoint, ModelError> {
        match self {
            Self::HfClip(config) => hf_clip::load(config, dir, options, limits),
        }
    }

    /// Values in one embedding.
    pub fn dim(&self) -> usize {
        match self {
            Self::HfClip(config) => config.projection_dim as usize,
        }
    }

    /// The side of the square images the vision tower takes.
    pub fn image_size(&self) -> usize {
        match self {
            Self::HfClip(config) => config.vision.image_size as usize,
        }
    }
}

/// A family's two towers on one device in one dtype. Both take what the tokenizer and the image
/// pipeline prepared, and return L2-normalised f32 embeddings `[batch, dim]` on the CPU.
pub trait Towers: Send {
    /// `input_ids` `[batch, len]`, as `ClipTokenizer::batch` pads them.
    fn embed_text(&self, input_ids: &Tensor) -> Tensor;
    /// `pixel_values` `[batch, 3, size, size]` in f32; cast to the model's dtype on its device.
    fn embed_image(&self, pixel_values: &Tensor) -> Tensor;
    fn device(&self) -> Device;
    fn dtype(&self) -> Dtype;
}

/// How a family turns an image's cosine similarities to labels into probabilities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scoring {
    /// CLIP's: a softmax over the labels of `logit_scale` · cosine.
    Softmax { logit_scale: f32 },
}

impl Scoring {
    /// The scale applied to cosine similarities before the probabilities are taken.
    pub fn logit_scale(self) -> f32 {
        match self {
            Self::Softmax { logit_scale } => logit_scale,
        }
    }
}
