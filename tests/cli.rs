//! The command line as a user meets it: help texts, one-line errors with exit code 2, and the
//! train → eval path through the binary.
use assert_cmd::Command;
use predicates::prelude::*;
use std::fs;

fn attnrec() -> Command {
    Command::cargo_bin("attnrec").unwrap()
}

/// Runs with `args`, expects exit code 2 and a single `error: ...` line containing `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let out = attnrec().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", out);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains(needle), "{args:?}: stderr {err:?} lacks {needle:?}");
    assert!(out.stdout.is_empty(), "{args:?}: printed to stdout");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn help_describes_every_subcommand_and_flag() {
    attnrec().arg("--help").assert().success().stdout(
        predicate::str::contains("synth")
            .and(predicate::str::contains("train"))
            .and(predicate::str::contains("eval"))
            .and(predicate::str::contains("score"))
            .and(predicate::str::contains("bench")),
    );
    let train = attnrec().args(["train", "--help"]).output().unwrap();
    let text = String::from_utf8(train.stdout).unwrap();
    for flag in [
        "--data", "--model", "--out", "--config", "--epochs", "--batch-size", "--lr", "--seed", "--threads", "--device",
        "--force", "--resume", "--monitor", "--eval-every-steps", "--mba-lambda", "--prefetch", "--json-lines",
    ] {
        assert!(text.contains(flag), "train --help lacks {flag}");
    }
    for sub in ["synth", "eval", "demo"] {
        attnrec().args([sub, "--help"]).assert().success();
    }
}

#[test]
fn user_mistakes_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("run");
    let out_s = out.to_str().unwrap();
    fails_with(&["train", "--data", "/no/such/folder", "--model", "din", "--out", out_s], "/no/such/folder: not a folder");
    fails_with(&["train", "--data", d.to_str().unwrap(), "--model", "din", "--out", out_s], "no known dataset layout");
    fs::write(d.join("ratings.dat"), "1::10::5::100\n2::10::oops::7\n").unwrap();
    fs::write(d.join("movies.dat"), "10::Ten (1990)::Drama\n").unwrap();
    fails_with(&["train", "--data", d.to_str().unwrap(), "--model", "din", "--out", out_s], "ratings.dat:2: rating is not a number");
    fails_with(&["train", "--data", d.to_str().unwrap(), "--model", "lstm", "--out", out_s], "unknown model 'lstm'");
    fails_with(&["train", "--data", d.to_str().unwrap(), "--model", "din", "--out", out_s, "--lr", "-1"], "train.lr");
    fails_with(&["train", "--data", d.to_str().unwrap(), "--model", "din", "--out", out_s, "--device", "tpu"], "unknown device 'tpu'");
    fails_with(&["train", "--model", "din", "--out", out_s], "--data DIR is required");
    fails_with(&["eval", d.join("nope").to_str().unwrap()], "not found");
    fails_with(&["eval", d.to_str().unwrap(), "--split", "holdout"], "invalid value 'holdout'");
    fs::write(d.join("bad.toml"), "[data]\npath = \"x\"\n[model]\nkind = \"din\"\nembed_dimm = 3\n").unwrap();
    fails_with(&["train", "--config", d.join("bad.toml").to_str().unwrap(), "--out", out_s], "unknown field `embed_dimm`");
    // A model that cannot be built is refused at load, before the (here missing) data is read.
    fs::write(d.join("model.toml"), "[data]\npath = \"/no/such/folder\"\n[model]\nkind = \"din_sa\"\npooling = { feedback = \"values\" }\n").unwrap();
    fails_with(&["train", "--config", d.join("model.toml").to_str().unwrap(), "--out", out_s], "pooling.feedback = \"values\" needs a model without");
    fs::write(d.join("model.toml"), "[data]\npath = \"/no/such/folder\"\n[model]\nkind = \"din\"\nmlp = { hidden = [0] }\n").unwrap();
    fails_with(&["train", "--config", d.join("model.toml").to_str().unwrap(), "--out", out_s], "mlp.hidden must list positive");
    assert!(!out.exists(), "a failed run left {out:?} behind");
    assert!(!d.join("run.partial").exists());
}

