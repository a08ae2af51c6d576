//! Resumable training, through the binary: a run killed with SIGKILL in the middle of an epoch and
//! resumed with `train --resume` ends with exactly the metrics of an uninterrupted run. BST is used
//! because its dropout draws from libtorch's generator, which a resume must also reproduce.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn bin() -> std::path::PathBuf {
    assert_cmd::cargo::cargo_bin("attnrec")
}

const TRAIN: &[&str] =
    &["--model", "bst", "--epochs", "3", "--batch-size", "32", "--checkpoint-every-steps", "5", "--threads", "2", "--length-buckets", "4"];

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).expect("every stdout line is JSON")).collect()
}

fn done(events: &[serde_json::Value]) -> serde_json::Value {
    events.iter().find(|e| e["event"] == "done").cloned().expect("a done event")
}

fn metrics(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["valid"].clone()).collect()
}

#[test]
fn killed_mid_epoch_and_resumed_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    let st = Command::new(bin()).args(["synth", "--preset", "tiny", "--out"]).arg(&data).output().unwrap();
    assert!(st.status.success());

    let whole = dir.path().join("whole");
    let out = Command::new(bin()).arg("train").arg("--data").arg(&data).arg("--out").arg(&whole).args(TRAIN).arg("--json-lines").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let whole_done = done(&json_lines(&out.stdout));

    // The same run, killed after a checkpoint in the middle of epoch 2.
    let cut = dir.path().join("cut");
    let mut child = Command::new(bin())
        .arg("train")
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(&cut)
        .args(TRAIN)
        .arg("--json-lines")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut batches = 0u64;
    let mut killed_after = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["event"] == "epoch" {
            batches = v["batches"].as_u64().unwrap();
        }
        if v["event"] == "checkpoint" {
            let step = v["step"].as_u64().unwrap();
            if step > batches && step % batches != 0 {
                child.kill().unwrap(); // SIGKILL
                killed_after = Some(step);
                break;
            }
        }
    }
    child.wait().unwrap();
    let step = killed_after.expect("the run was killed mid-epoch");
    assert!(batches > 10, "epochs must be long enough to be cut: {batches} batches");
    assert!(!cut.exists(), "a killed run must not look complete");
    let partial = dir.path().join("cut.partial");
    assert!(partial.join("checkpoints/LATEST").is_file());

    // Starting the same run again is refused while the interrupted one exists.
    let again = Command::new(bin()).arg("train").arg("--data").arg(&data).arg("--out").arg(&cut).args(TRAIN).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    // Resuming with flags that would change the config is refused.
    let bad = Command::new(bin()).args(["train", "--epochs", "9", "--resume"]).arg(&cut).output().unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));

    let out = Command::new(bin()).args(["train", "--json-lines", "--resume"]).arg(&cut).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events = json_lines(&out.stdout);
    let first = events.iter().find(|e| e["event"] == "epoch").unwrap();
    assert_eq!(first["epoch"], 2, "resumed from step {step}: {first}");
    assert!(first["resumed_at"].as_u64().unwrap() > 0, "resumed mid-epoch: {first}");
    let cut_done = done(&events);
    for key in ["valid", "test", "best_epoch", "epochs_run"] {
        assert_eq!(cut_done[key], whole_done[key], "{key} differs after resume from step {step}");
    }
    assert_eq!(metrics(&cut), metrics(&whole));
    assert!(!partial.exists() && !cut.join("checkpoints").exists());
    let w1 = std::fs::read(whole.join("model.safetensors")).unwrap();
    let w2 = std::fs::read(cut.join("model.safetensors")).unwrap();
    assert!(w1 == w2, "final weights differ");

    // A finished run has nothing to resume.
    let out = Command::new(bin()).args(["train", "--resume"]).arg(&cut).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already complete"));
}

#[test]
fn resume_refuses_a_dataset_that_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    let ok = Command::new(bin()).args(["synth", "--preset", "tiny", "--out"]).arg(&data).output().unwrap();
    assert!(ok.status.success());
    let run = dir.path().join("run");
    let train = Command::new(bin())
        .args(["train", "--model", "base", "--epochs", "1", "--threads", "1", "--quiet", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(train.status.success(), "{}", String::from_utf8_lossy(&train.stderr));
    assert!(run.join("source.json").is_file());
    // Pretend it was interrupted (no checkpoint left: a resume starts from step 0), then change
    // the data under it.
    let partial = dir.path().join("run.partial");
    std::fs::rename(&run, &partial).unwrap();
    let mut ratings = std::fs::read_to_string(data.join("ratings.dat")).unwrap();
    ratings.push_str("1::1::5::1\n");
    std::fs::write(data.join("ratings.dat"), ratings).unwrap();
    let out = Command::new(bin()).args(["train", "--quiet", "--resume"]).arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("changed since this run started (ratings.dat)"), "{err}");
    assert!(partial.is_dir() && !run.exists(), "the interrupted run is left as it was");
    // An unreadable record of the source (here a folder in its place) is refused too, not taken
    // as "nothing to check".
    std::fs::remove_file(partial.join("source.json")).unwrap();
    std::fs::create_dir(partial.join("source.json")).unwrap();
    let out = Command::new(bin()).args(["train", "--quiet", "--resume"]).arg(&run).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("source.json"), "{err}");
}

