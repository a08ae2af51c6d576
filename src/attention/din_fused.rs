//! DIN's activation unit through the fused CPU kernel of `attnrec-kernels` (see its `din` module):
//! one pass per chunk of history positions, forward and backward, that skips padded positions.
//!
//! tch has no custom autograd functions, so the kernel joins the graph through the step's
//! [`Tape`](crate::nn::Tape):
//! 1. Forward: the kernel scores detached copies of `q` and the keys; the scores enter the graph as
//!    a leaf that requires grad, and what the backward pass needs is recorded on the tape (a
//!    [`Record`]).
//! 2. Backward (the tape's, [`Record::backward`]): given ∂L/∂scores from libtorch (the graph
//!    between the loss and the scores: the MLP and the pooling), the kernel's backward returns ∂L/∂q,
//!    ∂L/∂keys and the unit's parameter gradients, which the tape adds to the graph's last pass.
//!    The keys' embedding backward thus runs once, on the sum of both gradients.
//!
//! With DIN's own combination (one head, no normalization, soft context) the kernel also pools the
//! values ([`FusedDin::forward_pooled`]): the context is then the leaf, and the backward turns
//! ∂L/∂context into ∂L/∂scores and the values' gradient itself, so libtorch's masking and batched
//! products over `[B, L, D]` are gone from both passes.
//!
//! Used on CPU for `f32` with one query per row, when the unit is plain `act(linear(x))` layers
//! (ReLU, sigmoid or PReLU; no batch norm, dropout or Dice); anything else takes the libtorch path.
use crate::nn::kernel_io::{bytes, floats, floats_mut, output, threads};
use crate::nn::tape::{self, Node};
use crate::nn::{grad_enabled, Act, Mlp};
use attnrec_kernels::din;
use std::sync::{Arc, Mutex};
use tch::nn::Linear;
use tch::{Kind, Tensor};

/// What the backward pass of one forward pass with gradients needs.
pub(crate) struct Record {
    /// `q` and the keys in the graph, for injecting their gradients.
    q: Tensor,
    keys: Tensor,
    /// What the forward pass kept for the backward.
    run: Run,
    pooled: Option<Pooled>,
    /// Where `run.saved` goes back once used.
    spare: Arc<Mutex<Option<din::Saved>>>,
}

/// DIN's pooling done with the kernel ([`FusedDin::forward_pooled`]).
struct Pooled {
    /// The values in the graph (unless they are the keys) and their contiguous data.
    values: Option<Tensor>,
    vc: Tensor,
    /// The scores and the mask as the kernel saw them.
    scores: Tensor,
    mask: Tensor,
}

/// The unit's parameters in the graph: each layer's weight, bias and PReLU slope, then the output
/// layer's weight and bias.
struct GraphParams {
    layers: Vec<(Tensor, Option<Tensor>, Option<Tensor>)>,
    out: (Tensor, Option<Tensor>),
}

impl GraphParams {
    fn of(layers: &[(&Linear, &Act)], out: &Linear) -> GraphParams {
        let layers = layers
            .iter()
            .map(|(lin, act)| {
                let slope = match act {
                    Act::Prelu(s) => Some(s.shallow_clone()),
                    _ => None,
                };
                (lin.ws.shallow_clone(), lin.bs.as_ref().map(Tensor::shallow_clone), slope)
            })
            .collect();
        GraphParams { layers, out: (out.ws.shallow_clone(), out.bs.as_ref().map(Tensor::shallow_clone)) }
    }
}

/// The fused path of a `din_mlp` score. Its only state is a spare buffer for the kernel's saved
/// activations, reused from step to step.
#[derive(Debug)]
pub struct FusedDin {
    spare: Arc<Mutex<Option<din::Saved>>>,
}

/// The unit's parameters as the kernel reads them: detached contiguous views, kept alive while
/// the kernel's [`din::Unit`] borrows them.
struct Params {
    layers: Vec<(Tensor, Tensor, Option<Tensor>, din::Act)>,
    out_w: Tensor,
    out_b: f32,
}

impl Params {
    fn of(layers: &[(&Linear, &Act)], out: &Linear) -> Params {
        let data = |t: &Tensor| t.detach().contiguous();
        let layers = layers
            .iter()
            .map(|(lin, act)| {
                let b = lin.bs.as_ref().expect("the unit's layers have biases");
                let (kind, slope) = match act {
                    Act::Relu => (din::Act::Relu, None),
                    Act::Sigmoid => (din::Act::Sigmoid, None),
                    Act::Prelu(s) => (din::Act::Prelu, Some(data(s))),
                    Act::Dice(_) => unreachable!("Dice units take the libtorch path"),
                };
                (data(&lin.ws), data(b), slope, kind)
            })
            .collect();
        let out_b = out.bs.as_ref().map_or(0.0, |b| b.double_value(&[0]) as f32);
        Params { layers, out_w: data(&out.ws), out_b }
    }

