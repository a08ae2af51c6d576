//! Scoring threads: each owns a copy of the run's model and one libtorch thread, and turns whole
//! batches into logits (and, with `--explain`, each row's most attended history events). Small
//! per-row matrices scale better this way than with libtorch's intra-op threads.
use super::candidates::Candidate;
use crate::error::{Error, Result};
use crate::features::{Batch, Batcher};
use crate::run::LoadedRun;
use tch::{Device, Kind};

/// A row's logit and, when asked, its most attended history events: (position in the row's
/// history, weight averaged over heads), largest |weight| first, at most [`TOP_ATTENDED`].
pub(super) struct Scored {
    pub logit: f64,
    pub attended: Option<Vec<(usize, f64)>>,
}

/// History events listed per row by `score --explain`.
pub const TOP_ATTENDED: usize = 3;

/// Threads that each own a copy of a run's model and turn batches into logits.
pub(super) struct Workers {
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
    pub fn start<'s>(scope: &'s std::thread::Scope<'s, '_>, run: &LoadedRun, n: usize, explain: bool) -> Result<Workers> {
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
    pub fn score(&self, batcher: &mut Batcher, candidates: &[Candidate], batch_size: usize) -> Result<Vec<Scored>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Result;
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
