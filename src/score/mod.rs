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
pub mod io;

use crate::data::protocol::build_events;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::features::{item_first_genres, Batch, Batcher, Encoded, FeatureMap, Row, OOV};
use crate::run::LoadedRun;
use serde::Serialize;

use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

/// Every user's logged events, encoded with a run's feature map, for looking up histories.
pub struct HistoryIndex {
    encoded: Encoded,
    /// raw user id → range of that user's events (protocol order).
    users: HashMap<i64, Range<usize>>,
    /// raw item id → genre index, from the log's item table.
    item_genre: HashMap<i64, i64>,
    /// Raw item id of every event (for explanations).
    raw_item: Vec<i64>,
}

impl HistoryIndex {
    /// Loads the log in `dir` (any supported layout) and encodes it with `run`'s feature map.
    pub fn load(run: &LoadedRun, dir: &Path) -> Result<HistoryIndex> {
        let ds = Dataset::open(&run.config.data.at(dir))?;
        let events = build_events(&ds, &run.config.protocol)?;
        let genres = item_first_genres(&ds)?;
        let encoded = run.feature_map.encode(&events, &genres);
        let mut users = HashMap::new();
        let mut k = 0;
        while k < events.len() {
            let start = events.user_start[k] as usize;
            let mut end = k + 1;
            while end < events.len() && events.user_start[end] as usize == start {
                end += 1;
            }
            users.insert(events.user[start], start..end);
            k = end;
        }
        let item_genre = genres
            .iter()
            .map(|(&item, g)| (item, if g.is_empty() { OOV } else { run.feature_map.genre.encode(g) }))
            .collect();
        Ok(HistoryIndex { encoded, users, item_genre, raw_item: events.item })
    }

    /// The model input of the candidate (`user`, `item`) requested at `at` (see [`Self::history`]).
    pub fn row(&self, fm: &FeatureMap, user: i64, item: i64, at: Option<i64>) -> Row {
        let (history, timestamp) = self.history(user, at);
        Row {
            user: fm.user.encode(&user),
            item: fm.item.encode(&item),
            genre: self.item_genre.get(&item).copied().unwrap_or(OOV),
            history,
            timestamp,
            known_before: at.unwrap_or(i64::MAX),
            user_side: fm.user_side.as_ref().map_or(0, |t| t.row(user)),
            item_side: fm.item_side.as_ref().map_or(0, |t| t.row(item)),
            label: 0.0,
        }
    }

