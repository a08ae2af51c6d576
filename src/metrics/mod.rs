//! Offline CTR metrics exactly as shared/PROTOCOL.md defines them: tie-aware AUC (Mann-Whitney
//! with average ranks), GAUC (per-user AUC weighted by the user's sample count, over users with
//! both classes), LogLoss with clipping, RelaImpr; calibration (mean prediction, expected
//! calibration error) and DeLong's test for two models on the same samples.
pub mod delong;

pub use delong::{delong, DeLong};

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Probabilities are clipped to [EPS, 1 - EPS] inside LogLoss.
pub const LOGLOSS_EPS: f64 = 1e-7;

/// AUC of `scores` against binary `labels` (1 = positive), tie-aware: tied scores get the average
/// of their ranks. Returns `None` when one class is absent.
pub fn auc(scores: &[f64], labels: &[f32]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len(), "auc: scores and labels differ in length");
    let n = scores.len();
    let n_pos = labels.iter().filter(|&&l| l > 0.5).count();
    let n_neg = n - n_pos;
    // Without both classes there is no pair to rank; a NaN score has no rank at all (sorting
    // would put it at one end and report a made-up AUC).
    if n_pos == 0 || n_neg == 0 || scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + 1 + j) as f64 / 2.0; // ranks i+1 ..= j
        let pos_in_group = order[i..j].iter().filter(|&&k| labels[k] > 0.5).count();
        rank_sum_pos += avg_rank * pos_in_group as f64;
        i = j;
    }
    let u = rank_sum_pos - (n_pos as f64) * (n_pos as f64 + 1.0) / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// GAUC: per-group AUC averaged with weights = the group's sample count, over groups that contain
/// both classes. Returns `None` when no group has both classes.
pub fn gauc<G: std::hash::Hash + Eq + Copy>(scores: &[f64], labels: &[f32], groups: &[G]) -> Option<f64> {
    assert_eq!(scores.len(), groups.len(), "gauc: scores and groups differ in length");
    if scores.iter().any(|s| s.is_nan()) {
        return None;
    }
    // Groups in order of first appearance: a HashMap's iteration order changes from process to
    // process, and so would the last bits of the floating-point sum.
    let mut slot: HashMap<G, usize> = HashMap::new();
    let mut by_group: Vec<Vec<usize>> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let k = *slot.entry(*g).or_insert_with(|| {
            by_group.push(Vec::new());
            by_group.len() - 1
        });
        by_group[k].push(i);
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut s = Vec::new();
    let mut l = Vec::new();
    for idx in &by_group {
        s.clear();
        l.clear();
        s.extend(idx.iter().map(|&i| scores[i]));
        l.extend(idx.iter().map(|&i| labels[i]));
        if let Some(a) = auc(&s, &l) {
            num += a * idx.len() as f64;
            den += idx.len() as f64;
        }
    }
    (den > 0.0).then(|| num / den)
}

