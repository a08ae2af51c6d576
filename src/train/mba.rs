//! DIN's mini-batch-aware regularization (Zhou et al. 2018, §4.1). An L2 penalty over whole
//! embedding tables costs as much as the tables are large and, with a sparse batch, shrinks rows the
//! batch never saw. DIN penalizes only the rows present in the batch, each divided by how often its
//! id occurs, so that frequent ids are not shrunk once per batch they appear in:
//!
//!   penalty(batch) = λ · Σ_{tables} Σ_{j ∈ ids(batch)} ‖w_j‖² / n_j
//!
//! `n_j` counts the train samples whose features contain id `j` (as user, target or history event);
//! padding (index 0) is never penalized.
use crate::error::{Error, Result};
use crate::features::{Batch, Encoded};
use crate::models::IdTables;
use tch::{Kind, Tensor};

/// Which batch columns index a table.
#[derive(Debug, Clone, Copy)]
enum Ids {
    User,
    Item,
    Genre,
}

pub struct Mba {
    lambda: f64,
    /// (embedding table, 1 / n_j per row, its ids)
    tables: Vec<(Tensor, Tensor, Ids)>,
}

impl Mba {
    /// DIN's regularization of the shared id tables the model declares (`ids`), with id
    /// frequencies counted over the train samples `train`.
    pub fn new(ids: Option<&IdTables>, data: &Encoded, train: &[usize], lambda: f64) -> Result<Mba> {
        let ids_tables = ids.ok_or_else(|| Error::config("train.mba_lambda: the model declares no shared user, item and genre embedding tables"))?;
        let mut tables = Vec::new();
        for (w, ids) in [(&ids_tables.user, Ids::User), (&ids_tables.item, Ids::Item), (&ids_tables.genre, Ids::Genre)] {
            let mut count = vec![0u64; w.size()[0] as usize];
            for &k in train {
                let mut add = |i: i64| count[i as usize] += 1;
                match ids {
                    Ids::User => add(data.user[k]),
                    Ids::Item => {
                        add(data.item[k]);
                        data.history(k).for_each(|j| add(data.item[data.history_event(j)]));
                    }
                    Ids::Genre => {
                        add(data.genre[k]);
                        data.history(k).for_each(|j| add(data.genre[data.history_event(j)]));
                    }
                }
            }
            count[0] = 0;
            let inv: Vec<f32> =
                count.iter().enumerate().map(|(j, &n)| if j == 0 { 0.0 } else { 1.0 / n.max(1) as f32 }).collect();
            tables.push((w.shallow_clone(), Tensor::from_slice(&inv).to_device(w.device()), ids));
        }
        Ok(Mba { lambda, tables })
    }

    /// The penalty of one batch, a scalar with gradient into the rows the batch uses.
    pub fn penalty(&self, b: &Batch) -> Tensor {
        let mut terms = Vec::with_capacity(self.tables.len());
        for (w, inv, ids) in &self.tables {
            let ids = match ids {
                Ids::User => b.user.shallow_clone(),
                Ids::Item => Tensor::cat(&[b.item.shallow_clone(), b.hist_item.flatten(0, -1)], 0),
                Ids::Genre => Tensor::cat(&[b.genre.shallow_clone(), b.hist_genre.flatten(0, -1)], 0),
            };
            let (present, _) = ids.internal_unique(false, false);
            let rows = w.index_select(0, &present).square().sum_dim_intlist(1, false, Kind::Float);
            terms.push((rows * inv.index_select(0, &present)).sum(Kind::Float));
        }
        Tensor::stack(&terms, 0).sum(Kind::Float) * self.lambda
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::protocol::Split;
    use crate::features::Batcher;
    use tch::{nn, Device};

    #[test]
    fn penalty_counts_each_present_row_once_divided_by_its_frequency() {
        let data = crate::features::tests::toy_encoded();
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let emb = root.sub("emb");
        let rows = |n: &str, r: i64| {
            let t = Tensor::arange(r * 2, (Kind::Float, Device::Cpu)).view([r, 2]) / 10.0;
            emb.sub(n).var_copy("weight", &t)
        };
        let (u, i, g) = (rows("user", 4), rows("item", 8), rows("genre", 5));
        let train = data.indices(Split::Train);
        let ids = IdTables { user: u.shallow_clone(), item: i.shallow_clone(), genre: g.shallow_clone() };
        let mba = Mba::new(Some(&ids), &data, &train, 0.5).unwrap();
        // Train samples (history_len 3): events 0,1,2 of user 2 and 5,6 of user 3.
        // Batch of events 2 and 6: users {2,3}; items: targets 4, 2; histories [2,3], [6] → {2,3,4,6};
        // genres: targets 3, 2; histories [2,2], [4] → {2,3,4}.
        let b = Batcher::new(&data, Device::Cpu).batch(&[2, 6]);
        let got = mba.penalty(&b).double_value(&[]);
        // n_j over the train samples, counting target, user and history occurrences:
        // users: 2 → 3 samples, 3 → 2. items: 2 → targets of 0 and 6 + histories of 1 and 2 = 4;
        // 3 → target of 1 + history of 2 = 2; 4 → target of 2 = 1; 6 → target of 5 + history of 6 = 2.
        // genres: 2 → targets 0,1,6 + hists of 1 ([2]), 2 ([2,2]) = 6; 3 → target 2 = 1;
        // 4 → target 5 + hist of 6 = 2.
        let sq = |t: &Tensor, j: i64| t.get(j).square().sum(Kind::Float).double_value(&[]);
        let want = 0.5
            * (sq(&u, 2) / 3.0 + sq(&u, 3) / 2.0
                + sq(&i, 2) / 4.0 + sq(&i, 3) / 2.0 + sq(&i, 4) / 1.0 + sq(&i, 6) / 2.0
                + sq(&g, 2) / 6.0 + sq(&g, 3) / 1.0 + sq(&g, 4) / 2.0);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn a_model_without_the_shared_tables_is_a_config_error() {
        let data = crate::features::tests::toy_encoded();
        let err = Mba::new(None, &data, &[0], 1.0).err().unwrap().to_string();
        assert!(err.contains("train.mba_lambda") && err.contains("declares no shared"), "{err}");
    }
}
