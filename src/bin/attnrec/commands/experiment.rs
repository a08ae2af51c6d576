//! `attnrec run FILE`: an experiment file's runs, trained in order, then its results table.
use super::print_table;
use crate::cli::RunArgs;
use crate::progress::{Mode, Progress};
use attnrec::experiment::{display_rows, execute, pooled_delong, tabulate, write_results, Experiment, Outcome};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use attnrec::run::SUMMARY_FILE;
use attnrec::util::partial_path;

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let e = Experiment::from_file(&a.file, &a.runs)?;
    if a.dry_run {
        let rows: Vec<Vec<String>> = e
            .runs
            .iter()
            .map(|r| {
                let state = if r.dir.join(SUMMARY_FILE).is_file() {
                    "complete"
                } else if partial_path(&r.dir).is_dir() {
                    "interrupted (will resume)"
                } else {
                    "to train"
                };
                vec![r.variant.clone(), r.seed.to_string(), r.config.model.name().to_string(), r.dir.display().to_string(), state.into()]
            })
            .collect();
        println!("{}: {} runs ({} variants × seeds)", e.name, e.runs.len(), e.variants.len());
        print_table(&["variant", "seed", "model", "folder", "state"], &rows);
        return Ok(());
    }
    let total = e.runs.len();
    let mode = if a.quiet { Mode::Quiet } else { Mode::Bars };
    // One bar over the runs, the run in progress's epoch bars below it.
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let overall = multi.add(ProgressBar::new(total as u64));
    overall.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} runs, {elapsed} elapsed, eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    overall.set_prefix(e.name.clone());
    if a.quiet {
        overall.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut progress = Progress::new(e.name.clone(), mode).in_multi(multi.clone());
    let outcomes = execute(&e, &mut progress, &mut |i, r| {
        overall.set_position(i as u64);
        if !a.quiet {
            multi.suspend(|| eprintln!("[{}/{total}] {} seed {} → {}", i + 1, r.variant, r.seed, r.dir.display()));
        }
    })?;
    overall.finish_and_clear();
    for (r, o) in e.runs.iter().zip(&outcomes) {
        if let Outcome::Failed(msg) = o {
            eprintln!("failed: {}: {msg}", r.dir.display());
        }
    }
    let mut results = tabulate(&e, &outcomes);
    for (r, p) in results.iter_mut().zip(pooled_delong(&e, &outcomes)?) {
        r.delong_p = p;
    }
    write_results(&e, &outcomes, &results)?;
    let files = attnrec::report::write(&e, &outcomes, &results)?;
    let (header, rows) = display_rows(&results);
    print_table(&header, &rows);
    eprintln!("results written to {}: results.csv, results.md, {}", e.out.display(), files.join(", "));
    let failed = outcomes.iter().filter(|o| matches!(o, Outcome::Failed(_))).count();
    if failed > 0 {
        anyhow::bail!("{failed} of {total} runs failed (listed in {}/failed.txt)", e.out.display());
    }
    Ok(())
}
