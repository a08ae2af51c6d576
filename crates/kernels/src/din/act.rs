//! The unit's activations and their backward passes, element-wise.
use super::*;

avx2_dispatch! {
    /// `a = act(z)` appended to `a`.
    pub(super) fn activate(l: &Layer, z: &[f32], a: &mut Vec<f32>) => activate_body
}

#[inline(always)]
pub(super) fn activate_body(l: &Layer, z: &[f32], a: &mut Vec<f32>) {
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
pub(super) fn add_activate(l: &Layer, add: &[f32], z: &mut [f32], a: &mut Vec<f32>) {
    for zr in z.chunks_exact_mut(add.len()) {
        zr.iter_mut().zip(add).for_each(|(z, &b)| *z += b);
    }
    activate(l, z, a);
}

avx2_dispatch! {
    /// `d ← d ⊙ act′(z)` in place (`d` holds ∂L/∂a on entry, ∂L/∂z on exit), with torch's
    /// conventions at 0 (ReLU and PReLU take the negative side); PReLU's slope gradient is added
    /// to `dslope`.
    pub(super) fn act_backward(l: &Layer, z: &[f32], a: &[f32], d: &mut [f32], dslope: Option<&mut Vec<f32>>) => act_backward_body
}

#[inline(always)]
pub(super) fn act_backward_body(l: &Layer, z: &[f32], a: &[f32], d: &mut [f32], dslope: Option<&mut Vec<f32>>) {
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

pub(super) fn add_rows(acc: &mut [f32], x: &[f32]) {
    for row in x.chunks_exact(acc.len()) {
        acc.iter_mut().zip(row).for_each(|(a, &x)| *a += x);
    }
}

