//! `attnrec score` through the binary: the round trip against `eval`'s predictions, row order and
//! count under unknown ids, duplicates, empty histories and empty files, top-k, and hostile input.
use assert_cmd::Command;
use attnrec::data::protocol::{build_events, Events, HistoryRule, ProtocolConfig, Split};
use attnrec::data::synth::{generate, Preset};
use attnrec::config::RunConfig;
use attnrec::data::{token_id, Dataset};
use attnrec::run::predict_run;
use std::path::{Path, PathBuf};

fn attnrec() -> Command {
    Command::cargo_bin("attnrec").unwrap()
}

/// A tiny dataset and a DIN run trained on it (2 epochs, with `extra` flags), in `dir`.
fn trained(dir: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
    let data = dir.join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    let run = dir.join("run");
    attnrec()
        .args(["train", "--model", "din", "--epochs", "2", "--threads", "1", "-q", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .args(extra)
        .assert()
        .success();
    (data, run)
}

fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| l.split(',').map(str::to_string).collect()).collect()
}

fn score(run: &Path, candidates: &Path, output: &Path, extra: &[&str]) -> std::process::Output {
    attnrec()
        .args(["score", "-q", "--threads", "1", "--run"])
        .arg(run)
        .arg("--candidates")
        .arg(candidates)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .unwrap()
}

/// Scores the test samples of `run`'s data as candidates, with their timestamps, and checks the
/// scores against `eval`'s predictions; returns the events and test indices.
fn round_trip(dir: &Path, data: &Path, run: &Path, protocol: &ProtocolConfig) -> (Events, Vec<usize>) {
    let ds = Dataset::load(data, None).unwrap();
    let events = build_events(&ds, protocol).unwrap();
    let test = round_trip_events(dir, &events, run, &|id| id.to_string());
    (events, test)
}

/// [`round_trip`] on given events, their ids written as `show` spells them.
fn round_trip_events(dir: &Path, events: &Events, run: &Path, show: &dyn Fn(i64) -> String) -> Vec<usize> {
    let test = events.indices(Split::Test);
    // Where a user has two events with the same timestamp, the protocol lets the earlier one (in
    // file order) into the later one's history, and a request timestamp cannot: those rows may
    // differ, every other row must match.
    let tied = |k: usize| k > 0 && events.user[k - 1] == events.user[k] && events.timestamp[k - 1] == events.timestamp[k];
    let mut csv = String::from("request,user_id,item_id,timestamp\n");
    for (n, &k) in test.iter().enumerate() {
        csv.push_str(&format!("r{n},{},{},{}\n", show(events.user[k]), show(events.item[k]), events.timestamp[k]));
    }
    let cands = dir.join("cands.csv");
    std::fs::write(&cands, csv).unwrap();
    let out = dir.join("scores.csv");
    let o = score(run, &cands, &out, &["--logit", "--batch-size", "7", "--chunk-rows", "50"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_csv(&out);
    assert_eq!(rows[0], ["request", "user_id", "item_id", "timestamp", "score", "logit"]);
    let want = predict_run(run, Split::Test, None).unwrap();
    assert_eq!(rows.len() - 1, want.probs.len());
    let mut compared = 0;
    for (n, (row, p)) in rows[1..].iter().zip(&want.probs).enumerate() {
        assert_eq!(row[0], format!("r{n}"), "row order");
        let s: f64 = row[4].parse().unwrap();
        if !tied(test[n]) {
            assert!((s - p).abs() < 1e-6, "row {n}: score {s} vs eval {p}");
            compared += 1;
        }
    }
    assert!(compared * 10 >= test.len() * 7, "only {compared} of {} rows without ties", test.len());
    // Three scoring threads, each with its own copy of the model, write the very same file.
    let out3 = dir.join("scores3.csv");
    let o = attnrec()
        .args(["score", "-q", "--threads", "3", "--logit", "--batch-size", "7", "--chunk-rows", "50", "--run"])
        .arg(run)
        .arg("--candidates")
        .arg(&cands)
        .arg("--output")
        .arg(&out3)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out3).unwrap(), std::fs::read_to_string(&out).unwrap(), "3 threads = 1 thread");
    test
}

