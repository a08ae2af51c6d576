//! Batch scoring: a trained run applied to new (user, item[, timestamp]) candidates, streamed in
//! chunks so that memory stays bounded by the chunk size (and by users × K with `top_k`).
//!
//! Each candidate's history is its user's logged events (clicks only, for a run with `history =
//! "positives"`) strictly before its timestamp (all of the user's events when it has none), in
//! protocol order, cut to the run's `history_len`; time gaps are measured from the timestamp, or
//! from the user's last event when there is none. For a
//! sample of the run's own log this is the protocol's history except where the user has several
//! events with the very same timestamp: the protocol orders those by file position and lets the
//! earlier ones into the history, a timestamp cannot.
//!
//! One module per concern: [`history`] (the user index), [`candidates`] (reading ids), [`topk`],
//! [`workers`] (scoring threads), [`explain`], [`io`] (CSV and Parquet in and out), [`parts`] (a
//! folder of candidate parts scored part by part, resumable and splittable); this file
//! holds the options and the job that ties them together.
mod candidates;
mod explain;
mod history;
pub mod io;
mod parts;
mod topk;
mod workers;

pub use explain::{explain, Attended, Explanation};
pub use history::{default_history_dir, HistoryIndex};
pub use parts::{score_parts, History, PartSlice, PartsSummary, MANIFEST};
pub use candidates::parse_id_token;
pub use workers::TOP_ATTENDED;

use crate::error::{Error, Result};
use crate::features::{Batcher, OOV};
use crate::run::LoadedRun;
use candidates::{column, parse_id, parse_int, Candidate};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use tch::Device;
use topk::TopK;
use workers::Workers;

/// Column names and behavior of one scoring job.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    pub user_col: String,
    pub item_col: String,
    /// The request-time column; used when the header has it.
    pub time_col: String,
    /// Keep each user's best `k` candidates, with their rank.
    pub top_k: Option<usize>,
    /// Also write the logit.
    pub logit: bool,
    /// Unknown users or items are errors instead of out-of-vocabulary.
    pub strict: bool,
    /// Rows per forward pass; `None`: the model's ([`crate::models::ModelConfig::scoring_batch_size`]).
    pub batch_size: Option<usize>,
    /// Candidates read, scored and written per chunk.
    pub chunk_rows: usize,
    /// Add each row's most attended history events (`top_attended`).
    pub explain: bool,
    /// Threads that score whole batches, each with its own copy of the model and one libtorch
    /// thread (0 = one per core). Small per-row matrices scale better this way than with libtorch's
    /// intra-op threads, which synchronize after every operation.
    pub workers: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            user_col: "user_id".into(),
            item_col: "item_id".into(),
            time_col: "timestamp".into(),
            top_k: None,
            logit: false,
            strict: false,
            batch_size: None,
            chunk_rows: 65_536,
            explain: false,
            workers: 0,
        }
    }
}

/// How far a scoring job is: rows scored, and the fraction of the input read (by bytes for CSV,
/// by rows for Parquet), from which a progress bar estimates the time left.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub rows: usize,
    pub read: f64,
}

/// What a scoring job did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScoreSummary {
    pub rows: usize,
    pub written: usize,
    pub unknown_users: usize,
    pub unknown_items: usize,
    /// Rows whose user had no logged event before the request time.
    pub empty_histories: usize,
}

