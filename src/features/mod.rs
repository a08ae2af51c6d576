//! Features: vocabularies fitted on the train split, the [`FeatureMap`] saved beside the weights
//! (so scoring needs only the run folder), the encoded event arrays, and batching into tensors.
//!
//! Index 0 of every vocabulary is padding, index 1 is out-of-vocabulary: ids first seen in valid or
//! test map to 1, exactly as shared/PROTOCOL.md requires.
pub mod batch;
pub mod side;

use crate::data::protocol::{history_range, Events, HistoryRule, ProtocolConfig, Split};
use crate::data::Dataset;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub use crate::util::{FastMap, FastSet};
use std::hash::Hash;

pub use batch::{Batch, Batcher, NegativePool, Negatives, Row};

pub const PAD: i64 = 0;
pub const OOV: i64 = 1;

/// A fitted vocabulary: `keys[i]` has index `i + 2`. Serialized as the plain key list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "Vec<K>", into = "Vec<K>")]
pub struct Vocab<K: Hash + Eq + Clone> {
    keys: Vec<K>,
    index: FastMap<K, i64>,
}

impl<K: Hash + Eq + Clone> From<Vec<K>> for Vocab<K> {
    fn from(keys: Vec<K>) -> Self {
        let index = keys.iter().enumerate().map(|(i, k)| (k.clone(), i as i64 + 2)).collect();
        Vocab { keys, index }
    }
}

impl<K: Hash + Eq + Clone> From<Vocab<K>> for Vec<K> {
    fn from(v: Vocab<K>) -> Self {
        v.keys
    }
}

impl<K: Hash + Eq + Clone + Ord> Vocab<K> {
    /// Sorted distinct keys: the same data always gives the same indices. Distinct keys are
    /// gathered first, so only they are sorted (20M train events have 60k items).
    pub fn fit(keys: impl IntoIterator<Item = K>) -> Self {
        let distinct: FastSet<K> = keys.into_iter().collect();
        let mut keys: Vec<K> = distinct.into_iter().collect();
        keys.sort_unstable();
        Vocab::from(keys)
    }
}

