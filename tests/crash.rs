//! The crash-point harness: the binary aborted (`ATTNREC_CRASH_AT`, see `attnrec::util::
//! crash_point`) at every phase where it writes, then the command a user would run next (`train
//! --resume`, the same `train --force`, `score` again, `run` again). Each must end with the bytes
//! of an uninterrupted run, and nothing half-written may look complete in between.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("attnrec")
}

/// base with a high learning rate on tiny: it overfits within a few epochs, so patience 1 stops
/// it early; a checkpoint every 5 steps puts checkpoints mid-epoch.
const TRAIN: &[&str] = &[
    "--model", "base", "--epochs", "12", "--patience", "1", "--lr", "0.02", "--batch-size", "64",
    "--checkpoint-every-steps", "5", "--threads", "1", "--quiet",
];

fn run(args: &[&std::ffi::OsStr], crash: Option<&str>) -> Output {
    let mut c = Command::new(bin());
    c.args(args);
    match crash {
        Some(point) => c.env(attnrec::util::CRASH_ENV, point),
        None => c.env_remove(attnrec::util::CRASH_ENV),
    };
    c.output().unwrap()
}

fn os<'a>(v: &'a [&'a str]) -> Vec<&'a std::ffi::OsStr> {
    v.iter().map(std::ffi::OsStr::new).collect()
}

fn train(data: &Path, out: &Path, extra: &[&str], crash: Option<&str>) -> Output {
    let mut args = os(&["train", "--data"]);
    args.push(data.as_os_str());
    args.push("--out".as_ref());
    args.push(out.as_os_str());
    args.extend(os(TRAIN));
    args.extend(os(extra));
    run(&args, crash)
}

fn resume(out: &Path) -> Output {
    run(&[os(&["train", "--quiet", "--resume"]), vec![out.as_os_str()]].concat(), None)
}

fn ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what}: {}", String::from_utf8_lossy(&o.stderr));
}

/// Killed by the harness: SIGABRT, not an error exit.
fn crashed(o: &Output, point: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(6), "{point}: the process did not abort there: {:?} {}", o.status, String::from_utf8_lossy(&o.stderr));
}

/// A JSON file without the fields that time the run (they differ between any two runs).
fn untimed(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let values: Vec<serde_json::Value> = if path.extension().is_some_and(|e| e == "jsonl") {
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    } else {
        vec![serde_json::from_str(&text).unwrap()]
    };
    values
        .into_iter()
        .map(|mut v| {
            let m = v.as_object_mut().unwrap();
            for k in ["train_samples_per_sec", "train_seconds", "input_wait_seconds", "input_wait_share", "wall_seconds"] {
                m.remove(k);
            }
            v
        })
        .collect()
}

/// The same finished run: equal weights and config bytes, equal metrics and summary but for
/// timings, and no leftovers beside it.
fn same_run(got: &Path, want: &Path, point: &str) {
    for f in ["model.safetensors", "config.toml", "feature_map.json", "source.json"] {
        let (a, b) = (std::fs::read(got.join(f)), std::fs::read(want.join(f)));
        assert!(a.is_ok() && a.ok() == b.ok(), "{point}: {f} differs from the uninterrupted run's");
    }
    for f in ["metrics.jsonl", "summary.json"] {
        assert_eq!(untimed(&got.join(f)), untimed(&want.join(f)), "{point}: {f}");
    }
    assert!(!got.join("checkpoints").exists(), "{point}: checkpoints left in the finished run");
    let name = got.file_name().unwrap().to_string_lossy().into_owned();
    let leftovers: Vec<String> = std::fs::read_dir(got.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != &name && n.starts_with(&name))
        .collect();
    assert!(leftovers.is_empty(), "{point}: left beside the run: {leftovers:?}");
}

/// A temporary folder holding the `tiny` preset (in `tiny/`).
fn tiny() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    ok(&run(&[os(&["synth", "--preset", "tiny", "--out"]), vec![data.as_os_str()]].concat(), None), "synth");
    (dir, data)
}

