//! DeLong's test for the difference of two correlated AUCs (DeLong, DeLong & Clarke-Pearson 1988),
//! computed with midranks in O(N log N) (Sun & Xu 2014). Two models scored on the *same* samples
//! share their noise, so this test is far sharper than comparing two confidence intervals.
use serde::{Deserialize, Serialize};

/// The two-sided 97.5 % quantile of the standard normal.
const Z975: f64 = 1.959_963_984_540_054;

/// DeLong's comparison of model A against model B on the same samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DeLong {
    pub auc_a: f64,
    pub auc_b: f64,
    /// `auc_a − auc_b`
    pub diff: f64,
    /// Standard error of `diff`.
    pub se: f64,
    pub z: f64,
    /// Two-sided p-value of `diff = 0`.
    pub p_value: f64,
    /// 95 % confidence interval of `diff`.
    pub ci95: (f64, f64),
}

/// 1-based ranks with ties given their average rank.
fn midranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_unstable_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && x[order[j]] == x[order[i]] {
            j += 1;
        }
        let r = (i + 1 + j) as f64 / 2.0;
        for &k in &order[i..j] {
            ranks[k] = r;
        }
        i = j;
    }
    ranks
}

/// AUC and the structural components (V10 over positives, V01 over negatives) of one scorer.
fn components(pos: &[f64], neg: &[f64]) -> (f64, Vec<f64>, Vec<f64>) {
    let (m, n) = (pos.len() as f64, neg.len() as f64);
    let tx = midranks(pos);
    let ty = midranks(neg);
    let all: Vec<f64> = pos.iter().chain(neg).copied().collect();
    let tz = midranks(&all);
    let auc = (tz[..pos.len()].iter().sum::<f64>() - m * (m + 1.0) / 2.0) / (m * n);
    let v10 = (0..pos.len()).map(|i| (tz[i] - tx[i]) / n).collect();
    let v01 = (0..neg.len()).map(|j| 1.0 - (tz[pos.len() + j] - ty[j]) / m).collect();
    (auc, v10, v01)
}

/// Sample covariance of two equally long series.
fn cov(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>() / (n - 1.0)
}

/// Compares the AUCs of `scores_a` and `scores_b` on the same samples and `labels`. `None` when
/// either class has fewer than 2 samples (the variance is undefined).
pub fn delong(scores_a: &[f64], scores_b: &[f64], labels: &[f32]) -> Option<DeLong> {
    assert_eq!(scores_a.len(), labels.len(), "delong: scores and labels differ in length");
    assert_eq!(scores_b.len(), labels.len(), "delong: scores and labels differ in length");
    let split = |s: &[f64]| -> (Vec<f64>, Vec<f64>) {
        let pos = s.iter().zip(labels).filter(|(_, &l)| l > 0.5).map(|(&x, _)| x).collect();
        let neg = s.iter().zip(labels).filter(|(_, &l)| l <= 0.5).map(|(&x, _)| x).collect();
        (pos, neg)
    };
    let (pa, na) = split(scores_a);
    let (pb, nb) = split(scores_b);
    if pa.len() < 2 || na.len() < 2 {
        return None;
    }
    let (auc_a, v10a, v01a) = components(&pa, &na);
    let (auc_b, v10b, v01b) = components(&pb, &nb);
    let (m, n) = (pa.len() as f64, na.len() as f64);
    let var = (cov(&v10a, &v10a) + cov(&v10b, &v10b) - 2.0 * cov(&v10a, &v10b)) / m
        + (cov(&v01a, &v01a) + cov(&v01b, &v01b) - 2.0 * cov(&v01a, &v01b)) / n;
    let se = var.max(0.0).sqrt();
    let diff = auc_a - auc_b;
    let (z, p_value) = if se > 0.0 {
        let z = diff / se;
        (z, libm::erfc(z.abs() / std::f64::consts::SQRT_2))
    } else if diff == 0.0 {
        (0.0, 1.0)
    } else {
        (diff.signum() * f64::INFINITY, 0.0)
    };
    Some(DeLong { auc_a, auc_b, diff, se, z, p_value, ci95: (diff - Z975 * se, diff + Z975 * se) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midranks_average_ties() {
        assert_eq!(midranks(&[0.3, 0.1, 0.3, 0.2]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn identical_scorers_do_not_differ() {
        let s = [0.1, 0.4, 0.35, 0.8, 0.7, 0.2];
        let l = [0.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        let d = delong(&s, &s, &l).unwrap();
        assert_eq!((d.diff, d.z, d.p_value), (0.0, 0.0, 1.0));
        assert!((d.auc_a - crate::metrics::auc(&s, &l).unwrap()).abs() < 1e-12);
        assert!(delong(&s, &s, &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]).is_none());
    }
}
