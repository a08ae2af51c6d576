//! The `ml-ctr-v1` protocol of shared/PROTOCOL.md: label by rating threshold, stable temporal order
//! within each user, per-user ratio split, and histories of the user's earlier events of any label.
//! Options, never silent substitutes: leave-last-out or a global time split instead of the per-user
//! ratio split, and a k-core filter applied before splitting.
//!
//! The polars pipeline produces one row per event in protocol order; histories are not materialized
//! (they would be `N × L` ids): event `k`'s history is the contiguous range
//! `max(user_start[k], k - L) .. k` of the same arrays, so it can never contain the event itself or
//! anything after it.
use super::Dataset;
use crate::error::{Error, Result};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtocolConfig {
    /// `rating >= label_threshold` is a click.
    pub label_threshold: f64,
    /// A user with `n` events puts the first `floor(train_ratio * n)` in train (exact decimals,
    /// integer arithmetic: at most 9 decimal places) ...
    pub train_ratio: f64,
    /// ... and the events up to `floor((train_ratio + valid_ratio) * n)` in valid; the rest is test.
    pub valid_ratio: f64,
    /// History length `L`: the last `L` earlier events of the user.
    pub history_len: usize,
    /// How events are split into train / valid / test.
    pub split: SplitRule,
    /// k-core filter, applied before splitting: users and items with fewer events are dropped,
    /// repeatedly, until every remaining user has at least `min_user_events` and every item at
    /// least `min_item_events` (0 or 1 = off).
    pub min_user_events: usize,
    pub min_item_events: usize,
    /// Sampled negatives per positive, for implicit-feedback logs (0 = off); see
    /// [`crate::data::negatives`].
    pub negatives: usize,
    /// Seed of the negative sampler: the same seed always draws the same negatives.
    pub negative_seed: u64,
    /// Which earlier events make up a history: all of them (the default) or the clicks only.
    pub history: HistoryRule,
    /// Adds the time from each history event to the sample, bucketed on a log2 scale
    /// (see [`crate::features::gap_bucket`]), as an input of every model.
    pub time_gap: bool,
    /// Adds each history event's own label (click or not) as an input of every model, where the
    /// event is strictly earlier than the sample (an event of the sample's own second gets "not yet
    /// known"): a movie rated 1 and one rated 5 are different events. On by default: on real
    /// ml-100k (development copy, 3 seeds) it lifts din's test AUC from 0.7675 to 0.7842, base's
    /// from 0.7845 to 0.7859, and leaves din's on the synthetic `small` preset where it was
    /// (0.8053 → 0.8048); see README, *Results*.
    pub history_feedback: bool,
    /// Embeds each user's id (the default). `false` fits no user vocabulary: every user is the
    /// one out-of-vocabulary user, so a model knows a user only through their history (and side
    /// features), as it knows a user first seen in test. A diagnostic of what attention reads off
    /// a history that a per-user embedding does not already hold (README, *Results*).
    pub user_id: bool,
    /// Side features of the user, from the dataset's user table (see [`UserFeature`]).
    pub user_features: Vec<UserFeature>,
    /// Side features of the item, target and history alike (see [`ItemFeature`]).
    pub item_features: Vec<ItemFeature>,
}

/// User side features (ml-100k's `u.user`, ml-1m's `users.dat`, RecBole's `.user`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserFeature {
    /// ml-1m's age groups (1, 18, 25, 35, 45, 50, 56); other datasets' ages are mapped to them.
    Age,
    Gender,
    Occupation,
}

/// Item side features, from the item table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemFeature {
    /// Release year, the last `(YYYY)` of the title.
    Year,
    /// All of the item's genres, a multi-valued feature (mean of their embeddings).
    Genres,
}

/// Which of the user's earlier events a history holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryRule {
    /// Every earlier event, of any label (shared/PROTOCOL.md).
    #[default]
    All,
    /// The earlier clicks (label 1) only, the last `L` of them: DIN's and most public
    /// pipelines' "behavior sequence". Sampled negatives never enter a history either way.
    Positives,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            label_threshold: 4.0,
            train_ratio: 0.8,
            valid_ratio: 0.1,
            history_len: 50,
            split: SplitRule::Ratio,
            min_user_events: 0,
            min_item_events: 0,
            negatives: 0,
            negative_seed: 1,
            history: HistoryRule::All,
            time_gap: false,
            history_feedback: true,
            user_id: true,
            user_features: Vec::new(),
            item_features: Vec::new(),
        }
    }
}

