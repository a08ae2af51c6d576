//! Property tests (proptest) for the loaders and the protocol. Random small rating logs, with
//! timestamp ties, duplicate (user, item) pairs, one-event users, unicode and latin-1 titles with
//! separators and quotes in them, negative and huge ids and timestamps, are written here in every
//! fixed layout by this file's own writers; then:
//! - a well-formed log loads, and its events keep the protocol's invariants, each checked against
//!   a computation of this file (sort order, labels, split sizes from integer arithmetic,
//!   histories that never reach their own event or a later one, vocabularies from train only);
//! - a damaged log (bytes replaced, lines cut, duplicated or dropped) either loads and keeps the
//!   same invariants, or fails with one line that names a file; it never panics;
//! - the binary answers a damaged log with exit status 0 or 2 and, for 2, one line on stderr.
use attnrec::data::protocol::{build_events, Events, ProtocolConfig, Split};
use attnrec::data::{Dataset, Format};
use attnrec::features::{item_first_genres, FeatureMap};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// One rating as written: (user, item, rating, timestamp).
type Rating = (i64, i64, f64, i64);

/// Ids: mostly a few small ones (so users have several events and pairs repeat), sometimes
/// negative or near the ends of `i64`.
fn id() -> impl Strategy<Value = i64> {
    prop_oneof![8 => 1i64..6, 1 => Just(-3i64), 1 => Just(i64::MAX - 1), 1 => Just(9_007_199_254_740_993i64)]
}

/// Timestamps from a small pool (ties) with pre-1970, zero and far-future values.
fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![6 => 0i64..4, 1 => Just(-86_400i64), 1 => Just(978_300_760i64), 1 => Just(i64::MAX / 2)]
}

fn rating() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![1.0, 2.0, 3.0, 3.5, 4.0, 4.5, 5.0, 0.5])
}

fn ratings() -> impl Strategy<Value = Vec<Rating>> {
    prop::collection::vec((id(), id(), rating(), timestamp()), 1..60)
}

/// Titles: printable ASCII with the separators of every layout (`,` `"` `:` `|` and spaces),
/// accented latin-1 letters, and characters outside latin-1.
fn title() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec!['a', 'Z', ' ', ',', '"', ':', '(', ')', '1', '9', 'é', 'ü', 'ß', 'Ø', '×', 'ñ', '東', 'λ', '—', '\'']);
    prop::collection::vec(chars, 1..16).prop_map(|c| c.into_iter().collect::<String>())
}

/// The protocol's options that shape the events: ratios in hundredths (train_ratio + valid_ratio
/// below 1, valid never empty by construction), history length 1–6. Half the cases take a pair
/// whose bounds float arithmetic gets wrong for some n ≤ 20 (0.7 + 0.1 is below 0.8 in `f64`, so
/// floor(10 · (0.7 + 0.1)) is 7), the other half any pair.
fn protocol() -> impl Strategy<Value = ProtocolConfig> {
    let tricky = prop::sample::select(vec![(70u32, 10u32), (2, 18), (5, 35), (11, 29), (21, 59), (9, 71)]);
    let any_pair = (1u32..98, 1u32..50).prop_map(|(t, v)| (t, v.min(99 - t)));
    (prop_oneof![tricky, any_pair], 1usize..7).prop_map(|((t, v), l)| ProtocolConfig {
        train_ratio: t as f64 / 100.0,
        valid_ratio: v as f64 / 100.0,
        history_len: l,
        ..Default::default()
    })
}

const LAYOUTS: [Format; 4] = [Format::Ml100k, Format::Ml1m, Format::MlCsv, Format::Atomic];

/// `titles` by item, for every item of `log`.
fn titles_of(log: &[Rating], titles: &[String]) -> BTreeMap<i64, String> {
    let items: BTreeSet<i64> = log.iter().map(|r| r.1).collect();
    items.into_iter().zip(titles.iter().cycle()).map(|(i, t)| (i, t.clone())).collect()
}

/// A rating as the layouts write it: integers without a point, halves with one.
fn rating_text(r: f64) -> String {
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

/// Latin-1 bytes of `s`, with `?` for characters outside it (as the old MovieLens files have).
fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| if (c as u32) < 256 { c as u32 as u8 } else { b'?' }).collect()
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `header`, then one line `user SEP item SEP rating SEP timestamp` per rating of `log`.
fn ratings_text(log: &[Rating], header: &str, sep: &str) -> String {
    let mut text = String::from(header);
    for &(u, i, r, t) in log {
        text.push_str(&format!("{u}{sep}{i}{sep}{}{sep}{t}\n", rating_text(r)));
    }
    text
}

