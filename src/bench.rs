//! Throughput measurements behind `attnrec bench`: training steps per second of a model on
//! prepared data, for a given batch size, thread count and prefetch depth. Each measurement builds a
//! fresh model, runs `warmup` untimed steps (allocator and kernel caches warm up), then times
//! `steps` steps through the same batch feeding and optimizer step as [`crate::train::fit`].
use crate::data::protocol::Split;
use crate::error::{Error, Result};
use crate::features::FeatureMap;
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
    /// `train.length_buckets` (0 = batches are plain slices of the shuffle).
    pub length_buckets: usize,
    /// `train.fused`: DIN's activation unit, the embeddings' backward and the optimizer's update
    /// through attnrec's fused CPU kernels.
    pub fused: bool,
    /// Mean history length of the timed batches' samples (at most `history_len`): the positions
    /// that hold history, which the fused kernel computes and nothing else.
    pub mean_history: f64,
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
    let negatives = net.wants_negatives().then(|| crate::features::NegativePool::new(&order));
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    order.shuffle(&mut rng);
    if cfg.length_buckets > 0 {
        crate::train::loader::bucket_by_length(&mut order, data, cfg.batch_size, cfg.length_buckets, &mut rng);
    }
    let chunks: Vec<&[usize]> = order.chunks(cfg.batch_size).cycle().take(warmup + steps).collect();
    let timed: Vec<usize> = chunks[warmup..].iter().flat_map(|c| c.iter().copied()).collect();
    let l = prepared.feature_map.history_len;
    let mean_history = timed.iter().map(|&k| data.history(k).len().min(l)).sum::<usize>() as f64 / timed.len().max(1) as f64;
    let (mut k, mut samples, mut waited_total) = (0usize, 0usize, 0.0f64);
    let mut loss_sum = tch::Tensor::from(0.0f64).to_device(device);
    let mut start = Instant::now();
    loader::for_each_batch(data, device, &chunks, cfg.prefetch, negatives.as_ref(), |b, waited| {
        if k == warmup {
            start = Instant::now();
            waited_total = 0.0;
        }
        // Summed on the device and read once at the end, as training reads it on a GPU: a read
        // per step would time the host round trips too.
        let _ = loss_sum.g_add_(&stepper.step(&b, k).to_kind(tch::Kind::Double));
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
    // The read waits for the queued steps, so it ends the timed interval.
    let total = loss_sum.double_value(&[]);
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    if !total.is_finite() {
        return Err(Error::internal("bench: training diverged (the summed loss is not finite)".to_string()));
    }
    Ok(TrainThroughput {
        model: model.name().to_string(),
        batch_size: cfg.batch_size,
        threads: tch::get_num_threads() as usize,
        prefetch: cfg.prefetch,
        length_buckets: cfg.length_buckets,
        fused: cfg.fused,
        mean_history,
        steps,
        samples_per_sec: samples as f64 / secs,
        ms_per_step: secs * 1000.0 / steps as f64,
        input_wait_share: waited_total / secs,
    })
}

/// Environment variable naming a file into which `attnrec` writes its peak RSS in KiB (`VmHWM`)
/// when a command succeeds: how `bench` measures its child processes.
pub const PEAK_RSS_ENV: &str = "ATTNREC_PEAK_RSS_FILE";

/// This process's peak resident set since its `exec`, in KiB (Linux's `VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The PyTorch version attnrec links (tch's pin; `scripts/setup-libtorch.sh` installs it).
pub const TORCH_VERSION: &str = "2.11.0";

/// The Python of the project's torch venv, which runs the PyTorch reference and the PyTorch
/// checks: `$VIRTUAL_ENV` (`make` and `scripts/env.sh` set it), else `$ATTNREC_TORCH_VENV` or the
/// default venv of `scripts/setup-libtorch.sh` where it exists, else `python3` on the PATH.
pub fn venv_python() -> std::path::PathBuf {
    let venv = std::env::var_os("VIRTUAL_ENV").or_else(|| std::env::var_os("ATTNREC_TORCH_VENV")).map(std::path::PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(format!(".cache/attnrec/torch-{TORCH_VERSION}"))).filter(|v| v.join("bin/python").is_file())
    });
    venv.map_or_else(|| std::path::PathBuf::from("python3"), |v| v.join("bin/python"))
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

