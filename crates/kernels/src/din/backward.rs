//! The unit's backward pass: input and parameter gradients, per thread, summed in thread order.
use super::*;

/// One thread's gradient sums over its rows (layer 0's `w` holds the gradient of `wx`, `[2d, h]`,
/// and the others' that of `Wᵀ`, until [`backward`] rearranges them).
pub(super) fn zero_grads(unit: &Unit) -> (Vec<LayerGrads>, Vec<f32>, f32) {
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
    pub(super) fn backward_chunk(unit: &Unit, split: &Split, saved: &Saved, q: &[f32], keys: &[f32], dscores: &[f32], first: usize, ch: Range<usize>, sc: &mut Scratch, g: &mut Vec<f32>, dx: &mut Vec<f32>, acc: (&mut [LayerGrads], &mut [f32], &mut f32), dq: &mut [f32], dkeys: &mut [f32], drow: &mut [f32]) => backward_chunk_body
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn backward_chunk_body(unit: &Unit, split: &Split, saved: &Saved, q: &[f32], keys: &[f32], dscores: &[f32], first: usize, ch: Range<usize>, sc: &mut Scratch, g: &mut Vec<f32>, dx: &mut Vec<f32>, acc: (&mut [LayerGrads], &mut [f32], &mut f32), dq: &mut [f32], dkeys: &mut [f32], drow: &mut [f32]) {
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

