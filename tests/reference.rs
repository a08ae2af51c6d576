//! The PyTorch reference models of the performance comparison (benchmarks/reference/) compute
//! attnrec's function: with a run's weights, on batches attnrec built (its `export` examples),
//! their logits match attnrec's to 1e-5, for base and din.
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
    for model in ["base", "din"] {
        let run = d.join(model);
        Command::cargo_bin("attnrec").unwrap().args(["train", "--model", model, "--epochs", "1", "--threads", "1", "-q", "--data"]).arg(&data).arg("--out").arg(&run).assert().success();
        let module = d.join(format!("{model}.pt"));
        Command::cargo_bin("attnrec").unwrap().args(["export", "--batch-size", "32", "--run"]).arg(&run).arg("--out").arg(&module).assert().success();
        let o = std::process::Command::new(venv_python()).arg(&script).arg("parity").arg(&run).arg(d.join(format!("{model}.example.npz"))).output().expect("running the venv's python");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{model}: {out}{}", String::from_utf8_lossy(&o.stderr));
        assert!(out.contains("attnrec_ref parity: OK"), "{out}");
    }
    // A model the reference does not implement is refused, not passed.
    let run = d.join("bst");
    Command::cargo_bin("attnrec").unwrap().args(["train", "--model", "bst", "--epochs", "1", "--threads", "1", "-q", "--data"]).arg(&data).arg("--out").arg(&run).assert().success();
    let o = std::process::Command::new(venv_python()).arg(&script).arg("parity").arg(&run).arg(d.join("din.example.npz")).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no reference for model 'bst'"));
}
