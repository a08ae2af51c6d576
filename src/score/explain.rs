//! `attnrec explain`: why a run scores a (user, item) pair as it does.
use super::history::HistoryIndex;
use crate::error::{Error, Result};
use crate::features::Batcher;
use crate::run::LoadedRun;
use serde::Serialize;
use tch::{Device, Kind};

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
