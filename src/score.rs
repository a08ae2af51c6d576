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
            workers: 0,
        }
    }
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

/// Scores the CSV `candidates` with `run` and writes them, each input column kept, plus `score`
/// (and `logit`; and `rank` with `top_k`). `progress` is called with the rows done so far.
pub fn score_csv(
    run: &LoadedRun,
    history: &HistoryIndex,
    candidates: &Path,
    output: Output,
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<ScoreSummary> {
    match output {
        Output::Stdout => {
            let stdout = std::io::stdout();
            score_into(run, history, candidates, stdout.lock(), Path::new("<stdout>"), opts, progress)
        }
        Output::File(path) => {
            let tmp = crate::util::partial_path(path);
            let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
            let result = score_into(run, history, candidates, std::io::BufWriter::new(file), &tmp, opts, progress)
                .and_then(|s| std::fs::rename(&tmp, path).map(|_| s).map_err(|e| Error::io(path, e)));
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
    logit: f64,
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

#[allow(clippy::too_many_arguments)]
fn score_into<W: Write>(
    run: &LoadedRun,
    history: &HistoryIndex,
    candidates: &Path,
    out: W,
    out_path: &Path,
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<ScoreSummary> {
    let csv_err = |path: &Path, e: csv::Error| {
        let line = e.position().map_or(0, |p| p.line() as usize);
        let msg = match e.kind() {
            csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                format!("{len} fields where the header has {expected_len}")
            }
            csv::ErrorKind::Io(io) => io.to_string(),
            csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
            _ => e.to_string(),
        };
        Error::parse(path, line, msg)
    };
    let file = std::fs::File::open(candidates).map_err(|e| Error::io(candidates, e))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(std::io::BufReader::new(file));
    let headers = reader.headers().map_err(|e| csv_err(candidates, e))?.clone();
    if headers.is_empty() {
        return Err(Error::dataset(candidates, "is empty (expected a header line naming the columns)"));
    }
    let user_col = column(&headers, &opts.user_col, candidates)?;
    let item_col = column(&headers, &opts.item_col, candidates)?;
    let time_col = headers.iter().position(|h| h == opts.time_col);
    let mut added = vec!["score"];
    if opts.logit {
        added.push("logit");
    }
    if opts.top_k.is_some() {
        added.push("rank");
    }
    for name in &added {
        if headers.iter().any(|h| h == *name) {
            return Err(Error::dataset(candidates, format!("already has a column '{name}', which scoring adds")));
        }
    }
    let mut writer = csv::Writer::from_writer(out);
    let mut header_out = headers.clone();
    added.iter().for_each(|h| header_out.push_field(h));
    writer.write_record(&header_out).map_err(|e| csv_err(out_path, e))?;

    let fm = &run.feature_map;
    let mut batcher = Batcher::new(&history.encoded, Device::Cpu);
    std::thread::scope(|scope| {
    let pool = Workers::start(scope, run, opts.workers)?;
    let mut summary = ScoreSummary::default();
    // Top-k: per user (in order of first appearance) a heap of its best k so far.
    let mut top: Vec<BinaryHeap<Ranked>> = Vec::new();
    let mut top_slot: HashMap<i64, usize> = HashMap::new();
    let mut chunk: Vec<Candidate> = Vec::with_capacity(opts.chunk_rows.min(1 << 20));
    let mut records = reader.into_records();
    let mut done = false;
    while !done {
        chunk.clear();
        while chunk.len() < opts.chunk_rows.max(1) {
            let Some(rec) = records.next() else {
                done = true;
                break;
            };
            let record = rec.map_err(|e| csv_err(candidates, e))?;
            let line = record.position().map_or(0, |p| p.line());
            let user = parse_id(&record, user_col, &opts.user_col, candidates, line, fm.string_ids)?;
            let item = parse_id(&record, item_col, &opts.item_col, candidates, line, fm.string_ids)?;
            let at = match time_col {
                Some(c) if !record.get(c).unwrap_or("").trim().is_empty() => {
                    Some(parse_int(&record, c, &opts.time_col, candidates, line)?)
                }
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
        let rows: Vec<Row> = chunk.iter().map(|c| c.row.clone()).collect();
        let logits = pool.logits(&mut batcher, &rows, opts.batch_size.max(1))?;
        for (c, &logit) in chunk.drain(..).zip(&logits) {
            let score = 1.0 / (1.0 + (-logit).exp());
            let seq = summary.rows;
            summary.rows += 1;
            match opts.top_k {
                None => {
                    let mut rec = c.record;
                    rec.push_field(&score.to_string());
                    if opts.logit {
                        rec.push_field(&logit.to_string());
                    }
                    writer.write_record(&rec).map_err(|e| csv_err(out_path, e))?;
                    summary.written += 1;
                }
                Some(k) => {
                    let slot = *top_slot.entry(c.user).or_insert_with(|| {
                        top.push(BinaryHeap::new());
                        top.len() - 1
                    });
                    let heap = &mut top[slot];
                    heap.push(Ranked { score, seq, record: c.record, logit });
                    if heap.len() > k {
                        heap.pop();
                    }
                }
            }
        }
        progress(summary.rows);
    }
    for heap in top {
        for (rank, r) in heap.into_sorted_vec().into_iter().enumerate() {
            let mut rec = r.record;
            rec.push_field(&r.score.to_string());
            if opts.logit {
                rec.push_field(&r.logit.to_string());
            }
            rec.push_field(&(rank + 1).to_string());
            writer.write_record(&rec).map_err(|e| csv_err(out_path, e))?;
            summary.written += 1;
        }
    }
    writer.flush().map_err(|e| Error::io(out_path, e))?;
    Ok(summary)
    })
}

/// Threads that each own a copy of a run's model and turn batches into logits.
struct Workers {
    jobs: Option<std::sync::mpsc::SyncSender<(usize, Batch)>>,
    results: std::sync::mpsc::Receiver<(usize, Vec<f64>)>,
}

impl Workers {
    /// `n` workers (0 = one per core), each with one libtorch thread.
    fn start<'s>(scope: &'s std::thread::Scope<'s, '_>, run: &LoadedRun, n: usize) -> Result<Workers> {
        let n = if n == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { n };
        crate::device::set_threads(1);
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<(usize, Batch)>(2 * n);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (res_tx, res_rx) = std::sync::mpsc::channel();
        for _ in 0..n {
            let mut vs = tch::nn::VarStore::new(Device::Cpu);
            let model = run.config.model.build(vs.root(), &run.feature_map)?;
            vs.copy(&run.vs).map_err(|e| Error::run(&run.path, format!("copying the model for a scoring thread: {e}")))?;
            let (job_rx, res_tx) = (job_rx.clone(), res_tx.clone());
            scope.spawn(move || {
                let _vs = vs;
                loop {
                    let job = job_rx.lock().map(|rx| rx.recv());
                    let Ok(Ok((seq, batch))) = job else { break };
                    let l = tch::no_grad(|| model.forward_t(&batch, false).to_kind(Kind::Double));
                    let l = Vec::<f64>::try_from(&l).expect("a 1-d double tensor converts to Vec<f64>");
                    if res_tx.send((seq, l)).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Workers { jobs: Some(job_tx), results: res_rx })
    }

    /// The logits of `rows`, in order, scored `batch_size` rows at a time across the workers.
    fn logits(&self, batcher: &mut Batcher, rows: &[Row], batch_size: usize) -> Result<Vec<f64>> {
        let jobs = self.jobs.as_ref().expect("workers are running");
        let parts: Vec<&[Row]> = rows.chunks(batch_size).collect();
        let mut out: Vec<Option<Vec<f64>>> = vec![None; parts.len()];
        let (mut sent, mut received) = (0, 0);
        let lost = || Error::config("a scoring thread stopped unexpectedly");
        // Keep every worker busy: send while the queue takes batches, collect as results arrive.
        while received < parts.len() {
            if sent < parts.len() {
                match jobs.try_send((sent, batcher.batch_rows(parts[sent]))) {
                    Ok(()) => {
                        sent += 1;
                        continue;
                    }
                    Err(std::sync::mpsc::TrySendError::Full((seq, batch))) => {
                        // Wait for one result, then retry this batch.
                        let (k, l) = self.results.recv().map_err(|_| lost())?;
                        out[k] = Some(l);
                        received += 1;
                        jobs.send((seq, batch)).map_err(|_| lost())?;
                        sent += 1;
                        continue;
                    }
                    Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(lost()),
                }
            }
            let (k, l) = self.results.recv().map_err(|_| lost())?;
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
    let (logit, weights, self_w) = tch::no_grad(|| {
        (run.model.forward_t(&b, false).double_value(&[0]), run.model.attention(&b), run.model.self_attention(&b))
    });
    let model = run.config.model.name().to_string();
    let weights = weights.ok_or_else(|| Error::run(&run.path, format!("the {model} model has no target attention to explain")))?;
    // [1, H, W]; histories are right-aligned in the batch: the events fill its last columns.
    let (heads, width) = (weights.size()[1] as usize, weights.size()[2] as usize);
    let w = to_f64(&weights);
    let off = width - events.len();
    let history_rows = events
        .iter()
        .enumerate()
        .map(|(c, &e)| {
            let head_weights: Vec<f64> = (0..heads).map(|h| w[h * width + off + c]).collect();
            Attended {
                item: history.raw_item[e],
                timestamp: history.encoded.timestamp[e],
                clicked: history.encoded.label[e] > 0.5,
                weight: head_weights.iter().sum::<f64>() / heads as f64,
                head_weights,
            }
        })
        .collect();
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
