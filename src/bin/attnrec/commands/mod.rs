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

/// A plain text table with right-aligned numeric columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).chain([header[c].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(c, s)| if c == 0 { format!("{s:<w$}", w = widths[c]) } else { format!("{s:>w$}", w = widths[c]) })
            .collect();
        println!("{}", parts.join("  "));
    };
    line(header.to_vec());
    println!("{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

pub fn fmt_metric(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.4}"))
}
