//! Paths to the committed fixtures (written by scripts/reference/make_fixtures.py), and what the
//! tests do with them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use clipd::model::{Checkpoint, DeviceSpec, Dtype, ModelOptions};
use clipd::preprocess::InputLimits;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

pub fn image_path(name: &str) -> PathBuf {
    fixtures().join("images").join(name)
}

pub fn reference(name: &str) -> serde_json::Value {
    let path = fixtures().join("reference").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub const CHECKPOINTS: [&str; 2] = ["tiny-a", "tiny-b"];

/// The CPU in f32: how the reference embeddings were made.
pub fn cpu_f32() -> ModelOptions {
    ModelOptions {
        device: DeviceSpec::Cpu,
        dtype: Dtype::F32,
    }
}

/// The checkpoint in `dir` on the CPU in f32 with `limits`; panics naming `dir` if it fails.
pub fn load_cpu_with(dir: &Path, limits: &InputLimits) -> Checkpoint {
    Checkpoint::load(dir, &cpu_f32(), limits).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// The checkpoint in `dir` on the CPU in f32 with the default input limits.
pub fn load_cpu(dir: &Path) -> Checkpoint {
    load_cpu_with(dir, &InputLimits::default())
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "dimensions differ");
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

pub fn floats(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}
