//! DIN's activation unit (Zhou et al., KDD 2018), forward and backward, fused over chunks of
//! history positions.
//!
//! The unit scores each history item `k` against the target `q` with an MLP over
//! `[q, k, q − k, q ⊙ k]`. Its first layer `W = [Wq | Wk | Wd | Wp]` splits into a per-row term
//! `(Wq + Wd) q + b` and a per-position term `k · M_q` with the per-row matrix
//! `M_q = (Wk − Wd)ᵀ + diag(q) Wpᵀ` (`[d, h]`): `d·h` multiply-adds per position instead of the
//! `4d·h` of the concatenated input. Later layers are GEMMs with shared weights over a chunk of
//! positions, so a chunk's activations stay in cache from the first layer to the score.
//!
//! Only the positions the mask marks as history are computed: a padded position scores 0 and
//! receives no gradient (as in the unfused model, where the mask zeroes its weight), so short
//! histories cost what they hold. The forward pass keeps each layer's pre-activations of the
//! computed positions for the backward pass.
//!
//! Rows are split between threads ([`crate::parallel`]) by their number of positions; each thread
//! sums its own weight gradients, and the sums are added in thread order, so results depend on the
//! thread count but are otherwise deterministic.
//!
//! Files: `positions` (which positions hold history), `forward`, `backward`, `pool`, `act` (the
//! activations) and `simd` (AVX2 dispatch); the shared types and the weights' rearrangement here.
mod simd;
pub(crate) use simd::avx2_dispatch;
mod act;
mod backward;
mod forward;
mod pool;
mod positions;

use act::*;
pub use backward::backward;
pub use forward::forward;
use forward::*;
pub use pool::{pool, pool_dscores, pool_dvalues};
pub use positions::Positions;
use positions::*;
pub(crate) use crate::parallel::{row_parts, split_mut};
use crate::gemm::{gemm, mat};
use crate::parallel::run_parts;
use std::ops::Range;

/// Positions per chunk: a chunk's activations (≈ 512 × (2d + Σ hidden) floats) stay in L2.
const CHUNK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Relu,
    Sigmoid,
    /// Per-unit slopes, [`Layer::slope`].
    Prelu,
}

/// A hidden layer `a = act(W x + b)`; `w` is row-major `[out, inp]` as in torch's `Linear`, and
/// `slope` holds the per-unit PReLU slopes (`Some` exactly when `act` is [`Act::Prelu`]).
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    pub w: &'a [f32],
    pub b: &'a [f32],
    pub act: Act,
    pub slope: Option<&'a [f32]>,
}

impl Layer<'_> {
    fn out(&self) -> usize {
        self.b.len()
    }
    fn inp(&self) -> usize {
        self.w.len() / self.b.len()
    }
}

/// The unit: hidden layers (the first over `4·d` inputs), then a linear map to one score.
#[derive(Debug, Clone)]
pub struct Unit<'a> {
    /// Width of `q` and of each `k`.
    pub d: usize,
    pub layers: Vec<Layer<'a>>,
    /// `[last hidden width]`.
    pub out_w: &'a [f32],
    pub out_b: f32,
}

impl Unit<'_> {
    /// Panics on inconsistent shapes: they come from the model's own parameters, not from input.
    fn check(&self) {
        assert!(!self.layers.is_empty(), "DIN unit without hidden layers");
        let mut inp = 4 * self.d;
        for (i, l) in self.layers.iter().enumerate() {
            assert!(!l.b.is_empty() && l.w.len() == l.out() * inp, "DIN unit layer {i}: weight {} for {inp} → {}", l.w.len(), l.out());
            assert_eq!(l.slope.map(<[f32]>::len), (l.act == Act::Prelu).then_some(l.out()), "DIN unit layer {i}: PReLU slopes");
            inp = l.out();
        }
        assert_eq!(self.out_w.len(), inp, "DIN unit output weight");
    }
}

/// What the backward pass needs from the forward pass: the positions and each layer's
/// pre-activations `[count, out]`. Keep one and pass it to every [`forward`]: its buffers are
/// reused (a step's pre-activations are tens of MB; fresh pages cost more than the products).
#[derive(Debug)]
pub struct Saved {
    pub positions: Positions,
    z: Vec<Vec<f32>>,
}

