//! BaseModel of the DIN paper (Zhou et al., KDD 2018, §4.2): embeddings, a fixed pooling of the
//! behavior sequence (mean over the present events), and an MLP on `[user, target, pooled]`.
use super::attn_pool::{check_split, split_by_feedback, FeedbackIn};
use super::{CtrModel, Embeddings};
use crate::error::Result;
use crate::features::{Batch, FeatureMap};
use crate::nn::{Mlp, MlpConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaseConfig {
    pub embed_dim: i64,
    /// How the history's feedback enters the mean: added to each event (`keys_and_values`, the
    /// default) or `split`, the mean taken apart by feedback (see [`FeedbackIn::Split`]).
    pub feedback: FeedbackIn,
    pub mlp: MlpConfig,
}

impl Default for BaseConfig {
    fn default() -> Self {
        BaseConfig { embed_dim: 16, feedback: FeedbackIn::KeysAndValues, mlp: MlpConfig::default() }
    }
}

#[derive(Debug)]
pub struct Base {
    emb: Embeddings,
    feedback: FeedbackIn,
    mlp: Mlp,
    out: nn::Linear,
}

impl Base {
    pub fn new(p: nn::Path, cfg: &BaseConfig, fm: &FeatureMap) -> Result<Self> {
        cfg.mlp.validate("mlp")?;
        if cfg.feedback == FeedbackIn::Values {
            return Err(crate::Error::config("base: feedback = \"values\" needs attention keys; use \"keys_and_values\" or \"split\""));
        }
        check_split(cfg.feedback, fm)?;
        let emb = Embeddings::new(&p / "emb", fm, cfg.embed_dim)?;
        let in_dim = emb.user_dim() + emb.item_dim() + cfg.feedback.value_dim(emb.item_dim());
        let mlp = Mlp::new(&p / "mlp", in_dim, &cfg.mlp);
        let out = nn::linear(&p / "out", mlp.out_dim(), 1, Default::default());
        Ok(Base { emb, feedback: cfg.feedback, mlp, out })
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
        let hist = match self.feedback {
            FeedbackIn::Split => split_by_feedback(&self.emb.history(b), &b.hist_feedback),
            _ => self.emb.history(b),
        };
        let pooled = masked_mean(&hist, &b.mask_f32());
        let x = Tensor::cat(&[self.emb.user(b), self.emb.target(b), pooled], -1);
        self.out.forward(&self.mlp.forward_t(&x, train)).squeeze_dim(-1)
    }
    fn param_groups(&self) -> super::ParamGroups {
        self.emb.param_groups()
    }
}
