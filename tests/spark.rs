//! scripts/spark/score.py for real: PySpark in `local[2]` (from the project's venv; the setup
//! script installs it and a Java runtime) scores the synthetic `small` test split, read from
//! file parts in which users' candidates and histories sit in different files, and must give
//! every row back exactly once with the score of a single-process `attnrec score` (1e-6), with 1
//! partition and with 7.
use attnrec::bench::venv_python;
use attnrec::data::protocol::{build_events, ProtocolConfig, Split};
use attnrec::data::synth::{generate, Preset};
use attnrec::data::Dataset;
use polars::prelude::*;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn attnrec() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attnrec"))
}

fn run_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let o = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(o.status.success(), "{what} failed:\n{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    o
}

/// The (request, score) rows of one scored Parquet file.
fn scores_in(path: &Path) -> Vec<(String, f64)> {
    let df = ParquetReader::new(std::fs::File::open(path).unwrap()).finish().unwrap();
    let req = df.column("request").unwrap().str().unwrap().clone();
    let score = df.column("score").unwrap().f64().unwrap().clone();
    req.iter().map(|r| r.unwrap_or("<null>").to_string()).zip(score.iter().map(|s| s.unwrap_or(f64::NAN))).collect()
}

/// Every row of the Parquet parts in `dir`: request → score.
fn read_scores(dir: &Path) -> Vec<(String, f64)> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "parquet")).collect();
    parts.sort();
    assert!(!parts.is_empty(), "{}: no Parquet parts", dir.display());
    parts.iter().flat_map(|p| scores_in(p)).collect()
}

#[test]
fn spark_scores_every_row_once_as_one_process_does() {
    let python = venv_python();
    let probe = Command::new(&python).args(["-c", "import pyspark, pyarrow"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "{} cannot import pyspark and pyarrow: run scripts/setup-libtorch.sh (make test does), which installs them and a Java runtime",
        python.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("small");
    generate(&Preset::Small.spec(), 42, &data).unwrap();
    let run = d.join("run");
    run_ok(
        attnrec().args(["train", "--model", "din", "--epochs", "1", "--threads", "2", "-q", "--data"]).arg(&data).arg("--out").arg(&run),
        "attnrec train",
    );

    // Candidates: the test split with its request times, plus a user the run never saw and a
    // request without a time; a request id to match rows by.
    let events = build_events(&Dataset::load(&data, None).unwrap(), &ProtocolConfig::default()).unwrap();
    let test = events.indices(Split::Test);
    let mut rows: Vec<String> = test.iter().enumerate().map(|(r, &k)| format!("r{r},{},{},{}", events.user[k], events.item[k], events.timestamp[k])).collect();
    rows.push(format!("new,99999999,{},{}", events.item[test[0]], events.timestamp[test[0]]));
    rows.push(format!("untimed,{},{},", events.user[test[1]], events.item[test[1]]));
    let header = "request,user_id,item_id,timestamp";
    std::fs::write(d.join("cands.csv"), format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    let reference = d.join("reference.parquet");
    run_ok(
        attnrec().args(["score", "-q", "--threads", "2", "--run"]).arg(&run).arg("--candidates").arg(d.join("cands.csv")).arg("--output").arg(&reference),
        "attnrec score",
    );
    let reference: HashMap<String, f64> = scores_in(&reference).into_iter().collect();
    assert_eq!(reference.len(), rows.len());

    // The sources as Spark would find them in a lake: candidates in 3 CSV files by row range, the
    // log in 4 by row range, and one user's whole history moved to a file of its own, apart from
    // every file that holds its candidates.
    let cands = d.join("cands");
    std::fs::create_dir(&cands).unwrap();
    for (k, chunk) in rows.chunks(rows.len().div_ceil(3)).enumerate() {
        std::fs::write(cands.join(format!("c{k}.csv")), format!("{header}\n{}\n", chunk.join("\n"))).unwrap();
    }
    let ratings = std::fs::read_to_string(data.join("ratings.dat")).unwrap();
    let moved = events.user[test[test.len() / 2]].to_string();
    let (own, rest): (Vec<&str>, Vec<&str>) = ratings.lines().partition(|l| l.split("::").next() == Some(moved.as_str()));
    assert!(!own.is_empty());
    let hist = d.join("history");
    std::fs::create_dir(&hist).unwrap();
    let csv = |lines: &[&str]| -> String {
        let mut s = String::from("user_id,item_id,rating,timestamp\n");
        for l in lines {
            writeln!(s, "{}", l.replace("::", ",")).expect("writing to a String");
        }
        s
    };
    for (k, chunk) in rest.chunks(rest.len().div_ceil(4)).enumerate() {
        std::fs::write(hist.join(format!("h{k}.csv")), csv(chunk)).unwrap();
    }
    std::fs::write(hist.join("moved.csv"), csv(&own)).unwrap();

    // scripts/spark/score.py in local[2] on those sources, into `out`, with `extra` flags.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/spark/score.py");
    let spark = |extra: &[&str], out: &Path| {
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .args(["--master", "local[2]", "--attnrec", env!("CARGO_BIN_EXE_attnrec"), "--run"])
            .arg(&run)
            .arg("--candidates")
            .arg(&cands)
            .args(["--candidates-format", "csv", "--history-format", "csv", "--history"])
            .arg(&hist)
            .arg("--output")
            .arg(out)
            .args(extra)
            .env("PYSPARK_PYTHON", &python)
            .env("SPARK_LOCAL_IP", "127.0.0.1");
        cmd
    };
    for partitions in [1, 7] {
        let out = d.join(format!("scores-{partitions}"));
        run_ok(&mut spark(&["--partitions", &partitions.to_string()], &out), &format!("score.py with {partitions} partitions"));
        let got = read_scores(&out);
        assert_eq!(got.len(), rows.len(), "{partitions} partitions: every row comes back");
        let mut seen = std::collections::HashSet::new();
        for (req, score) in &got {
            assert!(seen.insert(req.clone()), "{partitions} partitions: {req} came back twice");
            let want = reference[req];
            assert!((score - want).abs() <= 1e-6, "{partitions} partitions: {req} scores {score}, one process {want}");
        }
    }

    // A missing column, and a task's failure (--strict meets the unknown user): exit 2, the
    // error as the last line of stderr (Spark's own log lines come before it), no output.
    for (extra, says) in [
        (&["--user-col", "uid"][..], "error: candidates: no column 'uid' (columns: request, user_id, item_id, timestamp)"),
        (&["--strict", "--partitions", "3"][..], "error: attnrec score failed in a task (exit 2): error: "),
    ] {
        let out = d.join("refused");
        let o = spark(extra, &out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {err}");
        let last = err.trim_end().rsplit(['\n', '\r']).next().unwrap_or("");
        assert!(last.starts_with(says), "{extra:?}: {last}");
        if extra[0] == "--strict" {
            assert!(last.contains("unknown user id 99999999"), "{last}");
        }
        assert!(!out.join("_SUCCESS").exists(), "{extra:?}: no output");
    }
}
