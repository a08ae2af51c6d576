//! Inverted dropout with a mask drawn by a counter-based generator, in parallel.
//!
//! libtorch's CPU dropout draws its Bernoulli mask element by element from one Mersenne-Twister
//! stream on one thread: in a BST training step at batch 1,024 on 2 cores that was 16 % of the
//! step (`bernoulli_kernel` and `CPUGeneratorImpl::random64` under `perf`). Here element `i`
//! keeps its value when its 32 bits of `splitmix64(seed + ⌊i / 2⌋)` (the high half for even `i`,
//! the low half for odd) fall below `(1 − p) · 2³²`: a function of the element's index alone, so
//! any number of threads fill the mask in parts and get the same mask. The seed is one draw from libtorch's generator, so masks follow
//! `tch::manual_seed` (the trainer reseeds it before every step: a resumed run draws the masks of
//! the uninterrupted one). Other devices keep libtorch's dropout.
use tch::{Device, Kind, Tensor};

/// SplitMix64's output function (Steele, Lea and Flood 2014): a bijective mix of a 64-bit counter.
#[inline(always)]
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `out` (elements `first..first + out.len()` of a mask, `first` even) with `scale` where
/// kept, 0 where dropped: two elements per 64-bit draw.
fn fill(out: &mut [f32], first: usize, seed: u64, threshold: u64, scale: f32) {
    debug_assert!(first % 2 == 0);
    let at = |u: u64| if u < threshold { scale } else { 0.0 };
    for (k, pair) in out.chunks_mut(2).enumerate() {
        let bits = splitmix64(seed.wrapping_add((first / 2 + k) as u64));
        pair[0] = at(bits >> 32);
        if let Some(v) = pair.get_mut(1) {
            *v = at(bits & 0xffff_ffff);
        }
    }
}

/// The mask of `n` elements for drop probability `p` (kept ones scaled by `1 / (1 − p)`), from
/// `seed`, filled on up to `threads` threads.
pub fn mask(n: usize, p: f64, seed: u64, threads: usize) -> Vec<f32> {
    let keep = 1.0 - p;
    let threshold = (keep * 4_294_967_296.0).round() as u64;
    let scale = (1.0 / keep) as f32;
    let mut out = vec![0.0f32; n];
    let parts = threads.clamp(1, n.div_ceil(1 << 18).max(1));
    // Even part lengths: each part starts on a draw's first half.
    let per = n.div_ceil(parts).max(1).next_multiple_of(2);
    std::thread::scope(|s| {
        for (k, chunk) in out.chunks_mut(per).enumerate() {
            s.spawn(move || fill(chunk, k * per, seed, threshold, scale));
        }
    });
    out
}

/// `x` with each element zeroed with probability `p` and the rest scaled by `1 / (1 − p)` in
/// training; `x` itself otherwise. Differentiable in `x` (the mask is a constant).
pub fn dropout(x: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p <= 0.0 {
        return x.shallow_clone();
    }
    if x.device() != Device::Cpu || x.kind() != Kind::Float || p >= 1.0 {
        return x.dropout(p, train);
    }
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
    let threads = tch::get_num_threads().max(1) as usize;
    let m = Tensor::from_slice(&mask(x.numel(), p, seed, threads)).view(x.size().as_slice());
    x * m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// About 1 − p of the elements are kept, at 1 / (1 − p); the mask depends on the seed, not on
    /// the number of threads; the gradient is the mask; evaluation and p = 0 change nothing.
    #[test]
    fn keeps_one_minus_p_the_same_on_any_thread_count() {
        // SplitMix64 seeded with 0: its published first output.
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        let n = 1_000_003;
        let m = mask(n, 0.1, 42, 1);
        let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        // Binomial(n, 0.9): std 3e-4; 5 std.
        assert!((kept - 0.9).abs() < 1.5e-3, "kept {kept}");
        assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9f32).abs() < 1e-7));
        assert_eq!(m, mask(n, 0.1, 42, 3));
        assert_ne!(m, mask(n, 0.1, 43, 1));
        // Neighbouring elements are not tied (the two halves of one draw).
        let both = (0..n - 1).step_by(2).filter(|&i| (m[i] != 0.0) == (m[i + 1] != 0.0)).count() as f64 / (n / 2) as f64;
        assert!((both - (0.81 + 0.01)).abs() < 3e-3, "pairs equal {both}");

        // Through libtorch: the gradient is the mask. (That masks follow `tch::manual_seed` is
        // tested where nothing else draws from libtorch's process-wide generator meanwhile:
        // tests/resume.rs resumes a BST run with dropout to the uninterrupted run's bytes.)
        let x = Tensor::randn([64, 50, 32], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let a = dropout(&x, 0.25, true);
        a.sum(Kind::Float).backward();
        let g = x.grad();
        assert!(g.ne(0.0).equal(&a.ne(0.0)), "the gradient is nonzero exactly where x was kept");
        assert!((g.max().double_value(&[]) - 1.0 / 0.75).abs() < 1e-6 && g.min().double_value(&[]) == 0.0);
        assert!(dropout(&x, 0.25, false).equal(&x) && dropout(&x, 0.0, true).equal(&x));
    }
}
