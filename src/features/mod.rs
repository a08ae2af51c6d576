//! Features: vocabularies fitted on the train split, the [`FeatureMap`] saved beside the weights
//! (so scoring needs only the run folder), the encoded event arrays, and batching into tensors.
//!
//! Index 0 of every vocabulary is padding, index 1 is out-of-vocabulary: ids first seen in valid or
//! test map to 1, exactly as shared/PROTOCOL.md requires.
pub mod batch;

use crate::data::protocol::{history_range, Events, ProtocolConfig, Split};
use crate::data::Dataset;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Maps and sets keyed by ids and hit once per event: foldhash with a fixed seed (std's SipHash
/// cost a third of preparing a 25M-rating log).
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;
use std::hash::Hash;

pub use batch::{Batch, Batcher, Row};

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
    pub features: Vec<FeatureSpec>,
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
    pub history_len: usize,
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
    /// Range of event `k`'s history (at most `history_len` earlier events of the same user).
    pub fn history(&self, k: usize) -> std::ops::Range<usize> {
        history_range(self.user_start[k], self.history_end[k] as usize, self.history_len)
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
    let feature_map = given.unwrap_or_else(|| FeatureMap::fit(events, &genres, protocol.history_len));
    let encoded = feature_map.encode(events, &genres);
    Ok((feature_map, encoded))
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
    pub fn fit(events: &Events, item_genre: &HashMap<i64, String>, history_len: usize) -> FeatureMap {
        let train: Vec<usize> = events.indices(Split::Train);
        let user = Vocab::fit(train.iter().map(|&k| events.user[k]));
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
        let features = vec![
            spec("user_id", FeatureKind::Categorical, VocabName::User, user.size()),
            spec("item_id", FeatureKind::Categorical, VocabName::Item, item.size()),
            spec("genre", FeatureKind::Categorical, VocabName::Genre, genre.size()),
            spec("hist_item_id", seq.clone(), VocabName::Item, item.size()),
            spec("hist_genre", seq, VocabName::Genre, genre.size()),
        ];
        FeatureMap { protocol: "ml-ctr-v1".to_string(), history_len, features, user, item, genre }
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
            history_len: self.history_len,
        }
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
            history_len: 3,
        }
    }
}
