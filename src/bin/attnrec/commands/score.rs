//! `attnrec score`: a trained run applied to a candidates file.
use crate::cli::ScoreArgs;
use attnrec::run::{load_run, LoadedRun};
use attnrec::score::{default_history_dir, score_file, score_parts, History, HistoryIndex, Output, PartSlice, ScoreOptions, ScoreSummary};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

pub fn run(a: ScoreArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    if a.batch_size == Some(0) || a.chunk_rows == 0 {
        anyhow::bail!("--batch-size and --chunk-rows must be at least 1");
    }
    if a.top_k == Some(0) {
        anyhow::bail!("--top-k must be at least 1");
    }
    let stdout = a.output.as_os_str() == "-";
    let folder = a.candidates.is_dir();
    if !stdout && a.output == a.candidates {
        let what = if folder { "folder" } else { "file" };
        anyhow::bail!("--output {} is the candidates {what}; choose another path", a.output.display());
    }
    if !folder && (a.parts.is_some() || a.co_partitioned) {
        anyhow::bail!("--parts and --co-partitioned need --candidates to be a folder of parts; {} is not a folder", a.candidates.display());
    }
    if folder && stdout {
        anyhow::bail!("--output -: a folder of candidates is scored into a folder, one part per part; name one");
    }
    let run = load_run(&a.run, Device::Cpu)?;
    let history_dir = a.history.clone().unwrap_or_else(|| default_history_dir(&run));
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
    if folder {
        return score_folder(&a, &run, history_dir, &opts, start);
    }
    let history = HistoryIndex::load(&run, &history_dir)?;
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
        let to = if stdout { "stdout".to_string() } else { a.output.display().to_string() };
        eprintln!("scored {}", done_line(&s, &to, start));
    }
    Ok(())
}

/// A folder of candidate parts into a folder of scored parts.
fn score_folder(a: &ScoreArgs, run: &LoadedRun, history_dir: PathBuf, opts: &ScoreOptions, start: Instant) -> anyhow::Result<()> {
    let history = if a.co_partitioned { History::CoPartitioned(history_dir) } else { History::Whole(history_dir) };
    let slice = a.parts.unwrap_or(PartSlice::ALL);
    let bar = if a.quiet { ProgressBar::hidden() } else { ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()) };
    bar.set_style(ProgressStyle::with_template("scoring part {pos}/{len} {msg} [{elapsed}]").expect("valid template"));
    let started = Instant::now();
    let mut rows_before = 0usize;
    let mut last_done = 0usize;
    let mut last_rows = 0usize;
    let s = score_parts(run, &a.candidates, &a.output, &history, slice, opts, &mut |done, of, rows| {
        if done != last_done {
            rows_before += last_rows;
            last_done = done;
        }
        last_rows = rows;
        bar.set_length(of as u64);
        bar.set_position(done as u64);
        let total = rows_before + rows;
        bar.set_message(format!("{total} rows, {:.0} rows/s", total as f64 / started.elapsed().as_secs_f64().max(1e-9)));
    })?;
    bar.finish_and_clear();
    if !a.quiet {
        eprintln!(
            "scored {} of {} parts ({} already written), {}{}",
            s.scored.len(),
            s.parts,
            s.skipped.len(),
            done_line(&s.total(), &a.output.display().to_string(), start),
            if s.complete { "; every part is written (_SUCCESS)" } else { "" }
        );
    }
    Ok(())
}

/// What a job did, for its closing line: rows, where they went, how fast, what was unknown.
fn done_line(s: &ScoreSummary, to: &str, start: Instant) -> String {
    let secs = start.elapsed().as_secs_f64();
    format!(
        "{} rows, wrote {} to {to} in {secs:.1} s ({:.0} rows/s); unknown users {}, unknown items {}, empty histories {}",
        s.rows,
        s.written,
        s.rows as f64 / secs.max(1e-9),
        s.unknown_users,
        s.unknown_items,
        s.empty_histories
    )
}
