//! TorchScript export: a trained run as a module that PyTorch (`torch.jit.load`) or libtorch can
//! serve without attnrec, traced through tch from the model's own forward pass.
//!
//! The module takes the batch tensors attnrec's models read (names, order and dtypes in
//! [`INPUTS`]) and returns click probabilities `[B]` (f32). Tracing records shapes as constants, so
//! the module has a fixed batch size `B` and history width `L` (the run's `history_len`): callers
//! pad the last batch with rows of zeros (mask all false) and drop their outputs. Histories are
//! right-aligned (the most recent event in the last column), ids are the feature map's indices
//! (0 = padding / out of vocabulary).
//!
//! Files written beside `OUT` (`model.pt`): the sidecar `model.json` (inputs with shapes, dtypes and
//! meaning; the run; the check), `model.feature_map.json` (the vocabularies that turn raw ids into
//! input indices), and `model.example.npz`: two real batches of the run's test split with
//! attnrec's probabilities (`expected`) and logits for them, the first the one traced, which
//! `scripts/check_export.py` replays through `torch.jit.load` (and
//! `benchmarks/reference/attnrec_ref.py parity` through the PyTorch reference models).
use crate::nn::with_fused;
use crate::data::protocol::Split;
use crate::error::{Error, Result};
use crate::features::{Batch, Batcher};
use crate::run::{prepare, LoadedRun, FEATURE_MAP_FILE};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The module's inputs, in order: name, rank (1 = `[B]`, 2 = `[B, L]`), dtype, meaning.
pub const INPUTS: [(&str, usize, &str, &str); 11] = [
    ("user", 1, "int64", "user index in feature_map.user (0 = out of vocabulary)"),
    ("item", 1, "int64", "candidate item index in feature_map.item"),
    ("genre", 1, "int64", "candidate item's first-genre index in feature_map.genre"),
    ("hist_item", 2, "int64", "history item indices, right-aligned, 0 = padding"),
    ("hist_genre", 2, "int64", "history items' first-genre indices, 0 = padding"),
    ("hist_gap", 2, "int64", "time-gap bucket of each history event (1 + bit length of the seconds before the request, at most 33), 0 = padding; read only by runs with time_gap"),
    ("hist_mask", 2, "bool", "true where a history event is present"),
    ("user_side", 1, "int64", "user's row in feature_map.user_side (0 = none); read only by runs with user features"),
    ("item_side", 1, "int64", "candidate's row in feature_map.item_side (0 = none); read only by runs with item features"),
    ("hist_item_side", 2, "int64", "history items' rows in feature_map.item_side, 0 = padding"),
    ("hist_feedback", 2, "int64", "each history event's own label: 1 = no click, 2 = click, 3 = at the request's own timestamp (not yet known), 0 = padding; read only by runs with history_feedback"),
];

/// The tensors of `b` in [`INPUTS`] order.
pub fn inputs_of(b: &Batch) -> Vec<Tensor> {
    [&b.user, &b.item, &b.genre, &b.hist_item, &b.hist_genre, &b.hist_gap, &b.hist_mask, &b.user_side, &b.item_side, &b.hist_item_side, &b.hist_feedback]
        .iter()
        .map(|t| t.shallow_clone())
        .collect()
}

