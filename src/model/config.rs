//! `config.json` of a Hugging Face `CLIPModel`, read the way `transformers` reads it: every missing
//! key takes `CLIPTextConfig`'s / `CLIPVisionConfig`'s default, and the legacy `text_config_dict` /
//! `vision_config_dict` keys, when present, win over `text_config` / `vision_config`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ModelError;
use crate::files::read_json;

/// The activation named by `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Activation {
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    #[serde(rename = "gelu")]
    Gelu,
    /// `gelu_new`, `gelu_pytorch_tanh` and `gelu_fast` are all the tanh approximation.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct TextConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub max_position_embeddings: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub eos_token_id: i64,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        }
    }
}

impl TextConfig {
    /// The original OpenAI checkpoints say `eos_token_id: 2`, which is wrong; `transformers` then
    /// pools at the highest token id (the end-of-text token has the highest id in CLIP's vocabulary).
    pub fn legacy_eos_pooling(&self) -> bool {
        self.eos_token_id == 2
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct VisionConfig {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub num_channels: i64,
    pub image_size: i64,
    pub patch_size: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl VisionConfig {
    pub fn num_patches(&self) -> i64 {
        (self.image_size / self.patch_size).pow(2)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub projection_dim: i64,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default = "default_projection_dim")]
    projection_dim: i64,
    text_config: Option<TextConfig>,
    text_config_dict: Option<TextConfig>,
    vision_config: Option<VisionConfig>,
    vision_config_dict: Option<VisionConfig>,
}

fn default_projection_dim() -> i64 {
    512
}

impl ClipConfig {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        Ok(read_json(path, Self::from_json)?)
    }

    pub fn from_json(json: &str) -> Result<Self, String> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if let Some(model_type) = raw.model_type.as_deref() {
            if model_type != "clip" {
                return Err(format!(
                    "model_type is {model_type:?}; clipd serves CLIPModel checkpoints (\"clip\")"
                ));
            }
        }
        let config = Self {
            text: raw.text_config_dict.or(raw.text_config).unwrap_or_default(),
            vision: raw
                .vision_config_dict
                .or(raw.vision_config)
                .unwrap_or_default(),
            projection_dim: raw.projection_dim,
        };
        config.validate()?;
        Ok(config)
    }

    /// The number of weights the model described has (what `model.safetensors` must hold).
    pub fn parameter_count(&self) -> u64 {
        let layer = |d: i64, i: i64| 4 * (d * d + d) + 2 * 2 * d + (d * i + i) + (i * d + d);
        let (t, v) = (&self.text, &self.vision);
        let text = t.vocab_size * t.hidden_size
            + t.max_position_embeddings * t.hidden_size
            + t.num_hidden_layers * layer(t.hidden_size, t.intermediate_size)
            + 2 * t.hidden_size;
        let vision = v.num_channels * v.patch_size * v.patch_size * v.hidden_size
            + v.hidden_size
            + (v.num_patches() + 1) * v.hidden_size
            + v.num_hidden_layers * layer(v.hidden_size, v.intermediate_size)
            + 2 * 2 * v.hidden_size;
        let projections = (t.hidden_size + v.hidden_size) * self.projection_dim;
        (text + vision + projections + 1) as u64
    }

    /// `config.json` as `transformers` writes it for a `CLIPModel` whose weights are `dtype`.
    pub fn to_hf_json(&self, dtype: &str) -> serde_json::Value {
        let with = |tower: serde_json::Value, model_type: &str| {
            let mut tower = tower;
            tower["model_type"] = model_type.into();
            tower["projection_dim"] = self.projection_dim.into();
            tower
        };
        let mut text = with(serde_json::json!(self.text), "clip_text_model");
        text["bos_token_id"] = 49406.into();
        text["pad_token_id"] = 49407.into();
        serde_json::json!({
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": 2.6592,
            "dtype": dtype,
            "text_config": text,
            "vision_config": with(serde_json::json!(self.vision), "clip_vision_model"),
        })
    }

    fn validate(&self) -> Result<(), String> {
        let positive = [
            ("text_config.vocab_size", self.text.vocab_size),
            ("text_config.hidden_size", self.text.hidden_size),
            ("text_config.intermediate_size", self.text.intermediate_size),
            ("text_config.num_hidden_layers", self.text.num_hidden_layers),
            (
                "text_config.num_attention_heads",
                self.text.num_attention_heads,
            ),
            (
                "text_config.max_position_embeddings",
                self.text.max_position_embeddings,
            ),
            ("vision_config.hidden_size", self.vision.hidden_size),
            (
                "vision_config.intermediate_size",
                self.vision.intermediate_size,
            ),
            (
                "vision_config.num_hidden_layers",
                self.vision.num_hidden_layers,
            ),
            (
                "vision_config.num_attention_heads",
                self.vision.num_attention_heads,
            ),
            ("vision_config.image_size", self.vision.image_size),
            ("vision_config.patch_size", self.vision.patch_size),
            ("projection_dim", self.projection_dim),
        ];
        if let Some((key, value)) = positive.iter().find(|(_, v)| *v <= 0) {
            return Err(format!("{key} must be positive, got {value}"));
        }
        // The start and end tokens plus at least one token of text.
        if self.text.max_position_embeddings < 3 {
            return Err(format!(
                "text_config.max_position_embeddings must be at least 3, got {}",
                self.text.max_position_embeddings
            ));
        }
        if self.vision.num_channels != 3 {
            return Err(format!(
                "vision_config.num_channels is {}; clipd feeds RGB images (3)",
                self.vision.num_channels
            ));
        }
        for (key, hidden, heads) in [
            (
                "text_config",
                self.text.hidden_size,
                self.text.num_attention_heads,
            ),
            (
                "vision_config",
                self.vision.hidden_size,
                self.vision.num_attention_heads,
            ),
        ] {
            if hidden % heads != 0 {
                return Err(format!(
                    "{key}.hidden_size {hidden} is not divisible by num_attention_heads {heads}"
                ));
            }
        }
        if self.vision.image_size % self.vision.patch_size != 0 {
            return Err(format!(
                "vision_config.image_size {} is not a multiple of patch_size {}",
                self.vision.image_size, self.vision.patch_size
            ));
        }
        Ok(())
    }
}