impl<K: Hash + Eq + Clone> Vocab<K> {
    /// Rows of the embedding table: keys + padding + OOV.
    pub fn size(&self) -> i64 {
        self.keys.len() as i64 + 2
    }
    pub fn encode(&self, key: &K) -> i64 {
        self.index.get(key).copied().unwrap_or(OOV)
    }
    pub fn keys(&self) -> &[K] {
        &self.keys
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VocabName {
    User,
    Item,
    Genre,
    /// The fixed buckets of [`gap_bucket`].
    TimeGap,
    /// A side feature's own vocabulary, in the feature map's `user_side` / `item_side` table.
    Side,
    /// The fixed values of [`feedback_index`].
    Feedback,
}

/// Rows of the time-gap embedding: padding and the 33 buckets of [`gap_bucket`].
pub const GAP_BUCKETS: i64 = 34;

/// The bucket of the time from a history event to its sample, on a log2 scale: `1 +
/// bit_length(seconds)`, so 0 s → 1, 1 s → 2, 2–3 s → 3, 4–7 s → 4, …, a minute → 7, an hour
/// → 13, a day → 18, a month → 23, a year → 26, and 2^31 s or more → 33. 0 is padding.
pub fn gap_bucket(seconds: i64) -> i64 {
    let bits = 64 - (seconds.max(0) as u64).leading_zeros() as i64;
    1 + bits.min(32)
}

/// Rows of the history-feedback embedding: padding, no click, click, not yet known.
pub const FEEDBACK_ROWS: i64 = 4;

/// The feedback input of a history event at `event_ts` for a sample whose known labels end at
/// `known_before` (its timestamp): the event's own label (1 = no click, 2 = click) when the event
/// is strictly earlier, so the label is known by then; 3 when the event has the sample's very
/// timestamp (the protocol lets earlier events of the same second into a history by file order,
/// but their labels are not known before the sample). 0 is padding.
pub fn feedback_index(label: f32, event_ts: i64, known_before: i64) -> i64 {
    if event_ts >= known_before {
        3
    } else if label > 0.5 {
        2
    } else {
        1
    }
}

/// Positives-only histories (`protocol.history = "positives"`): the logged clicks in protocol
/// order, and for every event index `k` the number of clicks before it. A user's clicks before
/// event `k` are then the contiguous slice `events[before[user_start] .. before[k]]`, so these
/// histories are ranges too, of this list instead of the events.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPool {
    pub events: Vec<u32>,
    pub before: Vec<u32>,
}

impl HistoryPool {
    /// The pool of the events labeled 1 in `label` (sampled negatives are labeled 0, so they
    /// never enter it).
    pub fn positives(label: &[f32]) -> HistoryPool {
        let mut events = Vec::new();
        let mut before = Vec::with_capacity(label.len() + 1);
        for (k, &y) in label.iter().enumerate() {
            before.push(events.len() as u32);
            if y > 0.5 {
                events.push(k as u32);
            }
        }
        before.push(events.len() as u32);
        HistoryPool { events, before }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureKind {
    /// One id per sample.
    Categorical,
    /// Up to `max_len` ids per sample, right-aligned (most recent last), padded with 0.
    Sequence { max_len: usize },
}

/// One model input, as recorded in `feature_map.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: FeatureKind,
    pub vocab: VocabName,
    pub vocab_size: i64,
    pub padding_idx: i64,
    pub oov_idx: i64,
}

/// The contract between data and model: which inputs exist and how raw ids map to indices.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureMap {
    pub protocol: String,
    pub history_len: usize,
    /// Which events histories hold; a run scores new rows with the same rule.
    #[serde(default)]
    pub history: HistoryRule,
    /// Whether models get the time-gap buckets of the history.
    #[serde(default)]
    pub time_gap: bool,
    /// Whether models get each history event's own label ([`feedback_index`]). Absent in run
    /// folders written before it existed, which had none.
    #[serde(default)]
    pub history_feedback: bool,
    /// Whether ids are tokens (RecBole atomic files, generic logs: strings map through
    /// [`crate::data::token_id`]) rather than integers only (the MovieLens layouts).
    #[serde(default)]
    pub string_ids: bool,
    pub features: Vec<FeatureSpec>,
    /// Side features of users and items, per raw id (see [`side`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_side: Option<side::SideTable>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_side: Option<side::SideTable>,
    pub user: Vocab<i64>,
    pub item: Vocab<i64>,
    pub genre: Vocab<String>,
}

/// Every event's encoded features, in protocol order; histories are ranges of these arrays.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub user: Vec<i64>,
    pub item: Vec<i64>,
    pub genre: Vec<i64>,
    pub label: Vec<f32>,
    pub split: Vec<Split>,
    pub user_start: Vec<u32>,
    /// Event `k`'s history ends before `history_end[k]` (see [`Events::history_end`]).
    pub history_end: Vec<u32>,
    /// Raw user ids, the groups of GAUC (OOV users must not be pooled into one group).
    pub raw_user: Vec<i64>,
    /// Seconds; the time gaps of a history are measured from its sample's timestamp.
    pub timestamp: Vec<i64>,
    pub history_len: usize,
    /// Positives-only histories; `None` when histories hold every earlier event.
    pub pool: Option<HistoryPool>,
    /// Each event's row in the feature map's user / item side table (empty without side features).
    pub user_side: Vec<u32>,
    pub item_side: Vec<u32>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.user.len()
    }
    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.len()).filter(|&k| self.split[k] == split).collect()
    }
    /// Event `k`'s history (at most `history_len` earlier events of the same user), as a range of
    /// history positions: [`Encoded::history_event`] gives the event at each.
    pub fn history(&self, k: usize) -> std::ops::Range<usize> {
        self.history_between(self.user_start[k] as usize, self.history_end[k] as usize)
    }
    /// The history of a sample whose user's events start at `start` and that comes before event
    /// `end`: the last `history_len` of the user's events (or clicks) in `start..end`.
    pub fn history_between(&self, start: usize, end: usize) -> std::ops::Range<usize> {
        match &self.pool {
            None => history_range(start as u32, end, self.history_len),
            Some(p) => history_range(p.before[start], p.before[end] as usize, self.history_len),
        }
    }
    /// The event at history position `j`.
    pub fn history_event(&self, j: usize) -> usize {
        self.pool.as_ref().map_or(j, |p| p.events[j] as usize)
    }
    /// Length of event `k`'s history before it is cut to `history_len`.
    pub fn full_history_len(&self, k: usize) -> usize {
        let (s, e) = (self.user_start[k] as usize, self.history_end[k] as usize);
        match &self.pool {
            None => e - s,
            Some(p) => (p.before[e] - p.before[s]) as usize,
        }
    }
}

