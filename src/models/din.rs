//! Deep Interest Network (Zhou et al., KDD 2018): the candidate item queries the user's behavior
//! sequence through an activation unit (an MLP over `[q, k, q − k, q ⊙ k]`), the raw, unnormalized
//! weights (the paper's choice; softmax is an option) pool the history into an interest vector,
//! and an MLP scores `[user, target, interest]`.
use super::attn_pool::{PoolingConfig, TargetPool};
use crate::attention::AttentionConfig;
use crate::error::Result;
use crate::features::FeatureMap;
use crate::nn::MlpConfig;
use serde::{Deserialize, Serialize};
use tch::nn;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinConfig {
    pub embed_dim: i64,
    /// Default: the reference code's activation unit (80 → 40, sigmoid), no normalization.
    pub attention: AttentionConfig,
    pub pooling: PoolingConfig,
    /// Default: 200 → 80 with PReLU; the paper's Dice is `activation = "dice"`.
    pub mlp: MlpConfig,
}

impl Default for DinConfig {
    fn default() -> Self {
        DinConfig { embed_dim: 16, attention: AttentionConfig::din(), pooling: PoolingConfig::default(), mlp: MlpConfig::default() }
    }
}

pub fn build(p: nn::Path, cfg: &DinConfig, fm: &FeatureMap) -> Result<TargetPool> {
    TargetPool::new(p, fm, cfg.embed_dim, None, &cfg.attention, &cfg.pooling, &cfg.mlp)
}
