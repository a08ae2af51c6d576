//! One optimizer step over a parameter, its gradient and its state, in a single pass.
//!
//! The update rules are torch.optim's single-tensor Adam, AdamW and Adagrad, with the same
//! operations in the same order on `f32`: the hyper-parameters are computed in `f64` by the caller
//! and rounded once, as torch rounds a Python float passed to an operator. Written over tensors,
//! one update is about a dozen libtorch operators per parameter, each a pass over memory and most
//! an allocation.
use crate::parallel::run_parts;

/// Below this many elements in all, one thread does the whole step.
const PARALLEL_MIN: usize = 1 << 15;

/// An update rule with its step's constants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// `g ← g + λp` (when `weight_decay ≠ 0`); `p ← p·decay` (AdamW's decoupled decay, `1 − lr·λ`);
    /// `m ← lerp(m, g, 1 − β₁)`; `v ← β₂v + (1 − β₂)g²`; `p ← p − step_size · m / (√v / bc2_sqrt + ε)`.
    Adam { beta1: f32, beta2: f32, eps: f32, weight_decay: f32, decay: Option<f32>, step_size: f32, bc2_sqrt: f32 },
    /// `g ← g + λp`; `s ← s + g²`; `p ← p − lr · g / (√s + ε)`.
    Adagrad { lr: f32, eps: f32, weight_decay: f32 },
}

/// One parameter's update: `state` holds Adam's `[m, v]` or Adagrad's `[sum]`, each as long as
/// `param`.
pub struct Slot<'a> {
    pub param: &'a mut [f32],
    pub grad: &'a [f32],
    pub state: Vec<&'a mut [f32]>,
    pub rule: Rule,
}

impl<'a> Slot<'a> {
    fn check(&self) {
        let n = self.param.len();
        let want = match self.rule {
            Rule::Adam { .. } => 2,
            Rule::Adagrad { .. } => 1,
        };
        assert!(self.grad.len() == n && self.state.len() == want && self.state.iter().all(|s| s.len() == n), "optimizer step: gradient or state of another size than the parameter");
    }

    /// The first `k` elements as a slot of their own, and the rest.
    fn split(self, k: usize) -> (Slot<'a>, Slot<'a>) {
        let (p0, p1) = self.param.split_at_mut(k);
        let (g0, g1) = self.grad.split_at(k);
        let (s0, s1): (Vec<_>, Vec<_>) = self.state.into_iter().map(|s| s.split_at_mut(k)).unzip();
        (Slot { param: p0, grad: g0, state: s0, rule: self.rule }, Slot { param: p1, grad: g1, state: s1, rule: self.rule })
    }

    fn apply(self) {
        match self.rule {
            Rule::Adam { beta1, beta2, eps, weight_decay, decay, step_size, bc2_sqrt } => {
                let [m, v] = <[&mut [f32]; 2]>::try_from(self.state).expect("checked: two slots");
                let w = 1.0 - beta1;
                let c2 = 1.0 - beta2;
                for (((p, &g), m), v) in self.param.iter_mut().zip(self.grad).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = if weight_decay != 0.0 { g + weight_decay * *p } else { g };
                    if let Some(d) = decay {
                        *p *= d;
                    }
                    // torch's lerp, as written for weights under one half.
                    *m = if w.abs() < 0.5 { *m + w * (g - *m) } else { g - (g - *m) * (1.0 - w) };
                    *v = *v * beta2 + c2 * g * g;
                    let denom = v.sqrt() / bc2_sqrt + eps;
                    *p += -step_size * (*m / denom);
                }
            }
            Rule::Adagrad { lr, eps, weight_decay } => {
                let [s] = <[&mut [f32]; 1]>::try_from(self.state).expect("checked: one slot");
                for ((p, &g), s) in self.param.iter_mut().zip(self.grad).zip(s.iter_mut()) {
                    let g = if weight_decay != 0.0 { g + weight_decay * *p } else { g };
                    *s += g * g;
                    *p += -lr * (g / (s.sqrt() + eps));
                }
            }
        }
    }
}

