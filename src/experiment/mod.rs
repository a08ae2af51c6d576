//! Experiments: one TOML file in `experiments/` that expands into runs (variants or a grid, times
//! seeds), trains each (skipping runs already complete, so an interrupted experiment continues),
//! and tabulates them.
//!
//! ```toml
//! name = "din_vs_base"          # the folder under runs/ [default: the file's stem]
//! seeds = [1, 2, 3]
//! baseline = "base"             # the variant the others are compared with
//!
//! [base]                        # a run config (data, protocol, model, train), as for `train --config`
//! data = { path = "data/synth-small" }
//! model = { kind = "din" }
//!
//! [[variant]]                   # each overrides keys of [base] (with its defaults filled in)
//! name = "base"
//! model = { kind = "base" }     # a table with another `kind` replaces the base's table whole
//!
//! [[variant]]
//! name = "din_softmax"
//! model = { attention = { align = "softmax" } }
//!
//! # and/or a grid: the cartesian product of the listed values (with variants too, every variant
//! # at every point, named `variant,history_len=20,...`)
//! # [grid]
//! # "train.lr" = [0.001, 0.005]
//! # "protocol.history_len" = [20, 50]
//! ```
//!
//! [`file`] reads and expands the file, [`execute`](mod@execute) trains the runs, [`results`]
//! tabulates them (statistics from [`crate::metrics`]) and writes the tables.
mod execute;
mod file;
mod results;

pub use execute::{execute, Failure, Outcome, RunObserver, COMMAND_FILE};
pub use results::{pooled_delong, results_table, tabulate, write_results, VariantResult};

use crate::config::RunConfig;
use std::path::PathBuf;

/// One run of an experiment: a variant at a seed, fully resolved.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub variant: String,
    pub seed: u64,
    pub config: RunConfig,
    /// `runs/<experiment>/<variant>-seed<seed>`.
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Experiment {
    pub name: String,
    pub baseline: Option<String>,
    /// Variant names in file order.
    pub variants: Vec<String>,
    pub runs: Vec<PlannedRun>,
    pub out: PathBuf,
    /// The experiment file, when it was read from one.
    pub file: Option<PathBuf>,
    /// Train every run afresh, replacing complete ones as each new one finishes (`demo`), instead
    /// of skipping complete runs and resuming interrupted ones (an experiment file).
    pub retrain: bool,
}

/// The results of executed runs: the table (with DeLong's p against the baseline), written as
/// `results.csv`, `results.md`, the plots and `report.html` into the experiment's folder; also
/// the report's files.
pub fn conclude(e: &Experiment, outcomes: &[Outcome]) -> crate::Result<(Vec<VariantResult>, Vec<String>)> {
    let mut results = tabulate(e, outcomes);
    for (r, p) in results.iter_mut().zip(pooled_delong(e, outcomes)?) {
        r.delong_p = p;
    }
    write_results(e, outcomes, &results)?;
    let files = crate::report::write(e, outcomes, &results)?;
    Ok((results, files))
}
