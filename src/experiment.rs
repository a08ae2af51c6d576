//! Experiments: one TOML file in `experiments/` that expands into runs (variants or a grid, times
//! seeds), trains each (skipping runs already complete, so an interrupted experiment continues),
//! and tabulates them.
//!
//! ```toml
//! name = "din_vs_base"          # the folder under runs/ [default: the file's stem]
//! seeds = [1, 2, 3]
//! baseline = "base"             # the variant the others are compared with
//!
//! [base]                        # a run config (data, protocol, model, train), as for `train --config`
//! data = { path = "data/synth-small" }
//! model = { kind = "din" }
//!
//! [[variant]]                   # each overrides keys of [base] (with its defaults filled in)
//! name = "base"
//! model = { kind = "base" }     # a table with another `kind` replaces the base's table whole
//!
//! [[variant]]
//! name = "din_softmax"
//! model = { attention = { align = "softmax" } }
//!
//! # and/or a grid: the cartesian product of the listed values (with variants too, every variant
//! # at every point, named `variant,history_len=20,...`)
//! # [grid]
//! # "train.lr" = [0.001, 0.005]
//! # "protocol.history_len" = [20, 50]
//! ```
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::run::{resume_run, train_run, RunSummary, SUMMARY_FILE};
use crate::train::Observer;
use crate::util::{partial_path, write_atomic};
use serde::Serialize;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// One run of an experiment: a variant at a seed, fully resolved.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub variant: String,
    pub seed: u64,
    pub config: RunConfig,
    /// `runs/<experiment>/<variant>-seed<seed>`.
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub baseline: Option<String>,
    /// Variant names in file order.
    pub variants: Vec<String>,
    pub runs: Vec<PlannedRun>,
    pub out: PathBuf,
    /// The experiment file, when it was read from one.
    pub file: Option<PathBuf>,
}

const KEYS: [&str; 6] = ["name", "seeds", "baseline", "base", "variant", "grid"];

impl Experiment {
    /// Reads `path` and expands it; run folders go under `runs_root/<name>/`.
    pub fn from_file(path: &Path, runs_root: &Path) -> Result<Experiment> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let stem = path.file_stem().map_or_else(|| "experiment".into(), |s| s.to_string_lossy().into_owned());
        let e = Experiment::parse(&text, &stem, runs_root).map_err(|e| match e {
            Error::Config(m) => Error::parse(path, 0, m),
            other => other,
        })?;
        Ok(Experiment { file: Some(path.to_path_buf()), ..e })
    }

    pub fn parse(text: &str, default_name: &str, runs_root: &Path) -> Result<Experiment> {
        let doc: Table = toml::from_str(text).map_err(|e| Error::config(e.message().to_string()))?;
        if let Some(k) = doc.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::config(format!("unknown key '{k}' (expected one of: {})", KEYS.join(", "))));
        }
        let name = match doc.get("name") {
            Some(Value::String(s)) if !s.is_empty() && !s.contains(['/', '\\']) => s.clone(),
            Some(_) => return Err(Error::config("name must be a non-empty string without '/'")),
            None => default_name.to_string(),
        };
        let seeds: Vec<u64> = match doc.get("seeds") {
            None => vec![42],
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| v.as_integer().filter(|&i| i >= 0).map(|i| i as u64))
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| Error::config("seeds must be a list of non-negative integers"))?,
            Some(_) => return Err(Error::config("seeds must be a non-empty list of integers")),
        };
        let base = match doc.get("base") {
            Some(Value::Table(t)) => t.clone(),
            _ => return Err(Error::config("[base] is required: a run config (data, protocol, model, train)")),
        };
        let listed: Vec<(String, Table)> = match doc.get("variant") {
            Some(Value::Array(vs)) => vs
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut t = v.as_table().cloned().ok_or_else(|| Error::config(format!("variant {} is not a table", i + 1)))?;
                    let name = match t.remove("name") {
                        Some(Value::String(s)) if !s.is_empty() && !s.contains(['/', '\\', ',']) => s,
                        _ => return Err(Error::config(format!("variant {} needs a name (a string without '/' or ',')", i + 1))),
                    };
                    Ok((name, t))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(Error::config("[[variant]] must be an array of tables")),
            None => Vec::new(),
        };
        let points = match doc.get("grid") {
            Some(Value::Table(g)) => grid(g)?,
            Some(_) => return Err(Error::config("[grid] must be a table")),
            None => Vec::new(),
        };
        // Variants, grid points, or every variant at every grid point (named `variant,key=value`).
        let variants: Vec<(String, Table)> = match (listed.is_empty(), points.is_empty()) {
            (true, true) => vec![("base".to_string(), Table::new())],
            (false, true) => listed,
            (true, false) => points,
            (false, false) => listed
                .iter()
                .flat_map(|(vn, vt)| {
                    points.iter().map(move |(pn, pt)| {
                        let mut t = vt.clone();
                        merge(&mut t, pt);
                        (format!("{vn},{pn}"), t)
                    })
                })
                .collect(),
        };
        let names: Vec<String> = variants.iter().map(|(n, _)| n.clone()).collect();
        if let Some(dup) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
            return Err(Error::config(format!("variant name '{dup}' appears twice")));
        }
        let baseline = match doc.get("baseline") {
            Some(Value::String(b)) if names.contains(b) => Some(b.clone()),
            Some(Value::String(b)) => return Err(Error::config(format!("baseline '{b}' is not a variant (variants: {})", names.join(", ")))),
            Some(_) => return Err(Error::config("baseline must be a variant name")),
            None => None,
        };
        // The base with every default written out, so that a variant can override one nested key
        // (say `model.attention.align`) and keep the rest of that table.
        let base_config: RunConfig =
            Value::Table(base).try_into().map_err(|e: toml::de::Error| Error::config(format!("[base]: {}", e.message())))?;
        let base = match Value::try_from(&base_config) {
            Ok(Value::Table(t)) => t,
            _ => unreachable!("a RunConfig serializes to a TOML table"),
        };
        let out = runs_root.join(&name);
        let mut runs = Vec::new();
        for (variant, overrides) in &variants {
            let mut table = base.clone();
            merge(&mut table, overrides);
            let mut config: RunConfig = Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| Error::config(format!("variant '{variant}': {}", e.message())))?;
            config.validate().map_err(|e| Error::config(format!("variant '{variant}': {e}")))?;
            for &seed in &seeds {
                config.train.seed = seed;
                runs.push(PlannedRun { variant: variant.clone(), seed, config: config.clone(), dir: out.join(format!("{variant}-seed{seed}")) });
            }
        }
        Ok(Experiment { name, baseline, variants: names, runs, out, file: None })
    }
}

