//! DIEN's recurrences (a GRU, and the AUGRU whose update gate an attention weight scales) over
//! masked histories, forward and backward, with every step of every row in one call, the input
//! projection included.
//!
//! Composed of libtorch operators, a step costs about fifteen small operators forward and as many
//! backward, each dispatched and each a pass over memory; here a step is two small GEMMs (the
//! input's and the state's share of the gates) and one pass over the gates, per block of rows, on
//! one thread per block. The input's share is made step by step from the step's inputs, so no
//! `[rows, len, 3H]` array of it (nor of its gradient) is ever written: at batch 1,024 that was
//! 20 MB each way and half of the layer's time.
//!
//! Shapes: `rows` histories of `len` steps of `input` (`D`) features, `hidden` units (`H`). `x`
//! `[rows, len, D]` the inputs; `w_ih` `[3H, D]`, `b_ih` `[3H]`, `w_hh` `[3H, H]` and `b_hh`
//! `[3H]` as `torch.nn.GRU` holds them (gates reset, update, new); `keep` `[rows, len]` nonzero at
//! present steps, `att` `[rows, len]` the AUGRU's weights. The state starts at zero and a step
//! that `keep` does not mark carries it unchanged. Per step, with `gi = W_ih·x_t + b_ih` and
//! `gh = W_hh·h + b_hh`: `r = σ(gi_r + gh_r)`, `z = σ(gi_z + gh_z)`, `n = tanh(gi_n + r ⊙ gh_n)`,
//! then `h' = n + z ⊙ (h − n)` (GRU) or `h' = h + a·z ⊙ (n − h)` (AUGRU).
use crate::din::{avx2_dispatch, row_parts, split_mut};
use crate::gemm::{gemm, mat, transposed};
use crate::parallel::run_parts;
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub rows: usize,
    pub len: usize,
    pub input: usize,
    pub hidden: usize,
}

/// A layer's parameters, laid out as `torch.nn.GRU` holds them.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    pub w_ih: &'a [f32],
    pub b_ih: &'a [f32],
    pub w_hh: &'a [f32],
    pub b_hh: &'a [f32],
}

impl Shape {
    fn check(&self, x: &[f32], w: &Weights, keep: &[u8], att: Option<&[f32]>) {
        let (n, d, h) = (self.rows * self.len, self.input, self.hidden);
        assert!(
            x.len() == n * d
                && w.w_ih.len() == 3 * h * d
                && w.b_ih.len() == 3 * h
                && w.w_hh.len() == 3 * h * h
                && w.b_hh.len() == 3 * h
                && keep.len() == n
                && att.is_none_or(|a| a.len() == n),
            "GRU kernel: shapes differ"
        );
    }
}

/// What [`backward`] needs of a forward pass: per row, step and unit, `r`, `z`, `n` and `gh_n`.
/// A caller may hand the same one to the next forward pass, which then reuses its memory. Each
/// block of rows keeps them step-major in its run order (step `t` of the `p`-th row run at
/// `(t·m + p)·H` of the block's share, `m` its rows), so that a step reads and writes one
/// contiguous stretch instead of one row every `len·H` floats.
#[derive(Debug, Default)]
pub struct Saved {
    r: Vec<f32>,
    z: Vec<f32>,
    n: Vec<f32>,
    ghn: Vec<f32>,
}

/// The biases as the step adds them: `[b_ir + b_hr, b_iz + b_hz, b_in]` and `b_hn` (which `r`
/// scales, so it stays apart).
fn step_biases(w: &Weights, h: usize) -> (Vec<f32>, Vec<f32>) {
    let mut bi: Vec<f32> = w.b_ih.to_vec();
    for (b, &c) in bi[..2 * h].iter_mut().zip(&w.b_hh[..2 * h]) {
        *b += c;
    }
    (bi, w.b_hh[2 * h..].to_vec())
}

