//! Run folders: training a [`RunConfig`] end to end and writing
//! `config.toml`, `feature_map.json`, `model.safetensors`, `metrics.jsonl` (one line per epoch) and
//! `summary.json`; loading them back for evaluation. A run is written into `<run>.partial` (with
//! resumable checkpoints under `checkpoints/`) and renamed at the end, so a failed run leaves no
//! folder that looks complete, and an interrupted one can be continued with [`resume_run`].
use crate::cache;
use crate::config::RunConfig;
use crate::data::protocol::{build_samples, Split};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::features::{fit_encode, Encoded, FeatureMap};
use crate::metrics::SplitMetrics;
use crate::models::CtrModel;
use crate::train::checkpoint::Checkpoint;
use crate::train::{self, Checkpointing, EvalReport, Observer};
use crate::util::{partial_path, write_atomic};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device};

pub const CONFIG_FILE: &str = "config.toml";
pub use crate::features::FEATURE_MAP_FILE;
/// The dataset files (name, size, modification time) the run was trained on.
pub const SOURCE_FILE: &str = "source.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";
/// Resumable checkpoints while a run trains; removed when it finishes.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// What a finished run reports (`summary.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub model: String,
    pub seed: u64,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub valid: SplitMetrics,
    pub test: SplitMetrics,
    pub train_samples_per_sec: f64,
    pub train_seconds: f64,
    /// Share of the training time the step waited for its input batch.
    #[serde(default)]
    pub input_wait_share: f64,
    /// Wall time of the process that finished the run.
    pub wall_seconds: f64,
    pub parameters: i64,
    pub threads: i32,
    pub device: String,
    /// The prepared-sample cache the samples were read from (`attnrec data prepare`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared_from: Option<PathBuf>,
}

/// Dataset → protocol → features, as one step.
pub struct Prepared {
    pub feature_map: FeatureMap,
    pub encoded: Encoded,
    /// The cache folder the samples came from; `None` when they were built from the raw files.
    pub cached: Option<PathBuf>,
}

/// Loads the dataset of `cfg` and applies the protocol. With `feature_map`, encodes with it
/// (evaluation of a saved run); otherwise fits a new one on the train split.
///
/// Without a feature map, a complete prepared-sample cache of the same files and protocol (see
/// [`crate::cache`]) is read instead of the raw files; it holds exactly what this would build.
pub fn prepare(cfg: &RunConfig, data_dir: &Path, feature_map: Option<FeatureMap>) -> Result<Prepared> {
    let data = cfg.data.at(data_dir);
    if feature_map.is_none() && data_dir.is_dir() {
        if let Some(dir) = cache::lookup(&cache::default_root(), &data, &cfg.protocol)? {
            let (feature_map, encoded) = cache::read(&dir)?;
            return Ok(Prepared { feature_map, encoded, cached: Some(dir) });
        }
    }
    let ds = Dataset::open(&data)?;
    let events = build_samples(&ds, &cfg.protocol)?;
    let (feature_map, encoded) = fit_encode(&ds, &events, &cfg.protocol, feature_map)?;
    Ok(Prepared { feature_map, encoded, cached: None })
}

/// The run folder a path names, whether it is given as `RUN` or as its interrupted `RUN.partial`.
pub fn final_dir(run: &Path) -> PathBuf {
    crate::util::final_path(run).unwrap_or_else(|| run.to_path_buf())
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serializable");
    write_atomic(path, text.as_bytes())
}

