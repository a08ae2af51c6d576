//! An experiment's results: one row per variant over its seeds, DeLong's test against the
//! baseline on the seed-averaged predictions, and the CSV and Markdown tables.
use super::{Experiment, Outcome};
use crate::error::Result;
use crate::metrics::mean_std;
use crate::run::RunSummary;
use crate::table::{Cell, Column, Format, Table};
use crate::util::write_atomic;
use serde::Serialize;

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

/// The results table: for people (terminal, Markdown, the report) and machines (`results.csv`:
/// mean and std in their own columns, full precision).
pub fn results_table(results: &[VariantResult]) -> Table {
    let mut t = Table::new(vec![
        Column::new("variant", "variant"),
        Column::new("seeds", "seeds"),
        Column::machine_only("failed"),
        Column::new("valid_auc", "valid AUC"),
        Column::new("test_auc", "test AUC"),
        Column::new("test_gauc", "test GAUC"),
        Column::new("test_logloss", "test LogLoss"),
        Column::new("rela_impr_pct", "RelaImpr"),
        Column::new("delong_p", "p (DeLong)"),
        Column::new("samples_per_sec", "samples/s"),
        Column::new("parameters", "parameters"),
        Column::new("wall_seconds", "wall s"),
    ]);
    // Two seeds give a std: the cell says so whatever a seed's metric was (NaN for a missing one).
    let ms = |(mean, std): (f64, f64), n: usize| Cell::MeanStd { mean, std, n, digits: 4 };
    for r in results {
        let seeds = Cell::int(r.seeds);
        t.push(vec![
            Cell::text(&r.variant),
            if r.failed > 0 { seeds.noted(format!("{} failed", r.failed)) } else { seeds },
            Cell::int(r.failed),
            ms(r.valid_auc, r.seeds),
            ms(r.test_auc, r.seeds),
            ms(r.test_gauc, r.seeds),
            ms(r.test_logloss, r.seeds),
            Cell::or_empty(r.rela_impr.map(|x| Cell::Delta { value: x, digits: 2, unit: "%" })),
            Cell::or_empty(r.delong_p.map(Cell::P)),
            Cell::num(r.samples_per_sec, 0),
            Cell::Int(r.parameters),
            Cell::num(r.wall_seconds, 1),
        ]);
    }
    t
}

/// Writes `results.csv` (full precision: mean and std in their own columns) and `results.md`
/// into the experiment folder, and `failed.txt` listing failed runs with their errors.
pub fn write_results(e: &Experiment, outcomes: &[Outcome], results: &[VariantResult]) -> Result<()> {
    let table = results_table(results);
    write_atomic(&e.out.join("results.csv"), table.render(Format::Csv).as_bytes())?;
    let mut md = format!("# {}\n\nMean ± sample std over seeds", e.name);
    if let Some(b) = &e.baseline {
        md.push_str(&format!(
            "; RelaImpr of the mean test AUC against `{b}`; p: DeLong's test of the seed-averaged test predictions against `{b}`'s"
        ));
    }
    md.push_str(".\n\n");
    md.push_str(&table.render(Format::Markdown));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::file::tests::BASE;
    use crate::run::RunSummary;
    use std::path::Path;

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
    fn mean_and_sample_std() {
        assert_eq!(mean_std(&[1.0]), (1.0, 0.0));
        let (m, s) = mean_std(&[1.0, 2.0, 3.0]);
        assert_eq!((m, s), (2.0, 1.0));
    }
}
