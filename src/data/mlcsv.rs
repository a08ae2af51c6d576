//! MovieLens CSV layout of ml-20m, ml-25m, ml-32m and ml-latest(-small): `ratings.csv`
//! (`userId,movieId,rating,timestamp`) and `movies.csv` (`movieId,title,genres`, titles quoted
//! when they hold a comma). Columns are found by their header names, in any order.
use super::text::{decode, num, rating, timestamp, Table};
use super::{read_ratings, required_ratings, PartSelect, required, ItemsBuilder, RatingsBuilder, Tables};
use crate::error::Result;
use polars::prelude::DataFrame;
use std::path::Path;

pub(crate) fn load(dir: &Path, select: PartSelect) -> Result<Tables> {
    let ratings = read_ratings(&required_ratings(dir, "ratings.csv", "MovieLens CSV")?, select, parse_ratings_into)?;
    let items = parse_movies(&required(dir, "movies.csv", "MovieLens CSV")?)?;
    Ok((ratings, items, None))
}

fn named(name: &'static str) -> impl Fn(&str) -> bool {
    move |h| h.eq_ignore_ascii_case(name)
}

pub fn parse_ratings(path: &Path) -> Result<DataFrame> {
    let mut out = RatingsBuilder::default();
    parse_ratings_into(path, &mut out)?;
    out.finish(path)
}

/// Appends the ratings of the file `path` to `out`.
pub(crate) fn parse_ratings_into(path: &Path, out: &mut RatingsBuilder) -> Result<()> {
    let mut t = Table::open(path, b',', true, true)?;
    let u = t.column("'userId'", named("userId"))?;
    let i = t.column("'movieId'", named("movieId"))?;
    let r = t.column("'rating'", named("rating"))?;
    let ts = t.column("'timestamp'", named("timestamp"))?;
    let need = u.max(i).max(r).max(ts) + 1;
    while let Some((no, rec)) = t.next(need)? {
        out.push(num(&rec[u], "userId", path, no)?, num(&rec[i], "movieId", path, no)?, rating(&rec[r], path, no)?, timestamp(&rec[ts], path, no)?);
    }
    Ok(())
}

pub fn parse_movies(path: &Path) -> Result<DataFrame> {
    let mut t = Table::open(path, b',', true, true)?;
    let id = t.column("'movieId'", named("movieId"))?;
    let title = t.column("'title'", named("title"))?;
    let genres = t.column("'genres'", named("genres"))?;
    let need = id.max(title).max(genres) + 1;
    let mut out = ItemsBuilder::default();
    while let Some((no, rec)) = t.next(need)? {
        let g = decode(&rec[genres]);
        out.push(num(&rec[id], "movieId", path, no)?, decode(&rec[title]), g.split('|'), path, no)?;
    }
    out.finish()
}
