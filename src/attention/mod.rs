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

/// The named attention combinations of the table in the module docs (`attn_pool:PRESET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionPreset {
    Din,
    LuongDot,
    LuongGeneral,
    LuongConcat,
    Bahdanau,
    LocalM,
    LocalP,
    Hard,
    Transformer,
}

impl crate::util::Choice for AttentionPreset {
    const ALL: &'static [Self] = &[
        AttentionPreset::Din,
        AttentionPreset::LuongDot,
        AttentionPreset::LuongGeneral,
        AttentionPreset::LuongConcat,
        AttentionPreset::Bahdanau,
        AttentionPreset::LocalM,
        AttentionPreset::LocalP,
        AttentionPreset::Hard,
        AttentionPreset::Transformer,
    ];
}

impl AttentionPreset {
    /// The preset's attention.
    pub fn config(self) -> AttentionConfig {
        use AlignConfig as A;
        use AttentionPreset as P;
        use ScoreConfig as S;
        let soft = ContextConfig::Soft;
        match self {
            P::Din => AttentionConfig::din(),
            P::LuongDot => AttentionConfig::new(S::Dot, A::Softmax, soft),
            P::LuongGeneral => AttentionConfig::new(S::General, A::Softmax, soft),
            P::LuongConcat => AttentionConfig::new(S::Concat { hidden: None }, A::Softmax, soft),
            P::Bahdanau => AttentionConfig::new(S::Additive { hidden: None }, A::Softmax, soft),
            P::LocalM => AttentionConfig::new(S::General, A::LocalM { window: 5 }, soft),
            P::LocalP => AttentionConfig::new(S::General, A::LocalP { window: 5 }, soft),
            P::Hard => AttentionConfig::new(S::General, A::Softmax, ContextConfig::Hard),
            P::Transformer => AttentionConfig { heads: 4, ..AttentionConfig::new(S::ScaledDot, A::Softmax, soft) },
        }
    }
}

impl AttentionConfig {
    pub fn new(score: ScoreConfig, align: AlignConfig, context: ContextConfig) -> Self {
        AttentionConfig { score, align, context, heads: 1, dim: None }
    }

    /// DIN's local activation unit: MLP score, no normalization, weighted sum.
    pub fn din() -> Self {
        Self::new(ScoreConfig::din_default(), AlignConfig::None, ContextConfig::Soft)
    }

    /// A named combination from the table in the module docs (see [`AttentionPreset`]).
    pub fn preset(name: &str) -> Result<Self> {
        use crate::util::Choice;
        AttentionPreset::parse_name(name).map(AttentionPreset::config).ok_or_else(|| {
            let known: Vec<String> = AttentionPreset::ALL.iter().map(|p| p.name_of()).collect();
            Error::config(format!("unknown attention preset '{name}' (known: {})", known.join(", ")))
        })
    }
}