/// Writes `log` and its items into `dir` in `layout`; returns the title each item should load
/// with. Every item gets the genres `Drama|Comedy` (ml-100k: the flags of both).
fn write(dir: &Path, layout: Format, log: &[Rating], titles: &BTreeMap<i64, String>) -> BTreeMap<i64, String> {
    let mut expected = BTreeMap::new();
    match layout {
        Format::Ml100k => {
            fs::write(dir.join("u.data"), ratings_text(log, "", "\t")).unwrap();
            let mut item = Vec::new();
            for (i, t) in titles {
                // No `|` in a title of this layout (it has no quoting).
                let t = t.replace('|', "/");
                let bytes = latin1(&t);
                item.extend(format!("{i}|").bytes());
                item.extend(&bytes);
                // Flags: Comedy (5) and Drama (8) of the 19.
                let flags: Vec<&str> = (0..19).map(|g| if g == 5 || g == 8 { "1" } else { "0" }).collect();
                item.extend(format!("|01-Jan-1995||http://x/|{}\n", flags.join("|")).bytes());
                // The loader's rule: UTF-8 where the bytes are valid UTF-8, else latin-1.
                let want = String::from_utf8(bytes.clone()).unwrap_or_else(|_| bytes.iter().map(|&b| b as char).collect());
                expected.insert(*i, want);
            }
            fs::write(dir.join("u.item"), item).unwrap();
        }
        Format::Ml1m => {
            fs::write(dir.join("ratings.dat"), ratings_text(log, "", "::")).unwrap();
            let mut movies = String::new();
            for (i, t) in titles {
                // A title may hold a single `:` but not the separator `::`. One `replace` leaves
                // `::` of a run of three or more colons (`:::` → `::`), so collapse until none.
                let mut t = t.clone();
                while t.contains("::") {
                    t = t.replace("::", ":");
                }
                let t = if t.ends_with(':') { format!("{t}x") } else { t };
                movies.push_str(&format!("{i}::{t}::Drama|Comedy\n"));
                expected.insert(*i, t);
            }
            fs::write(dir.join("movies.dat"), movies).unwrap();
        }
        Format::MlCsv => {
            fs::write(dir.join("ratings.csv"), ratings_text(log, "userId,movieId,rating,timestamp\n", ",")).unwrap();
            let mut movies = String::from("movieId,title,genres\n");
            for (i, t) in titles {
                movies.push_str(&format!("{i},{},Drama|Comedy\n", csv_field(t)));
                expected.insert(*i, t.clone());
            }
            fs::write(dir.join("movies.csv"), movies).unwrap();
        }
        Format::Atomic => {
            let header = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n";
            fs::write(dir.join("ml.inter"), ratings_text(log, header, "\t")).unwrap();
            let mut item = String::from("item_id:token\tmovie_title:token_seq\tgenre:token_seq\n");
            for (i, t) in titles {
                // No tabs in this layout's fields (it has no quoting); titles have none.
                item.push_str(&format!("{i}\t{t}\tDrama Comedy\n"));
                expected.insert(*i, t.clone());
            }
            fs::write(dir.join("ml.item"), item).unwrap();
        }
        Format::Log => unreachable!("not a fixed layout"),
    }
    expected
}

