//! clipd against Hugging Face `transformers` on the same weights and inputs (committed fixtures):
//! token ids exactly, preprocessed pixels within a fraction of an 8-bit level, embeddings to
//! cosine 0.9999.

mod common;

use std::collections::HashMap;

use clipd::model::Checkpoint;
use common::*;
use tch::Tensor;

const MIN_COSINE: f64 = 0.9999;

fn load(name: &str) -> Checkpoint {
    load_cpu(&model_dir(name))
}

fn texts() -> Vec<String> {
    reference("texts.json")["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn token_ids_equal_the_reference_exactly() {
    let reference = reference("texts.json");
    let clip = load("tiny-a");
    for (i, text) in texts().iter().enumerate() {
        let expected: Vec<i64> = reference["input_ids"][i]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let got = clip.tokenizer.encode(text).unwrap();
        assert_eq!(got.ids, expected, "text #{i} {text:?}");
        assert_eq!(
            got.truncated,
            reference["truncated"][i].as_bool().unwrap(),
            "truncated flag of text #{i} {text:?}"
        );
    }
}

#[test]
fn text_embeddings_match_the_reference() {
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for name in CHECKPOINTS {
        let clip = load(name);
        let expected = reference(&format!("{name}.json"));
        let batched = clip.embed_texts(&refs).unwrap();
        for (i, text) in texts.iter().enumerate() {
            let want = floats(&expected["text_embeddings"][i]);
            let alone = clip.embed_texts(&[text]).unwrap().remove(0);
            for (how, got) in [("batched", &batched[i].values), ("alone", &alone.values)] {
                let cos = cosine(got, &want);
                assert!(
                    cos >= MIN_COSINE,
                    "{name} text #{i} {text:?} ({how}): cosine {cos}"
                );
            }
        }
    }
}

fn reference_pixels(name: &str) -> HashMap<String, Vec<f32>> {
    let path = fixtures().join(format!("reference/{name}-pixels.safetensors"));
    Tensor::read_safetensors(&path)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()))
        .collect()
}

fn image_names(kind: &str) -> Vec<String> {
    reference("images.json")[kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn preprocessed_pixels_match_clip_image_processor() {
    for name in CHECKPOINTS {
        let clip = load(name);
        let expected = reference_pixels(name);
        for (kind, max_limit, mean_limit) in
            [("lossless", 0.05, 0.005), ("lossy", f64::INFINITY, 0.02)]
        {
            for image in image_names(kind) {
                let bytes = std::fs::read(image_path(&image)).unwrap();
                let got = clip
                    .images
                    .process(&bytes)
                    .unwrap_or_else(|e| panic!("{image}: {e}"));
                let want = &expected[&image];
                assert_eq!(got.len(), want.len(), "{name} {image}: pixel count");
                let diffs: Vec<f64> = got
                    .iter()
                    .zip(want)
                    .map(|(a, b)| f64::from((a - b).abs()))
                    .collect();
                let max = diffs.iter().copied().fold(0.0, f64::max);
                let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
                eprintln!("{name} {image}: max diff {max:.5}, mean {mean:.6}");
                assert!(
                    max <= max_limit && mean <= mean_limit,
                    "{name} {image}: max diff {max:.4}, mean {mean:.5} (limits {max_limit}, {mean_limit})"
                );
            }
        }
    }
}

#[test]
fn image_embeddings_match_the_reference_through_the_whole_pipeline() {
    let mut names = image_names("lossless");
    names.extend(image_names("lossy"));
    for name in CHECKPOINTS {
        let clip = load(name);
        let expected = reference(&format!("{name}.json"));
        let bytes: Vec<Vec<u8>> = names
            .iter()
            .map(|n| std::fs::read(image_path(n)).unwrap())
            .collect();
        let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
        let got = clip.embed_images(&refs).unwrap();
        for (image, got) in names.iter().zip(&got) {
            let cos = cosine(got, &floats(&expected["image_embeddings"][image]));
            assert!(cos >= MIN_COSINE, "{name} {image}: cosine {cos}");
        }
    }
}
