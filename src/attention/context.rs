//! Context functions: weights and values → one vector.
//!
//! # Shapes
//! `weights: [B, L]`, `values: [B, L, Dv]` → `[B, Dv]`.
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// Weighted sum of the values (soft attention).
pub fn soft(weights: &Tensor, values: &Tensor) -> Tensor {
    weights.unsqueeze(1).bmm(values).squeeze_dim(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContextConfig {
    #[default]
    Soft,
}

impl ContextConfig {
    pub fn apply(self, weights: &Tensor, values: &Tensor) -> Tensor {
        match self {
            ContextConfig::Soft => soft(weights, values),
        }
    }
}