    /// The history of `user` for a request at `at`: its last `history_len` events (or clicks,
    /// under `history = "positives"`) strictly before `at` (all of them when `at` is `None`), as
    /// history positions; empty for a user without events. Also the request's time, from which
    /// time gaps are measured: `at`, or the user's last event when it is `None`.
    pub fn history(&self, user: i64, at: Option<i64>) -> (Range<usize>, i64) {
        let Some(r) = self.users.get(&user) else { return (0..0, at.unwrap_or(0)) };
        let ts = &self.encoded.timestamp;
        let end = match at {
            Some(t) => r.start + ts[r.clone()].partition_point(|&x| x < t),
            None => r.end,
        };
        (self.encoded.history_between(r.start, end), at.unwrap_or(ts[r.end - 1]))
    }
}

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
    pub batch_size: usize,
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
            batch_size: 128,
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
        Output::File(path) => {
            let tmp = crate::util::partial_path(path);
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

struct Candidate {
    record: csv::StringRecord,
    row: Row,
    user: i64,
}

/// A kept top-k entry, ordered so that a max-heap pops the worst: lower score, then later row.
struct Ranked {
    score: f64,
    seq: usize,
    record: csv::StringRecord,
    /// `top_attended` with `--explain`, written after the rank.
    attended: Option<String>,
}
impl PartialEq for Ranked {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ranked {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        o.score.total_cmp(&self.score).then(self.seq.cmp(&o.seq))
    }
}

fn column(headers: &csv::StringRecord, name: &str, path: &Path) -> Result<usize> {
    headers.iter().position(|h| h == name).ok_or_else(|| {
        let have: Vec<&str> = headers.iter().collect();
        Error::dataset(path, format!("no column '{name}' in the header (columns: {})", have.join(", ")))
    })
}

fn parse_int(record: &csv::StringRecord, col: usize, name: &str, path: &Path, line: u64) -> Result<i64> {
    let v = record.get(col).unwrap_or("").trim();
    v.parse::<i64>().map_err(|_| Error::parse(path, line as usize, format!("column '{name}': '{v}' is not an integer")))
}

/// A user or item id as written: a token for a run whose dataset has string ids, else an integer
/// (`None` when it is not one).
pub fn parse_id_token(v: &str, string_ids: bool) -> Option<i64> {
    let v = v.trim();
    match (string_ids, v.parse::<i64>()) {
        (true, _) if !v.is_empty() => Some(crate::data::token_id(v)),
        (false, Ok(id)) => Some(id),
        _ => None,
    }
}

/// A candidate's user or item id (see [`parse_id_token`]).
fn parse_id(record: &csv::StringRecord, col: usize, name: &str, path: &Path, line: u64, tokens: bool) -> Result<i64> {
    let v = record.get(col).unwrap_or("").trim();
    parse_id_token(v, tokens).ok_or_else(|| {
        Error::parse(path, line as usize, format!("column '{name}': '{v}' is not an integer id (the run's dataset has integer ids)"))
    })
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
            // Top-k: per user (in order of first appearance) a heap of its best k so far.
            let mut top: Vec<BinaryHeap<Ranked>> = Vec::new();
            let mut top_slot: HashMap<i64, usize> = HashMap::new();
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
                let scored = pool.score(&mut batcher, &chunk, opts.batch_size.max(1))?;
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
                    match opts.top_k {
                        None => {
                            if let Some(a) = &attended {
                                rec.push_field(a);
                            }
                            sink.write(&rec, out_path)?;
                            summary.written += 1;
                        }
                        Some(k) => {
                            let slot = *top_slot.entry(c.user).or_insert_with(|| {
                                top.push(BinaryHeap::new());
                                top.len() - 1
                            });
                            let heap = &mut top[slot];
                            heap.push(Ranked { score, seq, record: rec, attended });
                            if heap.len() > k {
                                heap.pop();
                            }
                        }
                    }
                }
                progress(Progress { rows: summary.rows, read: source.fraction_read() });
                crate::util::crash_point("score.batch");
            }
            for heap in top {
                for (rank, r) in heap.into_sorted_vec().into_iter().enumerate() {
                    let mut rec = r.record;
                    rec.push_field(&(rank + 1).to_string());
                    if let Some(a) = &r.attended {
                        rec.push_field(a);
                    }
                    sink.write(&rec, out_path)?;
                    summary.written += 1;
                }
            }
            sink.finish(out_path)?;
            Ok(summary)
        })
    }
}

/// A row's logit and, when asked, its most attended history events: (position in the row's
/// history, weight averaged over heads), largest |weight| first, at most [`TOP_ATTENDED`].
struct Scored {
    logit: f64,
    attended: Option<Vec<(usize, f64)>>,
}

/// History events listed per row by `score --explain`.
pub const TOP_ATTENDED: usize = 3;

/// Threads that each own a copy of a run's model and turn batches into logits.
struct Workers {
    jobs: Option<std::sync::mpsc::SyncSender<(usize, Batch)>>,
    /// Each batch's rows, or the message of the panic that scoring it raised.
    results: std::sync::mpsc::Receiver<(usize, std::result::Result<Vec<Scored>, String>)>,
    /// One libtorch thread per worker while they live; the caller's count comes back after.
    _threads: crate::device::ThreadsFor,
}

/// What one worker does with a batch.
type Scorer = Box<dyn Fn(&Batch) -> Vec<Scored> + Send>;

