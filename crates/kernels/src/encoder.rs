//! A post-norm Transformer encoder block in evaluation mode (no dropout, no gradients), as
//! scoring runs it.
//!
//! - [`tail`]: the position-wise tail, from the block's input `x` and its attention output `a`
//!   (after the output projection), `x₁ = LN₁(x + a)`, `y = LN₂(x₁ + W₂·act(W₁·x₁ + b₁) + b₂)`.
//!   libtorch runs this as eight operators, each a pass over `[positions, width]` or the 4×-wide
//!   hidden layer through memory; here a chunk of positions goes from `x + a` to `y` while it
//!   stays in cache, the two products through [`gemm`] with the weights transposed once per call.
//! - [`encode_shared`]: a one-block BST's whole encoder and readout for rows that share
//!   histories (a user scored against many candidates), the attention included, from what
//!   libtorch computed once per distinct history.
use crate::din::{avx2_dispatch, row_parts, split_mut};
use crate::gemm::{gemm, mat, transposed};
use crate::parallel::run_parts;

/// The feed-forward's activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    Relu,
    /// `max(x, 0) + slope·min(x, 0)`.
    LeakyRelu(f32),
}

/// A layer norm's weight, bias and ε over the model width.
#[derive(Debug, Clone, Copy)]
pub struct Norm<'a> {
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    pub eps: f32,
}

/// The block's position-wise parameters, as `torch.nn.Linear` stores them (`[out, in]`).
#[derive(Debug, Clone, Copy)]
pub struct Tail<'a> {
    /// The model width `d` and the feed-forward's `f`.
    pub d: usize,
    pub f: usize,
    pub norm1: Norm<'a>,
    /// `[f, d]` and `[f]`.
    pub w1: &'a [f32],
    pub b1: &'a [f32],
    /// `[d, f]` and `[d]`.
    pub w2: &'a [f32],
    pub b2: &'a [f32],
    pub act: Act,
    pub norm2: Norm<'a>,
}

/// Positions per chunk: the chunk's `[C, f]` hidden layer (128 KB at `f` = 128) and its
/// `[C, d]` rows stay in L2 from the first product to the second norm.
const CHUNK: usize = 256;

/// `out[n, d]` = the tail over `x`, `a` (`[n, d]` row-major each), split over up to `threads`
/// threads. Panics on operands of the wrong length.
pub fn tail(t: &Tail, x: &[f32], a: &[f32], n: usize, threads: usize, out: &mut [f32]) {
    let (d, f) = (t.d, t.f);
    assert!(x.len() == n * d && a.len() == n * d && out.len() == n * d, "tail: x, a and out must be [n, d]");
    assert!(t.w1.len() == f * d && t.b1.len() == f && t.w2.len() == d * f && t.b2.len() == d, "tail: feed-forward shapes");
    for norm in [&t.norm1, &t.norm2] {
        assert!(norm.weight.len() == d && norm.bias.len() == d, "tail: norm shapes");
    }
    let (w1t, w2t) = (transposed(t.w1, f, d), transposed(t.w2, d, f));
    let parts = row_parts(n, threads);
    let lens: Vec<usize> = parts.iter().map(|r| r.len() * d).collect();
    let jobs: Vec<_> = parts.into_iter().zip(split_mut(out, lens)).collect();
    run_parts(jobs, |(rows, out)| {
        let mut hidden = vec![0.0f32; CHUNK.min(rows.len()) * f];
        let mut start = rows.start;
        for out in out.chunks_mut(CHUNK * d) {
            let m = out.len() / d;
            let span = start * d..(start + m) * d;
            tail_chunk(t, &w1t, &w2t, &x[span.clone()], &a[span], &mut hidden[..m * f], out);
            start += m;
        }
    });
}

/// The tail over one chunk of `m` positions (`out.len() / d`): `x`, `a` `[m, d]`, `hidden`
/// `[m, f]` scratch; `w1t`, `w2t` the feed-forward's weights transposed.
fn tail_chunk(t: &Tail, w1t: &[f32], w2t: &[f32], x: &[f32], a: &[f32], hidden: &mut [f32], out: &mut [f32]) {
    let (d, f) = (t.d, t.f);
    let m = out.len() / d;
    residual_norm(d, m, x, a, t.norm1.weight, t.norm1.bias, t.norm1.eps, out);
    for row in hidden.chunks_exact_mut(f) {
        row.copy_from_slice(t.b1);
    }
    gemm(m, d, f, mat(out, d, 1), w1t, f, 1.0, hidden, f);
    activate(hidden, t.act);
    add_rows(d, out, t.b2);
    gemm(m, f, d, mat(hidden, f, 1), w2t, d, 1.0, out, d);
    norm_in_place(d, out, t.norm2.weight, t.norm2.bias, t.norm2.eps);
}

