//! `text_model.*`: CLIP's causal text transformer, pooled at the end-of-text token.

use tch::nn::{self, Module};
use tch::{Kind, Tensor};

use super::config::TextConfig;
use super::layers::{embedding_init, layer_norm, Encoder, EncoderShape};

#[derive(Debug)]
pub struct TextTransformer {
    token_embedding: nn::Embedding,
    position_embedding: nn::Embedding,
    encoder: Encoder,
    final_layer_norm: nn::LayerNorm,
    eos_token_id: i64,
    legacy_eos_pooling: bool,
}

impl TextTransformer {
    pub fn new(vs: nn::Path, config: &TextConfig) -> Self {
        let embeddings = &vs / "embeddings";
        let d = config.hidden_size;
        let shape = EncoderShape {
            hidden_size: d,
            intermediate_size: config.intermediate_size,
            num_layers: config.num_hidden_layers,
            num_heads: config.num_attention_heads,
            activation: config.hidden_act,
            layer_norm_eps: config.layer_norm_eps,
            causal: true,
        };
        Self {
            token_embedding: nn::embedding(
                &embeddings / "token_embedding",
                config.vocab_size,
                d,
                embedding_init(0.02),
            ),
            position_embedding: nn::embedding(
                &embeddings / "position_embedding",
                config.max_position_embeddings,
                d,
                embedding_init(0.01),
            ),
            encoder: Encoder::new(&vs / "encoder", &shape),
            final_layer_norm: layer_norm(&vs / "final_layer_norm", d, config.layer_norm_eps),
            eos_token_id: config.eos_token_id,
            legacy_eos_pooling: config.legacy_eos_pooling(),
        }
    }

    /// `input_ids`: `[batch, len]` int64, right-padded; returns the pooled `[batch, hidden]`.
    /// Padding needs no mask: the causal mask keeps it out of every position up to the end-of-text
    /// token, which is the only one read.
    pub fn forward(&self, input_ids: &Tensor) -> Tensor {
        let (batch, len) = input_ids.size2().expect("input_ids is [batch, len]");
        let positions = Tensor::arange(len, (Kind::Int64, input_ids.device()));
        let xs =
            self.token_embedding.forward(input_ids) + self.position_embedding.forward(&positions);
        let xs = self.final_layer_norm.forward(&self.encoder.forward(&xs));
        let eos_positions = if self.legacy_eos_pooling {
            input_ids.argmax(-1, false)
        } else {
            input_ids
                .eq(self.eos_token_id)
                .to_kind(Kind::Int)
                .argmax(-1, false)
        };
        let hidden = xs.size()[2];
        let index = eos_positions
            .view([batch, 1, 1])
            .expand([batch, 1, hidden], false);
        xs.gather(1, &index, false).squeeze_dim(1)
    }
}
