//! Optimizers written over tensors rather than libtorch's C++ optimizers, so that their state
//! (Adam's moments, Adagrad's sums, the step count) is ours to save with a run and restore; tch
//! gives no access to the C++ optimizers' state. The update rules are torch.optim's, checked
//! against it in tests/optim_parity.rs.
//!
//! Parameters form two groups with their own weight decay: embedding tables (every variable
//! whose checkpoint key starts with `emb.` or contains `.positions.`) and all other (dense) ones.
//!
//! On CPU the update runs as one pass over each parameter ([`attnrec_kernels::optim`], on
//! libtorch's threads) rather than a dozen tensor operators per parameter; `fused = false`, or
//! another device, takes the tensor operators.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam with L2 weight decay added to the gradient (torch.optim.Adam).
    #[default]
    Adam,
    /// Adam with decoupled weight decay (torch.optim.AdamW).
    AdamW,
    /// Adagrad (torch.optim.Adagrad, initial accumulator 0).
    Adagrad,
}

/// How the learning rate moves over the steps of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    #[default]
    Constant,
    /// Cosine decay from `lr` to 0 over the run, after the warm-up.
    Cosine,
    /// Linear decay from `lr` to 0 over the run, after the warm-up.
    Linear,
}

/// The learning rate at `step` (0-based) of `total`: linear warm-up over `warmup` steps, then
/// the schedule.
pub fn lr_at(base: f64, schedule: LrSchedule, warmup: usize, step: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    match schedule {
        LrSchedule::Constant => base,
        LrSchedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        LrSchedule::Linear => base * (1.0 - progress),
    }
}

/// Hyper-parameters of [`Optimizer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimSpec {
    pub kind: OptimizerKind,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub embedding_weight_decay: f64,
    /// The one-pass CPU update (`train.fused`); the tensor operators otherwise.
    pub fused: bool,
}

#[derive(Debug)]
struct Param {
    name: String,
    var: Tensor,
    weight_decay: f64,
    /// Adam: [m, v]; Adagrad: [sum].
    state: Vec<Tensor>,
}

#[derive(Debug)]
pub struct Optimizer {
    spec: OptimSpec,
    params: Vec<Param>,
    steps: i64,
}

