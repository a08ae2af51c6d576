//! The one seam between libtorch's autograd and attnrec's fused CPU kernels.
//!
//! tch has no custom autograd functions, so a fused kernel joins the graph as a *leaf*: its forward
//! pass computes on detached data, returns a fresh tensor that requires grad, and records on the
//! thread's [`Tape`] what its backward pass needs. The trainer's step runs the forward pass while a
//! tape records and ends in [`Tape::backward`] instead of `loss.backward()`:
//!
//! ```ignore
//! let tape = Tape::record();
//! let loss = loss_of(model.forward_t(&batch, true));
//! tape.backward(&loss);
//! ```
//!
//! Models know nothing of this: they call layers, and the layers that have a fused path (the
//! embedding lookups, DIN's activation unit) take it only while a tape records (with gradients) or
//! while gradients are off (inference). Anywhere else, e.g. a forward pass with gradients but no
//! tape, they take libtorch's path, which is slower but complete: nothing can silently go without
//! its gradient.
//!
//! [`Tape::backward`] walks the records newest first, so a kernel's output gradient is complete
//! (everything downstream of it has been added) when it is read:
//! - a [`Node::Cut`] (the head's input, see [`cut`]) runs the owed backward pass down to its leaf,
//!   and what is still owed becomes `Σ x ⊙ c(∂L/∂x)` over the cut tensor;
//! - a [`Node::Kernel`] gets `∂L/∂leaf` from libtorch (the graph between what is owed and its
//!   output, plus what earlier passes left on the leaf and what later kernels handed it), computes
//!   its inputs' gradients itself and hands each on: straight to an input that is itself a
//!   recorded leaf (an earlier kernel's or lookup's output, e.g. DIEN's states that its AUGRU
//!   reads) or a parameter with a gradient, and otherwise as a term `Σ x ⊙ c(∂L/∂x)` added to
//!   what is owed (`c`: a constant), so that one final pass carries every gradient into the rest
//!   of the graph;
//! - a [`Node::Lookup`] (an embedding's rows) is finished last, in forward order, adding its leaf's
//!   gradient into its table's.
//!
//! **Devices.** The fused kernels are CPU code: each takes only contiguous CPU `f32` tensors
//! (DIN's unit and pooling in `attention::din_fused`, DIEN's recurrences in `nn::gru`, the lookups
//! in `nn::lookup`, the optimizer's one-pass update) and otherwise records nothing here and runs
//! libtorch's operators. On CUDA the whole step is libtorch's: same model, same results up to
//! float rounding (`scripts/device-check.sh`).
use super::grad_enabled;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::marker::PhantomData;
use tch::{Kind, Tensor};

/// A kernel's backward pass: `∂L/∂output` → each input in the graph with `∂L/∂input`.
pub(crate) type KernelBackward = Box<dyn FnOnce(&Tensor) -> Vec<(Tensor, Tensor)>>;

/// One fused operation of a forward pass.
pub(crate) enum Node {
    /// An embedding lookup, finished by adding its output leaf's gradient into its table's.
    Lookup(super::lookup::Record),
    /// A kernel over tensors of the graph whose output is `leaf`.
    Kernel { leaf: Tensor, backward: KernelBackward },
    /// The head's input `x`, replaced in the graph by `leaf` (see [`cut`]).
    Cut { x: Tensor, leaf: Tensor },
}

thread_local! {
    static TAPE: RefCell<Option<Vec<Node>>> = const { RefCell::new(None) };
    static FUSED: Cell<bool> = const { Cell::new(true) };
}

/// The records of one training step's forward pass on this thread, from [`Tape::record`] to
/// [`Tape::backward`] (or drop, which forgets them).
#[must_use = "a tape records until it is dropped; end the step with Tape::backward"]
pub struct Tape {
    /// Thread-bound, as its records are.
    _thread: PhantomData<*const ()>,
}

impl Tape {
    /// Starts recording on this thread.
    ///
    /// # Panics
    /// If a tape is recording on this thread already (steps do not nest).
    pub fn record() -> Tape {
        TAPE.with(|t| {
            let mut t = t.borrow_mut();
            assert!(t.is_none(), "a tape is already recording on this thread");
            *t = Some(Vec::new());
        });
        Tape { _thread: PhantomData }
    }

