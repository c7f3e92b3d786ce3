//! The shipped demo model (models/demo): transformers gives the same embeddings as clipd, and it
//! answers zero-shot questions about fresh synthetic pictures, through the whole pipeline.

mod common;

use std::path::PathBuf;

use clipd::demo::eval::{text_to_image_recall_at_1, zero_shot_accuracy};
use clipd::model::Checkpoint;
use common::{cosine, floats, image_path, load_cpu};

/// Pictures never drawn in training (training draws from its seed's stream; evaluation at
/// training time uses clipd::demo::EVAL_SEED).
const TEST_SEED: u64 = 0x7E57_0000_0003;

fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/demo")
}

fn load() -> Checkpoint {
    load_cpu(&demo_dir())
}

#[test]
fn transformers_and_clipd_agree_on_the_demo_model() {
    let clip = load();
    let text = std::fs::read_to_string(demo_dir().join("reference.json")).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
    let texts: Vec<&str> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for (i, got) in clip.embed_texts(&texts).unwrap().iter().enumerate() {
        let cos = cosine(&got.values, &floats(&reference["text_embeddings"][i]));
        assert!(cos >= 0.9999, "text {:?}: cosine {cos}", texts[i]);
    }
    for (name, want) in reference["image_embeddings"].as_object().unwrap() {
        let bytes = std::fs::read(image_path(name)).unwrap();
        let got = clip.embed_images(&[&bytes]).unwrap().remove(0);
        let cos = cosine(&got, &floats(want));
        assert!(cos >= 0.9999, "image {name}: cosine {cos}");
    }
}

#[test]
fn the_demo_model_names_colour_and_shape_of_fresh_pictures() {
    let clip = load();
    let accuracy = zero_shot_accuracy(&clip, TEST_SEED, 400).unwrap();
    eprintln!("zero-shot accuracy on 400 fresh pictures: {accuracy:.3}");
    assert!(accuracy >= 0.90, "zero-shot accuracy {accuracy:.3}");
    let recall = text_to_image_recall_at_1(&clip, TEST_SEED + 1, 100).unwrap();
    eprintln!(
        "text-to-image recall@1 among 100: {:.2} (by class {:.2})",
        recall.strict, recall.by_class
    );
    assert!(
        recall.by_class >= 0.8,
        "recall@1 by class {:.2}",
        recall.by_class
    );
}
