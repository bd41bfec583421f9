//! The evaluation metrics of TensorFlow's canned binary classifiers, computed exactly (TF's AUCs
//! use 200 thresholds; these sort the scores).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub global_step: u64,
    pub examples: usize,
    pub accuracy: f64,
    pub accuracy_baseline: f64,
    pub auc: f64,
    pub auc_precision_recall: f64,
    pub average_loss: f64,
    pub loss: f64,
    pub precision: f64,
    pub recall: f64,
    #[serde(rename = "label/mean")]
    pub label_mean: f64,
    #[serde(rename = "prediction/mean")]
    pub prediction_mean: f64,
}

impl EvalMetrics {
    /// Every metric under its Estimator name (the names of the JSON files, the event files' tags
    /// and a tuning job's metric tags), the counts left out.
    pub fn scalars(&self) -> [(&'static str, f64); 10] {
        [
            ("accuracy", self.accuracy),
            ("accuracy_baseline", self.accuracy_baseline),
            ("auc", self.auc),
            ("auc_precision_recall", self.auc_precision_recall),
            ("average_loss", self.average_loss),
            ("loss", self.loss),
            ("precision", self.precision),
            ("recall", self.recall),
            ("label/mean", self.label_mean),
            ("prediction/mean", self.prediction_mean),
        ]
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Metrics of logits against 0/1 labels. The predicted class is the exported graph's:
/// the larger of `sigmoid(-logit)` and `sigmoid(logit)`, ties to class 0.
pub fn evaluate(logits: &[f32], labels: &[f32], global_step: u64) -> EvalMetrics {
    let n = logits.len().max(1) as f64;
    let mut loss = 0.0;
    let (mut tp, mut fp, mut fn_, mut correct) = (0usize, 0usize, 0usize, 0usize);
    let mut prob_sum = 0.0;
    for (&x, &y) in logits.iter().zip(labels) {
        let x64 = x as f64;
        let y64 = y as f64;
        loss += x64.max(0.0) - x64 * y64 + (-x64.abs()).exp().ln_1p();
        let p1 = sigmoid(x);
        let p0 = sigmoid(-x);
        prob_sum += p1 as f64;
        let predicted = p1 > p0;
        let actual = y > 0.5;
        correct += usize::from(predicted == actual);
        match (predicted, actual) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
    }
    let label_mean = labels.iter().map(|&y| y as f64).sum::<f64>() / n;
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (auc, auc_pr) = aucs(logits, labels);
    EvalMetrics {
        global_step,
        examples: logits.len(),
        accuracy: correct as f64 / n,
        accuracy_baseline: label_mean.max(1.0 - label_mean),
        auc,
        auc_precision_recall: auc_pr,
        average_loss: loss / n,
        loss: loss / n,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        label_mean,
        prediction_mean: prob_sum / n,
    }
}

/// ROC AUC (ties counted half) and the area under the precision-recall curve (trapezoids over
/// distinct score thresholds, starting from precision 1 at recall 0).
fn aucs(scores: &[f32], labels: &[f32]) -> (f64, f64) {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let positives = labels.iter().filter(|&&y| y > 0.5).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return (0.0, 0.0);
    }
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    let (mut roc, mut pr) = (0.0f64, 0.0f64);
    let (mut prev_tpr, mut prev_fpr, mut prev_recall, mut prev_precision) = (0.0, 0.0, 0.0, 1.0);
    let mut i = 0;
    while i < order.len() {
        // Ties by total order (bit pattern), so a NaN score groups with itself and the scan
        // always advances.
        let score = scores[order[i]];
        while i < order.len() && scores[order[i]].total_cmp(&score).is_eq() {
            if labels[order[i]] > 0.5 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        let tpr = tp / positives;
        let fpr = fp / negatives;
        roc += (fpr - prev_fpr) * (tpr + prev_tpr) / 2.0;
        let precision = tp / (tp + fp);
        pr += (tpr - prev_recall) * (precision + prev_precision) / 2.0;
        (prev_tpr, prev_fpr, prev_recall, prev_precision) = (tpr, fpr, tpr, precision);
    }
    (roc, pr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_scores_end_the_scan() {
        let labels = [0.0, 1.0, 0.0, 1.0];
        let (roc, pr) = aucs(&[f32::NAN, f32::NAN, 0.2, f32::INFINITY], &labels);
        assert!(roc.is_finite() && pr.is_finite(), "{roc} {pr}");
    }

    #[test]
    fn perfect_and_inverted_rankings() {
        let labels = [0.0, 0.0, 1.0, 1.0];
        let m = evaluate(&[-2.0, -1.0, 1.0, 2.0], &labels, 7);
        assert_eq!(m.global_step, 7);
        assert!((m.auc - 1.0).abs() < 1e-12);
        assert!((m.auc_precision_recall - 1.0).abs() < 1e-12);
        assert_eq!(m.accuracy, 1.0);
        assert_eq!(m.precision, 1.0);
        assert_eq!(m.recall, 1.0);
        let m = evaluate(&[2.0, 1.0, -1.0, -2.0], &labels, 0);
        assert!(m.auc.abs() < 1e-12);
        assert_eq!(m.accuracy, 0.0);
    }

    #[test]
    fn ties_count_half_and_baseline_is_majority() {
        let m = evaluate(&[0.0, 0.0, 0.0, 0.0], &[0.0, 1.0, 0.0, 0.0], 0);
        assert!((m.auc - 0.5).abs() < 1e-12);
        assert!((m.accuracy_baseline - 0.75).abs() < 1e-12);
        assert!((m.label_mean - 0.25).abs() < 1e-12);
        assert!((m.prediction_mean - 0.5).abs() < 1e-12);
        assert!((m.loss - std::f64::consts::LN_2).abs() < 1e-9);
        // Logit 0 predicts class 0 everywhere.
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        assert_eq!(m.recall, 0.0);
    }

    #[test]
    fn mixed_ranking_auc() {
        // Scores ranked: pos(0.9), neg(0.8), pos(0.7), neg(0.1): 3 of 4 pairs ordered.
        let m = evaluate(
            &[0.9, 0.8, 0.7, 0.1].map(|p: f32| (p / (1.0 - p)).ln()),
            &[1.0, 0.0, 1.0, 0.0],
            0,
        );
        assert!((m.auc - 0.75).abs() < 1e-9, "{}", m.auc);
    }
}
