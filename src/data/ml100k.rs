//! MovieLens ml-100k layout: `u.data` (`user \t item \t rating \t timestamp`), `u.item`
//! (`id|title|release date|video release date|IMDb URL|` then 19 genre flags, latin-1) and
//! `u.user` (`id|age|gender|occupation|zip`). An item's genres are its set flags in the published
//! order ([`GENRES`]), so its first genre is the first set flag, as shared/PROTOCOL.md says.
use super::text::{decode, for_each_line, num, rating, split_exact, timestamp};
use super::{read_ratings, required_ratings, PartSelect, optional, required, ItemsBuilder, RatingsBuilder, Tables, UsersBuilder};
use crate::error::{Error, Result};
use polars::prelude::DataFrame;
use std::path::Path;

/// The genre flags of `u.item`, in file order (ml-100k's `u.genre`).
pub const GENRES: [&str; 19] = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
];

pub(crate) fn load(dir: &Path, select: PartSelect) -> Result<Tables> {
    let ratings = read_ratings(&required_ratings(dir, "u.data", "ml-100k")?, select, parse_ratings_into)?;
    let items = parse_items(&required(dir, "u.item", "ml-100k")?)?;
    let users = optional(dir, "u.user").map(|p| parse_users(&p)).transpose()?;
    Ok((ratings, items, users))
}

pub fn parse_ratings(path: &Path) -> Result<DataFrame> {
    let mut out = RatingsBuilder::default();
    parse_ratings_into(path, &mut out)?;
    out.finish(path)
}

/// Appends the ratings of the file `path` to `out`.
pub(crate) fn parse_ratings_into(path: &Path, out: &mut RatingsBuilder) -> Result<()> {
    for_each_line(path, |no, line| {
        let f = split_exact::<4>(line, b"\t", path, no)?;
        out.push(num(f[0], "user id", path, no)?, num(f[1], "item id", path, no)?, rating(f[2], path, no)?, timestamp(f[3], path, no)?);
        Ok(())
    })?;
    Ok(())
}

pub fn parse_items(path: &Path) -> Result<DataFrame> {
    let mut out = ItemsBuilder::default();
    for_each_line(path, |no, line| {
        let f = split_exact::<{ 5 + GENRES.len() }>(line, b"|", path, no)?;
        let mut genres = Vec::new();
        for (flag, name) in f[5..].iter().zip(GENRES) {
            match *flag {
                b"1" => genres.push(name),
                b"0" => {}
                other => {
                    return Err(Error::parse(path, no, format!("genre flag '{name}' must be 0 or 1, got {:?}", decode(other))))
                }
            }
        }
        out.push(num(f[0], "item id", path, no)?, decode(f[1]), genres, path, no)
    })?;
    out.finish()
}

pub fn parse_users(path: &Path) -> Result<DataFrame> {
    let mut out = UsersBuilder::default();
    for_each_line(path, |no, line| {
        let f = split_exact::<5>(line, b"|", path, no)?;
        let age = Some(num(f[1], "age", path, no)?);
        out.push(num(f[0], "user id", path, no)?, decode(f[2]), age, decode(f[3]), decode(f[4]), path, no)
    })?;
    out.finish()
}
