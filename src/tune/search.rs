//! Where the next trial goes, in the unit cube: grid, random, or Bayesian optimization with a
//! Gaussian process (Vizier's default is GP-UCB-PE: a Matérn-5/2 ARD kernel, an upper confidence
//! bound with coefficient 1.8, the centre of the space first). Trials still running are taken into
//! account by conditioning the process on them as if they had returned their predicted mean (the
//! "kriging believer"): the model's uncertainty collapses where they are, so parallel trials
//! spread out instead of repeating each other. Every choice comes from a generator seeded by the
//! job's seed and the trial's number, so a seed gives the same trials.

use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::config::{Algorithm, Param};
use super::space::Value;

/// UCB's exploration coefficient (Vizier's GP-UCB-PE default).
const UCB_BETA: f64 = 1.8;
/// Random candidates per acquisition, then local refinements around the best of them.
const CANDIDATES: usize = 2000;
const REFINEMENTS: usize = 600;

/// A finished trial: its point in the unit cube and its objective, oriented so larger is better.
#[derive(Debug, Clone)]
pub struct Observation {
    pub point: Vec<f64>,
    pub value: f64,
}

pub struct Search {
    algorithm: Algorithm,
    params: Vec<Param>,
    seed: u64,
    grid: Vec<Vec<Value>>,
}

impl Search {
    pub fn new(algorithm: Algorithm, params: &[Param], seed: u64) -> Search {
        let grid = if algorithm == Algorithm::Grid {
            grid_points(params)
        } else {
            Vec::new()
        };
        Search {
            algorithm,
            params: params.to_vec(),
            seed,
            grid,
        }
    }

    /// How many distinct trials the space holds, when it is finite (grid search).
    pub fn grid_size(&self) -> Option<usize> {
        (self.algorithm == Algorithm::Grid).then_some(self.grid.len())
    }

    pub fn point_of(&self, values: &[Value]) -> Vec<f64> {
        self.params
            .iter()
            .zip(values)
            .map(|(p, v)| p.unit_of(v))
            .collect()
    }