#[test]
fn train_killed_at_every_phase_resumes_to_the_uninterrupted_run() {
    let (dir, data) = tiny();
    let d = dir.path();
    let whole = d.join("whole");
    ok(&train(&data, &whole, &[], None), "the uninterrupted run");
    let metrics = untimed(&whole.join("metrics.jsonl"));
    let evals = metrics.len();
    let summary = &untimed(&whole.join("summary.json"))[0];
    assert!(summary["epochs_run"].as_u64().unwrap() < 12, "the run must stop early: {summary}");
    let steps_per_epoch = metrics[0]["step"].as_u64().unwrap();
    assert!(steps_per_epoch > 12, "epochs long enough to be cut mid-way: {steps_per_epoch} steps");
    let mid = format!("train.step#{}", steps_per_epoch + 7);
    let stop = format!("train.eval#{evals}");
    let points = [
        // mid-epoch, two steps after a checkpoint
        mid.as_str(),
        // during the evaluation that stops early
        stop.as_str(),
        // a checkpoint written under its temporary name, and renamed but not yet named LATEST
        "checkpoint.written#3",
        "checkpoint.renamed#3",
        // during the final test evaluation, and between the weights and the run's rename
        "run.test_eval",
        "run.weights",
    ];
    for point in points {
        let out = d.join(format!("cut-{}", point.replace(['#', '.'], "-")));
        crashed(&train(&data, &out, &[], Some(point)), point);
        assert!(!out.exists(), "{point}: a killed run must not look complete");
        ok(&resume(&out), point);
        same_run(&out, &whole, point);
    }

    // Killed during --force's replacement of a finished run (moved aside, the new one not yet in
    // place): running the same command again gives the new run, and the old one is gone.
    let forced = d.join("forced");
    ok(&train(&data, &forced, &["--seed", "7"], None), "the run to replace");
    crashed(&train(&data, &forced, &["--force"], Some("run.replace")), "run.replace");
    assert!(!forced.exists() || untimed(&forced.join("summary.json"))[0]["seed"] == 7, "run.replace: a half-replaced run looks complete");
    ok(&train(&data, &forced, &["--force"], None), "run.replace, then --force again");
    same_run(&forced, &whole, "run.replace");
}

#[test]
fn score_killed_mid_output_leaves_no_output_and_reruns_to_the_same_bytes() {
    let (dir, data) = tiny();
    let d = dir.path();
    let model = d.join("run");
    ok(&train(&data, &model, &[], None), "train");
    // Every logged event of tiny as a candidate, in chunks of 500 rows.
    let mut csv = String::from("user_id,item_id,timestamp\n");
    for line in std::fs::read_to_string(data.join("ratings.dat")).unwrap().lines() {
        let f: Vec<&str> = line.split("::").collect();
        csv.push_str(&format!("{},{},{}\n", f[0], f[1], f[3]));
    }
    let cands = d.join("cands.csv");
    std::fs::write(&cands, csv).unwrap();
    let score = |out: &Path, crash| {
        let args = [os(&["score", "-q", "--threads", "1", "--chunk-rows", "500", "--run"]), vec![model.as_os_str()], os(&["--candidates"]), vec![cands.as_os_str()], os(&["--output"]), vec![out.as_os_str()]].concat();
        run(&args, crash)
    };
    for ext in ["csv", "parquet"] {
        let want = d.join(format!("want.{ext}"));
        ok(&score(&want, None), "score");
        for point in ["score.batch#3", "score.rename"] {
            let out = d.join(format!("scores.{ext}"));
            crashed(&score(&out, Some(point)), point);
            assert!(!out.exists(), "{point}: a killed score left an output that looks complete");
            ok(&score(&out, None), "score again");
            assert!(std::fs::read(&out).unwrap() == std::fs::read(&want).unwrap(), "{point}: .{ext} output differs");
            assert!(!d.join(format!("scores.{ext}.partial")).exists(), "{point}: partial output left");
            std::fs::remove_file(&out).unwrap();
        }
    }
}

#[test]
fn an_experiment_killed_mid_run_continues_to_the_same_runs() {
    let (dir, data) = tiny();
    let d = dir.path();
    let file = d.join("exp.toml");
    std::fs::write(
        &file,
        format!(
            "seeds = [1, 2]\n[base]\ndata = {{ path = {:?} }}\nmodel = {{ kind = \"base\" }}\n\
             train = {{ epochs = 2, batch_size = 64, threads = 1, checkpoint_every_steps = 5 }}\n\
             [[variant]]\nname = \"base\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let experiment = |root: &Path, crash| run(&[os(&["run", "-q", "--runs"]), vec![root.as_os_str()], vec![file.as_os_str()]].concat(), crash);
    let whole = d.join("whole");
    ok(&experiment(&whole, None), "the uninterrupted experiment");
    let runs = whole.join("exp");
    let steps = untimed(&runs.join("base-seed1/metrics.jsonl")).last().unwrap()["step"].as_u64().unwrap();
    // In the second run's first epoch.
    let cut = d.join("cut");
    let point = format!("train.step#{}", steps + 7);
    crashed(&experiment(&cut, Some(&point)), &point);
    assert!(cut.join("exp/base-seed1/summary.json").is_file() && !cut.join("exp/base-seed2").exists());
    assert!(!cut.join("exp/results.csv").exists(), "a killed experiment wrote its table");
    ok(&experiment(&cut, None), "the experiment again");
    for seed in [1, 2] {
        same_run(&cut.join(format!("exp/base-seed{seed}")), &runs.join(format!("base-seed{seed}")), &point);
    }
}
