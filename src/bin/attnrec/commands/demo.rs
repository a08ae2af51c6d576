//! The README's main command: the whole path, data → features → attention model → AUC, on the
//! synthetic dataset, for base and DIN (or any models), as one table. It is an experiment built in
//! memory (one variant per model, seeds 42, 43, …) that retrains its runs every time.
use super::{apply_flags, print_table, table_note};
use crate::cli::DemoArgs;
use crate::progress::{Mode, Progress};
use attnrec::config::RunConfig;
use attnrec::data::synth;
use attnrec::experiment::{conclude, execute, results_table, Experiment, Outcome, PlannedRun};
use attnrec::models::ModelConfig;
use attnrec::util::Choice;
use std::path::PathBuf;

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    if a.seeds == 0 {
        anyhow::bail!("--seeds must be at least 1");
    }
    if let Some(m) = a.models.iter().enumerate().find_map(|(i, m)| a.models[..i].contains(m).then_some(m)) {
        anyhow::bail!("--models lists {m} twice");
    }
    let preset_name = a.preset.name_of();
    let data = a.data.clone().unwrap_or_else(|| PathBuf::from(format!("data/synth-{preset_name}")));
    if !data.join("ratings.dat").is_file() {
        let s = synth::generate(&a.preset.spec(), 42, &data)?;
        eprintln!("generated {} ({} ratings, preset {preset_name})", data.display(), s.ratings);
    }
    let mut runs = Vec::new();
    for model in &a.models {
        let model_cfg = ModelConfig::by_name(model)?;
        for seed in 42..42 + a.seeds {
            let mut config = RunConfig::new(data.clone(), model_cfg.clone());
            config.train.seed = seed;
            apply_flags(&mut config, &a.flags)?;
            let dir = a.out.join(format!("{}-seed{seed}", model.replace(':', "-")));
            runs.push(PlannedRun { variant: model.clone(), seed, config, dir });
        }
    }
    let e = Experiment {
        name: "demo".into(),
        baseline: a.models.iter().find(|m| *m == "base").cloned(),
        variants: a.models.clone(),
        runs,
        out: a.out.clone(),
        file: None,
        retrain: true,
    };
    let mode = Mode::from_flags(a.flags.quiet, a.flags.json_lines);
    let mut progress = Progress::for_runs(&e.name, mode, e.runs.len());
    let outcomes = execute(&e, &mut progress)?;
    progress.finish();
    // A failed run fails the demo with its error, as a failed `train` would (a diverged loss
    // exits 1); the runs after it have still been tried.
    for (r, o) in e.runs.iter().zip(&outcomes) {
        if let Outcome::Failed(f) = o {
            let msg = format!("{} seed {}: {f}", r.variant, r.seed);
            return Err(if f.internal { attnrec::Error::Internal(msg).into() } else { anyhow::anyhow!(msg) });
        }
    }
    let (results, _) = conclude(&e, &outcomes)?;
    if a.json {
        for o in &outcomes {
            if let Outcome::Done { summary, .. } = o {
                println!("{}", serde_json::to_string(summary)?);
            }
        }
    } else if !a.flags.json_lines {
        let format = a.print.table;
        table_note(format, format!("dataset: {} (ml-ctr-v1 protocol; test figures at the best valid-AUC epoch)", data.display()));
        print_table(&results_table(&results), format);
        eprintln!("runs, results.csv, results.md and report.html written to {}", e.out.display());
    }
    Ok(())
}
