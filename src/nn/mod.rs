//! Layers shared by the models: embeddings with a zero, frozen padding row; an MLP with dropout;
//! activations (ReLU, sigmoid, PReLU).
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

/// An embedding table whose row 0 (padding) is zero and receives no gradient.
/// Rows are drawn from N(0, init_std²); small std keeps early attention scores near zero.
pub fn embedding(p: nn::Path, rows: i64, dim: i64, init_std: f64) -> nn::Embedding {
    let cfg = nn::EmbeddingConfig {
        padding_idx: 0,
        ws_init: nn::Init::Randn { mean: 0.0, stdev: init_std },
        ..Default::default()
    };
    let emb = nn::embedding(p, rows, dim, cfg);
    tch::no_grad(|| {
        let _ = emb.ws.get(0).zero_();
    });
    emb
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Sigmoid,
    /// Per-unit PReLU, slope initialized to 0.25.
    #[default]
    Prelu,
}

/// An activation with its parameters (PReLU has one slope per unit, applied on the last dim).
#[derive(Debug)]
pub enum Act {
    Relu,
    Sigmoid,
    Prelu(Tensor),
}

impl Act {
    pub fn new(p: nn::Path, kind: Activation, units: i64) -> Act {
        match kind {
            Activation::Relu => Act::Relu,
            Activation::Sigmoid => Act::Sigmoid,
            Activation::Prelu => Act::Prelu(p.var("slope", &[units], nn::Init::Const(0.25))),
        }
    }
}

impl Module for Act {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Act::Relu => x.relu(),
            Act::Sigmoid => x.sigmoid(),
            // max(0, x) + a * min(0, x), broadcast over the last dim (torch's prelu uses dim 1).
            Act::Prelu(a) => x.clamp_min(0.0) + a * x.clamp_max(0.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    pub hidden: Vec<i64>,
    pub activation: Activation,
    pub dropout: f64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig { hidden: vec![200, 80], activation: Activation::Prelu, dropout: 0.0 }
    }
}

/// Linear → activation → dropout, per hidden layer; no output layer (callers add their own).
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<(nn::Linear, Act)>,
    dropout: f64,
    out_dim: i64,
}

impl Mlp {
    pub fn new(p: nn::Path, in_dim: i64, cfg: &MlpConfig) -> Mlp {
        let mut layers = Vec::new();
        let mut d = in_dim;
        for (i, &h) in cfg.hidden.iter().enumerate() {
            let lp = &p / format!("layer{i}");
            layers.push((nn::linear(&lp / "linear", d, h, Default::default()), Act::new(&lp / "act", cfg.activation, h)));
            d = h;
        }
        Mlp { layers, dropout: cfg.dropout, out_dim: d }
    }
    pub fn out_dim(&self) -> i64 {
        self.out_dim
    }
}

impl nn::ModuleT for Mlp {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for (lin, act) in &self.layers {
            h = act.forward(&lin.forward(&h));
            if self.dropout > 0.0 {
                h = h.dropout(self.dropout, train);
            }
        }
        h
    }
}
