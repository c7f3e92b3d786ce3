//! Which model a collection's vectors belong to. A name alone cannot say: a checkpoint mounted
//! at a fixed path is named after the path, so two checkpoints of one dimension (ViT-B/32 and
//! ViT-B/16 both give 512 values) would share collections and mix their embedding spaces. The
//! model's embedding of a fixed text tells checkpoints apart whatever they are called.

use crate::ann::dot;

/// The same weights agree far closer than this in any dtype or on any device (bf16 about
/// 0.999); another checkpoint's embedding of the text points elsewhere.
const SAME_MODEL_COSINE: f32 = 0.99;

/// The model a server runs: its name, dimension and embedding of `model::PROBE_TEXT`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelIdentity {
    pub name: String,
    pub dim: usize,
    pub probe: Vec<f32>,
}

impl ModelIdentity {
    /// Whether vectors made by `model` (`dim` values, `probe` if it was recorded) are this
    /// model's. Collections made before probes were recorded are judged by name (and then get
    /// the probe).
    pub fn made(&self, model: &str, dim: usize, probe: Option<&[f32]>) -> bool {
        if dim != self.dim {
            return false;
        }
        match probe {
            Some(probe) => cosine(probe, &self.probe) >= SAME_MODEL_COSINE,
            None => model == self.name,
        }
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let norms = (dot(a, a) * dot(b, b)).sqrt();
    if norms > 0.0 {
        dot(a, b) / norms
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> ModelIdentity {
        ModelIdentity {
            name: "models".into(),
            dim: 3,
            probe: vec![0.6, 0.8, 0.0],
        }
    }

    #[test]
    fn the_probe_decides_and_the_name_only_without_one() {
        let me = identity();
        assert!(me.made("models", 3, Some(&[0.6, 0.8, 0.0])));
        assert!(me.made("clip-vit-base-patch32", 3, Some(&[0.601, 0.799, 0.001])));
        assert!(
            !me.made("models", 3, Some(&[0.8, 0.6, 0.0])),
            "same name, other weights"
        );
        assert!(!me.made("models", 3, Some(&[0.0, 0.0, 0.0])));
        assert!(!me.made("models", 4, Some(&[0.6, 0.8, 0.0, 0.0])));
        assert!(me.made("models", 3, None));
        assert!(!me.made("other", 3, None));
    }
}