#[test]
fn string_ids_score_as_they_were_evaluated() {
    // The tiny preset as a generic log whose ids are strings: users `u<id>`, items `<id>` with a
    // leading zero (so `07` and `7` would be different items).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tiny = d.join("tiny");
    generate(&Preset::Tiny.spec(), 42, &tiny).unwrap();
    let ds = Dataset::load(&tiny, None).unwrap();
    let r = &ds.ratings;
    let col = |n: &str| r.column(n).unwrap().cast(&polars::prelude::DataType::Float64).unwrap();
    let (u, i, ts, v) = (col("user_id"), col("item_id"), col("timestamp"), col("rating"));
    let (u, i, ts, v) = (u.f64().unwrap(), i.f64().unwrap(), ts.f64().unwrap(), v.f64().unwrap());
    let mut csv = String::from("user,item,ts,stars\n");
    let mut names = std::collections::HashMap::new();
    for k in 0..r.height() {
        let (user, item) = (format!("u{}", u.get(k).unwrap()), format!("0{}", i.get(k).unwrap()));
        csv.push_str(&format!("{user},{item},{},{}\n", ts.get(k).unwrap(), v.get(k).unwrap()));
        names.insert(token_id(&user), user);
        names.insert(token_id(&item), item);
    }
    std::fs::create_dir_all(d.join("log")).unwrap();
    std::fs::write(d.join("log/log.csv"), csv).unwrap();
    let config = format!(
        "[data]\npath = {:?}\n[data.log]\nfile = \"log.csv\"\nuser = \"user\"\nitem = \"item\"\ntimestamp = \"ts\"\nrating = \"stars\"\n\
         [model]\nkind = \"din\"\n[train]\nepochs = 1\nthreads = 1\n",
        d.join("log")
    );
    std::fs::write(d.join("run.toml"), &config).unwrap();
    let run = d.join("run");
    attnrec().args(["train", "-q", "--config"]).arg(d.join("run.toml")).arg("--out").arg(&run).assert().success();
    let data = RunConfig::from_toml(&config).unwrap().data;
    let events = build_events(&Dataset::open(&data).unwrap(), &ProtocolConfig::default()).unwrap();
    assert!(events.item.iter().all(|&i| i < 0), "every item token is hashed (leading zero)");
    round_trip_events(d, &events, &run, &|id| names[&id].clone());
    // An integer-looking token of the same items is another item: unknown here.
    let cands = d.join("c.csv");
    std::fs::write(&cands, format!("user_id,item_id\n{},{}\n", names[&events.user[0]], &names[&events.item[0]][1..])).unwrap();
    let o = attnrec().args(["score", "--threads", "1", "--run"]).arg(&run).arg("--candidates").arg(&cands).args(["--output", "-"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown users 0, unknown items 1"));
}

#[test]
fn positives_only_histories_time_gaps_and_side_features_score_as_they_were_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--history", "positives", "--time-gap", "--user-features", "age,gender,occupation", "--item-features", "year,genres"];
    let (data, run) = trained(dir.path(), &flags);
    let protocol = ProtocolConfig { history: HistoryRule::Positives, time_gap: true, ..Default::default() };
    round_trip(dir.path(), &data, &run, &protocol);
}

/// Each history event's own label, as `score` builds it from the history log, equals the one the
/// run was trained and evaluated with.
#[test]
fn history_feedback_scores_as_it_was_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = trained(dir.path(), &["--history-feedback"]);
    let fm = std::fs::read_to_string(run.join("feature_map.json")).unwrap();
    assert!(fm.contains("\"history_feedback\": true") && fm.contains("\"hist_feedback\""), "{fm}");
    let protocol = ProtocolConfig { history_feedback: true, ..Default::default() };
    round_trip(dir.path(), &data, &run, &protocol);
}

