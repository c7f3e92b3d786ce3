//! Reduced precision (bf16, f16) on the CPU: the same model in lower precision stays close to
//! the f32 reference. The bound is loose by nature; the f32 path is held to 0.9999 in parity.rs.

mod common;

use clipd::model::Checkpoint;
use clipd::model::{DeviceSpec, Dtype, ModelOptions};
use clipd::preprocess::InputLimits;
use common::*;

const MIN_COSINE: f64 = 0.999;

#[test]
fn reduced_precision_embeddings_stay_close_to_the_reference() {
    let texts = [
        "a photo of a cat",
        "",
        "一只猫的照片",
        "a red circle on a grey background.",
    ];
    let images = ["rgb_640x480.png", "q75_420_333x251.jpg", "rgba_300x200.png"];
    let bytes: Vec<Vec<u8>> = images
        .iter()
        .map(|n| std::fs::read(image_path(n)).unwrap())
        .collect();
    let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
    let all_texts = reference("texts.json");
    for name in CHECKPOINTS {
        let expected = reference(&format!("{name}.json"));
        for dtype in [Dtype::Bf16, Dtype::F16] {
            let options = ModelOptions {
                device: DeviceSpec::Cpu,
                dtype,
            };
            let clip =
                Checkpoint::load(&model_dir(name), &options, &InputLimits::default()).unwrap();
            for (text, got) in texts.iter().zip(clip.embed_texts(&texts).unwrap()) {
                let i = all_texts["texts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .position(|t| t == text)
                    .unwrap();
                let cos = cosine(&got.values, &floats(&expected["text_embeddings"][i]));
                eprintln!("{name} {dtype} text {text:?}: cosine {cos:.5}");
                assert!(
                    cos >= MIN_COSINE,
                    "{name} {dtype} text {text:?}: cosine {cos}"
                );
            }
            for (image, got) in images.iter().zip(clip.embed_images(&refs).unwrap()) {
                let cos = cosine(&got, &floats(&expected["image_embeddings"][image]));
                eprintln!("{name} {dtype} image {image}: cosine {cos:.5}");
                assert!(cos >= MIN_COSINE, "{name} {dtype} {image}: cosine {cos}");
            }
        }
    }
}
