//! `attnrec export` checked by PyTorch itself: each exported module is loaded with
//! `torch.jit.load` by scripts/check_export.py (the venv's Python, as `make test` puts it on PATH)
//! and must reproduce attnrec's probabilities to 1e-5 on the traced batch and on a second batch.
mod common;

use assert_cmd::Command;
use common::venv_python;
use attnrec::data::synth::{generate, Preset};
use std::path::Path;

fn attnrec() -> Command {
    Command::cargo_bin("attnrec").unwrap()
}


fn train(data: &Path, run: &Path, model: &str, extra: &[&str]) {
    attnrec()
        .args(["train", "--model", model, "--epochs", "1", "--threads", "1", "-q", "--data"])
        .arg(data)
        .arg("--out")
        .arg(run)
        .args(extra)
        .assert()
        .success();
}

/// Exports `run` into `dir/NAME.pt` and runs the Python check on it.
fn export_and_check(run: &Path, dir: &Path, name: &str) {
    let module = dir.join(format!("{name}.pt"));
    let o = attnrec().args(["export", "--batch-size", "16", "--run"]).arg(run).arg("--out").arg(&module).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [format!("{name}.pt"), format!("{name}.json"), format!("{name}.feature_map.json"), format!("{name}.example.npz")] {
        assert!(dir.join(&f).is_file(), "{f} written");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check_export.py");
    let o = std::process::Command::new(venv_python()).arg(script).arg(&module).output().expect("running the venv's python");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{name}: {out}{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("check_export: OK"), "{out}");
    let sidecar: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    assert_eq!(sidecar["batch_size"], 16);
    assert_eq!(sidecar["inputs"].as_array().unwrap().len(), attnrec::export::INPUTS.len());
}

#[test]
fn exported_modules_match_attnrec_in_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    let cases: [(&str, &str, &[&str]); 5] = [
        ("din", "din", &[]),
        ("bst", "bst", &[]),
        ("dien", "dien", &[]),
        ("din_gap_side", "din", &["--time-gap", "--history-feedback", "--user-features", "age,gender,occupation", "--item-features", "year,genres"]),
        ("local_p", "attn_pool:local_p", &[]),
    ];
    for (name, model, extra) in cases {
        let run = d.join(format!("run-{name}"));
        train(&data, &run, model, extra);
        export_and_check(&run, d, name);
    }
}

#[test]
fn export_refuses_bad_targets_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = attnrec().args(["export", "--run"]).arg(d.join("nope")).arg("--out").arg(d.join("m.pt")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nope") && err.contains("not found"), "{err}");
    assert!(!d.join("m.pt").exists());
}
