//! Sampled negatives for implicit-feedback logs (clicks, plays, purchases: positives only).
//!
//! For every positive event `p` of user `u` at time `t`, `k` distinct items are drawn uniformly
//! from the items of the logged train events, excluding every item `u` interacted with at or
//! before `t` (same-second events included, so never the positive itself). Each negative is a new
//! sample with label 0, `p`'s user, timestamp, split and file row, and `p`'s history (the events
//! before `p`): it enters no history itself.
//!
//! The draws come from one ChaCha8 stream seeded by `protocol.negative_seed`, in protocol order,
//! so they are drawn once per prepared dataset and are the same on every run and every epoch; the
//! prepared cache stores them.
use super::protocol::{Events, Split};
use crate::util::FastSet;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Appends `k` sampled negatives per positive logged event (see the module docs).
pub fn add_sampled_negatives(ev: &mut Events, k: usize, seed: u64) {
    if k == 0 {
        return;
    }
    let logged = ev.logged;
    let mut universe: Vec<i64> = (0..logged).filter(|&j| ev.split[j] == Split::Train).map(|j| ev.item[j]).collect();
    universe.sort_unstable();
    universe.dedup();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen: FastSet<i64> = FastSet::default();
    let mut picked: Vec<i64> = Vec::with_capacity(k);
    let mut start = 0;
    while start < logged {
        // One user's block of logged events, in time order.
        let end = (start..logged).find(|&j| ev.user_start[j] as usize != start).unwrap_or(logged);
        seen.clear();
        // How many items of `universe` are in `seen`, kept as `seen` grows: counting them per
        // positive rescanned the universe (~10^11 lookups at ml-25m's scale).
        let mut excluded = 0;
        let mut i = start;
        while i < end {
            // Events at the same second count as interacted-with for one another.
            let j = (i..end).find(|&j| ev.timestamp[j] != ev.timestamp[i]).unwrap_or(end);
            for &item in &ev.item[i..j] {
                if seen.insert(item) && universe.binary_search(&item).is_ok() {
                    excluded += 1;
                }
            }
            for p in i..j {
                if ev.label[p] != 1.0 {
                    continue;
                }
                draw(&universe, &seen, excluded, k, &mut rng, &mut picked);
                for &item in &picked {
                    ev.user.push(ev.user[p]);
                    ev.item.push(item);
                    ev.timestamp.push(ev.timestamp[p]);
                    ev.label.push(0.0);
                    ev.split.push(ev.split[p]);
                    ev.user_start.push(ev.user_start[p]);
                    ev.row.push(ev.row[p]);
                    ev.history_end.push(p as u32);
                }
            }
            i = j;
        }
        start = end;
    }
}

