//! Throughput measurements behind `attnrec bench`: training steps per second of a model on
//! prepared data, for a given batch size, thread count and prefetch depth. Each measurement builds a
//! fresh model, runs `warmup` untimed steps (allocator and kernel caches warm up), then times
//! `steps` steps through the same batch feeding and optimizer step as [`crate::train::fit`].
use crate::data::protocol::Split;
use crate::error::{Error, Result};
use crate::models::ModelConfig;
use crate::run::Prepared;
use crate::train::{loader, Stepper, TrainConfig};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::ops::ControlFlow;
use std::time::Instant;

/// One measured configuration.
#[derive(Debug, Clone, Serialize)]
pub struct TrainThroughput {
    pub model: String,
    pub batch_size: usize,
    pub threads: usize,
    pub prefetch: usize,
    pub steps: usize,
    pub samples_per_sec: f64,
    pub ms_per_step: f64,
    /// Share of the timed wall time the step waited for its batch. With `prefetch` 0 this is all of
    /// batch building (Rust gathers and the copies into tensors): the time outside the model's
    /// libtorch work.
    pub input_wait_share: f64,
}

/// Times `steps` training steps of `model` on the train split of `prepared` under `cfg`
/// (`batch_size`, `threads`, `prefetch`, `device`, optimizer settings), after `warmup` steps.
pub fn train_throughput(
    prepared: &Prepared,
    model: &ModelConfig,
    cfg: &TrainConfig,
    warmup: usize,
    steps: usize,
) -> Result<TrainThroughput> {
    if steps == 0 {
        return Err(Error::config("bench: --steps must be at least 1"));
    }
    let device = crate::device::setup(&cfg.device, cfg.threads)?;
    let (vs, net) = model.fresh(&prepared.feature_map, device, cfg.seed)?;
    let data = &prepared.encoded;
    let mut order = data.indices(Split::Train);
    if order.is_empty() {
        return Err(Error::config("bench: the train split is empty"));
    }
    let mut stepper = Stepper::new(net.as_ref(), &vs, data, &order, cfg)?;
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed));
    let chunks: Vec<&[usize]> = order.chunks(cfg.batch_size).cycle().take(warmup + steps).collect();
    let (mut k, mut samples, mut waited_total) = (0usize, 0usize, 0.0f64);
    let mut start = Instant::now();
    loader::for_each_batch(data, device, &chunks, cfg.prefetch, |b, waited| {
        if k == warmup {
            start = Instant::now();
            waited_total = 0.0;
        }
        let loss = stepper.step(&b, k);
        if !loss.is_finite() {
            return Err(Error::config(format!("bench: training diverged at step {k}")));
        }
        if k >= warmup {
            samples += b.size() as usize;
        }
        // The clock starts once the first timed batch is in hand: its wait is not in the interval.
        if k > warmup {
            waited_total += waited;
        }
        k += 1;
        Ok(ControlFlow::Continue(()))
    })?;
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok(TrainThroughput {
        model: model.name().to_string(),
        batch_size: cfg.batch_size,
        threads: tch::get_num_threads() as usize,
        prefetch: cfg.prefetch,
        steps,
        samples_per_sec: samples as f64 / secs,
        ms_per_step: secs * 1000.0 / steps as f64,
        input_wait_share: waited_total / secs,
    })
}

/// The machine's dense-compute ceiling as libtorch sees it: GFLOP/s of an `n × n` float matmul on
/// the current thread count (2n³ flops each), best of `reps` after one warm-up. Printed beside
/// throughput numbers so that measurements from different machines can be compared.
pub fn sgemm_gflops(n: i64, reps: usize) -> f64 {
    let opts = (tch::Kind::Float, tch::Device::Cpu);
    let a = tch::Tensor::randn([n, n], opts);
    let b = tch::Tensor::randn([n, n], opts);
    let _ = a.matmul(&b);
    let mut best = f64::INFINITY;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let c = a.matmul(&b);
        let _ = c.double_value(&[0, 0]);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best / 1e9
}
