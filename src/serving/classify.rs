//! TF Serving's Classify and Regress over the one inference path: examples into the model's
//! inputs (in the core, for both protocols), then its class scores, or its regression value.

use crate::codec::example::{self, Features};
use crate::repository::LoadedVersion;
use crate::status::{Error, Result};
use crate::tensor::{element, DType, Signature, TensorData};

use super::service::Call;

/// Outputs that hold a classifier's class scores, in the order they are looked for.
const SCORE_OUTPUTS: [&str; 2] = ["probabilities", "scores"];
/// Outputs that hold one regression value per example (a canned classifier's regression
/// signature answers `logistic`).
const REGRESSION_OUTPUTS: [&str; 4] = ["logistic", "predictions", "outputs", "value"];

fn output(signature: &Signature, names: &[&str]) -> Option<usize> {
    names
        .iter()
        .find_map(|n| signature.output(n).map(|(i, _)| i))
}

/// One example's classes, as (label, score) in the model's order.
pub type Classes = Vec<(String, f32)>;

fn floats(data: TensorData) -> Result<Vec<f32>> {
    match element::convert(data, DType::F32) {
        Ok(TensorData::F32(v)) => Ok(v),
        Ok(_) | Err(_) => Err(Error::internal("the model's scores are not numbers")),
    }
}

impl Call<'_> {
    /// Classifies examples: every class with its score, per example.
    pub async fn classify(
        &self,
        version: &LoadedVersion,
        examples: &[Features],
        context: Option<&Features>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<Classes>> {
        let signature = version.signature();
        let index = output(signature, &SCORE_OUTPUTS).ok_or_else(|| {
            Error::failed_precondition(format!(
                "model '{}' has no class scores to classify with (an output named {})",
                version.model,
                SCORE_OUTPUTS.join(" or ")
            ))
        })?;
        let inputs = example::to_tensors(signature, examples, context)?;
        let outputs = self.run(version, inputs, vec![index], deadline).await?;
        let Some((_, scores)) = outputs.into_iter().next() else {
            return Err(Error::internal("the model gave no scores"));
        };
        let k = scores.row_len().max(1);
        let scores = floats(scores.data)?;
        let labels: Vec<String> = if signature.class_labels.len() == k {
            signature.class_labels.clone()
        } else {
            (0..k).map(|c| c.to_string()).collect()
        };
        Ok(scores
            .chunks(k)
            .map(|row| labels.iter().cloned().zip(row.iter().copied()).collect())
            .collect())
    }

    /// Regresses examples: one value per example.
    pub async fn regress(
        &self,
        version: &LoadedVersion,
        examples: &[Features],
        context: Option<&Features>,
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<f32>> {
        let signature = version.signature();
        let index = output(signature, &REGRESSION_OUTPUTS).ok_or_else(|| {
            Error::failed_precondition(format!(
                "model '{}' has no regression output (one named {})",
                version.model,
                REGRESSION_OUTPUTS.join(", ")
            ))
        })?;
        let inputs = example::to_tensors(signature, examples, context)?;
        let outputs = self.run(version, inputs, vec![index], deadline).await?;
        let Some((name, values)) = outputs.into_iter().next() else {
            return Err(Error::internal("the model gave no values"));
        };
        if values.row_len() != 1 {
            return Err(Error::failed_precondition(format!(
                "output '{name}' holds {} values per example; regression takes one",
                values.row_len()
            )));
        }
        floats(values.data)
    }
}