/// A run that stopped early saved its last checkpoint at the evaluation that decided the stop. A
/// kill after that save (during the final evaluation, the weight save or the rename) followed by
/// `--resume` must not train past the stop: the restored evaluations already spend the patience.
#[test]
fn resumed_after_the_early_stop_trains_no_further() {
    use attnrec::config::RunConfig;
    use attnrec::data::synth::{generate, Preset};
    use attnrec::models::ModelConfig;
    use attnrec::run::prepare;
    use attnrec::train::checkpoint::Checkpoint;
    use attnrec::train::{fit, Checkpointing, Silent};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    let mut cfg = RunConfig::new(data.clone(), ModelConfig::by_name("base").unwrap());
    // A high learning rate on tiny overfits within a few epochs, so patience 1 stops well before 30.
    (cfg.train.epochs, cfg.train.patience, cfg.train.lr, cfg.train.batch_size, cfg.train.threads) = (30, 1, 0.02, 64, 1);
    let prepared = prepare(&cfg, &data, None).unwrap();
    let ckpt = dir.path().join("checkpoints");
    let (vs, model) = cfg.model.fresh(&prepared.feature_map, tch::Device::Cpu, cfg.train.seed).unwrap();
    let first = fit(model.as_ref(), &vs, &prepared.encoded, &cfg.train, Some(Checkpointing { dir: &ckpt, resume: None }), &mut Silent).unwrap();
    assert!(first.epochs_run < 30, "the run must stop early: {} epochs", first.epochs_run);

    let resume = Checkpoint::latest(&ckpt).unwrap().expect("a checkpoint at the stop");
    let (vs2, model2) = cfg.model.fresh(&prepared.feature_map, tch::Device::Cpu, cfg.train.seed).unwrap();
    let again = fit(model2.as_ref(), &vs2, &prepared.encoded, &cfg.train, Some(Checkpointing { dir: &ckpt, resume: Some(resume) }), &mut Silent).unwrap();
    assert_eq!(again.evals.len(), first.evals.len(), "the resumed run evaluated again");
    assert_eq!((again.best_epoch, again.epochs_run), (first.best_epoch, first.epochs_run));
    for ((k, a), (_, b)) in vs.variables().into_iter().collect::<std::collections::BTreeMap<_, _>>().iter().zip(vs2.variables().into_iter().collect::<std::collections::BTreeMap<_, _>>().iter()) {
        assert!(a.equal(b), "{k} differs after the resume");
    }
}

/// The train loss is summed on the device and read every `loss_sync_steps` steps (every 20 on a
/// GPU): read every 7 steps instead of every step, training reports bit for bit the same losses
/// and ends with the same weights, and the observer hears the loss only at the reads.
#[test]
fn reading_the_loss_less_often_changes_nothing() {
    use attnrec::config::RunConfig;
    use attnrec::data::synth::{generate, Preset};
    use attnrec::models::ModelConfig;
    use attnrec::train::{fit, Observer};
    struct Reads(usize, usize);
    impl Observer for Reads {
        fn batch_end(&mut self, loss: Option<f64>, _samples: usize) {
            self.0 += 1;
            self.1 += loss.is_some() as usize;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    let run = |sync: usize| {
        let mut cfg = RunConfig::new(data.clone(), ModelConfig::by_name("din").unwrap());
        (cfg.train.epochs, cfg.train.batch_size, cfg.train.threads, cfg.train.loss_sync_steps) = (2, 64, 1, sync);
        let prepared = attnrec::run::prepare(&cfg, &data, None).unwrap();
        let (vs, model) = cfg.model.fresh(&prepared.feature_map, tch::Device::Cpu, cfg.train.seed).unwrap();
        let mut reads = Reads(0, 0);
        let out = fit(model.as_ref(), &vs, &prepared.encoded, &cfg.train, None, &mut reads).unwrap();
        let mut weights: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        (out.evals.iter().map(|e| e.train_loss.to_bits()).collect::<Vec<_>>(), weights, reads)
    };
    let (every, w1, r1) = run(0);
    let (seventh, w7, r7) = run(7);
    assert_eq!(every, seventh, "train losses");
    assert_eq!(r1.0, r1.1, "on CPU every step is read by default");
    assert!(r7.1 < r7.0 / 5 && r7.1 >= r7.0 / 7, "{} reads of {} steps", r7.1, r7.0);
    for ((k, a), (_, b)) in w1.iter().zip(&w7) {
        assert!(a.equal(b), "{k} differs");
    }
}