    /// The values of trial number `n` (counting from 0 over the whole study), given what has
    /// finished and the points of trials still running. `None` when the space is exhausted.
    pub fn suggest(
        &self,
        n: usize,
        done: &[Observation],
        running: &[Vec<f64>],
        taken: &[Vec<Value>],
    ) -> Option<Vec<Value>> {
        let mut rng =
            ChaCha8Rng::seed_from_u64(self.seed ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match self.algorithm {
            Algorithm::Grid => self.grid.iter().find(|p| !taken.contains(p)).cloned(),
            Algorithm::Random => Some(self.distinct(taken, &mut rng, |rng| {
                (0..self.params.len())
                    .map(|_| rng.random::<f64>())
                    .collect()
            })),
            Algorithm::Bayesian => Some(self.bayesian(n, done, running, taken, &mut rng)),
        }
    }

    fn values_at(&self, point: &[f64]) -> Vec<Value> {
        self.params
            .iter()
            .zip(point)
            .map(|(p, u)| p.value_at(*u))
            .collect()
    }

    /// A point drawn by `draw` whose values no trial has had yet (after 100 tries, any).
    fn distinct(
        &self,
        taken: &[Vec<Value>],
        rng: &mut ChaCha8Rng,
        mut draw: impl FnMut(&mut ChaCha8Rng) -> Vec<f64>,
    ) -> Vec<Value> {
        let mut values = self.values_at(&draw(rng));
        for _ in 0..100 {
            if !taken.contains(&values) {
                break;
            }
            values = self.values_at(&draw(rng));
        }
        values
    }

    fn bayesian(
        &self,
        n: usize,
        done: &[Observation],
        running: &[Vec<f64>],
        taken: &[Vec<Value>],
        rng: &mut ChaCha8Rng,
    ) -> Vec<Value> {
        let d = self.params.len();
        if n == 0 && taken.is_empty() {
            return self.values_at(&vec![0.5; d]);
        }
        // Quasi-random seed points until the model has a few observations to stand on.
        let seeds = (d + 1).clamp(2, 5);
        if done.len() < seeds {
            let start = n as u64;
            let mut k = 0u64;
            return self.distinct(taken, rng, |_| {
                k += 1;
                halton(start + k * 7, d)
            });
        }
        let Some(model) = Gp::fit(done, running) else {
            return self.distinct(taken, rng, |rng| {
                (0..d).map(|_| rng.random::<f64>()).collect()
            });
        };
        let ucb = |x: &[f64]| {
            let (mean, var) = model.predict(x);
            mean + UCB_BETA * var.max(0.0).sqrt()
        };
        let mut candidates: Vec<(f64, Vec<f64>)> = (0..CANDIDATES)
            .map(|_| {
                let x: Vec<f64> = (0..d).map(|_| rng.random::<f64>()).collect();
                (ucb(&x), x)
            })
            .collect();
        // Refine around the best candidates and the best observations.
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut starts: Vec<Vec<f64>> = candidates.iter().take(10).map(|c| c.1.clone()).collect();
        let mut best_seen = done.to_vec();
        best_seen.sort_by(|a, b| b.value.total_cmp(&a.value));
        starts.extend(best_seen.iter().take(3).map(|o| o.point.clone()));
        for i in 0..REFINEMENTS {
            let base = &starts[i % starts.len()];
            let width = 0.15 * 0.5f64.powi((i / starts.len()) as i32 % 6);
            let x: Vec<f64> = base
                .iter()
                .map(|b| (b + width * (rng.random::<f64>() * 2.0 - 1.0)).clamp(0.0, 1.0))
                .collect();
            candidates.push((ucb(&x), x));
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, x) in &candidates {
            let values = self.values_at(x);
            if !taken.contains(&values) {
                return values;
            }
        }
        self.distinct(taken, rng, |rng| {
            (0..d).map(|_| rng.random::<f64>()).collect()
        })
    }
}

/// Every combination of the parameters' values, the first parameter varying slowest.
fn grid_points(params: &[Param]) -> Vec<Vec<Value>> {
    let mut points: Vec<Vec<Value>> = vec![Vec::new()];
    for p in params {
        let values = p.grid().unwrap_or_default();
        points = points
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push(v.clone());
                    next
                })
            })
            .take(super::config::MAX_TRIALS as usize * 10)
            .collect();
    }
    points
}

/// The `i`-th point of the Halton sequence in `d` dimensions.
fn halton(i: u64, d: usize) -> Vec<f64> {
    const PRIMES: [u64; 16] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53];
    (0..d)
        .map(|k| {
            let base = PRIMES[k % PRIMES.len()] + 56 * (k / PRIMES.len()) as u64;
            let (mut f, mut r, mut n) = (1.0, 0.0, i + 1);
            while n > 0 {
                f /= base as f64;
                r += f * (n % base) as f64;
                n /= base;
            }
            r
        })
        .collect()
}

/// A Gaussian process over standardized objectives (mean 0, variance 1: the acquisition compares
/// points with each other, so it needs no way back to the objective's units) with a Matérn-5/2 ARD kernel; length scales
/// and noise chosen by the marginal likelihood.
struct Gp {
    points: Vec<Vec<f64>>,
    lengths: Vec<f64>,
    alpha: DVector<f64>,
    chol: nalgebra::Cholesky<f64, nalgebra::Dyn>,
}

fn matern52(a: &[f64], b: &[f64], lengths: &[f64]) -> f64 {
    let r2: f64 = a
        .iter()
        .zip(b)
        .zip(lengths)
        .map(|((x, y), l)| ((x - y) / l).powi(2))
        .sum();
    let r = (5.0 * r2).sqrt();
    (1.0 + r + r * r / 3.0) * (-r).exp()
}

fn gram(points: &[Vec<f64>], lengths: &[f64], noise: f64) -> DMatrix<f64> {
    let n = points.len();
    DMatrix::from_fn(n, n, |i, j| {
        matern52(&points[i], &points[j], lengths) + if i == j { noise } else { 0.0 }
    })
}