/// Overlays `over` on `base`: tables merge key by key, anything else replaces; a table whose
/// `kind` differs from the base's replaces it whole (another model's keys do not mix).
fn merge(base: &mut Table, over: &Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) if o.get("kind").is_none_or(|kind| b.get("kind") == Some(kind)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The cartesian product of `[grid]`'s dotted keys, each point named `key=value,...`.
fn grid(g: &Table) -> Result<Vec<(String, Table)>> {
    let mut points: Vec<(Vec<String>, Table)> = vec![(Vec::new(), Table::new())];
    for (key, values) in g {
        let values = values.as_array().filter(|a| !a.is_empty()).ok_or_else(|| Error::config(format!("grid \"{key}\" must be a non-empty list")))?;
        let path: Vec<&str> = key.split('.').collect();
        let mut next = Vec::new();
        for (names, table) in &points {
            for v in values {
                let mut t = table.clone();
                set_path(&mut t, &path, v.clone());
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let leaf = path.last().copied().unwrap_or(key);
                next.push(([names.clone(), vec![format!("{leaf}={shown}")]].concat(), t));
            }
        }
        points = next;
    }
    Ok(points.into_iter().map(|(n, t)| (n.join(","), t)).collect())
}

fn set_path(t: &mut Table, path: &[&str], v: Value) {
    match path {
        [] => {}
        [last] => {
            t.insert(last.to_string(), v);
        }
        [head, rest @ ..] => {
            let entry = t.entry(head.to_string()).or_insert_with(|| Value::Table(Table::new()));
            if let Value::Table(inner) = entry {
                set_path(inner, rest, v);
            }
        }
    }
}

/// What became of one planned run.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Trained now, or found complete in its folder.
    Done { summary: RunSummary, reused: bool },
    /// Training failed; the error is recorded and the experiment goes on.
    Failed(String),
}

