//! Training: Adam, AdamW or Adagrad ([`optim`]) on binary cross-entropy with logits, shuffled
//! mini-batches, an optional warm-up and decay of the learning rate and gradient clipping,
//! evaluation on valid after every epoch, early stopping on valid AUC with the best epoch's
//! weights kept in memory. The library reports progress through [`Observer`]; only the binary
//! draws progress bars.
pub mod optim;

use crate::data::protocol::Split;
use crate::error::{Error, Result};
use crate::features::{Batcher, Encoded};
use crate::metrics::SplitMetrics;
use crate::models::CtrModel;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::time::Instant;
use optim::{LrSchedule, OptimSpec, Optimizer, OptimizerKind};
use tch::nn;
use tch::{Device, Kind, Reduction, Tensor};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    /// Weight decay of dense weights (L2 for adam and adagrad, decoupled for adamw).
    pub weight_decay: f64,
    /// Weight decay of embedding tables.
    pub embedding_weight_decay: f64,
    /// Linear warm-up of the learning rate over this many steps.
    pub warmup_steps: usize,
    pub lr_schedule: LrSchedule,
    /// Clip the joint L2 norm of all gradients to this value; 0 = off.
    pub clip_grad_norm: f64,
    /// Stop after this many epochs without a better valid AUC.
    pub patience: usize,
    pub seed: u64,
    /// libtorch intra-op threads; 0 = all cores.
    pub threads: usize,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 256,
            eval_batch_size: 4096,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: 0.0,
            embedding_weight_decay: 0.0,
            warmup_steps: 0,
            lr_schedule: LrSchedule::Constant,
            clip_grad_norm: 0.0,
            patience: 2,
            seed: 42,
            threads: 0,
            device: "cpu".to_string(),
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::config(m));
        if self.epochs == 0 {
            return bad("train.epochs must be at least 1".into());
        }
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return bad("train.batch_size and train.eval_batch_size must be at least 1".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("train.lr must be a positive number, got {}", self.lr));
        }
        for (key, v) in [
            ("weight_decay", self.weight_decay),
            ("embedding_weight_decay", self.embedding_weight_decay),
            ("clip_grad_norm", self.clip_grad_norm),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("train.{key} must be >= 0, got {v}"));
            }
        }
        parse_device(&self.device)?;
        Ok(())
    }
}

/// Parses `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Device::Cuda(n)),
            _ => Err(Error::config(format!("unknown device '{s}' (expected cpu, cuda or cuda:N)"))),
        },
    }
}

/// Seeds libtorch; every Rust RNG of a run is derived from the same seed. libtorch's generator is
/// process-wide, so two runs training at once in one process are not reproducible.
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// What one epoch achieved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub valid: SplitMetrics,
    pub train_samples_per_sec: f64,
    pub train_seconds: f64,
    pub improved: bool,
}