#[test]
fn scoring_the_test_split_reproduces_eval_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = trained(dir.path(), &[]);
    let (events, test) = round_trip(dir.path(), &data, &run, &ProtocolConfig::default());
    let cands = dir.path().join("cands.csv");
    let out = dir.path().join("scores.csv");

    // Unknown ids, a duplicate, a request before any event (empty history), no timestamp.
    let (u, i) = (events.user[test[0]], events.item[test[0]]);
    let csv = format!(
        "user_id,item_id,timestamp\n{u},{i},\n999999,{i},\n{u},888888,\n{u},{i},\n{u},{i},0\n"
    );
    std::fs::write(&cands, csv).unwrap();
    let o = score(&run, &cands, &out, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_csv(&out);
    assert_eq!(rows.len(), 6);
    let firsts: Vec<(&str, &str)> = rows[1..].iter().map(|r| (r[0].as_str(), r[1].as_str())).collect();
    let (us, is) = (u.to_string(), i.to_string());
    assert_eq!(
        firsts,
        [(us.as_str(), is.as_str()), ("999999", is.as_str()), (us.as_str(), "888888"), (us.as_str(), is.as_str()), (us.as_str(), is.as_str())]
    );
    assert_eq!(rows[1][3], rows[4][3], "duplicates score the same");
    assert_ne!(rows[1][3], rows[5][3], "an empty history changes the score");
    let o = attnrec().args(["score", "--threads", "1", "--run"]).arg(&run).arg("--candidates").arg(&cands).args(["--output", "-"]).output().unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown users 1, unknown items 1, empty histories 2"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), std::fs::read_to_string(&out).unwrap(), "stdout = file");

    // --strict: the unknown user on line 3 is an error, and no output is left behind.
    let strict_out = dir.path().join("strict.csv");
    let o = score(&run, &cands, &strict_out, &["--strict"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(":3: unknown user id 999999"), "{err}");
    assert!(!strict_out.exists() && !dir.path().join("strict.csv.partial").exists());

    // Header only: header only.
    std::fs::write(&cands, "user_id,item_id\n").unwrap();
    assert!(score(&run, &cands, &out, &[]).status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "user_id,item_id,score\n");

    // Top-k: each user's best 2 of 3, grouped by user, best first.
    let (u2, i2, i3) = (events.user[*test.last().unwrap()], events.item[test[1]], events.item[test[2]]);
    let csv = format!("user_id,item_id\n{u},{i}\n{u2},{i}\n{u},{i2}\n{u2},{i2}\n{u},{i3}\n{u2},{i3}\n");
    std::fs::write(&cands, csv).unwrap();
    assert!(score(&run, &cands, &out, &["--top-k", "2"]).status.success());
    let rows = read_csv(&out);
    assert_eq!(rows[0], ["user_id", "item_id", "score", "rank"]);
    assert_eq!(rows.len(), 5);
    for pair in rows[1..].chunks(2) {
        assert_eq!(pair[0][0], pair[1][0], "grouped by user");
        assert_eq!((pair[0][3].as_str(), pair[1][3].as_str()), ("1", "2"));
        assert!(pair[0][2].parse::<f64>().unwrap() >= pair[1][2].parse::<f64>().unwrap());
    }
    assert_eq!(rows[1][0], u.to_string(), "users in order of first appearance");
}

#[test]
fn hostile_candidates_fail_with_one_line_and_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let (_, run) = trained(dir.path(), &[]);
    let cands = dir.path().join("c.csv");
    let out = dir.path().join("o.csv");
    let cases: &[(&str, &str)] = &[
        ("user,item_id\n1,2\n", "no column 'user_id'"),
        ("user_id,item_id\n1,2\nabc,3\n", ":3: column 'user_id': 'abc' is not an integer id"),
        ("user_id,item_id,timestamp\n1,2,yesterday\n", "column 'timestamp': 'yesterday'"),
        ("user_id,item_id,score\n1,2,0.5\n", "already has a column 'score'"),
        ("", "is empty"),
        ("user_id,item_id\n1,2\n3\n", ":3: 1 fields where the header has 2"),
    ];
    for (text, needle) in cases {
        std::fs::write(&cands, text).unwrap();
        let o = score(&run, &cands, &out, &[]);
        assert_eq!(o.status.code(), Some(2), "{text:?}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{text:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!out.exists() && !dir.path().join("o.csv.partial").exists(), "{text:?} left output");
    }
    let o = score(&dir.path().join("nope"), &cands, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
    let o = score(&run, &dir.path().join("missing.csv"), &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists());
    // A run folder whose feature map asks for features its weights were not trained with.
    std::fs::write(&cands, "user_id,item_id\n1,2\n").unwrap();
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    for f in std::fs::read_dir(&run).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, other.join(f.file_name().unwrap())).unwrap();
    }
    let fm = std::fs::read_to_string(other.join("feature_map.json")).unwrap();
    assert!(fm.contains("\"time_gap\": false"));
    std::fs::write(other.join("feature_map.json"), fm.replace("\"time_gap\": false", "\"time_gap\": true")).unwrap();
    let o = score(&other, &cands, &out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("does not match"), "{err}");
    assert!(!out.exists() && !dir.path().join("o.csv.partial").exists());
}

