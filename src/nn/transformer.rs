//! The Transformer encoder block (Vaswani et al. 2017) as BST uses it (Chen et al. 2019): post-norm
//! residual multi-head self-attention and a position-wise feed-forward network, with dropout.
//! One block equals `torch.nn.TransformerEncoderLayer(norm_first=False, batch_first=True)`.
use crate::attention::{Attention, AttentionConfig};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FfnActivation {
    Relu,
    /// BST's choice (slope 0.01).
    #[default]
    LeakyRelu,
    Gelu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransformerConfig {
    pub blocks: i64,
    pub heads: i64,
    /// Feed-forward width; default 4 × the model width.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ffn_dim: Option<i64>,
    pub ffn_activation: FfnActivation,
    /// Dropout after attention, inside the feed-forward network and after it.
    pub dropout: f64,
    /// Learned embeddings of each event's recency (0 = the target, 1 = the most recent event, …).
    pub positions: bool,
}

impl Default for TransformerConfig {
    /// BST's one block, but 2 heads instead of its 8: with 16-wide embeddings an item is 32 wide,
    /// and 8 heads leave 4 dimensions each. On the synthetic `small` preset (seed 42, 2026-11-25)
    /// BST with 2 heads reached test AUC 0.8159 at 3,026 samples/s; with 8 heads 0.7716 at 2,003.
    fn default() -> Self {
        TransformerConfig { blocks: 1, heads: 2, ffn_dim: None, ffn_activation: FfnActivation::LeakyRelu, dropout: 0.1, positions: true }
    }
}

impl TransformerConfig {
    /// Whether scoring (evaluation mode, CPU `f32`) runs a BST encoder of this config through
    /// the fused kernel ([`Encoder::readout_shared_history`]): one block, ReLU or LeakyReLU.
    pub fn scores_fused(&self) -> bool {
        self.blocks == 1 && self.ffn_activation != FfnActivation::Gelu
    }

    fn validate(&self, d: i64) -> Result<()> {
        if self.blocks < 1 {
            return Err(Error::config(format!("transformer.blocks must be at least 1, got {}", self.blocks)));
        }
        if self.heads < 1 || d % self.heads != 0 {
            return Err(Error::config(format!("transformer.heads ({}) must divide the item width ({d}: 2 × embed_dim)", self.heads)));
        }
        if matches!(self.ffn_dim, Some(f) if f < 1) {
            return Err(Error::config("transformer.ffn_dim must be positive"));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config(format!("transformer.dropout must be in [0, 1), got {}", self.dropout)));
        }
        Ok(())
    }
}

/// The layer norms' ε (PyTorch's default).
const LN_EPS: f64 = 1e-5;

#[derive(Debug)]
pub struct TransformerBlock {
    attn: Attention,
    norm1: nn::LayerNorm,
    ff1: nn::Linear,
    ff2: nn::Linear,
    norm2: nn::LayerNorm,
    act: FfnActivation,
    dropout: f64,
}

impl TransformerBlock {
    pub fn new(p: nn::Path, cfg: &TransformerConfig, d: i64) -> Result<Self> {
        cfg.validate(d)?;
        let attn_cfg = AttentionConfig { heads: cfg.heads, dim: Some(d), ..AttentionConfig::preset("transformer")? };
        let ffn = cfg.ffn_dim.unwrap_or(4 * d);
        let ln = nn::LayerNormConfig { eps: LN_EPS, ..Default::default() };
        Ok(TransformerBlock {
            attn: Attention::new(&p / "attn", &attn_cfg, d, d, d)?,
            norm1: nn::layer_norm(&p / "norm1", vec![d], ln),
            ff1: nn::linear(&p / "ff1", d, ffn, Default::default()),
            ff2: nn::linear(&p / "ff2", ffn, d, Default::default()),
            norm2: nn::layer_norm(&p / "norm2", vec![d], ln),
            act: cfg.ffn_activation,
            dropout: cfg.dropout,
        })
    }

