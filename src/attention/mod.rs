//! The attention framework the project is built on: every attention is a **score** function
//! (how well each key matches the query), an **alignment** function (how scores become weights)
//! and a **context** function (how weights and values become one vector).
//!
//! | preset | score | align | context |
//! |---|---|---|---|
//! | DIN (Zhou et al. 2018) | `din_mlp` over [q, k, q−k, q⊙k] | `none` (raw scores, masked) | `soft` |
//! | Luong global (2015) | `dot` / `general` | `softmax` | `soft` |
//! | Transformer (single head) | `scaled_dot` | `softmax` | `soft` |
//!
//! Pure tensor functions live in [`score`], [`align`] and [`context`]; [`TargetAttention`] composes
//! them with their parameters. Masked positions always get exactly zero weight, and a fully padded
//! history gives a zero context, never NaN.
pub mod align;
pub mod context;
pub mod score;

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

pub use align::AlignConfig;
pub use context::ContextConfig;
pub use score::{Score, ScoreConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionConfig {
    pub score: ScoreConfig,
    #[serde(default)]
    pub align: AlignConfig,
    #[serde(default)]
    pub context: ContextConfig,
}

impl AttentionConfig {
    /// DIN's local activation unit: MLP score, no normalization, weighted sum.
    pub fn din() -> Self {
        AttentionConfig { score: ScoreConfig::din_default(), align: AlignConfig::None, context: ContextConfig::Soft }
    }
}

/// Attention of one query vector over a sequence (DIN's "target attention").
#[derive(Debug)]
pub struct TargetAttention {
    score: Score,
    align: AlignConfig,
    context: ContextConfig,
}

impl TargetAttention {
    /// `dq`, `dk`: query and key widths.
    pub fn new(p: nn::Path, cfg: &AttentionConfig, dq: i64, dk: i64) -> crate::Result<Self> {
        Ok(TargetAttention { score: Score::new(&p / "score", &cfg.score, dq, dk)?, align: cfg.align, context: cfg.context })
    }

    /// Returns `(context [B, Dv], weights [B, L])`.
    ///
    /// # Shapes
    /// `q: [B, Dq]`, `keys: [B, L, Dk]`, `values: [B, L, Dv]`, `mask: [B, L]` bool.
    pub fn forward_t(&self, q: &Tensor, keys: &Tensor, values: &Tensor, mask: &Tensor, train: bool) -> (Tensor, Tensor) {
        let scores = self.score.forward_t(q, keys, train);
        let weights = self.align.apply(&scores, mask);
        (self.context.apply(&weights, values), weights)
    }
}
