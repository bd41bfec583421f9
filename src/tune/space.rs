//! The search space as the unit cube: each parameter mapped to [0, 1] exactly as Vizier's
//! converter maps it (linear, log, reverse log), and back to a value the trainer takes. Integers
//! come back as integers, discrete parameters as one of their values, categorical parameters as
//! one of their categories.

use super::config::{Kind, Param, Scale};

/// How many points of a grid search's grid are ever enumerated: ten times the most trials a job
/// may run, so a grid over a vast range is walked from its start without being built whole.
pub const GRID_REACH: usize = super::config::MAX_TRIALS as usize * 10;

/// One parameter's value in a trial.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Double(f64),
    Integer(i64),
    Discrete(f64),
    Categorical(String),
}

impl Value {
    /// As the flag value and as Cloud ML's `hyperparameters` map string: integers without a
    /// decimal point, doubles in their shortest exact form. A whole DISCRETE value is written as
    /// an integer (`--train-batch-size=64`): discrete values are mostly sizes, read by trainers
    /// as integers (argparse's `type=int` refuses "64.0").
    pub fn text(&self) -> String {
        match self {
            Value::Discrete(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
            Value::Double(x) | Value::Discrete(x) => format_double(*x),
            Value::Integer(i) => i.to_string(),
            Value::Categorical(s) => s.clone(),
        }
    }
}

fn format_double(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}

/// `x` in [lo, hi] to [0, 1].
pub fn to_unit(x: f64, lo: f64, hi: f64, scale: Scale) -> f64 {
    if hi <= lo {
        return 0.5;
    }
    let u = match scale {
        // Halved, so that a range as wide as the doubles themselves does not overflow.
        Scale::Linear => (x / 2.0 - lo / 2.0) / (hi / 2.0 - lo / 2.0),
        Scale::Log => (x.ln() - lo.ln()) / (hi.ln() - lo.ln()),
        Scale::ReverseLog => 1.0 - ((lo + hi - x).ln() - lo.ln()) / (hi.ln() - lo.ln()),
    };
    u.clamp(0.0, 1.0)
}

/// `u` in [0, 1] to [lo, hi].
pub fn from_unit(u: f64, lo: f64, hi: f64, scale: Scale) -> f64 {
    let u = u.clamp(0.0, 1.0);
    if hi <= lo {
        return lo;
    }
    let x = match scale {
        Scale::Linear => lo * (1.0 - u) + hi * u,
        Scale::Log => (lo.ln() + u * (hi.ln() - lo.ln())).exp(),
        Scale::ReverseLog => lo + hi - hi * (lo / hi).powf(u),
    };
    x.clamp(lo, hi)
}

impl Param {
    /// The value at `u` of the unit interval.
    pub fn value_at(&self, u: f64) -> Value {
        match &self.kind {
            Kind::Double { min, max, scale } => Value::Double(from_unit(u, *min, *max, *scale)),
            Kind::Integer { min, max, scale } => {
                // Round in the scaled space's image, then clamp: every integer is reachable.
                let x = from_unit(u, *min as f64 - 0.5, *max as f64 + 0.5, Scale::Linear);
                let x = match scale {
                    Scale::Linear => x,
                    _ => from_unit(u, *min as f64, *max as f64, *scale),
                };
                Value::Integer((x.round() as i64).clamp(*min, *max))
            }
            Kind::Discrete { values, scale } => {
                let (lo, hi) = (values[0], values[values.len() - 1]);
                let x = from_unit(u, lo, hi, *scale);
                let nearest = values
                    .iter()
                    .copied()
                    .min_by(|a, b| {
                        let da = (to_unit(*a, lo, hi, *scale) - to_unit(x, lo, hi, *scale)).abs();
                        let db = (to_unit(*b, lo, hi, *scale) - to_unit(x, lo, hi, *scale)).abs();
                        da.total_cmp(&db)
                    })
                    .unwrap_or(lo);
                Value::Discrete(nearest)
            }
            Kind::Categorical(values) => {
                let i = ((u * values.len() as f64) as usize).min(values.len() - 1);
                Value::Categorical(values[i].clone())
            }
        }
    }

