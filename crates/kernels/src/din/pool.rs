//! DIN's pooling (a weighted sum without normalization) and its gradients.
use super::*;

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
    pub(super) fn pool_rows(scores: &[f32], values: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, out: &mut [f32]) => pool_rows_body
}

#[inline(always)]
pub(super) fn pool_rows_body(scores: &[f32], values: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, out: &mut [f32]) {
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
    pub(super) fn pool_dscores_rows(values: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, g: &[f32], out: &mut [f32]) => pool_dscores_rows_body
}

#[inline(always)]
pub(super) fn pool_dscores_rows_body(values: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, g: &[f32], out: &mut [f32]) {
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
    pub(super) fn pool_dvalues_rows(scores: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, g: &[f32], out: &mut [f32], accumulate: bool) => pool_dvalues_rows_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn pool_dvalues_rows_body(scores: &[f32], mask: &[u8], rows: Range<usize>, len: usize, dv: usize, g: &[f32], out: &mut [f32], accumulate: bool) {
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

