//! One file per subcommand.
mod bench;
mod data;
mod demo;
mod eval;
mod experiment;
mod explain;
mod export;
mod score;
mod synth;
mod train;

use crate::cli::{Cli, Command, TrainFlags};
use attnrec::config::RunConfig;
use attnrec::table::{Format as TableFormat, Table};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Export(a) => export::run(a),
        Command::Score(a) => score::run(a),
        Command::Data(c) => data::run(c),
        Command::Run(a) => experiment::run(a),
    }
}

/// `--data DIR` and `--format F`, where given, over a config's `[data]` section.
pub fn override_data(data: &mut attnrec::config::DataConfig, dir: Option<&std::path::Path>, format: Option<attnrec::data::Format>) {
    if let Some(dir) = dir {
        data.path = dir.to_path_buf();
    }
    if format.is_some() {
        data.format = format;
    }
}

/// Applies the flags the user gave to a config; absent flags keep the config's values.
pub fn apply_flags(cfg: &mut RunConfig, f: &TrainFlags) -> anyhow::Result<()> {
    let t = &mut cfg.train;
    if let Some(v) = f.epochs {
        t.epochs = v;
    }
    if let Some(v) = f.batch_size {
        t.batch_size = v;
    }
    if let Some(v) = f.lr {
        t.lr = v;
    }
    if let Some(v) = f.patience {
        t.patience = v;
    }
    if let Some(v) = f.monitor {
        t.monitor = v;
    }
    if let Some(v) = f.eval_every_steps {
        t.eval_every_steps = v;
    }
    if let Some(v) = f.mba_lambda {
        t.mba_lambda = v;
    }
    if let Some(v) = f.prefetch {
        t.prefetch = v;
    }
    if let Some(v) = f.length_buckets {
        t.length_buckets = v;
    }
    if let Some(v) = f.checkpoint_every_steps {
        t.checkpoint_every_steps = v;
    }
    if f.no_fused {
        t.fused = false;
    }
    if let Some(v) = f.threads {
        t.threads = v;
    }
    if let Some(v) = &f.device {
        t.device = v.clone();
    }
    f.protocol.apply(&mut cfg.protocol);
    if let Some(d) = f.embed_dim {
        *cfg.model.embed_dim_mut() = d;
    }
    cfg.validate()?;
    Ok(())
}

/// Prints a results table in the chosen format to stdout.
pub fn print_table(table: &Table, format: TableFormat) {
    print!("{}", table.render(format));
}

/// A line that goes with a table (the dataset, the machine): on stdout above a table for people,
/// on stderr when stdout is a table for machines (CSV, JSON), so that it stays parseable.
pub fn table_note(format: TableFormat, line: impl std::fmt::Display) {
    if format.is_machine() {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}
