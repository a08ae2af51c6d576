//! `score --top-k`: each user's best `k` candidates, users in the order they first appear, each
//! user's best first. Memory is users × k entries, whatever the input's length.
use std::collections::{BinaryHeap, HashMap};

/// A kept entry, ordered so that a max-heap pops the worst: a NaN score (never a recommendation;
/// `f64::total_cmp` alone would rank it above every number), then lower score, then later row.
struct Ranked<T> {
    score: f64,
    seq: usize,
    item: T,
}

impl<T> PartialEq for Ranked<T> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl<T> Eq for Ranked<T> {}
impl<T> PartialOrd for Ranked<T> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Ranked<T> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        let number = |r: &Self| !r.score.is_nan();
        number(o).cmp(&number(self)).then(o.score.total_cmp(&self.score)).then(self.seq.cmp(&o.seq))
    }
}

/// Per user (in order of first appearance) a heap of its best `k` so far.
pub(super) struct TopK<T> {
    k: usize,
    heaps: Vec<BinaryHeap<Ranked<T>>>,
    slot: HashMap<i64, usize>,
}

impl<T> TopK<T> {
    pub fn new(k: usize) -> TopK<T> {
        TopK { k, heaps: Vec::new(), slot: HashMap::new() }
    }

    /// Offers `user`'s row number `seq` with `score`; of equal scores the earlier row ranks first.
    pub fn push(&mut self, user: i64, score: f64, seq: usize, item: T) {
        let heaps = &mut self.heaps;
        let slot = *self.slot.entry(user).or_insert_with(|| {
            heaps.push(BinaryHeap::new());
            heaps.len() - 1
        });
        let heap = &mut self.heaps[slot];
        heap.push(Ranked { score, seq, item });
        if heap.len() > self.k {
            heap.pop();
        }
    }

    /// Every kept entry with its rank (1 = the user's best), users in order of first appearance.
    pub fn into_ranked(self) -> impl Iterator<Item = (usize, T)> {
        self.heaps.into_iter().flat_map(|heap| heap.into_sorted_vec().into_iter().enumerate().map(|(r, e)| (r + 1, e.item)))
    }
}

#[cfg(test)]
mod tests {
    use super::TopK;

    /// By hand: user 7 first, then 3; k = 2; ties go to the earlier row; a NaN score ranks below
    /// every number (total order), and a user with one row keeps it.
    #[test]
    fn each_users_best_k_in_order_of_first_appearance() {
        let mut top = TopK::new(2);
        let rows = [(7, 0.5), (3, 0.9), (7, 0.8), (7, 0.5), (3, f64::NAN), (7, 0.1), (3, 0.2), (9, 0.0)];
        for (seq, &(user, score)) in rows.iter().enumerate() {
            top.push(user, score, seq, seq);
        }
        let got: Vec<(usize, usize)> = top.into_ranked().collect();
        // user 7: 0.8 (row 2), then 0.5 of row 0 before row 3's tie; user 3: 0.9 (row 1), 0.2
        // (row 6) above NaN; user 9: its only row.
        assert_eq!(got, vec![(1, 2), (2, 0), (1, 1), (2, 6), (1, 7)]);
    }
}