/// The log marginal likelihood of `y` (standardized) and the factors that give it.
fn likelihood(
    points: &[Vec<f64>],
    y: &DVector<f64>,
    lengths: &[f64],
    noise: f64,
) -> Option<(f64, nalgebra::Cholesky<f64, nalgebra::Dyn>, DVector<f64>)> {
    let chol = gram(points, lengths, noise).cholesky()?;
    let alpha = chol.solve(y);
    let log_det: f64 = chol
        .l_dirty()
        .diagonal()
        .iter()
        .map(|v| v.ln())
        .sum::<f64>()
        * 2.0;
    let lml = -0.5 * y.dot(&alpha) - 0.5 * log_det;
    Some((lml, chol, alpha))
}

impl Gp {
    fn fit(done: &[Observation], running: &[Vec<f64>]) -> Option<Gp> {
        let d = done.first()?.point.len();
        let raw: Vec<f64> = done.iter().map(|o| o.value).collect();
        let mean = raw.iter().sum::<f64>() / raw.len() as f64;
        let var = raw.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / raw.len() as f64;
        let scale = if var > 1e-24 { var.sqrt() } else { 1.0 };
        let points: Vec<Vec<f64>> = done.iter().map(|o| o.point.clone()).collect();
        let y = DVector::from_iterator(raw.len(), raw.iter().map(|v| (v - mean) / scale));
        // Isotropic search, then per-dimension refinement (a few coordinate sweeps).
        let mut best: Option<(f64, Vec<f64>, f64)> = None;
        for l in [0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.2, 2.0] {
            for noise in [1e-6, 1e-3, 1e-2, 0.1] {
                let lengths = vec![l; d];
                if let Some((lml, _, _)) = likelihood(&points, &y, &lengths, noise) {
                    if best.as_ref().is_none_or(|b| lml > b.0) {
                        best = Some((lml, lengths, noise));
                    }
                }
            }
        }
        let (mut best_lml, mut lengths, noise) = best?;
        for _ in 0..3 {
            for k in 0..d {
                for factor in [0.5, 2.0] {
                    let mut trial = lengths.clone();
                    trial[k] = (trial[k] * factor).clamp(0.02, 5.0);
                    if let Some((lml, _, _)) = likelihood(&points, &y, &trial, noise) {
                        if lml > best_lml + 1e-9 {
                            best_lml = lml;
                            lengths = trial;
                        }
                    }
                }
            }
        }
        // Trials still running count as if they returned what the model predicts there.
        let (mut all_points, mut all_y) = (points.clone(), y.iter().copied().collect::<Vec<_>>());
        if !running.is_empty() {
            let (_, chol, alpha) = likelihood(&points, &y, &lengths, noise)?;
            let believer = Gp {
                points: points.clone(),
                lengths: lengths.clone(),
                alpha,
                chol,
            };
            for x in running {
                all_y.push(believer.predict(x).0);
                all_points.push(x.clone());
            }
        }
        let y = DVector::from_vec(all_y);
        let (_, chol, alpha) = likelihood(&all_points, &y, &lengths, noise)?;
        Some(Gp {
            points: all_points,
            lengths,
            alpha,
            chol,
        })
    }