/// Every step's state into `states` `[rows, len, H]` (a step that `keep` does not mark holds the
/// state carried through it); with `saved`, also what [`backward`] needs.
#[allow(clippy::too_many_arguments)]
pub fn forward(s: Shape, x: &[f32], w: Weights, keep: &[u8], att: Option<&[f32]>, threads: usize, states: &mut [f32], saved: Option<&mut Saved>) {
    s.check(x, &w, keep, att);
    let h = s.hidden;
    assert_eq!(states.len(), s.rows * s.len * h, "GRU kernel: states shape");
    // W_ihᵀ [D, 3H] and W_hhᵀ [H, 3H], row-major: the right operands of x·W_ihᵀ and h·W_hhᵀ.
    let wit = transposed(w.w_ih, 3 * h, s.input);
    let wht = transposed(w.w_hh, 3 * h, h);
    let biases = step_biases(&w, h);
    let ranges = row_parts(s.rows, threads);
    let per_row = s.len * h;
    let lens: Vec<usize> = ranges.iter().map(|r| r.len() * per_row).collect();
    let outs = split_mut(states, lens.iter().copied());
    let saves: Vec<Option<[&mut [f32]; 4]>> = match saved {
        Some(sv) => {
            let n = s.rows * per_row;
            // Every element backward reads is written below: a reused buffer (see [`Saved`]) is
            // only resized.
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
    run_parts(parts, |((rows, out), save)| forward_rows(s, rows, x, &wit, &wht, &biases, keep, att, out, save));
}

/// A block's rows by when their steps begin: `starts[i]`, row `i`'s first kept step (`len` for a
/// row with none), and the rows ordered by it, earliest first. The protocol right-aligns
/// histories (the most recent event in the last column), so before its first event a row's state
/// is the initial zero: at step `t` the rows that have begun are a prefix of the order, and the
/// step's GEMMs and gates cover that prefix alone. (A row with a gap or with padding after its
/// events is still exact: such steps carry the state, as `keep` says.)
fn by_start(keep: &[u8], rows: &Range<usize>, len: usize) -> (Vec<usize>, Vec<usize>) {
    let starts: Vec<usize> = rows.clone().map(|row| keep[row * len..][..len].iter().position(|&k| k != 0).unwrap_or(len)).collect();
    let mut order: Vec<usize> = (0..starts.len()).collect();
    order.sort_by_key(|&i| starts[i]);
    (starts, order)
}

/// The inputs of step `t` of the first `running` rows of `order` into `xb` `[running, D]`.
fn gather_inputs(x: &[f32], d: usize, len: usize, first: usize, order: &[usize], t: usize, xb: &mut [f32]) {
    for (p, &i) in order.iter().enumerate() {
        xb[p * d..][..d].copy_from_slice(&x[((first + i) * len + t) * d..][..d]);
    }
}

#[allow(clippy::too_many_arguments)]
fn forward_rows(
    s: Shape,
    rows: Range<usize>,
    x: &[f32],
    wit: &[f32],
    wht: &[f32],
    (bi, bhn): &(Vec<f32>, Vec<f32>),
    keep: &[u8],
    att: Option<&[f32]>,
    out: &mut [f32],
    mut save: Option<[&mut [f32]; 4]>,
) {
    let (h, d, len, m) = (s.hidden, s.input, s.len, rows.len());
    let h3 = 3 * h;
    let (starts, order) = by_start(keep, &rows, len);
    zero_before_starts(out, &starts, len, h);
    // States in `order`: position p holds row order[p].
    let mut state = vec![0.0f32; m * h];
    let mut xb = vec![0.0f32; m * d];
    let mut gi = vec![0.0f32; m * h3];
    let mut gh = vec![0.0f32; m * h3];
    // Where the gates go when nothing is saved.
    let mut scratch = vec![0.0f32; 4 * h];
    let mut running = 0;
    for t in 0..len {
        while running < m && starts[order[running]] <= t {
            running += 1;
        }
        if running == 0 {
            continue;
        }
        gather_inputs(x, d, len, rows.start, &order[..running], t, &mut xb);
        gemm(running, d, h3, mat(&xb, d, 1), wit, h3, 0.0, &mut gi, h3);
        gemm(running, h, h3, mat(&state, h, 1), wht, h3, 0.0, &mut gh, h3);
        for (p, &i) in order[..running].iter().enumerate() {
            let k = (rows.start + i) * len + t;
            let local = (i * len + t) * h;
            // Saved gates step-major in `order` ([`Saved`]).
            let sv = (t * m + p) * h;
            let (r, rest) = match &mut save {
                Some([sr, sz, sn, sg]) => ([&mut sr[sv..sv + h], &mut sz[sv..sv + h]], [&mut sn[sv..sv + h], &mut sg[sv..sv + h]]),
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
            step(h, &gi[p * h3..], &gh[p * h3..], bi, bhn, &mut state[p * h..], a, att.is_some(), keep[k] != 0, &mut out[local..], r, z, n, ghn);
        }
    }
}

avx2_dispatch! {
    /// One row's step: the gates into `r`, `z`, `n`, `ghn` and the new state into `state` and
    /// `out` (the old state kept where `on` is false).
    fn step(h: usize, gi: &[f32], gh: &[f32], bi: &[f32], bhn: &[f32], state: &mut [f32], a: f32, augru: bool, on: bool, out: &mut [f32], r: &mut [f32], z: &mut [f32], n: &mut [f32], ghn: &mut [f32]) => step_body
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step_body(h: usize, gi: &[f32], gh: &[f32], bi: &[f32], bhn: &[f32], state: &mut [f32], a: f32, augru: bool, on: bool, out: &mut [f32], r: &mut [f32], z: &mut [f32], n: &mut [f32], ghn: &mut [f32]) {
    // One slice of exactly `h` per gate, so that the loops run without bounds checks and
    // vectorize (indexing `gi[h + j]` kept the gate loop scalar: 12 % of a dien step).
    fn gate(v: &[f32], h: usize, g: usize) -> &[f32] {
        &v[g * h..(g + 1) * h]
    }
    let (gi_r, gi_z, gi_n) = (gate(gi, h, 0), gate(gi, h, 1), gate(gi, h, 2));
    let (gh_r, gh_z, gh_n) = (gate(gh, h, 0), gate(gh, h, 1), gate(gh, h, 2));
    let (b_r, b_z, b_n, b_hn) = (gate(bi, h, 0), gate(bi, h, 1), gate(bi, h, 2), &bhn[..h]);
    let (state, out) = (&mut state[..h], &mut out[..h]);
    let (r, z, n, ghn) = (&mut r[..h], &mut z[..h], &mut n[..h], &mut ghn[..h]);
    for j in 0..h {
        ghn[j] = gh_n[j] + b_hn[j];
        r[j] = sigmoid(gi_r[j] + gh_r[j] + b_r[j]);
        z[j] = sigmoid(gi_z[j] + gh_z[j] + b_z[j]);
        n[j] = tanh(gi_n[j] + b_n[j] + r[j] * ghn[j]);
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

/// Gradients of [`backward`] (besides the input's, which it writes into the caller's buffer): of
/// the parameters, and of `att` (AUGRU).
#[derive(Debug)]
pub struct Grads {
    pub w_ih: Vec<f32>,
    pub b_ih: Vec<f32>,
    pub w_hh: Vec<f32>,
    pub b_hh: Vec<f32>,
    pub att: Option<Vec<f32>>,
}

impl Grads {
    /// Zero gradients of a layer of shape `s`, with `att` as given.
    fn zeros(s: Shape, att: Option<Vec<f32>>) -> Grads {
        let (h3, d, h) = (3 * s.hidden, s.input, s.hidden);
        Grads { w_ih: vec![0.0; h3 * d], b_ih: vec![0.0; h3], w_hh: vec![0.0; h3 * h], b_hh: vec![0.0; h3], att }
    }
}

/// Zeros the steps of every row before its first event in `buf` (`[rows, len, width]`, the
/// block's rows): the state there is the initial zero, and the input there has no effect.
fn zero_before_starts(buf: &mut [f32], starts: &[usize], len: usize, width: usize) {
    for (i, &start) in starts.iter().enumerate() {
        buf[i * len * width..][..start * width].fill(0.0);
    }
}

/// The gradients given `dstates = ∂L/∂states` `[rows, len, H]`, from the forward pass's `states`
/// and `saved` on the same inputs; `∂L/∂x` into `dx` `[rows, len, D]` (every element written).
#[allow(clippy::too_many_arguments)]
pub fn backward(s: Shape, x: &[f32], w: Weights, keep: &[u8], att: Option<&[f32]>, states: &[f32], saved: &Saved, dstates: &[f32], threads: usize, dx: &mut [f32]) -> Grads {
    s.check(x, &w, keep, att);
    let (h, d, len) = (s.hidden, s.input, s.len);
    let n = s.rows * len;
    assert!(states.len() == n * h && dstates.len() == n * h && saved.r.len() == n * h && dx.len() == n * d, "GRU kernel backward: shapes differ");
    let ranges = row_parts(s.rows, threads);
    let mut datt = att.map(|_| vec![0.0f32; n]);
    let dx_parts = split_mut(dx, ranges.iter().map(|r| r.len() * len * d));
    let att_parts: Vec<Option<&mut [f32]>> = match &mut datt {
        Some(g) => split_mut(g, ranges.iter().map(|r| r.len() * len)).into_iter().map(Some).collect(),
        None => ranges.iter().map(|_| None).collect(),
    };
    let parts: Vec<_> = ranges.into_iter().zip(dx_parts).zip(att_parts).collect();
    let sums = run_parts(parts, |((rows, dx), datt)| backward_rows(s, rows, x, &w, keep, att, states, saved, dstates, dx, datt));
    let mut g = Grads::zeros(s, datt);
    for part in sums {
        for (total, p) in [(&mut g.w_ih, &part.w_ih), (&mut g.b_ih, &part.b_ih), (&mut g.w_hh, &part.w_hh), (&mut g.b_hh, &part.b_hh)] {
            total.iter_mut().zip(p).for_each(|(a, v)| *a += v);
        }
    }
    g
}

#[allow(clippy::too_many_arguments)]
fn backward_rows(
    s: Shape,
    rows: Range<usize>,
    x: &[f32],
    w: &Weights,
    keep: &[u8],
    att: Option<&[f32]>,
    states: &[f32],
    saved: &Saved,
    dstates: &[f32],
    dx: &mut [f32],
    mut datt: Option<&mut [f32]>,
) -> Grads {
    let (h, d, len, m) = (s.hidden, s.input, s.len, rows.len());
    let h3 = 3 * h;
    let (starts, order) = by_start(keep, &rows, len);
    zero_before_starts(dx, &starts, len, d);
    // In `order`, as in the forward pass: position p is row order[p].
    let mut dh = vec![0.0f32; m * h];
    let mut dgi = vec![0.0f32; m * h3];
    let mut dgh = vec![0.0f32; m * h3];
    let mut hprev = vec![0.0f32; m * h];
    let mut xb = vec![0.0f32; m * d];
    let mut dxb = vec![0.0f32; m * d];
    let mut g = Grads::zeros(s, None);
    let zeros = vec![0.0f32; h];
    let mut running = m;
    for t in (0..len).rev() {
        while running > 0 && starts[order[running - 1]] > t {
            running -= 1;
        }
        // Before a row's first event its state is the constant initial zero: no gradient flows
        // on from there, and the rows that have not begun by `t` are done.
        if running == 0 {
            break;
        }
        for (p, &i) in order[..running].iter().enumerate() {
            let at = ((rows.start + i) * len + t) * h;
            for j in 0..h {
                dh[p * h + j] += dstates[at + j];
            }
        }
        for (p, &i) in order[..running].iter().enumerate() {
            let k = (rows.start + i) * len + t;
            let at = k * h;
            let hp = if t > 0 { &states[at - h..at] } else { &zeros[..] };
            hprev[p * h..][..h].copy_from_slice(hp);
            if keep[k] == 0 {
                // The state passes through: dh stays, the gates and the input get nothing.
                dgi[p * h3..][..h3].fill(0.0);
                dgh[p * h3..][..h3].fill(0.0);
                continue;
            }
            let a = att.map_or(1.0, |a| a[k]);
            let mut da = 0.0;
            let sv = (rows.start * len + t * m + p) * h;
            back_step(h, &saved.r[sv..], &saved.z[sv..], &saved.n[sv..], &saved.ghn[sv..], hp, &mut dh[p * h..], a, att.is_some(), &mut dgi[p * h3..], &mut dgh[p * h3..], &mut da);
            if let Some(g) = &mut datt {
                g[i * len + t] = da;
            }
        }
        let (dgi_t, dgh_t) = (&dgi[..running * h3], &dgh[..running * h3]);
        // dh_prev += dgh · W_hh; dW_hh += dghᵀ · h_prev; db_hh += Σ dgh.
        gemm(running, h3, h, mat(dgh_t, h3, 1), w.w_hh, h, 1.0, &mut dh, h);
        if t > 0 {
            gemm(h3, running, h, mat(dgh_t, 1, h3), &hprev, h, 1.0, &mut g.w_hh, h);
        }
        // dx_t = dgi · W_ih; dW_ih += dgiᵀ · x_t; db_ih += Σ dgi.
        gather_inputs(x, d, len, rows.start, &order[..running], t, &mut xb);
        gemm(running, h3, d, mat(dgi_t, h3, 1), w.w_ih, d, 0.0, &mut dxb, d);
        for (p, &i) in order[..running].iter().enumerate() {
            dx[(i * len + t) * d..][..d].copy_from_slice(&dxb[p * d..][..d]);
        }
        gemm(h3, running, d, mat(dgi_t, 1, h3), &xb, d, 1.0, &mut g.w_ih, d);
        for (row_i, row_h) in dgi_t.chunks_exact(h3).zip(dgh_t.chunks_exact(h3)) {
            g.b_ih.iter_mut().zip(row_i).for_each(|(b, v)| *b += v);
            g.b_hh.iter_mut().zip(row_h).for_each(|(b, v)| *b += v);
        }
    }
    g
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
    /// `p` = [x, w_ih, b_ih, w_hh, b_hh, att].
    fn reference(s: Shape, p: &[Vec<f64>; 6], keep: &[u8], augru: bool) -> Vec<f64> {
        let (h, d) = (s.hidden, s.input);
        let [x, wi, bi, w, b, att] = p;
        let mut out = vec![0.0; s.rows * s.len * h];
        for row in 0..s.rows {
            let mut st = vec![0.0f64; h];
            for t in 0..s.len {
                let k = row * s.len + t;
                if keep[k] != 0 {
                    let g: Vec<f64> = (0..3 * h).map(|p| bi[p] + (0..d).map(|q| wi[p * d + q] * x[k * d + q]).sum::<f64>()).collect();
                    let gh: Vec<f64> = (0..3 * h).map(|p| b[p] + (0..h).map(|q| w[p * h + q] * st[q]).sum::<f64>()).collect();
                    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
                    st = (0..h)
                        .map(|j| {
                            let r = sig(g[j] + gh[j]);
                            let z = sig(g[h + j] + gh[h + j]);
                            let n = (g[2 * h + j] + r * gh[2 * h + j]).tanh();
                            match augru {
                                false => (1.0 - z) * n + z * st[j],
                                true => (1.0 - att[k] * z) * st[j] + att[k] * z * n,
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
        let s = Shape { rows: 70, len: 5, input: 4, hidden: 3 };
        let n = s.rows * s.len;
        let (d, h) = (s.input, s.hidden);
        let x = values(n * d, 1);
        let w_ih = values(3 * h * d, 6);
        let b_ih = values(3 * h, 7);
        let w_hh: Vec<f32> = values(3 * h * h, 2);
        let b_hh = values(3 * h, 3);
        let weights = Weights { w_ih: &w_ih, b_ih: &b_ih, w_hh: &w_hh, b_hh: &b_hh };
        // Full, left-padded (the protocol's layout: the most recent event last; every start from 0
        // to len − 1), holed, right-padded (of every length from 1 to len − 1) and empty rows.
        let keep: Vec<u8> = (0..n).map(|k| match (k / s.len) % 5 {
            0 => 1,
            1 => (k % s.len >= (k / s.len / 5) % s.len) as u8,
            2 => (k % 2 == 0) as u8,
            3 => (k % s.len < 1 + (k / s.len / 5) % (s.len - 1)) as u8,
            _ => 0,
        }).collect();
        let att: Vec<f32> = values(n, 4).iter().map(|x| (x + 1.0) / 2.0).collect();
        let g = values(n * h, 5);
        let params = [f64s(&x), f64s(&w_ih), f64s(&b_ih), f64s(&w_hh), f64s(&b_hh), f64s(&att)];
        for augru in [false, true] {
            let cell_att = augru.then_some(&att[..]);
            for threads in [1, 3] {
                // NaN: every element must be written.
                let mut states = vec![f32::NAN; n * h];
                let mut saved = Saved::default();
                forward(s, &x, weights, &keep, cell_att, threads, &mut states, Some(&mut saved));
                let want = reference(s, &params, &keep, augru);
                let dev = states.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max);
                assert!(dev < 1e-5, "forward differs by {dev} (attention {augru}, {threads} threads)");
                let mut dx = vec![f32::NAN; n * d];
                let grads = backward(s, &x, weights, &keep, cell_att, &states, &saved, &g, threads, &mut dx);
                let loss = |p: &[Vec<f64>; 6]| -> f64 { reference(s, p, &keep, augru).iter().zip(&g).map(|(x, g)| x * *g as f64).sum() };
                let eps = 1e-6;
                let fd = |which: usize, idx: usize| {
                    let (mut plus, mut minus) = (params.clone(), params.clone());
                    plus[which][idx] += eps;
                    minus[which][idx] -= eps;
                    (loss(&plus) - loss(&minus)) / (2.0 * eps)
                };
                let check = |name: &str, got: &[f32], which: usize| {
                    for idx in 0..got.len() {
                        let want = fd(which, idx);
                        assert!((got[idx] as f64 - want).abs() < 1e-4 * (1.0 + want.abs()), "{name}[{idx}]: {} vs {want} (attention {augru}, {threads} threads)", got[idx]);
                    }
                };
                check("x", &dx, 0);
                check("w_ih", &grads.w_ih, 1);
                check("b_ih", &grads.b_ih, 2);
                check("w_hh", &grads.w_hh, 3);
                check("b_hh", &grads.b_hh, 4);
                assert_eq!(grads.att.is_some(), augru);
                if let Some(da) = &grads.att {
                    check("att", da, 5);
                }
            }
        }
    }
}