    /// Where a value sits in the unit interval (the middle of a category's slice).
    pub fn unit_of(&self, v: &Value) -> f64 {
        match (&self.kind, v) {
            (Kind::Double { min, max, scale }, Value::Double(x)) => to_unit(*x, *min, *max, *scale),
            (Kind::Integer { min, max, scale }, Value::Integer(i)) => match scale {
                Scale::Linear => to_unit(*i as f64, *min as f64 - 0.5, *max as f64 + 0.5, *scale),
                _ => to_unit(*i as f64, *min as f64, *max as f64, *scale),
            },
            (Kind::Discrete { values, scale }, Value::Discrete(x)) => {
                to_unit(*x, values[0], values[values.len() - 1], *scale)
            }
            (Kind::Categorical(values), Value::Categorical(s)) => {
                let i = values.iter().position(|c| c == s).unwrap_or(0);
                (i as f64 + 0.5) / values.len() as f64
            }
            _ => 0.5,
        }
    }

    /// Whether the trust region measures distance along this parameter: continuous ones and
    /// those whose values lie at most `max_gap` apart in the unit interval. A parameter with
    /// wider gaps (a few discrete sizes, categories) is left out, as Vizier's `TrustRegion` does,
    /// so that every one of its values stays reachable.
    pub fn dense_within(&self, max_gap: f64) -> bool {
        let units: Vec<f64> = match &self.kind {
            Kind::Double { .. } => return true,
            Kind::Categorical(_) => return false,
            Kind::Integer { min, max, .. } if max - min > 1000 => return true,
            Kind::Integer { min, max, .. } => (*min..=*max)
                .map(|i| self.unit_of(&Value::Integer(i)))
                .collect(),
            Kind::Discrete { values, .. } => values
                .iter()
                .map(|v| self.unit_of(&Value::Discrete(*v)))
                .collect(),
        };
        units.windows(2).all(|w| (w[1] - w[0]).abs() <= max_gap)
    }

    /// Every value, for grid search (`None` for DOUBLE), in order; an INTEGER range only as far
    /// as a grid can reach (a job runs at most `MAX_TRIALS` of it), whatever its bounds.
    pub fn grid(&self) -> Option<Vec<Value>> {
        match &self.kind {
            Kind::Double { .. } => None,
            Kind::Integer { min, max, .. } => {
                Some((*min..=*max).take(GRID_REACH).map(Value::Integer).collect())
            }
            Kind::Discrete { values, .. } => {
                Some(values.iter().map(|v| Value::Discrete(*v)).collect())
            }
            Kind::Categorical(values) => Some(
                values
                    .iter()
                    .map(|v| Value::Categorical(v.clone()))
                    .collect(),
            ),
        }
    }

