//! Data: raw MovieLens-style files → a canonical [`Dataset`] (rating log + item table + optional
//! user table) → the `ml-ctr-v1` protocol ([`protocol`]) → leakage-free samples.
//!
//! One module per on-disk format ([`ml100k`], [`movielens`] for the `::` layouts, [`mlcsv`],
//! [`atomic`]); each produces the same canonical columns:
//! - ratings: `user_id: i64`, `item_id: i64`, `rating: f64`, `timestamp: i64` (seconds), in file
//!   order;
//! - items: `item_id: i64`, `title: str`, `genres: str` (`|`-separated, in the file's order; empty
//!   when the item has none, e.g. ml-25m's `(no genres listed)`);
//! - users (optional): `user_id: i64`, `gender: str`, `age: i64` (null when unknown),
//!   `occupation: str` (ml-1m's codes as written, ml-100k's names), `zip: str`.
pub mod atomic;
pub mod fetch;
pub mod log;
pub mod negatives;
pub mod ml100k;
pub mod parts;
pub mod mlcsv;
pub mod movielens;
pub mod protocol;
pub mod synth;
pub(crate) mod text;

use crate::error::{Error, Result};
pub use parts::PartSelect;
use polars::prelude::{Column, DataFrame};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The canonical `i64` id of an id token of a layout that allows string ids (RecBole atomic files,
/// generic logs): the integer the token spells when it is one in canonical form (`42`, `-7`, not
/// `007` or `+7`), otherwise a 62-bit FNV-1a hash of its bytes placed in `[-2^63, -2^62)`, where no
/// written integer id plausibly lies. The same token maps to the same id in every file, so a run
/// scores string ids of any later file consistently; two tokens share an id with probability about
/// `n² / 2^63` for `n` distinct tokens (1e-7 for ten million).
pub fn token_id(token: &str) -> i64 {
    let t = token.trim();
    if let Ok(v) = t.parse::<i64>() {
        if v.to_string() == t {
            return v;
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in t.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    i64::MIN | (h >> 2) as i64
}

impl Format {
    /// Whether ids may be string tokens (mapped by [`token_id`]); the MovieLens layouts have
    /// integer ids only.
    pub fn string_ids(self) -> bool {
        matches!(self, Format::Atomic | Format::Log)
    }
}

/// On-disk layouts the loaders understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// ml-100k: `u.data` (tab-separated user, item, rating, timestamp), `u.item` (`|`, latin-1,
    /// 5 fields and 19 genre flags), optional `u.user`.
    Ml100k,
    /// ml-1m / ml-10m: `ratings.dat`, `movies.dat`, optional `users.dat`, `::`-separated.
    #[serde(alias = "ml10m")]
    Ml1m,
    /// ml-20m / ml-25m / ml-32m / ml-latest(-small): `ratings.csv`, `movies.csv` with headers.
    #[serde(alias = "ml20m", alias = "ml25m", alias = "ml32m", alias = "ml-latest")]
    MlCsv,
    /// RecBole atomic files: `NAME.inter`, optional `NAME.item` and `NAME.user`, tab-separated
    /// with `field:type` headers.
    #[serde(alias = "recbole")]
    Atomic,
    /// A generic CSV/TSV/Parquet interaction log whose columns `[data.log]` names.
    Log,
}

impl crate::util::Choice for Format {
    const ALL: &'static [Self] = &[Format::Ml100k, Format::Ml1m, Format::MlCsv, Format::Atomic, Format::Log];
    fn help(self) -> &'static str {
        match self {
            Format::Ml100k => "ml-100k: u.data, u.item, optional u.user",
            Format::Ml1m => "ml-1m / ml-10m: ratings.dat, movies.dat, optional users.dat",
            Format::MlCsv => "ml-20m / ml-25m / ml-32m / ml-latest: ratings.csv, movies.csv",
            Format::Atomic => "RecBole atomic files: NAME.inter, optional NAME.item and NAME.user",
            Format::Log => "a generic CSV/TSV/Parquet interaction log whose columns [data.log] names",
        }
    }
}

impl Format {
    /// The name used on the command line and in configs (`ml100k`, `ml1m`, `ml-csv`, `atomic`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Ml100k => "ml100k",
            Format::Ml1m => "ml1m",
            Format::MlCsv => "ml-csv",
            Format::Atomic => "atomic",
            Format::Log => "log",
        }
    }

    /// Detects the layout from the files present in `dir`.
    pub fn detect(dir: &Path) -> Result<Format> {
        if !dir.is_dir() {
            return Err(Error::dataset(dir, "not a folder (expected a MovieLens-style dataset folder)"));
        }
        let markers = [
            ("u.data", Format::Ml100k),
            ("ratings.dat", Format::Ml1m),
            ("ratings.csv", Format::MlCsv),
        ];
        let found: Vec<Format> = markers.iter().filter(|(f, _)| parts::exists(dir, f)).map(|&(_, fmt)| fmt).collect();
        let inter = atomic::inter_files(dir)?;
        match (found.as_slice(), inter.len()) {
            ([f], 0) => Ok(*f),
            ([], 1) => Ok(Format::Atomic),
            ([], 0) => Err(Error::dataset(
                dir,
                "no known dataset layout here: expected u.data (ml-100k), ratings.dat (ml-1m, ml-10m), \
                 ratings.csv (ml-20m and later) or one NAME.inter (RecBole); \
                 `attnrec synth --out DIR` generates one",
            )),
            _ => Err(Error::dataset(dir, "holds more than one dataset layout; name one with --format")),
        }
    }
}

