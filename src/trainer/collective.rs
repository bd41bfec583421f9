//! How the processes of one training job agree: alone, or (the distributed trainer, `mpirun -np N
//! mlengine train`) synchronous data parallelism. Every process starts from rank 0's
//! parameters, takes its share of every batch, and the shares' gradients are combined into the
//! batch's before each step, so every process applies the same update and holds the same
//! parameters and optimizer state.

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::Var;

/// What one step's exchange gives back.
pub struct Combined {
    /// The batch's mean loss (the shares' losses weighted by their sizes).
    pub loss: f32,
    /// Whether any process was asked to stop (every process then stops after this step).
    pub stop: bool,
}

pub trait Collective {
    /// This process's rank, 0 for the one that evaluates and writes checkpoints, metrics, event
    /// files and exports.
    fn rank(&self) -> usize {
        0
    }

    /// Processes in the job.
    fn size(&self) -> usize {
        1
    }

    /// Every process gets rank 0's `values` in place of its own.
    fn broadcast_u64(&self, _values: &mut [u64]) -> Result<()> {
        Ok(())
    }

    /// Before the first step: every process takes rank 0's parameters.
    fn broadcast_parameters(&self, _vars: &[(String, &Var)]) -> Result<()> {
        Ok(())
    }

    /// Turns this process's gradients of its share's mean loss (`share` rows of a `batch`-row
    /// batch) into the batch's, in place, and says the batch's loss and whether any process
    /// was asked to stop.
    fn combine_gradients(
        &self,
        _vars: &[(String, &Var)],
        _grads: &mut GradStore,
        loss: f32,
        stop: bool,
        _share: usize,
        _batch: usize,
    ) -> Result<Combined> {
        Ok(Combined { loss, stop })
    }
}

/// How a [`Held`] value is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// A count or a step.
    Number,
    /// A flag that may be absent (`u64::MAX`).
    Flag,
    /// A digest of something too large to exchange (data, vocabularies, settings).
    Digest,
}

/// Something every process of a job must hold the same of before the first exchange: one
/// process that reads other data or resumes from another step takes a different number of
/// steps, and the others then wait for its exchanges forever.
#[derive(Debug, Clone)]
pub struct Held {
    pub what: &'static str,
    pub value: u64,
    pub shown: Shown,
}

impl Held {
    fn show(&self, value: u64) -> String {
        match self.shown {
            Shown::Number => value.to_string(),
            Shown::Flag if value == u64::MAX => "not given".to_string(),
            Shown::Flag => value.to_string(),
            Shown::Digest => format!("digest {value:016x}"),
        }
    }
}

/// A stable 64-bit digest (FNV-1a): the same bytes give the same value on every process and
/// every machine, which std's hasher does not promise.
#[derive(Debug, Clone, Copy)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    pub fn bytes(mut self, bytes: &[u8]) -> Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    pub fn value(self) -> u64 {
        self.0
    }
}

/// Compares what this process holds with rank 0's: the error names everything that differs,
/// so that the process stops before any exchange (which would hang) rather than after.
pub fn agree(collective: &dyn Collective, held: &[Held]) -> Result<()> {
    let mut theirs: Vec<u64> = held.iter().map(|h| h.value).collect();
    collective.broadcast_u64(&mut theirs)?;
    let differ: Vec<String> = held
        .iter()
        .zip(&theirs)
        .filter(|(h, t)| h.value != **t)
        .map(|(h, t)| {
            format!(
                "{} ({}) differs from rank 0's ({})",
                h.what,
                h.show(h.value),
                h.show(*t)
            )
        })
        .collect();
    if !differ.is_empty() {
        anyhow::bail!(
            "{}: every rank must read the same --train-files with the same flags and resume \
             from the same checkpoint (one --job-dir, shared by every rank)",
            differ.join("; ")
        );
    }
    Ok(())
}

/// One process training alone.
pub struct Alone;

impl Collective for Alone {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process whose rank 0 holds other values (what MPI's broadcast would give it).
    struct Rank1(Vec<u64>);

    impl Collective for Rank1 {
        fn rank(&self) -> usize {
            1
        }
        fn size(&self) -> usize {
            2
        }
        fn broadcast_u64(&self, values: &mut [u64]) -> Result<()> {
            values.copy_from_slice(&self.0);
            Ok(())
        }
    }

    fn held() -> Vec<Held> {
        vec![
            Held {
                what: "the number of training rows",
                value: 300,
                shown: Shown::Number,
            },
            Held {
                what: "--train-steps",
                value: u64::MAX,
                shown: Shown::Flag,
            },
            Held {
                what: "the training data",
                value: Digest::default().bytes(b"part").value(),
                shown: Shown::Digest,
            },
        ]
    }

    #[test]
    fn processes_that_hold_the_same_agree() {
        let values: Vec<u64> = held().iter().map(|h| h.value).collect();
        agree(&Alone, &held()).unwrap();
        agree(&Rank1(values), &held()).unwrap();
    }

    #[test]
    fn every_difference_is_named_with_both_values() {
        let theirs = vec![400, 20, Digest::default().bytes(b"full").value()];
        let err = agree(&Rank1(theirs), &held()).unwrap_err().to_string();
        assert!(
            err.contains("the number of training rows (300) differs from rank 0's (400)"),
            "{err}"
        );
        assert!(
            err.contains("--train-steps (not given) differs from rank 0's (20)"),
            "{err}"
        );
        assert!(err.contains("the training data (digest "), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn the_digest_is_fnv_1a() {
        // FNV-1a's published test vectors.
        assert_eq!(Digest::default().value(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Digest::default().bytes(b"a").value(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            Digest::default().bytes(b"foobar").value(),
            0x8594_4171_f739_67e8
        );
    }
}
