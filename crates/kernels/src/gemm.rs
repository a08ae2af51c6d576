//! A small-matrix single-precision GEMM without packing: `C = βC + A·B` with `B` and `C`
//! row-major and `A` at any strides (so `Aᵀ·B` costs nothing extra).
//!
//! The activation unit's products are narrow (`k`, `n` ≤ a few hundred) and each operand is used
//! once; packing both operands, as general GEMMs do, cost as much as the multiply-adds here
//! (measured with `matrixmultiply`: 35 % of the kernel's time in packing, 32 % in its
//! micro-kernel). Here `B`'s rows are read in place, 16 columns at a time, and 6 rows of `C` are
//! accumulated in registers (12 AVX registers of the 16), the shape of BLIS's Haswell kernel.
//! On x86-64 with AVX2 and FMA (checked at run time) the loops compile to fused multiply-adds;
//! elsewhere the same code runs with separate multiplies and adds.

/// A matrix operand: element `(i, j)` is `s[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    pub s: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

pub fn mat(s: &[f32], rs: usize, cs: usize) -> Mat<'_> {
    Mat { s, rs, cs }
}

/// `w` `[rows, cols]` row-major, transposed: `Wᵀ` row-major, as the right operand of `A·Wᵀ`.
pub(crate) fn transposed(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| w[r * cols + c])).collect()
}

const MR: usize = 6;
const NR: usize = 16;
/// The longest `k` one pass over the tiles covers (see [`body`]).
const KC: usize = 128;