/// Trains `cfg` and writes the run folder `out`. Refuses to overwrite an existing folder, or to
/// discard an interrupted run of the same name, unless `force` is set.
pub fn train_run(cfg: &RunConfig, out: &Path, force: bool, observer: &mut dyn Observer) -> Result<RunSummary> {
    let wall = Instant::now();
    cfg.validate()?;
    if out.exists() && !force {
        return Err(Error::run(out, "already exists; choose another --out or pass --force to replace it"));
    }
    let tmp = partial_path(out);
    if tmp.exists() {
        if !force {
            return Err(Error::run(
                &tmp,
                format!("holds an interrupted run; continue it with `attnrec train --resume {}` or pass --force to start over", out.display()),
            ));
        }
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let device = crate::device::setup(&cfg.train.device, cfg.train.threads)?;
    let prepared = prepare(cfg, &cfg.data.path, None)?;
    // Before the run folder exists, so a refused run leaves nothing behind.
    train::require_splits(&prepared.encoded, &Split::ALL)?;
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    write_atomic(&tmp.join(CONFIG_FILE), cfg.to_toml().as_bytes())?;
    write_json(&tmp.join(FEATURE_MAP_FILE), &prepared.feature_map)?;
    write_json(&tmp.join(SOURCE_FILE), &cache::source_files(&cfg.data.path)?)?;
    finish(cfg, &prepared, device, &tmp, out, None, observer, wall)
}

/// Writes an untrained run of `cfg` to `out` (replacing it): the prepared features and the model's
/// initial weights (seed `cfg.train.seed`). Scoring costs the same as for a trained run, so
/// `bench --score` measures on these instead of training first.
pub fn write_untrained_run(cfg: &RunConfig, out: &Path) -> Result<()> {
    cfg.validate()?;
    let prepared = prepare(cfg, &cfg.data.path, None)?;
    let (vs, _) = cfg.model.fresh(&prepared.feature_map, Device::Cpu, cfg.train.seed)?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_atomic(&out.join(CONFIG_FILE), cfg.to_toml().as_bytes())?;
    write_json(&out.join(FEATURE_MAP_FILE), &prepared.feature_map)?;
    vs.save(out.join(WEIGHTS_FILE)).map_err(|e| Error::run(out, format!("saving the weights: {e}")))?;
    Ok(())
}

/// Refuses to resume on a dataset whose files changed since the run started: the samples, and so
/// the run, would silently differ from the uninterrupted one.
fn check_source_unchanged(tmp: &Path, cfg: &RunConfig) -> Result<()> {
    let path = tmp.join(SOURCE_FILE);
    // A run from before source.json existed has nothing to compare; any other failure to read
    // it is an error, never a skipped check.
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let then: Vec<cache::SourceFile> = serde_json::from_str(&text).map_err(|e| Error::parse(&path, e.line(), e.to_string()))?;
    let now = cache::source_files(&cfg.data.path)?;
    let changed = then
        .iter()
        .find(|f| !now.contains(f))
        .map(|f| f.name.clone())
        .or_else(|| now.iter().find(|f| !then.iter().any(|g| g.name == f.name)).map(|f| format!("{} (new)", f.name)));
    match changed {
        None => Ok(()),
        Some(name) => Err(Error::run(
            tmp,
            format!(
                "the dataset {} changed since this run started ({name}); resuming would train on other samples: start over with --force",
                cfg.data.path.display()
            ),
        )),
    }
}

/// Continues the interrupted run `out` (or `out.partial`) from its latest checkpoint, with the
/// config and feature map it started with, and finishes it as [`train_run`] would have.
pub fn resume_run(out: &Path, observer: &mut dyn Observer) -> Result<RunSummary> {
    let wall = Instant::now();
    let out = final_dir(out);
    let tmp = partial_path(&out);
    if !tmp.is_dir() {
        let why = if out.join(SUMMARY_FILE).is_file() {
            "is already complete; nothing to resume".to_string()
        } else {
            format!("has no interrupted run to resume ({} not found)", tmp.display())
        };
        return Err(Error::run(&out, why));
    }
    let cfg = RunConfig::from_file(&tmp.join(CONFIG_FILE))?;
    check_source_unchanged(&tmp, &cfg)?;
    let feature_map = FeatureMap::read_from(&tmp)?;
    let device = crate::device::setup(&cfg.train.device, cfg.train.threads)?;
    let prepared = prepare(&cfg, &cfg.data.path, Some(feature_map))?;
    let resume = Checkpoint::latest(&tmp.join(CHECKPOINT_DIR))?;
    finish(&cfg, &prepared, device, &tmp, &out, resume, observer, wall)
}

/// Rewrites `metrics.jsonl` after every evaluation, then passes the event on.
struct MetricsLog<'a> {
    path: PathBuf,
    lines: Vec<String>,
    inner: &'a mut dyn Observer,
}

