//! How well a model answers on fresh synthetic pictures, through the whole pipeline (each picture
//! is encoded as PNG and decoded again, like a user's upload).

use std::io::Cursor;

use super::shapes::{class_labels, Scene};
use crate::ann::dot;
use crate::model::Checkpoint;
use crate::preprocess::InputError;
use crate::rng::SplitMix64;

/// Pictures per forward pass.
const CHUNK: usize = 64;

/// A scene as a PNG file of `side` x `side` pixels.
pub fn png(scene: &Scene, side: usize) -> Vec<u8> {
    let image = scene.render(side);
    let mut bytes = Vec::new();
    image::write_buffer_with_format(
        &mut Cursor::new(&mut bytes),
        &image.data,
        side as u32,
        side as u32,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .expect("encoding a PNG in memory cannot fail");
    bytes
}

fn argmax(scores: impl Iterator<Item = f32>) -> usize {
    scores
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, s)| {
            if s > best.1 {
                (i, s)
            } else {
                best
            }
        })
        .0
}

/// `count` fresh scenes from `seed`, drawn at sizes from 64 to 191 pixels, and their embeddings.
fn embedded_scenes(
    clip: &Checkpoint,
    seed: u64,
    count: usize,
) -> Result<(Vec<Scene>, Vec<Vec<f32>>), InputError> {
    let mut rng = SplitMix64::new(seed);
    let scenes: Vec<Scene> = (0..count).map(|_| Scene::random(&mut rng)).collect();
    let mut embeddings = Vec::with_capacity(count);
    for chunk in scenes.chunks(CHUNK) {
        let pngs: Vec<Vec<u8>> = chunk.iter().map(|s| png(s, 64 + rng.below(128))).collect();
        let refs: Vec<&[u8]> = pngs.iter().map(Vec::as_slice).collect();
        embeddings.extend(clip.embed_images(&refs).map_err(|(_, e)| e)?);
    }
    Ok((scenes, embeddings))
}

/// Zero-shot accuracy over the colour x shape classes with the prompt "a photo of a {label}.".
pub fn zero_shot_accuracy(clip: &Checkpoint, seed: u64, count: usize) -> Result<f64, InputError> {
    let prompts: Vec<String> = class_labels()
        .iter()
        .map(|l| format!("a photo of a {l}."))
        .collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let labels = clip.embed_texts(&refs).map_err(|(_, e)| e)?;
    let (scenes, images) = embedded_scenes(clip, seed, count)?;
    let correct = scenes
        .iter()
        .zip(&images)
        .filter(|(scene, image)| {
            argmax(labels.iter().map(|l| dot(&l.values, image))) == scene.class()
        })
        .count();
    Ok(correct as f64 / count as f64)
}

/// Text-to-image retrieval among `count` fresh scenes, one caption each: the share of captions
/// whose best image is their own scene (strict), and whose best image shows their colour and
/// shape (by class; captions of one class cannot tell its pictures apart).
pub struct Recall {
    pub strict: f64,
    pub by_class: f64,
}

pub fn text_to_image_recall_at_1(
    clip: &Checkpoint,
    seed: u64,
    count: usize,
) -> Result<Recall, InputError> {
    let (scenes, images) = embedded_scenes(clip, seed, count)?;
    let mut rng = SplitMix64::new(seed ^ 0x5EED);
    let captions: Vec<String> = scenes.iter().map(|s| s.caption(&mut rng)).collect();
    let refs: Vec<&str> = captions.iter().map(String::as_str).collect();
    let texts = clip.embed_texts(&refs).map_err(|(_, e)| e)?;
    let (mut strict, mut by_class) = (0, 0);
    for (i, text) in texts.iter().enumerate() {
        let best = argmax(images.iter().map(|image| dot(&text.values, image)));
        strict += usize::from(best == i);
        by_class += usize::from(scenes[best].class() == scenes[i].class());
    }
    Ok(Recall {
        strict: strict as f64 / count as f64,
        by_class: by_class as f64 / count as f64,
    })
}