    fn unit(&self, d: usize) -> din::Unit<'_> {
        // SAFETY: contiguous CPU f32 copies or views owned by `self`, not written during the step.
        unsafe {
            din::Unit {
                d,
                layers: self.layers.iter().map(|(w, b, s, act)| din::Layer { w: floats(w), b: floats(b), act: *act, slope: s.as_ref().map(|s| floats(s)) }).collect(),
                out_w: floats(&self.out_w),
                out_b: self.out_b,
            }
        }
    }
}

impl FusedDin {
    /// `Some` when `mlp` is a unit the kernel computes.
    pub fn new(mlp: &Mlp) -> Option<FusedDin> {
        mlp.plain_layers()?;
        crate::omp::install();
        Some(FusedDin { spare: Arc::new(Mutex::new(None)) })
    }

    /// Whether the kernel takes these inputs now (see [`tape::kernels_apply`]).
    /// (The unit itself was checked by [`Self::new`].)
    pub fn applies(&self, q: &Tensor, keys: &Tensor) -> bool {
        q.dim() == 2 && keys.dim() == 3 && [q, keys].into_iter().all(crate::nn::kernel_takes) && tape::kernels_apply()
    }

    /// Scores `[B, L]` of `keys: [B, L, D]` against `q: [B, D]` where `mask: [B, L]` is set (0
    /// elsewhere). With gradients, the scores are a leaf of the graph recorded on the tape.
    pub fn forward(&self, mlp: &Mlp, out: &Linear, q: &Tensor, keys: &Tensor, mask: &Tensor) -> Tensor {
        let (scores, _, run) = self.scores(mlp, out, q, keys, mask);
        match run {
            None => scores,
            Some(run) => self.record(run, q, keys, None, scores),
        }
    }

    /// DIN's target attention whole: the scores, unnormalized, pool `values: [B, L, Dv]` into the
    /// context `[B, Dv]`, in the kernel rather than as libtorch's masking and batched product,
    /// forward and backward. `same`: the values are the keys (one gradient to inject, not two).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_pooled(&self, mlp: &Mlp, out: &Linear, q: &Tensor, keys: &Tensor, values: &Tensor, same: bool, mask: &Tensor) -> Tensor {
        let (scores, mc, run) = self.scores(mlp, out, q, keys, mask);
        let vc = match &run {
            Some(r) if same => r.kc.shallow_clone(),
            _ => values.detach().contiguous(),
        };
        let (rows, len, dv) = (vc.size()[0], vc.size()[1], vc.size()[2]);
        let mut ctx = output(&[rows, dv]);
        // SAFETY: contiguous CPU tensors of the checked kinds and shapes, alive for the call; `ctx`
        // is fresh and not shared.
        unsafe { din::pool(floats(&scores), floats(&vc), bytes(&mc), rows as usize, len as usize, dv as usize, threads(), floats_mut(&mut ctx)) };
        let Some(run) = run else { return ctx };
        let pooled = Pooled { values: (!same).then(|| values.shallow_clone()), vc, scores, mask: mc };
        self.record(run, q, keys, Some(pooled), ctx)
    }

    /// Puts `leaf` (the scores, or the pooled context) in the graph and records its backward.
    fn record(&self, run: Run, q: &Tensor, keys: &Tensor, pooled: Option<Pooled>, leaf: Tensor) -> Tensor {
        let leaf = leaf.set_requires_grad(true);
        let rec = Record { q: q.shallow_clone(), keys: keys.shallow_clone(), run, pooled, spare: Arc::clone(&self.spare) };
        tape::push(Node::Kernel { leaf: leaf.shallow_clone(), backward: Box::new(move |g| rec.backward(g)) });
        leaf
    }

    /// The kernel's scores `[B, L]` and the mask as it read it (`u8`); with gradients, also what
    /// [`Record`] keeps of the run.
    fn scores(&self, mlp: &Mlp, out: &Linear, q: &Tensor, keys: &Tensor, mask: &Tensor) -> (Tensor, Tensor, Option<Run>) {
        let (rows, len, d) = (keys.size()[0], keys.size()[1], keys.size()[2]);
        let layers = mlp.plain_layers().expect("checked by FusedDin::new");
        let params = Params::of(&layers, out);
        let (qc, kc) = (q.detach().contiguous(), keys.detach().contiguous());
        let mc = mask.to_kind(Kind::Uint8).contiguous();
        let keep = grad_enabled();
        let mut saved = if keep { self.spare.lock().map(|mut s| s.take()).ok().flatten().unwrap_or_default() } else { din::Saved::default() };
        let mut scores = output(&[rows, len]);
        // SAFETY: contiguous CPU tensors of the checked kinds, alive for the call; `scores` is
        // fresh and not shared.
        unsafe {
            din::forward(&params.unit(d as usize), floats(&qc), floats(&kc), bytes(&mc), rows as usize, len as usize, threads(), floats_mut(&mut scores), keep.then_some(&mut saved));
        }
        let run = keep.then(|| Run { qc, kc, graph: GraphParams::of(&layers, out), params, saved });
        (scores, mc, run)
    }
}

