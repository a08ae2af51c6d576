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
//! Each block first copies its rows' inputs (and, backward, the states' gradients) into
//! step-major order, in one pass over each row, and copies the states (the input's gradient)
//! back at the end: a step then reads and writes contiguous `[rows, width]` stretches, where
//! reading one row every `len·width` floats at every step was a cache miss per row and step
//! (a sixth of the backward pass by `perf`). The gates of a step run in one call per block, not
//! one per row.
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
    fn check(&self, w: &Weights, keep: &[u8], att: Option<&[f32]>) {
        let (n, d, h) = (self.rows * self.len, self.input, self.hidden);
        assert!(
            w.w_ih.len() == 3 * h * d
                && w.b_ih.len() == 3 * h
                && w.w_hh.len() == 3 * h * h
                && w.b_hh.len() == 3 * h
                && keep.len() == n
                && att.is_none_or(|a| a.len() == n),
            "GRU kernel: shapes differ"
        );
    }
}

/// What [`backward`] needs of a forward pass: per row, step and unit the gates `r`, `z`, `n`,
/// `gh_n` and the state; per row and step the input. A caller may hand the same one to the next
/// forward pass, which then reuses its memory. Each block of rows keeps its share step-major in
/// its run order (step `t` of the `p`-th row run at `(t·m + p)·W` of the block's share, `m` its
/// rows, `W` the width; see [`by_start`]), so that a step reads and writes one contiguous
/// `[m, W]` stretch instead of one row every `len·W` floats.
#[derive(Debug, Default)]
pub struct Saved {
    r: Vec<f32>,
    z: Vec<f32>,
    n: Vec<f32>,
    ghn: Vec<f32>,
    h: Vec<f32>,
    x: Vec<f32>,
    /// Scratch of [`backward`] (per block, the states' gradients and the input's, step-major),
    /// kept so that a later call neither allocates nor zeroes it again.
    grads: Vec<f32>,
}

/// One block's share of a [`Saved`]. `r`, `z`, `n` and `ghn` hold every step, or one step when
/// nothing is kept for a backward pass (scoring).
struct Part<'a> {
    r: &'a mut [f32],
    z: &'a mut [f32],
    n: &'a mut [f32],
    ghn: &'a mut [f32],
    h: &'a mut [f32],
    x: &'a mut [f32],
}

impl Saved {
    /// Sizes the arrays for `s` and splits them into the shares of the blocks `ranges`; the
    /// gates for every step with `all_gates`, else for one. Every element a pass reads is
    /// written before (see [`forward_rows`]), so a reused buffer is only resized.
    fn parts(&mut self, s: Shape, ranges: &[Range<usize>], all_gates: bool) -> Vec<Part<'_>> {
        let (h, d, len) = (s.hidden, s.input, s.len);
        let steps = if all_gates { len } else { 1 };
        fn shares<'a>(v: &'a mut Vec<f32>, ranges: &[Range<usize>], width: usize) -> std::vec::IntoIter<&'a mut [f32]> {
            v.resize(ranges.last().map_or(0, |r| r.end) * width, 0.0);
            split_mut(v, ranges.iter().map(|r| r.len() * width)).into_iter()
        }
        let mut r = shares(&mut self.r, ranges, steps * h);
        let mut z = shares(&mut self.z, ranges, steps * h);
        let mut n = shares(&mut self.n, ranges, steps * h);
        let mut ghn = shares(&mut self.ghn, ranges, steps * h);
        let mut hs = shares(&mut self.h, ranges, len * h);
        let mut xs = shares(&mut self.x, ranges, len * d);
        (0..ranges.len())
            .map(|_| Part {
                r: r.next().unwrap(),
                z: z.next().unwrap(),
                n: n.next().unwrap(),
                ghn: ghn.next().unwrap(),
                h: hs.next().unwrap(),
                x: xs.next().unwrap(),
            })
            .collect()
    }
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
    s.check(&w, keep, att);
    let h = s.hidden;
    assert!(x.len() == s.rows * s.len * s.input && states.len() == s.rows * s.len * h, "GRU kernel: shapes differ");
    // W_ihᵀ [D, 3H] and W_hhᵀ [H, 3H], row-major: the right operands of x·W_ihᵀ and h·W_hhᵀ.
    let wit = transposed(w.w_ih, 3 * h, s.input);
    let wht = transposed(w.w_hh, 3 * h, h);
    let biases = step_biases(&w, h);
    let ranges = row_parts(s.rows, threads);
    let outs = split_mut(states, ranges.iter().map(|r| r.len() * s.len * h));
    // Without `saved` (scoring) the same arrays serve as scratch, the gates for one step only.
    let mut scratch = Saved::default();
    let all_gates = saved.is_some();
    let parts = saved.unwrap_or(&mut scratch).parts(s, &ranges, all_gates);
    let jobs: Vec<_> = ranges.into_iter().zip(outs).zip(parts).collect();
    run_parts(jobs, |((rows, out), part)| forward_rows(s, rows, x, &wit, &wht, &biases, keep, att, out, part, all_gates));
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

