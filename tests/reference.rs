//! The PyTorch reference models of the performance comparison (benchmarks/reference/) compute
//! attnrec's function: with a run's weights, on batches attnrec built (its `export` examples),
//! their logits match attnrec's to 1e-5, for base, din, bst and din_sa, with and without history
//! feedback.
mod common;

use assert_cmd::Command;
use common::venv_python;
use attnrec::data::synth::{generate, Preset};
use std::path::Path;


#[test]
fn reference_models_match_attnrec_logits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benchmarks/reference/attnrec_ref.py");
    // Each model with and without each history event's own label as an input.
    for (name, model, feedback) in [
        ("base", "base", "false"),
        ("din", "din", "false"),
        ("bst", "bst", "false"),
        ("din_sa", "din_sa", "false"),
        ("base_fb", "base", "true"),
        ("din_fb", "din", "true"),
        ("bst_fb", "bst", "true"),
        ("din_sa_fb", "din_sa", "true"),
    ] {
        let run = d.join(name);
        Command::cargo_bin("attnrec").unwrap().args(["train", "--model", model, "--epochs", "1", "--threads", "1", "-q", "--history-feedback", feedback, "--data"]).arg(&data).arg("--out").arg(&run).assert().success();
        let module = d.join(format!("{name}.pt"));
        Command::cargo_bin("attnrec").unwrap().args(["export", "--batch-size", "32", "--run"]).arg(&run).arg("--out").arg(&module).assert().success();
        let o = std::process::Command::new(venv_python()).arg(&script).arg("parity").arg(&run).arg(d.join(format!("{name}.example.npz"))).output().expect("running the venv's python");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{name}: {out}{}", String::from_utf8_lossy(&o.stderr));
        assert!(out.contains("attnrec_ref parity: OK"), "{out}");
    }
    // A model the reference does not implement is refused, not passed.
    let run = d.join("dien");
    Command::cargo_bin("attnrec").unwrap().args(["train", "--model", "dien", "--epochs", "1", "--threads", "1", "-q", "--data"]).arg(&data).arg("--out").arg(&run).assert().success();
    let o = std::process::Command::new(venv_python()).arg(&script).arg("parity").arg(&run).arg(d.join("din.example.npz")).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no reference for model 'dien'"));
}

/// `bench --reference` puts the PyTorch reference's throughput beside attnrec's (base, din, bst,
/// din_sa; none for dien), and `bench --score` times a child `attnrec score` over the preset's pairs.
#[test]
fn benches_measure_the_reference_and_scoring() {
    let tmp = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benchmarks/reference/attnrec_ref.py");
    let bench = |args: &[&str]| {
        let o = Command::cargo_bin("attnrec")
            .unwrap()
            .current_dir(tmp.path())
            .env("ATTNREC_CACHE_DIR", tmp.path().join("cache"))
            .args(["bench", "--presets", "tiny", "--threads", "1", "--json"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>()
    };
    let rows = bench(&["--models", "din,din_sa,dien", "--batch-sizes", "32", "--prefetch", "0", "--steps", "5", "--warmup", "1", "--reference", "--reference-script", script.to_str().unwrap()]);
    assert_eq!(rows.len(), 3);
    assert_eq!((&rows[0]["model"], &rows[1]["model"]), (&"din".into(), &"din_sa".into()));
    for row in &rows[..2] {
        assert!(row["reference_samples_per_sec"].as_f64().unwrap() > 0.0, "{row}");
    }
    assert!(rows[2].get("reference_samples_per_sec").is_none(), "no reference for dien");
    let rows = bench(&["--score", "--models", "din"]);
    assert_eq!(rows.len(), 1);
    let ratings = rows[0]["rows"].as_u64().unwrap();
    assert!((3000..5000).contains(&ratings), "{}", rows[0]);
    assert!(rows[0]["rows_per_sec"].as_f64().unwrap() > 0.0 && rows[0]["peak_rss_bytes"].as_u64().unwrap() > 10_000_000, "{}", rows[0]);
    let rows = bench(&["--score", "--models", "din", "--score-rows", "10000"]);
    assert_eq!(rows[0]["rows"], 10000);
    // --all: preparation (the reference's samples checked equal to attnrec's), scoring and
    // training, each with the reference's measurement.
    let rows = bench(&["--all", "--models", "din", "--batch-sizes", "32", "--prefetch", "0", "--steps", "3", "--warmup", "1", "--reference", "--reference-script", script.to_str().unwrap()]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0]["ratings"].as_u64().unwrap() > 3000 && rows[0]["reference_seconds"].as_f64().unwrap() > 0.0, "{}", rows[0]);
    assert!(rows[1]["rows_per_sec"].as_f64().unwrap() > 0.0 && rows[1]["reference_seconds"].as_f64().unwrap() > 0.0, "{}", rows[1]);
    assert!(rows[2]["reference_samples_per_sec"].as_f64().unwrap() > 0.0, "{}", rows[2]);
}