/// Training writes nothing else to stderr: every model, through its fused kernels and the tape. (The
/// tape once asked libtorch for the gradient of a non-leaf tensor, and libtorch warned on every
/// step: thousands of lines in a dien run.)
#[test]
fn training_is_quiet_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    attnrec().args(["synth", "--preset", "tiny", "--out", data.to_str().unwrap()]).assert().success();
    for model in ["base", "din", "dien", "bst", "din_sa", "attn_pool"] {
        let run = dir.path().join(model);
        let out = attnrec()
            .args(["train", "--data", data.to_str().unwrap(), "--model", model, "--out", run.to_str().unwrap()])
            .args(["--epochs", "1", "--threads", "2", "--quiet"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{model}: {}", String::from_utf8_lossy(&out.stderr));
        // Besides the one line that says where the run was written.
        let err = String::from_utf8_lossy(&out.stderr);
        let other: Vec<&str> = err.lines().filter(|l| !l.starts_with("run written to ")).collect();
        assert!(other.is_empty(), "{model} wrote {} other lines to stderr, the first: {}", other.len(), other[0]);
    }
}

#[test]
fn synth_train_eval_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    let run = dir.path().join("run");
    attnrec()
        .args(["synth", "--preset", "tiny", "--out", data.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("ratings"));
    attnrec()
        .args(["train", "--data", data.to_str().unwrap(), "--model", "din", "--out", run.to_str().unwrap()])
        .args(["--epochs", "2", "--threads", "1", "--quiet"])
        .assert()
        .success()
        .stdout(predicate::str::contains("test AUC"));
    let cfg = fs::read_to_string(run.join("config.toml")).unwrap();
    for key in ["label_threshold = 4.0", "history_len = 50", "kind = \"din\"", "epochs = 2", "seed = 42"] {
        assert!(cfg.contains(key), "resolved config lacks {key}:\n{cfg}");
    }
    let out = attnrec().args(["eval", run.to_str().unwrap(), "--split", "test", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["auc"], summary["test"]["auc"]);
    assert_eq!(v["samples"], summary["test"]["samples"]);
    // Training again into the same folder is refused, and the run is left intact.
    attnrec()
        .args(["train", "--data", data.to_str().unwrap(), "--model", "base", "--out", run.to_str().unwrap(), "-q"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
    assert!(run.join("model.safetensors").is_file());

    // A baseline on the same samples: RelaImpr and DeLong's test; on other samples: refused.
    let base = dir.path().join("base");
    attnrec()
        .args(["train", "--data", data.to_str().unwrap(), "--model", "base", "--out", base.to_str().unwrap()])
        .args(["--epochs", "1", "--threads", "1", "--quiet"])
        .assert()
        .success();
    let out = attnrec().args(["eval", run.to_str().unwrap(), "--baseline", base.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &v["baseline"]["delong"];
    let diff = v["auc"].as_f64().unwrap() - v["baseline"]["auc"].as_f64().unwrap();
    assert!((d["diff"].as_f64().unwrap() - diff).abs() < 1e-12, "{v}");
    assert!((0.0..=1.0).contains(&d["p_value"].as_f64().unwrap()), "{v}");
    attnrec()
        .args(["eval", run.to_str().unwrap(), "--baseline", base.to_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("DeLong z =").and(predicate::str::contains("(baseline)")));
    let other = dir.path().join("other");
    attnrec().args(["synth", "--preset", "tiny", "--seed", "7", "--out", other.to_str().unwrap()]).assert().success();
    attnrec()
        .args(["eval", run.to_str().unwrap(), "--baseline", base.to_str().unwrap(), "--data", other.to_str().unwrap()])
        .assert()
        .success();
    let moved = dir.path().join("base-other");
    attnrec()
        .args(["train", "--data", other.to_str().unwrap(), "--model", "base", "--out", moved.to_str().unwrap()])
        .args(["--epochs", "1", "--threads", "1", "--quiet"])
        .assert()
        .success();
    attnrec()
        .args(["eval", run.to_str().unwrap(), "--baseline", moved.to_str().unwrap()])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("other samples"));
    // A diverged loss is a failure of the computation, not a user mistake: exit status 1.
    attnrec()
        .args(["train", "--data", data.to_str().unwrap(), "--model", "base", "--out", dir.path().join("diverged").to_str().unwrap()])
        .args(["--epochs", "1", "--threads", "1", "--quiet", "--lr", "1e38"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("training diverged"));
}

/// An empty valid split (nothing to select the epoch by) or test split (nothing to report) is a
/// one-line error before any training, not a run with `null` metrics.
#[test]
fn empty_valid_or_test_splits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("tiny");
    attnrec().args(["synth", "--preset", "tiny", "--out", data.to_str().unwrap()]).assert().success();
    let out = d.join("run");
    for (ratios, needle) in [("train_ratio = 0.8\nvalid_ratio = 0.0", "the valid split is empty"), ("train_ratio = 0.8\nvalid_ratio = 0.2", "the test split is empty")] {
        let cfg = d.join("cfg.toml");
        fs::write(&cfg, format!("[data]\npath = {:?}\n[model]\nkind = \"base\"\n[protocol]\n{ratios}\n", data.to_str().unwrap())).unwrap();
        fails_with(&["train", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"], needle);
        assert!(!out.exists() && !d.join("run.partial").exists(), "a refused run left files behind");
    }
}
