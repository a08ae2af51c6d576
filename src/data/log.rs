//! Generic interaction logs: one CSV/TSV or Parquet file whose columns are named in the config's
//! `[data.log]` table, for data that is not in a MovieLens or RecBole layout.
//!
//! ```toml
//! [data]
//! path = "logs"          # the folder holding the file
//! format = "log"
//! [data.log]
//! file = "clicks.parquet" # .csv, .tsv or .parquet
//! user = "uid"
//! item = "iid"
//! timestamp = "ts"
//! label = "clicked"       # a 0/1 column; or `rating = "stars"` and the protocol's threshold
//! category = "cat"        # optional: the item's category, used as its genre
//! ```
//!
//! Ids are tokens (integers, or any other string, mapped by [`super::token_id`]); timestamps must be
//! whole numbers of seconds. An item's category is the one
//! on its first row in file order; later rows with another category do not change it.
use super::text::{decode, num, rating, timestamp, Table};
use super::{ItemsBuilder, PartSelect, RatingsBuilder, Tables};
use crate::error::{Error, Result};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// The column mapping of a generic log (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    pub file: String,
    pub user: String,
    pub item: String,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Field separator of a CSV file [default: ',' for .csv, tab for .tsv].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<char>,
}

impl LogSpec {
    pub fn validate(&self) -> Result<()> {
        if self.rating.is_some() == self.label.is_some() {
            return Err(Error::config("[data.log] needs exactly one of `rating` (with protocol.label_threshold) or `label` (a 0/1 column)"));
        }
        if self.separator.is_some_and(|c| !c.is_ascii()) {
            return Err(Error::config("[data.log] separator must be one ASCII character"));
        }
        Ok(())
    }

    /// The value column: `rating` or `label`.
    fn value(&self) -> &str {
        self.rating.as_deref().or(self.label.as_deref()).expect("validated")
    }
}

/// One parsed row before it is split into tables.
struct Rows {
    ratings: RatingsBuilder,
    labels: bool,
    items: ItemsBuilder,
    category: HashMap<i64, String>,
}

impl Rows {
    fn new(spec: &LogSpec) -> Rows {
        Rows { ratings: RatingsBuilder::default(), labels: spec.label.is_some(), items: ItemsBuilder::default(), category: HashMap::new() }
    }

    fn push(&mut self, user: i64, item: i64, value: f64, ts: i64, category: Option<String>, path: &Path, line: usize) -> Result<()> {
        if self.labels && value != 0.0 && value != 1.0 {
            return Err(Error::parse(path, line, format!("label must be 0 or 1, got {value}")));
        }
        self.ratings.push(user, item, value, ts);
        if let Some(c) = category {
            if !self.category.contains_key(&item) {
                self.items.push(item, String::new(), [c.as_str()], path, line)?;
                self.category.insert(item, c);
            }
        }
        Ok(())
    }

    fn finish(self, path: &Path, select: PartSelect) -> Result<Tables> {
        let mut ratings = match select {
            PartSelect::All => self.ratings.finish(path)?,
            PartSelect::AllMaybeEmpty | PartSelect::One { .. } => self.ratings.finish_empty_ok()?,
        };
        if self.labels {
            let label = ratings.column("rating")?.cast(&DataType::Float32)?.with_name("label".into());
            ratings.with_column(label)?;
        }
        Ok((ratings, self.items.finish()?, None))
    }
}

/// Loads the log `spec` names in `dir`: one file, or a folder of that name holding parts
/// ([`super::parts`]), each read by its own extension (the folder's where a part has none).
pub(crate) fn load(dir: &Path, spec: &LogSpec, select: PartSelect) -> Result<Tables> {
    spec.validate()?;
    let path = dir.join(&spec.file);
    if !path.is_file() && !path.is_dir() {
        return Err(Error::dataset(dir, format!("{} is missing (named by [data.log] file)", spec.file)));
    }
    let mut rows = Rows::new(spec);
    for part in super::parts::resolve(&path, select)? {
        let kind = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        match kind(&part).filter(|k| ["parquet", "csv", "tsv", "txt"].contains(&k.as_str())).or_else(|| kind(&path)).as_deref() {
            Some("parquet") => load_parquet(&part, spec, &mut rows)?,
            Some("csv") | Some("tsv") | Some("txt") => load_csv(&part, &path, spec, &mut rows)?,
            _ => return Err(Error::dataset(&part, "unknown file type: [data.log] file must end in .csv, .tsv or .parquet")),
        }
    }
    rows.finish(&path, select)
}

