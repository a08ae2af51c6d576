//! DIN's activation unit through the fused CPU kernel of `attnrec-kernels` (see its `din` module):
//! one pass per chunk of history positions, forward and backward, that skips padded positions.
//!
//! libtorch has no custom autograd functions in tch, so the kernel joins the graph in two steps:
//! 1. Forward: the kernel scores detached copies of `q` and the keys; the scores enter the graph as
//!    a leaf that requires grad, and what the backward pass needs is kept ([`FusedDin`]'s pending
//!    record).
//! 2. Backward ([`FusedDin::backward`], called by the model's `backward`): libtorch computes
//!    ∂L/∂scores alone (the graph between the loss and the scores: the MLP and the pooling), the
//!    kernel's backward turns it into ∂L/∂q, ∂L/∂keys and the unit's parameter gradients, and one
//!    libtorch pass over `L + Σ x ⊙ c(∂L/∂x)` (`c`: a constant; `x` = `q`, the keys and each
//!    parameter of the unit), whose gradient is exactly ∂L/∂x for each `x`, does the rest. The
//!    keys' embedding backward thus runs once, on the sum of both gradients.
//!
//! With DIN's own combination (one head, no normalization, soft context) the kernel also pools the
//! values ([`FusedDin::forward_pooled`]): the context is then the leaf, and the backward turns
//! ∂L/∂context into ∂L/∂scores and the values' gradient itself, so libtorch's masking and batched
//! products over `[B, L, D]` are gone from both passes.
//!
//! Used on CPU for `f32` with one query per row, when the unit is plain `act(linear(x))` layers
//! (ReLU, sigmoid or PReLU; no batch norm, dropout or Dice); anything else takes the libtorch path.
use crate::nn::{grad_enabled, Act, Mlp};
use attnrec_kernels::din;
use std::cell::{Cell, RefCell};
use tch::nn::Linear;
use tch::{Device, Kind, Tensor};

/// What the backward pass needs from the last forward pass with gradients enabled.
struct Pending {
    /// `q` and the keys in the graph, for injecting their gradients.
    q: Tensor,
    keys: Tensor,
    /// Their contiguous detached data, read by the kernel.
    qc: Tensor,
    kc: Tensor,
    /// The kernel's output as a leaf of the graph: the scores, or with pooling the context.
    leaf: Tensor,
    pooled: Option<Pooled>,
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

/// The fused path of a `din_mlp` score.
pub struct FusedDin {
    enabled: Cell<bool>,
    pending: RefCell<Option<Pending>>,
    /// The kernel's saved activations, reused from step to step.
    saved: RefCell<din::Saved>,
}

impl std::fmt::Debug for FusedDin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FusedDin").field("enabled", &self.enabled.get()).field("pending", &self.pending.borrow().is_some()).finish()
    }
}

/// A contiguous CPU tensor's elements as `T`s.
///
/// # Safety
/// `t` must be a contiguous CPU tensor of `kind`, whose elements are `T`s, that no one writes
/// while the slice lives.
unsafe fn elements<T>(t: &Tensor, kind: Kind) -> &[T] {
    debug_assert!(t.kind() == kind && t.is_contiguous() && t.device() == Device::Cpu);
    let n = t.numel();
    if n == 0 {
        return &[];
    }
    std::slice::from_raw_parts(t.data_ptr() as *const T, n)
}

/// # Safety
/// As for [`elements`], of a `Float` tensor.
unsafe fn floats(t: &Tensor) -> &[f32] {
    elements(t, Kind::Float)
}

/// # Safety
/// As for [`elements`], of a `Uint8` tensor.
unsafe fn bytes(t: &Tensor) -> &[u8] {
    elements(t, Kind::Uint8)
}

/// A fresh contiguous CPU `f32` tensor of `shape` (uninitialized) and its elements, for the
/// kernel to fill.
///
/// # Safety
/// The slice must not outlive the tensor, nor be used once the tensor is read or shared.
unsafe fn output(shape: &[i64]) -> (Tensor, &'static mut [f32]) {
    let t = Tensor::empty(shape, (Kind::Float, Device::Cpu));
    let n = t.numel();
    if n == 0 {
        return (t, &mut []);
    }
    let s = std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n);
    (t, s)
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

fn threads() -> usize {
    tch::get_num_threads().max(1) as usize
}