/// The logits of `batch` and, with `explain`, each row's top attended positions.
fn score_batch(model: &dyn crate::models::CtrModel, batch: &Batch, explain: bool) -> Vec<Scored> {
    tch::no_grad(|| {
        let logits = Vec::<f64>::try_from(model.forward_t(batch, false).to_kind(Kind::Double)).expect("a 1-d double tensor converts to Vec<f64>");
        let attended = if explain { crate::models::attention_weights(model, batch) } else { None };
        logits
            .iter()
            .enumerate()
            .map(|(r, &logit)| Scored {
                logit,
                attended: attended.as_ref().map(|rows| {
                    let mut top: Vec<(usize, f64)> = rows[r].mean().into_iter().enumerate().collect();
                    top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
                    top.truncate(TOP_ATTENDED);
                    top
                }),
            })
            .collect()
    })
}

impl Workers {
    /// `n` workers (0 = one per core), each with one libtorch thread and its own copy of the model.
    fn start<'s>(scope: &'s std::thread::Scope<'s, '_>, run: &LoadedRun, n: usize, explain: bool) -> Result<Workers> {
        Workers::start_with(scope, n, || {
            let mut vs = tch::nn::VarStore::new(Device::Cpu);
            let model = run.config.model.build(vs.root(), &run.feature_map)?;
            vs.copy(&run.vs).map_err(|e| Error::run(&run.path, format!("copying the model for a scoring thread: {e}")))?;
            Ok(Box::new(move |batch: &Batch| {
                let _vs = &vs;
                score_batch(model.as_ref(), batch, explain)
            }))
        })
    }

    /// `n` workers (0 = one per core), each scoring with what `scorer` builds for it. A worker
    /// whose scoring panics reports it as its batch's result, so the caller stops with an error
    /// instead of waiting forever for that batch.
    fn start_with<'s>(scope: &'s std::thread::Scope<'s, '_>, n: usize, scorer: impl Fn() -> Result<Scorer>) -> Result<Workers> {
        let n = if n == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { n };
        let threads = crate::device::ThreadsFor::set(1);
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<(usize, Batch)>(2 * n);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (res_tx, res_rx) = std::sync::mpsc::channel();
        for _ in 0..n {
            let score = scorer()?;
            let (job_rx, res_tx) = (job_rx.clone(), res_tx.clone());
            scope.spawn(move || {
                crate::device::flush_denormals();
                loop {
                    let job = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((seq, batch))) = job else { break };
                    let scored = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| score(&batch))).map_err(|p| {
                        p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "no message".into())
                    });
                    let failed = scored.is_err();
                    if res_tx.send((seq, scored)).is_err() || failed {
                        break;
                    }
                }
            });
        }
        Ok(Workers { jobs: Some(job_tx), results: res_rx, _threads: threads })
    }

    /// The next batch's rows from any worker: `(batch number, rows)`.
    fn next(&self) -> Result<(usize, Vec<Scored>)> {
        match self.results.recv() {
            Ok((k, Ok(rows))) => Ok((k, rows)),
            Ok((k, Err(msg))) => Err(Error::internal(format!("a scoring thread failed on batch {k}: {msg}"))),
            Err(_) => Err(Error::internal("a scoring thread stopped unexpectedly")),
        }
    }

    /// The rows of `candidates` scored in order, `batch_size` rows at a time across the workers.
    fn score(&self, batcher: &mut Batcher, candidates: &[Candidate], batch_size: usize) -> Result<Vec<Scored>> {
        let parts: Vec<&[Candidate]> = candidates.chunks(batch_size).collect();
        self.score_batches(parts.len(), |k| batcher.batch_with(parts[k].len(), |r| parts[k][r].row.clone()))
    }

    /// Batches `0..n` (built by `batch` as they are sent) scored across the workers, their rows
    /// in batch order.
    fn score_batches(&self, n: usize, mut batch: impl FnMut(usize) -> Batch) -> Result<Vec<Scored>> {
        let jobs = self.jobs.as_ref().expect("workers are running");
        let mut out: Vec<Option<Vec<Scored>>> = (0..n).map(|_| None).collect();
        let (mut sent, mut received) = (0, 0);
        let lost = || Error::internal("a scoring thread stopped unexpectedly");
        // Keep every worker busy: send while the queue takes batches, collect as results arrive.
        while received < n {
            if sent < n {
                match jobs.try_send((sent, batch(sent))) {
                    Ok(()) => {
                        sent += 1;
                        continue;
                    }
                    Err(std::sync::mpsc::TrySendError::Full((seq, b))) => {
                        // Wait for one result, then send this batch.
                        let (k, l) = self.next()?;
                        out[k] = Some(l);
                        received += 1;
                        jobs.send((seq, b)).map_err(|_| lost())?;
                        sent += 1;
                        continue;
                    }
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(lost()),
                }
            }
            let (k, l) = self.next()?;
            out[k] = Some(l);
            received += 1;
        }
        Ok(out.into_iter().flat_map(|l| l.expect("every batch was scored")).collect())
    }
}

