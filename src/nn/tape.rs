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
//!   output, plus what earlier passes left on the leaf), computes its inputs' gradients itself and
//!   adds `Σ x ⊙ c(∂L/∂x)` for each input `x` to what is owed (`c`: a constant), so that one final
//!   pass carries every gradient into the rest of the graph;
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
                    let Some(g) = grad_of(&owed, &leaf) else { continue };
                    for (x, gx) in backward(&g) {
                        if x.requires_grad() {
                            owed = owed + (&x * gx.view(x.size().as_slice())).sum(Kind::Float);
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
            r.finish();
        }
    }
}

impl Drop for Tape {
    fn drop(&mut self) {
        TAPE.with(|t| t.borrow_mut().take());
    }
}

/// `∂owed/∂leaf` plus what earlier backward passes left on the leaf; `None` when neither exists.
fn grad_of(owed: &Tensor, leaf: &Tensor) -> Option<Tensor> {
    let now = if owed.requires_grad() { Tensor::run_backward(&[owed], &[leaf], true, false).pop().filter(Tensor::defined) } else { None };
    let before = Some(leaf.grad()).filter(Tensor::defined);
    match (now, before) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
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
