//! Alignment functions: scores → weights. Masked positions get exactly zero weight; a fully masked
//! row gives all-zero weights (never NaN, in values or gradients).
//!
//! Positions are counted over the *present* events only (rank from the oldest, or recency from the
//! newest), never over the padded width, so a sample's weights do not depend on its batch.
//!
//! # Shapes
//! `scores: [B, L]` or `[B, T, L]` f32, `mask: [B, L]` bool → weights of the shape of `scores`.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// `mask [B, L]` broadcastable against `scores [B, (T,) L]`.
fn fit(mask: &Tensor, scores: &Tensor) -> Tensor {
    if scores.dim() == 3 {
        mask.unsqueeze(1)
    } else {
        mask.shallow_clone()
    }
}

/// Softmax over the valid positions (Luong's global attention).
pub fn softmax(scores: &Tensor, mask: &Tensor) -> Tensor {
    softmax_where(scores, &fit(mask, scores))
}

/// Softmax over the positions where `on` (already broadcastable against `scores`) holds.
fn softmax_where(scores: &Tensor, on: &Tensor) -> Tensor {
    let off = on.logical_not();
    // A finite fill (not -inf) keeps fully masked rows finite: they become uniform, then zeroed.
    scores.masked_fill(&off, -1e30).softmax(-1, scores.kind()).masked_fill(&off, 0.0)
}

/// Independent sigmoid gates per position.
pub fn sigmoid(scores: &Tensor, mask: &Tensor) -> Tensor {
    scores.sigmoid().masked_fill(&fit(mask, scores).logical_not(), 0.0)
}

/// Raw scores, masked to 0: DIN keeps the intensity of the user's interest by not normalizing.
pub fn none(scores: &Tensor, mask: &Tensor) -> Tensor {
    scores.masked_fill(&fit(mask, scores).logical_not(), 0.0)
}

/// Rank of each present event from the oldest (0, 1, …, n − 1), f32 `[B, L]`; 0 at padding.
pub fn rank(mask: &Tensor) -> Tensor {
    let m = mask.to_kind(Kind::Float);
    (m.cumsum(-1, Kind::Float) - 1.0).clamp_min(0.0) * m
}

/// Recency of each present event (0 = the most recent, 1 = the one before, …), i64 `[B, L]`;
/// 0 at padding.
pub fn recency(mask: &Tensor) -> Tensor {
    let m = mask.to_kind(Kind::Int64);
    ((m.flip([-1]).cumsum(-1, Kind::Int64).flip([-1]) - 1).clamp_min(0)) * m
}

/// Luong's local-m, adapted to a behavior sequence: the aligned position is the most recent event
/// (the target comes right after it), so softmax runs over the `window + 1` most recent events.
pub fn local_m(scores: &Tensor, mask: &Tensor, window: i64) -> Tensor {
    let inside = mask.logical_and(&recency(mask).le(window));
    softmax(scores, &inside)
}

/// Luong's local-p: softmax inside `|s − p| ≤ window` times a Gaussian `exp(−(s − p)² / (2σ²))`,
/// `σ = window / 2`, around a predicted position `p: [B]` or `[B, T]` on the rank scale of
/// [`rank`] (`p ∈ [0, n]` for `n` present events).
pub fn local_p(scores: &Tensor, mask: &Tensor, p: &Tensor, window: i64) -> Tensor {
    let pos = fit(&rank(mask), scores);
    let dist = pos - p.unsqueeze(-1);
    let sigma = window as f64 / 2.0;
    let inside = fit(mask, scores).logical_and(&dist.abs().le(window as f64));
    softmax_where(scores, &inside) * (-dist.square() / (2.0 * sigma * sigma)).exp()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AlignConfig {
    #[default]
    Softmax,
    Sigmoid,
    None,
    /// `{ local_m = { window = D } }`: softmax over the `D + 1` most recent events.
    LocalM { window: i64 },
    /// `{ local_p = { window = D } }`: a predicted position with a Gaussian of σ = D/2 around it.
    LocalP { window: i64 },
}

/// An alignment function with its parameters (only local-p has any: `p = n·sigmoid(vₚᵀ tanh(Wₚ q))`,
/// checkpoint keys `wp`, `vp`).
#[derive(Debug)]
pub enum Align {
    Softmax,
    Sigmoid,
    None,
    LocalM { window: i64 },
    LocalP { wp: nn::Linear, vp: Tensor, window: i64 },
}

impl Align {
    /// `dq`: query width (local-p predicts its position from the query).
    pub fn new(p: nn::Path, cfg: AlignConfig, dq: i64) -> Result<Align> {
        match cfg {
            AlignConfig::LocalM { window } | AlignConfig::LocalP { window } if window < 1 => {
                Err(Error::config(format!("align window must be at least 1, got {window}")))
            }
            AlignConfig::LocalP { window } => {
                let bound = 1.0 / (dq as f64).sqrt();
                Ok(Align::LocalP {
                    wp: nn::linear(&p / "wp", dq, dq, Default::default()),
                    vp: p.var("vp", &[dq], nn::Init::Uniform { lo: -bound, up: bound }),
                    window,
                })
            }
            AlignConfig::LocalM { window } => Ok(Align::LocalM { window }),
            AlignConfig::Softmax => Ok(Align::Softmax),
            AlignConfig::Sigmoid => Ok(Align::Sigmoid),
            AlignConfig::None => Ok(Align::None),
        }
    }

    /// `scores: [B, (T,) L]`, `mask: [B, L]`, `q: [B, (T,) Dq]` → weights like `scores`.
    pub fn forward(&self, scores: &Tensor, mask: &Tensor, q: &Tensor) -> Tensor {
        match self {
            Align::Softmax => softmax(scores, mask),
            Align::Sigmoid => sigmoid(scores, mask),
            Align::None => none(scores, mask),
            Align::LocalM { window } => local_m(scores, mask, *window),
            Align::LocalP { wp, vp, window } => {
                let n = mask.sum_dim_intlist(-1, false, Kind::Float);
                let n = if q.dim() == 3 { n.unsqueeze(-1) } else { n };
                let p = n * wp.forward(q).tanh().matmul(vp).sigmoid();
                local_p(scores, mask, &p, *window)
            }
        }
    }
}