/// Trains every planned run that its folder does not already hold complete, in order; a failed
/// run is recorded with its error (the experiment goes on). `observe(i, run)` is called before
/// run `i` starts, `observer` sees its training.
pub fn execute(
    e: &Experiment,
    observer: &mut dyn Observer,
    observe: &mut dyn FnMut(usize, &PlannedRun),
) -> Result<Vec<Outcome>> {
    std::fs::create_dir_all(&e.out).map_err(|err| Error::io(&e.out, err))?;
    let mut outcomes = Vec::with_capacity(e.runs.len());
    for (i, run) in e.runs.iter().enumerate() {
        observe(i, run);
        if run.dir.join(SUMMARY_FILE).is_file() {
            if !run.dir.join(COMMAND_FILE).is_file() {
                write_command(e, run)?;
            }
            outcomes.push(Outcome::Done { summary: read_summary(&run.dir)?, reused: true });
            continue;
        }
        // A run interrupted in an earlier attempt continues from its checkpoint.
        let result = if partial_path(&run.dir).is_dir() {
            resume_run(&run.dir, observer)
        } else {
            train_run(&run.config, &run.dir, false, observer)
        };
        // The table is always built from summary.json as written, so that a later invocation
        // that finds the run complete tabulates exactly the same numbers.
        outcomes.push(match result.and_then(|_| read_summary(&run.dir)) {
            Ok(summary) => {
                write_command(e, run)?;
                Outcome::Done { summary, reused: false }
            }
            Err(err) => Outcome::Failed(err.to_string()),
        });
    }
    Ok(outcomes)
}

/// The file name of the commands that reproduce a run, written into its folder.
pub const COMMAND_FILE: &str = "command.txt";

/// Writes `command.txt` into a finished run's folder: the command that retrains it alone from
/// its resolved `config.toml`, and the experiment command it came from.
fn write_command(e: &Experiment, run: &PlannedRun) -> Result<()> {
    let dir = run.dir.display();
    let mut text = format!(
        "# This run alone, from its resolved config (config.toml in this folder):\n\
         attnrec train --config {dir}/config.toml --out {dir}-again\n"
    );
    if let Some(file) = &e.file {
        text.push_str(&format!(
            "# As part of its experiment (variant {}, seed {}; complete runs are skipped):\nattnrec run {}\n",
            run.variant,
            run.seed,
            file.display()
        ));
    }
    write_atomic(&run.dir.join(COMMAND_FILE), text.as_bytes())
}

fn read_summary(dir: &Path) -> Result<RunSummary> {
    let path = dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|err| Error::io(&path, err))?;
    serde_json::from_str(&text).map_err(|err| Error::parse(&path, err.line(), err.to_string()))
}

/// One row of `results.csv` / `results.md`: a variant's metrics over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct VariantResult {
    pub variant: String,
    pub seeds: usize,
    pub failed: usize,
    pub valid_auc: (f64, f64),
    pub test_auc: (f64, f64),
    pub test_gauc: (f64, f64),
    pub test_logloss: (f64, f64),
    /// RelaImpr of the mean test AUC over the baseline's, in percent.
    pub rela_impr: Option<f64>,
    /// Two-sided p-value of DeLong's test against the baseline, on the seed-averaged test
    /// predictions (see [`pooled_delong`]); `None` for the baseline itself or without one.
    pub delong_p: Option<f64>,
    pub samples_per_sec: f64,
    pub parameters: i64,
    pub wall_seconds: f64,
}

