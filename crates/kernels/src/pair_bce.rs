//! DIEN's auxiliary loss with Luong's general score, forward and backward in one pass over the
//! histories: each state `h_t` scores the next behavior `e_{t+1}` (label 1) and its negative
//! `n_{t+1}` (label 0) as `h_t·W·e`, over the pairs of present consecutive events.
//!
//! Composed of libtorch operators, this loss was about thirty passes over `[B, L, D]`-sized
//! tensors (the shifted views' copies, the stacked keys, the broadcast product and its sum, each
//! once more backward): at batch 1,024 on ml-100k about 30 ms of DIEN's 110 ms step. Here it is
//! one GEMM for `H·W` per block of rows and a pass over the pairs; backward makes `H·W` again
//! (it is not kept between the passes), a pass over the pairs and two GEMMs.
//!
//! Shapes: `rows` histories of `len` steps, `dim` (`D`) wide. `states`, `items` and `negs`
//! `[rows, len, D]` row-major; `w` `[D, D]` row-major, the score being `Σᵢⱼ hᵢ·w[i, j]·eⱼ`; `keep`
//! `[rows, len]` nonzero at present events. The pair `(r, t)`, `t < len − 1`, counts when events
//! `t` and `t + 1` are both present. The loss is `Σ softplus(−h_t·W·e_{t+1}) + softplus(h_t·W·n_{t+1})`
//! over those pairs; [`forward`] returns that sum and the pair count, the caller divides.
use crate::din::dot;
use crate::gemm::{gemm, mat, transposed};
use crate::parallel::{row_parts, run_parts, split_mut};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub rows: usize,
    pub len: usize,
    pub dim: usize,
}

impl Shape {
    fn check(&self, states: &[f32], items: &[f32], negs: &[f32], w: &[f32], keep: &[u8]) {
        let n = self.rows * self.len;
        assert!(
            states.len() == n * self.dim && items.len() == n * self.dim && negs.len() == n * self.dim && w.len() == self.dim * self.dim && keep.len() == n,
            "pair BCE kernel: shapes differ"
        );
    }
}

/// Whether pair `(row, t)` counts (`k = row·len + t`).
fn pair_on(keep: &[u8], len: usize, k: usize) -> bool {
    k % len + 1 < len && keep[k] != 0 && keep[k + 1] != 0
}

