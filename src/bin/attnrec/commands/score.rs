//! `attnrec score`: a trained run applied to a candidates file.
use crate::cli::ScoreArgs;
use attnrec::run::load_run;
use attnrec::score::{default_history_dir, score_file, HistoryIndex, Output, ScoreOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::Path;
use std::time::Instant;
use tch::Device;

pub fn run(a: ScoreArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    if a.batch_size == 0 || a.chunk_rows == 0 {
        anyhow::bail!("--batch-size and --chunk-rows must be at least 1");
    }
    if a.top_k == Some(0) {
        anyhow::bail!("--top-k must be at least 1");
    }
    let stdout = a.output.as_os_str() == "-";
    if !stdout && a.output == a.candidates {
        anyhow::bail!("--output {} is the candidates file; choose another path", a.output.display());
    }
    let run = load_run(&a.run, Device::Cpu)?;
    let history_dir = a.history.clone().unwrap_or_else(|| default_history_dir(&run));
    let history = HistoryIndex::load(&run, &history_dir)?;
    let opts = ScoreOptions {
        user_col: a.user_col.clone(),
        item_col: a.item_col.clone(),
        time_col: a.time_col.clone(),
        top_k: a.top_k,
        logit: a.logit,
        strict: a.strict,
        batch_size: a.batch_size,
        chunk_rows: a.chunk_rows,
        explain: a.explain,
        workers: a.threads,
    };
    // Position in thousandths of the input read, so the bar can estimate the time left.
    let bar = if a.quiet { ProgressBar::hidden() } else { ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr()) };
    bar.set_style(ProgressStyle::with_template("scoring [{bar:30}] {percent:>3}% {msg} ETA {eta}").expect("valid template"));
    let started = Instant::now();
    let output = if stdout { Output::Stdout } else { Output::File(Path::new(&a.output)) };
    let s = score_file(&run, &history, &a.candidates, output, &opts, &mut |p| {
        let rate = p.rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("{} rows, {rate:.0} rows/s", p.rows));
        bar.set_position((p.read * 1000.0).round() as u64);
    })?;
    bar.finish_and_clear();
    if !a.quiet {
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "scored {} rows, wrote {} to {} in {secs:.1} s ({:.0} rows/s); unknown users {}, unknown items {}, empty histories {}",
            s.rows,
            s.written,
            if stdout { "stdout".to_string() } else { a.output.display().to_string() },
            s.rows as f64 / secs.max(1e-9),
            s.unknown_users,
            s.unknown_items,
            s.empty_histories
        );
    }
    Ok(())
}