/// First listed genre of every item ("" when the item has none).
pub fn item_first_genres(ds: &Dataset) -> Result<HashMap<i64, String>> {
    let ids = ds.items.column("item_id")?.i64()?;
    let genres = ds.items.column("genres")?.str()?;
    Ok(ids
        .into_no_null_iter()
        .zip(genres.iter())
        .map(|(id, g)| (id, g.unwrap_or("").split('|').next().unwrap_or("").trim().to_string()))
        .collect())
}

/// The features of a dataset's protocol samples: the feature map (fitted on the train split, or
/// `given`, a saved run's, to encode new data the way the run saw its own) and the encoded events.
pub fn fit_encode(ds: &Dataset, events: &Events, protocol: &ProtocolConfig, given: Option<FeatureMap>) -> Result<(FeatureMap, Encoded)> {
    let genres = item_first_genres(ds)?;
    let feature_map = match given {
        Some(fm) => fm,
        None => {
            let mut fm = FeatureMap::fit(events, &genres, protocol);
            fm.string_ids = ds.format.string_ids();
            // The train split's ids, gathered only when a side table needs them (20M events here
            // cost seconds).
            let train_ids = |ids: &[i64]| -> FastSet<i64> { (0..events.len()).filter(|&k| events.split[k] == Split::Train).map(|k| ids[k]).collect() };
            if !protocol.user_features.is_empty() {
                fm.user_side = side::user_table(ds, &protocol.user_features, &train_ids(&events.user))?;
            }
            if !protocol.item_features.is_empty() {
                fm.item_side = side::item_table(ds, &protocol.item_features, &train_ids(&events.item))?;
            }
            for t in fm.user_side.iter().chain(&fm.item_side) {
                for f in &t.fields {
                    let kind = if f.width == 1 { FeatureKind::Categorical } else { FeatureKind::Sequence { max_len: f.width } };
                    fm.features.push(FeatureSpec {
                        name: f.name.clone(),
                        kind,
                        vocab: VocabName::Side,
                        vocab_size: f.vocab.size(),
                        padding_idx: PAD,
                        oov_idx: OOV,
                    });
                }
            }
            fm
        }
    };
    let encoded = feature_map.encode(events, &genres);
    Ok((feature_map, encoded))
}

fn side_rows(table: &Option<side::SideTable>, ids: &[i64]) -> Vec<u32> {
    table.as_ref().map_or_else(Vec::new, |t| ids.iter().map(|&id| t.row(id)).collect())
}

/// The feature map's file name in run folders and prepared caches.
pub const FEATURE_MAP_FILE: &str = "feature_map.json";

impl FeatureMap {
    /// Reads `dir/feature_map.json`.
    pub fn read_from(dir: &std::path::Path) -> Result<FeatureMap> {
        let path = dir.join(FEATURE_MAP_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| crate::Error::parse(&path, e.line(), e.to_string()))
    }

    /// Fits the vocabularies on the train split only.
    pub fn fit(events: &Events, item_genre: &HashMap<i64, String>, protocol: &ProtocolConfig) -> FeatureMap {
        let history_len = protocol.history_len;
        let train: Vec<usize> = events.indices(Split::Train);
        // Without user ids every user is out of vocabulary (see ProtocolConfig::user_id).
        let user = Vocab::fit(train.iter().filter(|_| protocol.user_id).map(|&k| events.user[k]));
        let item = Vocab::fit(train.iter().map(|&k| events.item[k]));
        // The genres of the distinct train items: the same set as over train events, without
        // hashing a string per event.
        let genre = Vocab::fit(item.keys().iter().filter_map(|i| item_genre.get(i)).filter(|g| !g.is_empty()).cloned());
        let spec = |name: &str, kind: FeatureKind, vocab: VocabName, size: i64| FeatureSpec {
            name: name.to_string(),
            kind,
            vocab,
            vocab_size: size,
            padding_idx: PAD,
            oov_idx: OOV,
        };
        let seq = FeatureKind::Sequence { max_len: history_len };
        let mut features = vec![
            spec("user_id", FeatureKind::Categorical, VocabName::User, user.size()),
            spec("item_id", FeatureKind::Categorical, VocabName::Item, item.size()),
            spec("genre", FeatureKind::Categorical, VocabName::Genre, genre.size()),
            spec("hist_item_id", seq.clone(), VocabName::Item, item.size()),
            spec("hist_genre", seq.clone(), VocabName::Genre, genre.size()),
        ];
        if protocol.time_gap {
            features.push(spec("hist_time_gap", seq.clone(), VocabName::TimeGap, GAP_BUCKETS));
        }
        if protocol.history_feedback {
            features.push(spec("hist_feedback", seq, VocabName::Feedback, FEEDBACK_ROWS));
        }
        FeatureMap {
            protocol: "ml-ctr-v1".to_string(),
            history_len,
            history: protocol.history,
            time_gap: protocol.time_gap,
            history_feedback: protocol.history_feedback,
            string_ids: false,
            features,
            user_side: None,
            item_side: None,
            user,
            item,
            genre,
        }
    }

