//! Side features: the user's age, gender and occupation from the user table, the item's release
//! year and all of its genres from the item table (`protocol.user_features`, `item_features`).
//!
//! They describe ids, not events, so they are kept per id in a [`SideTable`] saved in the feature
//! map (scoring needs only the run folder) and looked up by raw id: a user or item first seen in
//! valid or test is out of the id vocabulary but still has its side features, the cold-start
//! signal they exist for. Their value vocabularies are fitted on the ids of the train split only.
use super::{FastSet, Vocab, OOV, PAD};
use crate::data::protocol::{ItemFeature, UserFeature};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::util::Choice;
use serde::{Deserialize, Serialize};

/// Most genres kept per item for the multi-valued `genres` feature (ml-25m's items have up to 10).
pub const MAX_GENRES: usize = 10;

/// One side feature: `width` value slots (1, or up to [`MAX_GENRES`] for `genres`) of one vocabulary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideField {
    pub name: String,
    pub width: usize,
    pub vocab: Vocab<String>,
}

/// The side features of every id of a table: row 0 is padding (all 0), row 1 an id without
/// metadata (out-of-vocabulary in each field's first slot), row `ids.encode(id)` the id's values;
/// `values[row * width() ..][.. width()]` are the fields' value indices, left to right.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideTable {
    pub fields: Vec<SideField>,
    pub ids: Vocab<i64>,
    pub values: Vec<i64>,
}

impl SideTable {
    /// Value slots per row.
    pub fn width(&self) -> usize {
        self.fields.iter().map(|f| f.width).sum()
    }
    /// The row of raw id `id` (1 when the table does not describe it).
    pub fn row(&self, id: i64) -> u32 {
        self.ids.encode(&id) as u32
    }
    pub fn rows(&self) -> usize {
        self.values.len() / self.width().max(1)
    }

    /// `raw[i]` holds id `i`'s values per field (an empty list when unknown); vocabularies are
    /// fitted on the values of the `train` ids.
    fn build(names: Vec<(String, usize)>, ids: Vec<i64>, raw: Vec<Vec<Vec<String>>>, train: &FastSet<i64>) -> SideTable {
        let fields: Vec<SideField> = names
            .into_iter()
            .enumerate()
            .map(|(f, (name, width))| {
                let seen = ids.iter().zip(&raw).filter(|(id, _)| train.contains(id)).flat_map(|(_, v)| v[f].iter().cloned());
                SideField { name, width, vocab: Vocab::fit(seen) }
            })
            .collect();
        let width: usize = fields.iter().map(|f| f.width).sum();
        let mut values = vec![PAD; 2 * width];
        let mut off = width;
        for f in &fields {
            values[off] = OOV;
            off += f.width;
        }
        for v in &raw {
            for (f, field) in fields.iter().enumerate() {
                let mut slots: Vec<i64> = v[f].iter().take(field.width).map(|x| field.vocab.encode(x)).collect();
                if slots.is_empty() {
                    slots.push(OOV);
                }
                slots.resize(field.width, PAD);
                values.extend(slots);
            }
        }
        SideTable { fields, ids: Vocab::from(ids), values }
    }
}

/// ml-1m's age groups: the group an age falls in, named by its lower bound.
pub fn age_group(age: i64) -> i64 {
    match age {
        ..18 => 1,
        18..25 => 18,
        25..35 => 25,
        35..45 => 35,
        45..50 => 45,
        50..56 => 50,
        _ => 56,
    }
}

/// The release year of a MovieLens title: its last `(YYYY)`.
pub fn title_year(title: &str) -> Option<&str> {
    let t = title.trim_end();
    (0..t.len().saturating_sub(5)).rev().find_map(|i| {
        let w = t.get(i..i + 6)?;
        let b = w.as_bytes();
        (b[0] == b'(' && b[5] == b')' && b[1..5].iter().all(u8::is_ascii_digit)).then(|| &w[1..5])
    })
}

