//! Histories for scoring: a log (any supported layout) encoded with a run's feature map and indexed
//! by user, so that a candidate's history is a binary search away.
use crate::data::protocol::{build_events, Events};
use crate::data::{Dataset, PartSelect};
use crate::error::{Error, Result};
use crate::features::{item_first_genres, Encoded, FeatureMap, Row, OOV};
use crate::run::LoadedRun;
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Every user's logged events, encoded with a run's feature map, for looking up histories.
pub struct HistoryIndex {
    pub(super) encoded: Encoded,
    /// raw user id → range of that user's events (protocol order).
    users: HashMap<i64, Range<usize>>,
    /// raw item id → genre index, from the log's item table.
    item_genre: HashMap<i64, i64>,
    /// Raw item id of every event (for explanations).
    pub(super) raw_item: Vec<i64>,
}

impl HistoryIndex {
    /// Loads the log in `dir` (any supported layout) and encodes it with `run`'s feature map. A
    /// log without events is an empty index: every candidate's history is empty.
    pub fn load(run: &LoadedRun, dir: &Path) -> Result<HistoryIndex> {
        HistoryIndex::load_parts(run, dir, PartSelect::AllMaybeEmpty)
    }

    /// [`HistoryIndex::load`] of the parts `select` picks where the log's ratings file is a
    /// folder of parts: one task's own users, when candidates and history are partitioned alike.
    /// A part may hold no events. A run whose protocol keeps a k-core of items cannot read its
    /// history in parts: which events survive depends on every user's.
    pub fn load_parts(run: &LoadedRun, dir: &Path, select: PartSelect) -> Result<HistoryIndex> {
        let protocol = &run.config.protocol;
        if matches!(select, PartSelect::One { .. }) && protocol.min_item_events > 1 {
            return Err(Error::run(
                &run.path,
                format!("its protocol keeps items with at least {} events (min_item_events), which needs the whole log: co-partitioned histories cannot apply it", protocol.min_item_events),
            ));
        }
        let ds = Dataset::open_parts(&run.config.data.at(dir), select)?;
        let events = if ds.ratings.height() == 0 { Events::default() } else { build_events(&ds, protocol)? };
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

/// Default history source of a run: the dataset it was trained on.
pub fn default_history_dir(run: &LoadedRun) -> PathBuf {
    run.config.data.path.clone()
}
