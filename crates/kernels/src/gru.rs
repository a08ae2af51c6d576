//! DIEN's recurrences (a GRU, and the AUGRU whose update gate an attention weight scales) over
//! masked histories, forward and backward, with every step of every row in one call.
//!
//! Composed of libtorch operators, a step costs about fifteen small operators forward and as many
//! backward, each dispatched and each a pass over memory; here a step is one small GEMM for the
//! hidden projections and one pass over the gates, per block of rows, on one thread per block.
//!
//! Shapes: `rows` histories of `len` steps, `hidden` units (`H`). `gi` `[rows, len, 3H]` is the
//! input's share of the gates (`x·W_ihᵀ + b_ih`, computed by the caller), `w_hh` `[3H, H]` and
//! `b_hh` `[3H]` as `torch.nn.GRU` holds them (gates reset, update, new), `keep` `[rows, len]`
//! nonzero at present steps, `att` `[rows, len]` the AUGRU's weights. The state starts at zero
//! and a step that `keep` does not mark carries it unchanged. Per step, with `gh = W_hh·h + b_hh`:
//! `r = σ(gi_r + gh_r)`, `z = σ(gi_z + gh_z)`, `n = tanh(gi_n + r ⊙ gh_n)`, then
//! `h' = n + z ⊙ (h − n)` (GRU) or `h' = h + a·z ⊙ (n − h)` (AUGRU).
use crate::din::{row_parts, split_mut};
use crate::gemm::{gemm, mat};
use crate::parallel::run_parts;
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub rows: usize,
    pub len: usize,
    pub hidden: usize,
}

impl Shape {
    fn check(&self, gi: &[f32], w_hh: &[f32], b_hh: &[f32], keep: &[u8], att: Option<&[f32]>) {
        let (n, h) = (self.rows * self.len, self.hidden);
        assert!(
            gi.len() == n * 3 * h && w_hh.len() == 3 * h * h && b_hh.len() == 3 * h && keep.len() == n && att.is_none_or(|a| a.len() == n),
            "GRU kernel: shapes differ"
        );
    }
}

/// What [`backward`] needs of a forward pass: per row, step and unit, `r`, `z`, `n` and `gh_n`.
#[derive(Debug, Default)]
pub struct Saved {
    r: Vec<f32>,
    z: Vec<f32>,
    n: Vec<f32>,
    ghn: Vec<f32>,
}

/// Every step's state into `states` `[rows, len, H]` (a step that `keep` does not mark holds the
/// state carried through it); with `saved`, also what [`backward`] needs.
#[allow(clippy::too_many_arguments)]
pub fn forward(s: Shape, gi: &[f32], w_hh: &[f32], b_hh: &[f32], keep: &[u8], att: Option<&[f32]>, threads: usize, states: &mut [f32], saved: Option<&mut Saved>) {
    s.check(gi, w_hh, b_hh, keep, att);
    let h = s.hidden;
    assert_eq!(states.len(), s.rows * s.len * h, "GRU kernel: states shape");
    // W_hhᵀ [H, 3H], row-major, the right operand of h·W_hhᵀ.
    let wt: Vec<f32> = (0..h).flat_map(|k| (0..3 * h).map(move |p| (k, p))).map(|(k, p)| w_hh[p * h + k]).collect();
    let ranges = row_parts(s.rows, threads);
    let per_row = s.len * h;
    let lens: Vec<usize> = ranges.iter().map(|r| r.len() * per_row).collect();
    let outs = split_mut(states, lens.iter().copied());
    let saves: Vec<Option<[&mut [f32]; 4]>> = match saved {
        Some(sv) => {
            let n = s.rows * per_row;
            for v in [&mut sv.r, &mut sv.z, &mut sv.n, &mut sv.ghn] {
                v.clear();
                v.resize(n, 0.0);
            }
            let mut r = split_mut(&mut sv.r, lens.iter().copied()).into_iter();
            let mut z = split_mut(&mut sv.z, lens.iter().copied()).into_iter();
            let mut nn = split_mut(&mut sv.n, lens.iter().copied()).into_iter();
            let mut g = split_mut(&mut sv.ghn, lens.iter().copied()).into_iter();
            (0..ranges.len()).map(|_| Some([r.next().unwrap(), z.next().unwrap(), nn.next().unwrap(), g.next().unwrap()])).collect()
        }
        None => (0..ranges.len()).map(|_| None).collect(),
    };
    let parts: Vec<_> = ranges.into_iter().zip(outs).zip(saves).collect();
    run_parts(parts, |((rows, out), save)| forward_rows(s, rows, gi, &wt, b_hh, keep, att, out, save));
}

