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
