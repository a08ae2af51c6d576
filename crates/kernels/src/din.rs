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

/// Which positions of a `[rows, len]` batch hold history: row `r`'s are `pos[start[r]..start[r + 1]]`.
#[derive(Debug, Clone)]
pub struct Positions {
    pub rows: usize,
    pub len: usize,
    start: Vec<usize>,
    pos: Vec<u32>,
}

impl Positions {
    /// `mask`: `[rows, len]`, nonzero where there is history.
    pub fn from_mask(mask: &[u8], rows: usize, len: usize) -> Positions {
        assert_eq!(mask.len(), rows * len, "mask is not [rows, len]");
        let mut start = Vec::with_capacity(rows + 1);
        let mut pos = Vec::with_capacity(mask.iter().filter(|&&m| m != 0).count());
        start.push(0);
        for row in mask.chunks_exact(len.max(1)).take(rows) {
            pos.extend(row.iter().enumerate().filter(|(_, &m)| m != 0).map(|(l, _)| l as u32));
            start.push(pos.len());
        }
        start.resize(rows + 1, pos.len());
        Positions { rows, len, start, pos }
    }

    /// Number of history positions.
    pub fn count(&self) -> usize {
        self.pos.len()
    }

    fn of(&self, r: usize) -> &[u32] {
        &self.pos[self.start[r]..self.start[r + 1]]
    }

    /// The first position of row `r` when its positions are consecutive (a left- or right-padded
    /// history, the usual case), so that its keys are one slice.
    fn consecutive(&self, r: usize) -> Option<usize> {
        let p = self.of(r);
        let (&first, &last) = (p.first()?, p.last()?);
        ((last - first) as usize + 1 == p.len()).then_some(first as usize)
    }

    fn span(&self, rows: &Range<usize>) -> Range<usize> {
        self.start[rows.start]..self.start[rows.end]
    }

    /// Consecutive rows holding at most [`CHUNK`] positions (or one row, however long).
    fn chunks(&self, rows: Range<usize>) -> impl Iterator<Item = Range<usize>> + '_ {
        let mut r = rows.start;
        std::iter::from_fn(move || {
            if r >= rows.end {
                return None;
            }
            let first = r;
            r += 1;
            while r < rows.end && self.start[r + 1] - self.start[first] <= CHUNK {
                r += 1;
            }
            Some(first..r)
        })
    }

    /// `threads + 1` row bounds that give each thread about the same number of positions.
    fn partition(&self, threads: usize) -> Vec<usize> {
        let t = threads.clamp(1, self.rows.max(1));
        let mut bounds: Vec<usize> = (0..t).map(|i| self.start.partition_point(|&s| s < self.count() * i / t).min(self.rows)).collect();
        bounds[0] = 0;
        bounds.push(self.rows);
        bounds
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

/// Defines `$name` to run `$body` (an `#[inline(always)]` fn of the same signature) compiled for
/// AVX2 + FMA when the CPU has them (checked at run time, cached by std), else as is: the
/// element-wise loops then vectorize 8 wide instead of SSE2's 4.
macro_rules! avx2_dispatch {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) => $body:ident) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use avx2_dispatch;

avx2_dispatch! {
    /// `a = act(z)` appended to `a`.
    fn activate(l: &Layer, z: &[f32], a: &mut Vec<f32>) => activate_body
}

#[inline(always)]
fn activate_body(l: &Layer, z: &[f32], a: &mut Vec<f32>) {
    match l.act {
        Act::Relu => a.extend(z.iter().map(|&z| z.max(0.0))),
        Act::Sigmoid => a.extend(z.iter().map(|&z| 1.0 / (1.0 + (-z).exp()))),
        Act::Prelu => {
            let s = l.slope.expect("PReLU layer has slopes");
            for zr in z.chunks_exact(s.len()) {
                a.extend(zr.iter().zip(s).map(|(&z, &s)| if z > 0.0 { z } else { s * z }));
            }
        }
    }
}

/// `z ← z + add` per row (`add`: one row), then [`activate`]: the bias in the same pass.
fn add_activate(l: &Layer, add: &[f32], z: &mut [f32], a: &mut Vec<f32>) {
    for zr in z.chunks_exact_mut(add.len()) {
        zr.iter_mut().zip(add).for_each(|(z, &b)| *z += b);
    }
    activate(l, z, a);
}

