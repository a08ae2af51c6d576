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
    let fm = FeatureMap::fit(&ev, &genres, 50);
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
