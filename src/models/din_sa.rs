//! DIN over a self-attention encoding of the history (the "DIN + self-attention" hybrid of
//! DSIN/BST-style models): Transformer blocks first let each past event see the others, then DIN's
//! activation unit pools the encoded events against the candidate item.
use super::attn_pool::TargetPool;
use crate::attention::AttentionConfig;
use crate::error::Result;
use crate::features::FeatureMap;
use crate::nn::{MlpConfig, TransformerConfig};
use serde::{Deserialize, Serialize};
use tch::nn;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinSaConfig {
    pub embed_dim: i64,
    pub encoder: TransformerConfig,
    pub attention: AttentionConfig,
    pub mlp: MlpConfig,
}

impl Default for DinSaConfig {
    fn default() -> Self {
        DinSaConfig { embed_dim: 16, encoder: TransformerConfig::default(), attention: AttentionConfig::din(), mlp: MlpConfig::default() }
    }
}

pub fn build(p: nn::Path, cfg: &DinSaConfig, fm: &FeatureMap) -> Result<TargetPool> {
    TargetPool::new(p, fm, cfg.embed_dim, Some(&cfg.encoder), &cfg.attention, &cfg.mlp)
}