/// Where scores go.
pub enum Output<'a> {
    /// Written to `PATH.partial` and renamed to `PATH` when complete; removed on failure.
    File(&'a Path),
    /// CSV on standard output, as it is produced.
    Stdout,
    /// A part of a partitioned output: as `File`, but written to the hidden `.NAME.partial`, so
    /// that a reader of the folder (Spark, polars) never takes a half-written part for one.
    Part(&'a Path),
}

/// Scores `candidates` (CSV or Parquet) with `run` and writes them, each input column kept, plus
/// `score` (and `logit`; `rank` with `top_k`; `top_attended` with `explain`). The output is
/// Parquet when its name ends in `.parquet` or `.pq`, else CSV. `progress` is called after each
/// chunk.
pub fn score_file(
    run: &LoadedRun,
    history: &HistoryIndex,
    candidates: &Path,
    output: Output,
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ScoreSummary> {
    if opts.explain && !run.config.model.has_target_attention() {
        return Err(Error::run(&run.path, format!("--explain: the {} model has no target attention", run.config.model.name())));
    }
    let (source, header) = io::Source::open(candidates, opts.chunk_rows)?;
    let job = Job::new(run, candidates, &header, opts)?;
    match output {
        Output::Stdout => {
            let stdout = std::io::stdout();
            job.run(history, source, io::Sink::csv(stdout.lock()), Path::new("<stdout>"), progress)
        }
        Output::File(path) | Output::Part(path) => {
            let tmp = match output {
                Output::Part(_) => hidden_partial(path),
                _ => crate::util::partial_path(path),
            };
            let result = (|| {
                let sink = if io::wants_parquet(path) {
                    io::Sink::parquet(&tmp, job.out_names.clone(), job.out_dtypes.clone())?
                } else {
                    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
                    io::Sink::csv(std::io::BufWriter::new(file))
                };
                job.run(history, source, sink, &tmp, progress)
            })()
            .and_then(|s| {
                // On disk before it is named: a crash after the rename never leaves a short file.
                std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
                crate::util::crash_point("score.rename");
                std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
                crate::util::sync_dir(path.parent().unwrap_or(Path::new(".")));
                Ok(s)
            });
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        }
    }
}

/// `DIR/.NAME.partial` for `DIR/NAME`: the hidden name a part is written under until complete.
pub(crate) fn hidden_partial(path: &Path) -> std::path::PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    crate::util::partial_path(&path.with_file_name(name))
}

/// One scoring job: the input's columns and what the output adds.
struct Job<'a> {
    run: &'a LoadedRun,
    candidates: &'a Path,
    opts: &'a ScoreOptions,
    user_col: usize,
    item_col: usize,
    time_col: Option<usize>,
    out_names: Vec<String>,
    out_dtypes: Vec<polars::prelude::DataType>,
}