    /// The step's backward pass: every parameter's gradient, the fused operations' included.
    pub fn backward(self, loss: &Tensor) {
        let nodes = TAPE.with(|t| t.borrow_mut().take()).unwrap_or_default();
        let mut handed = Handed::of(&nodes);
        let mut owed = loss.shallow_clone();
        let mut lookups = Vec::new();
        for node in nodes.into_iter().rev() {
            match node {
                Node::Lookup(r) => lookups.push(r),
                Node::Cut { x, leaf } => {
                    if owed.requires_grad() {
                        owed.backward();
                    }
                    let g = leaf.grad();
                    owed = if g.defined() { (x * g).sum(Kind::Float) } else { Tensor::zeros([], (Kind::Float, x.device())) };
                }
                Node::Kernel { leaf, backward } => {
                    let Some(g) = grad_of(&owed, &leaf, handed.take(&leaf)) else { continue };
                    for (x, gx) in backward(&g) {
                        if !x.requires_grad() {
                            continue;
                        }
                        let gx = gx.view(x.size().as_slice());
                        if let Some(gx) = handed.give(&x, gx) {
                            owed = owed + owed_term(&x, &gx);
                        }
                    }
                }
            }
        }
        if owed.requires_grad() {
            owed.backward();
        }
        // In the order of the forward pass: two lookups of one table add into its gradient in
        // that order, as they always have.
        for r in lookups.into_iter().rev() {
            let extra = handed.take(r.leaf());
            r.finish(extra);
        }
    }
}

/// The gradients a kernel hands straight to a leaf of the graph instead of through libtorch's
/// backward pass: to an earlier kernel's or lookup's output (kept here until that record is
/// finished) or to a parameter whose gradient exists (added in place). A term `Σ x ⊙ ∂L/∂x` in
/// what is owed costs a pass over `x` forward and another backward, per input: at batch 1,024 a
/// `[B, L, D]` input is 6.5 MB, and DIEN's extractor states go to three kernels (its AUGRU, its
/// target attention and its auxiliary loss).
struct Handed {
    /// The recorded leaves (kernels' and lookups' outputs) by the address of their data, and
    /// what has been handed to each.
    leaves: HashMap<usize, Option<Tensor>>,
}

impl Handed {
    fn of(nodes: &[Node]) -> Handed {
        let leaf = |n: &Node| match n {
            Node::Lookup(r) => Some(r.leaf().shallow_clone()),
            Node::Kernel { leaf, .. } => Some(leaf.shallow_clone()),
            Node::Cut { .. } => None,
        };
        Handed { leaves: nodes.iter().filter_map(leaf).filter(|t| t.numel() > 0).map(|t| (t.data_ptr() as usize, None)).collect() }
    }

    /// The recorded leaf `x` is: its own data, not a view (a view of a leaf is not a leaf).
    fn key(&self, x: &Tensor) -> Option<usize> {
        let key = x.data_ptr() as usize;
        (x.is_leaf() && x.numel() > 0 && self.leaves.contains_key(&key)).then_some(key)
    }

    /// Hands `gx` to `x` when `x` is a recorded leaf or a parameter with a gradient; gives it back
    /// otherwise.
    fn give(&mut self, x: &Tensor, gx: Tensor) -> Option<Tensor> {
        if let Some(key) = self.key(x) {
            let slot = self.leaves.get_mut(&key).expect("checked by key");
            *slot = sum_of([slot.take(), Some(gx)]);
            return None;
        }
        if let Some(mut grad) = defined_grad(x) {
            if grad.size() == x.size() && grad.kind() == gx.kind() && tch::no_grad(|| grad.f_add_(&gx)).is_ok() {
                return None;
            }
        }
        Some(gx)
    }

    /// What has been handed to the recorded leaf `x`.
    fn take(&mut self, x: &Tensor) -> Option<Tensor> {
        self.key(x).and_then(|key| self.leaves.get_mut(&key).and_then(Option::take))
    }
}

/// `Σ x ⊙ gx`, a scalar whose gradient for `x` is `gx` (a constant): one pass forward (a dot
/// product when `x` is contiguous, no product tensor written).
fn owed_term(x: &Tensor, gx: &Tensor) -> Tensor {
    if x.is_contiguous() && gx.is_contiguous() && x.kind() == gx.kind() {
        x.reshape([-1]).dot(&gx.reshape([-1])).to_kind(Kind::Float)
    } else {
        (x * gx).sum(Kind::Float)
    }
}

impl Drop for Tape {
    fn drop(&mut self) {
        TAPE.with(|t| t.borrow_mut().take());
    }
}

/// `∂owed/∂leaf`, plus what earlier backward passes left on the leaf and what later kernels
/// handed it; `None` when none of these exists.
fn grad_of(owed: &Tensor, leaf: &Tensor, handed: Option<Tensor>) -> Option<Tensor> {
    let now = if owed.requires_grad() { Tensor::run_backward(&[owed], &[leaf], true, false).pop().filter(Tensor::defined) } else { None };
    sum_of([now, defined_grad(leaf), handed])
}

/// `t`'s gradient, when it has one. Only a leaf's is asked for: a non-leaf has none here (nothing
/// retains one), and libtorch warns on stderr, at every call, when asked for it.
pub(crate) fn defined_grad(t: &Tensor) -> Option<Tensor> {
    t.is_leaf().then(|| t.grad()).filter(Tensor::defined)
}

