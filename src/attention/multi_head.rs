//! [`Attention`]: one Score × Align × Context, optionally over H heads.
//!
//! With one head and no `dim` the query, keys and values are used as they are (DIN's target
//! attention). With H > 1, or with `dim` set, each of them is projected to the model width `dim`
//! (default: the key width), split into H heads of `dim / H`,
//! attended per head (the score, align and context parameters are shared by the heads, the
//! projections are not), concatenated and projected back, as in the Transformer.
use super::{Align, AttentionConfig, ContextConfig, Score, ScoreConfig};
use crate::error::{Error, Result};
use tch::nn::{self, Module};
use tch::Tensor;

#[derive(Debug)]
struct Projections {
    q: nn::Linear,
    k: nn::Linear,
    v: nn::Linear,
    o: nn::Linear,
}

#[derive(Debug)]
pub struct Attention {
    heads: i64,
    proj: Option<Projections>,
    score: Score,
    align: Align,
    context: ContextConfig,
    /// `scaled_dot + softmax + soft`: the one combination that libtorch's fused kernel computes.
    fused: bool,
    out_dim: i64,
}

impl Attention {
    /// `dq`, `dk`, `dv`: query, key and value widths.
    pub fn new(p: nn::Path, cfg: &AttentionConfig, dq: i64, dk: i64, dv: i64) -> Result<Self> {
        let heads = cfg.heads;
        if heads < 1 {
            return Err(Error::config(format!("attention.heads must be at least 1, got {heads}")));
        }
        let (proj, head_q, head_k, out_dim) = if heads == 1 && cfg.dim.is_none() {
            (None, dq, dk, dv)
        } else {
            let dim = cfg.dim.unwrap_or(dk);
            if dim < 1 || dim % heads != 0 {
                return Err(Error::config(format!("attention.dim ({dim}) must be a positive multiple of attention.heads ({heads})")));
            }
            let proj = Projections {
                q: nn::linear(&p / "q", dq, dim, Default::default()),
                k: nn::linear(&p / "k", dk, dim, Default::default()),
                v: nn::linear(&p / "v", dv, dim, Default::default()),
                o: nn::linear(&p / "o", dim, dim, Default::default()),
            };
            (Some(proj), dim / heads, dim / heads, dim)
        };
        let fused = cfg.score == ScoreConfig::ScaledDot
            && cfg.align == super::AlignConfig::Softmax
            && cfg.context == ContextConfig::Soft;
        Ok(Attention {
            heads,
            proj,
            score: Score::new(&p / "score", &cfg.score, head_q, head_k)?,
            align: Align::new(&p / "align", cfg.align, head_q)?,
            context: cfg.context,
            fused,
            out_dim,
        })
    }

    /// Width of the context vector.
    pub fn out_dim(&self) -> i64 {
        self.out_dim
    }

    /// Returns `(context, weights)`.
    ///
    /// # Shapes
    /// `q: [B, Dq]` or `[B, T, Dq]`, `keys: [B, L, Dk]`, `values: [B, L, Dv]`, `mask: [B, L]` bool →
    /// context `[B, (T,) out_dim]`, weights `[B, (H,) (T,) L]` (the H axis only when H > 1).
    pub fn forward_t(&self, q: &Tensor, keys: &Tensor, values: &Tensor, mask: &Tensor, train: bool) -> (Tensor, Tensor) {
        let Some(proj) = &self.proj else {
            return self.attend(q, keys, values, mask, train);
        };
        let (b, h) = (q.size()[0], self.heads);
        let qh = split_heads(&proj.q.forward(q), h);
        let kh = split_heads(&proj.k.forward(keys), h);
        let vh = split_heads(&proj.v.forward(values), h);
        let mh = mask.unsqueeze(1).expand([b, h, -1], false).reshape([b * h, -1]);
        let (ctx, w) = self.attend(&qh, &kh, &vh, &mh, train);
        let mut w_size = w.size();
        w_size[0] = h;
        w_size.insert(0, b);
        (proj.o.forward(&merge_heads(&ctx, b, h)), w.view(w_size.as_slice()))
    }