/// The files of `dir`, for naming in error messages.
fn file_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// The protocol's invariants on `ev`, built from `log` (ratings in file order) with `cfg`, each
/// computed here without the library: events sorted by user, then timestamp, then file order;
/// labels `rating ≥ threshold`; per user with `n` events, `⌊n·t⌋` train events and `⌊n·(t+v)⌋`
/// train + valid, in integer arithmetic on the hundredths; histories of the last `min(L, k)`
/// earlier events of the same user; vocabularies of train events only.
fn check_protocol(log: &[Rating], cfg: &ProtocolConfig, ev: &Events, fm: &FeatureMap) -> Result<(), TestCaseError> {
    let mut order: Vec<usize> = (0..log.len()).collect();
    order.sort_by_key(|&r| (log[r].0, log[r].3, r));
    prop_assert_eq!(ev.len(), log.len(), "every logged event is one sample (no negatives asked for)");
    prop_assert_eq!(ev.logged, log.len());
    let t = (cfg.train_ratio * 100.0).round() as usize;
    let v = (cfg.valid_ratio * 100.0).round() as usize;
    let mut per_user: BTreeMap<i64, usize> = BTreeMap::new();
    for r in log {
        *per_user.entry(r.0).or_default() += 1;
    }
    let mut train_users = BTreeSet::new();
    let mut train_items = BTreeSet::new();
    let (mut start, mut seen_in_user) = (0usize, 0usize);
    for (k, &r) in order.iter().enumerate() {
        let (u, i, rating, ts) = log[r];
        if k > 0 && ev.user[k - 1] != u {
            start = k;
            seen_in_user = 0;
        }
        prop_assert_eq!((ev.user[k], ev.item[k], ev.timestamp[k], ev.row[k] as usize), (u, i, ts, r), "event {}", k);
        prop_assert_eq!(ev.label[k], if rating >= cfg.label_threshold { 1.0 } else { 0.0 });
        let n = per_user[&u];
        let (train_end, valid_end) = (n * t / 100, n * (t + v) / 100);
        let want = if seen_in_user < train_end {
            Split::Train
        } else if seen_in_user < valid_end {
            Split::Valid
        } else {
            Split::Test
        };
        prop_assert_eq!(ev.split[k], want, "event {} of user {} ({} events)", seen_in_user, u, n);
        if want == Split::Train {
            train_users.insert(u);
            train_items.insert(i);
        }
        let hist = ev.history(k, cfg.history_len);
        prop_assert_eq!(hist.clone(), k - seen_in_user.min(cfg.history_len)..k);
        prop_assert_eq!(start, k - seen_in_user);
        for h in hist {
            prop_assert!(ev.user[h] == u && ev.timestamp[h] <= ts && h < k);
        }
        seen_in_user += 1;
    }
    prop_assert_eq!(fm.user.keys(), &train_users.into_iter().collect::<Vec<_>>()[..]);
    prop_assert_eq!(fm.item.keys(), &train_items.into_iter().collect::<Vec<_>>()[..]);
    Ok(())
}

/// What can be checked of events whose log is not known (a damaged file that still loaded): the
/// protocol's order, each user's split sizes (0.8 / 0.1 of `cfg`, in integer arithmetic) with
/// train before valid before test, histories inside the user and before the event, and
/// vocabularies of the train events.
fn check_events_alone(cfg: &ProtocolConfig, ev: &Events, fm: &FeatureMap) -> Result<(), TestCaseError> {
    prop_assert_eq!((cfg.train_ratio, cfg.valid_ratio), (0.8, 0.1));
    let mut k = 0;
    let (mut users, mut items) = (BTreeSet::new(), BTreeSet::new());
    while k < ev.len() {
        let mut end = k + 1;
        while end < ev.len() && ev.user[end] == ev.user[k] {
            end += 1;
        }
        let n = end - k;
        for j in k..end {
            if j > k {
                prop_assert!((ev.timestamp[j - 1], ev.row[j - 1]) < (ev.timestamp[j], ev.row[j]), "order at {}", j);
            }
            let want = if j - k < n * 8 / 10 { Split::Train } else if j - k < n * 9 / 10 { Split::Valid } else { Split::Test };
            prop_assert_eq!(ev.split[j], want);
            if want == Split::Train {
                users.insert(ev.user[j]);
                items.insert(ev.item[j]);
            }
            let h = ev.history(j, cfg.history_len);
            prop_assert!(h.start >= k && h.end == j && h.len() == (j - k).min(cfg.history_len));
        }
        if end < ev.len() {
            prop_assert!(ev.user[end] > ev.user[k], "users in order");
        }
        k = end;
    }
    prop_assert_eq!(fm.user.keys(), &users.into_iter().collect::<Vec<_>>()[..]);
    prop_assert_eq!(fm.item.keys(), &items.into_iter().collect::<Vec<_>>()[..]);
    Ok(())
}

/// An error of the library is one line that names one of the dataset's files or its folder.
fn check_error(dir: &Path, msg: &str) -> Result<(), TestCaseError> {
    prop_assert!(!msg.contains('\n'), "more than one line: {:?}", msg);
    let names = file_names(dir);
    prop_assert!(
        names.iter().any(|n| msg.contains(n.as_str())) || msg.contains(&*dir.to_string_lossy()),
        "names no file: {:?}",
        msg
    );
    Ok(())
}

/// A panic's message, for the report.
fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