/// What a one-block BST's self-attention over `[history…, target]` shares between the rows
/// that carry the same history (a user scored against many candidates): per distinct history
/// `u`, its events' block input and their projections, and per history query `i` and head
/// `h` the softmax of its scores against the history's own keys, unnormalized: the largest
/// score `max`, `sum = Σⱼ e^(sᵢⱼ − max)` and `acc = Σⱼ e^(sᵢⱼ − max) vⱼ` over the events `j`
/// the mask marks. The queries and keys are stored per head and transposed, so that a score
/// against every event is a sum of `dh` vectors over the events. Values reach the kernel
/// through the output projection: head `h`'s share of it is linear, `W_o,h` (`W_o`'s columns
/// `h·dh..`), so `acc` and every value enter as `acc·W_o,hᵀ` and `v·W_o,hᵀ` (`d` wide), and a
/// position's attention output is a weighted sum of those, with no product left per row.
#[derive(Debug, Clone, Copy)]
pub struct Histories<'a> {
    pub len: usize,
    /// `[U, L, d]`, `[U, L]` (1 = an event, 0 = padding).
    pub x: &'a [f32],
    pub mask: &'a [u8],
    /// The query and key projections per head, transposed: `[U, H, dh, L]`.
    pub q: &'a [f32],
    pub k: &'a [f32],
    /// `[U, H, L]` each.
    pub max: &'a [f32],
    pub sum: &'a [f32],
    /// `acc` and the values through head `h`'s share of the output projection: `[U, H, L, d]`.
    pub acc_o: &'a [f32],
    pub v_o: &'a [f32],
}

/// The rows: each one's history `group[r]`, its target's block input and query and key
/// projections (`[B, d]` each), and its value through each head's share of the output
/// projection (`[B, H, d]`).
#[derive(Debug, Clone, Copy)]
pub struct Targets<'a> {
    pub group: &'a [usize],
    pub x: &'a [f32],
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v_o: &'a [f32],
}

/// The block's heads and output projection bias (`[d]`), beside its tail.
#[derive(Debug, Clone, Copy)]
pub struct Block<'a> {
    pub heads: usize,
    pub bo: &'a [f32],
    pub tail: Tail<'a>,
}

