//! Optimizers over candle `Var`s with state that checkpoints can save and restore (candle-nn's
//! optimizers keep their moments private, so a resumed run could not continue them).

use std::collections::HashMap;

use anyhow::{Context, Result};
use candle_core::{backprop::GradStore, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Adam (Kingma and Ba), bias-corrected.
    Adam,
    /// Adagrad with initial accumulator 0.1, TensorFlow's default for the DNN part.
    Adagrad,
    /// Plain stochastic gradient descent.
    Sgd,
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OptimizerKind::Adam => "adam",
            OptimizerKind::Adagrad => "adagrad",
            OptimizerKind::Sgd => "sgd",
        })
    }
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "adam" => Ok(OptimizerKind::Adam),
            "adagrad" => Ok(OptimizerKind::Adagrad),
            "sgd" => Ok(OptimizerKind::Sgd),
            _ => Err(format!("unknown optimizer {s:?}: adagrad, adam or sgd")),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// L2 penalty added to every weight's gradient (decoupled from the loss value).
    pub l2: f64,
}

pub struct Optimizer {
    config: OptimizerConfig,
    step: u64,
    /// Per variable: Adam's first and second moments, or Adagrad's accumulator.
    slots: Vec<Vec<Tensor>>,
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, vars: &[(String, &Var)]) -> Result<Self> {
        let slots = vars
            .iter()
            .map(|(_, v)| -> Result<Vec<Tensor>> {
                let t = v.as_tensor();
                Ok(match config.kind {
                    OptimizerKind::Adam => vec![t.zeros_like()?, t.zeros_like()?],
                    OptimizerKind::Adagrad => vec![t.ones_like()?.affine(0.1, 0.0)?],
                    OptimizerKind::Sgd => vec![],
                })
            })
            .collect::<Result<_>>()?;
        Ok(Optimizer {
            config,
            step: 0,
            slots,
        })
    }

    /// Applies one update from the gradients of a backward pass.
    pub fn step(&mut self, vars: &[(String, &Var)], grads: &GradStore) -> Result<()> {
        self.step += 1;
        let c = self.config;
        for ((_, var), slots) in vars.iter().zip(self.slots.iter_mut()) {
            let Some(grad) = grads.get(var.as_tensor()) else {
                continue;
            };
            // Optimizer arithmetic must not be recorded for backprop: a slot built from last
            // step's slot would otherwise keep every earlier step's tensors alive.
            let theta = var.as_tensor().detach();
            let grad = grad.detach();
            let grad = if c.l2 > 0.0 {
                (grad + theta.affine(c.l2, 0.0)?)?
            } else {
                grad
            };
            let update = match c.kind {
                OptimizerKind::Adam => {
                    let m = ((&slots[0] * c.beta1)? + (&grad * (1.0 - c.beta1))?)?;
                    let v = ((&slots[1] * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
                    let t = self.step as i32;
                    let lr =
                        c.learning_rate * (1.0 - c.beta2.powi(t)).sqrt() / (1.0 - c.beta1.powi(t));
                    let update = (&m * lr)?.div(&(v.sqrt()? + c.epsilon)?)?;
                    slots[0] = m.detach();
                    slots[1] = v.detach();
                    update
                }
                OptimizerKind::Adagrad => {
                    let acc = (&slots[0] + grad.sqr()?)?;
                    let update = (&grad * c.learning_rate)?.div(&acc.sqrt()?)?;
                    slots[0] = acc.detach();
                    update
                }
                OptimizerKind::Sgd => (&grad * c.learning_rate)?,
            };
            var.set(&(theta - update)?.detach())?;
        }
        Ok(())
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// State tensors keyed for a checkpoint (`optimizer/<var>/<slot>`).
    pub fn state(&self, vars: &[(String, &Var)]) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for ((name, _), slots) in vars.iter().zip(&self.slots) {
            for (i, s) in slots.iter().enumerate() {
                out.insert(format!("optimizer/{name}/{i}"), s.clone());
            }
        }
        out
    }

    /// Restores state saved by [`Optimizer::state`] after `step` updates.
    pub fn restore(
        &mut self,
        vars: &[(String, &Var)],
        tensors: &HashMap<String, Tensor>,
        step: u64,
    ) -> Result<()> {
        for ((name, _), slots) in vars.iter().zip(self.slots.iter_mut()) {
            for (i, s) in slots.iter_mut().enumerate() {
                let key = format!("optimizer/{name}/{i}");
                let t = tensors
                    .get(&key)
                    .with_context(|| format!("checkpoint lacks optimizer state {key} (was it written with another --optimizer?)"))?;
                *s = t.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}
