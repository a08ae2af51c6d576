use super::{print_table, table_note};
use attnrec::table::{Cell, Table};
use crate::cli::EvalArgs;
use attnrec::run::{compare, predict_run_on};

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let device = attnrec::device::setup(&a.device, 0)?;
    let pred = predict_run_on(&a.run, a.split, a.data.as_deref(), device)?;
    if let Some(path) = &a.predictions {
        let mut csv = String::from("user_id,label,prob\n");
        for ((u, l), p) in pred.users.iter().zip(&pred.labels).zip(&pred.probs) {
            csv.push_str(&format!("{u},{l},{p}\n"));
        }
        attnrec::util::write_atomic(path, csv.as_bytes())?;
    }
    let m = pred.metrics();
    let cmp = match &a.baseline {
        Some(b) => Some(compare(&pred, b, &predict_run_on(b, a.split, a.data.as_deref(), device)?)?),
        None => None,
    };
    if a.json {
        // Every metric of the split as it serializes, so that a new metric appears here unasked.
        let mut obj = serde_json::to_value(m)?;
        obj["run"] = a.run.display().to_string().into();
        obj["split"] = a.split.name().into();
        if let (Some(c), Some(b)) = (&cmp, &a.baseline) {
            let mut base = serde_json::to_value(c.baseline)?;
            base["run"] = b.display().to_string().into();
            base["rela_impr"] = c.rela_impr.into();
            base["delong"] = serde_json::to_value(&c.delong)?;
            obj["baseline"] = base;
        }
        println!("{obj}");
        return Ok(());
    }
    let mut t = Table::with_columns(&[
        ("run", "run"),
        ("samples", "samples"),
        ("ctr", "CTR"),
        ("mean_prediction", "mean pred"),
        ("auc", "AUC"),
        ("gauc", "GAUC"),
        ("logloss", "LogLoss"),
        ("ece", "ECE"),
    ]);
    let row = |name: String, m: &attnrec::metrics::SplitMetrics| {
        vec![
            Cell::Text(name),
            Cell::int(m.samples),
            Cell::num(m.positive_rate, 4),
            Cell::num(m.mean_prediction, 4),
            Cell::maybe(m.auc, 4),
            Cell::maybe(m.gauc, 4),
            Cell::num(m.logloss, 4),
            Cell::num(m.ece, 4),
        ]
    };
    t.push(row(a.run.display().to_string(), &m));
    if let (Some(c), Some(b)) = (&cmp, &a.baseline) {
        t.push(row(format!("{} (baseline)", b.display()), &c.baseline));
    }
    let format = a.print.table;
    table_note(format, format!("split: {}", a.split.name()));
    print_table(&t, format);
    if let Some(c) = &cmp {
        let d = &c.delong;
        table_note(
            format,
            format!(
                "AUC difference {:+.4} (95% CI {:+.4} to {:+.4}), DeLong z = {:.2}, p = {:.3e}; RelaImpr {:+.2}%",
                d.diff, d.ci95.0, d.ci95.1, d.z, d.p_value, c.rela_impr
            ),
        );
    }
    Ok(())
}
