//! The unit's forward pass, a chunk of positions at a time.
use super::*;

/// `out = base + diag(q) · scaled` for `[d, h]` matrices (`M_q` from `Wkdᵀ`, `Wpᵀ`), or with
/// `by_column`, `out = base + scaled · diag(q)` for `[h, d]` ones (`M_qᵀ` from `Wkd`, `Wp`).
pub(super) fn per_row_matrix(base: &[f32], scaled: &[f32], q: &[f32], by_column: bool, out: &mut Vec<f32>) {
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
    pub(super) fn forward_chunk(unit: &Unit, split: &Split, q: &[f32], pos: &Positions, rows: Range<usize>, x: &[f32], z: &mut [&mut [f32]], a: &mut Vec<Vec<f32>>, per_row: &mut Vec<f32>, m: &mut Vec<f32>) => forward_chunk_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn forward_chunk_body(unit: &Unit, split: &Split, q: &[f32], pos: &Positions, rows: Range<usize>, x: &[f32], z: &mut [&mut [f32]], a: &mut Vec<Vec<f32>>, per_row: &mut Vec<f32>, m: &mut Vec<f32>) {
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

