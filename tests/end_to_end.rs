//! The whole path on the `tiny` synthetic preset: generate → protocol → features → train → run
//! folder → eval. DIN must beat chance by a clear margin, and eval of the saved run must reproduce
//! the metrics recorded at training time.
use attnrec::config::RunConfig;
use attnrec::data::protocol::Split;
use attnrec::data::synth::{generate, Preset};
use attnrec::models::ModelConfig;
use attnrec::run::{eval_run, train_run, RunSummary};
use attnrec::train::Silent;

/// libtorch's generator and thread count are process-wide: tests that train take turns, or one
/// test's initialization would draw from another's seeded stream.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn train(model: &str, data: &std::path::Path, out: &std::path::Path) -> RunSummary {
    let _turn = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = RunConfig::new(data.to_path_buf(), ModelConfig::by_name(model).unwrap());
    cfg.train.epochs = 20;
    cfg.train.patience = 4;
    cfg.train.lr = 0.005;
    cfg.train.batch_size = 64;
    cfg.train.threads = 1;
    train_run(&cfg, out, false, &mut Silent).unwrap()
}

#[test]
fn synthetic_generator_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let s = generate(&Preset::Tiny.spec(), 7, &a).unwrap();
    generate(&Preset::Tiny.spec(), 7, &b).unwrap();
    assert!(s.ratings > 3000 && s.ratings < 5000, "{}", s.ratings);
    assert!(s.positive_rate > 0.3 && s.positive_rate < 0.7, "{}", s.positive_rate);
    for f in ["ratings.dat", "movies.dat", "users.dat"] {
        assert_eq!(std::fs::read(a.join(f)).unwrap(), std::fs::read(b.join(f)).unwrap(), "{f}");
    }
    let c = dir.path().join("c");
    generate(&Preset::Tiny.spec(), 8, &c).unwrap();
    assert_ne!(std::fs::read(a.join("ratings.dat")).unwrap(), std::fs::read(c.join("ratings.dat")).unwrap());
}

#[test]
fn tiny_preset_trains_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();

    let din_dir = dir.path().join("din");
    let din = train("din", &data, &din_dir);
    let test_auc = din.test.auc.unwrap();
    // Seen: 0.71–0.74 over generator seeds 1–3; chance is 0.5.
    assert!(test_auc > 0.62, "DIN test AUC {test_auc} on tiny");
    assert!(din.test.logloss.is_finite() && din.test.gauc.is_some());
    for f in ["config.toml", "feature_map.json", "model.safetensors", "metrics.jsonl", "summary.json"] {
        assert!(din_dir.join(f).is_file(), "{f} missing");
    }
    assert!(!dir.path().join("din.partial").exists());
    let epochs = std::fs::read_to_string(din_dir.join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(epochs, din.epochs_run);

    // The saved run reproduces the recorded test metrics.
    let again = eval_run(&din_dir, Split::Test, None).unwrap();
    assert!((again.auc.unwrap() - test_auc).abs() < 1e-9, "{:?} vs {test_auc}", again.auc);
    assert!((again.logloss - din.test.logloss).abs() < 1e-9);

    // The resolved config round-trips and refuses to overwrite a run.
    let cfg = RunConfig::from_file(&din_dir.join("config.toml")).unwrap();
    assert_eq!(cfg.model.name(), "din");
    let err = train_run(&cfg, &din_dir, false, &mut Silent).err().unwrap().to_string();
    assert!(err.contains("already exists"), "{err}");

    let base = train("base", &data, &dir.path().join("base"));
    assert!(base.test.auc.unwrap() > 0.5);
}

#[test]
fn same_seed_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    let a = train("din", &data, &dir.path().join("a"));
    let b = train("din", &data, &dir.path().join("b"));
    // Bit-identical, GAUC included (its per-user sum once followed a HashMap's random order).
    assert_eq!(a.test.auc, b.test.auc);
    assert_eq!(a.test.gauc, b.test.gauc);
    assert_eq!(a.valid.gauc, b.valid.gauc);
    assert_eq!(a.valid.logloss, b.valid.logloss);
    assert_eq!(a.test.ece, b.test.ece);
}

#[test]
fn evaluates_every_n_steps_and_keeps_the_best_by_the_monitored_metric() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    let _turn = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = RunConfig::new(data.clone(), ModelConfig::by_name("din").unwrap());
    cfg.train.epochs = 2;
    cfg.train.patience = 100;
    cfg.train.batch_size = 64;
    cfg.train.threads = 1;
    cfg.train.eval_every_steps = 10;
    cfg.train.monitor = attnrec::train::Monitor::Logloss;
    cfg.train.mba_lambda = 1e-4;
    let run = dir.path().join("run");
    let s = train_run(&cfg, &run, false, &mut Silent).unwrap();
    let reports: Vec<attnrec::train::EvalReport> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(reports.len() >= 3, "{} evaluations", reports.len());
    for r in &reports[..reports.len() - 1] {
        assert_eq!(r.step % 10, 0, "evaluated at step {}", r.step);
    }
    // The last evaluation is at the end of training (epoch 2), whether or not it is a multiple of 10.
    assert_eq!(reports.last().unwrap().epoch, 2);
    assert_eq!(s.epochs_run, 2);
    // "improved" marks each new minimum of the valid LogLoss, and the final weights are the best.
    let mut best = f64::INFINITY;
    for r in &reports {
        assert_eq!(r.improved, r.valid.logloss < best, "step {}", r.step);
        best = best.min(r.valid.logloss);
    }
    assert_eq!(s.valid.logloss, best);
}