avx2_dispatch! {
    /// `d ← d ⊙ act′(z)` in place (`d` holds ∂L/∂a on entry, ∂L/∂z on exit), with torch's
    /// conventions at 0 (ReLU and PReLU take the negative side); PReLU's slope gradient is added
    /// to `dslope`.
    fn act_backward(l: &Layer, z: &[f32], a: &[f32], d: &mut [f32], dslope: Option<&mut Vec<f32>>) => act_backward_body
}

#[inline(always)]
fn act_backward_body(l: &Layer, z: &[f32], a: &[f32], d: &mut [f32], dslope: Option<&mut Vec<f32>>) {
    match l.act {
        // Selects and plain stores throughout: a conditional `+=` or store compiles to masked
        // loads and stores, which stall on the store before them (a third of the kernel's
        // backward went there).
        Act::Relu => d.iter_mut().zip(z).for_each(|(d, &z)| *d = if z > 0.0 { *d } else { 0.0 }),
        Act::Sigmoid => d.iter_mut().zip(a).for_each(|(d, &a)| *d *= a * (1.0 - a)),
        Act::Prelu => {
            let (s, ds) = (l.slope.expect("PReLU layer has slopes"), dslope.expect("PReLU slope gradient"));
            for (dr, zr) in d.chunks_exact_mut(s.len()).zip(z.chunks_exact(s.len())) {
                // Equal-length slices and selects, not branches: the loop vectorizes.
                let h = s.len();
                let (dr, zr, ds) = (&mut dr[..h], &zr[..h], &mut ds[..h]);
                for c in 0..h {
                    // Every operand loaded before any choice; `min` rather than a select for
                    // the slope's term (g · z where z ≤ 0, else 0).
                    let (z, g, gs) = (zr[c], dr[c], dr[c] * s[c]);
                    ds[c] += g * z.min(0.0);
                    dr[c] = if z > 0.0 { g } else { gs };
                }
            }
        }
    }
}

