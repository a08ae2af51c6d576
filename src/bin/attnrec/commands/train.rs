use super::{apply_flags, override_data, print_table};
use crate::cli::TrainArgs;
use crate::progress::{emit, Mode, Progress};
use attnrec::config::RunConfig;
use attnrec::models::ModelConfig;
use attnrec::run::{final_dir, resume_run, train_run, RunSummary, CONFIG_FILE};
use attnrec::table::{Cell, Format as TableFormat, Table};
use std::path::Path;

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let mode = Mode::from_flags(a.flags.quiet, a.flags.json_lines);
    if let Some(run) = &a.resume {
        // The run continues with its own config: flags that would change it are refused.
        let own = attnrec::util::partial_path(&final_dir(run)).join(CONFIG_FILE);
        if own.is_file() {
            let cfg = RunConfig::from_file(&own)?;
            let mut changed = cfg.clone();
            apply_flags(&mut changed, &a.flags)?;
            if changed != cfg {
                anyhow::bail!("--resume continues with the run's own config.toml; training flags cannot change it");
            }
        }
        let mut progress = Progress::new(run.display().to_string(), mode);
        let s = resume_run(run, &mut progress)?;
        return report(&s, &final_dir(run), mode, a.print.table);
    }
    let out = a.out.clone().expect("clap requires --out without --resume");
    let mut cfg = match (&a.config, &a.data, &a.model) {
        (Some(path), _, _) => RunConfig::from_file(path)?,
        (None, Some(data), Some(model)) => RunConfig::new(data.clone(), ModelConfig::by_name(model)?),
        (None, None, _) => anyhow::bail!("--data DIR is required (or --config FILE)"),
        (None, _, None) => anyhow::bail!("--model is required: base or din (or --config FILE)"),
    };
    override_data(&mut cfg.data, a.data.as_deref(), a.format);
    if let (Some(model), Some(_)) = (&a.model, &a.config) {
        cfg.model = ModelConfig::by_name(model)?;
    }
    if let Some(seed) = a.seed {
        cfg.train.seed = seed;
    }
    apply_flags(&mut cfg, &a.flags)?;
    let mut progress = Progress::new(cfg.model.name(), mode);
    let s = train_run(&cfg, &out, a.force, &mut progress)?;
    report(&s, &out, mode, a.print.table)
}

fn report(s: &RunSummary, out: &Path, mode: Mode, format: TableFormat) -> anyhow::Result<()> {
    if mode == Mode::JsonLines {
        let mut v = serde_json::to_value(s)?;
        v["event"] = "done".into();
        v["run"] = out.display().to_string().into();
        emit(v);
        return Ok(());
    }
    let mut t = Table::with_columns(&[
        ("model", "model"),
        ("best_epoch", "best epoch"),
        ("valid_auc", "valid AUC"),
        ("test_auc", "test AUC"),
        ("test_gauc", "test GAUC"),
        ("test_logloss", "test LogLoss"),
        ("samples_per_sec", "samples/s"),
        ("wall_seconds", "wall s"),
    ]);
    t.push(vec![
        Cell::text(&s.model),
        Cell::int(s.best_epoch),
        Cell::maybe(s.valid.auc, 4),
        Cell::maybe(s.test.auc, 4),
        Cell::maybe(s.test.gauc, 4),
        Cell::num(s.test.logloss, 4),
        Cell::num(s.train_samples_per_sec, 0),
        Cell::num(s.wall_seconds, 1),
    ]);
    print_table(&t, format);
    if let Some(dir) = &s.prepared_from {
        eprintln!("samples read from the prepared cache {}", dir.display());
    }
    eprintln!("run written to {}", out.display());
    Ok(())
}
