//! The multi-layer perceptron every model ends with (and DIN's activation unit uses).
use super::{batch_norm_last, Act, Activation};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MlpConfig {
    pub hidden: Vec<i64>,
    pub activation: Activation,
    pub dropout: f64,
    /// Batch norm between each linear layer and its activation.
    pub batch_norm: bool,
}

impl Default for MlpConfig {
    fn default() -> Self {
        MlpConfig { hidden: vec![200, 80], activation: Activation::Prelu, dropout: 0.0, batch_norm: false }
    }
}

impl MlpConfig {
    pub fn validate(&self, what: &str) -> crate::Result<()> {
        if self.hidden.iter().any(|&h| h <= 0) {
            return Err(crate::Error::config(format!("{what}.hidden must list positive layer widths, got {:?}", self.hidden)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(crate::Error::config(format!("{what}.dropout must be in [0, 1), got {}", self.dropout)));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Layer {
    linear: nn::Linear,
    bn: Option<nn::BatchNorm>,
    act: Act,
}

/// Linear → (batch norm) → activation → dropout, per hidden layer; no output layer (callers add
/// their own). Works on `[..., in_dim]`.
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<Layer>,
    dropout: f64,
    out_dim: i64,
}

impl Mlp {
    pub fn new(p: nn::Path, in_dim: i64, cfg: &MlpConfig) -> Mlp {
        let mut layers = Vec::new();
        let mut d = in_dim;
        for (i, &h) in cfg.hidden.iter().enumerate() {
            let lp = &p / format!("layer{i}");
            let bn_cfg = nn::BatchNormConfig { ws_init: nn::Init::Const(1.0), ..Default::default() };
            layers.push(Layer {
                linear: nn::linear(&lp / "linear", d, h, Default::default()),
                bn: cfg.batch_norm.then(|| nn::batch_norm1d(&lp / "bn", h, bn_cfg)),
                act: Act::new(&lp / "act", cfg.activation, h),
            });
            d = h;
        }
        Mlp { layers, dropout: cfg.dropout, out_dim: d }
    }
    pub fn out_dim(&self) -> i64 {
        self.out_dim
    }
}

impl Mlp {
    /// The first layer's linear map, for callers that compute its output themselves (DIN's
    /// activation unit, see [`crate::attention::score::din_first_layer`]).
    pub fn first(&self) -> &nn::Linear {
        &self.layers[0].linear
    }

    /// Each layer's linear map and activation, when the layers are exactly `act(linear(x))`: no
    /// batch norm, no dropout, no Dice (what the fused DIN kernel computes).
    pub fn plain_layers(&self) -> Option<Vec<(&nn::Linear, &Act)>> {
        let plain = self.dropout == 0.0 && self.layers.iter().all(|l| l.bn.is_none() && !matches!(l.act, Act::Dice(_)));
        plain.then(|| self.layers.iter().map(|l| (&l.linear, &l.act)).collect())
    }

    /// Whether a layer normalizes over the batch's rows (batch norm, or Dice's): then which rows
    /// are in the batch changes every row's output in training.
    pub fn has_batch_statistics(&self) -> bool {
        self.layers.iter().any(|l| l.bn.is_some() || matches!(l.act, Act::Dice(_)))
    }

    /// The rest of the forward pass given the first layer's linear output `h0`.
    pub fn forward_from_first_t(&self, h0: Tensor, train: bool) -> Tensor {
        self.run_layers(h0, true, train)
    }

    fn run_layers(&self, mut h: Tensor, first_done: bool, train: bool) -> Tensor {
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 || !first_done {
                h = layer.linear.forward(&h);
            }
            if let Some(bn) = &layer.bn {
                h = batch_norm_last(bn, &h, train);
            }
            h = layer.act.forward_t(&h, train);
            if self.dropout > 0.0 {
                h = super::dropout(&h, self.dropout, train);
            }
        }
        h
    }
}

impl ModuleT for Mlp {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.run_layers(x.shallow_clone(), false, train)
    }
}
