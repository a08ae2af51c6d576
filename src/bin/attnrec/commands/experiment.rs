//! `attnrec run FILE`: an experiment file's runs, trained in order, then its results table.
use super::{print_table, table_note};
use attnrec::table::{Cell, Table};
use crate::cli::RunArgs;
use crate::progress::{Mode, Progress};
use attnrec::experiment::{conclude, execute, results_table, Experiment, Outcome};
use attnrec::run::SUMMARY_FILE;
use attnrec::util::partial_path;

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let e = Experiment::from_file(&a.file, &a.runs)?;
    let format = a.print.table;
    if a.dry_run {
        let mut t = Table::with_columns(&[("variant", "variant"), ("seed", "seed"), ("model", "model"), ("folder", "folder"), ("state", "state")]);
        for r in &e.runs {
            let state = if r.dir.join(SUMMARY_FILE).is_file() {
                "complete"
            } else if partial_path(&r.dir).is_dir() {
                "interrupted (will resume)"
            } else {
                "to train"
            };
            t.push(vec![
                Cell::text(&r.variant),
                Cell::int(r.seed),
                Cell::text(r.config.model.name()),
                Cell::text(r.dir.display().to_string()),
                Cell::text(state),
            ]);
        }
        table_note(format, format!("{}: {} runs ({} variants × seeds)", e.name, e.runs.len(), e.variants.len()));
        print_table(&t, format);
        return Ok(());
    }
    let total = e.runs.len();
    let mut progress = Progress::for_runs(&e.name, if a.quiet { Mode::Quiet } else { Mode::Bars }, total);
    let outcomes = execute(&e, &mut progress)?;
    progress.finish();
    for (r, o) in e.runs.iter().zip(&outcomes) {
        if let Outcome::Failed(msg) = o {
            eprintln!("failed: {}: {msg}", r.dir.display());
        }
    }
    let (results, files) = conclude(&e, &outcomes)?;
    print_table(&results_table(&results), format);
    eprintln!("results written to {}: results.csv, results.md, {}", e.out.display(), files.join(", "));
    let failed = outcomes.iter().filter(|o| matches!(o, Outcome::Failed(_))).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {total} runs failed (listed in {}/failed.txt)", e.out.display());
    }
    Ok(())
}