/// A one-block BST's encoder with its readout, in evaluation mode, for rows that share
/// histories: `out[r]` (`[B, 2d]`) = the block's output at the target, then the mean of its
/// outputs over the history's events (zeros for an empty history). Equal to the block over each
/// row's own sequence `[history…, target]` (padding masked), up to float rounding: per history
/// query the target's key joins the shared softmax as
/// `(acc·e^(max − m') + e^(sₜ − m') vₜ) / (sum·e^(max − m') + e^(sₜ − m'))`, `m' = max(max, sₜ)`;
/// the target's own query attends over every event and itself. Padded positions, which the
/// readout never reads, are not computed. Panics on operands of the wrong length.
pub fn encode_shared(b: &Block, hist: &Histories, rows: &Targets, threads: usize, out: &mut [f32]) {
    let (d, f, heads, len) = (b.tail.d, b.tail.f, b.heads, hist.len);
    assert!(heads > 0 && d % heads == 0, "encode_shared: heads must divide d");
    let u = hist.mask.len() / len.max(1);
    for (s, w) in [(hist.x, d), (hist.q, d), (hist.k, d), (hist.max, heads), (hist.sum, heads), (hist.acc_o, heads * d), (hist.v_o, heads * d)] {
        // Every operand holds `w` floats per event, whatever its layout.
        assert_eq!(s.len(), u * len * w, "encode_shared: history operand of the wrong length");
    }
    let n = rows.group.len();
    for (s, w) in [(rows.x, d), (rows.q, d), (rows.k, d), (rows.v_o, heads * d)] {
        assert_eq!(s.len(), n * w, "encode_shared: target operand of the wrong length");
    }
    assert!(rows.group.iter().all(|&g| g < u), "encode_shared: group out of range");
    assert!(b.bo.len() == d && out.len() == n * 2 * d, "encode_shared: bias or output shape");
    let (w1t, w2t) = (transposed(b.tail.w1, f, d), transposed(b.tail.w2, d, f));
    // Rows per thread; each thread takes its rows in chunks of at most `cap` positions.
    let cap = CHUNK.max(len + 1);
    let parts = row_parts(n, threads);
    let lens: Vec<usize> = parts.iter().map(|r| r.len() * 2 * d).collect();
    let jobs: Vec<_> = parts.into_iter().zip(split_mut(out, lens)).collect();
    run_parts(jobs, |(range, out)| {
        let mut buf = Scratch { x: vec![0.0; cap * d], a: vec![0.0; cap * d], y: vec![0.0; cap * d], hidden: vec![0.0; cap * f], per_event: Default::default() };
        let mut r = range.start;
        while r < range.end {
            // The chunk: rows r..e, their events then their target, row after row.
            let (mut e, mut p) = (r, 0);
            while e < range.end {
                let g = rows.group[e];
                let count = hist.mask[g * len..(g + 1) * len].iter().filter(|&&m| m != 0).count() + 1;
                if p > 0 && p + count > cap {
                    break;
                }
                attend_row(d, heads, len, hist, rows, b.bo, e, p, &mut buf.x, &mut buf.a, &mut buf.per_event);
                p += count;
                e += 1;
            }
            tail_chunk(&b.tail, &w1t, &w2t, &buf.x[..p * d], &buf.a[..p * d], &mut buf.hidden[..p * f], &mut buf.y[..p * d]);
            // The readout, row after row in the chunk's order.
            let mut at = 0;
            for row in r..e {
                let g = rows.group[row];
                let events = hist.mask[g * len..(g + 1) * len].iter().filter(|&&m| m != 0).count();
                let o = &mut out[(row - range.start) * 2 * d..(row - range.start + 1) * 2 * d];
                let (target, mean) = o.split_at_mut(d);
                target.copy_from_slice(&buf.y[(at + events) * d..(at + events + 1) * d]);
                mean.fill(0.0);
                for y in buf.y[at * d..(at + events) * d].chunks_exact(d) {
                    mean.iter_mut().zip(y).for_each(|(m, y)| *m += y);
                }
                let scale = 1.0 / events.max(1) as f32;
                mean.iter_mut().for_each(|m| *m *= scale);
                at += events + 1;
            }
            r = e;
        }
    });
}

struct Scratch {
    x: Vec<f32>,
    a: Vec<f32>,
    y: Vec<f32>,
    hidden: Vec<f32>,
    /// Per event of one row: scores, and the weights of the shared and the target's terms.
    per_event: [Vec<f32>; 3],
}