    /// The context alone. For the Transformer's combination this runs libtorch's fused
    /// `scaled_dot_product_attention` (it never materializes the weights, so [`Self::forward_t`]
    /// cannot use it); every other combination goes through [`Self::forward_t`].
    pub fn context_t(&self, q: &Tensor, keys: &Tensor, values: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        // DIN's combination (one head, no normalization, soft) whole in its fused kernel.
        if self.proj.is_none() && matches!(self.align, Align::None) && self.context == ContextConfig::Soft {
            if let Some(ctx) = self.score.pooled_t(q, keys, values, mask) {
                return ctx;
            }
        }
        if !self.fused {
            return self.forward_t(q, keys, values, mask, train).0;
        }
        let b = q.size()[0];
        let single = q.dim() == 2;
        let q3 = if single { q.unsqueeze(1) } else { q.shallow_clone() };
        let (q4, k4, v4) = match &self.proj {
            Some(p) => (
                to_heads(&p.q.forward(&q3), self.heads),
                to_heads(&p.k.forward(keys), self.heads),
                to_heads(&p.v.forward(values), self.heads),
            ),
            None => (q3.unsqueeze(1), keys.unsqueeze(1), values.unsqueeze(1)),
        };
        // The fused kernel gives NaN for a row with no key at all: let such rows see every key,
        // then zero their output.
        let any = mask.any_dim(-1, true);
        let safe = mask.logical_or(&any.logical_not()).view([b, 1, 1, -1]);
        let ctx = Tensor::scaled_dot_product_attention(&q4, &k4, &v4, Some(safe), 0.0, false, None, false);
        // [B, H, T, dh] → [B, T, H·dh]
        let ctx = ctx.transpose(1, 2).flatten(2, 3);
        let ctx = match &self.proj {
            Some(p) => p.o.forward(&ctx),
            None => ctx,
        };
        let kind = ctx.kind();
        let ctx = ctx * any.unsqueeze(-1).to_kind(kind);
        if single {
            ctx.squeeze_dim(1)
        } else {
            ctx
        }
    }

    /// Self-attention over `[history…, target]` (evaluation mode) for rows whose histories repeat,
    /// as when a user is scored against many candidates: equal to
    /// `context_t(seq, seq, seq, mask)` with `seq = [hist[group[r]]…, target[r]]` and the target
    /// always present, up to float rounding, but the history's projections and its events' scores
    /// against each other are computed once per distinct history. Per history query `i` and head,
    /// softmax over the history's keys and the target's is split exactly: with `m` the largest
    /// history score, `Z = Σ e^(s−m)` and `A = Σ e^(s−m) v` over the history (shared), and `s_t`
    /// the target key's score (per row), the output is `(A·e^(m−m') + e^(s_t−m') v_t) / (Z·e^(m−m')
    /// + e^(s_t−m'))` with `m' = max(m, s_t)`. The target's own query attends as usual.
    ///
    /// `hist: [U, L, D]` the distinct histories, `hmask: [U, L]`, `target: [B, D]`, `group: [B]`
    /// i64 (each row's history) → `[B, L + 1, out_dim]`. `None` unless this is the Transformer's
    /// combination (projections, scaled dot, softmax, soft), the one self-attention uses.
    pub fn context_shared_history(&self, hist: &Tensor, hmask: &Tensor, target: &Tensor, group: &Tensor) -> Option<Tensor> {
        let p = self.proj.as_ref().filter(|_| self.fused)?;
        let h = self.heads;
        // [B, H, 1, dh].
        let (qt, kt, vt) = (to_heads(&p.q.forward(target), h), to_heads(&p.k.forward(target), h), to_heads(&p.v.forward(target), h));
        let HistorySoftmax { q: qh, k: kh, v: vh, max: m, sum: z, acc: a } = self.history_softmax(p, hist, hmask);
        let scale = 1.0 / (qh.size()[3] as f64).sqrt();
        let at = |t: &Tensor| t.index_select(0, group);
        let (q_r, k_r, v_r, m_r, z_r, a_r) = (at(&qh), at(&kh), at(&vh), at(&m), at(&z), at(&a));
        // Each history query against its row's target key: [B, H, L, 1].
        let st = q_r.matmul(&kt.transpose(-1, -2)) * scale;
        let top = m_r.maximum(&st);
        let (old, new) = ((&m_r - &top).exp(), (&st - &top).exp());
        let hist_out = (a_r * &old + &new * &vt) / (z_r * &old + &new);
        // The target's query over every key: [B, H, 1, L + 1].
        let keys = Tensor::cat(&[&k_r, &kt], 2);
        let values = Tensor::cat(&[&v_r, &vt], 2);
        let on = Tensor::cat(&[at(hmask), Tensor::ones([target.size()[0], 1], (tch::Kind::Bool, target.device()))], 1);
        let w = (qt.matmul(&keys.transpose(-1, -2)) * scale).masked_fill(&on.view([target.size()[0], 1, 1, -1]).logical_not(), f64::NEG_INFINITY);
        let target_out = w.softmax(-1, w.kind()).matmul(&values);
        // [B, H, L + 1, dh] → [B, L + 1, H·dh]
        let ctx = Tensor::cat(&[hist_out, target_out], 2).transpose(1, 2).flatten(2, 3);
        Some(p.o.forward(&ctx))
    }