/// What a forward pass with gradients hands to its [`Record`].
struct Run {
    qc: Tensor,
    kc: Tensor,
    graph: GraphParams,
    params: Params,
    saved: din::Saved,
}

impl Record {
    /// ∂L/∂leaf (the scores, or the pooled context) → every input's gradient: `q`, the keys, the
    /// values (when they are not the keys) and the unit's parameters.
    fn backward(self, g: &Tensor) -> Vec<(Tensor, Tensor)> {
        let g = g.contiguous();
        // With pooling, ∂L/∂context gives ∂L/∂scores (before the unit's backward) and the values'
        // own gradient (after it: added to the keys' when the values are the keys).
        let pool_shape = self.pooled.as_ref().map(|pl| (pl.vc.size()[0] as usize, pl.vc.size()[1] as usize, pl.vc.size()[2] as usize));
        let dscores = match (&self.pooled, pool_shape) {
            (Some(pl), Some((rows, len, dv))) => {
                let mut ds = output(&[rows as i64, len as i64]);
                // SAFETY: contiguous CPU f32 / u8 tensors kept from the forward pass, and the
                // gradient; `ds` is fresh and not shared.
                unsafe { din::pool_dscores(floats(&pl.vc), bytes(&pl.mask), rows, len, dv, floats(&g), threads(), floats_mut(&mut ds)) };
                ds
            }
            _ => g.shallow_clone(),
        };
        let d = self.run.kc.size()[2] as usize;
        let (mut dq, mut dkeys) = (output(&self.run.qc.size()), output(&self.run.kc.size()));
        let mut dvalues = None;
        // SAFETY: contiguous CPU f32 / u8 tensors kept from the forward pass, and the gradients;
        // `dq`, `dkeys` and `dvals` are fresh and not shared.
        let grads = unsafe {
            let grads = din::backward(&self.run.params.unit(d), &self.run.saved, floats(&self.run.qc), floats(&self.run.kc), floats(&dscores), threads(), floats_mut(&mut dq), floats_mut(&mut dkeys));
            match (&self.pooled, pool_shape) {
                (Some(pl), Some((rows, len, dv))) if pl.values.is_none() => {
                    din::pool_dvalues(floats(&pl.scores), bytes(&pl.mask), rows, len, dv, floats(&g), threads(), floats_mut(&mut dkeys), true);
                }
                (Some(pl), Some((rows, len, dv))) => {
                    let mut dvals = output(&pl.vc.size());
                    din::pool_dvalues(floats(&pl.scores), bytes(&pl.mask), rows, len, dv, floats(&g), threads(), floats_mut(&mut dvals), false);
                    dvalues = pl.values.as_ref().map(|v| (v.shallow_clone(), dvals));
                }
                _ => {}
            }
            grads
        };
        if let Ok(mut spare) = self.spare.lock() {
            *spare = Some(self.run.saved);
        }
        let mut out = vec![(self.q, dq), (self.keys, dkeys)];
        out.extend(dvalues);
        for ((w, b, slope), lg) in self.run.graph.layers.into_iter().zip(grads.layers) {
            out.push((w, Tensor::from_slice(&lg.w)));
            if let Some(b) = b {
                out.push((b, Tensor::from_slice(&lg.b)));
            }
            if let (Some(s), Some(ds)) = (slope, lg.slope) {
                out.push((s, Tensor::from_slice(&ds)));
            }
        }
        let (ow, ob) = self.run.graph.out;
        out.push((ow, Tensor::from_slice(&grads.out_w)));
        if let Some(b) = ob {
            out.push((b, Tensor::from_slice(&[grads.out_b])));
        }
        out
    }
}
