//! Inverted dropout's mask from a counter-based generator: element `i` keeps its value when its
//! 32 bits of `splitmix64(seed + ⌊i / 2⌋)` (the high half for even `i`, the low half for odd) fall
//! below `(1 − p) · 2³²`. A function of the element's index alone, so any number of threads fill
//! the mask in parts and get the same mask.
use crate::parallel::{run_parts, split_mut};

/// SplitMix64's output function (Steele, Lea and Flood 2014): a bijective mix of a 64-bit counter.
#[inline(always)]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `out` (elements `first..first + out.len()` of a mask, `first` even) with `scale` where
/// kept, 0 where dropped: two elements per 64-bit draw. Compiled for AVX-512 (whose 64-bit
/// multiply vectorizes SplitMix64) and AVX2 where the CPU has them, the same arithmetic each: the
/// mask does not depend on the machine.
fn fill(out: &mut [f32], first: usize, seed: u64, threshold: u64, scale: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
        unsafe fn avx512(out: &mut [f32], first: usize, seed: u64, threshold: u64, scale: f32) {
            fill_body(out, first, seed, threshold, scale)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(out: &mut [f32], first: usize, seed: u64, threshold: u64, scale: f32) {
            fill_body(out, first, seed, threshold, scale)
        }
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") && std::arch::is_x86_feature_detected!("avx512vl") {
            // SAFETY: the CPU has the features.
            return unsafe { avx512(out, first, seed, threshold, scale) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has the feature.
            return unsafe { avx2(out, first, seed, threshold, scale) };
        }
    }
    fill_body(out, first, seed, threshold, scale)
}

#[inline(always)]
fn fill_body(out: &mut [f32], first: usize, seed: u64, threshold: u64, scale: f32) {
    debug_assert!(first % 2 == 0);
    let at = |u: u64| if u < threshold { scale } else { 0.0 };
    let base = seed.wrapping_add((first / 2) as u64);
    let pairs = out.len() / 2;
    let (whole, rest) = out.split_at_mut(2 * pairs);
    for (k, pair) in whole.chunks_exact_mut(2).enumerate() {
        let bits = splitmix64(base.wrapping_add(k as u64));
        pair[0] = at(bits >> 32);
        pair[1] = at(bits & 0xffff_ffff);
    }
    if let Some(v) = rest.first_mut() {
        *v = at(splitmix64(base.wrapping_add(pairs as u64)) >> 32);
    }
}

/// Writes the mask for drop probability `p` (kept elements scaled by `1 / (1 − p)`) from `seed`
/// into `out`, on up to `threads` parts of the installed runner (one per 256k elements at most).
pub fn mask(out: &mut [f32], p: f64, seed: u64, threads: usize) {
    let n = out.len();
    let keep = 1.0 - p;
    let threshold = (keep * 4_294_967_296.0).round() as u64;
    let scale = (1.0 / keep) as f32;
    let parts = threads.clamp(1, n.div_ceil(1 << 18).max(1));
    // Even part lengths: each part starts on a draw's first half.
    let per = n.div_ceil(parts).max(1).next_multiple_of(2);
    let lens: Vec<usize> = (0..n.div_ceil(per)).map(|k| per.min(n - k * per)).collect();
    let chunks: Vec<(usize, &mut [f32])> = split_mut(out, lens).into_iter().enumerate().collect();
    run_parts(chunks, |(k, chunk)| fill(chunk, k * per, seed, threshold, scale));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64's published first output; about 1 − p kept at 1 / (1 − p); the mask depends on
    /// the seed, not on the number of threads; the two halves of one draw are not tied.
    #[test]
    fn keeps_one_minus_p_the_same_on_any_thread_count() {
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        let n = 1_000_003;
        let of = |seed, threads| {
            let mut m = vec![f32::NAN; n];
            mask(&mut m, 0.1, seed, threads);
            m
        };
        let m = of(42, 1);
        let kept = m.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
        // Binomial(n, 0.9): std 3e-4; 5 std.
        assert!((kept - 0.9).abs() < 1.5e-3, "kept {kept}");
        assert!(m.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9f32).abs() < 1e-7), "every element written");
        assert_eq!(m, of(42, 3));
        assert_eq!(m, of(42, 7));
        assert_ne!(m, of(43, 1));
        let both = (0..n - 1).step_by(2).filter(|&i| (m[i] != 0.0) == (m[i + 1] != 0.0)).count() as f64 / (n / 2) as f64;
        assert!((both - (0.81 + 0.01)).abs() < 3e-3, "pairs equal {both}");
        // Element by element, as the module's doc defines it, whatever SIMD the CPU gave `fill`.
        let threshold = (0.9f64 * 4_294_967_296.0).round() as u64;
        for i in (0..n).step_by(997).chain([n - 1]) {
            let bits = splitmix64(42u64.wrapping_add((i / 2) as u64));
            let half = if i % 2 == 0 { bits >> 32 } else { bits & 0xffff_ffff };
            assert_eq!(m[i] != 0.0, half < threshold, "element {i}");
        }
        let mut empty: [f32; 0] = [];
        mask(&mut empty, 0.5, 1, 4);
    }
}