/// Mean and sample standard deviation (0 for one value; NaN for none).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[base]\ndata = { path = \"d\" }\nmodel = { kind = \"din\", embed_dim = 8 }\ntrain = { epochs = 2 }\n";

    #[test]
    fn a_metric_missing_for_one_seed_has_no_mean() {
        let text = format!("seeds = [1, 2]\n{BASE}");
        let e = Experiment::parse(&text, "x", Path::new("runs")).unwrap();
        let split = |auc: Option<f64>| crate::metrics::SplitMetrics { auc, gauc: auc, logloss: 0.5, samples: 10, positive_rate: 0.5, mean_prediction: 0.5, ece: 0.0 };
        let run = |auc| Outcome::Done {
            summary: RunSummary {
                model: "din".into(),
                seed: 1,
                best_epoch: 1,
                epochs_run: 1,
                valid: split(Some(0.7)),
                test: split(auc),
                train_samples_per_sec: 1.0,
                train_seconds: 1.0,
                input_wait_share: 0.0,
                wall_seconds: 1.0,
                parameters: 1,
                threads: 1,
                device: "cpu".into(),
                prepared_from: None,
            },
            reused: false,
        };
        let rows = tabulate(&e, &[run(Some(0.8)), run(None)]);
        assert_eq!((rows[0].seeds, rows[0].valid_auc), (2, (0.7, 0.0)));
        assert!(rows[0].test_auc.0.is_nan() && rows[0].test_gauc.0.is_nan(), "{:?}", rows[0].test_auc);
        assert_eq!(tabulate(&e, &[run(Some(0.75)), run(Some(0.25))])[0].test_auc.0, 0.5);
    }

    #[test]
    fn variants_override_the_base_and_multiply_by_seeds() {
        let text = format!(
            "seeds = [1, 2]\nbaseline = \"base\"\n{BASE}[[variant]]\nname = \"base\"\nmodel = {{ kind = \"base\" }}\n\
             [[variant]]\nname = \"din_lr\"\ntrain = {{ lr = 0.01 }}\n"
        );
        let e = Experiment::parse(&text, "x", Path::new("runs")).unwrap();
        assert_eq!((e.name.as_str(), e.baseline.as_deref(), e.variants.clone()), ("x", Some("base"), vec!["base".into(), "din_lr".into()]));
        assert_eq!(e.runs.len(), 4);
        assert_eq!(e.runs[1].dir, Path::new("runs/x/base-seed2"));
        assert_eq!((e.runs[1].seed, e.runs[1].config.train.seed), (2, 2));
        // Another kind replaces the model table (din's embed_dim = 8 does not leak into base).
        assert_eq!(e.runs[0].config.model.name(), "base");
        assert_eq!(e.runs[0].config.model.clone().embed_dim_mut(), &16);
        // A same-kind override merges: din keeps embed_dim 8, lr changes, epochs stay.
        let din = &e.runs[2].config;
        assert_eq!((din.model.name(), *din.model.clone().embed_dim_mut(), din.train.lr, din.train.epochs), ("din", 8, 0.01, 2));
    }

    #[test]
    fn a_nested_override_keeps_the_rest_of_its_table() {
        let text = format!("{BASE}[[variant]]\nname = \"soft\"\nmodel = {{ attention = {{ align = \"softmax\" }} }}\n");
        let e = Experiment::parse(&text, "x", Path::new("runs")).unwrap();
        let toml = e.runs[0].config.to_toml();
        assert!(toml.contains("align = \"softmax\""), "{toml}");
        assert!(toml.contains("kind = \"din_mlp\""), "the score function stays DIN's: {toml}");
        assert!(toml.contains("embed_dim = 8"), "{toml}");
    }

    #[test]
    fn a_grid_is_the_cartesian_product() {
        let text = format!("{BASE}[grid]\n\"train.lr\" = [0.001, 0.01]\n\"protocol.history_len\" = [10, 20, 50]\n");
        let e = Experiment::parse(&text, "g", Path::new("runs")).unwrap();
        assert_eq!(e.runs.len(), 6);
        assert_eq!(e.variants[0], "history_len=10,lr=0.001");
        let last = &e.runs[5].config;
        assert_eq!((last.protocol.history_len, last.train.lr), (50, 0.01));
    }

    #[test]
    fn variants_times_a_grid() {
        let text = format!(
            "baseline = \"din,history_len=50\"\n{BASE}[[variant]]\nname = \"base\"\nmodel = {{ kind = \"base\" }}\n\
             [[variant]]\nname = \"din\"\n[grid]\n\"protocol.history_len\" = [10, 50]\n"
        );
        let e = Experiment::parse(&text, "x", Path::new("runs")).unwrap();
        assert_eq!(e.variants, ["base,history_len=10", "base,history_len=50", "din,history_len=10", "din,history_len=50"]);
        let cfg = |i: usize| (e.runs[i].config.model.name(), e.runs[i].config.protocol.history_len);
        assert_eq!([cfg(0), cfg(1), cfg(2), cfg(3)], [("base", 10), ("base", 50), ("din", 10), ("din", 50)]);
        assert_eq!(e.baseline.as_deref(), Some("din,history_len=50"));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |t: &str| Experiment::parse(t, "x", Path::new("r")).unwrap_err().to_string();
        assert!(err("seeds = [1]\n").contains("[base] is required"));
        assert!(err(&format!("baseline = \"nope\"\n{BASE}")).contains("baseline 'nope' is not a variant"));
        assert!(err(&format!("{BASE}[[variant]]\nmodel = {{}}\n")).contains("variant 1 needs a name"));
        assert!(err(&format!("{BASE}[[variant]]\nname = \"a\"\ntrain = {{ lrr = 1 }}\n")).contains("variant 'a': unknown field `lrr`"));
        assert!(err(&format!("sedes = [1]\n{BASE}")).contains("unknown key 'sedes'"));
        assert!(err(&format!("{BASE}[[variant]]\nname = \"a\"\n[[variant]]\nname = \"a\"\n")).contains("'a' appears twice"));
    }

    #[test]
    fn mean_and_sample_std() {
        assert_eq!(mean_std(&[1.0]), (1.0, 0.0));
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!((m, s), (2.0, 1.0));
    }
}

