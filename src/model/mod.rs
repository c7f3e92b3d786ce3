//! The models clipd serves: where a checkpoint comes from (`source`, `bundled`), what family it
//! is (`family`, the seam every family plugs into), and each family's modules, mirroring its
//! reference implementation name by name (`hf_clip`: Hugging Face's `CLIPModel`, built here).

pub mod bundled;
pub mod checkpoint;
pub mod config;
mod error;
pub mod family;
pub mod hf_clip;
mod layers;
pub mod options;
mod settings;
pub mod source;
mod text;
mod vision;
mod weights;

use std::path::Path;

use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

pub use checkpoint::{Checkpoint, TextEmbedding, PROBE_TEXT};
pub use config::{Activation, ClipConfig, TextConfig, VisionConfig};
pub use error::ModelError;
pub use family::{Family, Scoring, Towers};
pub use options::{DeviceSpec, Dtype, ModelOptions};
pub use settings::ModelSettings;
pub use source::{LoadError, Locations, ModelSource, ModelSpec, SourceError};
pub use text::TextTransformer;
pub use vision::VisionTransformer;

/// CLIP's two towers and their projections into the shared embedding space.
#[derive(Debug)]
pub struct ClipModel {
    pub text_model: TextTransformer,
    pub vision_model: VisionTransformer,
    text_projection: nn::Linear,
    visual_projection: nn::Linear,
    pub logit_scale: Tensor,
}

impl ClipModel {
    /// Builds the modules under `vs` with fresh weights, initialised as CLIP's (for training; a
    /// loaded checkpoint overwrites them).
    pub fn new(vs: &nn::Path, config: &ClipConfig) -> Self {
        let projection = |name: &str, width: i64| {
            let init = nn::LinearConfig {
                ws_init: layers::normal((width as f64).powf(-0.5)),
                bias: false,
                ..Default::default()
            };
            nn::linear(vs / name, width, config.projection_dim, init)
        };
        Self {
            text_model: TextTransformer::new(vs / "text_model", &config.text),
            vision_model: VisionTransformer::new(vs / "vision_model", &config.vision),
            text_projection: projection("text_projection", config.text.hidden_size),
            visual_projection: projection("visual_projection", config.vision.hidden_size),
            // CLIP's initial temperature: ln(1 / 0.07).
            logit_scale: vs.var("logit_scale", &[], nn::Init::Const((1.0f64 / 0.07).ln())),
        }
    }

    /// Projected, unnormalised text features for `[batch, len]` token ids on the model's device.
    pub fn text_features(&self, input_ids: &Tensor) -> Tensor {
        self.text_projection
            .forward(&self.text_model.forward(input_ids))
    }

    /// Projected, unnormalised image features for `[batch, 3, size, size]` pixels.
    pub fn image_features(&self, pixel_values: &Tensor) -> Tensor {
        self.visual_projection
            .forward(&self.vision_model.forward(pixel_values))
    }
}

/// A `ClipModel` loaded for inference: owns its weights, frozen, on one device in one dtype.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: ClipModel,
    pub vs: nn::VarStore,
    pub device: Device,
    pub dtype: Dtype,
}

impl LoadedModel {
    pub fn load(
        config: &ClipConfig,
        weights: &Path,
        options: &ModelOptions,
    ) -> Result<Self, ModelError> {
        let device = options.device.resolve()?;
        let file = weights::WeightsFile::open(weights)?;
        // Building the modules allocates what config.json describes before any tensor is
        // compared: a config far larger than the file is refused first.
        let (stored, described) = (file.parameter_count()?, config.parameter_count());
        if described > 2 * stored + (1 << 20) {
            return Err(ModelError::Weights {
                path: weights.to_owned(),
                reason: format!(
                    "holds {stored} parameters, but config.json describes a model of \
                     {described}: they do not belong together"
                ),
            });
        }
        let mut vs = nn::VarStore::new(device);
        let model = ClipModel::new(&vs.root(), config);
        file.load_into(&mut vs)?;
        vs.set_kind(options.dtype.kind());
        vs.freeze();
        let loaded = Self {
            model,
            vs,
            device,
            dtype: options.dtype,
        };
        loaded.warm_up(config)?;
        Ok(loaded)
    }

    /// One tiny forward pass per tower: kernels the device or dtype lacks (bf16 on an old GPU,
    /// say) fail here, at load, as an error rather than at the first request; libtorch also
    /// prepares its kernels.
    fn warm_up(&self, config: &ClipConfig) -> Result<(), ModelError> {
        let ids = Tensor::from_slice(&[0, config.text.vocab_size - 1]).view([1, 2]);
        let s = config.vision.image_size;
        let pixels = Tensor::zeros([1, 3, s, s], (Kind::Float, Device::Cpu));
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(self.embed_text(&ids));
            drop(self.embed_image(&pixels));
        }))
        .map_err(|panic| ModelError::Warmup {
            device: format!("{:?}", self.device),
            dtype: self.dtype.to_string(),
            message: panic_message(panic.as_ref()),
        })
    }

    /// exp(logit_scale), as `CLIPModel` scales its logits.
    pub fn logit_scale(&self) -> f32 {
        tch::no_grad(|| {
            self.model
                .logit_scale
                .to_kind(Kind::Float)
                .to_device(Device::Cpu)
                .exp()
                .double_value(&[]) as f32
        })
    }

    /// L2-normalised f32 text embeddings, `[batch, projection_dim]`, on the CPU.
    pub fn embed_text(&self, input_ids: &Tensor) -> Tensor {
        tch::no_grad(|| l2_normalize(&self.model.text_features(&input_ids.to_device(self.device))))
    }

    /// L2-normalised f32 image embeddings, `[batch, projection_dim]`, on the CPU.
    /// `pixel_values` is f32; it is cast to the model's dtype on the device.
    pub fn embed_image(&self, pixel_values: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let pixels = pixel_values
                .to_device(self.device)
                .to_kind(self.dtype.kind());
            l2_normalize(&self.model.image_features(&pixels))
        })
    }
}

/// What a libtorch call that panicked said (tch panics with the C++ exception's message).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown libtorch failure".into())
}

/// Normalises in f32 whatever the compute dtype, and returns the result on the CPU.
fn l2_normalize(features: &Tensor) -> Tensor {
    let features = features.to_kind(Kind::Float);
    let norm = features
        .norm_scalaropt_dim(2, [-1i64].as_slice(), true)
        .clamp_min(1e-12);
    (features / norm).to_device(Device::Cpu)
}