impl FusedDin {
    /// `Some` when `mlp` is a unit the kernel computes.
    pub fn new(mlp: &Mlp) -> Option<FusedDin> {
        mlp.plain_layers()?;
        crate::omp::install();
        Some(FusedDin { enabled: Cell::new(true), pending: RefCell::new(None), saved: RefCell::new(din::Saved::default()) })
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.set(on);
        if !on {
            self.pending.borrow_mut().take();
        }
    }

    /// Whether the last forward pass with gradients awaits [`Self::backward`].
    pub fn pending(&self) -> bool {
        self.pending.borrow().is_some()
    }

    /// Whether the kernel takes these inputs.
    /// (The unit itself was checked by [`Self::new`].)
    pub fn applies(&self, q: &Tensor, keys: &Tensor) -> bool {
        self.enabled.get() && q.dim() == 2 && keys.dim() == 3 && [q, keys].iter().all(|t| t.device() == Device::Cpu && t.kind() == Kind::Float)
    }

    /// Scores `[B, L]` of `keys: [B, L, D]` against `q: [B, D]` where `mask: [B, L]` is set (0
    /// elsewhere). With gradients enabled, the scores are a leaf of the graph and the step must end
    /// with the model's `backward`, which calls [`Self::backward`].
    pub fn forward(&self, mlp: &Mlp, out: &Linear, q: &Tensor, keys: &Tensor, mask: &Tensor) -> Tensor {
        let (scores, qc, kc, _) = self.scores(mlp, out, q, keys, mask);
        if !grad_enabled() {
            return scores;
        }
        let scores = scores.set_requires_grad(true);
        *self.pending.borrow_mut() = Some(Pending { q: q.shallow_clone(), keys: keys.shallow_clone(), qc, kc, leaf: scores.shallow_clone(), pooled: None });
        scores
    }