    /// `x: [B, T, D]`, `mask: [B, T]` bool (keys that may be attended to) → `[B, T, D]`.
    pub fn forward_t(&self, x: &Tensor, mask: &Tensor, train: bool) -> Tensor {
        let a = super::dropout(&self.attn.context_t(x, x, x, mask, train), self.dropout, train);
        if let Some(y) = self.fused_tail(x, &a, train) {
            return y;
        }
        let x = self.norm1.forward(&(x + a));
        let h = self.activate(&self.ff1.forward(&x));
        let f = super::dropout(&self.ff2.forward(&super::dropout(&h, self.dropout, train)), self.dropout, train);
        self.norm2.forward(&(x + f))
    }

    /// Everything after the attention, `LN₂(x₁ + FFN(x₁))` with `x₁ = LN₁(x + a)`, through the
    /// fused kernel (`attnrec_kernels::encoder`): in evaluation mode without gradients, on CPU
    /// `f32`, with a ReLU or LeakyReLU feed-forward. `None` where it does not apply.
    fn fused_tail(&self, x: &Tensor, a: &Tensor, train: bool) -> Option<Tensor> {
        use super::kernel_io::{floats, floats_mut, kernel_takes, output, threads};
        use attnrec_kernels::encoder::tail;
        let t = self.tail_params(train)?;
        if !kernel_takes(x) || !kernel_takes(a) || x.size() != a.size() {
            return None;
        }
        let size = x.size();
        let d = *size.last()?;
        let n = (x.numel() as i64 / d.max(1)) as usize;
        let (x, a) = (x.contiguous(), a.contiguous());
        let mut out = output(&size);
        // SAFETY: contiguous CPU f32 tensors (checked above or made so), read only while the
        // kernel runs; `out` is fresh and not shared.
        unsafe { tail(&t.kernel(d as usize), floats(&x), floats(&a), n, threads(), floats_mut(&mut out)) };
        Some(out)
    }

    /// [`Self::forward_t`] in evaluation mode over `[hist[group[r]]…, target[r]]` (the target
    /// always present), with the attention's history part computed once per distinct history
    /// ([`Attention::context_shared_history`]): `hist: [U, L, D]`, `hmask: [U, L]`, `target:
    /// [B, D]`, `group: [B]` → `[B, L + 1, D]`.
    fn forward_shared(&self, hist: &Tensor, hmask: &Tensor, target: &Tensor, group: &Tensor) -> Option<Tensor> {
        let a = self.attn.context_shared_history(hist, hmask, target, group)?;
        let seq = Tensor::cat(&[hist.index_select(0, group), target.unsqueeze(1)], 1);
        if let Some(y) = self.fused_tail(&seq, &a, false) {
            return Some(y);
        }
        let x = self.norm1.forward(&(seq + a));
        Some(self.norm2.forward(&(&x + self.ff2.forward(&self.activate(&self.ff1.forward(&x))))))
    }

    /// The fused kernel's parameters of the position-wise tail, when it takes this block now
    /// (evaluation mode without gradients, CPU `f32`, ReLU or LeakyReLU, affine norms, biases).
    fn tail_params(&self, train: bool) -> Option<TailParams> {
        use super::kernel_io::kernel_takes;
        use attnrec_kernels::encoder::Act;
        let act = match self.act {
            FfnActivation::Relu => Act::Relu,
            FfnActivation::LeakyRelu => Act::LeakyRelu(0.01),
            FfnActivation::Gelu => return None,
        };
        if train || super::grad_enabled() || !super::tape::kernels_apply() {
            return None;
        }
        let t = TailParams {
            act,
            w1: self.ff1.ws.shallow_clone(),
            b1: self.ff1.bs.as_ref()?.shallow_clone(),
            w2: self.ff2.ws.shallow_clone(),
            b2: self.ff2.bs.as_ref()?.shallow_clone(),
            norm1: [self.norm1.ws.as_ref()?.shallow_clone(), self.norm1.bs.as_ref()?.shallow_clone()],
            norm2: [self.norm2.ws.as_ref()?.shallow_clone(), self.norm2.bs.as_ref()?.shallow_clone()],
        };
        let all = [&t.w1, &t.b1, &t.w2, &t.b2, &t.norm1[0], &t.norm1[1], &t.norm2[0], &t.norm2[1]];
        all.iter().all(|p| kernel_takes(p) && p.is_contiguous()).then_some(t)
    }

