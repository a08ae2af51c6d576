//! The README's main command: the whole path, data → features → attention model → AUC, on the
//! synthetic dataset, for base and DIN (or any models), as one table.
use super::{apply_flags, print_table};
use crate::cli::DemoArgs;
use crate::progress::{emit, Mode, Progress};
use attnrec::config::RunConfig;
use attnrec::data::synth;
use attnrec::models::ModelConfig;
use attnrec::run::{train_run, RunSummary};
use std::path::PathBuf;

use attnrec::metrics::mean_std;
use attnrec::util::Choice;

fn cell(runs: &[RunSummary], f: impl Fn(&RunSummary) -> Option<f64>, digits: usize) -> String {
    let xs: Vec<f64> = runs.iter().filter_map(&f).collect();
    if xs.is_empty() {
        return "n/a".into();
    }
    let (m, s) = mean_std(&xs);
    if xs.len() > 1 { format!("{m:.digits$} ± {s:.digits$}") } else { format!("{m:.digits$}") }
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    if a.seeds == 0 {
        anyhow::bail!("--seeds must be at least 1");
    }
    let preset_name = a.preset.name_of();
    let data = a.data.clone().unwrap_or_else(|| PathBuf::from(format!("data/synth-{preset_name}")));
    if !data.join("ratings.dat").is_file() {
        let s = synth::generate(&a.preset.spec(), 42, &data)?;
        eprintln!("generated {} ({} ratings, preset {preset_name})", data.display(), s.ratings);
    }
    let configs = a.models.iter().map(|m| Ok((m.as_str(), ModelConfig::by_name(m)?))).collect::<attnrec::Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    for (model, model_cfg) in configs {
        let mut runs = Vec::new();
        for seed in 42..42 + a.seeds {
            let mut cfg = RunConfig::new(data.clone(), model_cfg.clone());
            cfg.train.seed = seed;
            apply_flags(&mut cfg, &a.flags)?;
            let out = a.out.join(format!("{}-seed{seed}", model.replace(':', "-")));
            let mode = Mode::from_flags(a.flags.quiet, a.flags.json_lines);
            let mut progress = Progress::new(format!("{model} seed {seed}"), mode);
            let s = train_run(&cfg, &out, true, &mut progress)?;
            if mode == Mode::JsonLines {
                let mut v = serde_json::to_value(&s)?;
                v["event"] = "done".into();
                v["run"] = out.display().to_string().into();
                emit(v);
            } else if a.json {
                println!("{}", serde_json::to_string(&s)?);
            }
            runs.push(s);
        }
        rows.push(vec![
            model.to_string(),
            runs.len().to_string(),
            cell(&runs, |r| r.valid.auc, 4),
            cell(&runs, |r| r.test.auc, 4),
            cell(&runs, |r| r.test.gauc, 4),
            cell(&runs, |r| Some(r.test.logloss), 4),
            cell(&runs, |r| Some(r.train_samples_per_sec), 0),
            cell(&runs, |r| Some(r.wall_seconds), 1),
        ]);
    }
    if !a.json && !a.flags.json_lines {
        println!("dataset: {} (ml-ctr-v1 protocol; test figures at the best valid-AUC epoch)", data.display());
        print_table(
            &["model", "seeds", "valid AUC", "test AUC", "test GAUC", "test LogLoss", "train samples/s", "wall s"],
            &rows,
        );
    }
    Ok(())
}
