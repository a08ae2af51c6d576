//! `attnrec data inspect`: what the protocol makes of a dataset, before any training. Counts per
//! split, positive rates, users and items, the history lengths the model will see, out-of-vocabulary
//! rates in valid and test (vocabularies are fitted on train only), and the counts of every input
//! the loaders handle by a documented rule rather than an error:
//! - duplicate `(user, item, timestamp)` rows are kept, each its own event;
//! - a user with one event has it in test with an empty history (`floor(0.8) = floor(0.9) = 0`);
//! - an item absent from the item table gets the out-of-vocabulary genre.
use crate::data::protocol::{build_samples, Events, ProtocolConfig, Split};
use crate::data::Dataset;
use crate::error::Result;
use crate::features::{fit_encode, OOV};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize)]
pub struct DataSummary {
    pub path: PathBuf,
    pub format: &'static str,
    /// Rows of the rating log, and events left after the k-core filter (all of them when it is off).
    pub ratings: usize,
    pub events: usize,
    pub users: usize,
    pub items: usize,
    /// Rows of the item table.
    pub item_table_rows: usize,
    /// Rated items that the item table lacks (their genre is out of vocabulary).
    pub items_without_metadata: usize,
    /// Rows repeating an earlier row's `(user, item, timestamp)`.
    pub duplicate_events: usize,
    /// Negatives sampled for implicit feedback (`protocol.negatives` per positive).
    pub sampled_negatives: usize,
    pub single_event_users: usize,
    pub label_threshold: f64,
    pub history_len: usize,
    /// Whether histories hold every earlier event or the clicks only.
    pub history_rule: crate::data::protocol::HistoryRule,
    pub splits: Vec<SplitSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitSummary {
    pub split: Split,
    pub samples: usize,
    pub positive_rate: f64,
    pub users: usize,
    pub items: usize,
    /// Share of samples whose user / item / genre is out of the train vocabulary.
    pub oov_user_rate: f64,
    pub oov_item_rate: f64,
    pub oov_genre_rate: f64,
    /// History lengths (after truncation to `history_len`).
    pub history: LengthStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct LengthStats {
    pub mean: f64,
    pub p50: usize,
    pub p90: usize,
    pub max: usize,
    /// Share of samples with no history at all.
    pub empty_rate: f64,
    /// Share of samples whose history was cut to `history_len`.
    pub truncated_rate: f64,
}

/// Applies the protocol to `ds` and summarizes the result.
pub fn inspect(ds: &Dataset, cfg: &ProtocolConfig) -> Result<DataSummary> {
    let ev = build_samples(ds, cfg)?;
    let (_, enc) = fit_encode(ds, &ev, cfg, None)?;
    let described: HashSet<i64> = ds.items.column("item_id")?.i64()?.into_no_null_iter().collect();
    let users: HashSet<i64> = ev.user.iter().copied().collect();
    let items: HashSet<i64> = ev.item.iter().copied().collect();
    let mut seen = HashSet::with_capacity(ev.logged);
    let duplicate_events = (0..ev.logged).filter(|&k| !seen.insert((ev.user[k], ev.item[k], ev.timestamp[k]))).count();
    let single_event_users = (0..ev.logged).filter(|&k| ev.user_start[k] as usize == k && user_len(&ev, k) == 1).count();
    let splits = Split::ALL
        .iter()
        .map(|&split| {
            let idx = ev.indices(split);
            let n = idx.len().max(1) as f64;
            let share = |f: &dyn Fn(usize) -> bool| idx.iter().filter(|&&k| f(k)).count() as f64 / n;
            let mut lens: Vec<usize> = idx.iter().map(|&k| enc.history(k).len()).collect();
            lens.sort_unstable();
            let full = |k: usize| enc.full_history_len(k);
            SplitSummary {
                split,
                samples: idx.len(),
                positive_rate: idx.iter().map(|&k| ev.label[k] as f64).sum::<f64>() / n,
                users: idx.iter().map(|&k| ev.user[k]).collect::<HashSet<_>>().len(),
                items: idx.iter().map(|&k| ev.item[k]).collect::<HashSet<_>>().len(),
                oov_user_rate: share(&|k| enc.user[k] == OOV),
                oov_item_rate: share(&|k| enc.item[k] == OOV),
                oov_genre_rate: share(&|k| enc.genre[k] == OOV),
                history: LengthStats {
                    mean: lens.iter().sum::<usize>() as f64 / n,
                    p50: quantile(&lens, 0.5),
                    p90: quantile(&lens, 0.9),
                    max: lens.last().copied().unwrap_or(0),
                    empty_rate: share(&|k| full(k) == 0),
                    truncated_rate: share(&|k| full(k) > cfg.history_len),
                },
            }
        })
        .collect();
    Ok(DataSummary {
        path: ds.root.clone(),
        format: ds.format.name(),
        ratings: ds.ratings.height(),
        events: ev.logged,
        sampled_negatives: ev.len() - ev.logged,
        users: users.len(),
        items: items.len(),
        item_table_rows: ds.items.height(),
        items_without_metadata: items.iter().filter(|i| !described.contains(i)).count(),
        duplicate_events,
        single_event_users,
        label_threshold: cfg.label_threshold,
        history_len: cfg.history_len,
        history_rule: cfg.history,
        splits,
    })
}

/// Number of logged events of the user whose first event is `start`.
fn user_len(ev: &Events, start: usize) -> usize {
    ev.user[start..ev.logged].iter().take_while(|&&u| u == ev.user[start]).count()
}

/// The nearest-rank quantile of sorted `v` (0 when empty).
fn quantile(v: &[usize], q: f64) -> usize {
    if v.is_empty() {
        return 0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        assert_eq!(quantile(&[], 0.5), 0);
        assert_eq!(quantile(&[1, 2, 3, 4], 0.5), 2);
        assert_eq!(quantile(&[1, 2, 3, 4], 0.9), 4);
        assert_eq!(quantile(&[7], 0.1), 7);
    }
}
