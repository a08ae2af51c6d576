//! Training: Adam, AdamW or Adagrad ([`optim`]) on binary cross-entropy with logits, shuffled
//! mini-batches, an optional warm-up and decay of the learning rate and gradient clipping,
//! evaluation on valid after every epoch, early stopping on valid AUC with the best epoch's
//! weights kept in memory. The library reports progress through [`Observer`]; only the binary
//! draws progress bars.
pub mod checkpoint;
pub mod loader;
pub mod mba;
pub mod optim;

use crate::data::protocol::Split;
use crate::error::{Error, Result};
use crate::features::{Batch, Batcher, Encoded, NegativePool};
use crate::metrics::SplitMetrics;
use crate::models::CtrModel;
use crate::nn::Tape;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
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
    /// DIN's mini-batch-aware regularization: λ of an L2 penalty on only the embedding rows a batch
    /// uses, each scaled by the inverse of its frequency in the train split; 0 = off.
    pub mba_lambda: f64,
    /// Linear warm-up of the learning rate over this many steps.
    pub warmup_steps: usize,
    pub lr_schedule: LrSchedule,
    /// Clip the joint L2 norm of all gradients to this value; 0 = off.
    pub clip_grad_norm: f64,
    /// The valid metric that picks the best checkpoint and drives early stopping.
    pub monitor: Monitor,
    /// Evaluate on valid every this many steps; 0 = at the end of every epoch.
    pub eval_every_steps: usize,
    /// Stop after this many evaluations without a better monitored metric.
    pub patience: usize,
    /// Batches built ahead on a second thread; 0 = build each batch inline.
    pub prefetch: usize,
    /// Batches of similar history length: every window of this many batches of the epoch's
    /// shuffle is sorted by history length before it is cut into batches, whose order is then
    /// shuffled ([`loader::bucket_by_length`]). A batch is as wide as its longest history, so
    /// short-history batches cost less. 0 = off (batches are plain slices of the shuffle).
    pub length_buckets: usize,
    /// Save a resumable checkpoint every this many steps (besides every evaluation); 0 = only at
    /// evaluations.
    pub checkpoint_every_steps: usize,
    /// Save a resumable checkpoint when this many minutes passed since the last one; 0 = off.
    pub checkpoint_minutes: f64,
    pub seed: u64,
    /// libtorch intra-op threads; 0 = all cores.
    pub threads: usize,
    /// attnrec's fused CPU kernels: DIN's activation unit (for units of plain ReLU / sigmoid /
    /// PReLU layers; one pass per chunk of history positions, padded positions skipped) and the
    /// backward pass of the embedding lookups (one pass over the looked-up rows), and the
    /// optimizer's update (one pass per parameter). `false` = libtorch's operators for all three.
    /// Both compute the same function; results differ by float rounding.
    pub fused: bool,
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Read the train loss from the device every this many steps (it is summed there, in f64,
    /// between reads); also before every evaluation and checkpoint. 0 = automatic: every step on
    /// CPU, where a read costs nothing and a diverged step stops at once, every 20 on CUDA, where
    /// a read waits for the queued kernels. The losses and metrics are the same whatever it is.
    pub loss_sync_steps: usize,
}

/// A valid metric to select on; AUC and GAUC are maximized, LogLoss minimized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Monitor {
    Auc,
    Gauc,
    Logloss,
}

impl crate::util::Choice for Monitor {
    const ALL: &'static [Self] = &[Monitor::Auc, Monitor::Gauc, Monitor::Logloss];
}

impl Monitor {
    /// The metric as a score where higher is better; `None` where it is undefined.
    pub fn score(self, m: &SplitMetrics) -> Option<f64> {
        match self {
            Monitor::Auc => m.auc,
            Monitor::Gauc => m.gauc,
            Monitor::Logloss => Some(-m.logloss).filter(|v| v.is_finite()),
        }
    }
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
            mba_lambda: 0.0,
            warmup_steps: 0,
            lr_schedule: LrSchedule::Constant,
            clip_grad_norm: 0.0,
            monitor: Monitor::Auc,
            eval_every_steps: 0,
            patience: 2,
            prefetch: 2,
            length_buckets: 0,
            checkpoint_every_steps: 0,
            checkpoint_minutes: 10.0,
            seed: 42,
            threads: 0,
            fused: true,
            device: "cpu".to_string(),
            loss_sync_steps: 0,
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
            ("mba_lambda", self.mba_lambda),
            ("checkpoint_minutes", self.checkpoint_minutes),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("train.{key} must be >= 0, got {v}"));
            }
        }
        crate::device::parse(&self.device)?;
        Ok(())
    }
}