impl Drop for Workers {
    /// Closing the queue ends the workers' loops (the scope joins them).
    fn drop(&mut self) {
        self.jobs.take();
    }
}

/// Default history source of a run: the dataset it was trained on.
pub fn default_history_dir(run: &LoadedRun) -> PathBuf {
    run.config.data.path.clone()
}

/// Why a run scores a (user, item) pair as it does: the user's history with the weight the model's
/// target attention gives each event, per head, and for self-attention models the history ×
/// history weights of the last block, per head.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub model: String,
    pub user: i64,
    pub item: i64,
    pub at: Option<i64>,
    pub score: f64,
    pub heads: usize,
    /// Oldest first.
    pub history: Vec<Attended>,
    /// `[head][query][key]` over the history events (oldest first) and, for BST, the target last;
    /// empty for models without self-attention.
    pub self_attention: Vec<Vec<Vec<f64>>>,
    /// Names of the self-attention positions: the history items, then `target` for BST.
    pub self_attention_positions: Vec<String>,
}

/// One history event and its attention weight.
#[derive(Debug, Clone, Serialize)]
pub struct Attended {
    pub item: i64,
    pub timestamp: i64,
    pub clicked: bool,
    /// The mean over heads.
    pub weight: f64,
    /// One per head.
    pub head_weights: Vec<f64>,
}

fn to_f64(t: &tch::Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape([-1])).expect("a double tensor converts to Vec<f64>")
}