/// Multiply-adds of one sample's forward pass through the matrix products of `model`, with
/// histories of `l` events (element-wise work is not counted): the work attnrec does, e.g. DIN's
/// activation unit in its split form (see [`crate::attention::score::din_first_layer`]). A
/// training step costs about 3× the forward pass (the backward pass computes two products per
/// forward product), so its FLOPs per sample are `6 × forward_macs`. `None` for the models not
/// counted (attn_pool, and din or din_sa with another attention than DIN's unit).
pub fn forward_macs(model: &ModelConfig, fm: &FeatureMap, l: i64) -> Option<i64> {
    let fields = |t: &Option<crate::features::side::SideTable>| t.as_ref().map_or(0, |t| t.fields.len() as i64);
    forward_macs_with(model, fields(&fm.item_side), fields(&fm.user_side), l)
}

/// [`forward_macs`] of the work a batch needs: DIN's (linear in `l`) at its mean history length,
/// since only the positions that hold history matter (the fused kernel computes those alone;
/// libtorch's operators compute all `history_len`); the other models at `history_len`, as they
/// compute it.
pub fn useful_forward_macs(model: &ModelConfig, fm: &FeatureMap, mean_history: f64) -> Option<f64> {
    let l = fm.history_len as i64;
    match model {
        ModelConfig::Din(_) => {
            let (at0, at_l) = (forward_macs(model, fm, 0)? as f64, forward_macs(model, fm, l)? as f64);
            Some(at0 + (at_l - at0) * mean_history / l.max(1) as f64)
        }
        _ => forward_macs(model, fm, l).map(|m| m as f64),
    }
}

