//! Alignment functions: scores → weights. Masked positions get exactly zero weight; a fully masked
//! row gives all-zero weights (never NaN, in values or gradients).
//!
//! # Shapes
//! `scores: [B, L]` f32, `mask: [B, L]` bool → weights `[B, L]`.
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Softmax over the valid positions (Luong's global attention).
pub fn softmax(scores: &Tensor, mask: &Tensor) -> Tensor {
    // A finite fill (not -inf) keeps fully masked rows finite: they become uniform, then zeroed.
    scores
        .masked_fill(&mask.logical_not(), -1e30)
        .softmax(-1, scores.kind())
        .masked_fill(&mask.logical_not(), 0.0)
}

/// Independent sigmoid gates per position.
pub fn sigmoid(scores: &Tensor, mask: &Tensor) -> Tensor {
    scores.sigmoid().masked_fill(&mask.logical_not(), 0.0)
}

/// Raw scores, masked to 0: DIN keeps the intensity of the user's interest by not normalizing.
pub fn none(scores: &Tensor, mask: &Tensor) -> Tensor {
    scores.masked_fill(&mask.logical_not(), 0.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AlignConfig {
    #[default]
    Softmax,
    Sigmoid,
    None,
}

impl AlignConfig {
    pub fn apply(self, scores: &Tensor, mask: &Tensor) -> Tensor {
        match self {
            AlignConfig::Softmax => softmax(scores, mask),
            AlignConfig::Sigmoid => sigmoid(scores, mask),
            AlignConfig::None => none(scores, mask),
        }
    }
}
