//! `attn_pool`: the CTR model whose history pooling is any attention of the library (any Score ×
//! Align × Context × heads, see [`crate::attention`]), so Luong's general and local-p, Bahdanau's
//! additive and hard attention can be compared on the same data. DIN and DIN+SA are this model with
//! DIN's activation unit (and, for DIN+SA, a self-attention encoder over the history first).
use super::{CtrModel, Embeddings};
use crate::attention::{AlignConfig, Attention, AttentionConfig, ContextConfig, ScoreConfig};
use crate::error::Result;
use crate::features::{Batch, FeatureMap};
use crate::nn::{tape, Encoder, Mlp, MlpConfig, TransformerConfig};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttnPoolConfig {
    pub embed_dim: i64,
    /// Default: Luong's global attention with the `general` score.
    pub attention: AttentionConfig,
    pub pooling: PoolingConfig,
    pub mlp: MlpConfig,
}

impl Default for AttnPoolConfig {
    fn default() -> Self {
        AttnPoolConfig {
            embed_dim: 16,
            attention: AttentionConfig::new(ScoreConfig::General, AlignConfig::Softmax, ContextConfig::Soft),
            pooling: PoolingConfig::default(),
            mlp: MlpConfig::default(),
        }
    }
}

/// What the head gets from the history besides the target: the attended interest, scaled, and
/// optionally the plain mean of the history beside it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolingConfig {
    /// How the attention's context is scaled by the number of present events `n`.
    pub scale: InterestScale,
    /// Also feed the head the mean of the history (base's pooling) beside the attended interest.
    pub with_mean: bool,
    /// Where the history's feedback (`protocol.history_feedback`) enters the attention.
    pub feedback: FeedbackIn,
}

/// Where each history event's own label enters target attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackIn {
    /// Added to the event, as the keys and values see it (and the encoder, if any).
    #[default]
    KeysAndValues,
    /// Added to the values only: the weights match the target against the events alone, and the
    /// context pools what the user thought of the matching ones. Models without an encoder.
    Values,
    /// Added to the events, and the values pooled apart by feedback: the context is `[liked,
    /// disliked, not yet known]` (three times the event width), each the weighted events of that
    /// feedback alone (their feedback embedding included, so each part also counts its events).
    /// Added, a feedback embedding only shifts the pooled vector, so a pooled history cannot say
    /// *which* of its events the user liked; split, it can. Models without an encoder.
    Split,
}

impl FeedbackIn {
    /// The width of the pooled values for events of width `d`.
    pub fn value_dim(self, d: i64) -> i64 {
        match self {
            FeedbackIn::Split => 3 * d,
            FeedbackIn::KeysAndValues | FeedbackIn::Values => d,
        }
    }
}

/// The scale of the attended interest against the history's length `n`. With DIN's raw weights
/// the context is a sum over up to `L` events, so its size grows with `n`; dividing it makes it a
/// weighted mean (`mean`) or keeps a part of the growth (`sqrt`). Softmax weights already sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterestScale {
    /// The context as the attention gives it.
    #[default]
    None,
    /// Divided by `n` (by 1 for an empty history).
    Mean,
    /// Divided by `√n`.
    Sqrt,
}

/// Embeddings → (optional encoder over the history) → target attention → MLP on
/// `[user, target, interest]`.
#[derive(Debug)]
pub struct TargetPool {
    emb: Embeddings,
    encoder: Option<Encoder>,
    attn: Attention,
    pooling: PoolingConfig,
    mlp: Mlp,
    out: nn::Linear,
}

impl TargetPool {
    pub fn new(
        p: nn::Path,
        fm: &FeatureMap,
        embed_dim: i64,
        encoder: Option<&TransformerConfig>,
        attention: &AttentionConfig,
        pooling: &PoolingConfig,
        mlp: &MlpConfig,
    ) -> Result<Self> {
        mlp.validate("mlp")?;
        let emb = Embeddings::new(&p / "emb", fm, embed_dim)?;
        let d = emb.item_dim();
        if pooling.feedback != FeedbackIn::KeysAndValues && encoder.is_some() {
            let v = if pooling.feedback == FeedbackIn::Values { "values" } else { "split" };
            return Err(crate::Error::config(format!("pooling.feedback = \"{v}\" needs a model without a history encoder")));
        }
        check_split(pooling.feedback, fm)?;
        let encoder = encoder.map(|c| Encoder::new(&p / "encoder", c, d, fm.history_len as i64)).transpose()?;
        let dv = pooling.feedback.value_dim(d);
        let attn = Attention::new(&p / "target_attn", attention, d, d, dv)?;
        let mean_dim = if pooling.with_mean { dv } else { 0 };
        let mlp = Mlp::new(&p / "mlp", emb.user_dim() + d + attn.out_dim() + mean_dim, mlp);
        let out = nn::linear(&p / "out", mlp.out_dim(), 1, Default::default());
        Ok(TargetPool { emb, encoder, attn, pooling: pooling.clone(), mlp, out })
    }

