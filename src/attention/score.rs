//! Score functions: how well each key matches the query.
//!
//! # Shapes
//! `q: [B, Dq]`, `keys: [B, L, Dk]` → scores `[B, L]`.
use crate::error::{Error, Result};
use crate::nn::{Activation, Mlp, MlpConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

/// `qᵀk` per position. Requires `Dq == Dk`.
pub fn dot(q: &Tensor, keys: &Tensor) -> Tensor {
    keys.matmul(&q.unsqueeze(-1)).squeeze_dim(-1)
}

/// `qᵀk / √d`, the Transformer's score.
pub fn scaled_dot(q: &Tensor, keys: &Tensor) -> Tensor {
    let d = *q.size().last().expect("q has a last dim") as f64;
    dot(q, keys) / d.sqrt()
}

/// Luong's `general` score `qᵀ W k`, with `w: [Dq, Dk]`.
pub fn general(q: &Tensor, keys: &Tensor, w: &Tensor) -> Tensor {
    dot(&q.matmul(w), keys)
}

/// DIN's activation-unit input `[q, k, q − k, q ⊙ k]`: `[B, L, 4D]` for `q: [B, D]`, `keys: [B, L, D]`.
pub fn din_features(q: &Tensor, keys: &Tensor) -> Tensor {
    let q = q.unsqueeze(1).expand_as(keys);
    Tensor::cat(&[&q, keys, &(&q - keys), &(&q * keys)], -1)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScoreConfig {
    Dot,
    ScaledDot,
    General,
    /// DIN's activation unit: an MLP over `[q, k, q − k, q ⊙ k]` followed by a linear output.
    DinMlp {
        #[serde(default = "din_hidden")]
        hidden: Vec<i64>,
        #[serde(default)]
        activation: Activation,
    },
}

fn din_hidden() -> Vec<i64> {
    vec![36]
}

impl ScoreConfig {
    pub fn din_default() -> Self {
        ScoreConfig::DinMlp { hidden: din_hidden(), activation: Activation::Prelu }
    }
}

/// A score function with its parameters.
#[derive(Debug)]
pub enum Score {
    Dot,
    ScaledDot,
    General { w: Tensor },
    DinMlp { mlp: Mlp, out: nn::Linear },
}

impl Score {
    pub fn new(p: nn::Path, cfg: &ScoreConfig, dq: i64, dk: i64) -> Result<Score> {
        let same = |name: &str| {
            if dq == dk {
                Ok(())
            } else {
                Err(Error::config(format!("score '{name}' needs query and key of one width, got {dq} and {dk}")))
            }
        };
        Ok(match cfg {
            ScoreConfig::Dot => {
                same("dot")?;
                Score::Dot
            }
            ScoreConfig::ScaledDot => {
                same("scaled_dot")?;
                Score::ScaledDot
            }
            ScoreConfig::General => {
                let bound = 1.0 / (dq as f64).sqrt();
                Score::General { w: p.var("w", &[dq, dk], nn::Init::Uniform { lo: -bound, up: bound }) }
            }
            ScoreConfig::DinMlp { hidden, activation } => {
                same("din_mlp")?;
                if hidden.is_empty() || hidden.iter().any(|&h| h <= 0) {
                    return Err(Error::config("din_mlp.hidden must list positive layer widths"));
                }
                let mlp_cfg = MlpConfig { hidden: hidden.clone(), activation: *activation, dropout: 0.0 };
                let mlp = Mlp::new(&p / "mlp", 4 * dq, &mlp_cfg);
                let out = nn::linear(&p / "out", mlp.out_dim(), 1, Default::default());
                Score::DinMlp { mlp, out }
            }
        })
    }

    /// `q: [B, Dq]`, `keys: [B, L, Dk]` → `[B, L]`.
    pub fn forward_t(&self, q: &Tensor, keys: &Tensor, train: bool) -> Tensor {
        match self {
            Score::Dot => dot(q, keys),
            Score::ScaledDot => scaled_dot(q, keys),
            Score::General { w } => general(q, keys, w),
            Score::DinMlp { mlp, out } => out.forward(&mlp.forward_t(&din_features(q, keys), train)).squeeze_dim(-1),
        }
    }
}