fn add_rows(acc: &mut [f32], x: &[f32]) {
    for row in x.chunks_exact(acc.len()) {
        acc.iter_mut().zip(row).for_each(|(a, &x)| *a += x);
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

/// The keys of the positions of `rows`, `[n, d]`.
fn build_x(d: usize, keys: &[f32], pos: &Positions, rows: Range<usize>, x: &mut Vec<f32>) {
    x.clear();
    for r in rows {
        match pos.consecutive(r) {
            Some(l) => x.extend_from_slice(&keys[(r * pos.len + l) * d..][..pos.of(r).len() * d]),
            None => {
                for &l in pos.of(r) {
                    x.extend_from_slice(&keys[(r * pos.len + l as usize) * d..][..d]);
                }
            }
        }
    }
}

/// `out = base + diag(q) · scaled` for `[d, h]` matrices (`M_q` from `Wkdᵀ`, `Wpᵀ`), or with
/// `by_column`, `out = base + scaled · diag(q)` for `[h, d]` ones (`M_qᵀ` from `Wkd`, `Wp`).
fn per_row_matrix(base: &[f32], scaled: &[f32], q: &[f32], by_column: bool, out: &mut Vec<f32>) {
    out.clear();
    let w = base.len() / q.len();
    if by_column {
        for (br, sr) in base.chunks_exact(q.len()).zip(scaled.chunks_exact(q.len())) {
            out.extend(br.iter().zip(sr).zip(q).map(|((&b, &s), &q)| b + s * q));
        }
    } else {
        for ((br, sr), &qj) in base.chunks_exact(w).zip(scaled.chunks_exact(w)).zip(q) {
            out.extend(br.iter().zip(sr).map(|(&b, &s)| b + s * qj));
        }
    }
}

avx2_dispatch! {
    /// Each layer's pre-activation into `z[i]` (`[n, out]`) and activation into `a[i]`, for the
    /// positions of `rows`, whose keys are in `x`.
    fn forward_chunk(unit: &Unit, split: &Split, q: &[f32], pos: &Positions, rows: Range<usize>, x: &[f32], z: &mut [&mut [f32]], a: &mut Vec<Vec<f32>>, per_row: &mut Vec<f32>, m: &mut Vec<f32>) => forward_chunk_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_chunk_body(unit: &Unit, split: &Split, q: &[f32], pos: &Positions, rows: Range<usize>, x: &[f32], z: &mut [&mut [f32]], a: &mut Vec<Vec<f32>>, per_row: &mut Vec<f32>, m: &mut Vec<f32>) {
    let d = unit.d;
    let n = pos.span(&rows).len();
    a.resize_with(unit.layers.len(), Vec::new);
    for (i, l) in unit.layers.iter().enumerate() {
        let h = l.out();
        let (zi, ai) = (&mut *z[i], &mut a[i]);
        ai.clear();
        if i == 0 {
            // Per row: its positions' keys times M_q, then (Wq + Wd) q + b added in the
            // activation's pass.
            per_row.resize(rows.len() * h, 0.0);
            gemm(rows.len(), d, h, mat(&q[rows.start * d..rows.end * d], d, 1), &split.pt, h, 0.0, per_row, h);
            let mut j = 0;
            for (r, pr) in rows.clone().zip(per_row.chunks_exact_mut(h)) {
                let n_r = pos.of(r).len();
                if n_r == 0 {
                    continue;
                }
                per_row_matrix(&split.wkdt, &split.wpt, &q[r * d..(r + 1) * d], false, m);
                let zr = &mut zi[j * h..(j + n_r) * h];
                gemm(n_r, d, h, mat(&x[j * d..(j + n_r) * d], d, 1), m, h, 0.0, zr, h);
                pr.iter_mut().zip(l.b).for_each(|(p, &b)| *p += b);
                add_activate(l, pr, zr, ai);
                j += n_r;
            }
        } else {
            let (prev, rest) = a.split_at_mut(i);
            let inp = l.inp();
            gemm(n, inp, h, mat(&prev[i - 1], inp, 1), &split.wt[i - 1], h, 0.0, zi, h);
            rest[0].clear();
            add_activate(l, l.b, zi, &mut rest[0]);
        }
    }
}

fn score(unit: &Unit, a: &[f32]) -> f32 {
    dot(a, unit.out_w) + unit.out_b
}

/// `a · b` over 8 running sums, so that it vectorizes (a single running sum cannot: float
/// addition does not reassociate).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// Splits `s` into consecutive parts of the given lengths.
pub(crate) fn split_mut<T>(mut s: &mut [T], lens: impl IntoIterator<Item = usize>) -> Vec<&mut [T]> {
    let mut parts = Vec::new();
    for n in lens {
        let (head, tail) = std::mem::take(&mut s).split_at_mut(n);
        parts.push(head);
        s = tail;
    }
    parts
}

/// Scores `[rows, len]` into `scores` (0 at padded positions) of keys `[rows, len, d]` against
/// queries `[rows, d]` where `mask` `[rows, len]` is nonzero; with `saved`, also what [`backward`]
/// needs.
#[allow(clippy::too_many_arguments)]
pub fn forward(unit: &Unit, q: &[f32], keys: &[f32], mask: &[u8], rows: usize, len: usize, threads: usize, scores: &mut [f32], saved: Option<&mut Saved>) {
    unit.check();
    let d = unit.d;
    assert!(q.len() == rows * d && keys.len() == rows * len * d, "DIN unit inputs are not [rows, d] and [rows, len, d]");
    assert_eq!(scores.len(), rows * len, "DIN unit scores are not [rows, len]");
    scores.fill(0.0);
    let pos = Positions::from_mask(mask, rows, len);
    let split = Split::new(unit);
    let bounds = pos.partition(threads);
    let ranges: Vec<Range<usize>> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
    let widths: Vec<usize> = unit.layers.iter().map(Layer::out).collect();
    let mut none = Vec::new();
    let z = match saved {
        Some(s) => {
            s.z.resize_with(widths.len(), Vec::new);
            for (z, &h) in s.z.iter_mut().zip(&widths) {
                z.resize(pos.count() * h, 0.0);
            }
            s.positions = pos.clone();
            &mut s.z
        }
        None => &mut none,
    };
    let keep = !z.is_empty();
    let score_parts = split_mut(scores, ranges.iter().map(|r| r.len() * len));
    // Per layer, the threads' parts; transposed to per thread, per layer.
    let mut z_parts: Vec<Vec<&mut [f32]>> = ranges.iter().map(|_| Vec::new()).collect();
    for (zl, &h) in z.iter_mut().zip(&widths) {
        for (t, part) in split_mut(zl, ranges.iter().map(|r| pos.span(r).len() * h)).into_iter().enumerate() {
            z_parts[t].push(part);
        }
    }
    let parts: Vec<_> = ranges.iter().cloned().zip(score_parts).zip(z_parts).collect();
    run_parts(parts, |((rows, scores), mut z_keep)| {
        let mut sc = Scratch::default();
        let base = pos.start[rows.start];
        for ch in pos.chunks(rows.clone()) {
            let span = pos.span(&ch);
            build_x(d, keys, &pos, ch.clone(), &mut sc.x);
            let mut zs: Vec<&mut [f32]> = if keep {
                z_keep.iter_mut().zip(&widths).map(|(zk, &h)| &mut zk[(span.start - base) * h..(span.end - base) * h]).collect()
            } else {
                sc.z.resize_with(widths.len(), Vec::new);
                sc.z.iter_mut()
                    .zip(&widths)
                    .map(|(z, &h)| {
                        z.resize(span.len() * h, 0.0);
                        &mut z[..]
                    })
                    .collect()
            };
            forward_chunk(unit, &split, q, &pos, ch.clone(), &sc.x, &mut zs, &mut sc.a, &mut sc.per_row, &mut sc.m);
            let last = sc.a.last().expect("at least one layer");
            let h = *widths.last().expect("at least one layer");
            let mut j = 0;
            for r in ch {
                for &l in pos.of(r) {
                    scores[(r - rows.start) * len + l as usize] = score(unit, &last[j * h..(j + 1) * h]);
                    j += 1;
                }
            }
        }
    });
}

/// One thread's gradient sums over its rows (layer 0's `w` holds the gradient of `wx`, `[2d, h]`,
/// and the others' that of `Wᵀ`, until [`backward`] rearranges them).
fn zero_grads(unit: &Unit) -> (Vec<LayerGrads>, Vec<f32>, f32) {
    let layers = unit
        .layers
        .iter()
        .map(|l| LayerGrads { w: vec![0.0; l.w.len()], b: vec![0.0; l.out()], slope: l.slope.map(|s| vec![0.0; s.len()]) })
        .collect();
    (layers, vec![0.0; unit.out_w.len()], 0.0)
}
avx2_dispatch! {
    /// One chunk's share of [`backward`]: `rows` of the thread whose first row is `first` (the
    /// origin of `dq`, `dkeys` and `drow`), its parameter gradients summed into `acc`.
    fn backward_chunk(unit: &Unit, split: &Split, saved: &Saved, q: &[f32], keys: &[f32], dscores: &[f32], first: usize, ch: Range<usize>, sc: &mut Scratch, g: &mut Vec<f32>, dx: &mut Vec<f32>, acc: (&mut [LayerGrads], &mut [f32], &mut f32), dq: &mut [f32], dkeys: &mut [f32], drow: &mut [f32]) => backward_chunk_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_chunk_body(unit: &Unit, split: &Split, saved: &Saved, q: &[f32], keys: &[f32], dscores: &[f32], first: usize, ch: Range<usize>, sc: &mut Scratch, g: &mut Vec<f32>, dx: &mut Vec<f32>, acc: (&mut [LayerGrads], &mut [f32], &mut f32), dq: &mut [f32], dkeys: &mut [f32], drow: &mut [f32]) {
    let pos = &saved.positions;
    let (d, len) = (unit.d, pos.len);
    let (layers, out_w, out_b) = acc;
    let span = pos.span(&ch);
    let n = span.len();
    build_x(d, keys, pos, ch.clone(), &mut sc.x);
    sc.a.resize_with(unit.layers.len(), Vec::new);
    for (i, l) in unit.layers.iter().enumerate() {
        sc.a[i].clear();
        activate(l, &saved.z[i][span.start * l.out()..span.end * l.out()], &mut sc.a[i]);
    }
    g.clear();
    for r in ch.clone() {
        g.extend(pos.of(r).iter().map(|&l| dscores[r * len + l as usize]));
    }
    // Output layer: score = a · w + b.
    let h = unit.out_w.len();
    let a_last = sc.a.last().expect("at least one layer");
    *out_b += g.iter().sum::<f32>();
    sc.d.clear();
    for (&gp, ap) in g.iter().zip(a_last.chunks_exact(h)) {
        out_w.iter_mut().zip(ap).for_each(|(w, &a)| *w += gp * a);
        sc.d.extend(unit.out_w.iter().map(|&w| gp * w));
    }
    for (i, l) in unit.layers.iter().enumerate().rev() {
        let h = l.out();
        let z = &saved.z[i][span.start * h..span.end * h];
        act_backward(l, z, &sc.a[i], &mut sc.d, layers[i].slope.as_mut());
        add_rows(&mut layers[i].b, &sc.d);
        if i > 0 {
            let inp = l.inp();
            // ∂Wᵀ += a_prevᵀ dz (transposed back at the end); ∂a_prev = dz W
            gemm(inp, n, h, mat(&sc.a[i - 1], 1, inp), &sc.d, h, 1.0, &mut layers[i].w, h);
            sc.d2.resize(n * inp, 0.0);
            gemm(n, h, inp, mat(&sc.d, h, 1), l.w, inp, 0.0, &mut sc.d2, inp);
            std::mem::swap(&mut sc.d, &mut sc.d2);
        } else {
            // Per row: ∂M_q = Kᵀ dz, into ∂Wkdᵀ, ∂Wpᵀ (rows d..2d of layer 0's
            // sum) and ∂q; ∂K = dz M_qᵀ; the per-row term's gradient summed in drow.
            let mut j = 0;
            for r in ch.clone() {
                let n_r = pos.of(r).len();
                if n_r == 0 {
                    continue;
                }
                let t = r - first;
                let qr = &q[r * d..(r + 1) * d];
                let dz = &sc.d[j * h..(j + n_r) * h];
                add_rows(&mut drow[t * h..(t + 1) * h], dz);
                sc.dm.resize(d * h, 0.0);
                gemm(d, n_r, h, mat(&sc.x[j * d..(j + n_r) * d], 1, d), dz, h, 0.0, &mut sc.dm, h);
                let (dwkd, dwp) = layers[0].w.split_at_mut(d * h);
                add_rows(dwkd, &sc.dm);
                for (c, ((dmr, dwpr), wpr)) in sc.dm.chunks_exact(h).zip(dwp.chunks_exact_mut(h)).zip(split.wpt.chunks_exact(h)).enumerate() {
                    let qc = qr[c];
                    dwpr.iter_mut().zip(dmr).for_each(|(g, &m)| *g += qc * m);
                    dq[t * d + c] += dot(dmr, wpr);
                }
                per_row_matrix(&split.wkd, &split.wp, qr, true, &mut sc.m);
                match pos.consecutive(r) {
                    // Straight into the row's slice of ∂K.
                    Some(l) => gemm(n_r, h, d, mat(dz, h, 1), &sc.m, d, 0.0, &mut dkeys[(t * len + l) * d..][..n_r * d], d),
                    None => {
                        dx.resize(n_r * d, 0.0);
                        gemm(n_r, h, d, mat(dz, h, 1), &sc.m, d, 0.0, dx, d);
                        for (i, &l) in pos.of(r).iter().enumerate() {
                            dkeys[(t * len + l as usize) * d..][..d].copy_from_slice(&dx[i * d..(i + 1) * d]);
                        }
                    }
                }
                j += n_r;
            }
        }
    }
}

/// Gradients given `dscores` `[rows, len]`, ∂L/∂score (ignored at padded positions): the inputs'
/// into `dq` `[rows, d]` and `dkeys` `[rows, len, d]` (both overwritten; 0 at padded positions),
/// the parameters' returned. `q`, `keys` and the unit are those of the forward pass that filled
/// `saved`.
#[allow(clippy::too_many_arguments)]
pub fn backward(unit: &Unit, saved: &Saved, q: &[f32], keys: &[f32], dscores: &[f32], threads: usize, dq: &mut [f32], dkeys: &mut [f32]) -> Grads {
    unit.check();
    let pos = &saved.positions;
    let (d, rows, len) = (unit.d, pos.rows, pos.len);
    assert!(q.len() == rows * d && keys.len() == rows * len * d && dscores.len() == rows * len, "DIN unit backward: shapes differ from the forward pass");
    let split = Split::new(unit);
    let h1 = unit.layers[0].out();
    let bounds = pos.partition(threads);
    let ranges: Vec<Range<usize>> = bounds.windows(2).map(|w| w[0]..w[1]).collect();
    assert!(dq.len() == rows * d && dkeys.len() == rows * len * d, "DIN unit backward: gradient buffers of the wrong size");
    dq.fill(0.0);
    dkeys.fill(0.0);
    // ∂L/∂(per-row first-layer term), [rows, h1]
    let mut drow = vec![0.0f32; rows * h1];
    let sums = {
        let parts: Vec<_> = ranges
            .iter()
            .cloned()
            .zip(split_mut(&mut *dq, ranges.iter().map(|r| r.len() * d)))
            .zip(split_mut(&mut *dkeys, ranges.iter().map(|r| r.len() * len * d)))
            .zip(split_mut(&mut drow, ranges.iter().map(|r| r.len() * h1)))
            .collect();
        run_parts(parts, |(((rows, dq), dkeys), drow)| {
            let (mut layers, mut out_w, mut out_b) = zero_grads(unit);
            let mut sc = Scratch::default();
            let mut dx = Vec::new();
            let mut g = Vec::new();
            for ch in pos.chunks(rows.clone()) {
                if pos.span(&ch).is_empty() {
                    continue;
                }
                let acc = (&mut layers[..], &mut out_w[..], &mut out_b);
                backward_chunk(unit, &split, saved, q, keys, dscores, rows.start, ch, &mut sc, &mut g, &mut dx, acc, &mut *dq, &mut *dkeys, &mut *drow);
            }
            (layers, out_w, out_b)
        })
    };
    let (mut layers, mut out_w, mut out_b) = zero_grads(unit);
    for (tl, tw, tb) in sums {
        for (acc, t) in layers.iter_mut().zip(tl) {
            add_rows(&mut acc.w, &t.w);
            add_rows(&mut acc.b, &t.b);
            if let (Some(a), Some(s)) = (acc.slope.as_mut(), t.slope) {
                add_rows(a, &s);
            }
        }
        add_rows(&mut out_w, &tw);
        out_b += tb;
    }
    // The per-row term (Wq + Wd) q: ∂p = drowᵀ q, ∂q += drow p.
    let mut dp = vec![0.0f32; h1 * d];
    gemm(h1, rows, d, mat(&drow, 1, h1), q, d, 0.0, &mut dp, d);
    gemm(rows, h1, d, mat(&drow, h1, 1), &split.p, d, 1.0, dq, d);
    // Back to W = [Wq | Wk | Wd | Wp]: ∂Wq = ∂p, ∂Wk = ∂wx[:d]ᵀ, ∂Wd = ∂p − ∂wx[:d]ᵀ, ∂Wp = ∂wx[d:]ᵀ.
    let dwx = std::mem::take(&mut layers[0].w);
    let mut dw = vec![0.0f32; h1 * 4 * d];
    for (o, row) in dw.chunks_exact_mut(4 * d).enumerate() {
        for j in 0..d {
            let (pq, kd, pp) = (dp[o * d + j], dwx[j * h1 + o], dwx[(d + j) * h1 + o]);
            row[j] = pq;
            row[d + j] = kd;
            row[2 * d + j] = pq - kd;
            row[3 * d + j] = pp;
        }
    }
    layers[0].w = dw;
    for (lg, l) in layers.iter_mut().zip(&unit.layers).skip(1) {
        lg.w = transpose(&lg.w, l.inp(), l.out());
    }
    Grads { layers, out_w, out_b }
}

/// `rows` split into up to `threads` consecutive ranges of about equal size (one below 64 rows).
pub(crate) fn row_parts(rows: usize, threads: usize) -> Vec<Range<usize>> {
    let t = if rows < 64 { 1 } else { threads.clamp(1, rows) };
    (0..t).map(|i| rows * i / t..rows * (i + 1) / t).collect()
}

/// DIN's pooling without normalization: `out[r] = Σ_l scores[r, l] · values[r, l]` over the
/// positions `l` that `mask` marks (`scores` `[rows, len]`, `values` `[rows, len, dv]`, `out`
/// `[rows, dv]`, overwritten).
#[allow(clippy::too_many_arguments)]
pub fn pool(scores: &[f32], values: &[f32], mask: &[u8], rows: usize, len: usize, dv: usize, threads: usize, out: &mut [f32]) {
    assert!(scores.len() == rows * len && mask.len() == rows * len && values.len() == rows * len * dv && out.len() == rows * dv, "DIN pooling: shapes differ");
    let ranges = row_parts(rows, threads);
    let outs = split_mut(out, ranges.iter().map(|r| r.len() * dv));
    run_parts(ranges.into_iter().zip(outs).collect(), |(rows, out)| pool_rows(scores, values, mask, rows, len, dv, out));
}

avx2_dispatch! {
    fn pool_rows(scores: &[f32], values: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, out: &mut [f32]) => pool_rows_body
}

#[inline(always)]
fn pool_rows_body(scores: &[f32], values: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, out: &mut [f32]) {
    out.fill(0.0);
    for (r, o) in rows.zip(out.chunks_exact_mut(dv.max(1))) {
        for l in (0..len).filter(|&l| mask[r * len + l] != 0) {
            let s = scores[r * len + l];
            o.iter_mut().zip(&values[(r * len + l) * dv..][..dv]).for_each(|(o, &v)| *o += s * v);
        }
    }
}

/// The scores' gradient through [`pool`] given `g = ∂L/∂out` `[rows, dv]`: `dscores[r, l] = g[r]
/// · values[r, l]` at the marked positions, 0 elsewhere (overwritten).
#[allow(clippy::too_many_arguments)]
pub fn pool_dscores(values: &[f32], mask: &[u8], rows: usize, len: usize, dv: usize, g: &[f32], threads: usize, dscores: &mut [f32]) {
    assert!(mask.len() == rows * len && values.len() == rows * len * dv && g.len() == rows * dv && dscores.len() == rows * len, "DIN pooling backward: shapes differ");
    let ranges = row_parts(rows, threads);
    let outs = split_mut(dscores, ranges.iter().map(|r| r.len() * len));
    run_parts(ranges.into_iter().zip(outs).collect(), |(rows, out)| pool_dscores_rows(values, mask, rows, len, dv, g, out));
}

avx2_dispatch! {
    fn pool_dscores_rows(values: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, g: &[f32], out: &mut [f32]) => pool_dscores_rows_body
}

#[inline(always)]
fn pool_dscores_rows_body(values: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, g: &[f32], out: &mut [f32]) {
    for (r, o) in rows.zip(out.chunks_exact_mut(len.max(1))) {
        let gr = &g[r * dv..(r + 1) * dv];
        for (l, o) in o.iter_mut().enumerate() {
            let k = r * len + l;
            *o = if mask[k] != 0 { dot(gr, &values[k * dv..(k + 1) * dv]) } else { 0.0 };
        }
    }
}

/// The values' gradient through [`pool`] given `g = ∂L/∂out`: `dvalues[r, l] = scores[r, l] ·
/// g[r]` at the marked positions. With `accumulate` it is added to `dvalues` (the keys' gradient
/// when the values are the keys) and the other positions are left alone; without, `dvalues` is
/// overwritten, with 0 at the other positions.
#[allow(clippy::too_many_arguments)]
pub fn pool_dvalues(scores: &[f32], mask: &[u8], rows: usize, len: usize, dv: usize, g: &[f32], threads: usize, dvalues: &mut [f32], accumulate: bool) {
    assert!(scores.len() == rows * len && mask.len() == rows * len && g.len() == rows * dv && dvalues.len() == rows * len * dv, "DIN pooling backward: shapes differ");
    let ranges = row_parts(rows, threads);
    let outs = split_mut(dvalues, ranges.iter().map(|r| r.len() * len * dv));
    run_parts(ranges.into_iter().zip(outs).collect(), |(rows, out)| pool_dvalues_rows(scores, mask, rows, len, dv, g, out, accumulate));
}

avx2_dispatch! {
    fn pool_dvalues_rows(scores: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, g: &[f32], out: &mut [f32], accumulate: bool) => pool_dvalues_rows_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pool_dvalues_rows_body(scores: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, g: &[f32], out: &mut [f32], accumulate: bool) {
    let first = rows.start;
    for r in rows {
        let gr = &g[r * dv..(r + 1) * dv];
        for l in 0..len {
            let k = r * len + l;
            let o = &mut out[((r - first) * len + l) * dv..][..dv];
            match (mask[k] != 0, accumulate) {
                (true, true) => o.iter_mut().zip(gr).for_each(|(d, &g)| *d += scores[k] * g),
                (true, false) => o.iter_mut().zip(gr).for_each(|(d, &g)| *d = scores[k] * g),
                (false, true) => {}
                (false, false) => o.fill(0.0),
            }
        }
    }
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