/// Where a dataset is and how to read it: the `[data]` section of a run config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset folder.
    pub path: PathBuf,
    /// Layout; detected from the folder's files when absent (`log` when `[data.log]` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The column mapping of a generic log (`format = "log"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<log::LogSpec>,
}

impl DataConfig {
    pub fn new(path: PathBuf) -> DataConfig {
        DataConfig { path, format: None, log: None }
    }

    /// The same source read from another folder (`eval --data`, `score --history`).
    pub fn at(&self, path: &Path) -> DataConfig {
        DataConfig { path: path.to_path_buf(), ..self.clone() }
    }

    pub fn validate(&self) -> Result<()> {
        match (&self.format, &self.log) {
            (Some(Format::Log) | None, Some(spec)) => spec.validate(),
            (Some(Format::Log), None) => Err(Error::config("data.format = \"log\" needs a [data.log] table naming the file and its columns")),
            (Some(f), Some(_)) => Err(Error::config(format!("[data.log] is only for format = \"log\", not \"{}\"", f.name()))),
            (_, None) => Ok(()),
        }
    }

    /// The layout: given, implied by `[data.log]`, or detected from the folder.
    pub fn resolve_format(&self) -> Result<Format> {
        match (self.format, &self.log) {
            (Some(f), _) => Ok(f),
            (None, Some(_)) => Ok(Format::Log),
            (None, None) => Format::detect(&self.path),
        }
    }
}

/// A loaded dataset in canonical columns (see the module docs).
#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub format: Format,
    pub ratings: DataFrame,
    pub items: DataFrame,
    pub users: Option<DataFrame>,
}

impl Dataset {
    /// Loads the dataset a `[data]` section describes.
    pub fn open(data: &DataConfig) -> Result<Dataset> {
        Dataset::open_parts(data, PartSelect::All)
    }

    /// [`Dataset::open`], reading only the parts `select` picks where the ratings file is a
    /// folder of parts ([`parts`]); the item and user tables are read whole.
    pub fn open_parts(data: &DataConfig, select: PartSelect) -> Result<Dataset> {
        data.validate()?;
        let dir = &data.path;
        if !dir.is_dir() {
            return Err(Error::dataset(dir, "not a folder (expected a MovieLens-style dataset folder)"));
        }
        let format = data.resolve_format()?;
        let (ratings, items, users) = match (format, &data.log) {
            (Format::Log, Some(spec)) => log::load(dir, spec, select)?,
            _ => return Dataset::load_parts(dir, Some(format), select),
        };
        Ok(Dataset { root: dir.to_path_buf(), format, ratings, items, users })
    }