impl Default for Saved {
    fn default() -> Self {
        Saved { positions: Positions::from_mask(&[], 0, 0), z: Vec::new() }
    }
}

/// Gradients of one hidden layer's parameters, shaped as the parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerGrads {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub slope: Option<Vec<f32>>,
}

/// Gradients of the unit's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Grads {
    pub layers: Vec<LayerGrads>,
    pub out_w: Vec<f32>,
    pub out_b: f32,
}

/// The weights rearranged for row-major products: the first layer's `p = Wq + Wd` (`[h, d]`, the
/// per-row term), `wkd = Wk − Wd` and `wp` (`[h, d]`, for `M_qᵀ`), their transposes (`[d, h]`, for
/// `M_q`), and each later layer's `Wᵀ` (`[inp, out]`).
struct Split {
    p: Vec<f32>,
    pt: Vec<f32>,
    wkd: Vec<f32>,
    wp: Vec<f32>,
    wkdt: Vec<f32>,
    wpt: Vec<f32>,
    wt: Vec<Vec<f32>>,
}

/// `x` `[r, c]` row-major → `xᵀ` `[c, r]`.
fn transpose(x: &[f32], r: usize, c: usize) -> Vec<f32> {
    let mut t = vec![0.0; x.len()];
    for i in 0..r {
        for j in 0..c {
            t[j * r + i] = x[i * c + j];
        }
    }
    t
}

impl Split {
    fn new(unit: &Unit) -> Split {
        let (d, w) = (unit.d, unit.layers[0].w);
        let h = unit.layers[0].out();
        let (mut p, mut wkd, mut wp) = (vec![0.0; h * d], vec![0.0; h * d], vec![0.0; h * d]);
        for (o, row) in w.chunks_exact(4 * d).enumerate() {
            let (wq, wk, wdiff, wprod) = (&row[..d], &row[d..2 * d], &row[2 * d..3 * d], &row[3 * d..]);
            for j in 0..d {
                p[o * d + j] = wq[j] + wdiff[j];
                wkd[o * d + j] = wk[j] - wdiff[j];
                wp[o * d + j] = wprod[j];
            }
        }
        let wt = unit.layers.iter().skip(1).map(|l| transpose(l.w, l.out(), l.inp())).collect();
        Split { pt: transpose(&p, h, d), wkdt: transpose(&wkd, h, d), wpt: transpose(&wp, h, d), p, wkd, wp, wt }
    }
}

/// Per-thread scratch, reused across chunks.
#[derive(Default)]
struct Scratch {
    /// `[n, 2d]`: `[k, q ⊙ k]` per position
    x: Vec<f32>,
    z: Vec<Vec<f32>>,
    a: Vec<Vec<f32>>,
    d: Vec<f32>,
    d2: Vec<f32>,
    per_row: Vec<f32>,
    /// A row's `M_q` (`[d, h]`) or `M_qᵀ` (`[h, d]`)
    m: Vec<f32>,
    /// A row's `∂M_q` (`[d, h]`)
    dm: Vec<f32>,
}

fn score(unit: &Unit, a: &[f32]) -> f32 {
    dot(a, unit.out_w) + unit.out_b
}

