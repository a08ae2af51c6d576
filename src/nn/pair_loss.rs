//! DIEN's auxiliary loss with the general score through the fused kernel of `attnrec-kernels`
//! (its `pair_bce` module): `states`, `items` and `negs` `[B, L, D]`, `w` `[D, D]`, `mask` `[B,
//! L]`; the mean over the pairs of present consecutive events `(t, t + 1)` of
//! `softplus(−h_t·W·e_{t+1}) + softplus(h_t·W·n_{t+1})`, 0 without any pair.
//!
//! It runs on CPU in `f32` while a [`super::Tape`] records or gradients are off, and is `None`
//! otherwise: the caller then composes the same loss of libtorch operators (DIEN does, and
//! tests/models.rs holds the two to the same value and gradients).
use super::kernel_io::{bytes, floats, floats_mut, kernel_takes, output, threads};
use super::tape::{self, Node};
use attnrec_kernels::pair_bce as kernel;
use tch::{Kind, Tensor};

pub fn general_pair_bce(states: &Tensor, items: &Tensor, negs: &Tensor, w: &Tensor, mask: &Tensor) -> Option<Tensor> {
    if !tape::kernels_apply() || ![states, items, negs, w].into_iter().all(kernel_takes) || states.dim() != 3 {
        return None;
    }
    let size = states.size();
    let (b, l, d) = (size[0], size[1], size[2]);
    if items.size() != size || negs.size() != size || w.size() != [d, d] || mask.size() != [b, l] {
        return None;
    }
    let [sd, id, nd, wd] = [states, items, negs, w].map(|t| t.detach().contiguous());
    let keep = mask.to_kind(Kind::Uint8).contiguous();
    let shape = kernel::Shape { rows: b as usize, len: l as usize, dim: d as usize };
    // SAFETY: every tensor read is a contiguous CPU tensor of the kind read, alive and unwritten
    // for the call.
    let (sum, count) = unsafe { kernel::forward(shape, floats(&sd), floats(&id), floats(&nd), floats(&wd), bytes(&keep), threads()) };
    let mean = if count == 0 { 0.0 } else { sum / count as f64 };
    let loss = Tensor::from(mean as f32).to_device(states.device());
    if !tape::recording() || count == 0 {
        // Without pairs the loss is a constant 0 that reaches nothing.
        return Some(if tape::recording() { states.sum(Kind::Float) * 0.0 } else { loss });
    }
    let leaf = loss.set_requires_grad(true);
    let graph = [states, items, negs, w].map(Tensor::shallow_clone);
    tape::push(Node::Kernel {
        leaf: leaf.shallow_clone(),
        backward: Box::new(move |g: &Tensor| {
            let scale = (g.double_value(&[]) / count as f64) as f32;
            let [mut ds, mut di, mut dn] = [0, 1, 2].map(|_| output(&[b, l, d]));
            // SAFETY: as in the forward pass; the three outputs come from `output`, unshared.
            let dw = unsafe {
                kernel::backward(shape, floats(&sd), floats(&id), floats(&nd), floats(&wd), bytes(&keep), scale, threads(), floats_mut(&mut ds), floats_mut(&mut di), floats_mut(&mut dn))
            };
            let [s, i, n, w] = graph;
            vec![(s, ds), (i, di), (n, dn), (w, Tensor::from_slice(&dw).view([d, d]))]
        }),
    });
    Some(leaf)
}
