//! Gated recurrent units over masked histories: the cell of `torch.nn.GRU` (same equations, same
//! parameter layout), and DIEN's AUGRU (Zhou et al., AAAI 2019), whose update gate is scaled by an
//! attention weight per step.
//!
//! With `x_t` the input and `h` the state, both cells compute, per step,
//! `r = σ(W_ir x_t + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x_t + b_iz + W_hz h + b_hz)`,
//! `n = tanh(W_in x_t + b_in + r ⊙ (W_hn h + b_hn))`, and then
//! - GRU (torch's convention: `z` keeps the old state): `h' = (1 − z) ⊙ n + z ⊙ h`;
//! - AUGRU (the paper's and DeepCTR's convention: the gate admits the new state, scaled by the
//!   step's attention weight `a_t`): `u = a_t · z`, `h' = (1 − u) ⊙ h + u ⊙ n`.
//!
//! A masked step (a padded position) carries the state through unchanged, so a history's states
//! do not depend on how much padding surrounds it; the state starts at zero.
//!
//! On CPU in `f32`, while a [`super::Tape`] records or gradients are off, the recurrence runs
//! through the fused kernel of `attnrec-kernels` (its `gru` module: every step in one call,
//! forward and backward); elsewhere (CUDA, no tape, `train.fused = false`, export's tracing) as
//! libtorch operators. Both give the same states and gradients (tests/models.rs).
use super::kernel_io::{bytes, floats, floats_mut, kernel_takes, output, threads};
use super::tape::{self, Node};
use attnrec_kernels::gru as kernel;
use std::sync::{Arc, Mutex};
use tch::nn;
use tch::{Kind, Tensor};

/// Which update a [`Gru`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Gru,
    Augru,
}

/// One recurrent layer, batch first. Parameters, named as in `torch.nn.GRU` without its `_l0`:
/// `weight_ih [3H, D]`, `weight_hh [3H, H]`, `bias_ih [3H]`, `bias_hh [3H]`, gates in the order
/// reset, update, new; initialized as torch does, uniform in `±1/√H`.
#[derive(Debug)]
pub struct Gru {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    hidden: i64,
    cell: Cell,
    /// The fused kernel's saved gates, handed back by the backward pass for the next forward
    /// pass to reuse (a step's are ~26 MB at batch 1,024: fresh pages each step cost more).
    spare: Arc<Mutex<Option<kernel::Saved>>>,
}

impl Gru {
    pub fn new(p: nn::Path, input: i64, hidden: i64, cell: Cell) -> Gru {
        let k = 1.0 / (hidden as f64).sqrt();
        let init = nn::Init::Uniform { lo: -k, up: k };
        Gru {
            weight_ih: p.var("weight_ih", &[3 * hidden, input], init),
            weight_hh: p.var("weight_hh", &[3 * hidden, hidden], init),
            bias_ih: p.var("bias_ih", &[3 * hidden], init),
            bias_hh: p.var("bias_hh", &[3 * hidden], init),
            hidden,
            cell,
            spare: Arc::default(),
        }
    }

    pub fn hidden(&self) -> i64 {
        self.hidden
    }

