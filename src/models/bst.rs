//! Behavior Sequence Transformer (Chen et al., DLP-KDD 2019): the target item is appended to the
//! history, recency position embeddings are added, Transformer blocks encode the sequence with
//! padding masked out, and an MLP scores `[user, target, encoded target, mean of encoded history]`.
//! The paper flattens every output position into the MLP; histories here have variable length, so
//! the target's output and the masked mean of the history's outputs stand in for it.
use super::base::masked_mean;
use super::{CtrModel, Embeddings};
use crate::error::Result;
use crate::features::{Batch, FeatureMap};
use crate::nn::{Encoder, Mlp, MlpConfig, TransformerConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BstConfig {
    pub embed_dim: i64,
    /// Default: the paper's 1 block, LeakyReLU feed-forward, dropout 0.1; 2 heads, not the
    /// paper's 8 (measured, see [`TransformerConfig`]'s defaults).
    pub transformer: TransformerConfig,
    /// The paper uses 1024 → 512 → 256; every model here shares 200 → 80 so that the comparison
    /// isolates the sequence encoder.
    pub mlp: MlpConfig,
}

impl Default for BstConfig {
    fn default() -> Self {
        BstConfig { embed_dim: 16, transformer: TransformerConfig::default(), mlp: MlpConfig::default() }
    }
}

#[derive(Debug)]
pub struct Bst {
    emb: Embeddings,
    encoder: Encoder,
    mlp: Mlp,
    out: nn::Linear,
}

impl Bst {
    pub fn new(p: nn::Path, cfg: &BstConfig, fm: &FeatureMap) -> Result<Self> {
        cfg.mlp.validate("mlp")?;
        let emb = Embeddings::new(&p / "emb", fm, cfg.embed_dim)?;
        let d = emb.item_dim();
        let encoder = Encoder::new(&p / "encoder", &cfg.transformer, d, fm.history_len as i64)?;
        let mlp = Mlp::new(&p / "mlp", emb.user_dim() + 3 * d, &cfg.mlp);
        let out = nn::linear(&p / "out", mlp.out_dim(), 1, Default::default());
        Ok(Bst { emb, encoder, mlp, out })
    }

    /// The sequence `[history…, target]` `[B, L + 1, D]`, its mask and recency positions
    /// (0 for the target, 1 for the most recent event, …; 0 at padding, which is masked anyway),
    /// from the target and the embedded history.
    fn sequence(&self, b: &Batch, target: &Tensor, hist: &Tensor) -> (Tensor, Tensor, Tensor) {
        let seq = Tensor::cat(&[hist, &target.unsqueeze(1)], 1);
        let n = b.size();
        let on = Tensor::ones([n, 1], (Kind::Bool, b.hist_mask.device()));
        let mask = Tensor::cat(&[&b.hist_mask, &on], 1);
        let hist_pos = Encoder::history_positions(&b.hist_mask);
        let position = Tensor::cat(&[hist_pos, Tensor::zeros([n, 1], (Kind::Int64, b.hist_mask.device()))], 1);
        (seq, mask, position)
    }

    /// In evaluation mode without gradients, when consecutive rows repeat a history (a user
    /// scored against many candidates, the histories built the same way), the encoder's work with
    /// each distinct history embedded once and its share of the first block's attention computed
    /// once per run of equal histories: the readout whole from the fused kernel for one block
    /// ([`Encoder::readout_shared_history`]), else the encoded sequence `[B, L + 1, D]`
    /// ([`Encoder::forward_shared_history`]); `None` otherwise, and when no history repeats. Rows
    /// share a history only when all its inputs are equal ([`Batch::history_starts`]), so the
    /// result is the plain pass's up to float rounding.
    fn shared_histories(&self, b: &Batch, train: bool, target: &Tensor) -> Option<Shared> {
        let (distinct, group) = super::repeated_histories(b, train)?;
        let (hist, hmask) = (self.emb.history(&distinct), distinct.hist_mask);
        Some(match self.encoder.readout_shared_history(&hist, &hmask, target, &group) {
            Some(r) => Shared::Readout(r),
            None => Shared::Encoded(self.encoder.forward_shared_history(&hist, &hmask, target, &group)),
        })
    }
}

/// The encoder's work for rows that share histories: its readout `[encoded target, mean of
/// the encoded history]` `[B, 2D]` straight from the fused kernel, or the encoded sequence
/// `[B, L + 1, D]`.
enum Shared {
    Readout(Tensor),
    Encoded(Tensor),
}

impl CtrModel for Bst {
    fn forward_t(&self, b: &Batch, train: bool) -> Tensor {
        let l = b.hist_mask.size()[1];
        let target = self.emb.target(b);
        // `[encoded target, mean of the encoded history]` from the encoded sequence.
        let read_out = |h: Tensor| Tensor::cat(&[h.select(1, l), masked_mean(&h.narrow(1, 0, l), &b.hist_mask.to_kind(h.kind()))], -1);
        let readout = match self.shared_histories(b, train, &target) {
            Some(Shared::Readout(r)) => r,
            Some(Shared::Encoded(h)) => read_out(h),
            None => {
                let (seq, mask, position) = self.sequence(b, &target, &self.emb.history(b));
                read_out(self.encoder.forward_t(&seq, &mask, &position, train))
            }
        };
        let x = Tensor::cat(&[self.emb.user(b), target, readout], -1);
        self.out.forward(&self.mlp.forward_t(&x, train)).squeeze_dim(-1)
    }

    /// The target's attention over the history in the last block, per head: `[B, H, L]`.
    fn attention(&self, b: &Batch) -> Option<Tensor> {
        let w = self.self_attention(b)?;
        let l = b.hist_mask.size()[1];
        Some(w.select(2, l).narrow(-1, 0, l))
    }

    /// The last block over `[history…, target]`: `[B, H, L + 1, L + 1]`.
    fn self_attention(&self, b: &Batch) -> Option<Tensor> {
        let (seq, mask, position) = self.sequence(b, &self.emb.target(b), &self.emb.history(b));
        Some(self.encoder.last_weights(&seq, &mask, &position))
    }
    fn param_groups(&self) -> super::ParamGroups {
        self.emb.param_groups().with_embeddings(self.encoder.embedding_tables())
    }
}
