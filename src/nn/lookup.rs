//! Embedding lookups whose backward pass attnrec computes itself, on CPU.
//!
//! libtorch's CPU backward of `embedding` adds each looked-up row's gradient with an operator of its
//! own: 2.1 ms per table for a batch of 256 histories of 50 events on the CI machine (torch 2.13),
//! 8.4 ms at 1,024, and every history reads two or more tables. One pass in Rust
//! ([`attnrec_kernels::embedding`]) does the same sums in a few hundredths of that.
//!
//! tch has no custom autograd functions, so, as with DIN's fused kernel, the lookup's output enters
//! the graph as a leaf that requires grad and is recorded on the step's [`super::tape::Tape`],
//! whose backward adds the leaf's gradient into its table's ([`Record::finish`]). The result is
//! libtorch's, up to the order of float additions. Plain `embedding` on other devices, while no
//! tape records, or with the fused kernels off ([`super::tape::with_fused`]).
use super::kernel_io::kernel_takes;
use super::tape::{self, Node};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// A lookup awaiting its backward pass.
pub(crate) struct Record {
    table: Tensor,
    /// Contiguous `i64` indices.
    idx: Tensor,
    /// The lookup's output: a leaf of the graph.
    out: Tensor,
    padding: Option<i64>,
}

/// `table`'s rows at `idx` (`[...]` → `[..., dim]`); `padding`: the row that gets no gradient, as
/// the table was built with.
pub fn embed(table: &nn::Embedding, padding: Option<i64>, idx: &Tensor) -> Tensor {
    let ws = &table.ws;
    let fused = ws.requires_grad() && kernel_takes(ws) && ws.is_contiguous() && idx.kind() == Kind::Int64 && tape::lookups_apply();
    if !fused {
        return table.forward(idx);
    }
    let out = tch::no_grad(|| table.forward(idx)).set_requires_grad(true);
    tape::push(Node::Lookup(Record { table: ws.shallow_clone(), idx: idx.contiguous(), out: out.shallow_clone(), padding }));
    out
}

impl Record {
    /// The lookup's output, a leaf of the graph.
    pub(crate) fn leaf(&self) -> &Tensor {
        &self.out
    }

    /// Adds the gradient that the graph's backward pass left on the lookup's output, plus what
    /// kernels handed it straight (`handed`, see the tape), into its table's gradient.
    pub(crate) fn finish(self, handed: Option<Tensor>) {
        let g = tape::sum_of([tape::defined_grad(&self.out), handed]);
        let Some(g) = g.filter(|_| self.idx.numel() > 0) else { return };
        let g = g.contiguous();
        let mut tg = self.table.grad();
        if !tg.defined() {
            // The first step: have autograd allocate the table's gradient (zeros).
            tch::with_grad(|| (self.table.sum(Kind::Float) * 0.0).backward());
            tg = self.table.grad();
        }
        let dense = if tg.is_contiguous() && tg.kind() == Kind::Float { tg.shallow_clone() } else { tg.contiguous().to_kind(Kind::Float) };
        let dim = self.table.size()[1] as usize;
        // SAFETY: contiguous CPU tensors of the kinds checked in `embed` (the gradient of an f32
        // table is f32); the table's gradient is written by no one else meanwhile.
        let done = unsafe {
            let table = std::slice::from_raw_parts_mut(dense.data_ptr() as *mut f32, dense.numel());
            let idx = std::slice::from_raw_parts(self.idx.data_ptr() as *const i64, self.idx.numel());
            let grads = std::slice::from_raw_parts(g.data_ptr() as *const f32, g.numel());
            attnrec_kernels::embedding::scatter_add_rows(table, dim, idx, grads, self.padding, tch::get_num_threads().max(1) as usize)
        };
        done.expect("indices were checked by the forward lookup");
        if dense.data_ptr() != tg.data_ptr() {
            tch::no_grad(|| tg.copy_(&dense));
        }
    }
}
