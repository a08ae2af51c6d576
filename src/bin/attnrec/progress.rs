//! Progress of training, in one of three modes: an indicatif bar per epoch with one summary line
//! per evaluation (bars hidden when stderr is not a terminal), JSON lines on stdout for scripts,
//! or nothing.
use attnrec::experiment::{Outcome, PlannedRun, RunObserver};
use attnrec::train::{EvalReport, Observer};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::io::Write;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    JsonLines,
    Quiet,
}

impl Mode {
    pub fn from_flags(quiet: bool, json_lines: bool) -> Mode {
        if json_lines {
            Mode::JsonLines
        } else if quiet {
            Mode::Quiet
        } else {
            Mode::Bars
        }
    }
}

pub struct Progress {
    label: String,
    mode: Mode,
    bar: Option<ProgressBar>,
    /// Where bars go when another bar (an experiment's) is shown with them.
    multi: Option<MultiProgress>,
    /// The bar over an experiment's runs, drawn above the epoch bars.
    runs: Option<ProgressBar>,
    epoch: usize,
    batch: usize,
    batches: usize,
    samples: usize,
    /// Sample-weighted sum of the losses read, over `losses` samples; `unread` samples trained
    /// since the last read.
    loss_sum: f64,
    losses: usize,
    unread: usize,
    start: Instant,
    last_line: Instant,
}

impl Progress {
    pub fn new(label: impl Into<String>, mode: Mode) -> Self {
        Progress {
            label: label.into(),
            mode,
            bar: None,
            multi: None,
            runs: None,
            epoch: 0,
            batch: 0,
            batches: 0,
            samples: 0,
            loss_sum: 0.0,
            losses: 0,
            unread: 0,
            start: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// For an experiment of `total` runs: one bar over the runs (`name [===>  ] 3/8 runs`), the
    /// run in progress's epoch bars below it, and a line as each run starts.
    pub fn for_runs(name: &str, mode: Mode, total: usize) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let runs = multi.add(ProgressBar::new(total as u64));
        runs.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} runs, {elapsed} elapsed, eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        runs.set_prefix(name.to_string());
        if mode != Mode::Bars {
            runs.set_draw_target(ProgressDrawTarget::hidden());
        }
        Progress { multi: Some(multi), runs: Some(runs), ..Progress::new(name, mode) }
    }

    /// Clears the bar over the runs.
    pub fn finish(&self) {
        if let Some(runs) = &self.runs {
            runs.finish_and_clear();
        }
    }

    fn rate(&self) -> f64 {
        self.samples as f64 / self.start.elapsed().as_secs_f64().max(1e-9)
    }

    fn running_loss(&self) -> f64 {
        self.loss_sum / self.losses.max(1) as f64
    }
}

/// One JSON object per line on stdout, flushed at once so a reader sees it immediately.
pub fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

impl RunObserver for Progress {
    fn run_start(&mut self, index: usize, run: &PlannedRun) {
        self.label = format!("{} seed {}", run.variant, run.seed);
        let total = self.runs.as_ref().and_then(|b| b.length()).unwrap_or(0);
        if let Some(runs) = &self.runs {
            runs.set_position(index as u64);
        }
        if self.mode == Mode::Bars {
            let line = format!("[{}/{total}] {} → {}", index + 1, self.label, run.dir.display());
            match &self.multi {
                Some(m) => m.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        }
    }

    fn run_end(&mut self, _index: usize, run: &PlannedRun, outcome: &Outcome) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.mode != Mode::JsonLines {
            return;
        }
        match outcome {
            Outcome::Done { summary, reused } => {
                let mut v = serde_json::to_value(summary).expect("serializable");
                v["event"] = "done".into();
                v["run"] = run.dir.display().to_string().into();
                v["reused"] = (*reused).into();
                emit(v);
            }
            Outcome::Failed(f) => emit(json!({"event": "failed", "run": run.dir.display().to_string(), "error": f.message})),
        }
    }
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.4}"))
}

impl Observer for Progress {
    fn epoch_start(&mut self, epoch: usize, batches: usize, done: usize) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        (self.epoch, self.batch, self.batches) = (epoch, done, batches);
        (self.samples, self.loss_sum, self.losses, self.unread, self.start) = (0, 0.0, 0, 0, Instant::now());
        match self.mode {
            Mode::Quiet => {}
            Mode::JsonLines => {
                emit(json!({"event": "epoch", "run": self.label, "epoch": epoch, "batches": batches, "resumed_at": done}))
            }
            Mode::Bars => {
                let bar = match &self.multi {
                    Some(m) => m.add(ProgressBar::new(batches as u64)),
                    None => ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr()),
                };
                bar.set_style(
                    ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(format!("{} epoch {epoch}", self.label));
                bar.set_position(done as u64);
                bar.reset_eta();
                self.bar = Some(bar);
            }
        }
    }

    fn batch_end(&mut self, loss: Option<f64>, samples: usize) {
        self.samples += samples;
        self.unread += samples;
        // The trainer reads the loss every few steps on a GPU: a mean over the batches since.
        if let Some(mean) = loss {
            self.loss_sum += mean * self.unread as f64;
            self.losses += self.unread;
            self.unread = 0;
        }
        self.batch += 1;
        match self.mode {
            Mode::Quiet => {}
            Mode::Bars => {
                if let Some(bar) = &self.bar {
                    bar.inc(1);
                    if self.batch % 20 == 0 {
                        bar.set_message(format!("loss {:.4} {:.0} samples/s", self.running_loss(), self.rate()));
                    }
                }
            }
            Mode::JsonLines => {
                if self.last_line.elapsed().as_secs_f64() >= 2.0 {
                    self.last_line = Instant::now();
                    emit(json!({
                        "event": "progress", "run": self.label, "epoch": self.epoch, "batch": self.batch,
                        "batches": self.batches, "loss": self.running_loss(), "samples_per_sec": self.rate(),
                    }));
                }
            }
        }
    }

    fn evaluated(&mut self, r: &EvalReport) {
        match self.mode {
            Mode::Quiet => {}
            Mode::JsonLines => {
                let mut v = serde_json::to_value(r).expect("serializable");
                v["event"] = json!("eval");
                v["run"] = json!(self.label);
                emit(v);
            }
            Mode::Bars => {
                let line = format!(
                    "{} epoch {:>2} step {:>6}: train loss {:.4} | valid AUC {} GAUC {} LogLoss {:.4} | {:.0} samples/s{}",
                    self.label,
                    r.epoch,
                    r.step,
                    r.train_loss,
                    fmt_opt(r.valid.auc),
                    fmt_opt(r.valid.gauc),
                    r.valid.logloss,
                    r.train_samples_per_sec,
                    if r.improved { " *" } else { "" }
                );
                match &self.bar {
                    // suspend, not println: println prints nothing when the bar is hidden (stderr
                    // not a terminal), and the line must reach logs too.
                    Some(bar) if !bar.is_finished() && self.batch < self.batches => bar.suspend(|| eprintln!("{line}")),
                    _ => {
                        if let Some(bar) = self.bar.take() {
                            bar.finish_and_clear();
                        }
                        match &self.multi {
                            Some(m) => {
                                m.suspend(|| eprintln!("{line}"));
                            }
                            None => eprintln!("{line}"),
                        }
                    }
                }
            }
        }
    }

    fn checkpointed(&mut self, step: usize) {
        if self.mode == Mode::JsonLines {
            emit(json!({"event": "checkpoint", "run": self.label, "step": step}));
        }
    }
}