    pub fn encode(&self, events: &Events, item_genre: &HashMap<i64, String>) -> Encoded {
        // Each item's genre index, computed once per item rather than once per event.
        let genre_index: FastMap<i64, i64> = item_genre
            .iter()
            .map(|(&item, g)| (item, if g.is_empty() { OOV } else { self.genre.encode(g) }))
            .collect();
        Encoded {
            user: events.user.iter().map(|u| self.user.encode(u)).collect(),
            item: events.item.iter().map(|i| self.item.encode(i)).collect(),
            genre: events.item.iter().map(|i| genre_index.get(i).copied().unwrap_or(OOV)).collect(),
            label: events.label.clone(),
            split: events.split.clone(),
            user_start: events.user_start.clone(),
            history_end: events.history_end.clone(),
            raw_user: events.user.clone(),
            timestamp: events.timestamp.clone(),
            history_len: self.history_len,
            pool: self.history_pool(&events.label),
            user_side: side_rows(&self.user_side, &events.user),
            item_side: side_rows(&self.item_side, &events.item),
        }
    }

    /// The side-table rows of raw user and item ids (both empty without side features).
    pub fn side_rows(&self, users: &[i64], items: &[i64]) -> (Vec<u32>, Vec<u32>) {
        (side_rows(&self.user_side, users), side_rows(&self.item_side, items))
    }

    /// The pool of positives-only histories, when this map's rule asks for one.
    pub fn history_pool(&self, label: &[f32]) -> Option<HistoryPool> {
        (self.history == HistoryRule::Positives).then(|| HistoryPool::positives(label))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Two users with 5 and 4 events; the last event of each is test, the one before valid.
    pub(crate) fn toy_encoded() -> Encoded {
        use Split::*;
        Encoded {
            user: vec![2, 2, 2, 2, 2, 3, 3, 3, 3],
            item: vec![2, 3, 4, 5, 2, 6, 2, 3, 7],
            genre: vec![2, 2, 3, 3, 2, 4, 2, 2, 4],
            label: vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0],
            split: vec![Train, Train, Train, Valid, Test, Train, Train, Valid, Test],
            user_start: vec![0, 0, 0, 0, 0, 5, 5, 5, 5],
            history_end: (0..9).collect(),
            raw_user: vec![10, 10, 10, 10, 10, 20, 20, 20, 20],
            timestamp: vec![0, 60, 3600, 86_400, 86_401, 5, 6, 7, 8],
            history_len: 3,
            pool: None,
            user_side: Vec::new(),
            item_side: Vec::new(),
        }
    }

    #[test]
    fn gap_buckets_by_hand() {
        let cases = [(-5, 1), (0, 1), (1, 2), (2, 3), (3, 3), (4, 4), (59, 7), (60, 7), (64, 8), (3600, 13), (86_400, 18)];
        for (seconds, bucket) in cases {
            assert_eq!(gap_bucket(seconds), bucket, "{seconds} s");
        }
        assert_eq!(gap_bucket((1 << 31) - 1), 32);
        assert_eq!(gap_bucket(1 << 31), 33);
        assert_eq!(gap_bucket(i64::MAX), GAP_BUCKETS - 1);
    }

    fn rows_of(enc: &Encoded, k: usize) -> Vec<i64> {
        enc.history(k).map(|j| enc.item[enc.history_event(j)]).collect()
    }

