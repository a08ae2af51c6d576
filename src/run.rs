//! Run folders: training a [`RunConfig`] end to end and writing
//! `config.toml`, `feature_map.json`, `model.safetensors`, `metrics.jsonl` (one line per epoch) and
//! `summary.json`; loading them back for evaluation. A run is written into `<run>.partial` and
//! renamed at the end, so a failed run leaves no folder that looks complete.
use crate::config::RunConfig;
use crate::data::protocol::{build_events, Split};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::features::{item_first_genres, Encoded, FeatureMap};
use crate::metrics::SplitMetrics;
use crate::models::CtrModel;
use crate::train::{self, Observer};
use crate::util::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device};

pub const CONFIG_FILE: &str = "config.toml";
pub const FEATURE_MAP_FILE: &str = "feature_map.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const SUMMARY_FILE: &str = "summary.json";

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
    pub wall_seconds: f64,
    pub parameters: i64,
    pub threads: i32,
    pub device: String,
}

/// Dataset → protocol → features, as one step.
pub struct Prepared {
    pub feature_map: FeatureMap,
    pub encoded: Encoded,
}

/// Loads the dataset of `cfg` and applies the protocol. With `feature_map`, encodes with it
/// (evaluation of a saved run); otherwise fits a new one on the train split.
pub fn prepare(cfg: &RunConfig, data_dir: &Path, feature_map: Option<FeatureMap>) -> Result<Prepared> {
    let ds = Dataset::load(data_dir, cfg.data.format)?;
    let events = build_events(&ds, &cfg.protocol)?;
    let genres = item_first_genres(&ds)?;
    let feature_map = feature_map.unwrap_or_else(|| FeatureMap::fit(&events, &genres, cfg.protocol.history_len));
    let encoded = feature_map.encode(&events, &genres);
    Ok(Prepared { feature_map, encoded })
}

fn partial_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "run".into());
    name.push(".partial");
    out.with_file_name(name)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serializable");
    write_atomic(path, text.as_bytes())
}

/// Trains `cfg` and writes the run folder `out`. Refuses to overwrite an existing folder unless
/// `force` is set.
pub fn train_run(cfg: &RunConfig, out: &Path, force: bool, observer: &mut dyn Observer) -> Result<RunSummary> {
    let wall = Instant::now();
    cfg.validate()?;
    if out.exists() && !force {
        return Err(Error::run(out, "already exists; choose another --out or pass --force to replace it"));
    }
    let device = crate::device::resolve(&cfg.train.device)?;
    crate::device::set_threads(cfg.train.threads);
    let prepared = prepare(cfg, &cfg.data.path, None)?;

    train::seed_everything(cfg.train.seed);
    let vs = nn::VarStore::new(device);
    let model = cfg.model.build(vs.root(), &prepared.feature_map)?;
    let fit = train::fit(model.as_ref(), &vs, &prepared.encoded, &cfg.train, observer)?;
    let eval = |split| train::evaluate(model.as_ref(), &prepared.encoded, split, cfg.train.eval_batch_size, device);
    let summary = RunSummary {
        model: cfg.model.name().to_string(),
        seed: cfg.train.seed,
        best_epoch: fit.best_epoch,
        epochs_run: fit.epochs.len(),
        valid: eval(Split::Valid),
        test: eval(Split::Test),
        train_samples_per_sec: fit.train_samples_per_sec,
        train_seconds: fit.train_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        parameters: train::parameter_count(&vs),
        threads: tch::get_num_threads(),
        device: cfg.train.device.clone(),
    };

    let tmp = partial_dir(out);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    write_atomic(&tmp.join(CONFIG_FILE), cfg.to_toml().as_bytes())?;
    write_json(&tmp.join(FEATURE_MAP_FILE), &prepared.feature_map)?;
    vs.save(tmp.join(WEIGHTS_FILE))?;
    let lines: Vec<String> = fit.epochs.iter().map(|e| serde_json::to_string(e).expect("serializable")).collect();
    write_atomic(&tmp.join(METRICS_FILE), (lines.join("\n") + "\n").as_bytes())?;
    write_json(&tmp.join(SUMMARY_FILE), &summary)?;
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
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
    let fm_path = path.join(FEATURE_MAP_FILE);
    let fm_text = std::fs::read_to_string(&fm_path).map_err(|e| Error::io(&fm_path, e))?;
    let feature_map: FeatureMap =
        serde_json::from_str(&fm_text).map_err(|e| Error::parse(&fm_path, e.line(), e.to_string()))?;
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
    let run = load_run(path, Device::Cpu)?;
    let data_dir = data.unwrap_or(run.config.data.path.as_path());
    let prepared = prepare(&run.config, data_dir, Some(run.feature_map.clone()))?;
    let idx = prepared.encoded.indices(split);
    let probs = train::predict(run.model.as_ref(), &prepared.encoded, &idx, run.config.train.eval_batch_size, Device::Cpu);
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