/// [`forward_macs`] given the number of item and user side-feature fields.
pub fn forward_macs_with(model: &ModelConfig, item_fields: i64, user_fields: i64, l: i64) -> Option<i64> {
    use crate::attention::{AlignConfig, ScoreConfig};
    // Item and user widths, as models::Embeddings builds them.
    let widths = |dim: i64| ((2 + item_fields) * dim, (1 + user_fields) * dim);
    // An MLP from `input` through `hidden` and its 1-unit output layer.
    let mlp = |input: i64, hidden: &[i64]| {
        let mut w = input;
        let mut macs = 0;
        for &h in hidden {
            macs += w * h;
            w = h;
        }
        macs + w
    };
    match model {
        ModelConfig::Base(c) => {
            let (d, du) = widths(c.embed_dim);
            Some(mlp(du + 2 * d, &c.mlp.hidden))
        }
        ModelConfig::Din(c) => {
            let (d, du) = widths(c.embed_dim);
            let a = &c.attention;
            let ScoreConfig::DinMlp { hidden, .. } = &a.score else { return None };
            if a.heads != 1 || a.dim.is_some() || matches!(a.align, AlignConfig::LocalP { .. }) {
                return None;
            }
            let h1 = hidden[0];
            // Per position: [L, d] × Mq [d, h1], then the rest of the unit; per sample: the query
            // term (d × h1) and building Mq (d × h1); pooling the history: l × d (twice with the
            // mean beside the interest).
            let per_position = d * h1 + (mlp(h1, &hidden[1..]));
            let (pools, head_in) = if c.pooling.with_mean { (2, du + 3 * d) } else { (1, du + 2 * d) };
            Some(l * per_position + 2 * d * h1 + pools * l * d + mlp(head_in, &c.mlp.hidden))
        }
        ModelConfig::Bst(c) => {
            let (d, du) = widths(c.embed_dim);
            let t = l + 1;
            let ffn = c.transformer.ffn_dim.unwrap_or(4 * d);
            // Per block over the T = L + 1 tokens: the q, k, v, o projections, scores and context
            // (T × T × d each), the feed-forward network.
            let block = 4 * t * d * d + 2 * t * t * d + 2 * t * d * ffn;
            Some(c.transformer.blocks * block + mlp(du + 3 * d, &c.mlp.hidden))
        }
        ModelConfig::Dien(c) => {
            let (d, du) = widths(c.embed_dim);
            let a = &c.attention;
            let ScoreConfig::DinMlp { hidden, .. } = &a.score else { return None };
            if a.heads != 1 || a.dim.is_some() {
                return None;
            }
            // Two recurrences of width d (each step: three gates' input and hidden projections,
            // 6·d²), the activation unit over [q, k, q − k, q ⊙ k] per position (unfused), the
            // head. The auxiliary net runs in training only.
            let unit = 4 * d * hidden[0] + mlp(hidden[0], &hidden[1..]);
            Some(2 * l * 6 * d * d + l * unit + mlp(du + 2 * d, &c.mlp.hidden))
        }
        ModelConfig::DinSa(c) => {
            let (d, du) = widths(c.embed_dim);
            let a = &c.attention;
            let ScoreConfig::DinMlp { hidden, .. } = &a.score else { return None };
            if a.heads != 1 || a.dim.is_some() || c.pooling.with_mean || matches!(a.align, AlignConfig::LocalP { .. }) {
                return None;
            }
            let ffn = c.encoder.ffn_dim.unwrap_or(4 * d);
            // The encoder's blocks over the L history tokens (as BST's, without the target), then
            // DIN's unit over the encoded events as the din arm counts it, the pooling, the head.
            let block = 4 * l * d * d + 2 * l * l * d + 2 * l * d * ffn;
            let h1 = hidden[0];
            let unit = l * (d * h1 + mlp(h1, &hidden[1..])) + 2 * d * h1;
            Some(c.encoder.blocks * block + unit + l * d + mlp(du + 2 * d, &c.mlp.hidden))
        }
        ModelConfig::AttnPool(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts worked out by hand for the default models at embed 16 (item width 32), L = 50,
    /// on a feature map without side features.
    #[test]
    fn forward_macs_by_hand() {
        let by = |name: &str| forward_macs_with(&ModelConfig::by_name(name).unwrap(), 0, 0, 50);
        // MLP 80 → 200 → 80 → 1: 80·200 + 200·80 + 80.
        assert_eq!(by("base"), Some(32_080));
        // 50 × (32·80 + 80·40 + 40) + 2·32·80 + 50·32 + 32,080.
        assert_eq!(by("din"), Some(290_000 + 5_120 + 1_600 + 32_080));
        // With the history's mean beside the interest: a second pooling (50·32) and a head input
        // of 16 + 3·32 = 112 (112·200 + 200·80 + 80).
        let mut pooled = ModelConfig::by_name("din").unwrap();
        if let ModelConfig::Din(c) = &mut pooled {
            c.pooling.with_mean = true;
        }
        assert_eq!(forward_macs_with(&pooled, 0, 0, 50), Some(290_000 + 5_120 + 2 * 1_600 + 22_400 + 16_000 + 80));
        // din_sa: one block over 50 tokens of width 32 with a 128-wide feed-forward (4·50·32² +
        // 2·50²·32 + 2·50·32·128 = 774,400), then din's unit, pooling and head as above.
        assert_eq!(by("din_sa"), Some(774_400 + 290_000 + 5_120 + 1_600 + 32_080));
        // T = 51: 4·51·32·32 + 2·51·51·32 + 2·51·32·128, then MLP 112 → 200 → 80 → 1.
        assert_eq!(by("bst"), Some(208_896 + 166_464 + 417_792 + 22_400 + 16_000 + 80));
        assert_eq!(by("attn_pool"), None, "not counted");
        // Two GRUs: 2·50·6·32·32; the unit: 50 × (128·80 + 80·40 + 40); MLP 80 → 200 → 80 → 1.
        assert_eq!(by("dien"), Some(614_400 + 674_000 + 32_080));
        // Two item side fields widen items to 64, one user field users to 32: base's MLP input is
        // 32 + 2·64 = 160.
        let base = forward_macs_with(&ModelConfig::by_name("base").unwrap(), 2, 1, 50);
        assert_eq!(base, Some(160 * 200 + 200 * 80 + 80));
    }
}