    #[test]
    fn positives_only_histories_by_hand() {
        let mut enc = toy_encoded();
        enc.pool = Some(HistoryPool::positives(&enc.label));
        // Clicks: events 0, 2, 3 (user 2) and 6, 7 (user 3).
        assert_eq!(enc.pool.as_ref().unwrap().events, vec![0, 2, 3, 6, 7]);
        let want: [&[i64]; 9] = [&[], &[2], &[2], &[2, 4], &[2, 4, 5], &[], &[], &[2], &[2, 3]];
        for (k, w) in want.iter().enumerate() {
            assert_eq!(rows_of(&enc, k), *w, "event {k}");
        }
        // Cut to the last L = 2 clicks; the full length counts all 3.
        enc.history_len = 2;
        assert_eq!(rows_of(&enc, 4), vec![4, 5]);
        assert_eq!(enc.full_history_len(4), 3);
        // A sampled negative of event 4 (history_end = 4) sees the same clicks.
        assert_eq!(enc.history_between(0, 4), enc.history(4));
    }

    #[test]
    fn batches_carry_time_gap_buckets() {
        let enc = toy_encoded();
        let b = Batcher::new(&enc, tch::Device::Cpu).batch(&[4, 8]);
        // Event 4 at 86,401 s: history events 1, 2, 3 at 60, 3600 and 86,400 s.
        // Event 8 at 8 s: events 5, 6, 7 at 5, 6 and 7 s.
        let want = [gap_bucket(86_341), gap_bucket(82_801), gap_bucket(1), gap_bucket(3), gap_bucket(2), gap_bucket(1)];
        assert_eq!(Vec::<i64>::try_from(b.hist_gap.flatten(0, -1)).unwrap(), want.to_vec());
        assert_eq!(want, [18, 18, 2, 3, 3, 2]);
    }

    #[test]
    fn batches_carry_each_history_event_s_own_label() {
        let enc = toy_encoded();
        let b = Batcher::new(&enc, tch::Device::Cpu).batch(&[4, 8, 1]);
        // Width 3. Event 4's history: events 1, 2, 3 (labels 0, 1, 1); event 8's: 5, 6, 7 (0, 1,
        // 1); event 1's: event 0 alone (label 1), right-aligned after two padding columns.
        let got = Vec::<i64>::try_from(b.hist_feedback.flatten(0, -1)).unwrap();
        assert_eq!(got, vec![1, 2, 2, 1, 2, 2, 0, 0, 2]);
        // An earlier event of the sample's very second is in the history, its label is not known.
        let mut enc = toy_encoded();
        enc.timestamp[3] = enc.timestamp[4];
        let b = Batcher::new(&enc, tch::Device::Cpu).batch(&[4]);
        assert_eq!(Vec::<i64>::try_from(b.hist_feedback.flatten(0, -1)).unwrap(), vec![1, 2, 3]);
    }

    /// Negatives come from the pool's events only (the train split), never repeat the event's own
    /// item, and depend on the event alone: the same whatever batch, or whatever order of the
    /// pool, they are drawn in.
    #[test]
    fn negative_history_events_are_drawn_once_from_the_pool() {
        let enc = toy_encoded();
        let train = enc.indices(Split::Train);
        let pool = NegativePool::new(&train);
        for e in 0..enc.len() {
            let n = pool.draw(&enc, e).unwrap();
            assert!(train.contains(&n), "event {e}: negative {n} is not a training event");
            assert_ne!(enc.item[n], enc.item[e], "event {e}: the negative repeats its item");
            let mut reversed = train.clone();
            reversed.reverse();
            assert_eq!(NegativePool::new(&reversed).draw(&enc, e), Some(n), "event {e}: order of the pool");
        }
        assert_eq!(NegativePool::new(&[]).draw(&enc, 0), None);
        // Event 4's history (events 1, 2, 3) in two different batches: the same negatives.
        let negs = |idx: &[usize], row: i64| {
            let b = Batcher::new(&enc, tch::Device::Cpu).with_negatives(Some(&pool)).batch(idx);
            let n = b.negatives.expect("negatives asked for");
            Vec::<i64>::try_from(n.item.get(row)).unwrap()
        };
        let want: Vec<i64> = [1, 2, 3].iter().map(|&e| enc.item[pool.draw(&enc, e).unwrap()]).collect();
        assert_eq!(negs(&[4], 0), want);
        assert_eq!(negs(&[1, 4], 1), want);
        // Padding stays 0; a batch without a pool carries none.
        assert_eq!(negs(&[1, 4], 0)[..2], [0, 0]);
        assert!(Batcher::new(&enc, tch::Device::Cpu).batch(&[4]).negatives.is_none());
    }
}
