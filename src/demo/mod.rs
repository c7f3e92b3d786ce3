//! The demo model's trainer: a small CLIP that clipd trains itself on synthetic shapes (`clipd
//! train-demo`); `model::bundled` ships what it wrote.

pub mod checkpoint;
pub mod eval;
pub mod shapes;
pub mod train;

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::files::FileError;
use crate::model::{Checkpoint, DeviceSpec, Dtype, ModelError, ModelOptions};
use crate::preprocess::{ClipTokenizer, ImageLimits, ImageProcessor, InputLimits, ProcessorConfig};
use train::{demo_config, TrainSettings, Trainer};

/// Seeds of the held-out pictures: never used for training (training draws from its own seed's
/// stream, and these are far from any seed a run would be given).
pub const EVAL_SEED: u64 = 0xE7A1_0000_0001;
pub const RECALL_SEED: u64 = 0xE7A1_0000_0002;

/// What a training run produced, also written as `training.json` beside the weights.
#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub steps: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub seconds: f64,
    pub first_loss: f64,
    pub last_loss: f64,
    pub zero_shot_accuracy: f64,
    pub zero_shot_images: usize,
    pub text_to_image_recall_at_1: f64,
    pub text_to_image_recall_at_1_by_class: f64,
    pub recall_pool: usize,
}

/// Trains the demo model, writes it to `out` and evaluates what was written. `progress` is called
/// after every step with (step, loss).
pub fn train_demo(
    out: &Path,
    tokenizer_json: &Path,
    settings: TrainSettings,
    mut progress: impl FnMut(usize, f64),
) -> Result<DemoReport, ModelError> {
    let config = demo_config();
    let side = config.vision.image_size as u32;
    let processor = ProcessorConfig::from_json(&checkpoint::preprocessor_json(side).to_string())
        .expect("the demo's preprocessor config is valid");
    let images = ImageProcessor::new(processor, ImageLimits::default());
    let tokenizer = ClipTokenizer::from_file(
        tokenizer_json,
        config.text.max_position_embeddings as usize,
        InputLimits::default().max_text_bytes,
    )?;
    let start = Instant::now();
    let mut trainer = Trainer::new(&config, &tokenizer, &images, settings.clone())?;
    let mut losses = Vec::with_capacity(settings.steps);
    for step in 0..settings.steps {
        let loss = trainer.step();
        losses.push(loss);
        progress(step, loss);
    }
    let seconds = start.elapsed().as_secs_f64();
    checkpoint::write_checkpoint(out, &config, &trainer.vs, tokenizer_json)?;

    let options = ModelOptions {
        device: DeviceSpec::Cpu,
        dtype: Dtype::F32,
    };
    let clip = Checkpoint::load(out, &options, &InputLimits::default())?;
    let bad_input = |e| {
        ModelError::from(FileError::Invalid {
            path: out.to_owned(),
            reason: format!("evaluation input rejected: {e}"),
        })
    };
    let (zero_shot_images, recall_pool) = (1000, 200);
    let accuracy =
        eval::zero_shot_accuracy(&clip, EVAL_SEED, zero_shot_images).map_err(bad_input)?;
    let recall =
        eval::text_to_image_recall_at_1(&clip, RECALL_SEED, recall_pool).map_err(bad_input)?;
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let window = losses.len().min(20);
    let report = DemoReport {
        steps: settings.steps,
        batch_size: settings.batch_size,
        seed: settings.seed,
        seconds,
        first_loss: mean(&losses[..window]),
        last_loss: mean(&losses[losses.len() - window..]),
        zero_shot_accuracy: accuracy,
        zero_shot_images,
        text_to_image_recall_at_1: recall.strict,
        text_to_image_recall_at_1_by_class: recall.by_class,
        recall_pool,
    };
    checkpoint::write_json(&out.join("training.json"), &report)?;
    Ok(report)
}
