//! Activations, including DIN's data-adaptive Dice.
use super::batch_norm_last;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Sigmoid,
    /// Per-unit PReLU, slope initialized to 0.25.
    #[default]
    Prelu,
    /// DIN's Dice (Zhou et al. 2018, eq. 9): a PReLU whose rectification point follows the data.
    Dice,
}

/// Dice: `f(s) = p(s)·s + (1 − p(s))·α·s` with `p(s) = sigmoid((s − E[s]) / √(Var[s] + ε))`.
/// E and Var are the batch statistics in training and their running averages at evaluation
/// (a batch norm without affine parameters, as in the paper's reference code); `α` is per unit,
/// initialized to 0 (DeepCTR-Torch's choice), so Dice starts as a smooth ReLU.
#[derive(Debug)]
pub struct Dice {
    bn: nn::BatchNorm,
    alpha: Tensor,
}

impl Dice {
    pub const EPS: f64 = 1e-8;
    pub const MOMENTUM: f64 = 0.1;

    pub fn new(p: nn::Path, units: i64) -> Dice {
        let cfg = nn::BatchNormConfig { eps: Self::EPS, momentum: Self::MOMENTUM, affine: false, ..Default::default() };
        Dice { bn: nn::batch_norm1d(&p / "bn", units, cfg), alpha: p.var("alpha", &[units], nn::Init::Const(0.0)) }
    }
}

impl ModuleT for Dice {
    /// `x: [..., units]`, statistics over every position but the last dim.
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let p = batch_norm_last(&self.bn, x, train).sigmoid();
        &p * x + (1.0 - &p) * &self.alpha * x
    }
}

/// An activation with its parameters, applied on the last dim.
#[derive(Debug)]
pub enum Act {
    Relu,
    Sigmoid,
    Prelu(Tensor),
    Dice(Dice),
}

impl Act {
    pub fn new(p: nn::Path, kind: Activation, units: i64) -> Act {
        match kind {
            Activation::Relu => Act::Relu,
            Activation::Sigmoid => Act::Sigmoid,
            Activation::Prelu => Act::Prelu(p.var("slope", &[units], nn::Init::Const(0.25))),
            Activation::Dice => Act::Dice(Dice::new(p, units)),
        }
    }
}

impl ModuleT for Act {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Act::Relu => x.relu(),
            Act::Sigmoid => x.sigmoid(),
            // One kernel (x > 0 ? x : a·x) instead of four; torch's prelu takes the channel from
            // dim 1, so the last dim is made dim 1 of a 2-d view.
            Act::Prelu(a) => {
                let c = *x.size().last().expect("prelu input has a last dim");
                x.reshape([-1, c]).prelu(a).view(x.size().as_slice())
            }
            Act::Dice(d) => d.forward_t(x, train),
        }
    }
}
