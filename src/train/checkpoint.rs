//! Resumable checkpoints. Each is a folder `checkpoints/step-NNNNNNNNN/` holding the current
//! weights (`model.safetensors`), the optimizer's moments (`optimizer.safetensors`), the best
//! weights so far (`best.safetensors`) and the [`TrainState`] (`state.json`). A folder is written
//! under a temporary name and renamed whole; only then does `checkpoints/LATEST` (written
//! atomically) name it and older folders get removed. A process killed at any moment therefore
//! leaves either the previous checkpoint or the new one, never half of one.
use super::optim::Optimizer;
use super::{TrainConfig, TrainState};
use crate::error::{Error, Result};
use crate::util::write_atomic;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Tensor};

pub const LATEST: &str = "LATEST";
const MODEL: &str = "model.safetensors";
const OPTIMIZER: &str = "optimizer.safetensors";
const BEST: &str = "best.safetensors";
const STATE: &str = "state.json";

/// A checkpoint read back from disk.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub state: TrainState,
    /// The best weights so far, sorted by name (present once an evaluation ran).
    pub best: Option<Vec<(String, Tensor)>>,
}

fn tch_err(path: &Path, e: tch::TchError) -> Error {
    Error::run(path, format!("checkpoint file is unreadable: {e}"))
}

impl Checkpoint {
    /// The latest checkpoint under `dir`, or `None` when none was completed.
    pub fn latest(dir: &Path) -> Result<Option<Checkpoint>> {
        let pointer = dir.join(LATEST);
        if !pointer.is_file() {
            return Ok(None);
        }
        let name = std::fs::read_to_string(&pointer).map_err(|e| Error::io(&pointer, e))?;
        let ckpt = dir.join(name.trim());
        let state_path = ckpt.join(STATE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
        let state: TrainState =
            serde_json::from_str(&text).map_err(|e| Error::parse(&state_path, e.line(), e.to_string()))?;
        let best = match &state.best {
            Some(_) => {
                let path = ckpt.join(BEST);
                let mut vars = Tensor::read_safetensors(&path).map_err(|e| tch_err(&path, e))?;
                vars.sort_by(|a, b| a.0.cmp(&b.0));
                Some(vars)
            }
            None => None,
        };
        Ok(Some(Checkpoint { dir: ckpt, state, best }))
    }

    /// Loads the checkpoint's weights into `vs` and its moments into `opt`.
    pub fn restore(&self, vs: &nn::VarStore, opt: &mut Optimizer) -> Result<()> {
        let model = self.dir.join(MODEL);
        let saved = Tensor::read_safetensors(&model).map_err(|e| tch_err(&model, e))?;
        copy_into(vs, &saved).map_err(|m| Error::run(&model, m))?;
        let path = self.dir.join(OPTIMIZER);
        let saved = Tensor::read_safetensors(&path).map_err(|e| tch_err(&path, e))?;
        opt.load_state(&saved).map_err(|e| Error::run(&path, e.to_string()))
    }
}

/// Copies `saved` into the variables of `vs` with the same names; every variable must be present
/// with its shape.
pub fn copy_into(vs: &nn::VarStore, saved: &[(String, Tensor)]) -> std::result::Result<(), String> {
    let saved: std::collections::HashMap<&str, &Tensor> = saved.iter().map(|(k, t)| (k.as_str(), t)).collect();
    for (name, var) in vs.variables() {
        let src = saved.get(name.as_str()).ok_or_else(|| format!("lacks the variable '{name}'"))?;
        if src.size() != var.size() {
            return Err(format!("variable '{name}' has shape {:?}, the model's is {:?}", src.size(), var.size()));
        }
        tch::no_grad(|| var.shallow_clone().copy_(src));
    }
    Ok(())
}

/// Writes checkpoints when they are due.
pub struct Saver {
    dir: PathBuf,
    every_steps: usize,
    every_secs: f64,
    last: Instant,
    /// The step of the best weights stored in the previous checkpoint, which the next one
    /// hard-links instead of writing them again.
    best_in_previous: Option<(usize, PathBuf)>,
}

impl Saver {
    pub fn new(dir: &Path, cfg: &TrainConfig) -> Saver {
        Saver {
            dir: dir.to_path_buf(),
            every_steps: cfg.checkpoint_every_steps,
            every_secs: cfg.checkpoint_minutes * 60.0,
            last: Instant::now(),
            best_in_previous: None,
        }
    }

    /// Whether a checkpoint is due after `step` steps, besides those at evaluations.
    pub fn due(&self, step: usize) -> bool {
        (self.every_steps > 0 && step % self.every_steps == 0)
            || (self.every_secs > 0.0 && self.last.elapsed().as_secs_f64() >= self.every_secs)
    }

    pub fn save(&mut self, vs: &nn::VarStore, opt: &Optimizer, best: Option<&[(String, Tensor)]>, st: &TrainState) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let name = format!("step-{:09}", st.step);
        let tmp = crate::util::partial_path(&self.dir.join(&name));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        vs.save(tmp.join(MODEL))?;
        let opt_path = tmp.join(OPTIMIZER);
        Tensor::write_safetensors(&opt.state(), &opt_path).map_err(|e| tch_err(&opt_path, e))?;
        if let (Some(best), Some(b)) = (best, &st.best) {
            let path = tmp.join(BEST);
            let linked = match &self.best_in_previous {
                Some((step, prev)) if *step == b.step => std::fs::hard_link(prev.join(BEST), &path).is_ok(),
                _ => false,
            };
            if !linked {
                Tensor::write_safetensors(best, &path).map_err(|e| tch_err(&path, e))?;
            }
        }
        let state = serde_json::to_string(st).expect("the train state serializes");
        std::fs::write(tmp.join(STATE), state).map_err(|e| Error::io(tmp.join(STATE), e))?;
        let done = self.dir.join(&name);
        if done.exists() {
            std::fs::remove_dir_all(&done).map_err(|e| Error::io(&done, e))?;
        }
        // On disk before it is named: the files, then the rename, then LATEST; only then are
        // older checkpoints deleted.
        crate::util::sync_files_in(&tmp).map_err(|e| Error::io(&tmp, e))?;
        crate::util::crash_point("checkpoint.written");
        std::fs::rename(&tmp, &done).map_err(|e| Error::io(&done, e))?;
        crate::util::sync_dir(&self.dir);
        crate::util::crash_point("checkpoint.renamed");
        write_atomic(&self.dir.join(LATEST), name.as_bytes())?;
        // Older checkpoints (and leftovers of a killed save) are no longer needed.
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && path != done {
                std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        self.best_in_previous = st.best.as_ref().map(|b| (b.step, done));
        self.last = Instant::now();
        Ok(())
    }
}