/// The user side table of `ds` for `features`, fitted on `train_users`; `None` without features.
pub fn user_table(ds: &Dataset, features: &[UserFeature], train_users: &FastSet<i64>) -> Result<Option<SideTable>> {
    if features.is_empty() {
        return Ok(None);
    }
    let users = ds.users.as_ref().ok_or_else(|| {
        Error::dataset(&ds.root, "protocol.user_features needs a user table (u.user, users.dat or NAME.user), and this dataset has none")
    })?;
    let ids: Vec<i64> = users.column("user_id")?.i64()?.into_no_null_iter().collect();
    let mut raw: Vec<Vec<Vec<String>>> = vec![Vec::with_capacity(features.len()); ids.len()];
    let mut names = Vec::new();
    for f in features {
        let column: Vec<Option<String>> = match f {
            UserFeature::Age => users.column("age")?.i64()?.iter().map(|a| a.map(|a| age_group(a).to_string())).collect(),
            UserFeature::Gender => users.column("gender")?.str()?.iter().map(|g| g.map(str::to_string)).collect(),
            UserFeature::Occupation => users.column("occupation")?.str()?.iter().map(|o| o.map(str::to_string)).collect(),
        };
        names.push((format!("user_{}", f.name_of()), 1));
        for (r, v) in raw.iter_mut().zip(column) {
            r.push(v.filter(|s| !s.trim().is_empty()).into_iter().collect());
        }
    }
    Ok(Some(SideTable::build(names, ids, raw, train_users)))
}

/// The item side table of `ds` for `features`, fitted on `train_items`; `None` without features.
pub fn item_table(ds: &Dataset, features: &[ItemFeature], train_items: &FastSet<i64>) -> Result<Option<SideTable>> {
    if features.is_empty() {
        return Ok(None);
    }
    let items = &ds.items;
    let ids: Vec<i64> = items.column("item_id")?.i64()?.into_no_null_iter().collect();
    let mut raw: Vec<Vec<Vec<String>>> = vec![Vec::with_capacity(features.len()); ids.len()];
    let mut names = Vec::new();
    for f in features {
        let column: Vec<Vec<String>> = match f {
            ItemFeature::Year => items.column("title")?.str()?.iter().map(|t| t.and_then(title_year).map(str::to_string).into_iter().collect()).collect(),
            ItemFeature::Genres => items
                .column("genres")?
                .str()?
                .iter()
                .map(|g| g.unwrap_or("").split('|').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect())
                .collect(),
        };
        let width = match f {
            ItemFeature::Year => 1,
            ItemFeature::Genres => column.iter().map(Vec::len).max().unwrap_or(1).clamp(1, MAX_GENRES),
        };
        names.push((format!("item_{}", f.name_of()), width));
        for (r, v) in raw.iter_mut().zip(column) {
            r.push(v);
        }
    }
    Ok(Some(SideTable::build(names, ids, raw, train_items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_and_age_groups() {
        assert_eq!(title_year("Toy Story (1995)"), Some("1995"));
        assert_eq!(title_year("City of Lost Children, The (Cité des enfants perdus, La) (1995) "), Some("1995"));
        assert_eq!(title_year("1984 (1984)"), Some("1984"));
        assert_eq!(title_year("Babylon 5"), None);
        assert_eq!(title_year("(19x5)"), None);
        assert_eq!(title_year(""), None);
        let groups: Vec<i64> = [0, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 90].map(age_group).to_vec();
        assert_eq!(groups, [1, 1, 18, 18, 25, 25, 35, 35, 45, 45, 50, 50, 56, 56]);
        // ml-1m's codes map to themselves.
        assert!([1, 18, 25, 35, 45, 50, 56].iter().all(|&a| age_group(a) == a));
    }

    #[test]
    fn tables_by_hand() {
        // Ids 7, 8, 9; field 0 single-valued, field 1 up to 2 values; train ids 7 and 8.
        let raw = vec![
            vec![vec!["b".to_string()], vec!["x".to_string(), "y".to_string()]],
            vec![vec!["a".to_string()], vec!["y".to_string()]],
            vec![vec!["c".to_string()], vec![]],
        ];
        let train: FastSet<i64> = [7, 8].into_iter().collect();
        let t = SideTable::build(vec![("f".into(), 1), ("g".into(), 2)], vec![7, 8, 9], raw, &train);
        assert_eq!(t.fields[0].vocab.keys(), &["a", "b"]);
        assert_eq!(t.fields[1].vocab.keys(), &["x", "y"]);
        assert_eq!(t.width(), 3);
        #[rustfmt::skip]
        assert_eq!(t.values, vec![
            0, 0, 0, // padding
            1, 1, 0, // unknown id
            3, 2, 3, // 7: b; x y
            2, 3, 0, // 8: a; y
            1, 1, 0, // 9: c is not a train value; no values
        ]);
        assert_eq!((t.row(7), t.row(9), t.row(100)), (2, 4, 1));
        assert_eq!(t.rows(), 5);
    }
}
