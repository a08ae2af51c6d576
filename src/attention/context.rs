//! Context functions: weights and values → one vector per query.
//!
//! # Shapes
//! `weights: [B, L]` or `[B, T, L]`, `values: [B, L, Dv]` → `[B, Dv]` or `[B, T, Dv]`.
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Weighted sum of the values (soft attention).
pub fn soft(weights: &Tensor, values: &Tensor) -> Tensor {
    if weights.dim() == 2 {
        weights.unsqueeze(1).bmm(values).squeeze_dim(1)
    } else {
        weights.bmm(values)
    }
}

/// Hard attention (Xu et al. 2015): the context is one value. At evaluation the position is the
/// argmax of the weights. In training it is sampled with probability ∝ weight by the Gumbel-max
/// trick, and the straight-through estimator (Jang et al. 2017, τ = 1) passes the gradient of the
/// relaxed sample `y = softmax(log w + g)` back to the weights, so the score stays trainable.
/// Negative weights (align `none`) count as 0. Returns `(context, one-hot weights)`; a row with
/// no present position gives a zero context and zero weights.
pub fn hard(weights: &Tensor, values: &Tensor, mask: &Tensor, train: bool) -> (Tensor, Tensor) {
    let on = if weights.dim() == 3 { mask.unsqueeze(1) } else { mask.shallow_clone() };
    let off = on.logical_not();
    let any = on.any_dim(-1, true).to_kind(weights.kind());
    let logits = weights.clamp_min(1e-20).log().masked_fill(&off, -1e30);
    let relaxed = if train {
        let u = Tensor::rand_like(&logits).clamp(1e-10, 1.0 - 1e-7);
        let gumbel = -(-u.log()).log();
        (logits + gumbel).softmax(-1, Kind::Float).masked_fill(&off, 0.0)
    } else {
        logits.softmax(-1, Kind::Float).masked_fill(&off, 0.0)
    };
    let len = *weights.size().last().expect("weights have a last dim");
    let one_hot = relaxed.argmax(-1, false).one_hot(len).to_kind(weights.kind()) * any;
    let chosen = if train { &one_hot - relaxed.detach() + &relaxed } else { one_hot };
    (soft(&chosen, values), chosen)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContextConfig {
    #[default]
    Soft,
    Hard,
}

impl ContextConfig {
    /// Returns `(context, the weights actually used)`.
    pub fn apply(self, weights: &Tensor, values: &Tensor, mask: &Tensor, train: bool) -> (Tensor, Tensor) {
        match self {
            ContextConfig::Soft => (soft(weights, values), weights.shallow_clone()),
            ContextConfig::Hard => hard(weights, values, mask, train),
        }
    }
}
