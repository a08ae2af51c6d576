use super::{fmt_metric, print_table};
use crate::cli::EvalArgs;
use attnrec::run::eval_run;

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let m = eval_run(&a.run, a.split, a.data.as_deref())?;
    if a.json {
        let obj = serde_json::json!({
            "run": a.run.display().to_string(),
            "split": a.split.name(),
            "auc": m.auc,
            "gauc": m.gauc,
            "logloss": m.logloss,
            "samples": m.samples,
            "positive_rate": m.positive_rate,
        });
        println!("{obj}");
    } else {
        print_table(
            &["split", "samples", "positive rate", "AUC", "GAUC", "LogLoss"],
            &[vec![
                a.split.name().to_string(),
                m.samples.to_string(),
                format!("{:.4}", m.positive_rate),
                fmt_metric(m.auc),
                fmt_metric(m.gauc),
                format!("{:.4}", m.logloss),
            ]],
        );
    }
    Ok(())
}
