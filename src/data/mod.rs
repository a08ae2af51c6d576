//! Data: raw MovieLens-style files → a canonical [`Dataset`] (rating log + item table + optional
//! user table) → the `ml-ctr-v1` protocol ([`protocol`]) → leakage-free samples.
//!
//! Canonical columns, whatever the source format:
//! - ratings: `user_id: i64`, `item_id: i64`, `rating: f64`, `timestamp: i64`, in file order;
//! - items: `item_id: i64`, `title: str`, `genres: str` (`|`-separated, in the file's order);
//! - users (optional): `user_id: i64`, `gender: str`, `age: i64`, `occupation: i64`, `zip: str`.
pub mod movielens;
pub mod protocol;
pub mod synth;

use crate::error::{Error, Result};
use polars::prelude::DataFrame;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// On-disk layouts the loaders understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// ml-1m / ml-10m layout: `ratings.dat`, `movies.dat`, optional `users.dat`, `::`-separated.
    Ml1m,
}

impl Format {
    /// Detects the layout from the files present in `dir`.
    pub fn detect(dir: &Path) -> Result<Format> {
        if !dir.is_dir() {
            return Err(Error::dataset(dir, "not a folder (expected a MovieLens-style dataset folder)"));
        }
        if dir.join("ratings.dat").is_file() {
            return Ok(Format::Ml1m);
        }
        Err(Error::dataset(
            dir,
            "no known dataset layout here: expected ratings.dat + movies.dat (ml-1m / ml-10m layout); \
             run `attnrec synth --out DIR` to generate one",
        ))
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
    /// Loads `dir`, detecting the format unless one is given.
    pub fn load(dir: &Path, format: Option<Format>) -> Result<Dataset> {
        let format = match format {
            Some(f) => f,
            None => Format::detect(dir)?,
        };
        match format {
            Format::Ml1m => movielens::load_ml1m(dir),
        }
    }
}

/// Reads a whole text file, decoding UTF-8 and falling back to latin-1 (older MovieLens titles).
pub(crate) fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => e.into_bytes().iter().map(|&b| b as char).collect(),
    })
}