/// The results table of an experiment's outcomes, one row per variant in file order.
pub fn tabulate(e: &Experiment, outcomes: &[Outcome]) -> Vec<VariantResult> {
    let done = |variant: &str| -> Vec<&RunSummary> {
        e.runs
            .iter()
            .zip(outcomes)
            .filter(|(r, _)| r.variant == variant)
            .filter_map(|(_, o)| match o {
                Outcome::Done { summary, .. } => Some(summary),
                Outcome::Failed(_) => None,
            })
            .collect()
    };
    // A metric some seed lacks (an AUC of a split with one class) has no mean: a mean over the
    // seeds that have it would stand in the table as if over all of them.
    let stat = |runs: &[&RunSummary], f: &dyn Fn(&RunSummary) -> Option<f64>| {
        runs.iter().map(|r| f(r)).collect::<Option<Vec<f64>>>().map_or((f64::NAN, f64::NAN), |xs| mean_std(&xs))
    };
    let base_auc = e.baseline.as_deref().map(|b| stat(&done(b), &|r| r.test.auc).0);
    e.variants
        .iter()
        .map(|v| {
            let runs = done(v);
            let planned = e.runs.iter().filter(|r| &r.variant == v).count();
            let test_auc = stat(&runs, &|r| r.test.auc);
            VariantResult {
                variant: v.clone(),
                seeds: runs.len(),
                failed: planned - runs.len(),
                valid_auc: stat(&runs, &|r| r.valid.auc),
                test_auc,
                test_gauc: stat(&runs, &|r| r.test.gauc),
                test_logloss: stat(&runs, &|r| Some(r.test.logloss)),
                rela_impr: base_auc.filter(|b| b.is_finite() && *b != 0.5).map(|b| crate::metrics::rela_impr(test_auc.0, b)),
                delong_p: None,
                samples_per_sec: stat(&runs, &|r| Some(r.train_samples_per_sec)).0,
                parameters: runs.first().map_or(0, |r| r.parameters),
                wall_seconds: runs.iter().map(|r| r.wall_seconds).sum(),
            }
        })
        .collect()
}

const HEADER: [&str; 11] =
    ["variant", "seeds", "valid AUC", "test AUC", "test GAUC", "test LogLoss", "RelaImpr", "p (DeLong)", "samples/s", "parameters", "wall s"];

fn pm((m, s): (f64, f64)) -> String {
    if m.is_nan() { "n/a".into() } else { format!("{m:.4} ± {s:.4}") }
}

fn fmt_p(p: f64) -> String {
    if p < 1e-4 { format!("{p:.1e}") } else { format!("{p:.4}") }
}