avx2_dispatch! {
    /// Row `r`'s events (those its history's mask marks) then its target, from position `p` of
    /// the chunk: their block input into `x` and their attention output (after the output
    /// projection, `bo` its bias) into `a`; `per_event` is scratch.
    fn attend_row(d: usize, heads: usize, len: usize, hist: &Histories, rows: &Targets, bo: &[f32], r: usize, p: usize, x: &mut [f32], a: &mut [f32], per_event: &mut [Vec<f32>; 3]) => attend_row_body::<FMA>
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn attend_row_body<const FMA: bool>(d: usize, heads: usize, len: usize, hist: &Histories, rows: &Targets, bo: &[f32], r: usize, p: usize, x: &mut [f32], a: &mut [f32], per_event: &mut [Vec<f32>; 3]) {
    use crate::gru::exp;
    let dh = d / heads;
    let scale = 1.0 / (dh as f32).sqrt();
    let g = rows.group[r];
    let (qt, kt) = (&rows.q[r * d..(r + 1) * d], &rows.k[r * d..(r + 1) * d]);
    let mask = &hist.mask[g * len..(g + 1) * len];
    let events = || (0..len).filter(|&i| mask[i] != 0);
    let count = events().count();
    for (k, i) in events().enumerate() {
        x[(p + k) * d..(p + k + 1) * d].copy_from_slice(&hist.x[(g * len + i) * d..(g * len + i + 1) * d]);
    }
    let t = p + count;
    x[t * d..(t + 1) * d].copy_from_slice(&rows.x[r * d..(r + 1) * d]);
    for row in a[p * d..(t + 1) * d].chunks_exact_mut(d) {
        row.copy_from_slice(bo);
    }
    let [s, w_old, w_new] = per_event;
    for v in [&mut *s, &mut *w_old, &mut *w_new] {
        v.resize(len, 0.0);
    }
    // `Σ_c q[c]·m[c, ·]` over `m` `[dh, L]`, scaled, into `s`: one score per event.
    let scores = |q: &[f32], m: &[f32], s: &mut [f32]| {
        s.fill(0.0);
        for (c, row) in m.chunks_exact(len).enumerate() {
            let w = q[c] * scale;
            for (s, m) in s.iter_mut().zip(row) {
                *s = if FMA { w.mul_add(*m, *s) } else { *s + w * m };
            }
        }
    };
    // `out += w·v`, `d` wide.
    let axpy = |out: &mut [f32], w: f32, v: &[f32]| {
        for (o, v) in out.iter_mut().zip(v) {
            *o = if FMA { w.mul_add(*v, *o) } else { *o + w * v };
        }
    };
    for h in 0..heads {
        let cols = h * dh..(h + 1) * dh;
        let head = (g * heads + h) * len;
        let (max, sum) = (&hist.max[head..head + len], &hist.sum[head..head + len]);
        let vt_o = &rows.v_o[(r * heads + h) * d..(r * heads + h + 1) * d];
        // Each history query against the target's key, joined to its shared softmax.
        scores(&kt[cols.clone()], &hist.q[head * dh..(head + len) * dh], s);
        for i in 0..len {
            let top = max[i].max(s[i]);
            let (old, new) = (exp::<FMA>(max[i] - top), exp::<FMA>(s[i] - top));
            let inv = 1.0 / (sum[i] * old + new);
            w_old[i] = old * inv;
            w_new[i] = new * inv;
        }
        for (k, i) in events().enumerate() {
            let out = &mut a[(p + k) * d..(p + k + 1) * d];
            axpy(out, w_old[i], &hist.acc_o[(head + i) * d..(head + i + 1) * d]);
            axpy(out, w_new[i], vt_o);
        }
        // The target's query over every event and itself.
        let q = &qt[cols.clone()];
        scores(q, &hist.k[head * dh..(head + len) * dh], s);
        let own: f32 = q.iter().zip(&kt[cols.clone()]).map(|(a, b)| a * b).sum::<f32>() * scale;
        let top = events().map(|i| s[i]).fold(own, f32::max);
        let own = exp::<FMA>(own - top);
        let mut total = own;
        for i in 0..len {
            let e = if mask[i] != 0 { exp::<FMA>(s[i] - top) } else { 0.0 };
            s[i] = e;
            total += e;
        }
        let inv = 1.0 / total;
        let out = &mut a[t * d..(t + 1) * d];
        axpy(out, own * inv, vt_o);
        for i in events() {
            axpy(out, s[i] * inv, &hist.v_o[(head + i) * d..(head + i + 1) * d]);
        }
    }
}

avx2_dispatch! {
    /// `out` = LN(`x` + `a`) row by row, `[m, d]`.
    fn residual_norm(d: usize, m: usize, x: &[f32], a: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) => residual_norm_body
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn residual_norm_body(d: usize, m: usize, x: &[f32], a: &[f32], w: &[f32], b: &[f32], eps: f32, out: &mut [f32]) {
    let out = &mut out[..m * d];
    for ((o, x), a) in out.iter_mut().zip(&x[..m * d]).zip(&a[..m * d]) {
        *o = x + a;
    }
    norm_in_place_body(d, out, w, b, eps);
}

avx2_dispatch! {
    /// Each `d`-wide row of `out` replaced by its layer norm.
    fn norm_in_place(d: usize, out: &mut [f32], w: &[f32], b: &[f32], eps: f32) => norm_in_place_body
}

/// Rows are normalized in groups of [`NORM_ROWS`]: first every row's mean and variance, then
/// their `1 / √(var + ε)` in one vector pass, then the rows. Row by row, the chain from the
/// sums through the square root and the division to the scaling held every row up
/// (a layer norm of 32 floats took about 90 cycles).
const NORM_ROWS: usize = 16;

#[inline(always)]
fn norm_in_place_body(d: usize, out: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    let n = d as f32;
    for group in out.chunks_mut(NORM_ROWS * d) {
        let (mut mean, mut inv) = ([0.0f32; NORM_ROWS], [0.0f32; NORM_ROWS]);
        for (r, v) in group.chunks_exact(d).enumerate() {
            let mu = sum8(v, |x| x) / n;
            mean[r] = mu;
            inv[r] = sum8(v, |x| (x - mu) * (x - mu)) / n;
        }
        // The variance, biased (as `torch.nn.LayerNorm`), becomes 1 / √(var + ε).
        for v in inv.iter_mut() {
            *v = 1.0 / (*v + eps).sqrt();
        }
        for (r, v) in group.chunks_exact_mut(d).enumerate() {
            let (mu, s) = (mean[r], inv[r]);
            for ((v, w), b) in v.iter_mut().zip(w).zip(b) {
                *v = (*v - mu) * s * w + b;
            }
        }
    }
}

/// `Σ f(v[i])` over 8 running sums, so that it vectorizes (one running sum cannot: float
/// addition does not reassociate).
#[inline(always)]
fn sum8(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let chunks = v.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    let mut acc = [0.0f32; 8];
    for c in chunks {
        for i in 0..8 {
            acc[i] += f(c[i]);
        }
    }
    acc.iter().sum::<f32>() + rest
}

avx2_dispatch! {
    fn activate(h: &mut [f32], act: Act) => activate_body
}

#[inline(always)]
fn activate_body(h: &mut [f32], act: Act) {
    match act {
        Act::Relu => h.iter_mut().for_each(|v| *v = v.max(0.0)),
        // Arithmetic rather than a choice: LLVM turns `if v > 0 { v } else { s·v }` into masked
        // stores, which stall on the stores before them (nine tenths of this loop's time).
        Act::LeakyRelu(s) => h.iter_mut().for_each(|v| *v = v.max(0.0) + s * v.min(0.0)),
    }
}

avx2_dispatch! {
    fn add_rows(d: usize, out: &mut [f32], b: &[f32]) => add_rows_body
}

#[inline(always)]
fn add_rows_body(d: usize, out: &mut [f32], b: &[f32]) {
    for o in out.chunks_exact_mut(d) {
        o.iter_mut().zip(b).for_each(|(o, b)| *o += b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::values;

    /// The tail from its definition, in f64, position by position.
    fn reference(t: &Tail, x: &[f32], a: &[f32], n: usize) -> Vec<f64> {
        let (d, f) = (t.d, t.f);
        let norm = |v: &[f64], nm: &Norm| -> Vec<f64> {
            let mean = v.iter().sum::<f64>() / d as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d as f64;
            (0..d).map(|j| (v[j] - mean) / (var + nm.eps as f64).sqrt() * nm.weight[j] as f64 + nm.bias[j] as f64).collect()
        };
        let mut out = Vec::with_capacity(n * d);
        for p in 0..n {
            let s: Vec<f64> = (0..d).map(|j| x[p * d + j] as f64 + a[p * d + j] as f64).collect();
            let x1 = norm(&s, &t.norm1);
            let h: Vec<f64> = (0..f)
                .map(|i| {
                    let v = t.b1[i] as f64 + (0..d).map(|j| t.w1[i * d + j] as f64 * x1[j]).sum::<f64>();
                    match t.act {
                        Act::Relu => v.max(0.0),
                        Act::LeakyRelu(s) => if v > 0.0 { v } else { v * s as f64 },
                    }
                })
                .collect();
            let y: Vec<f64> = (0..d).map(|j| x1[j] + t.b2[j] as f64 + (0..f).map(|i| t.w2[j * f + i] as f64 * h[i]).sum::<f64>()).collect();
            out.extend(norm(&y, &t.norm2));
        }
        out
    }

    #[test]
    fn tail_matches_its_definition() {
        // Widths that are and are not multiples of the GEMM's tiles; a chunk and a half of
        // positions, so that chunks and thread parts both split; 1, 2 and 3 threads.
        for (d, f, n, act) in [(32, 128, 3 * CHUNK / 2 + 7, Act::LeakyRelu(0.01)), (12, 20, 70, Act::Relu), (8, 8, 1, Act::LeakyRelu(0.2))] {
            let p = |k: usize, s: u64| values(k, s);
            let (w1, b1, w2, b2) = (p(f * d, 1), p(f, 2), p(d * f, 3), p(d, 4));
            let (g1, c1, g2, c2) = (p(d, 5), p(d, 6), p(d, 7), p(d, 8));
            let t = Tail {
                d,
                f,
                norm1: Norm { weight: &g1, bias: &c1, eps: 1e-5 },
                w1: &w1,
                b1: &b1,
                w2: &w2,
                b2: &b2,
                act,
                norm2: Norm { weight: &g2, bias: &c2, eps: 1e-5 },
            };
            let (x, a) = (p(n * d, 9), p(n * d, 10));
            let want = reference(&t, &x, &a, n);
            for threads in [1, 2, 3] {
                let mut out = vec![f32::NAN; n * d];
                tail(&t, &x, &a, n, threads, &mut out);
                let worst = out.iter().zip(&want).map(|(g, w)| if g.is_nan() { f64::INFINITY } else { (*g as f64 - w).abs() }).fold(0.0, f64::max);
                assert!(worst < 2e-5, "d {d} f {f} n {n} threads {threads}: max difference {worst}");
            }
        }
    }

    /// `encode_shared` against the block over each row's own sequence from its definition, in
    /// f64: full softmax per query over the row's events and its target, the output projection,
    /// the tail, the readout. Histories full, partly padded and empty; rows of a history
    /// scattered; 1, 2 and 4 heads; a chunk cap that splits the rows; 1 and 3 threads.
    #[test]
    fn encode_shared_matches_the_block_over_each_rows_sequence() {
        for (d, heads, f, len) in [(16, 2, 24, 7), (8, 1, 16, 5), (16, 4, 8, 3), (8, 2, 8, 300)] {
            let p = |k: usize, s: u64| values(k, s);
            let (w1, b1, w2, b2) = (p(f * d, 1), p(f, 2), p(d * f, 3), p(d, 4));
            let (g1, c1, g2, c2) = (p(d, 5), p(d, 6), p(d, 7), p(d, 8));
            let (wo, bo) = (p(d * d, 11), p(d, 12));
            let tail = Tail {
                d,
                f,
                norm1: Norm { weight: &g1, bias: &c1, eps: 1e-5 },
                w1: &w1,
                b1: &b1,
                w2: &w2,
                b2: &b2,
                act: Act::LeakyRelu(0.01),
                norm2: Norm { weight: &g2, bias: &c2, eps: 1e-5 },
            };
            let block = Block { heads, bo: &bo, tail };
            // Four histories: full, events at both ends, none, one.
            let u = 4;
            let mut mask = vec![1u8; u * len];
            mask[len + 1..2 * len - 1].fill(0);
            mask[2 * len..3 * len].fill(0);
            mask[3 * len..4 * len - 1].fill(0);
            let (hx, hq, hk, hv) = (p(u * len * d, 13), p(u * len * d, 14), p(u * len * d, 15), p(u * len * d, 16));
            let group = [0usize, 0, 1, 2, 0, 3, 3, 1, 2, 0, 1];
            let n = group.len();
            let (tx, tq, tk, tv) = (p(n * d, 17), p(n * d, 18), p(n * d, 19), p(n * d, 20));
            let dh = d / heads;
            let scale = 1.0 / (dh as f64).sqrt();
            let dotf = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>();
            // The shared parts, per history query and head over the history's own events.
            let (mut max, mut sum, mut acc) = (vec![0.0f32; u * len * heads], vec![0.0f32; u * len * heads], vec![0.0f32; u * len * d]);
            for g in 0..u {
                for i in 0..len {
                    for h in 0..heads {
                        let c = h * dh..(h + 1) * dh;
                        let at = |t: &[f32], j: usize| t[(g * len + j) * d..(g * len + j + 1) * d][c.clone()].to_vec();
                        let on: Vec<usize> = (0..len).filter(|&j| mask[g * len + j] != 0).collect();
                        let s: Vec<f64> = on.iter().map(|&j| dotf(&at(&hq, i), &at(&hk, j)) * scale).collect();
                        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let m = if m.is_finite() { m } else { 0.0 };
                        max[(g * heads + h) * len + i] = m as f32;
                        sum[(g * heads + h) * len + i] = s.iter().map(|s| (s - m).exp()).sum::<f64>() as f32;
                        for (k, col) in c.clone().enumerate() {
                            acc[(g * len + i) * d + col] = on.iter().zip(&s).map(|(&j, s)| (s - m).exp() * at(&hv, j)[k] as f64).sum::<f64>() as f32;
                        }
                    }
                }
            }
            // [U, L, d] → [U, H, dh, L].
            let per_head = |t: &[f32]| -> Vec<f32> {
                let mut out = vec![0.0f32; t.len()];
                for g in 0..u {
                    for i in 0..len {
                        for col in 0..d {
                            let (h, c) = (col / dh, col % dh);
                            out[((g * heads + h) * dh + c) * len + i] = t[(g * len + i) * d + col];
                        }
                    }
                }
                out
            };
            let (q_heads, k_heads) = (per_head(&hq), per_head(&hk));
            // [rows, L, d] (heads side by side) through each head's share of the output
            // projection: [rows, H, L, d].
            let through_wo = |t: &[f32], rows: usize, len: usize| -> Vec<f32> {
                let mut out = vec![0.0f32; rows * heads * len * d];
                for g in 0..rows {
                    for h in 0..heads {
                        for i in 0..len {
                            for o in 0..d {
                                let v: f64 = (h * dh..(h + 1) * dh).map(|c| t[(g * len + i) * d + c] as f64 * wo[o * d + c] as f64).sum();
                                out[((g * heads + h) * len + i) * d + o] = v as f32;
                            }
                        }
                    }
                }
                out
            };
            let (acc_o, v_o, tv_o) = (through_wo(&acc, u, len), through_wo(&hv, u, len), through_wo(&tv, n, 1));
            let hist = Histories { len, x: &hx, mask: &mask, q: &q_heads, k: &k_heads, max: &max, sum: &sum, acc_o: &acc_o, v_o: &v_o };
            let rows = Targets { group: &group, x: &tx, q: &tq, k: &tk, v_o: &tv_o };
            // The reference, row by row.
            let mut want = Vec::new();
            for (r, &g) in group.iter().enumerate() {
                let on: Vec<usize> = (0..len).filter(|&j| mask[g * len + j] != 0).collect();
                let row = |t: &[f32], tt: &[f32], j: Option<usize>| -> Vec<f32> {
                    match j {
                        Some(j) => t[(g * len + j) * d..(g * len + j + 1) * d].to_vec(),
                        None => tt[r * d..(r + 1) * d].to_vec(),
                    }
                };
                let seq: Vec<Option<usize>> = on.iter().map(|&j| Some(j)).chain([None]).collect();
                let mut xs = Vec::new();
                let mut a_all = Vec::new();
                for &qi in &seq {
                    let q = row(&hq, &tq, qi);
                    let mut ctx = vec![0.0f64; d];
                    for h in 0..heads {
                        let c = h * dh..(h + 1) * dh;
                        let s: Vec<f64> = seq.iter().map(|&kj| dotf(&q[c.clone()], &row(&hk, &tk, kj)[c.clone()]) * scale).collect();
                        let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let z: f64 = s.iter().map(|s| (s - m).exp()).sum();
                        for (kj, s) in seq.iter().zip(&s) {
                            let v = row(&hv, &tv, *kj);
                            for col in c.clone() {
                                ctx[col] += (s - m).exp() / z * v[col] as f64;
                            }
                        }
                    }
                    let ctx32: Vec<f32> = ctx.iter().map(|&c| c as f32).collect();
                    a_all.extend((0..d).map(|o| (bo[o] as f64 + dotf(&wo[o * d..(o + 1) * d], &ctx32)) as f32));
                    xs.extend(row(&hx, &tx, qi));
                }
                let y = reference(&tail, &xs, &a_all, seq.len());
                let events = on.len();
                want.extend_from_slice(&y[events * d..(events + 1) * d]);
                want.extend((0..d).map(|c| (0..events).map(|e| y[e * d + c]).sum::<f64>() / events.max(1) as f64));
            }
            for threads in [1, 3] {
                let mut out = vec![f32::NAN; n * 2 * d];
                encode_shared(&block, &hist, &rows, threads, &mut out);
                let worst = out.iter().zip(&want).map(|(g, w)| if g.is_nan() { f64::INFINITY } else { (*g as f64 - w).abs() }).fold(0.0, f64::max);
                assert!(worst < 5e-5, "d {d} heads {heads} len {len} threads {threads}: max difference {worst}");
            }
        }
    }
}
