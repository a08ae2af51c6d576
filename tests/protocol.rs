//! The ml-ctr-v1 protocol on a hand-written 3-user log: exact order (timestamp ties keep file
//! order), labels, per-user split, histories that never leak, train-only vocabularies.
use attnrec::data::protocol::{build_events, ProtocolConfig, Split};
use attnrec::data::Dataset;
use attnrec::features::{item_first_genres, FeatureMap, OOV};
use std::fs;

const RATINGS: &str = "\
1::10::5::100
2::20::3::50
1::11::4::100
1::12::2::90
3::10::4::10
2::21::5::40
1::13::4::200
2::22::1::60
1::14::5::300
3::11::1::20
1::15::3::150
1::16::4::400
1::17::5::500
1::18::2::600
1::19::4::700
";

const MOVIES: &str = "\
10::Ten (1990)::Comedy|Drama
11::Eleven (1991)::Drama
12::Twelve (1992)::Action|Comedy
13::Thirteen (1993)::Comedy
14::Fourteen (1994)::Sci-Fi
15::Fifteen (1995)::Drama
16::Sixteen (1996)::Horror
17::Seventeen (1997)::Comedy
18::Eighteen (1998)::Western
19::Nineteen (1999)::Drama
20::Twenty (2000)::Drama
21::Twenty-one (2001)::Action
";

fn dataset() -> (tempfile::TempDir, Dataset) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ratings.dat"), RATINGS).unwrap();
    fs::write(dir.path().join("movies.dat"), MOVIES).unwrap();
    let ds = Dataset::load(dir.path(), None).unwrap();
    (dir, ds)
}

#[test]
fn events_follow_the_protocol_exactly() {
    let (_dir, ds) = dataset();
    let ev = build_events(&ds, &ProtocolConfig { history_len: 3, ..Default::default() }).unwrap();
    use Split::*;
    // (user, item, label, split, file line - 1)
    let expected = [
        (1, 12, 0.0, Train, 3),
        (1, 10, 1.0, Train, 0), // ts 100, first in the file ...
        (1, 11, 1.0, Train, 2), // ... ts 100 too, later in the file
        (1, 15, 0.0, Train, 10),
        (1, 13, 1.0, Train, 6),
        (1, 14, 1.0, Train, 8),
        (1, 16, 1.0, Train, 11),
        (1, 17, 1.0, Train, 12), // floor(0.8 * 10) = 8 train events
        (1, 18, 0.0, Valid, 13), // floor(0.9 * 10) - 8 = 1 valid event
        (1, 19, 1.0, Test, 14),
        (2, 21, 1.0, Train, 5),
        (2, 20, 0.0, Train, 1), // floor(0.8 * 3) = 2; floor(0.9 * 3) - 2 = 0 valid
        (2, 22, 0.0, Test, 7),
        (3, 10, 1.0, Train, 4),
        (3, 11, 0.0, Test, 9),
    ];
    assert_eq!(ev.len(), expected.len());
    for (k, &(u, i, l, s, row)) in expected.iter().enumerate() {
        assert_eq!((ev.user[k], ev.item[k], ev.label[k], ev.split[k], ev.row[k]), (u, i, l, s, row), "event {k}");
    }
    // Histories: at most L = 3 earlier events of the same user, including earlier splits.
    assert_eq!(ev.history(0, 3), 0..0);
    assert_eq!(ev.history(2, 3), 0..2);
    assert_eq!(ev.history(9, 3), 6..9); // the test event sees the valid event before it
    assert_eq!(ev.history(10, 3), 10..10); // a new user starts empty
    assert_eq!(ev.history(12, 3), 10..12);
    assert_eq!(ev.history(14, 3), 13..14);
    // No leak: every history event belongs to the same user and comes strictly before.
    for k in 0..ev.len() {
        for h in ev.history(k, 50) {
            assert_eq!(ev.user[h], ev.user[k]);
            assert!(h < k && ev.timestamp[h] <= ev.timestamp[k]);
        }
    }
}

