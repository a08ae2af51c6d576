//! Inverted dropout with a mask drawn by a counter-based generator ([`attnrec_kernels::dropout`]),
//! in parallel on libtorch's OpenMP workers, written straight into the mask tensor.
//!
//! libtorch's CPU dropout draws its Bernoulli mask element by element from one Mersenne-Twister
//! stream on one thread: in a BST training step at batch 1,024 on 2 cores that was 16 % of the
//! step (`bernoulli_kernel` and `CPUGeneratorImpl::random64` under `perf`). Here element `i`
//! keeps its value when its 32 bits of `splitmix64(seed + ⌊i / 2⌋)` (the high half for even `i`,
//! the low half for odd) fall below `(1 − p) · 2³²`: a function of the element's index alone, so
//! any number of threads fill the mask in parts and get the same mask. The seed is one draw from libtorch's generator, so masks follow
//! `tch::manual_seed` (the trainer reseeds it before every step: a resumed run draws the masks of
//! the uninterrupted one). Other devices keep libtorch's dropout.
use super::kernel_io::{floats_mut, kernel_takes, output, threads};
use attnrec_kernels::dropout::mask;
use tch::{Device, Kind, Tensor};

/// `x` with each element zeroed with probability `p` and the rest scaled by `1 / (1 − p)` in
/// training; `x` itself otherwise. Differentiable in `x` (the mask is a constant).
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    if !kernel_takes(x) || p >= 1.0 {
        return x.dropout(p, train);
    }
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
    let mut m = output(&x.size());
    // SAFETY: `m` is fresh from `output` and not shared while it is filled.
    mask(unsafe { floats_mut(&mut m) }, p, seed, threads());
    x * m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gradient is the mask; evaluation and p = 0 change nothing. (The mask itself is
    /// tested in `attnrec_kernels::dropout`.)
    #[test]
    fn the_gradient_is_the_mask() {
        // Through libtorch: the gradient is the mask. (That masks follow `tch::manual_seed` is
        // tested where nothing else draws from libtorch's process-wide generator meanwhile:
        // tests/resume.rs resumes a BST run with dropout to the uninterrupted run's bytes.)
        // No element of x is zero, or "kept" could not be read off x ⊙ mask: randn gives an exact
        // 0.0 about once in 10⁷ draws, which failed this test about once in 80 runs (CI on
        // 2026-12-02).
        let x = (Tensor::rand([64, 50, 32], (Kind::Float, Device::Cpu)) + 0.5).set_requires_grad(true);
        let a = dropout(&x, 0.25, true);
        a.sum(Kind::Float).backward();
        let g = x.grad();
        assert!(g.ne(0.0).equal(&a.ne(0.0)), "the gradient is nonzero exactly where x was kept");
        assert!((g.max().double_value(&[]) - 1.0 / 0.75).abs() < 1e-6 && g.min().double_value(&[]) == 0.0);
        assert!(dropout(&x, 0.25, false).equal(&x) && dropout(&x, 0.0, true).equal(&x));
    }
}