#[allow(clippy::too_many_arguments)]
fn forward_rows(s: Shape, rows: Range<usize>, gi: &[f32], wt: &[f32], b_hh: &[f32], keep: &[u8], att: Option<&[f32]>, out: &mut [f32], mut save: Option<[&mut [f32]; 4]>) {
    let (h, len, m) = (s.hidden, s.len, rows.len());
    let h3 = 3 * h;
    let mut state = vec![0.0f32; m * h];
    let mut gh = vec![0.0f32; m * h3];
    for t in 0..len {
        gemm(m, h, h3, mat(&state, h, 1), wt, h3, 0.0, &mut gh, h3);
        for i in 0..m {
            let k = (rows.start + i) * len + t;
            let on = keep[k] != 0;
            let a = att.map(|a| a[k]);
            let g = &gi[k * h3..][..h3];
            let local = (i * len + t) * h;
            for j in 0..h {
                let ghr = gh[i * h3 + j] + b_hh[j];
                let ghz = gh[i * h3 + h + j] + b_hh[h + j];
                let ghn = gh[i * h3 + 2 * h + j] + b_hh[2 * h + j];
                let r = sigmoid(g[j] + ghr);
                let z = sigmoid(g[h + j] + ghz);
                let n = (g[2 * h + j] + r * ghn).tanh();
                let hp = state[i * h + j];
                let next = match (on, a) {
                    (false, _) => hp,
                    (true, None) => n + z * (hp - n),
                    (true, Some(a)) => hp + a * z * (n - hp),
                };
                state[i * h + j] = next;
                out[local + j] = next;
                if let Some([sr, sz, sn, sg]) = &mut save {
                    sr[local + j] = r;
                    sz[local + j] = z;
                    sn[local + j] = n;
                    sg[local + j] = ghn;
                }
            }
        }
    }
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Gradients of [`backward`]: of `gi` `[rows, len, 3H]`, `w_hh`, `b_hh`, and of `att` (AUGRU).
#[derive(Debug)]
pub struct Grads {
    pub gi: Vec<f32>,
    pub w_hh: Vec<f32>,
    pub b_hh: Vec<f32>,
    pub att: Option<Vec<f32>>,
}

/// The gradients given `dstates = ∂L/∂states` `[rows, len, H]`, from the forward pass's `states`
/// and `saved` on the same inputs.
#[allow(clippy::too_many_arguments)]
pub fn backward(s: Shape, w_hh: &[f32], keep: &[u8], att: Option<&[f32]>, states: &[f32], saved: &Saved, dstates: &[f32], threads: usize) -> Grads {
    let (h, len) = (s.hidden, s.len);
    let n = s.rows * len;
    assert!(states.len() == n * h && dstates.len() == n * h && saved.r.len() == n * h && keep.len() == n && w_hh.len() == 3 * h * h, "GRU kernel backward: shapes differ");
    let ranges = row_parts(s.rows, threads);
    let mut dgi = vec![0.0f32; n * 3 * h];
    let mut datt = att.map(|_| vec![0.0f32; n]);
    let gi_parts = split_mut(&mut dgi, ranges.iter().map(|r| r.len() * len * 3 * h));
    let att_parts: Vec<Option<&mut [f32]>> = match &mut datt {
        Some(d) => split_mut(d, ranges.iter().map(|r| r.len() * len)).into_iter().map(Some).collect(),
        None => ranges.iter().map(|_| None).collect(),
    };
    let parts: Vec<_> = ranges.into_iter().zip(gi_parts).zip(att_parts).collect();
    let sums = run_parts(parts, |((rows, dgi), datt)| backward_rows(s, rows, w_hh, keep, att, states, saved, dstates, dgi, datt));
    let mut w = vec![0.0f32; 3 * h * h];
    let mut b = vec![0.0f32; 3 * h];
    for (pw, pb) in sums {
        w.iter_mut().zip(&pw).for_each(|(a, x)| *a += x);
        b.iter_mut().zip(&pb).for_each(|(a, x)| *a += x);
    }
    Grads { gi: dgi, w_hh: w, b_hh: b, att: datt }
}

#[allow(clippy::too_many_arguments)]
fn backward_rows(
    s: Shape,
    rows: Range<usize>,
    w_hh: &[f32],
    keep: &[u8],
    att: Option<&[f32]>,
    states: &[f32],
    saved: &Saved,
    dstates: &[f32],
    dgi: &mut [f32],
    mut datt: Option<&mut [f32]>,
) -> (Vec<f32>, Vec<f32>) {
    let (h, len, m) = (s.hidden, s.len, rows.len());
    let h3 = 3 * h;
    let mut dh = vec![0.0f32; m * h];
    let mut dgh = vec![0.0f32; m * h3];
    let mut dw = vec![0.0f32; h3 * h];
    let mut db = vec![0.0f32; h3];
    // This part's rows of `states`: row i, step t at (i·len + t)·H.
    let own = &states[rows.start * len * h..rows.end * len * h];
    for t in (0..len).rev() {
        for i in 0..m {
            let k = (rows.start + i) * len + t;
            let at = k * h;
            for j in 0..h {
                dh[i * h + j] += dstates[at + j];
            }
            let local_gi = (i * len + t) * h3;
            if keep[k] == 0 {
                // The state passes through: dh stays, the gates get nothing.
                dgh[i * h3..][..h3].fill(0.0);
                continue;
            }
            let a = att.map(|a| a[k]);
            let mut da = 0.0f32;
            for j in 0..h {
                let (r, z, nv, ghn) = (saved.r[at + j], saved.z[at + j], saved.n[at + j], saved.ghn[at + j]);
                let hp = if t > 0 { states[at - h + j] } else { 0.0 };
                let d = dh[i * h + j];
                let (dn, dz, dhp) = match a {
                    None => (d * (1.0 - z), d * (hp - nv), d * z),
                    Some(a) => {
                        let du = d * (nv - hp);
                        da += du * z;
                        (d * a * z, du * a, d * (1.0 - a * z))
                    }
                };
                let dan = dn * (1.0 - nv * nv);
                let dar = dan * ghn * r * (1.0 - r);
                let daz = dz * z * (1.0 - z);
                dgi[local_gi + j] = dar;
                dgi[local_gi + h + j] = daz;
                dgi[local_gi + 2 * h + j] = dan;
                dgh[i * h3 + j] = dar;
                dgh[i * h3 + h + j] = daz;
                dgh[i * h3 + 2 * h + j] = dan * r;
                dh[i * h + j] = dhp;
            }
            if let Some(d) = &mut datt {
                d[i * len + t] = da;
            }
        }
        // dh_prev += dgh · W_hh; dW_hh += dghᵀ · h_prev; db_hh += Σ dgh.
        gemm(m, h3, h, mat(&dgh, h3, 1), w_hh, h, 1.0, &mut dh, h);
        if t > 0 {
            gemm(h3, m, h, mat(&dgh, 1, h3), &own[(t - 1) * h..], len * h, 1.0, &mut dw, h);
        }
        for row in dgh.chunks_exact(h3) {
            db.iter_mut().zip(row).for_each(|(b, g)| *b += g);
        }
    }
    (dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The recurrence in f64, one row and one step at a time: the reference of the tests.
    fn reference(s: Shape, gi: &[f64], w: &[f64], b: &[f64], keep: &[u8], att: Option<&[f64]>) -> Vec<f64> {
        let h = s.hidden;
        let mut out = vec![0.0; s.rows * s.len * h];
        for row in 0..s.rows {
            let mut st = vec![0.0f64; h];
            for t in 0..s.len {
                let k = row * s.len + t;
                if keep[k] != 0 {
                    let gh: Vec<f64> = (0..3 * h).map(|p| b[p] + (0..h).map(|q| w[p * h + q] * st[q]).sum::<f64>()).collect();
                    let g = &gi[k * 3 * h..][..3 * h];
                    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
                    st = (0..h)
                        .map(|j| {
                            let r = sig(g[j] + gh[j]);
                            let z = sig(g[h + j] + gh[h + j]);
                            let n = (g[2 * h + j] + r * gh[2 * h + j]).tanh();
                            match att {
                                None => (1.0 - z) * n + z * st[j],
                                Some(a) => (1.0 - a[k] * z) * st[j] + a[k] * z * n,
                            }
                        })
                        .collect();
                }
                out[k * h..][..h].copy_from_slice(&st);
            }
        }
        out
    }

    fn f64s(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&x| x as f64).collect()
    }

    /// Forward against the f64 reference, and every gradient against central differences of
    /// `Σ states ⊙ g` through it, for both cells, on rows that are full, left-padded, holed and
    /// empty, over 1 and 3 threads (row blocks).
    #[test]
    fn forward_and_gradients_match_the_reference() {
        let s = Shape { rows: 70, len: 5, hidden: 3 };
        let n = s.rows * s.len;
        let h = s.hidden;
        let gi = values(n * 3 * h, 1);
        let w: Vec<f32> = values(3 * h * h, 2);
        let b = values(3 * h, 3);
        let keep: Vec<u8> = (0..n).map(|k| match (k / s.len) % 4 {
            0 => 1,
            1 => (k % s.len >= 2) as u8,
            2 => (k % 2 == 0) as u8,
            _ => 0,
        }).collect();
        let att: Vec<f32> = values(n, 4).iter().map(|x| (x + 1.0) / 2.0).collect();
        let g = values(n * h, 5);
        for cell_att in [None, Some(&att[..])] {
            for threads in [1, 3] {
                let mut states = vec![0.0; n * h];
                let mut saved = Saved::default();
                forward(s, &gi, &w, &b, &keep, cell_att, threads, &mut states, Some(&mut saved));
                let want = reference(s, &f64s(&gi), &f64s(&w), &f64s(&b), &keep, cell_att.map(f64s).as_deref());
                let d = states.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
                assert!(d < 1e-5, "forward differs by {d} (attention {}, {threads} threads)", cell_att.is_some());
                let grads = backward(s, &w, &keep, cell_att, &states, &saved, &g, threads);
                let loss = |gi: &[f64], w: &[f64], b: &[f64], a: Option<&[f64]>| -> f64 {
                    reference(s, gi, w, b, &keep, a).iter().zip(&g).map(|(x, g)| x * *g as f64).sum()
                };
                let (gi64, w64, b64, a64) = (f64s(&gi), f64s(&w), f64s(&b), f64s(&att));
                let a_of = |a: &Vec<f64>| cell_att.map(|_| a.clone());
                let eps = 1e-6;
                let fd = |which: usize, idx: usize| {
                    let mut p = [gi64.clone(), w64.clone(), b64.clone(), a64.clone()];
                    let mut m = p.clone();
                    p[which][idx] += eps;
                    m[which][idx] -= eps;
                    (loss(&p[0], &p[1], &p[2], a_of(&p[3]).as_deref()) - loss(&m[0], &m[1], &m[2], a_of(&m[3]).as_deref())) / (2.0 * eps)
                };
                let check = |name: &str, got: &[f32], which: usize| {
                    for idx in (0..got.len()).step_by(got.len() / 40 + 1) {
                        let want = fd(which, idx);
                        assert!((got[idx] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "{name}[{idx}]: {} vs {want} (attention {})", got[idx], cell_att.is_some());
                    }
                };
                check("gi", &grads.gi, 0);
                check("w_hh", &grads.w_hh, 1);
                check("b_hh", &grads.b_hh, 2);
                if let Some(da) = &grads.att {
                    check("att", da, 3);
                }
            }
        }
    }
}