    /// Reads a value back from its text (a resumed job's trials); `None` when this parameter
    /// could not take it (the job's space changed since).
    pub fn parse(&self, text: &str) -> Option<Value> {
        let text = text.trim();
        match &self.kind {
            Kind::Double { min, max, .. } => text
                .parse::<f64>()
                .ok()
                .filter(|x| (*min..=*max).contains(x))
                .map(Value::Double),
            Kind::Integer { min, max, .. } => text
                .parse::<i64>()
                .ok()
                .or_else(|| {
                    let x = text.parse::<f64>().ok()?;
                    (x.fract() == 0.0 && x.abs() < 9e15).then_some(x as i64)
                })
                .filter(|i| (*min..=*max).contains(i))
                .map(Value::Integer),
            Kind::Discrete { values, .. } => text
                .parse::<f64>()
                .ok()
                .filter(|x| values.contains(x))
                .map(Value::Discrete),
            Kind::Categorical(values) => values
                .iter()
                .any(|v| v == text)
                .then(|| Value::Categorical(text.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(kind: Kind) -> Param {
        Param {
            name: "p".into(),
            kind,
        }
    }

    #[test]
    fn scales_map_as_vizier_does() {
        for scale in [Scale::Linear, Scale::Log, Scale::ReverseLog] {
            for u in [0.0, 0.1, 0.5, 0.77, 1.0] {
                let x = from_unit(u, 0.1, 1.0, scale);
                assert!(
                    (to_unit(x, 0.1, 1.0, scale) - u).abs() < 1e-12,
                    "{scale:?} {u}"
                );
            }
        }
        // Reverse log over [0.1, 1]: the median of uniform u is 1.1 - 0.1^0.5.
        let median = from_unit(0.5, 0.1, 1.0, Scale::ReverseLog);
        assert!((median - (1.1 - 0.1f64.sqrt())).abs() < 1e-12);
        assert!((from_unit(0.5, 0.1, 1.0, Scale::Log) - 0.1f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn a_range_as_wide_as_the_doubles_maps_without_overflow() {
        let (lo, hi) = (-1e308, 1e308);
        assert_eq!(from_unit(0.5, lo, hi, Scale::Linear), 0.0);
        assert!((to_unit(0.0, lo, hi, Scale::Linear) - 0.5).abs() < 1e-12);
        assert_eq!(from_unit(1.0, lo, hi, Scale::Linear), hi);
    }

    #[test]
    fn values_read_back_only_when_the_space_still_holds_them() {
        let double = param(Kind::Double {
            min: 0.1,
            max: 1.0,
            scale: Scale::Linear,
        });
        assert_eq!(double.parse("0.5"), Some(Value::Double(0.5)));
        assert_eq!(double.parse("2"), None);
        assert_eq!(double.parse("NaN"), None);
        let integer = param(Kind::Integer {
            min: 1,
            max: 3,
            scale: Scale::Linear,
        });
        assert_eq!(integer.parse("2"), Some(Value::Integer(2)));
        assert_eq!(integer.parse("2.0"), Some(Value::Integer(2)));
        assert_eq!(integer.parse("2.7"), None);
        assert_eq!(integer.parse("5"), None);
        let discrete = param(Kind::Discrete {
            values: vec![5.0, 6.0, 7.0],
            scale: Scale::Linear,
        });
        assert_eq!(discrete.parse("6"), Some(Value::Discrete(6.0)));
        assert_eq!(discrete.parse("1"), None);
    }

    #[test]
    fn a_grid_over_a_vast_integer_range_stops_where_trials_could_reach() {
        let p = param(Kind::Integer {
            min: 0,
            max: 1 << 53,
            scale: Scale::Linear,
        });
        let grid = p.grid().unwrap();
        assert_eq!(grid.len(), GRID_REACH);
        assert_eq!(grid[0], Value::Integer(0));
    }

    #[test]
    fn integers_are_integers_and_every_one_is_reachable() {
        let p = param(Kind::Integer {
            min: 1,
            max: 15,
            scale: Scale::Linear,
        });
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..=1000 {
            match p.value_at(i as f64 / 1000.0) {
                Value::Integer(v) => {
                    seen.insert(v);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen.len(), 15);
        assert_eq!(p.value_at(0.5), Value::Integer(8));
        assert_eq!(p.value_at(0.5).text(), "8");
        assert!((p.unit_of(&Value::Integer(8)) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn values_read_back() {
        let c = param(Kind::Categorical(vec!["relu".into(), "tanh".into()]));
        assert_eq!(c.value_at(0.9), Value::Categorical("tanh".into()));
        assert_eq!(c.parse("relu"), Some(Value::Categorical("relu".into())));
        assert_eq!(c.parse("gelu"), None);
        let d = param(Kind::Discrete {
            values: vec![1.0, 10.0, 100.0],
            scale: Scale::Log,
        });
        assert_eq!(d.value_at(0.5), Value::Discrete(10.0));
        assert_eq!(Value::Discrete(10.0).text(), "10");
        assert_eq!(Value::Discrete(0.25).text(), "0.25");
        assert_eq!(Value::Double(10.0).text(), "10.0");
        assert_eq!(d.value_at(0.5).text(), "10");
        assert_eq!(
            Value::Double(0.278_519_382_777_242_8).text(),
            "0.2785193827772428"
        );
    }

    #[test]
    fn the_trust_region_measures_dense_parameters_only() {
        let double = param(Kind::Double {
            min: 0.1,
            max: 1.0,
            scale: Scale::ReverseLog,
        });
        assert!(double.dense_within(0.2));
        // 1..8 in steps of 1/8 of the unit interval; 1..3 in thirds.
        let layers = param(Kind::Integer {
            min: 1,
            max: 8,
            scale: Scale::Linear,
        });
        assert!(layers.dense_within(0.2));
        let few = param(Kind::Integer {
            min: 1,
            max: 3,
            scale: Scale::Linear,
        });
        assert!(!few.dense_within(0.2));
        // The census batch sizes: 20 to 40 is 0.14 of the range, 80 to 160 is 0.57.
        let batch = param(Kind::Discrete {
            values: vec![20.0, 40.0, 80.0, 160.0],
            scale: Scale::Linear,
        });
        assert!(!batch.dense_within(0.2));
        assert!(batch.dense_within(0.6));
        assert!(!param(Kind::Categorical(vec!["a".into(); 10])).dense_within(0.2));
    }
}