/// `src` (`[m, len, W]`, a block's rows in the caller's layout) into `dst` step-major in run
/// order (`[len, m, W]`, see [`Saved`]), each row from its first step on.
fn to_step_major(src: &[f32], starts: &[usize], order: &[usize], len: usize, width: usize, dst: &mut [f32]) {
    let m = order.len();
    for (p, &i) in order.iter().enumerate() {
        let row = &src[i * len * width..][..len * width];
        for t in starts[i]..len {
            dst[(t * m + p) * width..][..width].copy_from_slice(&row[t * width..][..width]);
        }
    }
}

/// The inverse of [`to_step_major`]: `src` step-major back into `dst` `[m, len, W]`, zero before
/// each row's first step.
fn from_step_major(src: &[f32], starts: &[usize], order: &[usize], len: usize, width: usize, dst: &mut [f32]) {
    let m = order.len();
    for (p, &i) in order.iter().enumerate() {
        let row = &mut dst[i * len * width..][..len * width];
        row[..starts[i] * width].fill(0.0);
        for t in starts[i]..len {
            row[t * width..][..width].copy_from_slice(&src[(t * m + p) * width..][..width]);
        }
    }
}

/// The step's flags and attention weights of the first `running` rows of `order` (AUGRU; 1
/// otherwise, untouched).
fn step_inputs(keep: &[u8], att: Option<&[f32]>, first: usize, len: usize, order: &[usize], t: usize, on: &mut [u8], a: &mut [f32]) {
    for (p, &i) in order.iter().enumerate() {
        let k = (first + i) * len + t;
        on[p] = keep[k];
        if let Some(att) = att {
            a[p] = att[k];
        }
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
    part: Part,
    all_gates: bool,
) {
    let (h, d, len, m) = (s.hidden, s.input, s.len, rows.len());
    let h3 = 3 * h;
    let (starts, order) = by_start(keep, &rows, len);
    let Part { r, z, n, ghn, h: hs, x: xs } = part;
    // The inputs step-major, in one pass over each row's history: a step's GEMM then reads one
    // contiguous `[running, D]` stretch (gathered row by row at every step, 6.4 KB apart, the
    // rows' cache misses were a tenth of the layer).
    to_step_major(&x[rows.start * len * d..][..m * len * d], &starts, &order, len, d, xs);
    let zeros = vec![0.0f32; m * h];
    let mut gi = vec![0.0f32; m * h3];
    let mut gh = vec![0.0f32; m * h3];
    let (mut on, mut a) = (vec![0u8; m], vec![1.0f32; m]);
    let mut running = 0;
    for t in 0..len {
        let begun = running;
        while running < m && starts[order[running]] <= t {
            running += 1;
        }
        if running == 0 {
            continue;
        }
        // The states before step t: step t − 1's, where the rows that begin at t (run after
        // those that have) hold their initial zero, for this step and for the backward pass.
        let (past, now) = hs.split_at_mut(t * m * h);
        let prev: &[f32] = match t {
            0 => &zeros,
            _ => {
                let prev = &mut past[(t - 1) * m * h..];
                prev[begun * h..running * h].fill(0.0);
                prev
            }
        };
        step_inputs(keep, att, rows.start, len, &order[..running], t, &mut on, &mut a);
        gemm(running, d, h3, mat(&xs[t * m * d..], d, 1), wit, h3, 0.0, &mut gi, h3);
        gemm(running, h, h3, mat(prev, h, 1), wht, h3, 0.0, &mut gh, h3);
        let g = if all_gates { t * m * h } else { 0 };
        steps(h, running, &gi, &gh, bi, bhn, prev, &mut now[..m * h], &a, &on, att.is_some(), &mut r[g..], &mut z[g..], &mut n[g..], &mut ghn[g..]);
    }
    from_step_major(hs, &starts, &order, len, h, out);
}

avx2_dispatch! {
    /// A step of the first `running` rows of the run order: from their states `prev`
    /// `[running, H]` and their gates' shares `gi`, `gh` `[running, 3H]`, the new states into
    /// `now` (a row that `on` does not mark keeps its state) and the gates into `r`, `z`, `n`,
    /// `ghn`. One call per step and block, so that the loop over its rows is compiled inside.
    fn steps(h: usize, running: usize, gi: &[f32], gh: &[f32], bi: &[f32], bhn: &[f32], prev: &[f32], now: &mut [f32], a: &[f32], on: &[u8], augru: bool, r: &mut [f32], z: &mut [f32], n: &mut [f32], ghn: &mut [f32]) => steps_body::<FMA>
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn steps_body<const FMA: bool>(h: usize, running: usize, gi: &[f32], gh: &[f32], bi: &[f32], bhn: &[f32], prev: &[f32], now: &mut [f32], a: &[f32], on: &[u8], augru: bool, r: &mut [f32], z: &mut [f32], n: &mut [f32], ghn: &mut [f32]) {
    let h3 = 3 * h;
    for p in 0..running {
        let at = p * h;
        step::<FMA>(
            h,
            &gi[p * h3..][..h3],
            &gh[p * h3..][..h3],
            bi,
            bhn,
            &prev[at..][..h],
            &mut now[at..][..h],
            a[p],
            augru,
            on[p] != 0,
            [&mut r[at..][..h], &mut z[at..][..h], &mut n[at..][..h], &mut ghn[at..][..h]],
        );
    }
}

/// One row's step: the gates into `r`, `z`, `n`, `ghn` and the new state into `out` (`prev`
/// where `on` is false).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn step<const FMA: bool>(h: usize, gi: &[f32], gh: &[f32], bi: &[f32], bhn: &[f32], prev: &[f32], out: &mut [f32], a: f32, augru: bool, on: bool, [r, z, n, ghn]: [&mut [f32]; 4]) {
    // One slice of exactly `h` per gate, so that the loops run without bounds checks and
    // vectorize (indexing `gi[h + j]` kept the gate loop scalar: 12 % of a dien step).
    fn gate(v: &[f32], h: usize, g: usize) -> &[f32] {
        &v[g * h..(g + 1) * h]
    }
    let (gi_r, gi_z, gi_n) = (gate(gi, h, 0), gate(gi, h, 1), gate(gi, h, 2));
    let (gh_r, gh_z, gh_n) = (gate(gh, h, 0), gate(gh, h, 1), gate(gh, h, 2));
    let (b_r, b_z, b_n, b_hn) = (gate(bi, h, 0), gate(bi, h, 1), gate(bi, h, 2), &bhn[..h]);
    let (prev, out) = (&prev[..h], &mut out[..h]);
    let (r, z, n, ghn) = (&mut r[..h], &mut z[..h], &mut n[..h], &mut ghn[..h]);
    for j in 0..h {
        ghn[j] = gh_n[j] + b_hn[j];
        r[j] = sigmoid::<FMA>(gi_r[j] + gh_r[j] + b_r[j]);
        z[j] = sigmoid::<FMA>(gi_z[j] + gh_z[j] + b_z[j]);
        n[j] = tanh::<FMA>(gi_n[j] + b_n[j] + r[j] * ghn[j]);
    }
    if !on {
        out.copy_from_slice(prev);
        return;
    }
    for j in 0..h {
        let hp = prev[j];
        out[j] = if augru { hp + a * z[j] * (n[j] - hp) } else { n[j] + z[j] * (hp - n[j]) };
    }
}

/// `eˣ` to about 2 ulp, branch-free (so that loops over it vectorize): `x = k·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, `eʳ` by its Taylor polynomial of degree 7, `2ᵏ` from the exponent bits.
/// Inputs are clamped to `[−87, 88]`, where `eˣ` is a normal `f32`. `FMA`: the polynomial in
/// fused multiply-adds (half the instructions; only where the CPU has them, see `avx2_dispatch`).
#[inline(always)]
pub(crate) fn exp<const FMA: bool>(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - k * LN2_HI - k * LN2_LO;
    // Horner's rule, `c + r·p` per coefficient, highest first.
    const C: [f32; 8] = [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
    let mut p = C[0];
    for &c in &C[1..] {
        p = if FMA { r.mul_add(p, c) } else { c + r * p };
    }
    // 2ᵏ: `k + 127` lands in the low mantissa bits of `2²³ + k + 127` (its ulp is 1), and the
    // shift moves it into the exponent field. Plain float and bit operations, so that the loop
    // vectorizes (`k as i32` is a saturating conversion, which kept it scalar), and defined for a
    // NaN input too.
    let biased = (k + (127.0 + 8_388_608.0)).to_bits() << 23;
    p * f32::from_bits(biased)
}

#[inline(always)]
fn sigmoid<const FMA: bool>(x: f32) -> f32 {
    1.0 / (1.0 + exp::<FMA>(-x))
}

/// `tanh x = 1 − 2 / (1 + e²ˣ)`, exact at both saturations.
#[inline(always)]
fn tanh<const FMA: bool>(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp::<FMA>(2.0 * x))
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

/// The gradients given `dstates = ∂L/∂states` `[rows, len, H]`, from what the forward pass on
/// the same inputs kept in `saved`; `∂L/∂x` into `dx` `[rows, len, D]` (every element written).
#[allow(clippy::too_many_arguments)]
pub fn backward(s: Shape, w: Weights, keep: &[u8], att: Option<&[f32]>, saved: &mut Saved, dstates: &[f32], threads: usize, dx: &mut [f32]) -> Grads {
    s.check(&w, keep, att);
    let (h, d, len) = (s.hidden, s.input, s.len);
    let n = s.rows * len;
    assert!(
        dstates.len() == n * h && dx.len() == n * d && saved.r.len() == n * h && saved.h.len() == n * h && saved.x.len() == n * d,
        "GRU kernel backward: shapes differ (or the forward pass kept nothing)"
    );
    let ranges = row_parts(s.rows, threads);
    let mut datt = att.map(|_| vec![0.0f32; n]);
    let dx_parts = split_mut(dx, ranges.iter().map(|r| r.len() * len * d));
    let att_parts: Vec<Option<&mut [f32]>> = match &mut datt {
        Some(g) => split_mut(g, ranges.iter().map(|r| r.len() * len)).into_iter().map(Some).collect(),
        None => ranges.iter().map(|_| None).collect(),
    };
    let Saved { r, z, n: nn, ghn, h: hs, x: xs, grads } = saved;
    let kept = [&r[..], &z[..], &nn[..], &ghn[..], &hs[..], &xs[..]];
    // Every element of the scratch is written before it is read (see `backward_rows`).
    grads.resize(n * (h + d), 0.0);
    let scratch = split_mut(grads, ranges.iter().map(|r| r.len() * len * (h + d)));
    let parts: Vec<_> = ranges.into_iter().zip(dx_parts).zip(att_parts).zip(scratch).collect();
    let sums = run_parts(parts, |(((rows, dx), datt), scratch)| backward_rows(s, rows, &w, keep, att, kept, dstates, dx, datt, scratch));
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
    w: &Weights,
    keep: &[u8],
    att: Option<&[f32]>,
    [r, z, n, ghn, hs, xs]: [&[f32]; 6],
    dstates: &[f32],
    dx: &mut [f32],
    mut datt: Option<&mut [f32]>,
    scratch: &mut [f32],
) -> Grads {
    let (h, d, len, m) = (s.hidden, s.input, s.len, rows.len());
    let h3 = 3 * h;
    let (starts, order) = by_start(keep, &rows, len);
    // The block's shares of what the forward pass kept, step-major in run order ([`Saved`]).
    fn part<'a>(v: &'a [f32], rows: &Range<usize>, len: usize, width: usize) -> &'a [f32] {
        &v[rows.start * len * width..][..rows.len() * len * width]
    }
    let [r, z, n, ghn, hs] = [r, z, n, ghn, hs].map(|v| part(v, &rows, len, h));
    let xs = part(xs, &rows, len, d);
    // ∂L/∂states step-major too, in one pass over each row, and ∂L/∂x step-major until the end.
    // Of both, only the steps from each row's first on are written, and only those are read.
    let (dhs, dxs) = scratch.split_at_mut(m * len * h);
    to_step_major(&dstates[rows.start * len * h..][..m * len * h], &starts, &order, len, h, dhs);
    let mut dh = vec![0.0f32; m * h];
    let mut dgi = vec![0.0f32; m * h3];
    let mut dgh = vec![0.0f32; m * h3];
    let (mut on, mut a, mut da) = (vec![0u8; m], vec![1.0f32; m], vec![0.0f32; m]);
    let zeros = vec![0.0f32; m * h];
    let mut g = Grads::zeros(s, None);
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
        let at = t * m * h;
        dh[..running * h].iter_mut().zip(&dhs[at..at + running * h]).for_each(|(dh, g)| *dh += g);
        // The states before step t, the initial zero for the rows that begin at t (kept so by
        // the forward pass).
        let hprev = if t > 0 { &hs[at - m * h..][..running * h] } else { &zeros[..running * h] };
        step_inputs(keep, att, rows.start, len, &order[..running], t, &mut on, &mut a);
        back_steps(h, running, [&r[at..], &z[at..], &n[at..], &ghn[at..]], hprev, &mut dh, &a, &on, att.is_some(), &mut dgi, &mut dgh, &mut da);
        if let Some(g) = &mut datt {
            for (p, &i) in order[..running].iter().enumerate() {
                g[i * len + t] = da[p];
            }
        }
        let (dgi_t, dgh_t) = (&dgi[..running * h3], &dgh[..running * h3]);
        // dh_prev += dgh · W_hh; dW_hh += dghᵀ · h_prev; db_hh += Σ dgh.
        gemm(running, h3, h, mat(dgh_t, h3, 1), w.w_hh, h, 1.0, &mut dh, h);
        if t > 0 {
            gemm(h3, running, h, mat(dgh_t, 1, h3), hprev, h, 1.0, &mut g.w_hh, h);
        }
        // dx_t = dgi · W_ih; dW_ih += dgiᵀ · x_t; db_ih += Σ dgi.
        gemm(running, h3, d, mat(dgi_t, h3, 1), w.w_ih, d, 0.0, &mut dxs[t * m * d..], d);
        gemm(h3, running, d, mat(dgi_t, 1, h3), &xs[t * m * d..], d, 1.0, &mut g.w_ih, d);
        for (row_i, row_h) in dgi_t.chunks_exact(h3).zip(dgh_t.chunks_exact(h3)) {
            g.b_ih.iter_mut().zip(row_i).for_each(|(b, v)| *b += v);
            g.b_hh.iter_mut().zip(row_h).for_each(|(b, v)| *b += v);
        }
    }
    from_step_major(dxs, &starts, &order, len, d, dx);
    g
}