    /// Mean and variance at `x`, in standardized units.
    fn predict(&self, x: &[f64]) -> (f64, f64) {
        let k = DVector::from_iterator(
            self.points.len(),
            self.points.iter().map(|p| matern52(p, x, &self.lengths)),
        );
        let mean = k.dot(&self.alpha);
        let v = self.chol.solve(&k);
        let var = (1.0 - k.dot(&v)).max(1e-12);
        (mean, var)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::config::{Kind, Scale};

    fn int(name: &str, min: i64, max: i64) -> Param {
        Param {
            name: name.into(),
            kind: Kind::Integer {
                min,
                max,
                scale: Scale::Linear,
            },
        }
    }

    fn double(name: &str) -> Param {
        Param {
            name: name.into(),
            kind: Kind::Double {
                min: 0.0,
                max: 1.0,
                scale: Scale::Linear,
            },
        }
    }

    #[test]
    fn grid_search_covers_its_grid_exactly_once() {
        let params = vec![
            int("a", 1, 3),
            Param {
                name: "b".into(),
                kind: Kind::Categorical(vec!["x".into(), "y".into()]),
            },
        ];
        let search = Search::new(Algorithm::Grid, &params, 1);
        assert_eq!(search.grid_size(), Some(6));
        let mut taken: Vec<Vec<Value>> = Vec::new();
        while let Some(v) = search.suggest(taken.len(), &[], &[], &taken) {
            taken.push(v);
        }
        assert_eq!(taken.len(), 6);
        let mut texts: Vec<String> = taken
            .iter()
            .map(|v| v.iter().map(Value::text).collect::<Vec<_>>().join(","))
            .collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), 6);
    }

    #[test]
    fn a_seed_gives_the_same_trials() {
        let params = vec![double("x"), int("n", 1, 15)];
        for algorithm in [Algorithm::Random, Algorithm::Bayesian] {
            let run = |seed| {
                let search = Search::new(algorithm, &params, seed);
                let mut taken = Vec::new();
                let mut done = Vec::new();
                for n in 0..8 {
                    let v = search.suggest(n, &done, &[], &taken).unwrap();
                    let point = search.point_of(&v);
                    done.push(Observation {
                        value: -(point[0] - 0.3).powi(2),
                        point,
                    });
                    taken.push(v);
                }
                taken
            };
            assert_eq!(run(7), run(7), "{algorithm:?}");
            assert_ne!(run(7), run(8), "{algorithm:?}");
        }
    }

    /// On a smooth objective the model-based search gets closer to the optimum than random
    /// search with the same budget, over several seeds (a property, not a timing).
    #[test]
    fn the_gaussian_process_beats_random_search_on_a_smooth_objective() {
        let params = vec![double("x"), double("y")];
        let f = |p: &[f64]| -((p[0] - 0.71).powi(2) + (p[1] - 0.23).powi(2));
        let best_after = |algorithm, seed| {
            let search = Search::new(algorithm, &params, seed);
            let (mut taken, mut done) = (Vec::new(), Vec::<Observation>::new());
            for n in 0..20 {
                let v = search.suggest(n, &done, &[], &taken).unwrap();
                let point = search.point_of(&v);
                done.push(Observation {
                    value: f(&point),
                    point,
                });
                taken.push(v);
            }
            done.iter().map(|o| o.value).fold(f64::MIN, f64::max)
        };
        let (mut gp_wins, mut gp_total, mut random_total) = (0, 0.0, 0.0);
        for seed in 0..5 {
            let (g, r) = (
                best_after(Algorithm::Bayesian, seed),
                best_after(Algorithm::Random, seed),
            );
            gp_wins += usize::from(g > r);
            gp_total += g;
            random_total += r;
        }
        assert!(
            gp_wins >= 4 && gp_total > random_total,
            "{gp_wins} {gp_total} {random_total}"
        );
    }

    #[test]
    fn running_trials_push_parallel_suggestions_apart() {
        let params = vec![double("x")];
        let search = Search::new(Algorithm::Bayesian, &params, 3);
        let done: Vec<Observation> = [0.1, 0.4, 0.6, 0.9]
            .iter()
            .map(|&x: &f64| Observation {
                point: vec![x],
                value: -(x - 0.5f64).powi(2),
            })
            .collect();
        let taken: Vec<Vec<Value>> = done
            .iter()
            .map(|o| vec![Value::Double(o.point[0])])
            .collect();
        let first = search.suggest(4, &done, &[], &taken).unwrap();
        let first_point = search.point_of(&first);
        let second = search
            .suggest(5, &done, std::slice::from_ref(&first_point), &taken)
            .unwrap();
        let second_point = search.point_of(&second);
        assert!(
            (first_point[0] - second_point[0]).abs() > 0.02,
            "{first_point:?} {second_point:?}"
        );
    }
}
