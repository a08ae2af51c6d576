use super::{apply_flags, fmt_metric, print_table};
use crate::cli::TrainArgs;
use crate::progress::Progress;
use attnrec::config::RunConfig;
use attnrec::models::ModelConfig;
use attnrec::run::train_run;

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let mut cfg = match (&a.config, &a.data, &a.model) {
        (Some(path), _, _) => RunConfig::from_file(path)?,
        (None, Some(data), Some(model)) => RunConfig::new(data.clone(), ModelConfig::by_name(model)?),
        (None, None, _) => anyhow::bail!("--data DIR is required (or --config FILE)"),
        (None, _, None) => anyhow::bail!("--model is required: base or din (or --config FILE)"),
    };
    if let Some(data) = &a.data {
        cfg.data.path = data.clone();
    }
    if a.format.is_some() {
        cfg.data.format = a.format;
    }
    if let (Some(model), Some(_)) = (&a.model, &a.config) {
        cfg.model = ModelConfig::by_name(model)?;
    }
    if let Some(seed) = a.seed {
        cfg.train.seed = seed;
    }
    apply_flags(&mut cfg, &a.flags)?;
    let mut progress = Progress::new(cfg.model.name(), a.flags.quiet);
    let s = train_run(&cfg, &a.out, a.force, &mut progress)?;
    print_table(
        &["model", "best epoch", "valid AUC", "test AUC", "test GAUC", "test LogLoss", "samples/s", "wall s"],
        &[vec![
            s.model.clone(),
            s.best_epoch.to_string(),
            fmt_metric(s.valid.auc),
            fmt_metric(s.test.auc),
            fmt_metric(s.test.gauc),
            format!("{:.4}", s.test.logloss),
            format!("{:.0}", s.train_samples_per_sec),
            format!("{:.1}", s.wall_seconds),
        ]],
    );
    eprintln!("run written to {}", a.out.display());
    Ok(())
}
