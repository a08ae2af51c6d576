//! Terminal progress: an indicatif bar per epoch (hidden when stderr is not a terminal) and one
//! summary line per evaluation.
use attnrec::train::{EpochReport, Observer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Instant;

pub struct Progress {
    label: String,
    quiet: bool,
    bar: Option<ProgressBar>,
    samples: usize,
    loss_sum: f64,
    batches: usize,
    start: Instant,
}

impl Progress {
    pub fn new(label: impl Into<String>, quiet: bool) -> Self {
        Progress { label: label.into(), quiet, bar: None, samples: 0, loss_sum: 0.0, batches: 0, start: Instant::now() }
    }
}

fn fmt_opt(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |v| format!("{v:.4}"))
}

impl Observer for Progress {
    fn epoch_start(&mut self, epoch: usize, batches: usize) {
        (self.samples, self.loss_sum, self.batches, self.start) = (0, 0.0, 0, Instant::now());
        if self.quiet {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} epoch {epoch}", self.label));
        self.bar = Some(bar);
    }

    fn batch_end(&mut self, loss: f64, samples: usize) {
        self.samples += samples;
        self.loss_sum += loss;
        self.batches += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if self.batches % 20 == 0 {
                let rate = self.samples as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("loss {:.4} {:.0} samples/s", self.loss_sum / self.batches as f64, rate));
            }
        }
    }

    fn epoch_end(&mut self, r: &EpochReport) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.quiet {
            eprintln!(
                "{} epoch {:>2}: train loss {:.4} | valid AUC {} GAUC {} LogLoss {:.4} | {:.0} samples/s{}",
                self.label,
                r.epoch,
                r.train_loss,
                fmt_opt(r.valid.auc),
                fmt_opt(r.valid.gauc),
                r.valid.logloss,
                r.train_samples_per_sec,
                if r.improved { " *" } else { "" }
            );
        }
    }
}