    /// A one-block encoder's output at the target and the mean of its outputs over the
    /// history's events, `[B, 2D]`, through the fused kernel
    /// (`attnrec_kernels::encoder::encode_shared`), for rows that share histories: `hist:
    /// [U, L, D]` (positions added), `hmask: [U, L]`, `target: [B, D]` (position added), `group:
    /// [B]`. `None` where the kernel does not apply.
    fn encode_shared(&self, hist: &Tensor, hmask: &Tensor, target: &Tensor, group: &Tensor) -> Option<Tensor> {
        use super::kernel_io::{bytes, floats, floats_mut, kernel_takes, output, threads};
        use attnrec_kernels::encoder::{encode_shared, Block, Histories, Targets};
        let t = self.tail_params(false)?;
        if !kernel_takes(hist) || !kernel_takes(target) {
            return None;
        }
        let parts = self.attn.shared_parts(hist, hmask, target)?;
        if !(kernel_takes(&parts.bo) && parts.bo.is_contiguous()) {
            return None;
        }
        let (u, len, d) = (hist.size()[0], hist.size()[1], hist.size()[2]);
        let n = target.size()[0];
        let (hist, target) = (hist.contiguous(), target.contiguous());
        let mask = hmask.to_kind(tch::Kind::Uint8).contiguous();
        let group: Vec<usize> = Vec::<i64>::try_from(&group.to_kind(tch::Kind::Int64)).ok()?.into_iter().map(|g| g as usize).collect();
        if group.len() != n as usize || group.iter().any(|&g| g >= u as usize) {
            return None;
        }
        let mut out = output(&[n, 2 * d]);
        let [q, k, max, sum, acc_o, v_o] = &parts.hist;
        let [tq, tk, tv_o] = &parts.target;
        // SAFETY: contiguous CPU tensors of the kinds read (checked above or made so), read only
        // while the kernel runs; `out` is fresh and not shared.
        unsafe {
            let block = Block { heads: parts.heads as usize, bo: floats(&parts.bo), tail: t.kernel(d as usize) };
            let hist = Histories {
                len: len as usize,
                x: floats(&hist),
                mask: bytes(&mask),
                q: floats(q),
                k: floats(k),
                max: floats(max),
                sum: floats(sum),
                acc_o: floats(acc_o),
                v_o: floats(v_o),
            };
            let rows = Targets { group: &group, x: floats(&target), q: floats(tq), k: floats(tk), v_o: floats(tv_o) };
            encode_shared(&block, &hist, &rows, threads(), floats_mut(&mut out));
        }
        Some(out)
    }

    fn activate(&self, h: &Tensor) -> Tensor {
        match self.act {
            FfnActivation::Relu => h.relu(),
            FfnActivation::LeakyRelu => h.leaky_relu(),
            FfnActivation::Gelu => h.gelu("none"),
        }
    }

    /// The self-attention weights `[B, H, T, T]` (evaluation mode).
    pub fn weights(&self, x: &Tensor, mask: &Tensor) -> Tensor {
        let w = self.attn.forward_t(x, x, x, mask, false).1;
        if w.dim() == 3 {
            w.unsqueeze(1)
        } else {
            w
        }
    }
}

/// The position-wise tail's parameters, for the fused kernel (see
/// [`TransformerBlock::tail_params`]).
struct TailParams {
    act: attnrec_kernels::encoder::Act,
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
    norm1: [Tensor; 2],
    norm2: [Tensor; 2],
}