    /// Loads `dir` in one of the fixed layouts, detecting it unless one is given.
    pub fn load(dir: &Path, format: Option<Format>) -> Result<Dataset> {
        Dataset::load_parts(dir, format, PartSelect::All)
    }

    fn load_parts(dir: &Path, format: Option<Format>, select: PartSelect) -> Result<Dataset> {
        let format = match format {
            Some(f) => f,
            None => Format::detect(dir)?,
        };
        if !dir.is_dir() {
            return Err(Error::dataset(dir, "not a folder (expected a MovieLens-style dataset folder)"));
        }
        let (ratings, items, users) = match format {
            Format::Ml100k => ml100k::load(dir, select)?,
            Format::Ml1m => movielens::load(dir, select)?,
            Format::MlCsv => mlcsv::load(dir, select)?,
            Format::Atomic if matches!(select, PartSelect::One { .. }) => {
                return Err(Error::dataset(dir, "RecBole atomic files are read whole: a history in parts needs a MovieLens layout or a generic log"))
            }
            Format::Atomic => atomic::load(dir)?,
            Format::Log => {
                return Err(Error::dataset(dir, "format log needs a [data.log] table naming the file and its columns (use --config FILE)"))
            }
        };
        Ok(Dataset { root: dir.to_path_buf(), format, ratings, items, users })
    }
}

/// What every source returns: ratings, items and (where the format has them) users.
pub(crate) type Tables = (DataFrame, DataFrame, Option<DataFrame>);

/// `dir/name`, required to exist.
pub(crate) fn required(dir: &Path, name: &str, format: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::dataset(dir, format!("{name} is missing (the {format} layout needs it)")))
    }
}

/// `dir/name`, the ratings file of a layout, required to exist as a file or as a folder of
/// parts ([`parts`]).
pub(crate) fn required_ratings(dir: &Path, name: &str, format: &str) -> Result<PathBuf> {
    if parts::exists(dir, name) {
        Ok(dir.join(name))
    } else {
        Err(Error::dataset(dir, format!("{name} is missing (the {format} layout needs it, as a file or a folder of parts)")))
    }
}

/// Reads the ratings file `path`, or the parts `select` picks of the folder `path`, through
/// `parse`, which appends one file's rows. Rows keep file order, parts their name order.
pub(crate) fn read_ratings(path: &Path, select: parts::PartSelect, mut parse: impl FnMut(&Path, &mut RatingsBuilder) -> Result<()>) -> Result<DataFrame> {
    let mut out = RatingsBuilder::default();
    for part in parts::resolve(path, select)? {
        parse(&part, &mut out)?;
    }
    match select {
        parts::PartSelect::All => out.finish(path),
        parts::PartSelect::AllMaybeEmpty | parts::PartSelect::One { .. } => out.finish_empty_ok(),
    }
}

/// `dir/name` if it exists.
pub(crate) fn optional(dir: &Path, name: &str) -> Option<PathBuf> {
    Some(dir.join(name)).filter(|p| p.is_file())
}

/// ml-10m and later write this where an item has no genres.
pub const NO_GENRES: &str = "(no genres listed)";

/// Collects the canonical rating columns while a source is parsed.
#[derive(Default)]
pub(crate) struct RatingsBuilder {
    user: Vec<i64>,
    item: Vec<i64>,
    rating: Vec<f64>,
    timestamp: Vec<i64>,
}

impl RatingsBuilder {
    pub fn push(&mut self, user: i64, item: i64, rating: f64, timestamp: i64) {
        self.user.push(user);
        self.item.push(item);
        self.rating.push(rating);
        self.timestamp.push(timestamp);
    }

    /// The rating log; an empty file is an error that names it.
    pub fn finish(self, path: &Path) -> Result<DataFrame> {
        if self.user.is_empty() {
            return Err(Error::parse(path, 0, if path.is_dir() { "no ratings in any part" } else { "no ratings in file" }));
        }
        self.finish_empty_ok()
    }

