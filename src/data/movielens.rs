//! MovieLens ml-1m / ml-10m layout: `ratings.dat` (`user::item::rating::timestamp`), `movies.dat`
//! (`item::Title (year)::Genre1|Genre2`) and, for ml-1m, `users.dat`
//! (`user::gender::age::occupation::zip`). Lines are parsed by hand because `::` is not a
//! single-byte separator; every malformed line is reported with its file and line number.
use super::{read_text, Dataset, Format};
use crate::error::{Error, Result};
use polars::prelude::*;
use std::path::Path;
use std::str::FromStr;

/// Splits `line` on `sep`, requiring exactly `n` fields.
fn fields<'a>(line: &'a str, sep: &str, n: usize, path: &Path, lineno: usize) -> Result<Vec<&'a str>> {
    let f: Vec<&str> = line.split(sep).collect();
    if f.len() != n {
        return Err(Error::parse(
            path,
            lineno,
            format!("expected {n} fields separated by '{sep}', found {}", f.len()),
        ));
    }
    Ok(f)
}

fn num<T: FromStr>(s: &str, what: &str, path: &Path, lineno: usize) -> Result<T> {
    s.trim()
        .parse()
        .map_err(|_| Error::parse(path, lineno, format!("{what} is not a number: {s:?}")))
}

/// Non-empty lines with their 1-based numbers; a trailing `\r` is dropped.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty())
}

pub fn load_ml1m(dir: &Path) -> Result<Dataset> {
    let ratings_path = dir.join("ratings.dat");
    let movies_path = dir.join("movies.dat");
    if !movies_path.is_file() {
        return Err(Error::dataset(dir, "movies.dat is missing (ml-1m layout needs ratings.dat and movies.dat)"));
    }
    let ratings = parse_ratings_dat(&ratings_path)?;
    let items = parse_movies_dat(&movies_path)?;
    let users_path = dir.join("users.dat");
    let users = if users_path.is_file() { Some(parse_users_dat(&users_path)?) } else { None };
    Ok(Dataset { root: dir.to_path_buf(), format: Format::Ml1m, ratings, items, users })
}

pub fn parse_ratings_dat(path: &Path) -> Result<DataFrame> {
    let text = read_text(path)?;
    let (mut u, mut i, mut r, mut t) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (no, line) in lines(&text) {
        let f = fields(line, "::", 4, path, no)?;
        u.push(num::<i64>(f[0], "user id", path, no)?);
        i.push(num::<i64>(f[1], "item id", path, no)?);
        let rating: f64 = num(f[2], "rating", path, no)?;
        if !rating.is_finite() {
            return Err(Error::parse(path, no, format!("rating is not finite: {:?}", f[2])));
        }
        r.push(rating);
        t.push(num::<i64>(f[3], "timestamp", path, no)?);
    }
    if u.is_empty() {
        return Err(Error::parse(path, 0, "no ratings in file"));
    }
    Ok(DataFrame::new_infer_height(vec![
        Column::new("user_id".into(), u),
        Column::new("item_id".into(), i),
        Column::new("rating".into(), r),
        Column::new("timestamp".into(), t),
    ])?)
}

pub fn parse_movies_dat(path: &Path) -> Result<DataFrame> {
    let text = read_text(path)?;
    let (mut ids, mut titles, mut genres) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    for (no, line) in lines(&text) {
        let f = fields(line, "::", 3, path, no)?;
        let id: i64 = num(f[0], "item id", path, no)?;
        if !seen.insert(id) {
            return Err(Error::parse(path, no, format!("item id {id} appears twice")));
        }
        ids.push(id);
        titles.push(f[1].to_string());
        genres.push(f[2].trim().to_string());
    }
    Ok(DataFrame::new_infer_height(vec![
        Column::new("item_id".into(), ids),
        Column::new("title".into(), titles),
        Column::new("genres".into(), genres),
    ])?)
}

pub fn parse_users_dat(path: &Path) -> Result<DataFrame> {
    let text = read_text(path)?;
    let (mut ids, mut gender, mut age, mut occ, mut zip) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (no, line) in lines(&text) {
        let f = fields(line, "::", 5, path, no)?;
        ids.push(num::<i64>(f[0], "user id", path, no)?);
        gender.push(f[1].to_string());
        age.push(num::<i64>(f[2], "age", path, no)?);
        occ.push(num::<i64>(f[3], "occupation", path, no)?);
        zip.push(f[4].to_string());
    }
    Ok(DataFrame::new_infer_height(vec![
        Column::new("user_id".into(), ids),
        Column::new("gender".into(), gender),
        Column::new("age".into(), age),
        Column::new("occupation".into(), occ),
        Column::new("zip".into(), zip),
    ])?)
}