/// Explains `run`'s score of (`user`, `item`) requested at `at`, with the history `history` gives.
pub fn explain(run: &LoadedRun, history: &HistoryIndex, user: i64, item: i64, at: Option<i64>) -> Result<Explanation> {
    let row = history.row(&run.feature_map, user, item, at);
    let events: Vec<usize> = row.history.clone().map(|j| history.encoded.history_event(j)).collect();
    let b = Batcher::new(&history.encoded, Device::Cpu).batch_rows(std::slice::from_ref(&row));
    let (logit, self_w) = tch::no_grad(|| (run.model.forward_t(&b, false).double_value(&[0]), run.model.self_attention(&b)));
    let model = run.config.model.name().to_string();
    let row = crate::models::attention_weights(run.model.as_ref(), &b)
        .and_then(|mut rows| rows.pop())
        .ok_or_else(|| Error::run(&run.path, format!("the {model} model has no target attention to explain")))?;
    let heads = row.heads.len();
    let mean = row.mean();
    let history_rows = events
        .iter()
        .enumerate()
        .map(|(c, &e)| Attended {
            item: history.raw_item[e],
            timestamp: history.encoded.timestamp[e],
            clicked: history.encoded.label[e] > 0.5,
            weight: mean[c],
            head_weights: row.heads.iter().map(|w| w[c]).collect(),
        })
        .collect();
    // Histories are right-aligned in the batch: the events fill its last columns.
    let width = b.hist_mask.size()[1] as usize;
    let off = width - events.len();
    let (mut self_attention, mut positions) = (Vec::new(), Vec::new());
    if let Some(sw) = self_w {
        // [1, H, T, T] with T = W (history) or W + 1 (history, target): keep the present positions.
        let (sh, t) = (sw.size()[1] as usize, sw.size()[2] as usize);
        let v = to_f64(&sw);
        let present: Vec<usize> = (off..width).chain(if t > width { Some(width) } else { None }).collect();
        positions = events.iter().map(|&e| history.raw_item[e].to_string()).collect();
        if t > width {
            positions.push("target".into());
        }
        self_attention = (0..sh)
            .map(|h| present.iter().map(|&q| present.iter().map(|&k| v[(h * t + q) * t + k]).collect()).collect())
            .collect();
    }
    Ok(Explanation {
        model,
        user,
        item,
        at,
        score: 1.0 / (1.0 + (-logit).exp()),
        heads,
        history: history_rows,
        self_attention,
        self_attention_positions: positions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    /// A batch of `rows` rows (only its size matters to the scorers here).
    fn batch(rows: i64) -> Batch {
        let ids = || Tensor::zeros([rows], (Kind::Int64, Device::Cpu));
        let hist = || Tensor::zeros([rows, 1], (Kind::Int64, Device::Cpu));
        Batch {
            user: ids(),
            item: ids(),
            genre: ids(),
            hist_item: hist(),
            hist_genre: hist(),
            hist_gap: hist(),
            hist_feedback: hist(),
            hist_mask: hist().to_kind(Kind::Bool),
            user_side: ids(),
            item_side: ids(),
            hist_item_side: hist(),
            label: Tensor::zeros([rows], (Kind::Float, Device::Cpu)),
            negatives: None,
        }
    }

    /// Rows come back in batch order whatever worker scored them; a worker that panics on one
    /// batch ends the scoring with an error that says so, instead of a hang.
    /// libtorch's thread count is process-wide: the tests that start workers take turns.
    static POOL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn rows_keep_their_order_and_a_panicking_worker_is_an_error() {
        let _turn = POOL.lock().unwrap_or_else(|e| e.into_inner());
        let scorer = |fail_on: i64| {
            move || -> Result<Scorer> {
                Ok(Box::new(move |b: &Batch| {
                    let rows = b.size();
                    assert!(rows != fail_on, "scoring failed on purpose");
                    (0..rows).map(|r| Scored { logit: (rows * 100 + r) as f64, attended: None }).collect()
                }))
            }
        };
        let sizes = [1i64, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let got = std::thread::scope(|scope| {
            let pool = Workers::start_with(scope, 3, scorer(-1)).unwrap();
            pool.score_batches(sizes.len(), |k| batch(sizes[k])).unwrap()
        });
        let want: Vec<f64> = sizes.iter().flat_map(|&n| (0..n).map(move |r| (n * 100 + r) as f64)).collect();
        assert_eq!(got.iter().map(|s| s.logit).collect::<Vec<_>>(), want);
        let err = std::thread::scope(|scope| {
            let pool = Workers::start_with(scope, 3, scorer(4)).unwrap();
            pool.score_batches(sizes.len(), |k| batch(sizes[k])).err().expect("scoring fails")
        });
        assert!(err.to_string().contains("failed on batch 3: scoring failed on purpose"), "{err}");
    }

    /// The workers score with one libtorch thread each, and the caller's count is back after, so
    /// a library user who scores and then trains does not train on one thread.
    #[test]
    fn workers_use_one_thread_and_give_the_count_back() {
        let _turn = POOL.lock().unwrap_or_else(|e| e.into_inner());
        crate::device::set_threads(3);
        let seen = std::thread::scope(|scope| {
            let pool = Workers::start_with(scope, 2, || -> Result<Scorer> {
                Ok(Box::new(|b: &Batch| (0..b.size()).map(|_| Scored { logit: tch::get_num_threads() as f64, attended: None }).collect()))
            })
            .unwrap();
            pool.score_batches(4, |_| batch(2)).unwrap()
        });
        assert!(seen.iter().all(|s| s.logit == 1.0), "{:?}", seen.iter().map(|s| s.logit).collect::<Vec<_>>());
        assert_eq!(tch::get_num_threads(), 3);
    }
}
