//! Writes a trained model as a Hugging Face checkpoint directory that clipd and `transformers`
//! both load: `config.json`, `model.safetensors` (f16), `tokenizer.json`,
//! `preprocessor_config.json`.

use std::path::Path;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::files::FileError;
use crate::model::hf_clip::ModelFiles;
use crate::model::{ClipConfig, ModelError};
use crate::preprocess::processor_config::{OPENAI_CLIP_MEAN, OPENAI_CLIP_STD};

/// The demo's image pipeline: OpenAI's constants at 64 pixels.
pub fn preprocessor_json(side: u32) -> serde_json::Value {
    serde_json::json!({
        "crop_size": {"height": side, "width": side},
        "do_center_crop": true,
        "do_convert_rgb": true,
        "do_normalize": true,
        "do_rescale": true,
        "do_resize": true,
        "image_mean": OPENAI_CLIP_MEAN,
        "image_std": OPENAI_CLIP_STD,
        "image_processor_type": "CLIPImageProcessor",
        "resample": 3,
        "rescale_factor": 1.0 / 255.0,
        "size": {"shortest_edge": side},
    })
}

/// Pretty JSON with a final newline, as the files beside the weights are written.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), FileError> {
    let text = serde_json::to_string_pretty(value).expect("the value serialises") + "\n";
    std::fs::write(path, text).map_err(FileError::writing(path))
}

/// Weights are stored in f16: half the size, and the demo model loses nothing measurable.
pub fn write_checkpoint(
    dir: &Path,
    config: &ClipConfig,
    vs: &VarStore,
    tokenizer_json: &Path,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(FileError::writing(dir))?;
    let files = ModelFiles::in_dir(dir);
    let mut tensors: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.detach().to_kind(Kind::Half).contiguous()))
        .collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Tensor::write_safetensors(&tensors, &files.weights)?;
    write_json(&files.config, &config.to_hf_json("float16"))?;
    let side = config.vision.image_size as u32;
    write_json(&files.preprocessor, &preprocessor_json(side))?;
    std::fs::copy(tokenizer_json, &files.tokenizer)
        .map_err(FileError::writing(&files.tokenizer))?;
    Ok(())
}