    /// The rating log, which may be empty (one part of a co-partitioned history may hold none).
    pub fn finish_empty_ok(self) -> Result<DataFrame> {
        Ok(DataFrame::new_infer_height(vec![
            Column::new("user_id".into(), self.user),
            Column::new("item_id".into(), self.item),
            Column::new("rating".into(), self.rating),
            Column::new("timestamp".into(), self.timestamp),
        ])?)
    }
}

/// Collects the canonical item columns; an id listed twice is an error naming its line.
#[derive(Default)]
pub(crate) struct ItemsBuilder {
    id: Vec<i64>,
    title: Vec<String>,
    genres: Vec<String>,
    seen: HashSet<i64>,
}

impl ItemsBuilder {
    /// `genres` in the file's order; empty names and [`NO_GENRES`] are dropped.
    pub fn push<'a>(
        &mut self,
        id: i64,
        title: String,
        genres: impl IntoIterator<Item = &'a str>,
        path: &Path,
        line: usize,
    ) -> Result<()> {
        if !self.seen.insert(id) {
            return Err(Error::parse(path, line, format!("item id {id} appears twice")));
        }
        let genres: Vec<&str> = genres.into_iter().map(str::trim).filter(|g| !g.is_empty() && *g != NO_GENRES).collect();
        self.id.push(id);
        self.title.push(title);
        self.genres.push(genres.join("|"));
        Ok(())
    }

    pub fn finish(self) -> Result<DataFrame> {
        Ok(DataFrame::new_infer_height(vec![
            Column::new("item_id".into(), self.id),
            Column::new("title".into(), self.title),
            Column::new("genres".into(), self.genres),
        ])?)
    }
}

/// Collects the canonical user columns; an id listed twice is an error naming its line.
#[derive(Default)]
pub(crate) struct UsersBuilder {
    id: Vec<i64>,
    gender: Vec<String>,
    age: Vec<Option<i64>>,
    occupation: Vec<String>,
    zip: Vec<String>,
    seen: HashSet<i64>,
}

impl UsersBuilder {
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        id: i64,
        gender: String,
        age: Option<i64>,
        occupation: String,
        zip: String,
        path: &Path,
        line: usize,
    ) -> Result<()> {
        if !self.seen.insert(id) {
            return Err(Error::parse(path, line, format!("user id {id} appears twice")));
        }
        self.id.push(id);
        self.gender.push(gender);
        self.age.push(age);
        self.occupation.push(occupation);
        self.zip.push(zip);
        Ok(())
    }

    pub fn finish(self) -> Result<DataFrame> {
        Ok(DataFrame::new_infer_height(vec![
            Column::new("user_id".into(), self.id),
            Column::new("gender".into(), self.gender),
            Column::new("age".into(), self.age),
            Column::new("occupation".into(), self.occupation),
            Column::new("zip".into(), self.zip),
        ])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::Choice;

    /// Every closed set of names that configs and the command line share reads its own names
    /// back, and refuses others.
    #[test]
    fn every_choice_reads_its_names_back() {
        fn check<T: Choice + PartialEq + std::fmt::Debug>() {
            for &v in T::ALL {
                assert_eq!(T::parse_name(&v.name_of()), Some(v));
            }
            assert_eq!(T::parse_name("no_such_value"), None);
        }
        use crate::data::protocol::{HistoryRule, ItemFeature, Split, SplitRule, UserFeature};
        check::<Format>();
        check::<Split>();
        check::<SplitRule>();
        check::<HistoryRule>();
        check::<UserFeature>();
        check::<ItemFeature>();
        check::<crate::data::synth::Preset>();
        check::<crate::train::Monitor>();
        assert_eq!(SplitRule::LeaveLastOut.name_of(), "leave_last_out");
    }

    #[test]
    fn format_names_agree_across_cli_config_and_messages() {
        for &f in Format::ALL {
            assert_eq!(f.name_of(), f.name());
            assert_eq!(Format::parse_name(f.name()), Some(f));
        }
        for alias in ["ml10m", "ml25m", "recbole"] {
            assert!(Format::parse_name(alias).is_some(), "{alias}");
        }
        let f: Format = serde_json::from_str("\"ml25m\"").unwrap();
        assert_eq!(f, Format::MlCsv);
    }
}
