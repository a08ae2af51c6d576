//! Running an experiment: each planned run trained, resumed or found complete, in order.
use super::{Experiment, PlannedRun};
use crate::error::{Error, Result};
use crate::run::{resume_run, train_run, RunSummary, SUMMARY_FILE};
use crate::train::Observer;
use crate::util::{partial_path, write_atomic};
use std::path::Path;

/// What became of one planned run.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Trained now, or found complete in its folder.
    Done { summary: RunSummary, reused: bool },
    /// Training failed; the error is recorded and the experiment goes on.
    Failed(Failure),
}

/// Why a run failed: the error's one line, and whether it was the computation's own failure
/// ([`Error::is_user_error`] false: a diverged loss) rather than something the user gave.
#[derive(Debug, Clone)]
pub struct Failure {
    pub message: String,
    pub internal: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What the caller of [`execute`] sees: each run's start and end, and its training in between
/// (as an [`Observer`]).
pub trait RunObserver: Observer {
    fn run_start(&mut self, _index: usize, _run: &PlannedRun) {}
    fn run_end(&mut self, _index: usize, _run: &PlannedRun, _outcome: &Outcome) {}
}

impl RunObserver for crate::train::Silent {}

/// Trains every planned run that its folder does not already hold complete, in order; a failed
/// run is recorded with its error (the experiment goes on).
pub fn execute(e: &Experiment, observer: &mut dyn RunObserver) -> Result<Vec<Outcome>> {
    std::fs::create_dir_all(&e.out).map_err(|err| Error::io(&e.out, err))?;
    let mut outcomes = Vec::with_capacity(e.runs.len());
    for (i, run) in e.runs.iter().enumerate() {
        observer.run_start(i, run);
        let outcome = execute_one(e, run, observer)?;
        observer.run_end(i, run, &outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// One planned run: found complete, resumed, or trained.
fn execute_one(e: &Experiment, run: &PlannedRun, observer: &mut dyn RunObserver) -> Result<Outcome> {
    if run.dir.join(SUMMARY_FILE).is_file() && !e.retrain {
        if !run.dir.join(COMMAND_FILE).is_file() {
            write_command(e, run)?;
        }
        return Ok(Outcome::Done { summary: read_summary(&run.dir)?, reused: true });
    }
    // A run interrupted in an earlier attempt continues from its checkpoint.
    let result = if partial_path(&run.dir).is_dir() && !e.retrain {
        resume_run(&run.dir, observer)
    } else {
        train_run(&run.config, &run.dir, e.retrain, observer)
    };
    // The table is always built from summary.json as written, so that a later invocation
    // that finds the run complete tabulates exactly the same numbers.
    Ok(match result.and_then(|_| read_summary(&run.dir)) {
        Ok(summary) => {
            write_command(e, run)?;
            Outcome::Done { summary, reused: false }
        }
        Err(err) => Outcome::Failed(Failure { message: err.to_string(), internal: !err.is_user_error() }),
    })
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