#[test]
fn vocabularies_are_fitted_on_train_only() {
    let (_dir, ds) = dataset();
    let ev = build_events(&ds, &ProtocolConfig::default()).unwrap();
    let genres = item_first_genres(&ds).unwrap();
    let fm = FeatureMap::fit(&ev, &genres, &ProtocolConfig::default());
    // Train items, sorted: 10 11 12 13 14 15 16 17 20 21 → indices 2..=11.
    assert_eq!(fm.item.keys(), &[10, 11, 12, 13, 14, 15, 16, 17, 20, 21]);
    assert_eq!(fm.item.size(), 12);
    assert_eq!(fm.item.encode(&10), 2);
    assert_eq!(fm.item.encode(&21), 11);
    // 18 (valid only), 19 and 22 (test only) are out of vocabulary.
    for unseen in [18, 19, 22] {
        assert_eq!(fm.item.encode(&unseen), OOV);
    }
    // Train first genres: Action (12, 21), Comedy (10, 13, 17), Drama (11, 15, 20), Horror (16), Sci-Fi (14).
    assert_eq!(fm.genre.keys(), &["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]);
    let enc = fm.encode(&ev, &genres);
    // Item 22 is not in movies.dat: its genre is OOV; item 18 (Western) was never in train: OOV.
    assert_eq!(enc.genre[12], OOV);
    assert_eq!(enc.genre[8], OOV);
    assert_eq!(enc.item[9], OOV);
    assert_eq!(enc.user, vec![2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 4, 4]);
}

#[test]
fn malformed_lines_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ratings.dat"), "1::10::5::100\n1::11::x::200\n").unwrap();
    fs::write(dir.path().join("movies.dat"), MOVIES).unwrap();
    let err = Dataset::load(dir.path(), None).unwrap_err().to_string();
    assert!(err.ends_with("ratings.dat:2: rating is not a number: \"x\""), "{err}");
    fs::write(dir.path().join("ratings.dat"), "1::10::5\n").unwrap();
    let err = Dataset::load(dir.path(), None).unwrap_err().to_string();
    assert!(err.ends_with("ratings.dat:1: expected 4 fields separated by '::', found 3"), "{err}");
    fs::remove_file(dir.path().join("movies.dat")).unwrap();
    fs::write(dir.path().join("ratings.dat"), "1::10::5::1\n").unwrap();
    let err = Dataset::load(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("movies.dat is missing"), "{err}");
}

#[test]
fn inspect_counts_by_hand() {
    use attnrec::inspect::inspect;
    let (_dir, ds) = dataset();
    let s = inspect(&ds, &ProtocolConfig { history_len: 3, ..Default::default() }).unwrap();
    assert_eq!((s.ratings, s.users, s.items, s.item_table_rows), (15, 3, 13, 12));
    assert_eq!((s.items_without_metadata, s.duplicate_events, s.single_event_users), (1, 0, 0)); // item 22
    let [train, valid, test] = [&s.splits[0], &s.splits[1], &s.splits[2]];
    assert_eq!((train.samples, valid.samples, test.samples), (11, 1, 3));
    assert!((train.positive_rate - 8.0 / 11.0).abs() < 1e-12);
    assert_eq!((valid.positive_rate, test.positive_rate), (0.0, 1.0 / 3.0));
    assert_eq!((test.users, test.items), (3, 3));
    // valid: item 18 and its genre Western never occur in train; test: items 19 and 22 are unseen,
    // 22 has no metadata (19 is Drama, a train genre).
    assert_eq!((valid.oov_item_rate, valid.oov_genre_rate), (1.0, 1.0));
    assert_eq!((test.oov_user_rate, test.oov_item_rate, test.oov_genre_rate), (0.0, 2.0 / 3.0, 1.0 / 3.0));
    // Train histories before truncation: user 1 has 0..=7, user 2 0, 1, user 3 0; cut to L = 3.
    let h = &train.history;
    assert_eq!((h.p50, h.p90, h.max), (2, 3, 3));
    assert!((h.mean - 19.0 / 11.0).abs() < 1e-12, "{}", h.mean);
    assert_eq!((h.empty_rate, h.truncated_rate), (3.0 / 11.0, 4.0 / 11.0));
    // Test: user 1 has 9 earlier events (cut to 3), user 2 has 2, user 3 has 1.
    assert_eq!((test.history.max, test.history.truncated_rate), (3, 1.0 / 3.0));
}

#[test]
fn inspect_counts_the_inputs_handled_by_rule() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "4::10::3::5\n1::10::5::100\n"; // a user with one event; a duplicate of line 1
    fs::write(dir.path().join("ratings.dat"), format!("{RATINGS}{extra}")).unwrap();
    fs::write(dir.path().join("movies.dat"), MOVIES).unwrap();
    let ds = Dataset::load(dir.path(), None).unwrap();
    let s = attnrec::inspect::inspect(&ds, &ProtocolConfig::default()).unwrap();
    assert_eq!((s.ratings, s.users, s.duplicate_events, s.single_event_users), (17, 4, 1, 1));
    // User 1 now has 11 events (8 train, 1 valid, 2 test); user 4's one event is a test sample
    // with an empty history and an OOV user.
    let test = &s.splits[2];
    assert_eq!(test.samples, 5);
    assert_eq!((test.oov_user_rate, test.history.empty_rate), (0.2, 0.2));
}

