//! Candidate rows: finding the id and time columns of the input and reading ids as the run's
//! dataset wrote them (integers, or tokens for string-id datasets).
use crate::error::{Error, Result};
use crate::features::Row;
use std::path::Path;

/// One input row: its fields as read, its model input, and its raw user id (for top-k).
pub(super) struct Candidate {
    pub record: csv::StringRecord,
    pub row: Row,
    pub user: i64,
}

pub(super) fn column(headers: &csv::StringRecord, name: &str, path: &Path) -> Result<usize> {
    headers.iter().position(|h| h == name).ok_or_else(|| {
        let have: Vec<&str> = headers.iter().collect();
        Error::dataset(path, format!("no column '{name}' in the header (columns: {})", have.join(", ")))
    })
}

pub(super) fn parse_int(record: &csv::StringRecord, col: usize, name: &str, path: &Path, line: u64) -> Result<i64> {
    let v = record.get(col).unwrap_or("").trim();
    v.parse::<i64>().map_err(|_| Error::parse(path, line as usize, format!("column '{name}': '{v}' is not an integer")))
}

/// A user or item id as written: a token for a run whose dataset has string ids, else an integer
/// (`None` when it is not one).
pub fn parse_id_token(v: &str, string_ids: bool) -> Option<i64> {
    let v = v.trim();
    match (string_ids, v.parse::<i64>()) {
        (true, _) if !v.is_empty() => Some(crate::data::token_id(v)),
        (false, Ok(id)) => Some(id),
        _ => None,
    }
}

/// A candidate's user or item id (see [`parse_id_token`]).
pub(super) fn parse_id(record: &csv::StringRecord, col: usize, name: &str, path: &Path, line: u64, tokens: bool) -> Result<i64> {
    let v = record.get(col).unwrap_or("").trim();
    parse_id_token(v, tokens).ok_or_else(|| {
        Error::parse(path, line as usize, format!("column '{name}': '{v}' is not an integer id (the run's dataset has integer ids)"))
    })
}