    /// The state after every step, `[B, L, H]`, for `x: [B, L, D]` and `mask: [B, L]` bool (at a
    /// masked step: the state carried through it). `att: [B, L]` are the AUGRU's weights; a GRU
    /// takes none.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, att: Option<&Tensor>) -> Tensor {
        if let Some(states) = self.fused(x, mask, att) {
            return states;
        }
        let mut states = Vec::with_capacity(x.size()[1] as usize);
        let _ = self.run(x, mask, att, |h| states.push(h.shallow_clone()));
        match states.is_empty() {
            true => Tensor::zeros([x.size()[0], 0, self.hidden], (x.kind(), x.device())),
            false => Tensor::stack(&states, 1),
        }
    }

    /// The state after the last step, `[B, H]` (zeros for a row without a present step).
    pub fn last(&self, x: &Tensor, mask: &Tensor, att: Option<&Tensor>) -> Tensor {
        if let Some(states) = self.fused(x, mask, att) {
            return states.select(1, states.size()[1] - 1);
        }
        self.run(x, mask, att, |_| {})
    }

    /// Every step's state through the fused kernel, when it applies: the states enter the graph
    /// as a leaf, and the tape's backward turns their gradient into those of `x`, `W_ih`, `b_ih`,
    /// `W_hh`, `b_hh` and the attention weights. The kernel makes the input's share of the gates
    /// step by step itself, so that libtorch never holds a `[B, L, 3H]` tensor of it or of its
    /// gradient.
    fn fused(&self, x: &Tensor, mask: &Tensor, att: Option<&Tensor>) -> Option<Tensor> {
        let (b, l) = (x.size()[0], x.size()[1]);
        if !tape::kernels_apply() || !kernel_takes(x) || l == 0 {
            return None;
        }
        assert_eq!(att.is_some(), self.cell == Cell::Augru, "an AUGRU takes attention weights and a GRU none");
        let hd = self.hidden;
        let xd = x.detach().contiguous();
        let [w_ih, b_ih, w_hh, b_hh] = [&self.weight_ih, &self.bias_ih, &self.weight_hh, &self.bias_hh].map(|t| t.detach().contiguous());
        let keep = mask.to_kind(Kind::Uint8).contiguous();
        let a = att.map(|a| a.detach().to_kind(Kind::Float).contiguous());
        let shape = kernel::Shape { rows: b as usize, len: l as usize, input: x.size()[2] as usize, hidden: hd as usize };
        let mut states = output(&[b, l, hd]);
        let record = tape::recording();
        let mut saved = record.then(|| self.spare.lock().ok().and_then(|mut s| s.take()).unwrap_or_default());
        // SAFETY: every tensor read is a contiguous CPU tensor of the kind read, alive and unwritten
        // for the call; `states` comes from `output` and is not shared yet.
        unsafe {
            let weights = kernel::Weights { w_ih: floats(&w_ih), b_ih: floats(&b_ih), w_hh: floats(&w_hh), b_hh: floats(&b_hh) };
            kernel::forward(shape, floats(&xd), weights, bytes(&keep), a.as_ref().map(|a| floats(a)), threads(), floats_mut(&mut states), saved.as_mut());
        }
        let Some(mut saved) = saved else { return Some(states) };
        let leaf = states.set_requires_grad(true);
        let graph = [x, &self.weight_ih, &self.bias_ih, &self.weight_hh, &self.bias_hh].map(Tensor::shallow_clone);
        let att_graph = att.map(Tensor::shallow_clone);
        let spare = Arc::clone(&self.spare);
        tape::push(Node::Kernel {
            leaf: leaf.shallow_clone(),
            backward: Box::new(move |g: &Tensor| {
                let g = g.to_kind(Kind::Float).contiguous();
                let mut dx = output(&xd.size());
                // SAFETY: as in the forward pass; `dx` comes from `output`. (What the kernel needs of
                // the forward pass, the states included, is in `saved`.)
                let grads = unsafe {
                    let weights = kernel::Weights { w_ih: floats(&w_ih), b_ih: floats(&b_ih), w_hh: floats(&w_hh), b_hh: floats(&b_hh) };
                    kernel::backward(shape, weights, bytes(&keep), a.as_ref().map(|a| floats(a)), &mut saved, floats(&g), threads(), floats_mut(&mut dx))
                };
                let [x, w_ih, b_ih, w_hh, b_hh] = graph;
                let mut out = vec![
                    (x, dx),
                    (w_ih, Tensor::from_slice(&grads.w_ih).view([3 * hd, -1])),
                    (b_ih, Tensor::from_slice(&grads.b_ih)),
                    (w_hh, Tensor::from_slice(&grads.w_hh).view([3 * hd, hd])),
                    (b_hh, Tensor::from_slice(&grads.b_hh)),
                ];
                if let (Some(x), Some(d)) = (att_graph, grads.att) {
                    out.push((x, Tensor::from_slice(&d).view([b, l])));
                }
                if let Ok(mut s) = spare.lock() {
                    *s = Some(saved);
                }
                out
            }),
        });
        Some(leaf)
    }

    fn run(&self, x: &Tensor, mask: &Tensor, att: Option<&Tensor>, mut each: impl FnMut(&Tensor)) -> Tensor {
        assert_eq!(att.is_some(), self.cell == Cell::Augru, "an AUGRU takes attention weights and a GRU none");
        let b = x.size()[0];
        let hd = self.hidden;
        // The input's share of every gate, for all steps at once, then one view per step:
        // `unbind`'s backward is one stack, where a `select` per step would each zero a whole
        // [B, L, 3H] gradient (quadratic in L).
        let gi = (x.matmul(&self.weight_ih.tr()) + &self.bias_ih).unbind(1);
        let keep = mask.unsqueeze(-1).unbind(1);
        let att = att.map(|a| a.to_kind(x.kind()).unsqueeze(-1).unbind(1));
        let w_hh = self.weight_hh.tr();
        let mut h = Tensor::zeros([b, hd], (x.kind(), x.device()));
        for (t, gi_t) in gi.iter().enumerate() {
            let gh = self.bias_hh.addmm(&h, &w_hh);
            let (i, g) = (gi_t.split(hd, 1), gh.split(hd, 1));
            let r = (&i[0] + &g[0]).sigmoid();
            let z = (&i[1] + &g[1]).sigmoid();
            let n = (&i[2] + r * &g[2]).tanh();
            let next = match &att {
                None => &n + z * (&h - &n),
                Some(a) => &h + (&a[t] * z) * (n - &h),
            };
            h = next.where_self(&keep[t], &h);
            each(&h);
        }
        h
    }
}