/// A batch from tensors in [`INPUTS`] order (labels are not an input).
pub fn batch_of(t: &[Tensor]) -> Batch {
    Batch {
        user: t[0].shallow_clone(),
        item: t[1].shallow_clone(),
        genre: t[2].shallow_clone(),
        hist_item: t[3].shallow_clone(),
        hist_genre: t[4].shallow_clone(),
        hist_gap: t[5].shallow_clone(),
        hist_mask: t[6].shallow_clone(),
        user_side: t[7].shallow_clone(),
        item_side: t[8].shallow_clone(),
        hist_item_side: t[9].shallow_clone(),
        hist_feedback: t[10].shallow_clone(),
        label: t[0].zeros_like().to_kind(Kind::Float),
        negatives: None,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InputSpec {
    pub name: String,
    pub shape: Vec<i64>,
    pub dtype: String,
    pub meaning: String,
}

/// The sidecar `model.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Sidecar {
    pub format: String,
    pub attnrec_version: String,
    pub run: PathBuf,
    pub model: String,
    pub batch_size: i64,
    pub history_len: i64,
    pub inputs: Vec<InputSpec>,
    pub output: InputSpec,
    pub feature_map: String,
    pub example: String,
    pub notes: Vec<String>,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub module: PathBuf,
    pub sidecar: PathBuf,
    pub feature_map: PathBuf,
    pub example: PathBuf,
    pub sidecar_data: Sidecar,
}

/// Companion files of the module `out`: `STEM.json`, `STEM.feature_map.json`, `STEM.example.npz`.
fn companions(out: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let dir = out.parent().unwrap_or(Path::new(""));
    (dir.join(format!("{stem}.json")), dir.join(format!("{stem}.feature_map.json")), dir.join(format!("{stem}.example.npz")))
}

/// Traces `run` with a batch of `batch_size` rows of its test split (on its own dataset, or
/// `data`) and writes the module `out` with its companions. Every file is written under a
/// `.partial` name and renamed once all four are complete.
pub fn export(run: &mut LoadedRun, data: Option<&Path>, out: &Path, batch_size: usize) -> Result<Exported> {
    if batch_size == 0 {
        return Err(Error::config("export: --batch-size must be at least 1"));
    }
    if out.is_dir() {
        return Err(Error::run(out, "is a folder; --out names the module file to write (e.g. model.pt)"));
    }
    // Tracing stores parameters as constants, which must not require gradients; it records
    // libtorch's operators, so the fused CPU kernels (whose outputs would be traced as constants)
    // are off for it and for the expected outputs beside it.
    run.vs.freeze();
    let l = run.feature_map.history_len as i64;
    let prepared = prepare(&run.config, data.unwrap_or(run.config.data.path.as_path()), Some(run.feature_map.clone()))?;
    let mut idx = prepared.encoded.indices(Split::Test);
    if idx.is_empty() {
        idx = prepared.encoded.indices(Split::Train);
    }
    if idx.is_empty() {
        return Err(Error::run(&run.path, "its dataset has no samples to trace the model with"));
    }
    // Two batches of real rows (cycled where the split is short), every history padded to L.
    let rows: Vec<usize> = idx.iter().copied().cycle().take(2 * batch_size).collect();
    let mut batcher = Batcher::new(&prepared.encoded, Device::Cpu).with_min_width(l as usize);
    let (first, second) = (batcher.batch(&rows[..batch_size]), batcher.batch(&rows[batch_size..]));
    let model = run.model.as_ref();
    let logits = |b: &Batch| with_fused(false, || tch::no_grad(|| model.forward_t(b, false)));
    let (logit1, logit2) = (logits(&first), logits(&second));

    let (sidecar_path, fm_path, example_path) = companions(out);
    let paths = [out.to_path_buf(), sidecar_path.clone(), fm_path.clone(), example_path.clone()];
    let partial: Vec<PathBuf> = paths.iter().map(|p| crate::util::partial_path(p)).collect();
    let result = (|| -> Result<Sidecar> {
        let module = with_fused(false, || tch::no_grad(|| {
            let mut forward = |t: &[Tensor]| vec![model.forward_t(&batch_of(t), false).sigmoid()];
            tch::CModule::create_by_tracing("AttnrecCtr", "forward", &inputs_of(&first), &mut forward)
        }))
        .map_err(|e| Error::run(&run.path, format!("tracing the model failed: {e}")))?;
        module.save(&partial[0]).map_err(|e| Error::run(&partial[0], format!("saving the TorchScript module failed: {e}")))?;
        let src = run.path.join(FEATURE_MAP_FILE);
        std::fs::copy(&src, &partial[2]).map_err(|e| Error::io(&src, e))?;
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (k, (b, l)) in [(&first, &logit1), (&second, &logit2)].into_iter().enumerate() {
            for ((name, ..), t) in INPUTS.iter().zip(inputs_of(b)) {
                // npz has no bool for tch; the mask travels as uint8.
                let t = if t.kind() == Kind::Bool { t.to_kind(Kind::Uint8) } else { t };
                named.push((format!("batch{}.{name}", k + 1), t));
            }
            named.push((format!("batch{}.expected", k + 1), l.sigmoid()));
            named.push((format!("batch{}.logit", k + 1), l.shallow_clone()));
        }
        Tensor::write_npz(&named, &partial[3]).map_err(|e| Error::run(&partial[3], format!("writing the example batches failed: {e}")))?;
        let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let b = batch_size as i64;
        let sidecar = Sidecar {
            format: "torchscript".into(),
            attnrec_version: env!("CARGO_PKG_VERSION").into(),
            run: run.path.clone(),
            model: run.config.model.name().to_string(),
            batch_size: b,
            history_len: l,
            inputs: INPUTS
                .iter()
                .map(|&(n, rank, dtype, meaning)| InputSpec {
                    name: n.into(),
                    shape: if rank == 1 { vec![b] } else { vec![b, l] },
                    dtype: dtype.into(),
                    meaning: meaning.into(),
                })
                .collect(),
            output: InputSpec { name: "probability".into(), shape: vec![b], dtype: "float32".into(), meaning: "click probability of each row".into() },
            feature_map: name(&fm_path),
            example: name(&example_path),
            notes: vec![
                format!("shapes are fixed by tracing: pad a short batch to {b} rows (ids 0, hist_mask false) and drop those outputs"),
                "the module runs on CPU; its constants were traced there".into(),
                format!("check: python scripts/check_export.py {}", out.display()),
            ],
        };
        let text = serde_json::to_string_pretty(&sidecar).expect("serializable");
        std::fs::write(&partial[1], text).map_err(|e| Error::io(&partial[1], e))?;
        Ok(sidecar)
    })();
    let renamed = result.and_then(|s| {
        for (tmp, path) in partial.iter().zip(&paths) {
            std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))?;
        }
        Ok(s)
    });
    match renamed {
        Ok(sidecar_data) => Ok(Exported { module: out.to_path_buf(), sidecar: sidecar_path, feature_map: fm_path, example: example_path, sidecar_data }),
        Err(e) => {
            for p in &partial {
                let _ = std::fs::remove_file(p);
            }
            Err(e)
        }
    }
}