/// Mean binary cross-entropy of probabilities `probs`, clipped to [1e-7, 1 - 1e-7].
pub fn logloss(probs: &[f64], labels: &[f32]) -> f64 {
    assert_eq!(probs.len(), labels.len(), "logloss: probs and labels differ in length");
    if probs.is_empty() {
        return f64::NAN;
    }
    let total: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| {
            let p = p.clamp(LOGLOSS_EPS, 1.0 - LOGLOSS_EPS);
            if y > 0.5 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    total / probs.len() as f64
}

/// RelaImpr of `auc` over `auc_base`, in percent: ((AUC - 0.5) / (AUC_base - 0.5) - 1) * 100.
pub fn rela_impr(auc: f64, auc_base: f64) -> f64 {
    ((auc - 0.5) / (auc_base - 0.5) - 1.0) * 100.0
}

/// Number of equal-width probability bins of [`ece`].
pub const ECE_BINS: usize = 10;

/// Expected calibration error: over `bins` equal-width bins of the predicted probability, the
/// sample-weighted mean of |mean prediction − observed positive rate|.
pub fn ece(probs: &[f64], labels: &[f32], bins: usize) -> f64 {
    assert_eq!(probs.len(), labels.len(), "ece: probs and labels differ in length");
    if probs.is_empty() || bins == 0 {
        return f64::NAN;
    }
    let mut sum_p = vec![0.0f64; bins];
    let mut sum_y = vec![0.0f64; bins];
    let mut count = vec![0usize; bins];
    for (&p, &y) in probs.iter().zip(labels) {
        let b = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        sum_p[b] += p;
        sum_y[b] += f64::from(y);
        count[b] += 1;
    }
    (0..bins).filter(|&b| count[b] > 0).map(|b| (sum_p[b] - sum_y[b]).abs()).sum::<f64>() / probs.len() as f64
}

/// The metrics of one split, as reported in tables and `metrics.json`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct SplitMetrics {
    pub auc: Option<f64>,
    pub gauc: Option<f64>,
    pub logloss: f64,
    pub samples: usize,
    /// Observed click-through rate.
    pub positive_rate: f64,
    /// Mean predicted probability (compare with `positive_rate`).
    #[serde(default)]
    pub mean_prediction: f64,
    /// Expected calibration error over [`ECE_BINS`] bins.
    #[serde(default)]
    pub ece: f64,
}

impl SplitMetrics {
    /// `probs` are probabilities in [0, 1]; `users` group samples for GAUC.
    pub fn compute(probs: &[f64], labels: &[f32], users: &[i64]) -> Self {
        let positives = labels.iter().filter(|&&l| l > 0.5).count();
        SplitMetrics {
            auc: auc(probs, labels),
            gauc: gauc(probs, labels, users),
            logloss: logloss(probs, labels),
            samples: labels.len(),
            positive_rate: if labels.is_empty() { f64::NAN } else { positives as f64 / labels.len() as f64 },
            mean_prediction: if probs.is_empty() { f64::NAN } else { probs.iter().sum::<f64>() / probs.len() as f64 },
            ece: ece(probs, labels, ECE_BINS),
        }
    }
}

/// Mean and sample standard deviation (0 for one value; NaN for none).
pub fn mean_std(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 { xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_hand() {
        // Pairs (pos, neg): (0.8,0.1) win, (0.8,0.4) win, (0.4,0.1) win, (0.4,0.4) tie → 3.5 / 4.
        let scores = [0.1, 0.4, 0.4, 0.8];
        let labels = [0.0, 0.0, 1.0, 1.0];
        assert!((auc(&scores, &labels).unwrap() - 0.875).abs() < 1e-12);
        assert_eq!(auc(&[0.3, 0.2], &[1.0, 1.0]), None);
    }

    /// A NaN prediction has no rank: no AUC or GAUC rather than a made-up one.
    #[test]
    fn nan_scores_have_no_auc() {
        assert_eq!(auc(&[0.1, f64::NAN, 0.8], &[0.0, 1.0, 1.0]), None);
        assert_eq!(gauc(&[0.1, f64::NAN, 0.2, 0.9], &[0.0, 1.0, 0.0, 1.0], &[1, 1, 2, 2]), None);
    }

    #[test]
    fn gauc_skips_single_class_users_and_weights_by_count() {
        let scores = [0.9, 0.1, 0.2, 0.8, 0.7, 0.5, 0.6];
        let labels = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0];
        let users = [1, 1, 2, 2, 2, 3, 3];
        // user 1: AUC 1 (2 samples); user 2: pos 0.2 vs negs 0.8, 0.7 → 0 (3 samples); user 3: one class.
        let g = gauc(&scores, &labels, &users).unwrap();
        assert!((g - (1.0 * 2.0 + 0.0 * 3.0) / 5.0).abs() < 1e-12);
    }

    #[test]
    fn logloss_clips() {
        let ll = logloss(&[0.0, 1.0], &[1.0, 0.0]);
        assert!((ll - (-(1e-7f64).ln())).abs() < 1e-6);
        assert!((rela_impr(0.75, 0.7) - 25.0).abs() < 1e-9);
    }
}