/// The sum of the gradients that exist; `None` when none does.
pub(crate) fn sum_of(parts: impl IntoIterator<Item = Option<Tensor>>) -> Option<Tensor> {
    parts.into_iter().flatten().reduce(|a, b| a + b)
}

/// Whether a fused operation may record on this thread now: a tape records and gradients are on.
pub(crate) fn recording() -> bool {
    grad_enabled() && TAPE.with(|t| t.borrow().is_some())
}

/// Whether fused kernels may run now: allowed (see [`with_fused`]) and either recording for a
/// backward pass or without gradients at all.
pub(crate) fn kernels_apply() -> bool {
    FUSED.with(Cell::get) && (recording() || !grad_enabled())
}

/// Whether embedding lookups take their fused backward now: allowed and recording.
pub(crate) fn lookups_apply() -> bool {
    FUSED.with(Cell::get) && recording()
}

pub(crate) fn push(node: Node) {
    TAPE.with(|t| t.borrow_mut().as_mut().expect("checked by recording()").push(node));
}

/// Runs `f` with attnrec's fused CPU kernels allowed (`true`, the default) or not (`false`: every
/// layer takes libtorch's path, as `train.fused = false`, export's tracing and the parity tests
/// need), then restores the previous setting.
pub fn with_fused<T>(on: bool, f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            FUSED.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(FUSED.with(|c| c.replace(on)));
    f()
}

/// The head's input `x` cut from the graph, when a kernel has recorded on the tape: the head's
/// backward then runs once, down to the returned leaf, instead of once more for each kernel's
/// output gradient. `x` itself otherwise.
pub fn cut(x: Tensor) -> Tensor {
    let worth = recording() && TAPE.with(|t| t.borrow().as_ref().is_some_and(|n| n.iter().any(|n| matches!(n, Node::Kernel { .. }))));
    if !worth {
        return x;
    }
    let leaf = x.detach().set_requires_grad(true);
    push(Node::Cut { x, leaf: leaf.shallow_clone() });
    leaf
}

#[cfg(test)]
mod tests {
    use super::super::{embedding, lookup::embed, Cell, Gru, PADDING};
    use super::*;
    use tch::{nn, Device};

    /// Records chained through their leaves: a lookup's rows straight into the GRU kernel, whose
    /// states go straight into the AUGRU kernel, so that the tape hands each kernel's input
    /// gradient to the earlier record's leaf (and, once the parameters have gradients, adds into
    /// them in place). The table's and every parameter's gradients equal libtorch's plain pass
    /// (no tape, no kernel), on a first step (no gradient defined yet) and on a later one.
    #[test]
    fn gradients_handed_to_recorded_leaves_match_libtorch() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let table = embedding(vs.root() / "t", 12, 6, 0.5);
        let gru = Gru::new(vs.root() / "g", 6, 5, Cell::Gru);
        let augru = Gru::new(vs.root() / "a", 5, 5, Cell::Augru);
        // Right-aligned histories with padding (row 0 full, row 1 two events, row 2 none), and an
        // item looked up twice.
        let idx = Tensor::from_slice(&[3i64, 7, 7, 1, 11, 0, 0, 0, 4, 9, 0, 0, 0, 0, 0]).view([3, 5]);
        let mask = idx.ne(PADDING);
        let att = Tensor::rand([3, 5], (Kind::Float, Device::Cpu));
        let coef = Tensor::randn([3, 5], (Kind::Float, Device::Cpu));
        let loss = || {
            let states = gru.forward(&embed(&table, Some(PADDING), &idx), &mask, None);
            let last = augru.last(&states, &mask, Some(&att));
            (&states.sum_dim_intlist(-1, false, Kind::Float) * &coef).sum(Kind::Float) + last.square().sum(Kind::Float)
        };
        let grads = || {
            let mut g: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.grad().copy())).collect();
            g.sort_by(|a, b| a.0.cmp(&b.0));
            g
        };
        let zero = || {
            for (_, v) in vs.variables() {
                let _ = v.grad().zero_();
            }
        };
        let taped = || {
            with_fused(true, || {
                let tape = Tape::record();
                let l = loss();
                assert!(TAPE.with(|t| t.borrow().as_ref().map_or(0, Vec::len)) == 3, "a lookup and two kernels recorded");
                tape.backward(&l);
            });
            grads()
        };
        let first = taped();
        zero();
        with_fused(false, || loss().backward());
        let plain = grads();
        zero();
        let later = taped();
        for (when, got) in [("first", first), ("later", later)] {
            for ((k, want), (_, g)) in plain.iter().zip(&got) {
                let diff = f64::try_from((want - g).abs().max()).unwrap();
                assert!(diff < 1e-5, "{when} step: gradient of {k} differs by {diff}");
            }
        }
    }
}