impl<'a> Job<'a> {
    fn new(run: &'a LoadedRun, candidates: &'a Path, header: &io::Header, opts: &'a ScoreOptions) -> Result<Job<'a>> {
        use polars::prelude::DataType;
        let names = &header.names;
        if names.is_empty() {
            return Err(Error::dataset(candidates, "is empty (expected a header line naming the columns)"));
        }
        let user_col = column(names, &opts.user_col, candidates)?;
        let item_col = column(names, &opts.item_col, candidates)?;
        let time_col = names.iter().position(|h| h == opts.time_col);
        let mut added = vec![("score", DataType::Float64)];
        if opts.logit {
            added.push(("logit", DataType::Float64));
        }
        if opts.top_k.is_some() {
            added.push(("rank", DataType::Int64));
        }
        if opts.explain {
            added.push(("top_attended", DataType::String));
        }
        for (name, _) in &added {
            if names.iter().any(|h| h == *name) {
                return Err(Error::dataset(candidates, format!("already has a column '{name}', which scoring adds")));
            }
        }
        let ints: Vec<usize> = if run.feature_map.string_ids { time_col.into_iter().collect() } else { [Some(user_col), Some(item_col), time_col].into_iter().flatten().collect() };
        let mut out_dtypes = io::output_dtypes(header, &ints);
        let mut out_names: Vec<String> = names.iter().map(str::to_string).collect();
        for (name, dtype) in added {
            out_names.push(name.to_string());
            out_dtypes.push(dtype);
        }
        Ok(Job { run, candidates, opts, user_col, item_col, time_col, out_names, out_dtypes })
    }

    /// Reads `source` chunk by chunk, scores it and writes `sink`.
    fn run<W: Write>(&self, history: &HistoryIndex, mut source: io::Source, mut sink: io::Sink<W>, out_path: &Path, progress: &mut dyn FnMut(Progress)) -> Result<ScoreSummary> {
        let (run, opts, candidates) = (self.run, self.opts, self.candidates);
        let fm = &run.feature_map;
        let header: csv::StringRecord = self.out_names.iter().map(String::as_str).collect();
        sink.header(&header, out_path)?;
        let mut batcher = Batcher::new(&history.encoded, Device::Cpu);
        std::thread::scope(|scope| {
            let pool = Workers::start(scope, run, opts.workers, opts.explain)?;
            let mut summary = ScoreSummary::default();
            let mut top = opts.top_k.map(TopK::new);
            let mut chunk: Vec<Candidate> = Vec::with_capacity(opts.chunk_rows.min(1 << 20));
            let mut done = false;
            while !done {
                chunk.clear();
                while chunk.len() < opts.chunk_rows.max(1) {
                    let Some((record, line)) = source.next_record(candidates)? else {
                        done = true;
                        break;
                    };
                    let user = parse_id(&record, self.user_col, &opts.user_col, candidates, line, fm.string_ids)?;
                    let item = parse_id(&record, self.item_col, &opts.item_col, candidates, line, fm.string_ids)?;
                    let at = match self.time_col {
                        Some(c) if !record.get(c).unwrap_or("").trim().is_empty() => Some(parse_int(&record, c, &opts.time_col, candidates, line)?),
                        _ => None,
                    };
                    let (u, i) = (fm.user.encode(&user), fm.item.encode(&item));
                    if u == OOV {
                        if opts.strict {
                            return Err(Error::parse(candidates, line as usize, format!("unknown user id {user} (not in the run's vocabulary; without --strict it is scored as out-of-vocabulary)")));
                        }
                        summary.unknown_users += 1;
                    }
                    if i == OOV {
                        if opts.strict {
                            return Err(Error::parse(candidates, line as usize, format!("unknown item id {item} (not in the run's vocabulary; without --strict it is scored as out-of-vocabulary)")));
                        }
                        summary.unknown_items += 1;
                    }
                    let row = history.row(fm, user, item, at);
                    if row.history.is_empty() {
                        summary.empty_histories += 1;
                    }
                    chunk.push(Candidate { record, row, user });
                }
                let batch_size = opts.batch_size.unwrap_or_else(|| run.config.model.scoring_batch_size()).max(1);
                let scored = pool.score(&mut batcher, &chunk, batch_size)?;
                for (c, s) in chunk.drain(..).zip(scored) {
                    let score = 1.0 / (1.0 + (-s.logit).exp());
                    let seq = summary.rows;
                    summary.rows += 1;
                    let mut rec = c.record;
                    rec.push_field(&score.to_string());
                    if opts.logit {
                        rec.push_field(&s.logit.to_string());
                    }
                    let attended = s.attended.map(|top| {
                        top.iter()
                            .map(|&(pos, w)| format!("{}:{w:.4}", history.raw_item[history.encoded.history_event(c.row.history.start + pos)]))
                            .collect::<Vec<_>>()
                            .join(";")
                    });
                    match &mut top {
                        None => {
                            if let Some(a) = &attended {
                                rec.push_field(a);
                            }
                            sink.write(&rec, out_path)?;
                            summary.written += 1;
                        }
                        Some(top) => top.push(c.user, score, seq, (rec, attended)),
                    }
                }
                progress(Progress { rows: summary.rows, read: source.fraction_read() });
                crate::util::crash_point("score.batch");
            }
            for (rank, (mut rec, attended)) in top.into_iter().flat_map(TopK::into_ranked) {
                rec.push_field(&rank.to_string());
                if let Some(a) = &attended {
                    rec.push_field(a);
                }
                sink.write(&rec, out_path)?;
                summary.written += 1;
            }
            sink.finish(out_path)?;
            Ok(summary)
        })
    }
}
