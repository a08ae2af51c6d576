//! Deep Interest Network (Zhou et al., KDD 2018): the candidate item queries the user's behavior
//! sequence through an activation unit (an MLP over `[q, k, q − k, q ⊙ k]`), the raw, unnormalized
//! weights (the paper's choice; softmax is an option) pool the history into an interest vector,
//! and an MLP scores `[user, target, interest]`.
use super::{CtrModel, Embeddings};
use crate::attention::{AttentionConfig, TargetAttention};
use crate::error::Result;
use crate::features::{Batch, FeatureMap};
use crate::nn::{Mlp, MlpConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DinConfig {
    pub embed_dim: i64,
    pub attention: AttentionConfig,
    pub mlp: MlpConfig,
}

impl Default for DinConfig {
    fn default() -> Self {
        DinConfig { embed_dim: 16, attention: AttentionConfig::din(), mlp: MlpConfig::default() }
    }
}

#[derive(Debug)]
pub struct Din {
    emb: Embeddings,
    attn: TargetAttention,
    mlp: Mlp,
    out: nn::Linear,
}

impl Din {
    pub fn new(p: nn::Path, cfg: &DinConfig, fm: &FeatureMap) -> Result<Self> {
        let emb = Embeddings::new(&p / "emb", fm, cfg.embed_dim)?;
        let d = emb.item_dim();
        let attn = TargetAttention::new(&p / "target_attn", &cfg.attention, d, d)?;
        let mlp = Mlp::new(&p / "mlp", cfg.embed_dim + 2 * d, &cfg.mlp);
        let out = nn::linear(&p / "out", mlp.out_dim(), 1, Default::default());
        Ok(Din { emb, attn, mlp, out })
    }

    fn interest(&self, b: &Batch, train: bool) -> (Tensor, Tensor, Tensor) {
        let target = self.emb.target(b);
        let hist = self.emb.history(b);
        let (interest, weights) = self.attn.forward_t(&target, &hist, &hist, &b.hist_mask, train);
        (target, interest, weights)
    }
}

impl CtrModel for Din {
    fn forward_t(&self, b: &Batch, train: bool) -> Tensor {
        let (target, interest, _) = self.interest(b, train);
        let x = Tensor::cat(&[self.emb.user(b), target, interest], -1);
        self.out.forward(&self.mlp.forward_t(&x, train)).squeeze_dim(-1)
    }
    fn attention(&self, b: &Batch) -> Option<Tensor> {
        Some(self.interest(b, false).2)
    }
}