impl Optimizer {
    /// Optimizes every trainable variable of `vs`, in checkpoint-key order; the embedding tables
    /// the model declares in `groups` decay by `spec.embedding_weight_decay`.
    pub fn new(vs: &nn::VarStore, groups: &crate::models::ParamGroups, spec: OptimSpec) -> Optimizer {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, v)| v.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = if spec.kind == OptimizerKind::Adagrad { 1 } else { 2 };
        let params = vars
            .into_iter()
            .map(|(name, var)| Param {
                weight_decay: if groups.is_embedding(&var) { spec.embedding_weight_decay } else { spec.weight_decay },
                state: (0..slots).map(|_| tch::no_grad(|| var.zeros_like())).collect(),
                name,
                var,
            })
            .collect();
        crate::omp::install();
        Optimizer { spec, params, steps: 0 }
    }

    pub fn zero_grad(&mut self) {
        for p in &self.params {
            let mut g = p.var.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Scales all gradients so that their joint L2 norm is at most `max` (torch's
    /// `clip_grad_norm_`); returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max: f64) -> f64 {
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.var.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm().to_kind(Kind::Double)).collect();
        let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
        let coef = max / (total + 1e-6);
        if coef < 1.0 {
            tch::no_grad(|| {
                for g in &grads {
                    let _ = g.shallow_clone().g_mul_scalar_(coef);
                }
            });
        }
        total
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.steps += 1;
        let t = self.steps as f64;
        let s = self.spec;
        let grads: Vec<Tensor> = self.params.iter().map(|p| p.var.grad()).collect();
        let mut slots = Vec::new();
        tch::no_grad(|| {
            for (p, g) in self.params.iter_mut().zip(&grads) {
                if !g.defined() {
                    continue;
                }
                let cpu_f32 = |t: &Tensor| crate::nn::kernel_takes(t) && t.is_contiguous();
                if s.fused && cpu_f32(&p.var) && cpu_f32(g) && p.state.iter().all(cpu_f32) && p.var.numel() > 0 {
                    // SAFETY: contiguous CPU f32 tensors of the parameter's size (the state was
                    // made with `zeros_like`, the gradient by autograd), alive until the kernel
                    // returns below, and neither read nor written by anything else meanwhile.
                    slots.push(unsafe { Self::slot(s, p, g, lr, t) });
                } else {
                    Self::update(s, p, g.shallow_clone(), lr, t);
                }
            }
        });
        attnrec_kernels::optim::step(slots, tch::get_num_threads().max(1) as usize);
    }

    /// The kernel's view of `p`'s update.
    ///
    /// # Safety
    /// `p`'s tensors and `g` must be contiguous CPU f32 tensors of one size, alive and otherwise
    /// untouched while the slot lives.
    unsafe fn slot<'a>(s: OptimSpec, p: &mut Param, g: &Tensor, lr: f64, t: f64) -> attnrec_kernels::optim::Slot<'a> {
        use attnrec_kernels::optim::{Rule, Slot};
        let n = p.var.numel();
        let wd = p.weight_decay;
        let rule = match s.kind {
            OptimizerKind::Adam | OptimizerKind::AdamW => Rule::Adam {
                beta1: s.beta1 as f32,
                beta2: s.beta2 as f32,
                eps: s.eps as f32,
                weight_decay: if s.kind == OptimizerKind::Adam { wd as f32 } else { 0.0 },
                decay: (s.kind == OptimizerKind::AdamW && wd != 0.0).then_some((1.0 - lr * wd) as f32),
                step_size: (lr / (1.0 - s.beta1.powf(t))) as f32,
                bc2_sqrt: (1.0 - s.beta2.powf(t)).sqrt() as f32,
            },
            OptimizerKind::Adagrad => Rule::Adagrad { lr: lr as f32, eps: s.eps as f32, weight_decay: wd as f32 },
        };
        let floats = |t: &Tensor| std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n);
        Slot { param: floats(&p.var), grad: floats(g), state: p.state.iter().map(floats).collect(), rule }
    }

    /// `p`'s update through tensor operators.
    fn update(s: OptimSpec, p: &mut Param, g: Tensor, lr: f64, t: f64) {
        let mut var = p.var.shallow_clone();
        let wd = p.weight_decay;
        match s.kind {
            OptimizerKind::Adam | OptimizerKind::AdamW => {
                let g = if s.kind == OptimizerKind::Adam && wd != 0.0 { &g + &var * wd } else { g };
                if s.kind == OptimizerKind::AdamW && wd != 0.0 {
                    let _ = var.g_mul_scalar_(1.0 - lr * wd);
                }
                let (m, v) = p.state.split_at_mut(1);
                let (m, v) = (&mut m[0], &mut v[0]);
                let _ = m.g_mul_scalar_(s.beta1).g_add_(&(&g * (1.0 - s.beta1)));
                let _ = v.g_mul_scalar_(s.beta2).g_add_(&(&g * &g * (1.0 - s.beta2)));
                let bc1 = 1.0 - s.beta1.powf(t);
                let bc2 = 1.0 - s.beta2.powf(t);
                let denom = v.sqrt() / bc2.sqrt() + s.eps;
                let _ = var.g_add_(&(&*m / denom * (-lr / bc1)));
            }
            OptimizerKind::Adagrad => {
                let g = if wd != 0.0 { &g + &var * wd } else { g };
                let sum = &mut p.state[0];
                let _ = sum.g_add_(&(&g * &g));
                let _ = var.g_add_(&(&g / (sum.sqrt() + s.eps) * -lr));
            }
        }
    }

    /// The state to save: `(key, tensor)` pairs, e.g. `m/emb.item.weight`, plus `steps`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let slots: &[&str] = if self.spec.kind == OptimizerKind::Adagrad { &["sum"] } else { &["m", "v"] };
        let mut out = vec![("steps".to_string(), Tensor::from_slice(&[self.steps]))];
        for p in &self.params {
            for (slot, t) in slots.iter().zip(&p.state) {
                out.push((format!("{slot}/{}", p.name), t.shallow_clone()));
            }
        }
        out
    }

    /// Restores what [`Self::state`] saved; every key must be present with its shape.
    pub fn load_state(&mut self, saved: &[(String, Tensor)]) -> Result<()> {
        let find = |key: &str| saved.iter().find(|(k, _)| k == key).map(|(_, t)| t);
        let steps = find("steps").ok_or_else(|| Error::config("optimizer state lacks 'steps'"))?;
        let slots: &[&str] = if self.spec.kind == OptimizerKind::Adagrad { &["sum"] } else { &["m", "v"] };
        for p in &mut self.params {
            for (slot, t) in slots.iter().zip(p.state.iter_mut()) {
                let key = format!("{slot}/{}", p.name);
                let src = find(&key).ok_or_else(|| Error::config(format!("optimizer state lacks '{key}'")))?;
                if src.size() != t.size() {
                    return Err(Error::config(format!("optimizer state '{key}' has shape {:?}, expected {:?}", src.size(), t.size())));
                }
                tch::no_grad(|| t.copy_(src));
            }
        }
        self.steps = steps.int64_value(&[0]);
        Ok(())
    }
}