/// Applies every slot's update, the elements split evenly between up to `threads` workers (each
/// element's update is the same whatever the split).
pub fn step(slots: Vec<Slot<'_>>, threads: usize) {
    slots.iter().for_each(Slot::check);
    let total: usize = slots.iter().map(|s| s.param.len()).sum();
    let parts = if total < PARALLEL_MIN { 1 } else { threads.max(1) };
    let per = total.div_ceil(parts).max(1);
    let mut buckets: Vec<Vec<Slot>> = (0..parts).map(|_| Vec::new()).collect();
    let (mut b, mut room) = (0, per);
    for mut s in slots {
        while s.param.len() > room && b + 1 < parts {
            let (head, rest) = s.split(room);
            buckets[b].push(head);
            s = rest;
            (b, room) = (b + 1, per);
        }
        room = room.saturating_sub(s.param.len());
        buckets[b].push(s);
    }
    run_parts(buckets, |bucket| bucket.into_iter().for_each(Slot::apply));
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::values;

    /// Three steps of Adam (L2 and decoupled decay) and Adagrad, in f64 from the formulas, against
    /// the kernel for parameters of several sizes split between several threads.
    #[test]
    fn matches_the_update_rules() {
        for (kind, wd) in [("adam", 0.0), ("adam", 0.01), ("adamw", 0.01), ("adagrad", 0.0), ("adagrad", 0.1)] {
            for threads in [1, 2, 3] {
                let sizes = [5usize, 40_000, 7, 30_001];
                let mut params: Vec<Vec<f32>> = sizes.iter().enumerate().map(|(i, &n)| values(n, i as u64 + 1)).collect();
                let mut want: Vec<Vec<f64>> = params.iter().map(|p| p.iter().map(|&x| x as f64).collect()).collect();
                let slots = if kind == "adagrad" { 1 } else { 2 };
                let mut state: Vec<Vec<Vec<f32>>> = sizes.iter().map(|&n| vec![vec![0.0; n]; slots]).collect();
                let mut want_state: Vec<Vec<Vec<f64>>> = sizes.iter().map(|&n| vec![vec![0.0; n]; slots]).collect();
                let (lr, b1, b2, eps) = (0.01f64, 0.9f64, 0.999f64, 1e-8f64);
                for t in 1..=3 {
                    let grads: Vec<Vec<f32>> = sizes.iter().enumerate().map(|(i, &n)| values(n, 100 * t + i as u64)).collect();
                    let bc1 = 1.0 - b1.powi(t as i32);
                    let bc2 = 1.0 - b2.powi(t as i32);
                    let rule = match kind {
                        "adagrad" => Rule::Adagrad { lr: lr as f32, eps: eps as f32, weight_decay: wd as f32 },
                        _ => Rule::Adam {
                            beta1: b1 as f32,
                            beta2: b2 as f32,
                            eps: eps as f32,
                            weight_decay: if kind == "adam" { wd as f32 } else { 0.0 },
                            decay: (kind == "adamw").then_some((1.0 - lr * wd) as f32),
                            step_size: (lr / bc1) as f32,
                            bc2_sqrt: bc2.sqrt() as f32,
                        },
                    };
                    let before = params.clone();
                    let slots: Vec<Slot> = params
                        .iter_mut()
                        .zip(&grads)
                        .zip(state.iter_mut())
                        .map(|((p, g), s)| Slot { param: p, grad: g, state: s.iter_mut().map(|x| x.as_mut_slice()).collect(), rule })
                        .collect();
                    step(slots, threads);
                    for (i, ((p, g), s)) in want.iter_mut().zip(&grads).zip(want_state.iter_mut()).enumerate() {
                        for j in 0..p.len() {
                            // The decayed gradient rounded to f32 first, as the kernel has it:
                            // where g + λp nearly cancels, Adagrad's step depends on its rounding.
                            let g = if kind != "adamw" && wd != 0.0 { (g[j] + wd as f32 * before[i][j]) as f64 } else { g[j] as f64 };
                            if kind == "adagrad" {
                                s[0][j] += g * g;
                                p[j] -= lr * g / (s[0][j].sqrt() + eps);
                            } else {
                                if kind == "adamw" {
                                    p[j] *= 1.0 - lr * wd;
                                }
                                s[0][j] = b1 * s[0][j] + (1.0 - b1) * g;
                                s[1][j] = b2 * s[1][j] + (1.0 - b2) * g * g;
                                p[j] -= lr / bc1 * s[0][j] / (s[1][j].sqrt() / bc2.sqrt() + eps);
                            }
                        }
                    }
                }
                for (i, (p, w)) in params.iter().zip(&want).enumerate() {
                    let d = p.iter().zip(w).map(|(&a, &b)| (a as f64 - b).abs()).fold(0.0, f64::max);
                    assert!(d < 1e-5, "{kind} wd {wd} threads {threads} parameter {i}: off by {d}");
                }
            }
        }
    }
}
