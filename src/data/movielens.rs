//! MovieLens ml-1m / ml-10m layout: `ratings.dat` (`user::item::rating::timestamp`), `movies.dat`
//! (`item::Title (year)::Genre1|Genre2`) and, for ml-1m, `users.dat`
//! (`user::gender::age::occupation::zip`). `::` is not a single-byte separator, so lines are split
//! by hand (a title may hold a single `:`); titles may be latin-1.
use super::text::{decode, for_each_line, num, rating, split_exact, timestamp};
use super::{read_ratings, required_ratings, PartSelect, optional, required, ItemsBuilder, RatingsBuilder, Tables, UsersBuilder};
use crate::error::Result;
use polars::prelude::DataFrame;
use std::path::Path;

const SEP: &[u8] = b"::";

pub(crate) fn load(dir: &Path, select: PartSelect) -> Result<Tables> {
    let ratings = read_ratings(&required_ratings(dir, "ratings.dat", "ml-1m")?, select, parse_ratings_into)?;
    let items = parse_movies(&required(dir, "movies.dat", "ml-1m")?)?;
    let users = optional(dir, "users.dat").map(|p| parse_users(&p)).transpose()?;
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
        let f = split_exact::<4>(line, SEP, path, no)?;
        out.push(num(f[0], "user id", path, no)?, num(f[1], "item id", path, no)?, rating(f[2], path, no)?, timestamp(f[3], path, no)?);
        Ok(())
    })?;
    Ok(())
}

pub fn parse_movies(path: &Path) -> Result<DataFrame> {
    let mut out = ItemsBuilder::default();
    for_each_line(path, |no, line| {
        let f = split_exact::<3>(line, SEP, path, no)?;
        let genres = decode(f[2]);
        out.push(num(f[0], "item id", path, no)?, decode(f[1]), genres.split('|'), path, no)
    })?;
    out.finish()
}

pub fn parse_users(path: &Path) -> Result<DataFrame> {
    let mut out = UsersBuilder::default();
    for_each_line(path, |no, line| {
        let f = split_exact::<5>(line, SEP, path, no)?;
        let age = Some(num(f[2], "age", path, no)?);
        out.push(num(f[0], "user id", path, no)?, decode(f[1]), age, decode(f[3]), decode(f[4]), path, no)
    })?;
    out.finish()
}