/// `c[m×n]` (row-major, row stride `ldc`) `= beta·c + a[m×k] · b[k×n]` with `b` row-major (row
/// stride `ldb`). `beta = 0` ignores `c`'s contents (NaN included). Panics if an operand is too
/// short for its shape.
#[allow(clippy::too_many_arguments)]
pub fn gemm(m: usize, k: usize, n: usize, a: Mat, b: &[f32], ldb: usize, beta: f32, c: &mut [f32], ldc: usize) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(k == 0 || ((m - 1) * a.rs + (k - 1) * a.cs < a.s.len() && (k - 1) * ldb + n <= b.len()), "gemm operand out of bounds");
    assert!((m - 1) * ldc + n <= c.len(), "gemm output out of bounds");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { gemm_fma(m, k, n, a, b, ldb, beta, c, ldc) };
    }
    body::<false>(m, k, n, a, b, ldb, beta, c, ldc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_fma(m: usize, k: usize, n: usize, a: Mat, b: &[f32], ldb: usize, beta: f32, c: &mut [f32], ldc: usize) {
    body::<true>(m, k, n, a, b, ldb, beta, c, ldc)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn body<const FMA: bool>(m: usize, k: usize, n: usize, a: Mat, b: &[f32], ldb: usize, beta: f32, c: &mut [f32], ldc: usize) {
    // A long `k` (a weight gradient `Aᵀ·B` summed over a block's rows) in slices of `KC`: over
    // the whole of it, every tile streamed all of `A` and `B` again, from L2 once they outgrew
    // L1; a slice of both stays in L1 while every tile reads it, and `C` (small there) collects
    // the slices. (A loop here, not a recursive call, so that all of it is inlined into
    // `gemm_fma` and compiled with its target features.)
    // (`k` = 0 still makes one empty slice: `C = βC`.)
    let mut p = 0;
    loop {
        let kc = (k - p).min(KC);
        let a_p = Mat { s: &a.s[(p * a.cs).min(a.s.len())..], ..a };
        panel::<FMA>(m, kc, n, a_p, &b[(p * ldb).min(b.len())..], ldb, if p == 0 { beta } else { 1.0 }, c, ldc);
        p += KC;
        if p >= k {
            return;
        }
    }
}

/// [`body`] for one slice of `k`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn panel<const FMA: bool>(m: usize, k: usize, n: usize, a: Mat, b: &[f32], ldb: usize, beta: f32, c: &mut [f32], ldc: usize) {
    let mut i = 0;
    while i < m {
        let rows = (m - i).min(MR);
        let mut j = 0;
        while j < n {
            let w = n - j;
            macro_rules! tile {
                ($r:literal, $w:literal) => {
                    tile::<FMA, $r, $w>(k, a, i, b, ldb, j, beta, c, ldc)
                };
            }
            macro_rules! tiles {
                ($w:literal) => {
                    match rows {
                        6 => tile!(6, $w),
                        5 => tile!(5, $w),
                        4 => tile!(4, $w),
                        3 => tile!(3, $w),
                        2 => tile!(2, $w),
                        _ => tile!(1, $w),
                    }
                };
            }
            let step = if w >= NR {
                tiles!(16);
                NR
            } else if w >= 8 {
                tiles!(8);
                8
            } else if w >= 4 {
                tiles!(4);
                4
            } else {
                tiles!(1);
                1
            };
            j += step;
        }
        i += rows;
    }
}

/// Rows `i..i + R`, columns `j..j + W` of `c`. The caller has checked every index in [`gemm`]'s
/// assertions, so the inner loop reads without bounds checks.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile<const FMA: bool, const R: usize, const W: usize>(k: usize, a: Mat, i: usize, b: &[f32], ldb: usize, j: usize, beta: f32, c: &mut [f32], ldc: usize) {
    let mut acc = [[0.0f32; W]; R];
    let (ap, bp) = (a.s.as_ptr(), b.as_ptr());
    for p in 0..k {
        // SAFETY: rows i..i + R < m and columns j..j + W ≤ n, within the bounds gemm asserted.
        unsafe {
            let brow = &*(bp.add(p * ldb + j) as *const [f32; W]);
            for (r, acc) in acc.iter_mut().enumerate() {
                let x = *ap.add((i + r) * a.rs + p * a.cs);
                for (acc, &y) in acc.iter_mut().zip(brow) {
                    *acc = if FMA { x.mul_add(y, *acc) } else { *acc + x * y };
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        let out: &mut [f32; W] = (&mut c[(i + r) * ldc + j..(i + r) * ldc + j + W]).try_into().expect("W columns");
        if beta == 0.0 {
            *out = *acc;
        } else {
            for (o, &v) in out.iter_mut().zip(acc) {
                *o = beta * *o + v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_triple_loop_at_every_tail_and_stride() {
        let val = |i: usize| ((i * 7919) % 23) as f32 * 0.25 - 2.5;
        for (m, k, n) in [(1, 1, 1), (7, 3, 21), (13, 0, 5), (6, 17, 16), (11, 9, 40), (2, 64, 80), (19, 5, 3), (7, 300, 21), (13, 257, 40), (3, 129, 5)] {
            for transposed in [false, true] {
                let av: Vec<f32> = (0..m * k + 3).map(val).collect();
                let a = if transposed { mat(&av, 1, m) } else { mat(&av, k, 1) };
                let ldb = n + 2;
                let b: Vec<f32> = (0..k.max(1) * ldb).map(|i| val(i + 5)).collect();
                for beta in [0.0, 1.0, 0.5] {
                    let ldc = n + 1;
                    let c0: Vec<f32> = (0..m * ldc).map(|i| val(i + 11)).collect();
                    let mut c = c0.clone();
                    gemm(m, k, n, a, &b, ldb, beta, &mut c, ldc);
                    for i in 0..m {
                        for j in 0..ldc {
                            let want = if j < n {
                                let dot: f32 = (0..k).map(|p| a.s[i * a.rs + p * a.cs] * b[p * ldb + j]).sum();
                                beta * c0[i * ldc + j] + dot
                            } else {
                                c0[i * ldc + j]
                            };
                            let got = c[i * ldc + j];
                            assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "({m},{k},{n}) t={transposed} β={beta} ({i},{j}): {got} vs {want}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan() {
        let mut c = vec![f32::NAN; 4];
        gemm(2, 1, 2, mat(&[1.0, 2.0], 1, 1), &[3.0, 4.0], 2, 0.0, &mut c, 2);
        assert_eq!(c, vec![3.0, 4.0, 6.0, 8.0]);
    }
}