/// `ln(1 + eˣ)`, stable at both ends.
fn softplus(x: f32) -> f64 {
    (x.max(0.0) + (-x.abs()).exp().ln_1p()) as f64
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `states[rows] · W` for one block of rows, all steps (the last step's product is unused).
fn hw(s: Shape, states: &[f32], w: &[f32], rows: &std::ops::Range<usize>) -> Vec<f32> {
    let d = s.dim;
    let m = rows.len() * s.len;
    let mut out = vec![0.0f32; m * d];
    gemm(m, d, d, mat(&states[rows.start * s.len * d..][..m * d], d, 1), w, d, 0.0, &mut out, d);
    out
}

/// The loss summed over the present pairs (in f64), and their count.
pub fn forward(s: Shape, states: &[f32], items: &[f32], negs: &[f32], w: &[f32], keep: &[u8], threads: usize) -> (f64, usize) {
    s.check(states, items, negs, w, keep);
    let d = s.dim;
    let parts = run_parts(row_parts(s.rows, threads), |rows| {
        let hw = hw(s, states, w, &rows);
        let (mut sum, mut count) = (0.0f64, 0usize);
        for k in rows.start * s.len..rows.end * s.len {
            if !pair_on(keep, s.len, k) {
                continue;
            }
            let q = &hw[(k - rows.start * s.len) * d..][..d];
            sum += softplus(-dot(q, &items[(k + 1) * d..][..d])) + softplus(dot(q, &negs[(k + 1) * d..][..d]));
            count += 1;
        }
        (sum, count)
    });
    parts.into_iter().fold((0.0, 0), |(s, c), (ps, pc)| (s + ps, c + pc))
}

/// The gradients of `scale ×` the summed loss: into `dstates`, `ditems`, `dnegs` (`[rows, len,
/// D]`, every element written: zero where no pair reads it) and returned for `w`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    s: Shape,
    states: &[f32],
    items: &[f32],
    negs: &[f32],
    w: &[f32],
    keep: &[u8],
    scale: f32,
    threads: usize,
    dstates: &mut [f32],
    ditems: &mut [f32],
    dnegs: &mut [f32],
) -> Vec<f32> {
    s.check(states, items, negs, w, keep);
    let d = s.dim;
    let n = s.rows * s.len * d;
    assert!(dstates.len() == n && ditems.len() == n && dnegs.len() == n, "pair BCE kernel: gradient shapes");
    // The right operand of dH = dHW·Wᵀ.
    let wt = transposed(w, d, d);
    let ranges = row_parts(s.rows, threads);
    let lens: Vec<usize> = ranges.iter().map(|r| r.len() * s.len * d).collect();
    let parts: Vec<_> = ranges
        .into_iter()
        .zip(split_mut(dstates, lens.iter().copied()))
        .zip(split_mut(ditems, lens.iter().copied()))
        .zip(split_mut(dnegs, lens.iter().copied()))
        .map(|(((r, a), b), c)| (r, a, b, c))
        .collect();
    let dws = run_parts(parts, |(rows, dst, dit, dng)| {
        let first = rows.start * s.len;
        let m = rows.len() * s.len;
        let hw = hw(s, states, w, &rows);
        let mut dhw = vec![0.0f32; m * d];
        dit.fill(0.0);
        dng.fill(0.0);
        for k in first..first + m {
            if !pair_on(keep, s.len, k) {
                continue;
            }
            let local = k - first;
            let q = &hw[local * d..][..d];
            let (pos, neg) = (&items[(k + 1) * d..][..d], &negs[(k + 1) * d..][..d]);
            // ∂softplus(−x)/∂x = σ(x) − 1, ∂softplus(x)/∂x = σ(x).
            let gp = (sigmoid(dot(q, pos)) - 1.0) * scale;
            let gn = sigmoid(dot(q, neg)) * scale;
            let at = (local + 1) * d;
            for j in 0..d {
                dit[at + j] = gp * q[j];
                dng[at + j] = gn * q[j];
                dhw[local * d + j] = gp * pos[j] + gn * neg[j];
            }
        }
        // dH = dHW·Wᵀ (zero where no pair: those rows of dHW are zero), dW = Hᵀ·dHW.
        gemm(m, d, d, mat(&dhw, d, 1), &wt, d, 0.0, dst, d);
        let mut dw = vec![0.0f32; d * d];
        gemm(d, m, d, mat(&states[first * d..][..m * d], 1, d), &dhw, d, 0.0, &mut dw, d);
        dw
    });
    let mut dw = vec![0.0f32; d * d];
    for part in dws {
        for (a, b) in dw.iter_mut().zip(part) {
            *a += b;
        }
    }
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The loss in f64, pair by pair, from the formula: the reference of the tests.
    fn reference(s: Shape, p: &[Vec<f64>; 4], keep: &[u8]) -> (f64, usize) {
        let [st, it, ng, w] = p;
        let d = s.dim;
        let score = |k: usize, e: &[f64]| -> f64 { (0..d).map(|i| (0..d).map(|j| st[k * d + i] * w[i * d + j] * e[(k + 1) * d + j]).sum::<f64>()).sum() };
        let sp = |x: f64| (1.0 + x.exp()).ln();
        let (mut sum, mut count) = (0.0, 0);
        for r in 0..s.rows {
            for t in 0..s.len - 1 {
                let k = r * s.len + t;
                if keep[k] != 0 && keep[k + 1] != 0 {
                    sum += sp(-score(k, it)) + sp(score(k, ng));
                    count += 1;
                }
            }
        }
        (sum, count)
    }

    /// Loss and count against the f64 reference, and every gradient against central differences
    /// of it, on full, left-padded, holed and empty rows, over 1 and 3 threads.
    #[test]
    fn loss_and_gradients_match_the_reference() {
        let s = Shape { rows: 70, len: 5, dim: 4 };
        let n = s.rows * s.len * s.dim;
        let mut p: [Vec<f32>; 4] = [values(n, 1), values(n, 2), values(n, 3), values(s.dim * s.dim, 4)];
        // Larger scores, so that both sigmoid tails are exercised.
        for v in &mut p[3] {
            *v *= 3.0;
        }
        let keep: Vec<u8> = (0..s.rows * s.len).map(|k| match (k / s.len) % 4 {
            0 => 1,
            1 => (k % s.len >= (k / s.len / 4) % s.len) as u8,
            2 => (k % 2 == 0) as u8,
            _ => 0,
        }).collect();
        let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let pd: [Vec<f64>; 4] = [f64s(&p[0]), f64s(&p[1]), f64s(&p[2]), f64s(&p[3])];
        let (want, want_count) = reference(s, &pd, &keep);
        assert!(want_count > 0 && want_count < s.rows * (s.len - 1));
        for threads in [1, 3] {
            let (sum, count) = forward(s, &p[0], &p[1], &p[2], &p[3], &keep, threads);
            assert_eq!(count, want_count);
            assert!((sum - want).abs() < 1e-5 * want, "loss {sum} against {want}");
            let scale = 0.7f32;
            let (mut g0, mut g1, mut g2) = (vec![f32::NAN; n], vec![f32::NAN; n], vec![f32::NAN; n]);
            let dw = backward(s, &p[0], &p[1], &p[2], &p[3], &keep, scale, threads, &mut g0, &mut g1, &mut g2);
            let got = [g0, g1, g2, dw];
            for (which, g) in got.iter().enumerate() {
                for (i, &gi) in g.iter().enumerate() {
                    let eps = 1e-5;
                    let mut plus = pd.clone();
                    plus[which][i] += eps;
                    let mut minus = pd.clone();
                    minus[which][i] -= eps;
                    let fd = scale as f64 * (reference(s, &plus, &keep).0 - reference(s, &minus, &keep).0) / (2.0 * eps);
                    assert!((gi as f64 - fd).abs() < 1e-4, "input {which}, element {i}, threads {threads}: {gi} against {fd}");
                }
            }
        }
    }
}