/// `a · b` over 8 running sums, so that it vectorizes (a single running sum cannot: float
/// addition does not reassociate).
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    let mut acc = [0.0f32; 8];
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    struct Params {
        w: Vec<Vec<f32>>,
        b: Vec<Vec<f32>>,
        slope: Vec<Vec<f32>>,
        out_w: Vec<f32>,
        out_b: f32,
    }

    fn params(d: usize, hidden: &[usize]) -> Params {
        let mut inp = 4 * d;
        let (mut w, mut b, mut slope) = (vec![], vec![], vec![]);
        for (i, &h) in hidden.iter().enumerate() {
            w.push(values(h * inp, 10 + i as u64).iter().map(|v| v * 0.5).collect());
            b.push(values(h, 20 + i as u64));
            slope.push(values(h, 30 + i as u64).iter().map(|v| 0.25 + 0.1 * v).collect());
            inp = h;
        }
        Params { w, b, slope, out_w: values(inp, 40), out_b: 0.3 }
    }

    fn unit<'a>(p: &'a Params, d: usize, act: Act) -> Unit<'a> {
        let layers = (0..p.w.len())
            .map(|i| Layer { w: &p.w[i], b: &p.b[i], act, slope: (act == Act::Prelu).then_some(&p.slope[i][..]) })
            .collect();
        Unit { d, layers, out_w: &p.out_w, out_b: p.out_b }
    }

    /// The unit on one (q, k) pair, straight from the definition: an MLP over [q, k, q − k, q ⊙ k].
    fn naive(u: &Unit, q: &[f32], k: &[f32]) -> f32 {
        let mut x: Vec<f32> = q.iter().chain(k).copied().collect();
        x.extend(q.iter().zip(k).map(|(q, k)| q - k));
        x.extend(q.iter().zip(k).map(|(q, k)| q * k));
        for l in &u.layers {
            let z: Vec<f32> = (0..l.out()).map(|o| l.b[o] + (0..x.len()).map(|j| l.w[o * x.len() + j] * x[j]).sum::<f32>()).collect();
            x = z
                .iter()
                .enumerate()
                .map(|(o, &z)| match l.act {
                    Act::Relu => z.max(0.0),
                    Act::Sigmoid => 1.0 / (1.0 + (-z).exp()),
                    Act::Prelu => if z > 0.0 { z } else { l.slope.unwrap()[o] * z },
                })
                .collect();
        }
        score(u, &x)
    }

    fn fwd(u: &Unit, q: &[f32], keys: &[f32], mask: &[u8], rows: usize, len: usize, threads: usize) -> (Vec<f32>, Saved) {
        let mut scores = vec![f32::NAN; rows * len];
        let mut saved = Saved::default();
        forward(u, q, keys, mask, rows, len, threads, &mut scores, Some(&mut saved));
        (scores, saved)
    }

    /// The gradients, with those of q and the keys.
    fn bwd(u: &Unit, saved: &Saved, q: &[f32], keys: &[f32], g: &[f32], threads: usize) -> (Grads, Vec<f32>, Vec<f32>) {
        let (mut dq, mut dkeys) = (vec![f32::NAN; q.len()], vec![f32::NAN; keys.len()]);
        let grads = backward(u, saved, q, keys, g, threads, &mut dq, &mut dkeys);
        (grads, dq, dkeys)
    }

    const MASK: [u8; 15] = [1, 1, 1, 0, 0, /* */ 0, 0, 0, 0, 0, /* */ 1, 0, 1, 1, 1];

    #[test]
    fn forward_matches_the_definition_and_skips_padding() {
        let (d, rows, len) = (3, 3, 5);
        let p = params(d, &[7, 4]);
        let (q, keys) = (values(rows * d, 1), values(rows * len * d, 2));
        for act in [Act::Relu, Act::Sigmoid, Act::Prelu] {
            let u = unit(&p, d, act);
            for threads in [1, 2, 4] {
                let (s, saved) = fwd(&u, &q, &keys, &MASK, rows, len, threads);
                assert_eq!(saved.positions.count(), 7);
                let mut plain = vec![f32::NAN; rows * len];
                forward(&u, &q, &keys, &MASK, rows, len, threads, &mut plain, None);
                assert_eq!(plain, s, "scores without saving equal those with");
                for r in 0..rows {
                    for l in 0..len {
                        let want = if MASK[r * len + l] == 0 { 0.0 } else { naive(&u, &q[r * d..][..d], &keys[(r * len + l) * d..][..d]) };
                        assert!((s[r * len + l] - want).abs() < 1e-5, "{act:?} {threads} threads ({r}, {l}): {} vs {want}", s[r * len + l]);
                    }
                }
            }
        }
    }

    /// One number of the parameters or inputs, for finite differences.
    #[derive(Clone, Copy)]
    enum Which {
        Q(usize),
        K(usize),
        W(usize, usize),
        B(usize, usize),
        Slope(usize, usize),
        OutW(usize),
        OutB,
    }

    impl Which {
        fn slot<'a>(self, p: &'a mut Params, q: &'a mut [f32], k: &'a mut [f32]) -> &'a mut f32 {
            match self {
                Which::Q(i) => &mut q[i],
                Which::K(i) => &mut k[i],
                Which::W(l, i) => &mut p.w[l][i],
                Which::B(l, i) => &mut p.b[l][i],
                Which::Slope(l, i) => &mut p.slope[l][i],
                Which::OutW(i) => &mut p.out_w[i],
                Which::OutB => &mut p.out_b,
            }
        }
    }

    /// Central differences of L = Σ g ⊙ scores in f64 through the naive definition.
    #[test]
    fn backward_matches_finite_differences() {
        let (d, rows, len) = (3, 3, 5);
        let g = values(rows * len, 7);
        let loss = |p: &Params, q: &[f32], keys: &[f32], act: Act| -> f64 {
            let u = unit(p, d, act);
            let mut l = 0.0f64;
            for r in 0..rows {
                for c in 0..len {
                    if MASK[r * len + c] != 0 {
                        l += g[r * len + c] as f64 * naive(&u, &q[r * d..][..d], &keys[(r * len + c) * d..][..d]) as f64;
                    }
                }
            }
            l
        };
        let eps = 1e-2f32;
        let close = |what: &str, got: f32, want: f64| {
            assert!((got as f64 - want).abs() < 2e-3 * (1.0 + want.abs()), "{what}: kernel {got}, finite differences {want}");
        };
        // Sigmoid and a PReLU whose inputs stay off 0 are smooth enough for central differences.
        for act in [Act::Sigmoid, Act::Prelu] {
            let mut p = params(d, &[6, 4]);
            let (mut q, mut keys) = (values(rows * d, 1), values(rows * len * d, 2));
            let (_, saved) = fwd(&unit(&p, d, act), &q, &keys, &MASK, rows, len, 2);
            let (grads, dq, dk) = bwd(&unit(&p, d, act), &saved, &q, &keys, &g, 2);
            let mut fd = |which: Which| {
                let old = *which.slot(&mut p, &mut q, &mut keys);
                *which.slot(&mut p, &mut q, &mut keys) = old + eps;
                let up = loss(&p, &q, &keys, act);
                *which.slot(&mut p, &mut q, &mut keys) = old - eps;
                let down = loss(&p, &q, &keys, act);
                *which.slot(&mut p, &mut q, &mut keys) = old;
                (up - down) / (2.0 * eps as f64)
            };
            for i in [0, 4, 8] {
                close(&format!("{act:?} q[{i}]"), dq[i], fd(Which::Q(i)));
            }
            for i in [0, 5, 31, 44] {
                close(&format!("{act:?} keys[{i}]"), dk[i], fd(Which::K(i)));
            }
            for i in [0, 3, 4, 7, 8, 11, 13, 23] {
                close(&format!("{act:?} w0[{i}]"), grads.layers[0].w[i], fd(Which::W(0, i)));
            }
            for i in [0, 5, 23] {
                close(&format!("{act:?} w1[{i}]"), grads.layers[1].w[i], fd(Which::W(1, i)));
            }
            close(&format!("{act:?} b0[2]"), grads.layers[0].b[2], fd(Which::B(0, 2)));
            close(&format!("{act:?} out_w[1]"), grads.out_w[1], fd(Which::OutW(1)));
            close(&format!("{act:?} out_b"), grads.out_b, fd(Which::OutB));
            if act == Act::Prelu {
                close("slope0[1]", grads.layers[0].slope.as_ref().unwrap()[1], fd(Which::Slope(0, 1)));
            }
            // Padded positions get nothing.
            assert!(dk[3 * d..5 * d].iter().chain(&dk[5 * d..10 * d]).all(|&v| v == 0.0));
        }
    }

    #[test]
    fn thread_counts_agree() {
        let (d, rows, len) = (4, 37, 9);
        let p = params(d, &[8, 5]);
        let (q, keys) = (values(rows * d, 3), values(rows * len * d, 4));
        let mask: Vec<u8> = values(rows * len, 5).iter().map(|v| (*v > -0.5) as u8).collect();
        let g = values(rows * len, 6);
        let u = unit(&p, d, Act::Prelu);
        let run = |t| {
            let (s, saved) = fwd(&u, &q, &keys, &mask, rows, len, t);
            (s, bwd(&u, &saved, &q, &keys, &g, t))
        };
        let (s1, (g1, dq1, dk1)) = run(1);
        for t in [2, 3, 64] {
            let (s, (gt, dq, dk)) = run(t);
            assert_eq!(s, s1, "scores do not depend on threads");
            assert_eq!(dq, dq1);
            assert_eq!(dk, dk1);
            for (a, b) in gt.layers.iter().zip(&g1.layers) {
                assert!(a.w.iter().zip(&b.w).all(|(x, y)| (x - y).abs() < 1e-5));
            }
        }
    }

    #[test]
    fn empty_batches_and_rows() {
        let p = params(2, &[3]);
        let u = unit(&p, 2, Act::Relu);
        let (s, saved) = fwd(&u, &[], &[], &[], 0, 4, 2);
        assert!(s.is_empty());
        let (g, dq, _) = bwd(&u, &saved, &[], &[], &[], 2);
        assert!(dq.is_empty() && g.layers[0].w.iter().all(|&v| v == 0.0));
        let (s, saved) = fwd(&u, &[0.5; 4], &[0.5; 8], &[0; 4], 2, 2, 2);
        assert_eq!(s, vec![0.0; 4]);
        let (_, dq, dk) = bwd(&u, &saved, &[0.5; 4], &[0.5; 8], &[1.0; 4], 2);
        assert!(dq.iter().chain(&dk).all(|&v| v == 0.0), "no history, no gradient");
    }

    #[test]
    fn pooling_and_its_backward_match_the_definition() {
        let (rows, len, dv) = (3, 4, 5);
        let scores = values(rows * len, 21);
        let v = values(rows * len * dv, 22);
        let g = values(rows * dv, 23);
        let mask = [1u8, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0];
        let mut out = vec![9.0; rows * dv];
        pool(&scores, &v, &mask, rows, len, dv, 2, &mut out);
        let mut ds = vec![9.0; rows * len];
        pool_dscores(&v, &mask, rows, len, dv, &g, 2, &mut ds);
        let mut dvs = vec![9.0; rows * len * dv];
        pool_dvalues(&scores, &mask, rows, len, dv, &g, 2, &mut dvs, false);
        let base = values(rows * len * dv, 24);
        let mut acc = base.clone();
        pool_dvalues(&scores, &mask, rows, len, dv, &g, 2, &mut acc, true);
        for r in 0..rows {
            for c in 0..dv {
                let want: f32 = (0..len).filter(|&l| mask[r * len + l] != 0).map(|l| scores[r * len + l] * v[(r * len + l) * dv + c]).sum();
                assert!((out[r * dv + c] - want).abs() < 1e-5, "out[{r}, {c}]");
            }
            for l in 0..len {
                let k = r * len + l;
                let on = mask[k] != 0;
                let want: f32 = if on { (0..dv).map(|c| g[r * dv + c] * v[k * dv + c]).sum() } else { 0.0 };
                assert!((ds[k] - want).abs() < 1e-5, "dscores[{r}, {l}]");
                for c in 0..dv {
                    let want = if on { scores[k] * g[r * dv + c] } else { 0.0 };
                    assert_eq!(dvs[k * dv + c], want, "dvalues[{r}, {l}, {c}]");
                    assert_eq!(acc[k * dv + c], base[k * dv + c] + want, "accumulated dvalues[{r}, {l}, {c}]");
                }
            }
        }
        // The row with no history pools to zero.
        assert!(out[2 * dv..].iter().all(|&o| o == 0.0));
        // Many rows over several threads: the same as one thread.
        let (rows, len, dv) = (150, 7, 3);
        let (scores, v, g) = (values(rows * len, 31), values(rows * len * dv, 32), values(rows * dv, 33));
        let mask: Vec<u8> = (0..rows * len).map(|i| (i % 3 != 0) as u8).collect();
        let run = |threads: usize| {
            let (mut o, mut d, mut dv_) = (vec![0.0; rows * dv], vec![0.0; rows * len], vec![0.0; rows * len * dv]);
            pool(&scores, &v, &mask, rows, len, dv, threads, &mut o);
            pool_dscores(&v, &mask, rows, len, dv, &g, threads, &mut d);
            pool_dvalues(&scores, &mask, rows, len, dv, &g, threads, &mut dv_, false);
            (o, d, dv_)
        };
        assert_eq!(run(1), run(3));
    }
}