/// The split rules. All keep each user's events in time order, so no split sees the future of an
/// earlier one within a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitRule {
    /// Per user: the first `floor(train_ratio n)` events train, up to `floor((train_ratio +
    /// valid_ratio) n)` valid, the rest test (the default).
    #[default]
    Ratio,
    /// Per user: the last event test, the one before it valid, the rest train (a user with one
    /// event has it in test, one with two has valid and test).
    LeaveLastOut,
    /// Over all events in time order (timestamp, then file order): the first
    /// `floor(train_ratio N)` train, up to `floor((train_ratio + valid_ratio) N)` valid, the rest
    /// test. Every test event is at or after every train event.
    GlobalTime,
}

use crate::util::Choice;

impl Choice for UserFeature {
    const ALL: &'static [Self] = &[UserFeature::Age, UserFeature::Gender, UserFeature::Occupation];
    fn help(self) -> &'static str {
        match self {
            UserFeature::Age => "ml-1m's age groups (1, 18, 25, 35, 45, 50, 56); other datasets' ages are mapped to them",
            UserFeature::Gender | UserFeature::Occupation => "",
        }
    }
}

impl Choice for ItemFeature {
    const ALL: &'static [Self] = &[ItemFeature::Year, ItemFeature::Genres];
    fn help(self) -> &'static str {
        match self {
            ItemFeature::Year => "release year, the last (YYYY) of the title",
            ItemFeature::Genres => "all of the item's genres, a multi-valued feature (mean of their embeddings)",
        }
    }
}

impl Choice for HistoryRule {
    const ALL: &'static [Self] = &[HistoryRule::All, HistoryRule::Positives];
    fn help(self) -> &'static str {
        match self {
            HistoryRule::All => "every earlier event, of any label (shared/PROTOCOL.md)",
            HistoryRule::Positives => "the earlier clicks only, the last L of them (DIN's behavior sequence)",
        }
    }
}

impl Choice for SplitRule {
    const ALL: &'static [Self] = &[SplitRule::Ratio, SplitRule::LeaveLastOut, SplitRule::GlobalTime];
    fn help(self) -> &'static str {
        match self {
            SplitRule::Ratio => "per user: the first floor(train_ratio n) events train, up to floor((train_ratio + valid_ratio) n) valid, the rest test (the default)",
            SplitRule::LeaveLastOut => "per user: the last event test, the one before it valid, the rest train",
            SplitRule::GlobalTime => "over all events in time order: the first floor(train_ratio N) train, then valid, then test",
        }
    }
}

impl Choice for Split {
    const ALL: &'static [Self] = &Split::ALL;
}

/// A ratio in [0, 1] read as the exact decimal it was written as (the shortest decimal that reads
/// back to the same `f64`, so `0.7` is 7/10, not 0.6999…): `num / 10^9`. Bounds are then integer
/// arithmetic, as the protocol asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    num: i64,
}

impl Decimal {
    /// The denominator: 9 decimal places, so `n · num` fits an `i64` for any `n` below 9 · 10^9.
    const ONE: i64 = 1_000_000_000;

    fn of(r: f64, key: &str) -> Result<Decimal> {
        let text = format!("{r}");
        let bad = || Error::config(format!("{key} must be a decimal in [0, 1] with at most 9 decimal places, got {text}"));
        if !(0.0..=1.0).contains(&r) {
            return Err(bad());
        }
        let (int, frac) = text.split_once('.').unwrap_or((text.as_str(), ""));
        if frac.len() > 9 || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let int: i64 = int.parse().map_err(|_| bad())?;
        let frac: i64 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().map_err(|_| bad())? };
        Ok(Decimal { num: int * Decimal::ONE + frac })
    }

    fn plus(self, other: Decimal) -> Decimal {
        Decimal { num: self.num + other.num }
    }
}

