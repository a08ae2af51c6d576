//! `attnrec run`: a two-variant, two-seed experiment on the `tiny` preset end to end. The files are
//! written (tables, plots, report.html, each run's command), the table's numbers equal the runs'
//! own metrics (DeLong's p on the seed-averaged predictions included), a second invocation trains
//! nothing, and a failing variant is recorded while the others complete.
use assert_cmd::Command;
use attnrec::data::protocol::Split;
use attnrec::metrics::delong;
use attnrec::run::predict_run;
use std::path::Path;

fn attnrec(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("attnrec").unwrap();
    c.current_dir(dir).env("ATTNREC_CACHE_DIR", dir.join("cache"));
    c
}

const EXPERIMENT: &str = r#"
seeds = [1, 2]
baseline = "base"

[base]
data = { path = "data/tiny" }
model = { kind = "din" }
train = { epochs = 2, batch_size = 64, lr = 0.005, threads = 1 }

[[variant]]
name = "base"
model = { kind = "base" }

[[variant]]
name = "din"
"#;

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

#[test]
fn an_experiment_runs_tabulates_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    assert!(attnrec(d).args(["synth", "--preset", "tiny", "--out", "data/tiny"]).output().unwrap().status.success());
    std::fs::write(d.join("exp.toml"), EXPERIMENT).unwrap();
    let dry = attnrec(d).args(["run", "exp.toml", "--dry-run"]).output().unwrap();
    let listing = String::from_utf8_lossy(&dry.stdout);
    assert!(listing.contains("exp: 4 runs") && listing.matches("to train").count() == 4, "{listing}");
    assert!(!d.join("runs").exists(), "a dry run trains nothing");

    let out = attnrec(d).args(["run", "exp.toml", "--quiet"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exp = d.join("runs/exp");
    for f in ["results.csv", "results.md", "base-seed1/summary.json", "din-seed2/summary.json"] {
        assert!(exp.join(f).is_file(), "{f}");
    }
    // The table's numbers are the runs' own: mean and sample std of test AUC over the two seeds.
    let rows = csv_rows(&exp.join("results.csv"));
    assert_eq!(rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["base", "din"]);
    for row in &rows {
        let auc = |seed: u32| {
            let s: serde_json::Value =
                serde_json::from_slice(&std::fs::read(exp.join(format!("{}-seed{seed}/summary.json", row[0]))).unwrap()).unwrap();
            s["test"]["auc"].as_f64().unwrap()
        };
        let (a, b) = (auc(1), auc(2));
        let mean = (a + b) / 2.0;
        let std = ((a - mean).powi(2) + (b - mean).powi(2)).sqrt(); // sample std, n - 1 = 1
        assert!((row[5].parse::<f64>().unwrap() - mean).abs() < 1e-12, "{row:?}");
        assert!((row[6].parse::<f64>().unwrap() - std).abs() < 1e-12, "{row:?}");
    }
    let (base, din) = (rows[0][5].parse::<f64>().unwrap(), rows[1][5].parse::<f64>().unwrap());
    let rela = ((din - 0.5) / (base - 0.5) - 1.0) * 100.0;
    assert!((rows[1][11].parse::<f64>().unwrap() - rela).abs() < 1e-9);

    // DeLong's p: din's and base's test predictions, each averaged over the two seeds.
    let averaged = |v: &str| {
        let p: Vec<_> = [1, 2].iter().map(|s| predict_run(&exp.join(format!("{v}-seed{s}")), Split::Test, Some(&d.join("data/tiny"))).unwrap()).collect();
        let probs: Vec<f64> = p[0].probs.iter().zip(&p[1].probs).map(|(a, b)| (a + b) / 2.0).collect();
        (probs, p[0].labels.clone())
    };
    let ((din_p, labels), (base_p, _)) = (averaged("din"), averaged("base"));
    let want = delong(&din_p, &base_p, &labels).unwrap().p_value;
    assert!((rows[1][12].parse::<f64>().unwrap() - want).abs() < 1e-12, "{:?} vs {want}", rows[1]);
    assert_eq!(rows[0][12], "", "no p-value for the baseline itself");

    // The plots (SVG and PNG), the report with the table and every plot inlined, the commands.
    for f in ["learning_curves", "test_auc", "attention_din"] {
        let svg = std::fs::read_to_string(exp.join(format!("{f}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{f}.svg");
        let png = std::fs::read(exp.join(format!("{f}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{f}.png");
    }
    assert!(!exp.join("attention_base.svg").exists(), "base has no attention");
    let html = std::fs::read_to_string(exp.join("report.html")).unwrap();
    assert!(html.contains("<td>din</td>") && html.matches("<svg").count() == 3, "report.html");
    assert!(html.contains("Valid AUC per evaluation") && html.contains("target attention"));
    let cmd = std::fs::read_to_string(exp.join("din-seed2/command.txt")).unwrap();
    assert!(cmd.contains("attnrec train --config runs/exp/din-seed2/config.toml") && cmd.contains("attnrec run exp.toml"), "{cmd}");
    let md = std::fs::read_to_string(exp.join("results.md")).unwrap();
    assert!(md.contains("| din | 2 |") && md.contains("against `base`"), "{md}");

    // Again: every run is complete, nothing is trained, the same table comes out.
    let before = std::fs::read(exp.join("results.csv")).unwrap();
    let again = attnrec(d).args(["run", "exp.toml", "--quiet"]).output().unwrap();
    assert!(again.status.success());
    assert_eq!(std::fs::read(exp.join("results.csv")).unwrap(), before);
    let dry = attnrec(d).args(["run", "exp.toml", "--dry-run"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&dry.stdout).matches("complete").count(), 4);
}

#[test]
fn a_failing_variant_is_recorded_and_the_rest_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    assert!(attnrec(d).args(["synth", "--preset", "tiny", "--out", "data/tiny"]).output().unwrap().status.success());
    let text = EXPERIMENT.replace("seeds = [1, 2]", "seeds = [1]")
        + "\n[[variant]]\nname = \"broken\"\ndata = { path = \"data/missing\" }\n";
    std::fs::write(d.join("exp.toml"), text).unwrap();
    let out = attnrec(d).args(["run", "exp.toml", "--quiet"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 of 3 runs failed"), "{err}");
    let failed = std::fs::read_to_string(d.join("runs/exp/failed.txt")).unwrap();
    assert!(failed.contains("broken-seed1") && failed.contains("data/missing"), "{failed}");
    let rows = csv_rows(&d.join("runs/exp/results.csv"));
    assert_eq!((rows[2][0].as_str(), rows[2][1].as_str(), rows[2][2].as_str()), ("broken", "0", "1"));
    assert!(d.join("runs/exp/din-seed1/summary.json").is_file());
}

#[test]
fn the_shipped_experiments_expand() {
    use attnrec::experiment::Experiment;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let expected = [("din_vs_base", 4), ("attention_zoo", 10), ("features", 4), ("sequence_models", 15)];
    for (name, variants) in expected {
        let e = Experiment::from_file(&dir.join(format!("{name}.toml")), Path::new("runs")).unwrap();
        assert_eq!((e.variants.len(), e.runs.len()), (variants, 3 * variants), "{name}");
        assert!(e.baseline.is_some(), "{name}");
    }
}
