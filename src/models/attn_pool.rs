//! `attn_pool`: the CTR model whose history pooling is any attention of the library (any Score ×
//! Align × Context × heads, see [`crate::attention`]), so Luong's general and local-p, Bahdanau's
//! additive and hard attention can be compared on the same data. DIN and DIN+SA are this model with
//! DIN's activation unit (and, for DIN+SA, a self-attention encoder over the history first).
use super::{CtrModel, Embeddings};
use crate::attention::{AlignConfig, Attention, AttentionConfig, ContextConfig, ScoreConfig};
use crate::error::Result;
use crate::features::{Batch, FeatureMap};
use crate::nn::{Encoder, Lookups, Mlp, MlpConfig, TransformerConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use std::cell::RefCell;
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttnPoolConfig {
    pub embed_dim: i64,
    /// Default: Luong's global attention with the `general` score.
    pub attention: AttentionConfig,
    pub mlp: MlpConfig,
}

impl Default for AttnPoolConfig {
    fn default() -> Self {
        AttnPoolConfig { embed_dim: 16, attention: AttentionConfig::new(ScoreConfig::General, AlignConfig::Softmax, ContextConfig::Soft), mlp: MlpConfig::default() }
    }
}

/// Embeddings → (optional encoder over the history) → target attention → MLP on
/// `[user, target, interest]`.
#[derive(Debug)]
pub struct TargetPool {
    emb: Embeddings,
    encoder: Option<Encoder>,
    attn: Attention,
    mlp: Mlp,
    out: nn::Linear,
    /// With the fused attention, the head's input in the graph and the leaf the head ran on
    /// (see [`CtrModel::backward`] here).
    cut: RefCell<Option<(Tensor, Tensor)>>,
}

impl TargetPool {
    pub fn new(p: nn::Path, fm: &FeatureMap, embed_dim: i64, encoder: Option<&TransformerConfig>, attention: &AttentionConfig, mlp: &MlpConfig) -> Result<Self> {
        mlp.validate("mlp")?;
        let emb = Embeddings::new(&p / "emb", fm, embed_dim)?;
        let d = emb.item_dim();
        let encoder = encoder.map(|c| Encoder::new(&p / "encoder", c, d, fm.history_len as i64)).transpose()?;
        let attn = Attention::new(&p / "target_attn", attention, d, d, d)?;
        let mlp = Mlp::new(&p / "mlp", emb.user_dim() + d + attn.out_dim(), mlp);
        let out = nn::linear(&p / "out", mlp.out_dim(), 1, Default::default());
        Ok(TargetPool { emb, encoder, attn, mlp, out, cut: RefCell::new(None) })
    }

    /// The history as the attention sees it: embeddings, or their encoding.
    fn keys(&self, b: &Batch, train: bool) -> Tensor {
        let hist = self.emb.history(b);
        match &self.encoder {
            Some(enc) => {
                enc.forward_t(&hist, &b.hist_mask, &Encoder::history_positions(&b.hist_mask), train)
            }
            None => hist,
        }
    }
}

impl CtrModel for TargetPool {
    fn forward_t(&self, b: &Batch, train: bool) -> Tensor {
        let target = self.emb.target(b);
        let keys = self.keys(b, train);
        let interest = self.attn.context_t(&target, &keys, &keys, &b.hist_mask, train);
        let x = Tensor::cat(&[self.emb.user(b), target, interest], -1);
        let x = if self.attn.fused_pending() {
            let leaf = x.detach().set_requires_grad(true);
            *self.cut.borrow_mut() = Some((x, leaf.shallow_clone()));
            leaf
        } else {
            self.cut.borrow_mut().take();
            x
        };
        self.out.forward(&self.mlp.forward_t(&x, train)).squeeze_dim(-1)
    }

    /// With the fused attention the head's graph is cut at its input `x`: `loss.backward()` runs
    /// the head once, and the rest of the graph gets ∂L/∂x through `Σ x ⊙ c(∂L/∂x)`. The fused
    /// kernel's backward, which asks libtorch for the gradient of its output before it adds its
    /// own, then goes over the concatenation alone instead of the whole head twice.
    fn backward(&self, loss: &Tensor) {
        match self.cut.borrow_mut().take() {
            Some((x, leaf)) => {
                loss.backward();
                let g = leaf.grad();
                let rest = if g.defined() { (x * g).sum(tch::Kind::Float) } else { x.sum(tch::Kind::Float) * 0.0 };
                self.attn.backward(&rest);
            }
            None => self.attn.backward(loss),
        }
        self.lookups().iter().for_each(|l| l.backward());
    }

    fn set_fused(&self, on: bool) {
        self.attn.set_fused(on);
        self.lookups().iter().for_each(|l| l.set_on(on));
    }

    fn lookups(&self) -> Vec<&Lookups> {
        let mut all = vec![&self.emb.lookups];
        all.extend(self.encoder.as_ref().map(|e| e.lookups()));
        all
    }

    /// `[B, H, L]`.
    fn attention(&self, b: &Batch) -> Option<Tensor> {
        let keys = self.keys(b, false);
        let w = self.attn.forward_t(&self.emb.target(b), &keys, &keys, &b.hist_mask, false).1;
        Some(if w.dim() == 3 { w } else { w.unsqueeze(1) })
    }

    /// The encoder's last block over the history (DIN + self-attention), `[B, H, L, L]`.
    fn self_attention(&self, b: &Batch) -> Option<Tensor> {
        let enc = self.encoder.as_ref()?;
        let hist = self.emb.history(b);
        Some(enc.last_weights(&hist, &b.hist_mask, &Encoder::history_positions(&b.hist_mask)))
    }
}