impl TailParams {
    /// The parameters as the kernel reads them, for a model width `d`.
    ///
    /// # Safety
    /// As for [`super::kernel_io::floats`]: no one writes the parameters while the result lives.
    unsafe fn kernel(&self, d: usize) -> attnrec_kernels::encoder::Tail<'_> {
        use super::kernel_io::floats;
        use attnrec_kernels::encoder::{Norm, Tail};
        unsafe fn norm(p: &[Tensor; 2]) -> Norm<'_> {
            Norm { weight: floats(&p[0]), bias: floats(&p[1]), eps: LN_EPS as f32 }
        }
        Tail {
            d,
            f: self.w1.size()[0] as usize,
            norm1: norm(&self.norm1),
            w1: floats(&self.w1),
            b1: floats(&self.b1),
            w2: floats(&self.w2),
            b2: floats(&self.b2),
            act: self.act,
            norm2: norm(&self.norm2),
        }
    }
}

/// Recency position embeddings plus a stack of blocks.
#[derive(Debug)]
pub struct Encoder {
    positions: Option<nn::Embedding>,
    blocks: Vec<TransformerBlock>,
}

impl Encoder {
    /// `max_position`: the largest recency index the input can hold.
    pub fn new(p: nn::Path, cfg: &TransformerConfig, d: i64, max_position: i64) -> Result<Self> {
        let positions = cfg.positions.then(|| {
            let init = nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.01 }, ..Default::default() };
            nn::embedding(&p / "positions", max_position + 1, d, init)
        });
        let blocks = (0..cfg.blocks).map(|i| TransformerBlock::new(&p / format!("block{i}"), cfg, d)).collect::<Result<_>>()?;
        Ok(Encoder { positions, blocks })
    }

    /// The embedding tables (the positions, when the encoder has them), for the trainer.
    pub fn embedding_tables(&self) -> Vec<Tensor> {
        self.positions.iter().map(|e| e.ws.shallow_clone()).collect()
    }

    /// The position index of each history event: its recency + 1 (1 = the most recent, leaving
    /// 0 for a target placed after the history); 0 at padding, which is masked anyway.
    pub fn history_positions(mask: &Tensor) -> Tensor {
        (crate::attention::align::recency(mask) + 1) * mask.to_kind(tch::Kind::Int64)
    }

    fn embed(&self, x: &Tensor, position: &Tensor) -> Tensor {
        match &self.positions {
            Some(e) => x + super::lookup::embed(e, None, position),
            None => x.shallow_clone(),
        }
    }

    /// `x: [B, T, D]`, `mask: [B, T]`, `position: [B, T]` i64 → `[B, T, D]`.
    pub fn forward_t(&self, x: &Tensor, mask: &Tensor, position: &Tensor, train: bool) -> Tensor {
        let mut h = self.embed(x, position);
        for block in &self.blocks {
            h = block.forward_t(&h, mask, train);
        }
        h
    }

    /// [`Self::forward_t`] in evaluation mode over `[history…, target]` for rows whose histories
    /// repeat: `hist: [U, L, D]` the distinct histories, `hmask: [U, L]`, `target: [B, D]` (at
    /// position 0), `group: [B]` i64 (each row's history) → `[B, L + 1, D]`. The first block
    /// attends within each distinct history once (see [`TransformerBlock`]'s shared path); the
    /// blocks after it see every row's own sequence. Equal to the plain pass up to float rounding.
    pub fn forward_shared_history(&self, hist: &Tensor, hmask: &Tensor, target: &Tensor, group: &Tensor) -> Tensor {
        let hist = self.embed(hist, &Self::history_positions(hmask));
        let target = self.embed(&target.unsqueeze(1), &Tensor::zeros([target.size()[0], 1], (tch::Kind::Int64, target.device()))).squeeze_dim(1);
        let (first, rest) = self.blocks.split_first().expect("at least one block");
        let mask = || Tensor::cat(&[hmask.index_select(0, group), Tensor::ones([target.size()[0], 1], (tch::Kind::Bool, target.device()))], 1);
        let mut h = match first.forward_shared(&hist, hmask, &target, group) {
            Some(h) => h,
            None => first.forward_t(&Tensor::cat(&[hist.index_select(0, group), target.unsqueeze(1)], 1), &mask(), false),
        };
        if !rest.is_empty() {
            let mask = mask();
            for block in rest {
                h = block.forward_t(&h, &mask, false);
            }
        }
        h
    }

    /// For a one-block encoder in evaluation mode without gradients, over `[history…, target]`
    /// for rows whose histories repeat (arguments as for [`Self::forward_shared_history`]): the
    /// output at the target and the mean of the outputs over the history's events (zeros for an
    /// empty history), `[B, 2D]`, through the fused kernel. `None` where it does not apply.
    pub fn readout_shared_history(&self, hist: &Tensor, hmask: &Tensor, target: &Tensor, group: &Tensor) -> Option<Tensor> {
        let [block] = self.blocks.as_slice() else { return None };
        let hist = self.embed(hist, &Self::history_positions(hmask));
        let target = self.embed(&target.unsqueeze(1), &Tensor::zeros([target.size()[0], 1], (tch::Kind::Int64, target.device()))).squeeze_dim(1);
        block.encode_shared(&hist, hmask, &target, group)
    }

    /// The last block's self-attention weights `[B, H, T, T]` (evaluation mode).
    pub fn last_weights(&self, x: &Tensor, mask: &Tensor, position: &Tensor) -> Tensor {
        let mut h = self.embed(x, position);
        let (last, rest) = self.blocks.split_last().expect("at least one block");
        for block in rest {
            h = block.forward_t(&h, mask, false);
        }
        last.weights(&h, mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// The shared-history pass equals the plain pass over every row's own `[history…, target]`
    /// sequence: histories repeated across rows, partly padded and empty, 1 and 2 blocks, 1 and 4
    /// heads, with and without positions.
    #[test]
    fn shared_history_pass_equals_the_plain_pass() {
        let (d, l) = (8, 5);
        for (blocks, heads, positions) in [(1, 2, true), (2, 4, true), (1, 1, false)] {
            tch::manual_seed(7);
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = TransformerConfig { blocks, heads, positions, ..Default::default() };
            let enc = Encoder::new(vs.root() / "enc", &cfg, d, l).unwrap();
            // Three distinct histories: full, two events, none.
            let hist = Tensor::randn([3, l, d], (Kind::Float, Device::Cpu));
            let hmask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0]).view([3, l]).to_kind(Kind::Bool);
            let group = Tensor::from_slice(&[0i64, 0, 0, 1, 2, 2, 0]);
            let target = Tensor::randn([7, d], (Kind::Float, Device::Cpu)) * 2.0;
            let shared = tch::no_grad(|| enc.forward_shared_history(&hist, &hmask, &target, &group));
            let seq = Tensor::cat(&[hist.index_select(0, &group), target.unsqueeze(1)], 1);
            let mask = Tensor::cat(&[hmask.index_select(0, &group), Tensor::ones([7, 1], (Kind::Bool, Device::Cpu))], 1);
            let hist_pos = Encoder::history_positions(&hmask.index_select(0, &group));
            let position = Tensor::cat(&[hist_pos, Tensor::zeros([7, 1], (Kind::Int64, Device::Cpu))], 1);
            let plain = tch::no_grad(|| enc.forward_t(&seq, &mask, &position, false));
            assert_eq!(shared.size(), plain.size());
            let diff = (&shared - &plain).abs().max().double_value(&[]);
            assert!(diff < 2e-6, "{blocks} blocks, {heads} heads, positions {positions}: differs by {diff}");
        }
    }

    /// The fused tail (evaluation, no gradients) gives libtorch's block output to 1e-5, for each
    /// activation the kernel takes, with every parameter (the norms' too) drawn at random, on a
    /// batch with padding; GELU, which it does not take, falls back to libtorch.
    #[test]
    fn fused_tail_equals_libtorchs_block() {
        let (b, t, d) = (5, 9, 16);
        for act in [FfnActivation::LeakyRelu, FfnActivation::Relu, FfnActivation::Gelu] {
            tch::manual_seed(3);
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = TransformerConfig { heads: 2, ffn_activation: act, ffn_dim: Some(24), ..Default::default() };
            let block = TransformerBlock::new(vs.root() / "block", &cfg, d).unwrap();
            tch::no_grad(|| {
                for (_, v) in vs.variables() {
                    let _ = v.shallow_clone().copy_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.5));
                }
            });
            let x = Tensor::randn([b, t, d], (Kind::Float, Device::Cpu));
            let mask = Tensor::rand([b, t], (Kind::Float, Device::Cpu)).gt(0.3);
            let a = tch::no_grad(|| block.attn.context_t(&x, &x, &x, &mask, false));
            let fused = tch::no_grad(|| block.fused_tail(&x, &a, false));
            assert_eq!(fused.is_some(), act != FfnActivation::Gelu, "{act:?}");
            let plain = tch::no_grad(|| crate::nn::with_fused(false, || block.forward_t(&x, &mask, false)));
            let whole = tch::no_grad(|| block.forward_t(&x, &mask, false));
            let diff = (&whole - &plain).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{act:?}: the block's output differs by {diff}");
            if let Some(f) = fused {
                assert_eq!(f.size(), vec![b, t, d]);
                assert!(f.allclose(&whole, 0.0, 0.0, false), "{act:?}: the block does not use the kernel's output");
            }
        }
    }

    /// The fused one-block readout for shared histories equals libtorch's plain pass over every
    /// row's own `[history…, target]`, read out as BST does (the output at the target, the mean
    /// over the history's events), to 1e-5: every parameter drawn at random (the norms' too),
    /// histories full, partly padded and empty, 1, 2 and 4 heads, ReLU and LeakyReLU. Two
    /// blocks and GELU take the other paths.
    #[test]
    fn fused_shared_readout_equals_the_plain_pass() {
        let (d, l) = (16, 6);
        for (blocks, heads, act) in [(1, 2, FfnActivation::LeakyRelu), (1, 4, FfnActivation::Relu), (1, 1, FfnActivation::LeakyRelu), (2, 2, FfnActivation::LeakyRelu), (1, 2, FfnActivation::Gelu)] {
            tch::manual_seed(11);
            let vs = nn::VarStore::new(Device::Cpu);
            let cfg = TransformerConfig { blocks, heads, ffn_activation: act, ..Default::default() };
            let enc = Encoder::new(vs.root() / "enc", &cfg, d, l).unwrap();
            tch::no_grad(|| {
                for (_, v) in vs.variables() {
                    let _ = v.shallow_clone().copy_(&(Tensor::randn(v.size(), (Kind::Float, Device::Cpu)) * 0.5));
                }
            });
            let hist = Tensor::randn([3, l, d], (Kind::Float, Device::Cpu));
            let hmask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]).view([3, l]).to_kind(Kind::Bool);
            let group = Tensor::from_slice(&[0i64, 0, 1, 2, 2, 0, 1, 1]);
            let n = group.size()[0];
            let target = Tensor::randn([n, d], (Kind::Float, Device::Cpu));
            let fused = tch::no_grad(|| enc.readout_shared_history(&hist, &hmask, &target, &group));
            assert_eq!(fused.is_some(), blocks == 1 && act != FfnActivation::Gelu, "{blocks} blocks, {act:?}");
            let Some(fused) = fused else { continue };
            let seq = Tensor::cat(&[hist.index_select(0, &group), target.unsqueeze(1)], 1);
            let rmask = hmask.index_select(0, &group);
            let mask = Tensor::cat(&[&rmask, &Tensor::ones([n, 1], (Kind::Bool, Device::Cpu))], 1);
            let position = Tensor::cat(&[Encoder::history_positions(&rmask), Tensor::zeros([n, 1], (Kind::Int64, Device::Cpu))], 1);
            let h = tch::no_grad(|| crate::nn::with_fused(false, || enc.forward_t(&seq, &mask, &position, false)));
            let want = Tensor::cat(&[h.select(1, l), crate::models::base::masked_mean(&h.narrow(1, 0, l), &rmask.to_kind(Kind::Float))], -1);
            assert_eq!(fused.size(), want.size());
            let diff = (&fused - &want).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{heads} heads, {act:?}: differs by {diff}");
        }
    }
}
