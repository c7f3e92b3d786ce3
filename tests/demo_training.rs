//! A short run of the demo model's training: the InfoNCE loss falls, with the serving modules.

mod common;

use clipd::demo::checkpoint::preprocessor_json;
use clipd::demo::train::{demo_config, TrainSettings, Trainer};
use clipd::preprocess::InputLimits;
use clipd::preprocess::{ClipTokenizer, ImageLimits, ImageProcessor, ProcessorConfig};
use common::fixtures;

#[test]
fn the_contrastive_loss_falls_within_a_few_dozen_steps() {
    let config = demo_config();
    let tokenizer = ClipTokenizer::from_file(
        &fixtures().join("models/tokenizer/tokenizer.json"),
        config.text.max_position_embeddings as usize,
        InputLimits::default().max_text_bytes,
    )
    .unwrap();
    let processor = ProcessorConfig::from_json(&preprocessor_json(64).to_string()).unwrap();
    let images = ImageProcessor::new(processor, ImageLimits::default());
    let settings = TrainSettings {
        steps: 60,
        batch_size: 32,
        warmup_steps: 10,
        ..TrainSettings::default()
    };
    let mut trainer = Trainer::new(&config, &tokenizer, &images, settings).unwrap();
    let losses: Vec<f64> = (0..60).map(|_| trainer.step()).collect();
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    let (first, last) = (mean(&losses[..15]), mean(&losses[45..]));
    // Chance level is ln(32) = 3.47 for both directions of a batch of 32.
    assert!(first > 3.0, "first losses {first:.3}");
    assert!(
        last < first - 0.5,
        "loss went from {first:.3} to {last:.3}: {losses:?}"
    );
    assert!(losses.iter().all(|l| l.is_finite()));
}