/// Training since the previous evaluation: samples, seconds spent waiting for input, the clock.
struct Interval {
    samples: usize,
    waited: f64,
    clock: Instant,
}

impl Interval {
    fn start() -> Interval {
        Interval { samples: 0, waited: 0.0, clock: Instant::now() }
    }
}

pub use crate::util::{seed_everything, step_seed};

/// One evaluation on valid, as appended to `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// The epoch this evaluation happened in (at its end unless `eval_every_steps` is set).
    pub epoch: usize,
    /// Optimizer steps done so far.
    pub step: usize,
    /// Mean train loss since the previous evaluation.
    pub train_loss: f64,
    pub valid: SplitMetrics,
    /// Train samples per second since the previous evaluation (training steps only).
    pub train_samples_per_sec: f64,
    pub train_seconds: f64,
    /// Of `train_seconds`, the time the training step waited for its batch: the input pipeline's
    /// share of the time (it is all of batch building when `prefetch` is 0).
    #[serde(default)]
    pub input_wait_seconds: f64,
    pub improved: bool,
}

/// Progress callbacks; every method has a no-op default.
pub trait Observer {
    /// An epoch starts with `batches` batches, of which `done` already ran before a resume.
    fn epoch_start(&mut self, _epoch: usize, _batches: usize, _done: usize) {}
    /// A batch of `samples` was trained on. `loss` is the mean cross-entropy of the batches since
    /// the last one that carried it, at the steps where the trainer reads the loss from the
    /// device ([`TrainConfig::loss_sync_steps`]; every step on CPU), `None` in between.
    fn batch_end(&mut self, _loss: Option<f64>, _samples: usize) {}
    fn evaluated(&mut self, _report: &EvalReport) {}
    /// A resumable checkpoint was written after `step` steps.
    fn checkpointed(&mut self, _step: usize) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitOutcome {
    pub best_epoch: usize,
    pub best_step: usize,
    pub evals: Vec<EvalReport>,
    /// Epochs started (the last may have been cut short by early stopping).
    pub epochs_run: usize,
    /// Train samples per second over all training steps (of this process, after a resume).
    pub train_samples_per_sec: f64,
    pub train_seconds: f64,
    /// Share of `train_seconds` spent waiting for batches.
    pub input_wait_share: f64,
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

/// Refuses `data` when any of `splits` is empty, saying why that split is needed: training needs
/// train and valid ([`fit`]), a run also test (checked before its folder exists).
pub fn require_splits(data: &Encoded, splits: &[Split]) -> Result<()> {
    for &split in splits {
        if data.indices(split).is_empty() {
            let why = match split {
                Split::Train => "the dataset has too few events per user",
                Split::Valid => "model selection and early stopping need it (raise protocol.valid_ratio)",
                Split::Test => "there would be nothing to report (keep protocol.train_ratio + valid_ratio below 1)",
            };
            return Err(Error::config(format!("the {} split is empty: {why}", split.name())));
        }
    }
    Ok(())
}

/// Where [`fit`] saves resumable checkpoints, and the one to resume from.
pub struct Checkpointing<'a> {
    pub dir: &'a std::path::Path,
    pub resume: Option<checkpoint::Checkpoint>,
}

/// Trains `model` (whose variables live in `vs`) and leaves the best valid weights in `vs`. With
/// `ckpt`, saves resumable checkpoints into its folder and continues from its `resume` checkpoint;
/// the result is then the same as that of an uninterrupted run.
pub fn fit(
    model: &dyn CtrModel,
    vs: &nn::VarStore,
    data: &Encoded,
    cfg: &TrainConfig,
    ckpt: Option<Checkpointing>,
    observer: &mut dyn Observer,
) -> Result<FitOutcome> {
    cfg.validate()?;
    let device = vs.device();
    require_splits(data, &[Split::Train, Split::Valid])?;
    let train_idx = data.indices(Split::Train);
    let mut stepper = Stepper::new(model, vs, data, &train_idx, cfg)?;
    let negatives = model.wants_negatives().then(|| NegativePool::new(&train_idx));
    let n_batches = train_idx.len().div_ceil(cfg.batch_size);
    let (ckpt_dir, resume) = match ckpt {
        Some(c) => (Some(c.dir), c.resume),
        None => (None, None),
    };
    let mut best: Option<Vec<(String, Tensor)>> = None;
    let mut st = match resume {
        Some(c) => {
            c.restore(vs, &mut stepper.opt)?;
            best = c.best;
            c.state
        }
        None => TrainState::new(cfg.seed),
    };
    // The shuffle of epoch e is the e-th shuffle of one generator: replay those of finished epochs.
    let mut order = train_idx;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let next_order = |order: &mut Vec<usize>, rng: &mut ChaCha8Rng, epoch: usize| {
        order.shuffle(rng);
        if cfg.length_buckets > 0 {
            // Its own generator per epoch, so that a resumed run rebuilds the same batches.
            let mut brng = ChaCha8Rng::seed_from_u64(step_seed(cfg.seed ^ 0x6275_636b_6574, epoch) as u64);
            loader::bucket_by_length(order, data, cfg.batch_size, cfg.length_buckets, &mut brng);
        }
    };
    for epoch in 1..st.epoch {
        next_order(&mut order, &mut rng, epoch);
    }
    let mut saver = ckpt_dir.map(|d| checkpoint::Saver::new(d, cfg));
    // Since the previous evaluation; and totals over the run.
    let mut interval = Interval::start();
    let (mut run_samples, mut run_seconds, mut run_wait) = (0usize, 0.0f64, 0.0f64);
    // Patience spent: the last `patience` evaluations did not improve. Rebuilt from a resumed
    // checkpoint's evaluations, which include the one that decided an early stop.
    let patience_spent = |evals: &[EvalReport]| evals.iter().rev().take_while(|r| !r.improved).count() >= cfg.patience.max(1);
    let mut stop = patience_spent(&st.evals);
    // The train loss since the last evaluation, summed on the model's device so that a step needs
    // no host round trip; read every `sync_steps` steps and before an evaluation or a checkpoint.
    let sync_steps = loss_sync_steps(cfg.loss_sync_steps, device);
    let mut loss_sum = Tensor::from(st.loss_sum).to_device(device);
    let mut synced_samples = st.loss_samples;
    while st.epoch <= cfg.epochs && !stop {
        next_order(&mut order, &mut rng, st.epoch);
        let epoch = st.epoch;
        observer.epoch_start(epoch, n_batches, st.batch);
        let chunks: Vec<&[usize]> = order.chunks(cfg.batch_size).skip(st.batch).collect();
        loader::for_each_batch(data, device, &chunks, cfg.prefetch, negatives.as_ref(), |b, waited| {
            let bce = stepper.step(&b, st.step);
            let n = b.size() as usize;
            // On the device, in f64: the same additions the host made when it read every loss.
            let _ = loss_sum.g_add_(&(bce.to_kind(Kind::Double) * n as f64));
            st.step += 1;
            st.batch += 1;
            st.loss_samples += n;
            interval.samples += n;
            interval.waited += waited;
            let epoch_done = st.batch == n_batches;
            if epoch_done {
                st.epoch += 1;
                st.batch = 0;
            }
            let eval_now = match cfg.eval_every_steps {
                0 => epoch_done,
                k => st.step % k == 0 || (epoch_done && epoch == cfg.epochs),
            };
            let save_now = saver.as_ref().is_some_and(|s| eval_now || s.due(st.step));
            let loss = if eval_now || save_now || epoch_done || st.step % sync_steps == 0 {
                let total = loss_sum.double_value(&[]);
                if !total.is_finite() {
                    return Err(Error::internal(format!("training diverged at epoch {epoch} (loss {total}); lower train.lr")));
                }
                let mean = (total - st.loss_sum) / (st.loss_samples - synced_samples).max(1) as f64;
                (st.loss_sum, synced_samples) = (total, st.loss_samples);
                Some(mean)
            } else {
                None
            };
            observer.batch_end(loss, n);
            crate::util::crash_point("train.step");
            if eval_now {
                let secs = interval.clock.elapsed().as_secs_f64();
                (run_samples, run_seconds, run_wait) =
                    (run_samples + interval.samples, run_seconds + secs, run_wait + interval.waited);
                let valid = evaluate(model, data, Split::Valid, cfg.eval_batch_size, device);
                crate::util::crash_point("train.eval");
                if !valid.mean_prediction.is_finite() {
                    return Err(Error::internal(format!("the valid predictions are not finite after epoch {epoch}'s training (the model diverged); lower train.lr")));
                }
                let score = cfg.monitor.score(&valid).unwrap_or(f64::NEG_INFINITY);
                let improved = st.best.as_ref().is_none_or(|b| score > b.score);
                if improved {
                    best = Some(snapshot(vs));
                    st.best = Some(BestSoFar { score, epoch, step: st.step });
                }
                let report = EvalReport {
                    epoch,
                    step: st.step,
                    train_loss: st.loss_sum / st.loss_samples.max(1) as f64,
                    valid,
                    train_samples_per_sec: interval.samples as f64 / secs.max(1e-9),
                    train_seconds: secs,
                    input_wait_seconds: interval.waited,
                    improved,
                };
                (st.loss_sum, st.loss_samples, synced_samples) = (0.0, 0, 0);
                let _ = loss_sum.zero_();
                observer.evaluated(&report);
                st.evals.push(report);
                stop = patience_spent(&st.evals);
            }
            if let Some(s) = saver.as_mut().filter(|_| save_now) {
                s.save(vs, &stepper.opt, best.as_deref(), &st)?;
                observer.checkpointed(st.step);
            }
            if eval_now {
                interval = Interval::start();
            }
            Ok(if stop { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
        })?;
    }
    let best_so_far = st.best.clone().expect("at least one evaluation ran");
    let snapshot = best.ok_or_else(|| Error::config("the checkpoint lacks the best weights"))?;
    checkpoint::copy_into(vs, &snapshot).map_err(Error::config)?;
    Ok(FitOutcome {
        best_epoch: best_so_far.epoch,
        best_step: best_so_far.step,
        epochs_run: st.evals.last().map_or(0, |r| r.epoch),
        evals: st.evals,
        train_samples_per_sec: run_samples as f64 / run_seconds.max(1e-9),
        train_seconds: run_seconds,
        input_wait_share: run_wait / run_seconds.max(1e-9),
    })
}

/// A copy of every variable (weights and buffers such as batch-norm statistics).
/// How often training reads its loss from the device ([`TrainConfig::loss_sync_steps`], where 0
/// means: every step on CPU, where reading costs nothing and a diverged step stops at once; every
/// 20 steps on CUDA, where a read waits for the queued kernels and leaves the GPU idle while the
/// next step is launched).
pub fn loss_sync_steps(configured: usize, device: Device) -> usize {
    match configured {
        0 if device.is_cuda() => 20,
        0 => 1,
        n => n,
    }
}

/// One training update at a time: loss (with the optional mini-batch-aware penalty), gradients,
/// clipping, and the optimizer's step at the scheduled learning rate.
pub struct Stepper<'a> {
    model: &'a dyn CtrModel,
    cfg: &'a TrainConfig,
    opt: Optimizer,
    mba: Option<mba::Mba>,
    total_steps: usize,
}

impl<'a> Stepper<'a> {
    /// An optimizer over every trainable variable of `vs`, for training on the samples `train`.
    pub fn new(model: &'a dyn CtrModel, vs: &nn::VarStore, data: &Encoded, train: &[usize], cfg: &'a TrainConfig) -> Result<Self> {
        let spec = OptimSpec {
            kind: cfg.optimizer,
            beta1: 0.9,
            beta2: 0.999,
            eps: if cfg.optimizer == OptimizerKind::Adagrad { 1e-10 } else { 1e-8 },
            weight_decay: cfg.weight_decay,
            embedding_weight_decay: cfg.embedding_weight_decay,
            fused: cfg.fused,
        };
        let groups = model.param_groups();
        let mba = (cfg.mba_lambda > 0.0).then(|| mba::Mba::new(groups.ids.as_ref(), data, train, cfg.mba_lambda)).transpose()?;
        let total_steps = cfg.epochs * train.len().div_ceil(cfg.batch_size);
        Ok(Stepper { model, cfg, opt: Optimizer::new(vs, &groups, spec), mba, total_steps })
    }

    /// Update number `step` (0-based) on batch `b`; returns the batch's mean cross-entropy, a
    /// detached scalar on the model's device (reading it is a host round trip: the caller decides
    /// when), which the caller checks for divergence. libtorch is reseeded first (see
    /// [`step_seed`]).
    pub fn step(&mut self, b: &Batch, step: usize) -> Tensor {
        let cfg = self.cfg;
        tch::manual_seed(step_seed(cfg.seed, step));
        let bce = crate::nn::with_fused(cfg.fused, || {
            // The fused kernels record their backward passes on the tape (see crate::nn::tape).
            let tape = Tape::record();
            let (logits, aux) = self.model.forward_train(b);
            let bce_loss = logits.binary_cross_entropy_with_logits::<Tensor>(&b.label, None, None, Reduction::Mean);
            let bce = bce_loss.detach();
            let loss = match aux {
                Some(aux) => bce_loss + aux,
                None => bce_loss,
            };
            let loss = match &self.mba {
                Some(m) => loss + m.penalty(b),
                None => loss,
            };
            self.opt.zero_grad();
            tape.backward(&loss);
            bce
        });
        if cfg.clip_grad_norm > 0.0 {
            self.opt.clip_grad_norm(cfg.clip_grad_norm);
        }
        self.opt.step(optim::lr_at(cfg.lr, cfg.lr_schedule, cfg.warmup_steps, step, self.total_steps));
        bce
    }
}

fn snapshot(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> =
        tch::no_grad(|| vs.variables().into_iter().map(|(k, v)| (k, v.detach().copy())).collect());
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// The best evaluation so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BestSoFar {
    /// The monitored metric, higher is better (LogLoss is negated).
    pub score: f64,
    pub epoch: usize,
    pub step: usize,
}

/// Everything besides tensors that a resumed run needs, saved as `state.json` in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// The epoch in progress (1-based).
    pub epoch: usize,
    /// Batches of `epoch` done.
    pub batch: usize,
    /// Optimizer steps done.
    pub step: usize,
    /// Train loss summed over the samples since the last evaluation.
    pub loss_sum: f64,
    pub loss_samples: usize,
    pub best: Option<BestSoFar>,
    pub evals: Vec<EvalReport>,
    /// How the run's randomness is derived, for the record: the shuffle of epoch e is the e-th
    /// shuffle by ChaCha8 seeded with `seed`; libtorch is seeded with `step_seed(seed, step)`
    /// before every step. Nothing else is random during training.
    pub rng: String,
}

impl TrainState {
    fn new(seed: u64) -> Self {
        TrainState {
            epoch: 1,
            batch: 0,
            step: 0,
            loss_sum: 0.0,
            loss_samples: 0,
            best: None,
            evals: Vec::new(),
            rng: format!("chacha8(seed={seed}) shuffles once per epoch (with length_buckets, batches are then grouped by chacha8(step_seed({seed} ^ 0x6275636b6574, epoch))); libtorch manual_seed(step_seed({seed}, step)) before each step"),
        }
    }
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
        type Case = (fn(&mut TrainConfig), &'static str);
        let cases: Vec<Case> = vec![
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

    /// `state.json` must give back the very f64 it was written from: a resumed run compares
    /// `score > best` and sums losses on from these values. (serde_json's default float parser
    /// is one ulp off for some values; the `float_roundtrip` feature fixes that.)
    #[test]
    fn train_state_floats_round_trip_bit_for_bit() {
        // A fixed xorshift walk over f64 bit patterns in [1e-3, 1e3) and a few hand-picked values.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![0.1 + 0.2, 1.0 / 3.0, 0.7853981633974483, 2.0f64.powi(-40) * 3.0, -0.0];
        while values.len() < 2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() && (1e-3..1e3).contains(&v.abs()) {
                values.push(v);
            }
        }
        let mut state = TrainState::new(7);
        let mut off = Vec::new();
        for &v in &values {
            state.loss_sum = v;
            state.best = Some(BestSoFar { score: -v, epoch: 1, step: 2 });
            let back: TrainState = serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
            if back.loss_sum.to_bits() != v.to_bits() || back.best.unwrap().score.to_bits() != (-v).to_bits() {
                off.push(v);
            }
        }
        assert!(off.is_empty(), "{} of {} values came back changed, e.g. {:?}", off.len(), values.len(), &off[..off.len().min(3)]);
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