impl ProtocolConfig {
    pub fn validate(&self) -> Result<()> {
        if !self.label_threshold.is_finite() {
            return Err(Error::config("protocol.label_threshold must be a finite number"));
        }
        if !(self.train_ratio > 0.0 && self.train_ratio < 1.0) {
            return Err(Error::config(format!("protocol.train_ratio must be in (0, 1), got {}", self.train_ratio)));
        }
        let (t, v) = (Decimal::of(self.train_ratio, "protocol.train_ratio")?, Decimal::of(self.valid_ratio, "protocol.valid_ratio")?);
        if !(self.valid_ratio >= 0.0 && t.plus(v).num <= Decimal::ONE) {
            return Err(Error::config(format!(
                "protocol.valid_ratio must be >= 0 with train_ratio + valid_ratio <= 1, got {}",
                self.valid_ratio
            )));
        }
        if self.negatives > 1000 {
            return Err(Error::config(format!("protocol.negatives must be at most 1000, got {}", self.negatives)));
        }
        if self.min_user_events > 1_000_000 || self.min_item_events > 1_000_000 {
            return Err(Error::config("protocol.min_user_events / min_item_events must be at most 1000000"));
        }
        let mut seen = std::collections::HashSet::new();
        if !self.user_features.iter().all(|f| seen.insert(format!("{f:?}"))) || !self.item_features.iter().all(|f| seen.insert(format!("{f:?}"))) {
            return Err(Error::config("protocol.user_features / item_features list a feature twice"));
        }
        if self.history_len == 0 || self.history_len > 10_000 {
            return Err(Error::config(format!("protocol.history_len must be in 1..=10000, got {}", self.history_len)));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Split {
    Train = 0,
    Valid = 1,
    Test = 2,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

/// Every event in protocol order (user, then timestamp, then file order), with raw ids.
#[derive(Debug, Clone, Default)]
pub struct Events {
    pub user: Vec<i64>,
    pub item: Vec<i64>,
    pub timestamp: Vec<i64>,
    pub label: Vec<f32>,
    pub split: Vec<Split>,
    /// Index of the first event of this event's user.
    pub user_start: Vec<u32>,
    /// 0-based line order of the event in the input log (for tracing a sample back to its file);
    /// a sampled negative carries its positive's.
    pub row: Vec<u32>,
    /// The event's history ends before this index: `k` for a logged event, its positive's index
    /// for a sampled negative (which shares its positive's history).
    pub history_end: Vec<u32>,
    /// The logged events come first; sampled negatives (if any) follow from this index.
    pub logged: usize,
}

impl Events {
    pub fn len(&self) -> usize {
        self.user.len()
    }
    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }
    /// The history of event `k`: at most `l` earlier logged events of the same user, oldest first.
    pub fn history(&self, k: usize, l: usize) -> Range<usize> {
        history_range(self.user_start[k], self.history_end[k] as usize, l)
    }
    /// Indices of the events in `split`, in protocol order.
    pub fn indices(&self, split: Split) -> Vec<usize> {
        (0..self.len()).filter(|&k| self.split[k] == split).collect()
    }
}

/// The history of event `k` whose user's first event is `user_start`: at most `l` earlier events,
/// never `k` itself or anything after it.
pub fn history_range(user_start: u32, k: usize, l: usize) -> Range<usize> {
    (user_start as usize).max(k.saturating_sub(l))..k
}

/// The k-core of `ratings` (see [`ProtocolConfig::min_user_events`]), file order kept; returns the
/// frame and its number of rows removed.
pub fn k_core(ratings: &DataFrame, min_user: usize, min_item: usize) -> Result<(DataFrame, usize)> {
    let mut df = ratings.clone();
    if min_user <= 1 && min_item <= 1 {
        return Ok((df, 0));
    }
    loop {
        let before = df.height();
        df = df
            .lazy()
            .filter(col("user_id").len().over([col("user_id")])?.gt_eq(lit(min_user as u32)))
            .filter(col("item_id").len().over([col("item_id")])?.gt_eq(lit(min_item as u32)))
            .collect()?;
        if df.height() == before {
            return Ok((df, ratings.height() - before));
        }
    }
}

/// The protocol's samples: the logged events of [`build_events`], then, when
/// `protocol.negatives` is set, the sampled negatives of [`crate::data::negatives`].
pub fn build_samples(ds: &Dataset, cfg: &ProtocolConfig) -> Result<Events> {
    let mut ev = build_events(ds, cfg)?;
    super::negatives::add_sampled_negatives(&mut ev, cfg.negatives, cfg.negative_seed);
    Ok(ev)
}

/// Applies the protocol to a dataset's rating log: its logged events, in protocol order.
pub fn build_events(ds: &Dataset, cfg: &ProtocolConfig) -> Result<Events> {
    cfg.validate()?;
    let n_rows = ds.ratings.height();
    if n_rows > u32::MAX as usize {
        return Err(Error::dataset(&ds.root, format!("{n_rows} ratings: more than this build supports (2^32)")));
    }
    // `row` is the line order in the file, kept through the k-core filter: it breaks timestamp ties.
    let rows = ds.ratings.clone().lazy().with_row_index("row", None).collect()?;
    let (rows, _) = k_core(&rows, cfg.min_user_events, cfg.min_item_events)?;
    if rows.height() == 0 {
        return Err(Error::dataset(&ds.root, "no events left after the k-core filter (protocol.min_user_events / min_item_events)"));
    }
    // Exact decimals, integer arithmetic: floor(n · num / 10^9) (0.7 of 90 is 63, 0.7 + 0.1 is 0.8).
    let (train, valid) = (Decimal::of(cfg.train_ratio, "protocol.train_ratio")?, Decimal::of(cfg.valid_ratio, "protocol.valid_ratio")?);
    let ratio_split = |n: Expr| {
        let bound = |r: Decimal| (n.clone() * lit(r.num)).floor_div(lit(Decimal::ONE));
        (bound(train), bound(train.plus(valid)))
    };
    // A log with a 0/1 label column (generic logs) is labeled by it; a rating log by the threshold.
    let label = if rows.get_column_names().iter().any(|c| c.as_str() == "label") {
        col("label").cast(DataType::Float32)
    } else {
        col("rating").gt_eq(lit(cfg.label_threshold)).cast(DataType::Float32)
    };
    let mut lf = rows.lazy();
    // The position that decides the split, and the bounds it is compared with.
    let (rank, train_end, valid_end) = match cfg.split {
        SplitRule::Ratio => {
            let (t, v) = ratio_split(col("n"));
            (col("pos"), t, v)
        }
        SplitRule::LeaveLastOut => (col("pos"), col("n") - lit(2i64), col("n") - lit(1i64)),
        SplitRule::GlobalTime => {
            lf = lf
                .sort_by_exprs([col("timestamp"), col("row")], SortMultipleOptions::default())
                .with_row_index("global", None)
                .with_column(col("global").cast(DataType::Int64));
            let (t, v) = ratio_split(col("global").len().cast(DataType::Int64));
            (col("global"), t, v)
        }
    };
    let df = lf
        // Equal timestamps keep their order in the input file.
        .sort_by_exprs([col("user_id"), col("timestamp"), col("row")], SortMultipleOptions::default())
        .with_columns([
            label.alias("label"),
            (col("row").cum_count(false).over([col("user_id")])?.cast(DataType::Int64) - lit(1i64)).alias("pos"),
            col("row").len().over([col("user_id")])?.cast(DataType::Int64).alias("n"),
        ])
        .with_column(
            when(rank.clone().lt(train_end))
                .then(lit(Split::Train as u8 as i32))
                .when(rank.lt(valid_end))
                .then(lit(Split::Valid as u8 as i32))
                .otherwise(lit(Split::Test as u8 as i32))
                .cast(DataType::Int32)
                .alias("split"),
        )
        .select([col("user_id"), col("item_id"), col("timestamp"), col("label"), col("split"), col("pos"), col("row")])
        .collect()?;

    let user: Vec<i64> = df.column("user_id")?.i64()?.into_no_null_iter().collect();
    let pos = df.column("pos")?.i64()?;
    let user_start: Vec<u32> = pos.into_no_null_iter().enumerate().map(|(k, p)| (k as i64 - p) as u32).collect();
    let split = df
        .column("split")?
        .i32()?
        .into_no_null_iter()
        .map(|s| match s {
            0 => Split::Train,
            1 => Split::Valid,
            _ => Split::Test,
        })
        .collect();
    Ok(Events {
        user,
        item: df.column("item_id")?.i64()?.into_no_null_iter().collect(),
        timestamp: df.column("timestamp")?.i64()?.into_no_null_iter().collect(),
        label: df.column("label")?.f32()?.into_no_null_iter().collect(),
        split,
        user_start,
        row: df.column("row")?.idx()?.into_no_null_iter().collect(),
        history_end: (0..df.height() as u32).collect(),
        logged: df.height(),
    })
}