/// `attnrec explain --json` of `run` for [user, item, at], heat maps into `out`.
fn explain_json(run: &Path, [u, i, t]: &[i64; 3], out: &Path) -> serde_json::Value {
    let o = attnrec()
        .args(["explain", "--json", "--run"])
        .arg(run)
        .args(["--user", &u.to_string(), "--item", &i.to_string(), "--at", &t.to_string(), "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn explain_shows_the_scored_history_with_its_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = trained(dir.path(), &[]);
    let events = build_events(&Dataset::load(&data, None).unwrap(), &ProtocolConfig::default()).unwrap();
    // The last test sample of the first user: its history is the user's last 50 earlier events.
    let k = *events.indices(Split::Test).iter().find(|&&k| events.user[k] == events.user[0] && events.timestamp[k - 1] != events.timestamp[k]).unwrap();
    let (u, i, t) = (events.user[k], events.item[k], events.timestamp[k]);
    let out = dir.path().join("explain");
    let e = explain_json(&run, &[u, i, t], &out);
    let start = events.user_start[k] as usize;
    let want: Vec<i64> = (start.max(k.saturating_sub(50))..k).map(|j| events.item[j]).collect();
    let got: Vec<i64> = e["history"].as_array().unwrap().iter().map(|h| h["item"].as_i64().unwrap()).collect();
    assert_eq!(got, want, "the protocol's history, oldest first");
    assert!(e["history"].as_array().unwrap().iter().all(|h| h["weight"].as_f64().unwrap().is_finite()));
    // The same score as `attnrec score` gives the same request.
    let cands = dir.path().join("one.csv");
    std::fs::write(&cands, format!("user_id,item_id,timestamp\n{u},{i},{t}\n")).unwrap();
    let scored = dir.path().join("one-scored.csv");
    assert!(score(&run, &cands, &scored, &[]).status.success());
    let s: f64 = read_csv(&scored)[1][3].parse().unwrap();
    assert!((s - e["score"].as_f64().unwrap()).abs() < 1e-9, "{s} vs {}", e["score"]);
    let stem = format!("user-{u}-item-{i}");
    assert!(out.join(format!("{stem}.svg")).is_file() && out.join(format!("{stem}.png")).is_file());

    // BST: the target's weights per head are the target row of each head's self-attention
    // matrix (the last block over the history and the target), whose rows are distributions.
    let bst = dir.path().join("bst");
    attnrec().args(["train", "--model", "bst", "--epochs", "1", "--threads", "1", "-q", "--data"]).arg(&data).arg("--out").arg(&bst).assert().success();
    let e = explain_json(&bst, &[u, i, t], &out);
    let heads = e["heads"].as_u64().unwrap() as usize;
    assert!(heads >= 2, "bst's default has several heads");
    let hist = e["history"].as_array().unwrap();
    let n = hist.len();
    assert_eq!(n, want.len());
    let sa = e["self_attention"].as_array().unwrap();
    assert_eq!(sa.len(), heads);
    let names = e["self_attention_positions"].as_array().unwrap();
    assert_eq!(names.len(), n + 1);
    assert_eq!(names[n], "target");
    for (h, m) in sa.iter().enumerate() {
        let m = m.as_array().unwrap();
        assert_eq!(m.len(), n + 1);
        for row in m {
            let sum: f64 = row.as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-5, "head {h}: a row sums to {sum}");
        }
        for (c, x) in hist.iter().enumerate() {
            let hw = x["head_weights"].as_array().unwrap()[h].as_f64().unwrap();
            assert!((hw - m[n][c].as_f64().unwrap()).abs() < 1e-9, "head {h}, event {c}: target row = target weights");
        }
        assert!(out.join(format!("{stem}-self-head{}.png", h + 1)).is_file());
    }
    for x in hist {
        let hw: Vec<f64> = x["head_weights"].as_array().unwrap().iter().map(|w| w.as_f64().unwrap()).collect();
        assert!((x["weight"].as_f64().unwrap() - hw.iter().sum::<f64>() / heads as f64).abs() < 1e-12, "weight = mean over heads");
    }

    // DIEN: the weights that gate its AUGRU, a softmax over the present history; `explain`
    // scores the request as `score` does.
    let dien = dir.path().join("dien");
    attnrec().args(["train", "--model", "dien", "--epochs", "1", "--threads", "1", "-q", "--data"]).arg(&data).arg("--out").arg(&dien).assert().success();
    let e = explain_json(&dien, &[u, i, t], &out);
    let hist = e["history"].as_array().unwrap();
    assert_eq!(hist.len(), want.len());
    let sum: f64 = hist.iter().map(|x| x["weight"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-5, "dien's weights sum to {sum}");
    let scored = dir.path().join("one-dien.csv");
    assert!(score(&dien, &cands, &scored, &[]).status.success());
    let s: f64 = read_csv(&scored)[1][3].parse().unwrap();
    assert!((s - e["score"].as_f64().unwrap()).abs() < 1e-9, "dien: {s} vs {}", e["score"]);

    // A model without attention, and an id that is not one, are one-line errors.
    let base = dir.path().join("base");
    attnrec().args(["train", "--model", "base", "--epochs", "1", "--threads", "1", "-q", "--data"]).arg(&data).arg("--out").arg(&base).assert().success();
    let o = attnrec().args(["explain", "--run"]).arg(&base).args(["--user", &u.to_string(), "--item", &i.to_string()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("the base model has no target attention"));
    let o = attnrec().args(["explain", "--run"]).arg(&run).args(["--user", "x1", "--item", "1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--user 'x1' is not an integer id"));
}

/// Parquet candidates keep their columns and types through scoring, in Parquet or CSV out, and
/// score as the same rows in CSV do; a column scoring cannot carry is a one-line error.
#[test]
fn parquet_candidates_and_outputs_keep_columns_types_and_scores() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (data, run) = trained(d, &[]);
    let events = build_events(&Dataset::load(&data, None).unwrap(), &ProtocolConfig::default()).unwrap();
    let test: Vec<usize> = events.indices(Split::Test).into_iter().take(300).collect();
    let n = test.len();
    let mut df = DataFrame::new_infer_height(vec![
        Column::new("request".into(), (0..n).map(|k| format!("r{k}")).collect::<Vec<_>>()),
        Column::new("user_id".into(), test.iter().map(|&k| events.user[k] as i32).collect::<Vec<_>>()),
        Column::new("item_id".into(), test.iter().map(|&k| events.item[k]).collect::<Vec<_>>()),
        Column::new("timestamp".into(), test.iter().map(|&k| Some(events.timestamp[k]).filter(|_| k % 7 != 0)).collect::<Vec<_>>()),
        Column::new("weight".into(), (0..n).map(|k| k as f32 / 3.0).collect::<Vec<_>>()),
        Column::new("flag".into(), (0..n).map(|k| k % 2 == 0).collect::<Vec<_>>()),
        // Above i64::MAX: carried as UInt64, not through an Int64 that turns them into nulls.
        Column::new("big".into(), (0..n).map(|k| u64::MAX - k as u64).collect::<Vec<_>>()),
    ])
    .unwrap();
    let pq = d.join("cands.parquet");
    ParquetWriter::new(std::fs::File::create(&pq).unwrap()).with_row_group_size(Some(64)).finish(&mut df).unwrap();
    // The same table as CSV.
    let mut csv = String::from("request,user_id,item_id,timestamp\n");
    for (r, &k) in test.iter().enumerate() {
        let ts = if k % 7 != 0 { events.timestamp[k].to_string() } else { String::new() };
        csv.push_str(&format!("r{r},{},{},{ts}\n", events.user[k], events.item[k]));
    }
    let cands = d.join("cands.csv");
    std::fs::write(&cands, csv).unwrap();
    let want = d.join("want.csv");
    assert!(score(&run, &cands, &want, &[]).status.success());
    let want: Vec<String> = read_csv(&want)[1..].iter().map(|r| r[4].clone()).collect();

    // Parquet in, Parquet out, read in small chunks.
    let out = d.join("scores.parquet");
    let o = score(&run, &pq, &out, &["--logit", "--chunk-rows", "50", "--batch-size", "16"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = ParquetReader::new(std::fs::File::open(&out).unwrap()).finish().unwrap();
    let names: Vec<String> = got.get_column_names().iter().map(|s| s.to_string()).collect();
    assert_eq!(names, ["request", "user_id", "item_id", "timestamp", "weight", "flag", "big", "score", "logit"]);
    let dtypes: Vec<DataType> = got.dtypes();
    assert_eq!(dtypes, [DataType::String, DataType::Int32, DataType::Int64, DataType::Int64, DataType::Float32, DataType::Boolean, DataType::UInt64, DataType::Float64, DataType::Float64]);
    for c in ["request", "user_id", "item_id", "timestamp", "weight", "flag", "big"] {
        assert!(got.column(c).unwrap().as_materialized_series().equals_missing(df.column(c).unwrap().as_materialized_series()), "column {c} carried through");
    }
    let scores: Vec<f64> = got.column("score").unwrap().f64().unwrap().into_no_null_iter().collect();
    assert_eq!(scores.len(), n);
    // (Other batch sizes pad to other widths: equal up to float summation order.)
    for (s, w) in scores.iter().zip(&want) {
        assert!((s - w.parse::<f64>().unwrap()).abs() < 1e-6, "Parquet and CSV inputs give the same scores: {s} vs {w}");
    }

    // Parquet in, CSV out: the same text for the id columns and the scores.
    let out_csv = d.join("scores.csv");
    assert!(score(&run, &pq, &out_csv, &[]).status.success());
    let rows = read_csv(&out_csv);
    assert_eq!(rows[0], ["request", "user_id", "item_id", "timestamp", "weight", "flag", "big", "score"]);
    assert_eq!((rows[1][5].as_str(), rows[1][6].as_str()), ("true", "18446744073709551615"));
    assert_eq!(rows[1..].iter().map(|r| r[7].clone()).collect::<Vec<_>>(), want);

    // A list column cannot be carried: one line, no output.
    let mut bad = DataFrame::new_infer_height(vec![
        Column::new("user_id".into(), &[events.user[test[0]]]),
        Column::new("item_id".into(), &[events.item[test[0]]]),
        Column::new("tags".into(), &[Series::new("".into(), &[1i64, 2])]),
    ])
    .unwrap();
    let bad_pq = d.join("bad.parquet");
    ParquetWriter::new(std::fs::File::create(&bad_pq).unwrap()).finish(&mut bad).unwrap();
    let bad_out = d.join("bad-out.parquet");
    let o = score(&run, &bad_pq, &bad_out, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("column 'tags' has type"), "{err}");
    assert!(!bad_out.exists() && !d.join("bad-out.parquet.partial").exists());
}

/// `score --explain`: each row's 3 most attended history items are the 3 largest |weights| that
/// `attnrec explain` shows for the same request.
#[test]
fn score_explain_lists_the_most_attended_history_items() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (data, run) = trained(d, &[]);
    let events = build_events(&Dataset::load(&data, None).unwrap(), &ProtocolConfig::default()).unwrap();
    let test: Vec<usize> = events.indices(Split::Test).into_iter().step_by(37).take(5).collect();
    let mut csv = String::from("user_id,item_id,timestamp\n");
    for &k in &test {
        csv.push_str(&format!("{},{},{}\n", events.user[k], events.item[k], events.timestamp[k]));
    }
    csv.push_str("999999,1,\n"); // no history: an empty field
    let cands = d.join("c.csv");
    std::fs::write(&cands, csv).unwrap();
    let out = d.join("s.csv");
    let o = score(&run, &cands, &out, &["--explain", "--top-k", "10"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_csv(&out);
    assert_eq!(rows[0], ["user_id", "item_id", "timestamp", "score", "rank", "top_attended"]);
    let mut checked = 0;
    for r in &rows[1..] {
        if r[0] == "999999" {
            assert_eq!(r[5], "", "no history, nothing attended");
            continue;
        }
        let o = attnrec().args(["explain", "--json", "--run"]).arg(&run).args(["--user", &r[0], "--item", &r[1], "--at", &r[2], "--out"]).arg(d.join("x")).output().unwrap();
        assert!(o.status.success());
        let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let mut hist: Vec<(i64, f64)> = e["history"].as_array().unwrap().iter().map(|h| (h["item"].as_i64().unwrap(), h["weight"].as_f64().unwrap())).collect();
        hist.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        let want: Vec<String> = hist.iter().take(3).map(|(i, w)| format!("{i}:{w:.4}")).collect();
        assert_eq!(r[5], want.join(";"), "user {} item {}", r[0], r[1]);
        checked += 1;
    }
    assert_eq!(checked, test.len());
    // A model without target attention cannot explain.
    let base = d.join("base");
    attnrec().args(["train", "--model", "base", "--epochs", "1", "--threads", "1", "-q", "--data"]).arg(&data).arg("--out").arg(&base).assert().success();
    let o = score(&base, &cands, &d.join("b.csv"), &["--explain"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--explain: the base model has no target attention"));
    assert!(!d.join("b.csv").exists());
}

/// The rows of a scored CSV folder's parts, in part order, each part's header dropped.
fn folder_rows(dir: &Path) -> Vec<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("part-")).collect();
    names.sort();
    names.iter().flat_map(|n| read_csv(&dir.join(n)).into_iter().skip(1)).collect()
}

/// `got` has `want`'s rows in order, the same columns but the score (the last) within 1e-6: a
/// row's score may move in the last bits with the rows batched beside it (the matrix products'
/// blocking follows the batch's size and its longest history).
fn assert_same_rows(got: &[Vec<String>], want: &[Vec<String>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let (gs, ws) = (g.last().unwrap(), w.last().unwrap());
        assert_eq!(g[..g.len() - 1], w[..w.len() - 1], "{what}: row {k}");
        let (gs, ws): (f64, f64) = (gs.parse().unwrap(), ws.parse().unwrap());
        assert!((gs - ws).abs() <= 1e-6, "{what}: row {k} scores {gs}, {ws} in one file");
    }
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_folder_of_candidate_parts_scores_like_one_file_resumes_and_splits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (data, run) = trained(d, &[]);
    let events = build_events(&Dataset::load(&data, None).unwrap(), &ProtocolConfig::default()).unwrap();
    let test: Vec<usize> = events.indices(Split::Test).into_iter().take(200).collect();
    let lines: Vec<String> = test.iter().map(|&k| format!("{},{},{}\n", events.user[k], events.item[k], events.timestamp[k])).collect();
    let header = "user_id,item_id,timestamp\n";
    std::fs::write(d.join("cands.csv"), format!("{header}{}", lines.concat())).unwrap();
    let o = score(&run, &d.join("cands.csv"), &d.join("whole.csv"), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = read_csv(&d.join("whole.csv"));

    // Four parts (the third header-only, the fourth empty, as Spark may leave them), Spark's
    // marker and a checksum file.
    let cands = d.join("cands");
    std::fs::create_dir(&cands).unwrap();
    for (k, range) in [0..50, 50..120, 120..120, 120..200].into_iter().enumerate() {
        std::fs::write(cands.join(format!("part-{k:05}-c000.csv")), format!("{header}{}", lines[range].concat())).unwrap();
    }
    std::fs::write(cands.join("part-00004-c000.csv"), "").unwrap();
    std::fs::write(cands.join("_SUCCESS"), "").unwrap();
    std::fs::write(cands.join(".part-00000-c000.csv.crc"), "crc").unwrap();
    let out = d.join("out");
    let o = score(&run, &cands, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_rows(&folder_rows(&out), &whole[1..], "the parts' rows are the file's, once each, in order");
    assert_eq!(std::fs::read_to_string(out.join("part-00002-c000.csv")).unwrap(), "user_id,item_id,timestamp,score\n");
    assert_eq!(std::fs::read(out.join("part-00004-c000.csv")).unwrap(), b"");
    let mut names: Vec<String> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["_SUCCESS", "_attnrec_score.json", "part-00000-c000.csv", "part-00001-c000.csv", "part-00002-c000.csv", "part-00003-c000.csv", "part-00004-c000.csv"]);

    // A rerun after a crash scores only the missing part; a stale temp file is replaced.
    let before = std::fs::read(out.join("part-00001-c000.csv")).unwrap();
    std::fs::remove_file(out.join("part-00001-c000.csv")).unwrap();
    std::fs::remove_file(out.join("_SUCCESS")).unwrap();
    std::fs::write(out.join(".part-00001-c000.csv.partial"), "half a fi").unwrap();
    let o = attnrec().args(["score", "--threads", "1", "--run"]).arg(&run).arg("--candidates").arg(&cands).arg("--output").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("scored 1 of 5 parts (4 already written), 70 rows"), "{}", stderr(&o));
    assert_eq!(std::fs::read(out.join("part-00001-c000.csv")).unwrap(), before);
    assert!(out.join("_SUCCESS").is_file() && !out.join(".part-00001-c000.csv.partial").exists());

    // Another job's options into the same folder: refused, nothing changed.
    let o = score(&run, &cands, &out, &["--logit"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("another scoring job (logit: false there, true now)"), "{}", stderr(&o));
    assert_eq!(stderr(&o).trim().lines().count(), 1);

    // Two tasks share the parts out: 1/2 takes parts 1 and 3, 0/2 the rest; the last one done
    // leaves _SUCCESS.
    let split = d.join("split");
    let o = score(&run, &cands, &split, &["--parts", "1/2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let present = |k: usize| split.join(format!("part-{k:05}-c000.csv")).is_file();
    assert_eq!((0..5).map(present).collect::<Vec<_>>(), [false, true, false, true, false]);
    assert!(!split.join("_SUCCESS").exists());
    assert!(score(&run, &cands, &split, &["--parts", "0/2"]).status.success());
    assert!(split.join("_SUCCESS").is_file());
    assert_same_rows(&folder_rows(&split), &whole[1..], "two tasks");

    // Flags that do not fit a folder, or a folder that is not ours: exit 2, one line, no output.
    let refused: [(&[&str], &Path, &Path, &str); 5] = [
        (&["--parts", "2/2"], &cands, &d.join("x"), "i/n"),
        (&["--parts", "0/2"], &d.join("cands.csv"), &d.join("x.csv"), "need --candidates to be a folder"),
        (&[], &cands, Path::new("-"), "scored into a folder"),
        (&[], &cands, &cands, "is the candidates folder"),
        (&[], &cands, &data, "holds files but no _attnrec_score.json"),
    ];
    for (flags, input, output, says) in refused {
        let o = score(&run, input, output, flags);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{flags:?}: {}", stderr(&o));
    }
    assert!(!d.join("x").exists() && !d.join("x.csv").exists());
}

/// The partition of a user among `n`: a multiplicative hash, as a Spark job's would be.
fn partition_of(user: i64, n: usize) -> usize {
    ((user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % n
}

#[test]
fn a_users_score_does_not_depend_on_how_the_users_were_partitioned() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (data, run) = trained(d, &[]);
    let events = build_events(&Dataset::load(&data, None).unwrap(), &ProtocolConfig::default()).unwrap();
    let test: Vec<usize> = events.indices(Split::Test).into_iter().step_by(3).collect();
    let header = "user_id,item_id,timestamp\n";
    let line = |k: usize| format!("{},{},{}\n", events.user[k], events.item[k], events.timestamp[k]);
    std::fs::write(d.join("cands.csv"), format!("{header}{}", test.iter().map(|&k| line(k)).collect::<String>())).unwrap();
    assert!(score(&run, &d.join("cands.csv"), &d.join("whole.csv"), &[]).status.success());
    let key = |r: &Vec<String>| (r[0].clone(), r[1].clone(), r[2].clone());
    let whole: std::collections::HashMap<_, f64> = read_csv(&d.join("whole.csv"))[1..].iter().map(|r| (key(r), r[3].parse().unwrap())).collect();
    // The synthetic data is in the ml-1m layout: ratings.dat (`user::item::rating::time`).
    let ratings = std::fs::read_to_string(data.join("ratings.dat")).unwrap();

    for n in [1usize, 3, 5] {
        // The log's ratings.dat as n parts by user, the item table whole; the candidates alike.
        let hist = d.join(format!("hist{n}"));
        std::fs::create_dir_all(hist.join("ratings.dat")).unwrap();
        std::fs::copy(data.join("movies.dat"), hist.join("movies.dat")).unwrap();
        let cands = d.join(format!("cands{n}"));
        std::fs::create_dir_all(&cands).unwrap();
        for p in 0..n {
            let own = |u: &str| partition_of(u.parse().unwrap(), n) == p;
            let log: String = ratings.lines().filter(|l| own(l.split("::").next().unwrap())).map(|l| format!("{l}\n")).collect();
            std::fs::write(hist.join("ratings.dat").join(format!("part-{p:05}")), log).unwrap();
            let rows: String = test.iter().filter(|&&k| partition_of(events.user[k], n) == p).map(|&k| line(k)).collect();
            std::fs::write(cands.join(format!("part-{p:05}.csv")), format!("{header}{rows}")).unwrap();
        }
        let out = d.join(format!("out{n}"));
        let o = score(&run, &cands, &out, &["--history", hist.to_str().unwrap(), "--co-partitioned"]);
        assert!(o.status.success(), "{n}: {}", stderr(&o));
        let rows = folder_rows(&out);
        assert_eq!(rows.len(), whole.len(), "{n}: every row once");
        for r in &rows {
            let s: f64 = r[3].parse().unwrap();
            assert!((s - whole[&key(r)]).abs() < 1e-6, "{n} parts: {r:?} scores {s}, the whole log {}", whole[&key(r)]);
        }
        if n == 3 {
            // Misaligned parts (history part k holds candidates part k+1's users): every row
            // then finds no history, so each task really reads its own part only.
            let shifted = d.join("shifted");
            std::fs::create_dir_all(shifted.join("ratings.dat")).unwrap();
            std::fs::copy(data.join("movies.dat"), shifted.join("movies.dat")).unwrap();
            for p in 0..n {
                std::fs::copy(hist.join("ratings.dat").join(format!("part-{:05}", (p + 1) % n)), shifted.join("ratings.dat").join(format!("part-{p:05}"))).unwrap();
            }
            let o = attnrec().args(["score", "--threads", "1", "--run"]).arg(&run).arg("--candidates").arg(&cands).arg("--output").arg(d.join("out_shifted")).arg("--history").arg(&shifted).arg("--co-partitioned").output().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            assert!(stderr(&o).contains(&format!("empty histories {}", test.len())), "{}", stderr(&o));
        }
    }
    // A history in another number of parts than the candidates is refused.
    let o = score(&run, &d.join("cands5"), &d.join("mismatch"), &["--history", d.join("hist3").to_str().unwrap(), "--co-partitioned"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("holds 3 parts, but the candidates hold 5"), "{}", stderr(&o));
    assert!(!d.join("mismatch").join("part-00000.csv").exists());
}
