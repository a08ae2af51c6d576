//! attnrec's AUC, GAUC and LogLoss against scikit-learn (fixtures from tests/fixtures/gen_metrics.py).
use attnrec::metrics::{auc, gauc, logloss};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    name: String,
    scores: Vec<f64>,
    labels: Vec<f32>,
    users: Vec<i64>,
    auc: f64,
    gauc: f64,
    logloss: f64,
}

#[test]
fn metrics_match_scikit_learn() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/metrics_sklearn.json")).unwrap();
    let cases: Vec<Case> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 3);
    for c in &cases {
        let a = auc(&c.scores, &c.labels).unwrap();
        let g = gauc(&c.scores, &c.labels, &c.users).unwrap();
        let l = logloss(&c.scores, &c.labels);
        assert!((a - c.auc).abs() < 1e-12, "{}: auc {a} vs sklearn {}", c.name, c.auc);
        assert!((g - c.gauc).abs() < 1e-12, "{}: gauc {g} vs sklearn {}", c.name, c.gauc);
        assert!((l - c.logloss).abs() < 1e-9, "{}: logloss {l} vs sklearn {}", c.name, c.logloss);
    }
}

#[derive(Deserialize)]
struct DeLongRef {
    auc_a: f64,
    auc_b: f64,
    diff: f64,
    se: f64,
    z: f64,
    p_value: f64,
    ci95: (f64, f64),
}

#[derive(Deserialize)]
struct SignificanceCase {
    name: String,
    a: Vec<f64>,
    b: Vec<f64>,
    labels: Vec<f32>,
    delong: DeLongRef,
    ece_a: f64,
}

/// Fast (midrank) DeLong against the literal O(m·n) definition, and ECE against numpy
/// (fixtures from tests/fixtures/gen_significance.py).
#[test]
fn delong_and_ece_match_the_direct_reference() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/significance.json")).unwrap();
    let cases: Vec<SignificanceCase> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 3);
    for c in &cases {
        let d = attnrec::metrics::delong(&c.a, &c.b, &c.labels).unwrap();
        let r = &c.delong;
        let close = |x: f64, y: f64, what: &str| assert!((x - y).abs() < 1e-9 * y.abs().max(1.0), "{}: {what} {x} vs {y}", c.name);
        close(d.auc_a, r.auc_a, "auc_a");
        close(d.auc_b, r.auc_b, "auc_b");
        close(d.diff, r.diff, "diff");
        close(d.se, r.se, "se");
        close(d.z, r.z, "z");
        close(d.p_value, r.p_value, "p");
        close(d.ci95.0, r.ci95.0, "ci low");
        close(d.ci95.1, r.ci95.1, "ci high");
        close(attnrec::metrics::ece(&c.a, &c.labels, 10), c.ece_a, "ece");
    }
    // The fixtures span a clear difference and a null one.
    assert!(cases.iter().any(|c| c.delong.p_value < 1e-3) && cases.iter().any(|c| c.delong.p_value > 0.5));
}