/// Progress callbacks; every method has a no-op default.
pub trait Observer {
    fn epoch_start(&mut self, _epoch: usize, _batches: usize) {}
    fn batch_end(&mut self, _loss: f64, _samples: usize) {}
    fn epoch_end(&mut self, _report: &EpochReport) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitOutcome {
    pub best_epoch: usize,
    pub epochs: Vec<EpochReport>,
    /// Train samples per second over all epochs (training steps only).
    pub train_samples_per_sec: f64,
    pub train_seconds: f64,
}

/// Probabilities for events `idx`, in that order.
pub fn predict(model: &dyn CtrModel, data: &Encoded, idx: &[usize], batch_size: usize, device: Device) -> Vec<f64> {
    let mut batcher = Batcher::new(data, device);
    let mut out = Vec::with_capacity(idx.len());
    tch::no_grad(|| {
        for chunk in idx.chunks(batch_size.max(1)) {
            let b = batcher.batch(chunk);
            let p = model.forward_t(&b, false).sigmoid().to_kind(Kind::Double).to_device(Device::Cpu);
            out.extend(Vec::<f64>::try_from(&p).expect("a 1-d double tensor converts to Vec<f64>"));
        }
    });
    out
}

/// Metrics of `model` on `split`.
pub fn evaluate(model: &dyn CtrModel, data: &Encoded, split: Split, batch_size: usize, device: Device) -> SplitMetrics {
    let idx = data.indices(split);
    let probs = predict(model, data, &idx, batch_size, device);
    let labels: Vec<f32> = idx.iter().map(|&k| data.label[k]).collect();
    let users: Vec<i64> = idx.iter().map(|&k| data.raw_user[k]).collect();
    SplitMetrics::compute(&probs, &labels, &users)
}

/// Trains `model` (whose variables live in `vs`) and leaves the best-valid-AUC weights in `vs`.
pub fn fit(
    model: &dyn CtrModel,
    vs: &nn::VarStore,
    data: &Encoded,
    cfg: &TrainConfig,
    observer: &mut dyn Observer,
) -> Result<FitOutcome> {
    cfg.validate()?;
    let device = vs.device();
    let mut train_idx = data.indices(Split::Train);
    if train_idx.is_empty() {
        return Err(Error::config("the train split is empty: the dataset has too few events per user"));
    }
    let spec = OptimSpec {
        kind: cfg.optimizer,
        beta1: 0.9,
        beta2: 0.999,
        eps: if cfg.optimizer == OptimizerKind::Adagrad { 1e-10 } else { 1e-8 },
        weight_decay: cfg.weight_decay,
        embedding_weight_decay: cfg.embedding_weight_decay,
    };
    let mut opt = Optimizer::new(vs, spec);
    let total_steps = cfg.epochs * train_idx.len().div_ceil(cfg.batch_size);
    let mut step = 0usize;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut batcher = Batcher::new(data, device);
    // (valid AUC, epoch, a copy of every variable)
    type Best = (f64, usize, Vec<(String, Tensor)>);
    let mut best: Option<Best> = None;
    let mut epochs = Vec::new();
    let (mut total_samples, mut total_seconds) = (0usize, 0.0f64);
    for epoch in 1..=cfg.epochs {
        train_idx.shuffle(&mut rng);
        let n_batches = train_idx.len().div_ceil(cfg.batch_size);
        observer.epoch_start(epoch, n_batches);
        let start = Instant::now();
        let mut loss_sum = 0.0f64;
        for chunk in train_idx.chunks(cfg.batch_size) {
            let b = batcher.batch(chunk);
            let logits = model.forward_t(&b, true);
            let loss = logits.binary_cross_entropy_with_logits::<Tensor>(&b.label, None, None, Reduction::Mean);
            opt.zero_grad();
            loss.backward();
            if cfg.clip_grad_norm > 0.0 {
                opt.clip_grad_norm(cfg.clip_grad_norm);
            }
            opt.step(optim::lr_at(cfg.lr, cfg.lr_schedule, cfg.warmup_steps, step, total_steps));
            step += 1;
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                return Err(Error::config(format!("training diverged at epoch {epoch} (loss {l}); lower train.lr")));
            }
            loss_sum += l * chunk.len() as f64;
            observer.batch_end(l, chunk.len());
        }
        let secs = start.elapsed().as_secs_f64();
        total_samples += train_idx.len();
        total_seconds += secs;
        let valid = evaluate(model, data, Split::Valid, cfg.eval_batch_size, device);
        let score = valid.auc.unwrap_or(f64::NEG_INFINITY);
        let improved = best.as_ref().is_none_or(|(s, _, _)| score > *s);
        if improved {
            let snapshot = tch::no_grad(|| {
                vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect::<Vec<_>>()
            });
            best = Some((score, epoch, snapshot));
        }
        let report = EpochReport {
            epoch,
            train_loss: loss_sum / train_idx.len() as f64,
            valid,
            train_samples_per_sec: train_idx.len() as f64 / secs.max(1e-9),
            train_seconds: secs,
            improved,
        };
        observer.epoch_end(&report);
        epochs.push(report);
        let best_epoch = best.as_ref().map_or(epoch, |b| b.1);
        if epoch - best_epoch >= cfg.patience.max(1) {
            break;
        }
    }
    let (_, best_epoch, snapshot) = best.expect("at least one epoch ran");
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, saved) in &snapshot {
            vars[name].shallow_clone().copy_(saved);
        }
    });
    Ok(FitOutcome {
        best_epoch,
        epochs,
        train_samples_per_sec: total_samples as f64 / total_seconds.max(1e-9),
        train_seconds: total_seconds,
    })
}

/// Number of trainable scalars.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_key() {
        let cases: Vec<(fn(&mut TrainConfig), &str)> = vec![
            (|c| c.lr = -1.0, "train.lr"),
            (|c| c.batch_size = 0, "train.batch_size"),
            (|c| c.epochs = 0, "train.epochs"),
            (|c| c.clip_grad_norm = -0.5, "train.clip_grad_norm"),
            (|c| c.embedding_weight_decay = f64::NAN, "train.embedding_weight_decay"),
            (|c| c.device = "tpu".into(), "unknown device 'tpu'"),
        ];
        for (break_it, key) in cases {
            let mut c = TrainConfig::default();
            break_it(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
        TrainConfig::default().validate().unwrap();
    }

    #[test]
    fn warmup_then_schedule() {
        use optim::lr_at;
        assert_eq!(lr_at(1.0, LrSchedule::Constant, 4, 0, 100), 0.25);
        assert_eq!(lr_at(1.0, LrSchedule::Constant, 4, 3, 100), 1.0);
        assert_eq!(lr_at(1.0, LrSchedule::Linear, 0, 50, 100), 0.5);
        assert!((lr_at(1.0, LrSchedule::Cosine, 10, 10, 110) - 1.0).abs() < 1e-12);
        assert!(lr_at(1.0, LrSchedule::Cosine, 10, 110, 110).abs() < 1e-12);
    }
}
