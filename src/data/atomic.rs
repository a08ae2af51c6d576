//! RecBole atomic files: a folder `NAME/` holding `NAME.inter` and optionally `NAME.item` and
//! `NAME.user`, tab-separated, no quoting, each header field written `name:type` with type one of
//! `token`, `token_seq`, `float`, `float_seq`. Columns are found by name:
//! - `.inter`: `user_id`, `item_id`, `rating`, `timestamp` (RecBole writes it as `float`);
//! - `.item`: `item_id`, a title (`movie_title` or `title`), genres (`genre`, `genres`, `class` or
//!   `categories`; a `token_seq` is space-separated);
//! - `.user`: `user_id`, and where present `age`, `gender`, `occupation`, `zip_code`.
//!
//! Ids are tokens: integer tokens (RecBole's MovieLens conversions) are kept as they are, any other
//! token (Amazon's ASINs, say) becomes its [`super::token_id`].
use super::text::{decode, num, rating, timestamp, Table};
use super::{ItemsBuilder, RatingsBuilder, Tables, UsersBuilder};
use crate::error::{Error, Result};
use polars::prelude::DataFrame;
use std::path::{Path, PathBuf};

const TYPES: [&str; 4] = ["token", "token_seq", "float", "float_seq"];

/// The `*.inter` files directly in `dir`, sorted.
pub fn inter_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_some_and(|e| e == "inter") && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn load(dir: &Path) -> Result<Tables> {
    let inter = match inter_files(dir)?.as_slice() {
        [one] => one.clone(),
        [] => return Err(Error::dataset(dir, "no NAME.inter file (the RecBole atomic layout needs one)")),
        many => {
            let names: Vec<String> = many.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
            return Err(Error::dataset(dir, format!("more than one .inter file ({}): keep one per folder", names.join(", "))));
        }
    };
    let ratings = parse_inter(&inter)?;
    let item_path = inter.with_extension("item");
    let items = if item_path.is_file() { parse_items(&item_path)? } else { ItemsBuilder::default().finish()? };
    let user_path = inter.with_extension("user");
    let users = user_path.is_file().then(|| parse_users(&user_path)).transpose()?;
    Ok((ratings, items, users))
}

/// An atomic file's table with its header split into names, the types checked.
fn open(path: &Path) -> Result<(Table<'_>, Vec<String>)> {
    let t = Table::open(path, b'\t', true, false)?;
    let mut names = Vec::with_capacity(t.header.len());
    for field in &t.header {
        let (name, ty) = field.rsplit_once(':').ok_or_else(|| {
            Error::parse(path, 1, format!("header field {field:?} is not written name:type"))
        })?;
        if !TYPES.contains(&ty) {
            return Err(Error::parse(path, 1, format!("header field {field:?}: type must be one of {}", TYPES.join(", "))));
        }
        names.push(name.to_string());
    }
    Ok((t, names))
}

fn find(names: &[String], candidates: &[&str]) -> Option<usize> {
    candidates.iter().find_map(|c| names.iter().position(|n| n == c))
}

fn need(names: &[String], name: &str, path: &Path) -> Result<usize> {
    find(names, &[name]).ok_or_else(|| {
        Error::parse(path, 1, format!("missing column '{name}' (header has: {})", names.join(", ")))
    })
}

fn id(bytes: &[u8], what: &str, path: &Path, no: usize) -> Result<i64> {
    let token = decode(bytes);
    if token.trim().is_empty() {
        return Err(Error::parse(path, no, format!("{what} is empty")));
    }
    Ok(super::token_id(&token))
}

pub fn parse_inter(path: &Path) -> Result<DataFrame> {
    let (mut t, names) = open(path)?;
    let (u, i) = (need(&names, "user_id", path)?, need(&names, "item_id", path)?);
    let (r, ts) = (need(&names, "rating", path)?, need(&names, "timestamp", path)?);
    let min = u.max(i).max(r).max(ts) + 1;
    let mut out = RatingsBuilder::default();
    while let Some((no, rec)) = t.next(min)? {
        out.push(id(&rec[u], "user_id", path, no)?, id(&rec[i], "item_id", path, no)?, rating(&rec[r], path, no)?, timestamp(&rec[ts], path, no)?);
    }
    out.finish(path)
}

pub fn parse_items(path: &Path) -> Result<DataFrame> {
    let (mut t, names) = open(path)?;
    let i = need(&names, "item_id", path)?;
    let title = find(&names, &["movie_title", "title"]);
    let genres = find(&names, &["genre", "genres", "class", "categories"]);
    let min = i.max(title.unwrap_or(0)).max(genres.unwrap_or(0)) + 1;
    let mut out = ItemsBuilder::default();
    while let Some((no, rec)) = t.next(min)? {
        let g = genres.map(|g| decode(&rec[g])).unwrap_or_default();
        let title = title.map(|c| decode(&rec[c])).unwrap_or_default();
        out.push(id(&rec[i], "item_id", path, no)?, title, g.split_whitespace(), path, no)?;
    }
    out.finish()
}

pub fn parse_users(path: &Path) -> Result<DataFrame> {
    let (mut t, names) = open(path)?;
    let u = need(&names, "user_id", path)?;
    let cols = ["age", "gender", "occupation", "zip_code"].map(|c| find(&names, &[c]));
    let min = cols.iter().flatten().fold(u, |a, &b| a.max(b)) + 1;
    let mut out = UsersBuilder::default();
    while let Some((no, rec)) = t.next(min)? {
        let text = |c: Option<usize>| c.map(|c| decode(&rec[c])).unwrap_or_default();
        let age = match cols[0] {
            Some(c) if !rec[c].is_empty() => Some(num::<f64>(&rec[c], "age", path, no)? as i64),
            _ => None,
        };
        out.push(id(&rec[u], "user_id", path, no)?, text(cols[1]), age, text(cols[2]), text(cols[3]), path, no)?;
    }
    out.finish()
}
