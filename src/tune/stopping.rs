//! The median stopping rule (`enableTrialEarlyStopping`), on the trials' intermediate reports.
//!
//! A running trial T whose last report is at step s is stopped when
//! - at least [`MIN_COMPLETED`] completed trials (succeeded, not themselves stopped) reported at
//!   or before step s, and
//! - T's best value over its reports so far is worse than the median of those trials' values at
//!   s, where a completed trial's value at s is the last value it reported at a step <= s.
//!
//! "Worse" follows the goal (lower for MAXIMIZE, higher for MINIMIZE), and ties do not stop.
//! This is Vizier's rule with the completed trials' last value in place of their running average
//! (as Optuna's MedianPruner compares raw values), so a trial that improves slowly is compared
//! with where the others were at the same step, not with their early mean.

use super::config::{Goal, Spec};
use super::output::{TrialRecord, TrialState};
use super::trial::Report;

/// Completed trials the rule needs before it stops anything.
pub const MIN_COMPLETED: usize = 3;

pub fn should_stop(spec: &Spec, reports: &[Report], completed: &[TrialRecord]) -> bool {
    let Some(last) = reports.last() else {
        return false;
    };
    let s = last.step;
    let oriented = |v: f64| match spec.goal {
        Goal::Maximize => v,
        Goal::Minimize => -v,
    };
    let best = reports
        .iter()
        .map(|r| oriented(r.value))
        .fold(f64::NEG_INFINITY, f64::max);
    let mut at_s: Vec<f64> = completed
        .iter()
        .filter(|t| t.state == TrialState::Succeeded && !t.stopped_early)
        .filter_map(|t| {
            t.reports
                .iter()
                .rfind(|r| r.step <= s)
                .map(|r| oriented(r.value))
        })
        .collect();
    if at_s.len() < MIN_COMPLETED {
        return false;
    }
    at_s.sort_by(f64::total_cmp);
    let n = at_s.len();
    let median = if n % 2 == 1 {
        at_s[n / 2]
    } else {
        (at_s[n / 2 - 1] + at_s[n / 2]) / 2.0
    };
    best < median
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::config::{Algorithm, Goal};

    fn spec(goal: Goal) -> Spec {
        Spec {
            goal,
            metric_tag: "m".into(),
            max_trials: 10,
            max_parallel_trials: 1,
            max_failed_trials: 0,
            early_stopping: true,
            resume_previous_job_id: None,
            algorithm: Algorithm::Random,
            params: vec![],
        }
    }

    fn curve(values: &[(u64, f64)]) -> Vec<Report> {
        values
            .iter()
            .map(|&(step, value)| Report { step, value })
            .collect()
    }

    fn done(id: u32, values: &[(u64, f64)]) -> TrialRecord {
        let mut t = TrialRecord::started(id, vec![]);
        t.state = TrialState::Succeeded;
        t.reports = curve(values);
        t
    }

    #[test]
    fn stops_below_the_median_at_the_same_step() {
        let completed = vec![
            done(1, &[(100, 0.5), (200, 0.7), (300, 0.8)]),
            done(2, &[(100, 0.6), (200, 0.75), (300, 0.85)]),
            done(3, &[(100, 0.4), (200, 0.65), (300, 0.7)]),
        ];
        let s = spec(Goal::Maximize);
        // At step 200 the completed trials were at 0.7, 0.75, 0.65: median 0.7.
        assert!(should_stop(
            &s,
            &curve(&[(100, 0.3), (200, 0.6)]),
            &completed
        ));
        assert!(
            !should_stop(&s, &curve(&[(100, 0.3), (200, 0.7)]), &completed),
            "a tie"
        );
        // Its best so far counts, not its last value.
        assert!(!should_stop(
            &s,
            &curve(&[(100, 0.72), (200, 0.6)]),
            &completed
        ));
        // Before anyone reported: nothing to compare with.
        assert!(!should_stop(&s, &curve(&[(50, 0.0)]), &completed));
        // Too few completed trials.
        assert!(!should_stop(&s, &curve(&[(200, 0.1)]), &completed[..2]));
        // MINIMIZE: higher is worse.
        let m = spec(Goal::Minimize);
        assert!(should_stop(&m, &curve(&[(200, 0.9)]), &completed));
        assert!(!should_stop(&m, &curve(&[(200, 0.5)]), &completed));
    }
}