/// Appends the rows of the CSV/TSV file `path` (a part of `whole`, or `whole` itself).
fn load_csv(path: &Path, whole: &Path, spec: &LogSpec, rows: &mut Rows) -> Result<()> {
    let is_tsv = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
    // Spark names every CSV part `.csv` whatever its separator: a folder `clicks.tsv` holds TSV.
    let tsv = is_tsv(whole) || is_tsv(path);
    let sep = spec.separator.map_or(if tsv { b'\t' } else { b',' }, |c| c as u8);
    let mut t = Table::open(path, sep, true, true)?;
    let col = |t: &Table, name: &str| t.column(&format!("'{name}'"), |h| h == name);
    let (u, i, ts, v) = (col(&t, &spec.user)?, col(&t, &spec.item)?, col(&t, &spec.timestamp)?, col(&t, spec.value())?);
    let cat = spec.category.as_deref().map(|c| col(&t, c)).transpose()?;
    let need = [u, i, ts, v, cat.unwrap_or(0)].into_iter().max().unwrap_or(0) + 1;
    while let Some((no, rec)) = t.next(need)? {
        let value = if rows.labels { num(&rec[v], &spec.value().to_string(), path, no)? } else { rating(&rec[v], path, no)? };
        let category = cat.map(|c| decode(&rec[c]));
        let id = |c: usize, name: &str| -> Result<i64> {
            let token = decode(&rec[c]);
            if token.trim().is_empty() {
                return Err(Error::parse(path, no, format!("{name} is empty")));
            }
            Ok(super::token_id(&token))
        };
        rows.push(id(u, &spec.user)?, id(i, &spec.item)?, value, timestamp(&rec[ts], path, no)?, category, path, no)?;
    }
    Ok(())
}

/// Appends the rows of the Parquet file `path`.
fn load_parquet(path: &Path, spec: &LogSpec, rows: &mut Rows) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let df = ParquetReader::new(file).finish().map_err(|e| Error::parse(path, 0, format!("not a readable Parquet file: {e}")))?;
    let column = |name: &str, dtype: DataType| -> Result<Series> {
        let c = df.column(name).map_err(|_| {
            let names: Vec<String> = df.get_column_names().iter().map(|n| n.to_string()).collect();
            Error::parse(path, 0, format!("missing column '{name}' (columns: {})", names.join(", ")))
        })?;
        let cannot = || Error::parse(path, 0, format!("column '{name}' ({}) cannot be read as {dtype}", c.dtype()));
        let original = c.as_materialized_series();
        let s = original.strict_cast(&dtype).map_err(|_| cannot())?;
        if dtype == DataType::Int64 && original.dtype().is_float() {
            // A float column holding ids or seconds must hold whole numbers only.
            let back = s.cast(&DataType::Float64)?;
            let f = original.cast(&DataType::Float64)?;
            if back.f64()?.iter().zip(f.f64()?.iter()).any(|(a, b)| a != b) {
                return Err(cannot());
            }
        }
        if let Some(row) = s.is_null().iter().position(|n| n == Some(true)) {
            return Err(Error::parse(path, 0, format!("column '{name}' is null in row {}", row + 1)));
        }
        Ok(s)
    };
    // Id columns of strings hold tokens; any other type must cast to whole numbers.
    let ids = |name: &str| -> Result<Series> {
        match df.column(name).map(|c| c.dtype().clone()) {
            Ok(DataType::String) => {
                let s = column(name, DataType::String)?;
                let tokens = s.str()?;
                // An empty token is no id, as in CSV (nulls were refused by `column`).
                if let Some(row) = tokens.iter().position(|t| t.is_none_or(|t| t.trim().is_empty())) {
                    return Err(Error::parse(path, 0, format!("row {}: {name} is empty", row + 1)));
                }
                let v: Vec<i64> = tokens.iter().map(|t| super::token_id(t.unwrap_or(""))).collect();
                Ok(Series::new(name.into(), v))
            }
            _ => column(name, DataType::Int64),
        }
    };
    let u = ids(&spec.user)?;
    let i = ids(&spec.item)?;
    let ts = column(&spec.timestamp, DataType::Int64)?;
    let v = column(spec.value(), DataType::Float64)?;
    let cat = spec.category.as_deref().map(|c| column(c, DataType::String)).transpose()?;
    let (u, i, ts, v) = (u.i64()?, i.i64()?, ts.i64()?, v.f64()?);
    let cats = cat.as_ref().map(|c| c.str()).transpose()?;
    for k in 0..df.height() {
        let value = v.get(k).expect("no nulls");
        if !rows.labels && !(value.is_finite() && value >= 0.0) {
            return Err(Error::parse(path, 0, format!("row {}: rating must be a finite number >= 0, got {value}", k + 1)));
        }
        let category = cats.map(|c| c.get(k).expect("no nulls").to_string());
        let at = |e: Error| match e {
            Error::Parse { path, msg, .. } => Error::parse(path, 0, format!("row {}: {msg}", k + 1)),
            other => other,
        };
        rows.push(u.get(k).expect("no nulls"), i.get(k).expect("no nulls"), value, ts.get(k).expect("no nulls"), category, path, 0)
            .map_err(at)?;
    }
    Ok(())
}
