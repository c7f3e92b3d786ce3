//! The transformer blocks shared by CLIP's text and vision towers, with Hugging Face's names.

use tch::nn::{self, Module};
use tch::Tensor;

use super::config::Activation;

impl Activation {
    pub fn apply(self, xs: &Tensor) -> Tensor {
        match self {
            Activation::QuickGelu => xs * (xs * 1.702).sigmoid(),
            Activation::Gelu => xs.gelu("none"),
            Activation::GeluTanh => xs.gelu("tanh"),
            Activation::Relu => xs.relu(),
        }
    }
}

/// The shape of one encoder stack.
#[derive(Debug, Clone, Copy)]
pub struct EncoderShape {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    /// Text attends only to earlier tokens; vision attends everywhere.
    pub causal: bool,
}

/// Normal initialisation, as CLIP's (and `transformers`') `_init_weights` use throughout.
pub fn normal(stdev: f64) -> nn::Init {
    nn::Init::Randn { mean: 0.0, stdev }
}

pub fn embedding_init(stdev: f64) -> nn::EmbeddingConfig {
    nn::EmbeddingConfig {
        ws_init: normal(stdev),
        ..Default::default()
    }
}

/// A linear layer initialised as CLIP's: normal weights, zero bias.
fn linear(vs: nn::Path, input: i64, output: i64, stdev: f64) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: normal(stdev),
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(vs, input, output, config)
}

impl EncoderShape {
    /// CLIP's initial scale for the attention input projections (and the second MLP layer):
    /// smaller in deeper stacks so that the residual stream starts near unit size.
    fn in_proj_std(&self) -> f64 {
        (self.hidden_size as f64).powf(-0.5) * (2.0 * self.num_layers as f64).powf(-0.5)
    }
}

pub fn layer_norm(vs: nn::Path, dim: i64, eps: f64) -> nn::LayerNorm {
    let config = nn::LayerNormConfig {
        eps,
        ..Default::default()
    };
    nn::layer_norm(vs, vec![dim], config)
}

#[derive(Debug)]
struct SelfAttention {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    num_heads: i64,
    causal: bool,
}

impl SelfAttention {
    fn new(vs: nn::Path, shape: &EncoderShape) -> Self {
        let d = shape.hidden_size;
        let in_std = shape.in_proj_std();
        Self {
            q_proj: linear(&vs / "q_proj", d, d, in_std),
            k_proj: linear(&vs / "k_proj", d, d, in_std),
            v_proj: linear(&vs / "v_proj", d, d, in_std),
            out_proj: linear(&vs / "out_proj", d, d, (d as f64).powf(-0.5)),
            num_heads: shape.num_heads,
            causal: shape.causal,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let (batch, len, dim) = xs
            .size3()
            .expect("encoder input is [batch, sequence, hidden]");
        let heads = |proj: &nn::Linear| {
            proj.forward(xs)
                .view([batch, len, self.num_heads, dim / self.num_heads])
                .transpose(1, 2)
        };
        // libtorch picks the fused kernel (flash / memory-efficient / CPU flash) for the device;
        // the default scale is head_dim^-0.5 as in CLIP.
        let attended = Tensor::scaled_dot_product_attention(
            &heads(&self.q_proj),
            &heads(&self.k_proj),
            &heads(&self.v_proj),
            None::<Tensor>,
            0.0,
            self.causal,
            None,
            false,
        );
        self.out_proj
            .forward(&attended.transpose(1, 2).reshape([batch, len, dim]))
    }
}

#[derive(Debug)]
struct Mlp {
    fc1: nn::Linear,
    fc2: nn::Linear,
    activation: Activation,
}

impl Mlp {
    fn new(vs: nn::Path, shape: &EncoderShape) -> Self {
        let (d, i) = (shape.hidden_size, shape.intermediate_size);
        Self {
            fc1: linear(&vs / "fc1", d, i, (2.0 * d as f64).powf(-0.5)),
            fc2: linear(&vs / "fc2", i, d, shape.in_proj_std()),
            activation: shape.activation,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        self.fc2
            .forward(&self.activation.apply(&self.fc1.forward(xs)))
    }
}

#[derive(Debug)]
struct EncoderLayer {
    self_attn: SelfAttention,
    layer_norm1: nn::LayerNorm,
    mlp: Mlp,
    layer_norm2: nn::LayerNorm,
}

impl EncoderLayer {
    fn new(vs: nn::Path, shape: &EncoderShape) -> Self {
        let ln = |name: &str| layer_norm(&vs / name, shape.hidden_size, shape.layer_norm_eps);
        Self {
            self_attn: SelfAttention::new(&vs / "self_attn", shape),
            layer_norm1: ln("layer_norm1"),
            mlp: Mlp::new(&vs / "mlp", shape),
            layer_norm2: ln("layer_norm2"),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = xs + self.self_attn.forward(&self.layer_norm1.forward(xs));
        &xs + self.mlp.forward(&self.layer_norm2.forward(&xs))
    }
}

/// `encoder.layers.N.*`: pre-norm transformer layers.
#[derive(Debug)]
pub struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn new(vs: nn::Path, shape: &EncoderShape) -> Self {
        let layers_vs = &vs / "layers";
        let layers = (0..shape.num_layers)
            .map(|i| EncoderLayer::new(&layers_vs / i, shape))
            .collect();
        Self { layers }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let mut xs = xs.shallow_clone();
        for layer in &self.layers {
            xs = layer.forward(&xs);
        }
        xs
    }
}