/// DeLong's test of each variant against the baseline, pooled over seeds: the test predictions
/// of a variant's complete runs are averaged per sample (the seed ensemble), the baseline's too,
/// and the two averages compared on the same samples. (Concatenating the seeds instead would
/// count every test sample once per seed and understate the variance.) `None` for the baseline,
/// for a variant without complete runs, or one evaluated on other samples (another protocol).
pub fn pooled_delong(e: &Experiment, outcomes: &[Outcome]) -> Result<Vec<Option<f64>>> {
    let Some(baseline) = &e.baseline else { return Ok(vec![None; e.variants.len()]) };
    let averaged = |variant: &str| -> Result<Option<crate::run::Predictions>> {
        let mut mean: Option<crate::run::Predictions> = None;
        let mut n = 0.0;
        for (r, o) in e.runs.iter().zip(outcomes) {
            if r.variant != variant || !matches!(o, Outcome::Done { .. }) {
                continue;
            }
            let p = crate::run::predict_run(&r.dir, crate::data::protocol::Split::Test, None)?;
            n += 1.0;
            match &mut mean {
                None => mean = Some(p),
                Some(m) if m.labels == p.labels && m.users == p.users => m.probs.iter_mut().zip(&p.probs).for_each(|(a, b)| *a += b),
                Some(_) => return Ok(None),
            }
        }
        Ok(mean.map(|mut m| {
            m.probs.iter_mut().for_each(|x| *x /= n);
            m
        }))
    };
    let Some(base) = averaged(baseline)? else { return Ok(vec![None; e.variants.len()]) };
    e.variants
        .iter()
        .map(|v| {
            if v == baseline {
                return Ok(None);
            }
            Ok(averaged(v)?
                .filter(|p| p.labels == base.labels && p.users == base.users)
                .and_then(|p| crate::metrics::delong(&p.probs, &base.probs, &p.labels))
                .map(|d| d.p_value))
        })
        .collect()
}

/// The rows of the results table as display strings (Markdown and terminal).
pub fn display_rows(results: &[VariantResult]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let rows = results
        .iter()
        .map(|r| {
            vec![
                r.variant.clone(),
                if r.failed > 0 { format!("{} ({} failed)", r.seeds, r.failed) } else { r.seeds.to_string() },
                pm(r.valid_auc),
                pm(r.test_auc),
                pm(r.test_gauc),
                pm(r.test_logloss),
                r.rela_impr.map_or("".into(), |x| format!("{x:+.2}%")),
                r.delong_p.map_or("".into(), fmt_p),
                if r.samples_per_sec.is_nan() { "n/a".into() } else { format!("{:.0}", r.samples_per_sec) },
                r.parameters.to_string(),
                format!("{:.1}", r.wall_seconds),
            ]
        })
        .collect();
    (HEADER.to_vec(), rows)
}

/// Writes `results.csv` (full precision: mean and std in their own columns) and `results.md`
/// into the experiment folder, and `failed.txt` listing failed runs with their errors.
pub fn write_results(e: &Experiment, outcomes: &[Outcome], results: &[VariantResult]) -> Result<()> {
    let mut csv = String::from(
        "variant,seeds,failed,valid_auc_mean,valid_auc_std,test_auc_mean,test_auc_std,test_gauc_mean,test_gauc_std,\
         test_logloss_mean,test_logloss_std,rela_impr_pct,delong_p,samples_per_sec,parameters,wall_seconds\n",
    );
    let num = |x: f64| if x.is_nan() { String::new() } else { x.to_string() };
    for r in results {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.variant, r.seeds, r.failed, num(r.valid_auc.0), num(r.valid_auc.1), num(r.test_auc.0), num(r.test_auc.1),
            num(r.test_gauc.0), num(r.test_gauc.1), num(r.test_logloss.0), num(r.test_logloss.1),
            r.rela_impr.map_or(String::new(), num), r.delong_p.map_or(String::new(), num), num(r.samples_per_sec),
            r.parameters, r.wall_seconds
        ));
    }
    write_atomic(&e.out.join("results.csv"), csv.as_bytes())?;
    let (header, rows) = display_rows(results);
    let mut md = format!("# {}\n\nMean ± sample std over seeds", e.name);
    if let Some(b) = &e.baseline {
        md.push_str(&format!(
            "; RelaImpr of the mean test AUC against `{b}`; p: DeLong's test of the seed-averaged test predictions against `{b}`'s"
        ));
    }
    md.push_str(".\n\n");
    md.push_str(&format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len())));
    for r in rows {
        md.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    write_atomic(&e.out.join("results.md"), md.as_bytes())?;
    let failed: Vec<String> = e
        .runs
        .iter()
        .zip(outcomes)
        .filter_map(|(r, o)| match o {
            Outcome::Failed(msg) => Some(format!("{}: {msg}", r.dir.display())),
            Outcome::Done { .. } => None,
        })
        .collect();
    let failed_path = e.out.join("failed.txt");
    if failed.is_empty() {
        let _ = std::fs::remove_file(&failed_path);
        Ok(())
    } else {
        write_atomic(&failed_path, (failed.join("\n") + "\n").as_bytes())
    }
}