/// Loads `dir` and builds the protocol's events and vocabularies, turning a panic into a failure.
fn load(dir: &Path, layout: Format, cfg: &ProtocolConfig) -> Result<attnrec::error::Result<(Dataset, Events, FeatureMap)>, TestCaseError> {
    std::panic::catch_unwind(|| {
        let ds = Dataset::load(dir, Some(layout))?;
        let ev = build_events(&ds, cfg)?;
        let fm = FeatureMap::fit(&ev, &item_first_genres(&ds)?, cfg);
        Ok((ds, ev, fm))
    })
    .map_err(|p| TestCaseError::fail(format!("panicked: {}", panic_text(p))))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A well-formed log in any layout loads with its titles, and its events keep the protocol.
    #[test]
    fn well_formed_logs_keep_the_protocol(log in ratings(), titles in prop::collection::vec(title(), 1..6), cfg in protocol(), layout in prop::sample::select(LAYOUTS.to_vec())) {
        let dir = tempfile::tempdir().unwrap();
        let want_titles = write(dir.path(), layout, &log, &titles_of(&log, &titles));
        let loaded = load(dir.path(), layout, &cfg)?;
        let (ds, ev, fm) = loaded.map_err(|e| TestCaseError::fail(format!("{layout:?} refused a well-formed log: {e}")))?;
        check_protocol(&log, &cfg, &ev, &fm)?;
        let ids = ds.items.column("item_id").unwrap().i64().unwrap().iter().map(|i| i.unwrap_or(i64::MIN)).collect::<Vec<_>>();
        let got = ds.items.column("title").unwrap().str().unwrap().iter().map(|t| t.unwrap_or("<null>").to_string()).collect::<Vec<_>>();
        let got: BTreeMap<i64, String> = ids.into_iter().zip(got).collect();
        prop_assert_eq!(got, want_titles);
    }

    /// A damaged log either loads and keeps the protocol, or fails with one line naming a file.
    #[test]
    fn damaged_logs_load_or_fail_with_one_line(
        log in ratings(),
        titles in prop::collection::vec(title(), 1..4),
        layout in prop::sample::select(LAYOUTS.to_vec()),
        damage in prop::collection::vec((0usize..2, any::<prop::sample::Index>(), 0u8..5, prop::collection::vec(any::<u8>(), 0..12)), 1..4),
    ) {
        let cfg = ProtocolConfig::default();
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), layout, &log, &titles_of(&log, &titles));
        let mut files = file_names(dir.path());
        files.sort();
        for (which, at, how, bytes) in &damage {
            let path = dir.path().join(&files[which % files.len()]);
            let text = fs::read(&path).unwrap();
            let mut lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            let k = at.index(lines.len());
            match how {
                0 => lines[k] = bytes.clone(),                           // a line of random bytes
                1 => { let cut = at.index(lines[k].len() + 1); lines[k].truncate(cut); } // a line cut short
                2 => { let l = lines[k].clone(); lines.insert(k, l); }  // a line twice
                3 => { lines.remove(k); }                                // a line gone (the header too)
                _ => { let at2 = at.index(lines[k].len() + 1); lines[k].splice(at2..at2, bytes.iter().copied()); } // bytes inside a line
            }
            fs::write(&path, lines.join(&b'\n')).unwrap();
        }
        match load(dir.path(), layout, &cfg)? {
            Ok((_, ev, fm)) => check_events_alone(&cfg, &ev, &fm)?,
            Err(e) => check_error(dir.path(), &e.to_string())?,
        }
    }
}

/// The binary on damaged logs: exit status 0 or 2, never a panic (101), and for 2 one line on
/// stderr. Fewer cases: each starts a process.
#[test]
fn the_binary_answers_a_damaged_log_with_status_0_or_2() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 24, ..ProptestConfig::default() });
    let strategy = (ratings(), prop::sample::select(LAYOUTS.to_vec()), prop::collection::vec(any::<u8>(), 0..24), any::<prop::sample::Index>());
    runner
        .run(&strategy, |(log, layout, bytes, at)| {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), layout, &log, &titles_of(&log, &["Title (1999)".to_string()]));
            let mut files = file_names(dir.path());
            files.sort();
            let path = dir.path().join(&files[at.index(files.len())]);
            let mut text = fs::read(&path).unwrap();
            let k = at.index(text.len() + 1);
            text.splice(k..k, bytes);
            fs::write(&path, text).unwrap();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_attnrec"))
                .args(["data", "inspect", dir.path().to_str().unwrap(), "--format", layout.name()])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => {}
                Some(2) => prop_assert_eq!(stderr.trim_end().lines().count(), 1, "stderr: {}", stderr),
                other => prop_assert!(false, "exit status {:?}, stderr: {}", other, stderr),
            }
            Ok(())
        })
        .unwrap();
}