    /// The history's share of [`Self::context_shared_history`], once per distinct history
    /// `hist: [U, L, D]`: its projections per head `[U, H, L, dh]`, and per history query the
    /// largest score against the history's events `max`, `sum = Σ e^(s − max)` `[U, H, L, 1]`
    /// and `acc = Σ e^(s − max) v` `[U, H, L, dh]` (zeros, with `max` 0, for a history without
    /// events).
    fn history_softmax(&self, p: &Projections, hist: &Tensor, hmask: &Tensor) -> HistorySoftmax {
        let h = self.heads;
        let (q, k, v) = (to_heads(&p.q.forward(hist), h), to_heads(&p.k.forward(hist), h), to_heads(&p.v.forward(hist), h));
        let scale = 1.0 / (q.size()[3] as f64).sqrt();
        let keys_on = hmask.view([hmask.size()[0], 1, 1, -1]);
        // The history's events against each other: [U, H, L, L].
        let s = (q.matmul(&k.transpose(-1, -2)) * scale).masked_fill(&keys_on.logical_not(), f64::NEG_INFINITY);
        let m = s.amax(-1, true);
        let max = m.where_self(&m.isfinite(), &m.zeros_like());
        let e = (&s - &max).exp();
        let (sum, acc) = (e.sum_dim_intlist(-1, true, e.kind()), e.matmul(&v));
        HistorySoftmax { q, k, v, max, sum, acc }
    }

    /// What the fused one-block encoder of `attnrec_kernels::encoder::encode_shared` reads from
    /// this attention, for distinct histories `hist: [U, L, D]` and the rows' `target: [B, D]`,
    /// in the layouts it reads, every tensor contiguous. `None` unless this is the
    /// Transformer's combination.
    pub(crate) fn shared_parts(&self, hist: &Tensor, hmask: &Tensor, target: &Tensor) -> Option<SharedParts> {
        let p = self.proj.as_ref().filter(|_| self.fused)?;
        let h = self.heads;
        let HistorySoftmax { q, k, v, max, sum, acc } = self.history_softmax(p, hist, hmask);
        // Each head's share of the output projection, `W_o,hᵀ`: [1, H, dh, D].
        let d = p.o.ws.size()[0];
        let wo = p.o.ws.tr().reshape([1, h, -1, d]);
        // [U, H, L, dh] → [U, H, dh, L].
        let per_head = |t: Tensor| t.transpose(2, 3).contiguous();
        let vt = to_heads(&p.v.forward(target), h);
        Some(SharedParts {
            heads: h,
            hist: [per_head(q), per_head(k), max.squeeze_dim(-1).contiguous(), sum.squeeze_dim(-1).contiguous(), acc.matmul(&wo).contiguous(), v.matmul(&wo).contiguous()],
            target: [p.q.forward(target).contiguous(), p.k.forward(target).contiguous(), vt.matmul(&wo).reshape([target.size()[0], -1]).contiguous()],
            bo: p.o.bs.as_ref()?.shallow_clone(),
        })
    }

    fn attend(&self, q: &Tensor, keys: &Tensor, values: &Tensor, mask: &Tensor, train: bool) -> (Tensor, Tensor) {
        let scores = self.score.forward_masked_t(q, keys, mask, train);
        let weights = self.align.forward(&scores, mask, q);
        self.context.apply(&weights, values, mask, train)
    }
}

/// See [`Attention::history_softmax`].
struct HistorySoftmax {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    max: Tensor,
    sum: Tensor,
    acc: Tensor,
}

/// See [`Attention::shared_parts`] and `attnrec_kernels::encoder::{Histories, Targets}`.
pub(crate) struct SharedParts {
    pub heads: i64,
    /// The history's `q`, `k` `[U, H, dh, L]`, `max`, `sum` `[U, H, L]`, and `acc`, `v` through
    /// each head's share of the output projection, `[U, H, L, D]`.
    pub hist: [Tensor; 6],
    /// The targets' `q`, `k` `[B, D]`, and `v` through each head's share of the output
    /// projection, `[B, H·D]`.
    pub target: [Tensor; 3],
    /// The output projection's bias `[D]`.
    pub bo: Tensor,
}

/// `[B, (T,) H·dh]` → `[B, H, (T,) dh]` as 4-d `[B, H, T, dh]` (T = 1 for a 2-d input).
fn to_heads(x: &Tensor, h: i64) -> Tensor {
    let x = if x.dim() == 2 { x.unsqueeze(1) } else { x.shallow_clone() };
    let (b, t) = (x.size()[0], x.size()[1]);
    x.view([b, t, h, -1]).transpose(1, 2)
}

/// `[B, (T,) H·dh]` → `[B·H, (T,) dh]`.
fn split_heads(x: &Tensor, h: i64) -> Tensor {
    let single = x.dim() == 2;
    let x4 = to_heads(x, h);
    let (b, t) = (x4.size()[0], x4.size()[2]);
    let flat = x4.reshape([b * h, t, -1]);
    if single {
        flat.squeeze_dim(1)
    } else {
        flat
    }
}

/// `[B·H, (T,) dh]` → `[B, (T,) H·dh]`.
fn merge_heads(x: &Tensor, b: i64, h: i64) -> Tensor {
    if x.dim() == 2 {
        x.view([b, -1])
    } else {
        let t = x.size()[1];
        x.view([b, h, t, -1]).transpose(1, 2).reshape([b, t, -1])
    }
}