impl Observer for MetricsLog<'_> {
    fn epoch_start(&mut self, epoch: usize, batches: usize, done: usize) {
        self.inner.epoch_start(epoch, batches, done)
    }
    fn batch_end(&mut self, loss: Option<f64>, samples: usize) {
        self.inner.batch_end(loss, samples)
    }
    fn evaluated(&mut self, report: &EvalReport) {
        self.lines.push(serde_json::to_string(report).expect("serializable"));
        // A failed write here costs only the log; the checkpoint keeps the reports too.
        let _ = write_atomic(&self.path, (self.lines.join("\n") + "\n").as_bytes());
        self.inner.evaluated(report)
    }
    fn checkpointed(&mut self, step: usize) {
        self.inner.checkpointed(step)
    }
}

/// Trains (from scratch or from `resume`) in the partial folder `tmp`, writes the final files and
/// renames `tmp` to `out`.
#[allow(clippy::too_many_arguments)]
fn finish(
    cfg: &RunConfig,
    prepared: &Prepared,
    device: Device,
    tmp: &Path,
    out: &Path,
    resume: Option<Checkpoint>,
    observer: &mut dyn Observer,
    wall: Instant,
) -> Result<RunSummary> {
    let (vs, model) = cfg.model.fresh(&prepared.feature_map, device, cfg.train.seed)?;
    let lines = resume.iter().flat_map(|c| &c.state.evals).map(|r| serde_json::to_string(r).expect("serializable"));
    let mut log = MetricsLog { path: tmp.join(METRICS_FILE), lines: lines.collect(), inner: observer };
    let ckpt_dir = tmp.join(CHECKPOINT_DIR);
    let ckpt = Checkpointing { dir: &ckpt_dir, resume };
    let fit = train::fit(model.as_ref(), &vs, &prepared.encoded, &cfg.train, Some(ckpt), &mut log)?;
    let eval = |split| {
        if split == Split::Test {
            crate::util::crash_point("run.test_eval");
        }
        train::evaluate(model.as_ref(), &prepared.encoded, split, cfg.train.eval_batch_size, device)
    };
    let summary = RunSummary {
        model: cfg.model.name().to_string(),
        seed: cfg.train.seed,
        best_epoch: fit.best_epoch,
        epochs_run: fit.epochs_run,
        valid: eval(Split::Valid),
        test: eval(Split::Test),
        train_samples_per_sec: fit.train_samples_per_sec,
        train_seconds: fit.train_seconds,
        input_wait_share: fit.input_wait_share,
        wall_seconds: wall.elapsed().as_secs_f64(),
        parameters: train::parameter_count(&vs),
        threads: tch::get_num_threads(),
        device: cfg.train.device.clone(),
        prepared_from: prepared.cached.clone(),
    };
    vs.save(tmp.join(WEIGHTS_FILE))?;
    crate::util::crash_point("run.weights");
    let lines: Vec<String> = fit.evals.iter().map(|e| serde_json::to_string(e).expect("serializable")).collect();
    write_atomic(&tmp.join(METRICS_FILE), (lines.join("\n") + "\n").as_bytes())?;
    write_json(&tmp.join(SUMMARY_FILE), &summary)?;
    // Nothing is deleted before the finished run is in place: a crash at any point leaves either
    // the interrupted run (with its checkpoints, for --resume) or the finished one. A run that
    // --force replaces is moved aside first and deleted last.
    let replaced = crate::util::partial_path(&out.with_extension("replaced"));
    if out.exists() {
        if replaced.exists() {
            std::fs::remove_dir_all(&replaced).map_err(|e| Error::io(&replaced, e))?;
        }
        std::fs::rename(out, &replaced).map_err(|e| Error::io(out, e))?;
        crate::util::crash_point("run.replace");
    }
    std::fs::rename(tmp, out).map_err(|e| Error::io(out, e))?;
    crate::util::sync_dir(out.parent().unwrap_or(Path::new(".")));
    let leftovers = [out.join(CHECKPOINT_DIR), replaced];
    for dir in leftovers.iter().filter(|d| d.exists()) {
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(summary)
}

/// A trained model loaded from its run folder.
pub struct LoadedRun {
    pub path: PathBuf,
    pub config: RunConfig,
    pub feature_map: FeatureMap,
    pub model: Box<dyn CtrModel>,
    pub vs: nn::VarStore,
}

pub fn load_run(path: &Path, device: Device) -> Result<LoadedRun> {
    if !path.is_dir() {
        return Err(Error::run(path, "not found (expected a folder written by `attnrec train`)"));
    }
    for f in [CONFIG_FILE, FEATURE_MAP_FILE, WEIGHTS_FILE] {
        if !path.join(f).is_file() {
            return Err(Error::run(path, format!("{f} is missing; is this a finished attnrec run?")));
        }
    }
    let config = RunConfig::from_file(&path.join(CONFIG_FILE))?;
    let feature_map = FeatureMap::read_from(path)?;
    let mut vs = nn::VarStore::new(device);
    let model = config.model.build(vs.root(), &feature_map)?;
    vs.load(path.join(WEIGHTS_FILE))
        .map_err(|e| Error::run(path, format!("{WEIGHTS_FILE} does not match config.toml: {e}")))?;
    Ok(LoadedRun { path: path.to_path_buf(), config, feature_map, model, vs })
}

/// A saved run's predictions on one split, in the protocol's sample order.
#[derive(Debug, Clone)]
pub struct Predictions {
    pub probs: Vec<f64>,
    pub labels: Vec<f32>,
    pub users: Vec<i64>,
}

impl Predictions {
    pub fn metrics(&self) -> SplitMetrics {
        SplitMetrics::compute(&self.probs, &self.labels, &self.users)
    }
}

/// Predictions of a saved run on `split`, on its own dataset or on `data` (same layout and
/// protocol).
pub fn predict_run(path: &Path, split: Split, data: Option<&Path>) -> Result<Predictions> {
    predict_run_on(path, split, data, Device::Cpu)
}

/// [`predict_run`] with the model on `device` (a CUDA device evaluates there; the samples are
/// built on the CPU and moved batch by batch).
pub fn predict_run_on(path: &Path, split: Split, data: Option<&Path>, device: Device) -> Result<Predictions> {
    let run = load_run(path, device)?;
    let data_dir = data.unwrap_or(run.config.data.path.as_path());
    let prepared = prepare(&run.config, data_dir, Some(run.feature_map.clone()))?;
    let idx = prepared.encoded.indices(split);
    let probs = train::predict(run.model.as_ref(), &prepared.encoded, &idx, run.config.train.eval_batch_size, device);
    Ok(Predictions {
        probs,
        labels: idx.iter().map(|&k| prepared.encoded.label[k]).collect(),
        users: idx.iter().map(|&k| prepared.encoded.raw_user[k]).collect(),
    })
}

/// Metrics of a saved run on `split`, on its own dataset or on `data` (same layout and protocol).
pub fn eval_run(path: &Path, split: Split, data: Option<&Path>) -> Result<SplitMetrics> {
    Ok(predict_run(path, split, data)?.metrics())
}

/// A run against a baseline on the same samples: RelaImpr of AUC and DeLong's test.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub baseline: SplitMetrics,
    /// RelaImpr of the run's AUC over the baseline's, in percent.
    pub rela_impr: f64,
    pub delong: crate::metrics::DeLong,
}

/// Compares `run` with `baseline`; both must have been evaluated on the same samples (same
/// dataset, protocol and split), which is checked sample by sample.
pub fn compare(run: &Predictions, baseline_path: &Path, baseline: &Predictions) -> Result<Comparison> {
    if run.labels != baseline.labels || run.users != baseline.users {
        return Err(Error::run(
            baseline_path,
            format!(
                "was evaluated on other samples ({} vs {}); a baseline needs the same dataset, protocol and split",
                baseline.labels.len(),
                run.labels.len()
            ),
        ));
    }
    let delong = crate::metrics::delong(&run.probs, &baseline.probs, &run.labels)
        .ok_or_else(|| Error::run(baseline_path, "DeLong's test needs at least 2 positives and 2 negatives"))?;
    Ok(Comparison {
        baseline: baseline.metrics(),
        rela_impr: crate::metrics::rela_impr(delong.auc_a, delong.auc_b),
        delong,
    })
}
