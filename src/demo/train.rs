//! Training CLIP from scratch on the synthetic shapes with the serving model's own modules:
//! symmetric InfoNCE over image-to-text and text-to-image similarities scaled by a learnable
//! temperature (capped at 100, as in the CLIP paper), AdamW, linear warm-up then cosine decay.

use std::f64::consts::PI;

use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, TchError, Tensor};

use super::shapes::Scene;
use crate::model::{Activation, ClipConfig, ClipModel, TextConfig, VisionConfig};
use crate::preprocess::{ClipTokenizer, ImageProcessor, TokenizedText};
use crate::rng::SplitMix64;

/// The demo architecture: 64-pixel images in 8-pixel patches, two layers of width 64 per tower.
/// Nearly all of its 3.3 M parameters are the 49,408-token embedding table.
pub fn demo_config() -> ClipConfig {
    ClipConfig {
        text: TextConfig {
            vocab_size: 49408,
            hidden_size: 64,
            intermediate_size: 256,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            eos_token_id: 49407,
        },
        vision: VisionConfig {
            hidden_size: 64,
            intermediate_size: 256,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_channels: 3,
            image_size: 64,
            patch_size: 8,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        },
        projection_dim: 64,
    }
}

#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Seeds the weights and the training data; evaluation uses other seeds.
    pub seed: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            steps: 8000,
            batch_size: 128,
            learning_rate: 2e-3,
            warmup_steps: 100,
            weight_decay: 0.01,
            seed: 1,
        }
    }
}

impl TrainSettings {
    /// Linear warm-up, then cosine decay to zero at the last step.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.learning_rate * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.steps.saturating_sub(self.warmup_steps).max(1);
        let progress = (step - self.warmup_steps) as f64 / decay_steps as f64;
        self.learning_rate * 0.5 * (1.0 + (PI * progress.min(1.0)).cos())
    }
}

/// CLIP's cap on the learned logit scale (temperature 1/100).
const MAX_LOGIT_SCALE: f64 = 100.0;

pub struct Trainer<'a> {
    pub vs: nn::VarStore,
    pub model: ClipModel,
    tokenizer: &'a ClipTokenizer,
    images: &'a ImageProcessor,
    optimizer: nn::Optimizer,
    settings: TrainSettings,
    rng: SplitMix64,
    step: usize,
}

fn l2_normalize(xs: &Tensor) -> Tensor {
    xs / xs
        .norm_scalaropt_dim(2, [-1i64].as_slice(), true)
        .clamp_min(1e-12)
}

impl<'a> Trainer<'a> {
    pub fn new(
        config: &ClipConfig,
        tokenizer: &'a ClipTokenizer,
        images: &'a ImageProcessor,
        settings: TrainSettings,
    ) -> Result<Self, TchError> {
        tch::manual_seed(settings.seed as i64);
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ClipModel::new(&vs.root(), config);
        let optimizer = nn::AdamW {
            beta2: 0.98,
            wd: settings.weight_decay,
            eps: 1e-6,
            ..Default::default()
        }
        .build(&vs, settings.learning_rate)?;
        Ok(Self {
            vs,
            model,
            tokenizer,
            images,
            optimizer,
            rng: SplitMix64::new(settings.seed),
            settings,
            step: 0,
        })
    }

    /// One batch of scenes: normalised pixels and caption token ids.
    fn batch(&mut self) -> (Tensor, Tensor) {
        let side = self
            .images
            .config()
            .output_size()
            .map_or(64, |(h, _)| h as usize);
        let mut pixels = Vec::with_capacity(self.settings.batch_size * 3 * side * side);
        let mut captions = Vec::with_capacity(self.settings.batch_size);
        for _ in 0..self.settings.batch_size {
            let scene = Scene::random(&mut self.rng);
            // A quarter of the pictures are drawn larger and resized like user images are.
            let image = if self.rng.unit() < 0.25 {
                let larger = side + self.rng.below(side);
                self.images.fit(&scene.render(larger))
            } else {
                scene.render(side)
            };
            pixels.extend(self.images.normalize(&image));
            let caption = scene.caption(&mut self.rng);
            captions.push(
                self.tokenizer
                    .encode(&caption)
                    .expect("demo captions are short and tokenisable"),
            );
        }
        let refs: Vec<&TokenizedText> = captions.iter().collect();
        let n = self.settings.batch_size as i64;
        let pixels = Tensor::from_slice(&pixels).view([n, 3, side as i64, side as i64]);
        (pixels, self.tokenizer.batch(&refs))
    }

    /// Runs one optimisation step and returns its loss.
    pub fn step(&mut self) -> f64 {
        let (pixels, ids) = self.batch();
        self.optimizer
            .set_lr(self.settings.learning_rate_at(self.step));
        let image = l2_normalize(&self.model.image_features(&pixels));
        let text = l2_normalize(&self.model.text_features(&ids));
        let scale = self.model.logit_scale.exp().clamp_max(MAX_LOGIT_SCALE);
        let logits = image.matmul(&text.tr()) * scale;
        let targets = Tensor::arange(logits.size()[0], (Kind::Int64, Device::Cpu));
        let loss = (logits.cross_entropy_for_logits(&targets)
            + logits.tr().cross_entropy_for_logits(&targets))
            / 2.0;
        self.optimizer.backward_step(&loss);
        self.step += 1;
        loss.double_value(&[])
    }

    pub fn steps_done(&self) -> usize {
        self.step
    }
}
