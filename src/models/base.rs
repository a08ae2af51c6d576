//! BaseModel of the DIN paper (Zhou et al., KDD 2018, §4.2): embeddings, a fixed pooling of the
//! behavior sequence (mean over the present events), and an MLP on `[user, target, pooled]`.
use super::{CtrModel, Embeddings};
use crate::error::Result;
use crate::features::{Batch, FeatureMap};
use crate::nn::{Lookups, Mlp, MlpConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaseConfig {
    pub embed_dim: i64,
    pub mlp: MlpConfig,
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig { embed_dim: 16, mlp: MlpConfig::default() }
    }
}

#[derive(Debug)]
pub struct Base {
    emb: Embeddings,
    mlp: Mlp,
    out: nn::Linear,
}

impl Base {
    pub fn new(p: nn::Path, cfg: &BaseConfig, fm: &FeatureMap) -> Result<Self> {
        cfg.mlp.validate("mlp")?;
        let emb = Embeddings::new(&p / "emb", fm, cfg.embed_dim)?;
        let in_dim = emb.user_dim() + 2 * emb.item_dim();
        let mlp = Mlp::new(&p / "mlp", in_dim, &cfg.mlp);
        let out = nn::linear(&p / "out", mlp.out_dim(), 1, Default::default());
        Ok(Base { emb, mlp, out })
    }
}

/// Mean of the present rows: `hist: [B, L, D]`, `mask: [B, L]` f32 → `[B, D]` (zeros when empty).
pub fn masked_mean(hist: &Tensor, mask: &Tensor) -> Tensor {
    let sum = (hist * mask.unsqueeze(-1)).sum_dim_intlist(1, false, hist.kind());
    let count = mask.sum_dim_intlist(1, true, mask.kind()).clamp_min(1.0);
    sum / count
}

impl CtrModel for Base {
    fn forward_t(&self, b: &Batch, train: bool) -> Tensor {
        let pooled = masked_mean(&self.emb.history(b), &b.mask_f32());
        let x = Tensor::cat(&[self.emb.user(b), self.emb.target(b), pooled], -1);
        self.out.forward(&self.mlp.forward_t(&x, train)).squeeze_dim(-1)
    }

    fn lookups(&self) -> Vec<&Lookups> {
        vec![&self.emb.lookups]
    }
}
