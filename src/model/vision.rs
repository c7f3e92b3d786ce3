//! `vision_model.*`: CLIP's vision transformer, pooled at the class token.

use tch::nn::{self, Module};
use tch::Tensor;

use super::config::VisionConfig;
use super::layers::{embedding_init, layer_norm, normal, Encoder, EncoderShape};

#[derive(Debug)]
pub struct VisionTransformer {
    class_embedding: Tensor,
    patch_embedding: nn::Conv2D,
    position_embedding: nn::Embedding,
    pre_layrnorm: nn::LayerNorm,
    encoder: Encoder,
    post_layernorm: nn::LayerNorm,
}

impl VisionTransformer {
    pub fn new(vs: nn::Path, config: &VisionConfig) -> Self {
        let embeddings = &vs / "embeddings";
        let d = config.hidden_size;
        let eps = config.layer_norm_eps;
        let shape = EncoderShape {
            hidden_size: d,
            intermediate_size: config.intermediate_size,
            num_layers: config.num_hidden_layers,
            num_heads: config.num_attention_heads,
            activation: config.hidden_act,
            layer_norm_eps: eps,
            causal: false,
        };
        let patch_config = nn::ConvConfig {
            stride: config.patch_size,
            bias: false,
            ws_init: normal(0.02),
            ..Default::default()
        };
        Self {
            class_embedding: embeddings.var(
                "class_embedding",
                &[d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: (d as f64).powf(-0.5),
                },
            ),
            patch_embedding: nn::conv2d(
                &embeddings / "patch_embedding",
                config.num_channels,
                d,
                config.patch_size,
                patch_config,
            ),
            position_embedding: nn::embedding(
                &embeddings / "position_embedding",
                config.num_patches() + 1,
                d,
                embedding_init(0.02),
            ),
            pre_layrnorm: layer_norm(&vs / "pre_layrnorm", d, eps),
            encoder: Encoder::new(&vs / "encoder", &shape),
            post_layernorm: layer_norm(&vs / "post_layernorm", d, eps),
        }
    }

    /// `pixel_values`: `[batch, 3, image_size, image_size]`; returns the pooled `[batch, hidden]`.
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        let batch = pixel_values.size()[0];
        let patches = self
            .patch_embedding
            .forward(pixel_values)
            .flatten(2, -1)
            .transpose(1, 2);
        let d = self.class_embedding.size()[0];
        let class = self.class_embedding.expand([batch, 1, d], false);
        let xs = Tensor::cat(&[class, patches], 1) + &self.position_embedding.ws;
        let xs = self.encoder.forward(&self.pre_layrnorm.forward(&xs));
        self.post_layernorm.forward(&xs.select(1, 0))
    }
}