/// Up to `k` distinct items of `universe` not in `seen`, uniformly; fewer when fewer remain.
/// `excluded` is the number of items of `universe` in `seen`.
fn draw(universe: &[i64], seen: &FastSet<i64>, excluded: usize, k: usize, rng: &mut ChaCha8Rng, out: &mut Vec<i64>) {
    out.clear();
    let free = universe.len() - excluded;
    if free <= 2 * k {
        // Few candidates left: choose among them directly.
        let mut rest: Vec<i64> = universe.iter().copied().filter(|i| !seen.contains(i)).collect();
        while out.len() < k && !rest.is_empty() {
            out.push(rest.swap_remove(rng.random_range(0..rest.len())));
        }
        return;
    }
    // Rejection sampling: at least half of the universe is free, so few tries are wasted.
    while out.len() < k {
        let item = universe[rng.random_range(0..universe.len())];
        if !seen.contains(&item) && !out.contains(&item) {
            out.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::protocol::Split::*;

    /// User 1: items 1 (t=10), 2 (t=20), 3 (t=20, same second), 4 (t=30, test); user 2: item 5.
    fn events() -> Events {
        Events {
            user: vec![1, 1, 1, 1, 2],
            item: vec![1, 2, 3, 4, 5],
            timestamp: vec![10, 20, 20, 30, 5],
            label: vec![1.0, 1.0, 0.0, 1.0, 1.0],
            split: vec![Train, Train, Train, Test, Train],
            user_start: vec![0, 0, 0, 0, 4],
            row: vec![0, 1, 2, 3, 4],
            history_end: (0..5).collect(),
            logged: 5,
        }
    }

    #[test]
    fn negatives_avoid_past_and_same_second_items_and_share_the_positive_history() {
        let mut ev = events();
        add_sampled_negatives(&mut ev, 1, 7);
        // Universe: train items 1, 2, 3, 5. Positives: (1,1) t10, (1,2) t20, (1,4) t30, (2,5).
        assert_eq!(ev.len(), 5 + 4);
        let neg: Vec<(i64, i64, u32, Split)> = (5..9).map(|k| (ev.user[k], ev.item[k], ev.history_end[k], ev.split[k])).collect();
        // At t20 user 1 has seen 1, 2 and 3 (same second): only 5 is left; likewise at t30.
        assert_eq!(neg[1], (1, 5, 1, Train));
        assert_eq!(neg[2], (1, 5, 3, Test));
        assert!(neg[0].1 != 1 && neg[0].2 == 0, "{:?}", neg[0]);
        assert!(neg[3].0 == 2 && neg[3].1 != 5, "{:?}", neg[3]);
        assert!(ev.label[5..].iter().all(|&l| l == 0.0));
        // A negative's history is its positive's: the events before it.
        assert_eq!(ev.history(6, 50), 0..1);
        assert_eq!(ev.history(7, 50), 0..3);
    }

    /// Many users with overlapping items, ties in time and a small universe (so both ways of
    /// drawing run): the negatives equal those of counting the excluded items afresh for every
    /// positive, as the sampler did before it kept the count.
    #[test]
    fn the_kept_count_draws_what_a_fresh_count_draws() {
        let mut ev = Events::default();
        let mut x = 12345u64;
        let mut next = |m: u64| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        for u in 0..40i64 {
            let start = ev.user.len() as u32;
            let n = 1 + next(30) as usize;
            let mut t = 0;
            for e in 0..n {
                t += next(3) as i64; // 0 repeats the second
                ev.user.push(u);
                ev.item.push(next(25) as i64);
                ev.timestamp.push(t);
                ev.label.push(if next(4) == 0 { 0.0 } else { 1.0 });
                ev.split.push(if e + 2 < n { Train } else { Test });
                ev.user_start.push(start);
                ev.row.push(ev.row.len() as u32);
                ev.history_end.push(ev.history_end.len() as u32);
            }
        }
        ev.logged = ev.user.len();
        let mut fresh = ev.clone();
        add_sampled_negatives(&mut ev, 3, 99);
        // The former sampler: `seen` extended per second, the count taken in every draw.
        let universe = {
            let mut u: Vec<i64> = (0..fresh.logged).filter(|&j| fresh.split[j] == Train).map(|j| fresh.item[j]).collect();
            u.sort_unstable();
            u.dedup();
            u
        };
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        let mut picked = Vec::new();
        let logged = fresh.logged;
        let mut start = 0;
        while start < logged {
            let end = (start..logged).find(|&j| fresh.user_start[j] as usize != start).unwrap_or(logged);
            let mut seen: FastSet<i64> = FastSet::default();
            let mut i = start;
            while i < end {
                let j = (i..end).find(|&j| fresh.timestamp[j] != fresh.timestamp[i]).unwrap_or(end);
                seen.extend(fresh.item[i..j].iter().copied());
                for p in i..j {
                    if fresh.label[p] == 1.0 {
                        let excluded = universe.iter().filter(|i| seen.contains(i)).count();
                        draw(&universe, &seen, excluded, 3, &mut rng, &mut picked);
                        fresh.item.extend(picked.iter().copied());
                    }
                }
                i = j;
            }
            start = end;
        }
        assert!(ev.len() > logged + 100);
        assert_eq!(ev.item, fresh.item);
    }

    #[test]
    fn fewer_negatives_when_the_universe_runs_out() {
        let mut ev = events();
        add_sampled_negatives(&mut ev, 3, 7);
        // At t30 user 1 has seen 1, 2, 3: one free item (5) for the test positive.
        assert_eq!((5..ev.len()).filter(|&k| ev.history_end[k] == 3).count(), 1);
    }
}