    /// DIN's target attention whole: the scores, unnormalized, pool `values: [B, L, Dv]` into the
    /// context `[B, Dv]`, in the kernel rather than as libtorch's masking and batched product,
    /// forward and backward. `same`: the values are the keys (one gradient to inject, not two).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_pooled(&self, mlp: &Mlp, out: &Linear, q: &Tensor, keys: &Tensor, values: &Tensor, same: bool, mask: &Tensor) -> Tensor {
        let (scores, qc, kc, mc) = self.scores(mlp, out, q, keys, mask);
        let vc = if same { kc.shallow_clone() } else { values.detach().contiguous() };
        let (rows, len, dv) = (vc.size()[0], vc.size()[1], vc.size()[2]);
        // SAFETY: contiguous CPU tensors of the checked kinds and shapes, alive for the call; the
        // output's slice is done with before the tensor is used.
        let ctx = unsafe {
            let (ctx, out_s) = output(&[rows, dv]);
            din::pool(floats(&scores), floats(&vc), bytes(&mc), rows as usize, len as usize, dv as usize, threads(), out_s);
            ctx
        };
        if !grad_enabled() {
            return ctx;
        }
        let ctx = ctx.set_requires_grad(true);
        let pooled = Pooled { values: (!same).then(|| values.shallow_clone()), vc, scores, mask: mc };
        *self.pending.borrow_mut() = Some(Pending { q: q.shallow_clone(), keys: keys.shallow_clone(), qc, kc, leaf: ctx.shallow_clone(), pooled: Some(pooled) });
        ctx
    }

    /// The kernel's scores, with the contiguous data of `q`, the keys and the mask (`u8`).
    fn scores(&self, mlp: &Mlp, out: &Linear, q: &Tensor, keys: &Tensor, mask: &Tensor) -> (Tensor, Tensor, Tensor, Tensor) {
        let (rows, len, d) = (keys.size()[0], keys.size()[1], keys.size()[2]);
        let layers = mlp.plain_layers().expect("checked by applies");
        let params = Params::of(&layers, out);
        let (qc, kc) = (q.detach().contiguous(), keys.detach().contiguous());
        let mc = mask.to_kind(Kind::Uint8).contiguous();
        let keep = grad_enabled();
        let mut saved = self.saved.borrow_mut();
        // SAFETY: contiguous CPU tensors of the checked kinds, alive for the call; the output's
        // slice is done with before the tensor is used.
        let scores = unsafe {
            let (scores, out_s) = output(&[rows, len]);
            let saved = keep.then_some(&mut *saved);
            din::forward(&params.unit(d as usize), floats(&qc), floats(&kc), bytes(&mc), rows as usize, len as usize, threads(), out_s, saved);
            scores
        };
        (scores, qc, kc, mc)
    }

    /// The model's backward pass when the last forward pass used the kernel (module docs, step 2).
    /// Returns `false`, having done nothing, when there is no such pass to finish.
    pub fn backward(&self, mlp: &Mlp, out: &Linear, loss: &Tensor) -> bool {
        let Some(p) = self.pending.borrow_mut().take() else { return false };
        let g = Tensor::run_backward(&[loss], &[&p.leaf], true, false).pop().expect("one input, one gradient");
        if !g.defined() {
            loss.backward();
            return true;
        }
        let g = g.contiguous();
        // With pooling, ∂L/∂context gives ∂L/∂scores (before the unit's backward) and the values'
        // own gradient (after it: added to the keys' when the values are the keys).
        let pool_shape = p.pooled.as_ref().map(|pl| (pl.vc.size()[0] as usize, pl.vc.size()[1] as usize, pl.vc.size()[2] as usize));
        let dscores = match (&p.pooled, pool_shape) {
            (Some(pl), Some((rows, len, dv))) => {
                // SAFETY: contiguous CPU f32 / u8 tensors kept from the forward pass, and the
                // gradient; the output's slice is done with before the tensor is used.
                unsafe {
                    let (ds, ds_s) = output(&[rows as i64, len as i64]);
                    din::pool_dscores(floats(&pl.vc), bytes(&pl.mask), rows, len, dv, floats(&g), threads(), ds_s);
                    ds
                }
            }
            _ => g.shallow_clone(),
        };
        let layers = mlp.plain_layers().expect("checked by applies");
        let params = Params::of(&layers, out);
        let d = p.kc.size()[2] as usize;
        // SAFETY: contiguous CPU f32 / u8 tensors kept from the forward pass, and the gradients;
        // the outputs' slices are done with before the tensors are used.
        let (grads, dq, dkeys, dvalues) = unsafe {
            let (dq, dq_s) = output(&p.qc.size());
            let (dkeys, dkeys_s) = output(&p.kc.size());
            let grads = din::backward(&params.unit(d), &self.saved.borrow(), floats(&p.qc), floats(&p.kc), floats(&dscores), threads(), dq_s, dkeys_s);
            let dvalues = match (&p.pooled, pool_shape) {
                (Some(pl), Some((rows, len, dv))) if pl.values.is_none() => {
                    din::pool_dvalues(floats(&pl.scores), bytes(&pl.mask), rows, len, dv, floats(&g), threads(), dkeys_s, true);
                    None
                }
                (Some(pl), Some((rows, len, dv))) => {
                    let (dvals, dv_s) = output(&pl.vc.size());
                    din::pool_dvalues(floats(&pl.scores), bytes(&pl.mask), rows, len, dv, floats(&g), threads(), dv_s, false);
                    pl.values.as_ref().map(|v| (v.shallow_clone(), dvals))
                }
                _ => None,
            };
            (grads, dq, dkeys, dvalues)
        };
        let mut total = loss.shallow_clone();
        let mut inject = |x: &Tensor, g: Tensor| {
            if x.requires_grad() {
                total = &total + (x * g.view(x.size().as_slice())).sum(Kind::Float);
            }
        };
        inject(&p.q, dq);
        inject(&p.keys, dkeys);
        if let Some((values, dvalues)) = dvalues {
            inject(&values, dvalues);
        }
        for ((lin, act), lg) in layers.iter().zip(&grads.layers) {
            inject(&lin.ws, Tensor::from_slice(&lg.w));
            if let Some(b) = &lin.bs {
                inject(b, Tensor::from_slice(&lg.b));
            }
            if let (Act::Prelu(s), Some(ds)) = (act, &lg.slope) {
                inject(s, Tensor::from_slice(ds));
            }
        }
        inject(&out.ws, Tensor::from_slice(&grads.out_w));
        if let Some(b) = &out.bs {
            inject(b, Tensor::from_slice(&[grads.out_b]));
        }
        total.backward();
        true
    }
}
