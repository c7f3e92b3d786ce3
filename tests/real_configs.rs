//! The real configuration files of the OpenAI checkpoints read as `transformers` 5.24 reads them
//! (expected values printed by `CLIPConfig.from_pretrained` on the same files).

mod common;

use clipd::model::{Activation, ClipConfig};
use clipd::preprocess::{ProcessorConfig, Resize};
use common::fixtures;

fn config(name: &str) -> ClipConfig {
    ClipConfig::from_file(
        &fixtures()
            .join("real-configs")
            .join(name)
            .join("config.json"),
    )
    .unwrap()
}

#[test]
fn base_patch32_keeps_the_legacy_end_of_text_id_and_its_shape() {
    let c = config("clip-vit-base-patch32");
    assert_eq!(c.projection_dim, 512);
    assert_eq!(
        (
            c.text.hidden_size,
            c.text.intermediate_size,
            c.text.num_hidden_layers,
            c.text.num_attention_heads
        ),
        (512, 2048, 12, 8)
    );
    assert_eq!(
        (c.text.max_position_embeddings, c.text.vocab_size),
        (77, 49408)
    );
    assert_eq!(c.text.eos_token_id, 2);
    assert!(c.text.legacy_eos_pooling());
    assert_eq!(
        (
            c.vision.hidden_size,
            c.vision.intermediate_size,
            c.vision.num_hidden_layers,
            c.vision.num_attention_heads
        ),
        (768, 3072, 12, 12)
    );
    assert_eq!((c.vision.image_size, c.vision.patch_size), (224, 32));
    assert_eq!(c.text.hidden_act, Activation::QuickGelu);
    assert_eq!(c.vision.hidden_act, Activation::QuickGelu);
    assert_eq!(c.text.layer_norm_eps, 1e-5);
}

#[test]
fn large_patch14_takes_its_shapes_and_end_of_text_id_from_the_dict_blocks() {
    // text_config says eos_token_id 2, but text_config_dict (which wins) does not set it, so
    // CLIPTextConfig's default 49407 applies and pooling looks for the end-of-text token.
    for name in ["clip-vit-large-patch14", "clip-vit-large-patch14-old"] {
        let c = config(name);
        assert_eq!(c.projection_dim, 768, "{name}");
        assert_eq!(
            (
                c.text.hidden_size,
                c.text.intermediate_size,
                c.text.num_hidden_layers,
                c.text.num_attention_heads
            ),
            (768, 3072, 12, 12),
            "{name}"
        );
        assert_eq!(c.text.eos_token_id, 49407, "{name}");
        assert!(!c.text.legacy_eos_pooling(), "{name}");
        assert_eq!(
            (
                c.vision.hidden_size,
                c.vision.intermediate_size,
                c.vision.num_hidden_layers,
                c.vision.num_attention_heads
            ),
            (1024, 4096, 24, 16),
            "{name}"
        );
        assert_eq!(
            (c.vision.image_size, c.vision.patch_size),
            (224, 14),
            "{name}"
        );
    }
}

#[test]
fn the_openai_preprocessor_config_gives_224_pixel_crops_with_clip_constants() {
    let p = ProcessorConfig::from_file(&fixtures().join("real-configs/preprocessor_config.json"))
        .unwrap();
    assert_eq!(p.resize, Some(Resize::ShortestEdge(224)));
    assert_eq!(p.center_crop, Some((224, 224)));
    assert_eq!(p.rescale_factor, Some(1.0 / 255.0));
    let (mean, std) = p.mean_std.unwrap();
    assert_eq!(
        mean,
        [
            0.48145466f64 as f32,
            0.4578275f64 as f32,
            0.40821073f64 as f32
        ]
    );
    assert_eq!(
        std,
        [
            0.26862954f64 as f32,
            0.26130258f64 as f32,
            0.27577711f64 as f32
        ]
    );
}
