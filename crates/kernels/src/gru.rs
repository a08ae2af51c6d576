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
use crate::din::{avx2_dispatch, row_parts, split_mut};
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
/// A caller may hand the same one to the next forward pass, which then reuses its memory.
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
            // Every element is written below: a reused buffer (see [`Saved`]) is only resized.
            for v in [&mut sv.r, &mut sv.z, &mut sv.n, &mut sv.ghn] {
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

/// A block's rows by how far their steps reach: `ends[i]`, one past row `i`'s last kept step (0
/// for a row with none), and the rows ordered by it, farthest first. Histories are left-aligned,
/// so past its end a row only carries its state: at step `t` the rows still running are a prefix
/// of the order, and the step's GEMM and gates cover that prefix alone.
fn by_reach(keep: &[u8], rows: &Range<usize>, len: usize) -> (Vec<usize>, Vec<usize>) {
    let ends: Vec<usize> = rows.clone().map(|row| keep[row * len..][..len].iter().rposition(|&k| k != 0).map_or(0, |t| t + 1)).collect();
    let mut order: Vec<usize> = (0..ends.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(ends[i]));
    (ends, order)
}

#[allow(clippy::too_many_arguments)]
fn forward_rows(s: Shape, rows: Range<usize>, gi: &[f32], wt: &[f32], b_hh: &[f32], keep: &[u8], att: Option<&[f32]>, out: &mut [f32], mut save: Option<[&mut [f32]; 4]>) {
    let (h, len, m) = (s.hidden, s.len, rows.len());
    let h3 = 3 * h;
    let (ends, order) = by_reach(keep, &rows, len);
    // States in `order`: position p holds row order[p].
    let mut state = vec![0.0f32; m * h];
    let mut gh = vec![0.0f32; m * h3];
    // Where the gates go when nothing is saved.
    let mut scratch = vec![0.0f32; 4 * h];
    let mut running = m;
    for t in 0..len {
        while running > 0 && ends[order[running - 1]] <= t {
            running -= 1;
        }
        if running == 0 {
            break;
        }
        gemm(running, h, h3, mat(&state, h, 1), wt, h3, 0.0, &mut gh, h3);
        for (p, &i) in order[..running].iter().enumerate() {
            let k = (rows.start + i) * len + t;
            let local = (i * len + t) * h;
            let (r, rest) = match &mut save {
                Some([sr, sz, sn, sg]) => ([&mut sr[local..local + h], &mut sz[local..local + h]], [&mut sn[local..local + h], &mut sg[local..local + h]]),
                None => {
                    let (a, b) = scratch.split_at_mut(2 * h);
                    let (r, z) = a.split_at_mut(h);
                    let (n, g) = b.split_at_mut(h);
                    ([r, z], [n, g])
                }
            };
            let [r, z] = r;
            let [n, ghn] = rest;
            let a = att.map_or(1.0, |a| a[k]);
            step(h, &gi[k * h3..], &gh[p * h3..], b_hh, &mut state[p * h..], a, att.is_some(), keep[k] != 0, &mut out[local..], r, z, n, ghn);
        }
    }
    // Past its end a row's state is carried unchanged to the last step. (The gates saved there
    // are never read: backward reads them at kept steps only.)
    for (p, &i) in order.iter().enumerate() {
        for t in ends[i]..len {
            out[(i * len + t) * h..][..h].copy_from_slice(&state[p * h..][..h]);
        }
    }
}

avx2_dispatch! {
    /// One row's step: the gates into `r`, `z`, `n`, `ghn` and the new state into `state` and
    /// `out` (the old state kept where `on` is false).
    fn step(h: usize, gi: &[f32], gh: &[f32], b: &[f32], state: &mut [f32], a: f32, augru: bool, on: bool, out: &mut [f32], r: &mut [f32], z: &mut [f32], n: &mut [f32], ghn: &mut [f32]) => step_body
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step_body(h: usize, gi: &[f32], gh: &[f32], b: &[f32], state: &mut [f32], a: f32, augru: bool, on: bool, out: &mut [f32], r: &mut [f32], z: &mut [f32], n: &mut [f32], ghn: &mut [f32]) {
    // One slice of exactly `h` per gate, so that the loops run without bounds checks and
    // vectorize (indexing `gi[h + j]` kept the gate loop scalar: 12 % of a dien step).
    fn gate(v: &[f32], h: usize, g: usize) -> &[f32] {
        &v[g * h..(g + 1) * h]
    }
    let (gi_r, gi_z, gi_n) = (gate(gi, h, 0), gate(gi, h, 1), gate(gi, h, 2));
    let (gh_r, gh_z, gh_n) = (gate(gh, h, 0), gate(gh, h, 1), gate(gh, h, 2));
    let (b_r, b_z, b_n) = (gate(b, h, 0), gate(b, h, 1), gate(b, h, 2));
    let (state, out) = (&mut state[..h], &mut out[..h]);
    let (r, z, n, ghn) = (&mut r[..h], &mut z[..h], &mut n[..h], &mut ghn[..h]);
    for j in 0..h {
        ghn[j] = gh_n[j] + b_n[j];
        r[j] = sigmoid(gi_r[j] + gh_r[j] + b_r[j]);
        z[j] = sigmoid(gi_z[j] + gh_z[j] + b_z[j]);
        n[j] = tanh(gi_n[j] + r[j] * ghn[j]);
    }
    if !on {
        out.copy_from_slice(state);
        return;
    }
    for j in 0..h {
        let hp = state[j];
        let next = if augru { hp + a * z[j] * (n[j] - hp) } else { n[j] + z[j] * (hp - n[j]) };
        state[j] = next;
        out[j] = next;
    }
}

/// `eˣ` to about 2 ulp, branch-free (so that loops over it vectorize): `x = k·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, `eʳ` by its Taylor polynomial of degree 7, `2ᵏ` from the exponent bits.
/// Inputs are clamped to `[−87, 88]`, where `eˣ` is a normal `f32`.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2ᵏ: `k + 127` lands in the low mantissa bits of `2²³ + k + 127` (its ulp is 1), and the
    // shift moves it into the exponent field. Plain float and bit operations, so that the loop
    // vectorizes (`k as i32` is a saturating conversion, which kept it scalar), and defined for a
    // NaN input too.
    let biased = (k + (127.0 + 8_388_608.0)).to_bits() << 23;
    p * f32::from_bits(biased)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 1 − 2 / (1 + e²ˣ)`, exact at both saturations.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
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
    let (ends, order) = by_reach(keep, &rows, len);
    // In `order`, as in the forward pass: position p is row order[p].
    let mut dh = vec![0.0f32; m * h];
    let mut dgh = vec![0.0f32; m * h3];
    let mut hprev = vec![0.0f32; m * h];
    let mut dw = vec![0.0f32; h3 * h];
    let mut db = vec![0.0f32; h3];
    let zeros = vec![0.0f32; h];
    let mut running = 0;
    for t in (0..len).rev() {
        while running < m && ends[order[running]] > t {
            running += 1;
        }
        for (p, &i) in order.iter().enumerate() {
            let at = ((rows.start + i) * len + t) * h;
            for j in 0..h {
                dh[p * h + j] += dstates[at + j];
            }
        }
        // Rows past their end carry the state: their gradient flows through, nothing else.
        if running == 0 {
            continue;
        }
        for (p, &i) in order[..running].iter().enumerate() {
            let k = (rows.start + i) * len + t;
            let at = k * h;
            let local_gi = (i * len + t) * h3;
            let hp = if t > 0 { &states[at - h..at] } else { &zeros[..] };
            hprev[p * h..][..h].copy_from_slice(hp);
            if keep[k] == 0 {
                // The state passes through: dh stays, the gates get nothing.
                dgh[p * h3..][..h3].fill(0.0);
                continue;
            }
            let a = att.map_or(1.0, |a| a[k]);
            let mut da = 0.0;
            back_step(h, &saved.r[at..], &saved.z[at..], &saved.n[at..], &saved.ghn[at..], hp, &mut dh[p * h..], a, att.is_some(), &mut dgi[local_gi..], &mut dgh[p * h3..], &mut da);
            if let Some(d) = &mut datt {
                d[i * len + t] = da;
            }
        }
        // dh_prev += dgh · W_hh; dW_hh += dghᵀ · h_prev; db_hh += Σ dgh (running rows only:
        // the others' dgh is zero).
        gemm(running, h3, h, mat(&dgh, h3, 1), w_hh, h, 1.0, &mut dh, h);
        if t > 0 {
            gemm(h3, running, h, mat(&dgh, 1, h3), &hprev, h, 1.0, &mut dw, h);
        }
        for row in dgh[..running * h3].chunks_exact(h3) {
            db.iter_mut().zip(row).for_each(|(b, g)| *b += g);
        }
    }
    (dw, db)
}

avx2_dispatch! {
    /// One row's step backward: `dh` (∂L/∂ the step's new state) becomes ∂L/∂ the old state
    /// except through `W_hh` (which the caller adds); the gates' gradients go to `dgi` and
    /// `dgh`; ∂L/∂a (AUGRU) into `da`.
    fn back_step(h: usize, r: &[f32], z: &[f32], n: &[f32], ghn: &[f32], hp: &[f32], dh: &mut [f32], a: f32, augru: bool, dgi: &mut [f32], dgh: &mut [f32], da: &mut f32) => back_step_body
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn back_step_body(h: usize, r: &[f32], z: &[f32], n: &[f32], ghn: &[f32], hp: &[f32], dh: &mut [f32], a: f32, augru: bool, dgi: &mut [f32], dgh: &mut [f32], da_out: &mut f32) {
    let (r, z, n, ghn, hp, dh) = (&r[..h], &z[..h], &n[..h], &ghn[..h], &hp[..h], &mut dh[..h]);
    // One slice of exactly `h` per gate (see `step_body`).
    let (dgi_r, rest) = dgi[..3 * h].split_at_mut(h);
    let (dgi_z, dgi_n) = rest.split_at_mut(h);
    let (dgh_r, rest) = dgh[..3 * h].split_at_mut(h);
    let (dgh_z, dgh_n) = rest.split_at_mut(h);
    let mut da = 0.0f32;
    for j in 0..h {
        let d = dh[j];
        let (dn, dz, dhp) = if augru {
            let du = d * (n[j] - hp[j]);
            da += du * z[j];
            (d * a * z[j], du * a, d * (1.0 - a * z[j]))
        } else {
            (d * (1.0 - z[j]), d * (hp[j] - n[j]), d * z[j])
        };
        let dan = dn * (1.0 - n[j] * n[j]);
        let dar = dan * ghn[j] * r[j] * (1.0 - r[j]);
        let daz = dz * z[j] * (1.0 - z[j]);
        dgi_r[j] = dar;
        dgi_z[j] = daz;
        dgi_n[j] = dan;
        dgh_r[j] = dar;
        dgh_z[j] = daz;
        dgh_n[j] = dan * r[j];
        dh[j] = dhp;
    }
    *da_out = da;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The branch-free `exp` against the standard library's, over the whole range the gates
    /// see and past both clamps; `tanh` and `sigmoid` at their saturations.
    #[test]
    fn fast_exp_is_accurate() {
        let mut worst = 0.0f64;
        for i in -197_000..=200_000 {
            // [−86.7, 88]: inside the clamps.
            let x = i as f32 * 4.4e-4;
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - want).abs() / want);
        }
        assert!(worst < 3e-7, "relative error {worst}");
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37 && exp(1000.0).is_finite());
        assert_eq!((tanh(-100.0), tanh(100.0), tanh(0.0)), (-1.0, 1.0, 0.0));
        assert_eq!((sigmoid(-200.0) < 1e-37, sigmoid(200.0)), (true, 1.0));
        assert!((tanh(1e-4) - 1e-4).abs() < 1e-7);
    }

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
    /// `Σ states ⊙ g` through it, for both cells, on rows that are full, left-padded, holed,
    /// right-padded and empty, over 1 and 3 threads (row blocks).
    #[test]
    fn forward_and_gradients_match_the_reference() {
        let s = Shape { rows: 70, len: 5, hidden: 3 };
        let n = s.rows * s.len;
        let h = s.hidden;
        let gi = values(n * 3 * h, 1);
        let w: Vec<f32> = values(3 * h * h, 2);
        let b = values(3 * h, 3);
        // Full, left-padded, holed, right-padded (the protocol's layout: oldest first, of every
        // length from 1 to len − 1) and empty rows.
        let keep: Vec<u8> = (0..n).map(|k| match (k / s.len) % 5 {
            0 => 1,
            1 => (k % s.len >= 2) as u8,
            2 => (k % 2 == 0) as u8,
            3 => (k % s.len < 1 + (k / s.len / 5) % (s.len - 1)) as u8,
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
