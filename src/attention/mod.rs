//! The attention framework the project is built on: every attention is a **score** function
//! (how well each key matches the query), an **alignment** function (how scores become weights)
//! and a **context** function (how weights and values become one vector), optionally over
//! several **heads**.
//!
//! | preset | score | align | context | heads |
//! |---|---|---|---|---|
//! | `din` (Zhou et al. 2018) | `din_mlp` over [q, k, q−k, q⊙k] | `none` (raw scores, masked) | `soft` | 1 |
//! | `luong_dot`, `luong_general`, `luong_concat` (2015, global) | `dot` / `general` / `concat` | `softmax` | `soft` | 1 |
//! | `bahdanau` (2015) | `additive` | `softmax` | `soft` | 1 |
//! | `local_m`, `local_p` (Luong 2015, local) | `general` | `local_m` / `local_p` window 5 | `soft` | 1 |
//! | `hard` (Xu et al. 2015) | `general` | `softmax` | `hard` | 1 |
//! | `transformer` (Vaswani et al. 2017) | `scaled_dot` | `softmax` | `soft` | 4 |
//!
//! Pure tensor functions live in [`score`], [`align`] and [`context`]; [`Attention`] composes them
//! with their parameters. Masked positions always get exactly zero weight, and a fully padded
//! history gives a zero context, never NaN.
pub mod align;
pub mod context;
pub mod din_fused;
pub mod multi_head;
pub mod score;

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

pub use align::{Align, AlignConfig};
pub use context::ContextConfig;
pub use multi_head::Attention;
pub use score::{Score, ScoreConfig};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttentionConfig {
    pub score: ScoreConfig,
    #[serde(default)]
    pub align: AlignConfig,
    #[serde(default)]
    pub context: ContextConfig,
    /// Number of heads; with more than one (or with `dim` set), queries, keys and values are
    /// projected to `dim`, as in the Transformer.
    #[serde(default = "one")]
    pub heads: i64,
    /// Model width of the projections (default: the key width; unset with one head: no projections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<i64>,
}

fn one() -> i64 {
    1
}

/// The names [`AttentionConfig::preset`] knows.
pub const PRESETS: &[&str] = &["din", "luong_dot", "luong_general", "luong_concat", "bahdanau", "local_m", "local_p", "hard", "transformer"];

impl AttentionConfig {
    pub fn new(score: ScoreConfig, align: AlignConfig, context: ContextConfig) -> Self {
        AttentionConfig { score, align, context, heads: 1, dim: None }
    }

    /// DIN's local activation unit: MLP score, no normalization, weighted sum.
    pub fn din() -> Self {
        Self::new(ScoreConfig::din_default(), AlignConfig::None, ContextConfig::Soft)
    }

    /// A named combination from the table in the module docs.
    pub fn preset(name: &str) -> Result<Self> {
        use AlignConfig as A;
        use ScoreConfig as S;
        let soft = ContextConfig::Soft;
        Ok(match name {
            "din" => Self::din(),
            "luong_dot" => Self::new(S::Dot, A::Softmax, soft),
            "luong_general" => Self::new(S::General, A::Softmax, soft),
            "luong_concat" => Self::new(S::Concat { hidden: None }, A::Softmax, soft),
            "bahdanau" => Self::new(S::Additive { hidden: None }, A::Softmax, soft),
            "local_m" => Self::new(S::General, A::LocalM { window: 5 }, soft),
            "local_p" => Self::new(S::General, A::LocalP { window: 5 }, soft),
            "hard" => Self::new(S::General, A::Softmax, ContextConfig::Hard),
            "transformer" => AttentionConfig { heads: 4, ..Self::new(S::ScaledDot, A::Softmax, soft) },
            other => return Err(Error::config(format!("unknown attention preset '{other}' (known: {})", PRESETS.join(", ")))),
        })
    }
}