    /// The history as the attention sees it, keys and values: embeddings, or their encoding; the
    /// values differ from the keys only with `pooling.feedback = "values"`.
    fn keys_values(&self, b: &Batch, train: bool) -> (Tensor, Option<Tensor>) {
        match self.pooling.feedback {
            FeedbackIn::Values => {
                let (items, feedback) = self.emb.history_and_feedback(b);
                let values = feedback.map(|f| &items + f);
                return (items, values);
            }
            FeedbackIn::Split => {
                let keys = self.emb.history(b);
                let values = split_by_feedback(&keys, &b.hist_feedback);
                return (keys, Some(values));
            }
            FeedbackIn::KeysAndValues => {}
        }
        let keys = match &self.encoder {
            // The encoder sees the history alone, so rows that repeat a history (scoring) share
            // its encoding: each distinct history is embedded and encoded once.
            Some(enc) => match super::repeated_histories(b, train) {
                Some((distinct, group)) => {
                    let mask = &distinct.hist_mask;
                    enc.forward_t(&self.emb.history(&distinct), mask, &Encoder::history_positions(mask), false).index_select(0, &group)
                }
                None => enc.forward_t(&self.emb.history(b), &b.hist_mask, &Encoder::history_positions(&b.hist_mask), train),
            },
            None => self.emb.history(b),
        };
        (keys, None)
    }
}

/// Split pooling needs each event's feedback: without it every slot would be zero.
pub(super) fn check_split(feedback: FeedbackIn, fm: &FeatureMap) -> Result<()> {
    if feedback == FeedbackIn::Split && !fm.history_feedback {
        return Err(crate::Error::config("feedback = \"split\" needs protocol.history_feedback = true"));
    }
    Ok(())
}

/// `items: [B, L, D]` pooled apart by `feedback: [B, L]` ([`crate::features::feedback_index`]:
/// 1 no click, 2 click, 3 not yet known, 0 padding) → `[B, L, 3·D]`: an event's row sits in the
/// slot of its feedback, `[click, no click, not yet known]`, zeros elsewhere.
pub fn split_by_feedback(items: &Tensor, feedback: &Tensor) -> Tensor {
    let slots = Tensor::stack(&[feedback.eq(2), feedback.eq(1), feedback.eq(3)], -1).to_kind(items.kind());
    // [B, L, 3, 1] * [B, L, 1, D] → [B, L, 3·D]
    (slots.unsqueeze(-1) * items.unsqueeze(-2)).flatten(-2, -1)
}

impl CtrModel for TargetPool {
    fn forward_t(&self, b: &Batch, train: bool) -> Tensor {
        let target = self.emb.target(b);
        let (keys, values) = self.keys_values(b, train);
        let values = values.as_ref().unwrap_or(&keys);
        let interest = self.attn.context_t(&target, &keys, values, &b.hist_mask, train);
        let mask = b.mask_f32();
        let n = || mask.sum_dim_intlist(1, true, tch::Kind::Float).clamp_min(1.0);
        let interest = match self.pooling.scale {
            InterestScale::None => interest,
            InterestScale::Mean => interest / n(),
            InterestScale::Sqrt => interest / n().sqrt(),
        };
        let mut parts = vec![self.emb.user(b), target, interest];
        if self.pooling.with_mean {
            parts.push(super::base::masked_mean(values, &mask));
        }
        // With the fused attention on the tape, the head's backward then runs once.
        let x = tape::cut(Tensor::cat(&parts, -1));
        self.out.forward(&self.mlp.forward_t(&x, train)).squeeze_dim(-1)
    }

    /// `[B, H, L]`.
    fn attention(&self, b: &Batch) -> Option<Tensor> {
        let (keys, values) = self.keys_values(b, false);
        let w = self.attn.forward_t(&self.emb.target(b), &keys, values.as_ref().unwrap_or(&keys), &b.hist_mask, false).1;
        Some(if w.dim() == 3 { w } else { w.unsqueeze(1) })
    }

    /// The encoder's last block over the history (DIN + self-attention), `[B, H, L, L]`.
    fn self_attention(&self, b: &Batch) -> Option<Tensor> {
        let enc = self.encoder.as_ref()?;
        let hist = self.emb.history(b);
        Some(enc.last_weights(&hist, &b.hist_mask, &Encoder::history_positions(&b.hist_mask)))
    }
    fn param_groups(&self) -> super::ParamGroups {
        self.emb.param_groups().with_embeddings(self.encoder.iter().flat_map(Encoder::embedding_tables))
    }
}