avx2_dispatch! {
    /// A step backward of the first `running` rows of the run order: `dh` (∂L/∂ their new
    /// states) becomes ∂L/∂ the old ones except through `W_hh` (which the caller adds); the
    /// gates' gradients go to `dgi` and `dgh`, ∂L/∂a (AUGRU) to `da`. `gates`: the step's saved
    /// `r`, `z`, `n`, `ghn`; `hp` the states before it.
    fn back_steps(h: usize, running: usize, gates: [&[f32]; 4], hp: &[f32], dh: &mut [f32], a: &[f32], on: &[u8], augru: bool, dgi: &mut [f32], dgh: &mut [f32], da: &mut [f32]) => back_steps_body
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn back_steps_body(h: usize, running: usize, [r, z, n, ghn]: [&[f32]; 4], hp: &[f32], dh: &mut [f32], a: &[f32], on: &[u8], augru: bool, dgi: &mut [f32], dgh: &mut [f32], da: &mut [f32]) {
    let h3 = 3 * h;
    for p in 0..running {
        let (at, (dgi, dgh)) = (p * h, (&mut dgi[p * h3..][..h3], &mut dgh[p * h3..][..h3]));
        if on[p] == 0 {
            // The state passes through: dh stays, the gates and the input get nothing.
            dgi.fill(0.0);
            dgh.fill(0.0);
            da[p] = 0.0;
            continue;
        }
        da[p] = back_step(h, [&r[at..], &z[at..], &n[at..], &ghn[at..]], &hp[at..], &mut dh[at..], a[p], augru, dgi, dgh);
    }
}

/// One row's step backward (see [`back_steps`]); returns ∂L/∂a.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn back_step(h: usize, [r, z, n, ghn]: [&[f32]; 4], hp: &[f32], dh: &mut [f32], a: f32, augru: bool, dgi: &mut [f32], dgh: &mut [f32]) -> f32 {
    let (r, z, n, ghn, hp, dh) = (&r[..h], &z[..h], &n[..h], &ghn[..h], &hp[..h], &mut dh[..h]);
    // One slice of exactly `h` per gate (see `step`).
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
    da
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The branch-free `exp` against the standard library's, over the whole range the gates
    /// see and past both clamps; `tanh` and `sigmoid` at their saturations.
    #[test]
    fn fast_exp_is_accurate() {
        // Both builds of the polynomial: plain, and in fused multiply-adds (here `mul_add`
        // through libm, the same rounding as the FMA instruction).
        fast_exp_is_accurate_with::<false>();
        fast_exp_is_accurate_with::<true>();
    }

    fn fast_exp_is_accurate_with<const FMA: bool>() {
        let (exp, tanh, sigmoid) = (exp::<FMA>, tanh::<FMA>, sigmoid::<FMA>);
        let mut worst = 0.0f64;
        for i in -197_000..=200_000 {
            // [−86.7, 88]: inside the clamps.
            let x = i as f32 * 4.4e-4;
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - want).abs() / want);
        }
        assert!(worst < 3e-7, "FMA {FMA}: relative error {worst}");
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
    /// right-padded and empty, over 1 and 3 threads (row blocks); and scoring's forward pass
    /// (nothing kept) equal to it.
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
                // A reused `Saved` (as the layer hands it on), poisoned: every element backward
                // reads must be written by the forward pass it follows.
                let mut saved = Saved::default();
                forward(s, &x, weights, &vec![1; n], cell_att, threads, &mut states, Some(&mut saved));
                for v in [&mut saved.r, &mut saved.z, &mut saved.n, &mut saved.ghn, &mut saved.h, &mut saved.x] {
                    v.fill(f32::NAN);
                }
                states.fill(f32::NAN);
                forward(s, &x, weights, &keep, cell_att, threads, &mut states, Some(&mut saved));
                let want = reference(s, &params, &keep, augru);
                // (`f64::max` passes over a NaN: count one as infinitely far.)
                let dev = states.iter().zip(&want).map(|(a, b)| (*a as f64 - b).abs()).map(|e| if e.is_nan() { f64::INFINITY } else { e }).fold(0.0, f64::max);
                assert!(dev < 1e-5, "forward differs by {dev} (attention {augru}, {threads} threads)");
                let mut scored = vec![f32::NAN; n * h];
                forward(s, &x, weights, &keep, cell_att, threads, &mut scored, None);
                assert_eq!(scored, states, "scoring's forward pass (attention {augru}, {threads} threads)");
                let mut dx = vec![f32::NAN; n * d];
                // Backward's scratch poisoned too (a second call reuses it).
                saved.grads.resize(n * (h + d), f32::NAN);
                saved.grads.fill(f32::NAN);
                let grads = backward(s, weights, &keep, cell_att, &mut saved, &g, threads, &mut dx);
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