/// (user, item, split) of every event, in protocol order.
fn splits_of(cfg: ProtocolConfig) -> Vec<(i64, i64, Split)> {
    let (_dir, ds) = dataset();
    let ev = build_events(&ds, &cfg).unwrap();
    (0..ev.len()).map(|k| (ev.user[k], ev.item[k], ev.split[k])).collect()
}

#[test]
fn leave_last_out_and_global_time_splits_by_hand() {
    use attnrec::data::protocol::SplitRule;
    use Split::*;
    let u1 = [12, 10, 11, 15, 13, 14, 16, 17, 18, 19]; // user 1 in protocol order
    let expect = |u1_splits: [Split; 10], u2: [Split; 3], u3: [Split; 2]| {
        let mut v: Vec<(i64, i64, Split)> = u1.iter().zip(u1_splits).map(|(&i, s)| (1, i, s)).collect();
        v.extend([21, 20, 22].iter().zip(u2).map(|(&i, s)| (2, i, s)));
        v.extend([10, 11].iter().zip(u3).map(|(&i, s)| (3, i, s)));
        v
    };
    let lloo = splits_of(ProtocolConfig { split: SplitRule::LeaveLastOut, ..Default::default() });
    let u1_lloo = [Train, Train, Train, Train, Train, Train, Train, Train, Valid, Test];
    assert_eq!(lloo, expect(u1_lloo, [Train, Valid, Test], [Valid, Test]));
    // Global time order: ts 10, 20 (user 3), 40, 50, 60 (user 2), then user 1's 90 ... 400 are the
    // first floor(0.8 * 15) = 12 events; ts 500 is the floor(0.9 * 15) - 12 = 1 valid event.
    let global = splits_of(ProtocolConfig { split: SplitRule::GlobalTime, ..Default::default() });
    let u1_global = [Train, Train, Train, Train, Train, Train, Train, Valid, Test, Test];
    assert_eq!(global, expect(u1_global, [Train; 3], [Train; 2]));
}

/// Ratios are exact decimals: 0.7 + 0.1 is 0.8, so a user with 10 events has 7 train, 1 valid
/// and 2 test events, and 15 events in global time order split 10 / 2 / 3. In floating point,
/// 10 · (0.7 + 0.1) = 7.999… and 15 · 0.8 = 11.999… would each lose the last valid event.
#[test]
fn ratios_are_exact_decimals() {
    use attnrec::data::protocol::SplitRule;
    use Split::*;
    let u1 = [12, 10, 11, 15, 13, 14, 16, 17, 18, 19];
    let expect = |u1_splits: [Split; 10], u2: [Split; 3], u3: [Split; 2]| {
        let mut v: Vec<(i64, i64, Split)> = u1.iter().zip(u1_splits).map(|(&i, s)| (1, i, s)).collect();
        v.extend([21, 20, 22].iter().zip(u2).map(|(&i, s)| (2, i, s)));
        v.extend([10, 11].iter().zip(u3).map(|(&i, s)| (3, i, s)));
        v
    };
    let cfg = ProtocolConfig { train_ratio: 0.7, valid_ratio: 0.1, ..Default::default() };
    let per_user = splits_of(cfg.clone());
    // floor(7) = 7, floor(8) = 8; floor(2.1) = 2, floor(2.4) = 2; floor(1.4) = 1, floor(1.6) = 1.
    let u1_ratio = [Train, Train, Train, Train, Train, Train, Train, Valid, Test, Test];
    assert_eq!(per_user, expect(u1_ratio, [Train, Train, Test], [Train, Test]));
    // Global order: user 3 (2 events), user 2 (3), user 1 (10); floor(10.5) = 10, floor(12) = 12.
    let global = splits_of(ProtocolConfig { split: SplitRule::GlobalTime, ..cfg });
    let u1_global = [Train, Train, Train, Train, Train, Valid, Valid, Test, Test, Test];
    assert_eq!(global, expect(u1_global, [Train; 3], [Train; 2]));
}

