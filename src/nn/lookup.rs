//! Embedding lookups whose backward pass attnrec computes itself, on CPU.
//!
//! libtorch's CPU backward of `embedding` adds each looked-up row's gradient with an operator of its
//! own: 2.1 ms per table for a batch of 256 histories of 50 events on the CI machine (torch 2.13),
//! 8.4 ms at 1,024, and every history reads two or more tables. One pass in Rust
//! ([`attnrec_kernels::embedding`]) does the same sums in a few hundredths of that.
//!
//! tch has no custom autograd functions, so, as with DIN's fused kernel, the lookup's output enters
//! the graph as a leaf that requires grad; the model's `backward` ends with [`Lookups::backward`],
//! which adds each leaf's gradient into its table's. The result is libtorch's, up to the order of
//! float additions. Off (plain `embedding`) on other devices, without gradients, or after
//! `set_on(false)`.
use super::grad_enabled;
use std::cell::{Cell, RefCell};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// A lookup awaiting its backward pass.
struct Pending {
    table: Tensor,
    /// Contiguous `i64` indices.
    idx: Tensor,
    /// The lookup's output: a leaf of the graph.
    out: Tensor,
    padding: Option<i64>,
}

/// The lookups of one model's forward pass.
pub struct Lookups {
    on: Cell<bool>,
    pending: RefCell<Vec<Pending>>,
}

impl Default for Lookups {
    fn default() -> Self {
        Lookups { on: Cell::new(true), pending: RefCell::new(Vec::new()) }
    }
}

impl std::fmt::Debug for Lookups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lookups").field("on", &self.on.get()).field("pending", &self.pending.borrow().len()).finish()
    }
}

impl Lookups {
    /// Turns the fused backward on or off (on by default).
    pub fn set_on(&self, on: bool) {
        self.on.set(on);
        if !on {
            self.pending.borrow_mut().clear();
        }
    }

    /// `table`'s rows at `idx` (`[...]` → `[..., dim]`); `padding`: the row that gets no gradient,
    /// as the table was built with.
    pub fn embed(&self, table: &nn::Embedding, padding: Option<i64>, idx: &Tensor) -> Tensor {
        let ws = &table.ws;
        let fused = self.on.get() && ws.requires_grad() && ws.device() == Device::Cpu && ws.kind() == Kind::Float && ws.is_contiguous() && idx.kind() == Kind::Int64 && grad_enabled();
        if !fused {
            return table.forward(idx);
        }
        let out = tch::no_grad(|| table.forward(idx)).set_requires_grad(true);
        self.pending.borrow_mut().push(Pending { table: ws.shallow_clone(), idx: idx.contiguous(), out: out.shallow_clone(), padding });
        out
    }

    /// Adds the gradients that the graph's backward pass left on the lookups' outputs into their
    /// tables' gradients, and forgets the lookups.
    pub fn backward(&self) {
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for p in pending {
            let g = p.out.grad();
            if !g.defined() || p.idx.numel() == 0 {
                continue;
            }
            let g = g.contiguous();
            let mut tg = p.table.grad();
            if !tg.defined() {
                // The first step: have autograd allocate the table's gradient (zeros).
                tch::with_grad(|| (p.table.sum(Kind::Float) * 0.0).backward());
                tg = p.table.grad();
            }
            let dense = if tg.is_contiguous() && tg.kind() == Kind::Float { tg.shallow_clone() } else { tg.contiguous().to_kind(Kind::Float) };
            let dim = p.table.size()[1] as usize;
            // SAFETY: contiguous CPU tensors of the kinds checked in `embed` (the gradient of an
            // f32 table is f32); the table's gradient is written by no one else meanwhile.
            let done = unsafe {
                let table = std::slice::from_raw_parts_mut(dense.data_ptr() as *mut f32, dense.numel());
                let idx = std::slice::from_raw_parts(p.idx.data_ptr() as *const i64, p.idx.numel());
                let grads = std::slice::from_raw_parts(g.data_ptr() as *const f32, g.numel());
                attnrec_kernels::embedding::scatter_add_rows(table, dim, idx, grads, p.padding, tch::get_num_threads().max(1) as usize)
            };
            done.expect("indices were checked by the forward lookup");
            if dense.data_ptr() != tg.data_ptr() {
                tch::no_grad(|| tg.copy_(&dense));
            }
        }
    }
}