/// A ratio with more decimals than the exact arithmetic keeps is refused, naming the key.
#[test]
fn ratios_with_too_many_decimals_are_refused() {
    let err = ProtocolConfig { train_ratio: 0.1234567891, ..Default::default() }.validate().unwrap_err().to_string();
    assert!(err.contains("protocol.train_ratio") && err.contains("decimal"), "{err}");
}

#[test]
fn k_core_filter_is_applied_before_splitting() {
    use Split::*;
    // Users with at least 3 events: user 3 (2 events) goes; the others split as before.
    let ev = splits_of(ProtocolConfig { min_user_events: 3, ..Default::default() });
    assert_eq!(ev.len(), 13);
    assert!(ev.iter().all(|e| e.0 != 3));
    // Items with at least 2 events: only 10 and 11 (users 1 and 3); each user then has 2 events,
    // floor(0.8 * 2) = 1 train and the rest test.
    let (_dir, ds) = dataset();
    let ev = build_events(&ds, &ProtocolConfig { min_item_events: 2, ..Default::default() }).unwrap();
    let got: Vec<_> = (0..ev.len()).map(|k| (ev.user[k], ev.item[k], ev.split[k], ev.row[k])).collect();
    assert_eq!(got, [(1, 10, Train, 0), (1, 11, Test, 2), (3, 10, Train, 4), (3, 11, Test, 9)]);
    // Both: dropping user 3 leaves items 10 and 11 with one event each, and so on to nothing.
    let err = build_events(&ds, &ProtocolConfig { min_user_events: 3, min_item_events: 2, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("no events left after the k-core filter"), "{err}");
}

#[test]
fn sampled_negatives_are_never_past_items_and_are_drawn_once() {
    use attnrec::data::protocol::build_samples;
    use attnrec::data::synth::{generate, Preset};
    use std::collections::{HashMap, HashSet};
    let dir = tempfile::tempdir().unwrap();
    generate(&Preset::Tiny.spec(), 11, dir.path()).unwrap();
    let ds = Dataset::load(dir.path(), None).unwrap();
    let cfg = |k, seed| ProtocolConfig { negatives: k, negative_seed: seed, ..Default::default() };
    let ev = build_samples(&ds, &cfg(4, 9)).unwrap();
    let positives = (0..ev.logged).filter(|&k| ev.label[k] == 1.0).count();
    assert_eq!(ev.len() - ev.logged, 4 * positives, "90 items leave room for 4 negatives each");
    // Every (user, item) interaction time, to check "not interacted with at or before t".
    let mut times: HashMap<(i64, i64), Vec<i64>> = HashMap::new();
    for k in 0..ev.logged {
        times.entry((ev.user[k], ev.item[k])).or_default().push(ev.timestamp[k]);
    }
    let train_items: HashSet<i64> = (0..ev.logged).filter(|&k| ev.split[k] == Split::Train).map(|k| ev.item[k]).collect();
    let mut per_positive: HashMap<u32, Vec<i64>> = HashMap::new();
    for k in ev.logged..ev.len() {
        let p = ev.history_end[k] as usize;
        assert_eq!((ev.label[k], ev.label[p]), (0.0, 1.0));
        assert_eq!((ev.user[k], ev.timestamp[k], ev.split[k], ev.row[k]), (ev.user[p], ev.timestamp[p], ev.split[p], ev.row[p]));
        let t = ev.timestamp[k];
        let past = times.get(&(ev.user[k], ev.item[k])).is_some_and(|ts| ts.iter().any(|&s| s <= t));
        assert!(!past, "negative {} of user {} at {t} was interacted with by then", ev.item[k], ev.user[k]);
        assert!(train_items.contains(&ev.item[k]));
        assert_eq!(ev.history(k, 50), ev.history(p, 50), "a negative shares its positive's history");
        per_positive.entry(p as u32).or_default().push(ev.item[k]);
    }
    assert!(per_positive.values().all(|v| v.iter().collect::<HashSet<_>>().len() == v.len()), "distinct per positive");
    // Drawn once: the same seed gives the same negatives; another seed others.
    let again = build_samples(&ds, &cfg(4, 9)).unwrap();
    assert_eq!(again.item, ev.item);
    let other = build_samples(&ds, &cfg(4, 10)).unwrap();
    assert_ne!(other.item[ev.logged..], ev.item[ev.logged..]);
    assert_eq!(other.item[..ev.logged], ev.item[..ev.logged]);
}
