//! Training as a library: the census sample's Wide & Deep classifier, trained with candle's
//! autodiff, evaluated, checkpointed and exported as a self-contained ONNX model.
//!
//! A run's path: [`run`] opens the job-dir (local or a bucket) and restores the latest
//! checkpoint → `train_loop` steps, checkpoints and evaluates, telling its observers → the final
//! evaluation → `export` publishes `export/Servo/<ts>`. The caller owns threads, the runtime its
//! storage uses, and what is printed.

pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod export;
pub mod job_dir;
pub mod metrics;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod network;
pub mod observe;
pub mod optimizer;
mod train_loop;

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use checkpoint::CheckpointState;
pub use collective::{Alone, Collective};
pub use config::TrainConfig;
use job_dir::JobDir;
use metrics::EvalMetrics;
use network::Network;
pub use observe::{Observer, EVAL_EVENTS};
use optimizer::Optimizer;

use crate::census::features::Encoded;
use crate::census::{csv, FeatureSpec};
use crate::storage::Storage;

/// What a training run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    pub global_step: u64,
    /// The final evaluation; `None` on the ranks of a distributed job other than 0.
    pub metrics: Option<EvalMetrics>,
    /// The exported version's URI.
    pub export: String,
    /// False when the job-dir already held an export of this step, which is kept.
    pub exported_now: bool,
}

/// A run stopped by its caller (Ctrl-C, a cancelled job); its last step is checkpointed.
#[derive(Debug)]
pub struct Interrupted {
    pub global_step: u64,
    pub job_dir: String,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.global_step == 0 {
            return write!(
                f,
                "training interrupted before its first step; nothing is checkpointed in {}",
                self.job_dir
            );
        }
        write!(
            f,
            "training interrupted; step {} is checkpointed in {}: run the same command again to resume",
            self.global_step, self.job_dir
        )
    }
}

impl std::error::Error for Interrupted {}

/// Trains as `config` asks, resuming from the job-dir's latest checkpoint, then evaluates and
/// exports. Thread use is the caller's (candle reads `RAYON_NUM_THREADS`).
pub fn run(
    config: &TrainConfig,
    storage: &Storage,
    mut observers: Vec<Box<dyn Observer>>,
    collective: &dyn Collective,
    cancel: &CancellationToken,
) -> Result<TrainOutcome> {
    config.validate()?;
    let train_rows = csv::read_files(storage, &config.train_files)?;
    let eval_rows = csv::read_files(storage, &config.eval_files)?;
    let mut job_dir = JobDir::open(
        &config.job_dir,
        storage,
        &[checkpoint::INDEX, observe::METRICS_HISTORY],
        checkpoint::latest_name,
    )?;
    // Rank 0 writes the job-dir, and owns it for the run.
    if collective.rank() == 0 {
        job_dir.lock()?;
    }
    let job_dir = Arc::new(job_dir);
    observers.insert(
        0,
        Box::new(observe::MetricFiles {
            job_dir: Arc::clone(&job_dir),
        }),
    );
    // Rank 0 alone writes what a run leaves in its job-dir.
    if collective.rank() == 0 {
        observers.insert(
            1,
            Box::new(observe::EventFiles::new(
                Arc::clone(&job_dir),
                config.log_step_count_steps,
                config.learning_rate,
            )),
        );
    }

    let hidden_units = config.hidden_units();
    let resumed = checkpoint::load_latest(&job_dir.path(""))?;
    let (mut state, network, mut optimizer) = match resumed {
        Some((state, tensors)) => {
            if state.embedding_size != config.embedding_size || state.hidden_units != hidden_units {
                anyhow::bail!(
                    "--job-dir {} holds a checkpoint with embedding size {} and layers {:?}, \
                     these flags ask for {} and {:?}: use another job-dir",
                    job_dir.uri(),
                    state.embedding_size,
                    state.hidden_units,
                    config.embedding_size,
                    hidden_units
                );
            }
            // Another optimizer's moments would be read as this one's (Adam's first moment as
            // Adagrad's accumulator): refused, as TF refuses a checkpoint without the slots.
            if state.optimizer != config.optimizer {
                anyhow::bail!(
                    "--job-dir {} holds a checkpoint trained with --optimizer {}, this run asks \
                     for {}: give --optimizer {} to resume it, or use another job-dir",
                    job_dir.uri(),
                    state.optimizer,
                    config.optimizer,
                    state.optimizer
                );
            }
            let network =
                Network::init(&state.spec, state.embedding_size, &hidden_units, state.seed)?;
            network.load(&tensors)?;
            let mut optimizer = Optimizer::new(config.optimizer_config(), &network.named_vars())?;
            optimizer.restore(&network.named_vars(), &tensors, state.global_step)?;
            tracing::info!(
                global_step = state.global_step,
                "resuming from the latest checkpoint in {}",
                job_dir.uri()
            );
            (state, network, optimizer)
        }
        None => {
            let spec = FeatureSpec::fit(&train_rows);
            let network = Network::init(&spec, config.embedding_size, &hidden_units, config.seed)?;
            let optimizer = Optimizer::new(config.optimizer_config(), &network.named_vars())?;
            let state = CheckpointState {
                global_step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                seed: config.seed,
                train_batch_size: config.train_batch_size,
                embedding_size: config.embedding_size,
                hidden_units: hidden_units.clone(),
                optimizer: config.optimizer,
                spec,
            };
            (state, network, optimizer)
        }
    };
    let train = state.spec.encode(&train_rows);
    let eval = state.spec.encode(&eval_rows);
    // Rank 0 alone says so: the others wait for it in the agreement below, and its failure
    // ends them.
    if collective.rank() == 0 {
        enough_rows_per_rank(config, &state, train.n, collective.size())?;
    }
    // Before the first exchange, whose count and sizes depend on all of this.
    collective::agree(
        collective,
        &held_by_every_rank(config, &state, &hidden_units, &train),
    )?;
    // Every process starts from rank 0's parameters (identical by seed already; this makes sure).
    collective.broadcast_parameters(&network.named_vars())?;
    // An export never carries an older step than one already exported from this job-dir (a
    // server following `latest` would quietly roll back): refused before any training.
    let last = train_loop::last_step(config, &state, train.n).unwrap_or(state.global_step);
    let exported = job_dir.latest_export()?;
    if let Some((uri, step)) = &exported {
        if *step > last {
            anyhow::bail!(
                "--job-dir {} already holds an export of step {step} ({uri}), newer than this \
                 run's last step {last}: train past step {step}, or use another job-dir",
                job_dir.uri(),
            );
        }
    }
    tracing::info!(
        train_rows = train.n,
        eval_rows = eval.n,
        layers = ?hidden_units,
        "training the census Wide & Deep model"
    );

    let mut run = train_loop::Loop {
        config,
        job_dir: &job_dir,
        state: &mut state,
        network: &network,
        optimizer: &mut optimizer,
        train: &train,
        eval: &eval,
        observers: &mut observers,
        collective,
        cancel,
    };
    run.train()?;

    // Rank 0 alone evaluates, reports, writes and exports.
    if collective.rank() != 0 {
        return Ok(TrainOutcome {
            global_step: state.global_step,
            metrics: None,
            export: String::new(),
            exported_now: false,
        });
    }
    let metrics = evaluate(
        &network,
        &eval,
        config.eval_batch_size,
        config.eval_steps,
        state.global_step,
    )?;
    // A finished job run again evaluates the step it already evaluated: shown, not recorded a
    // second time in the job-dir's history and event files.
    let again = observe::last_evaluated_step(&job_dir) == Some(state.global_step);
    for o in observers.iter_mut() {
        if again {
            o.evaluated_again(&metrics)?;
        } else {
            o.evaluated(&metrics)?;
        }
    }
    // One step is exported once.
    if let Some((uri, step)) = exported {
        if step == state.global_step {
            tracing::info!("step {step} is already exported to {uri}; not exporting it again");
            return Ok(TrainOutcome {
                global_step: state.global_step,
                metrics: Some(metrics),
                export: uri,
                exported_now: false,
            });
        }
    }
    let weights = network.to_weights()?;
    // The export records what trained it: a resumed run keeps its checkpoint's batch size and
    // seed over the flags.
    let used = TrainConfig {
        train_batch_size: state.train_batch_size,
        seed: state.seed,
        optimizer: state.optimizer,
        ..config.clone()
    };
    let export =
        export::export(&job_dir, &state.spec, &weights, &used, &metrics).with_context(|| {
            format!(
                "cannot export the model to {}",
                job_dir.uri_of(job_dir::EXPORT_BASE)
            )
        })?;
    Ok(TrainOutcome {
        global_step: state.global_step,
        metrics: Some(metrics),
        export,
        exported_now: true,
    })
}

/// Every rank takes its share of every batch: a rank with none would average no rows.
fn enough_rows_per_rank(
    config: &TrainConfig,
    state: &CheckpointState,
    rows: usize,
    ranks: usize,
) -> Result<()> {
    if ranks <= 1 {
        return Ok(());
    }
    let batch = state.train_batch_size;
    if batch < ranks {
        let whose = if batch == config.train_batch_size {
            ""
        } else {
            "the checkpoint's "
        };
        anyhow::bail!(
            "{whose}--train-batch-size {batch} is smaller than the {ranks} ranks; each rank \
             needs at least one row"
        );
    }
    if rows < ranks {
        anyhow::bail!(
            "the {rows} training rows are fewer than the {ranks} ranks; each rank needs at \
             least one row"
        );
    }
    Ok(())
}

/// What decides the number of steps, the batches and the shapes exchanged: every rank must
/// hold the same (see [`collective::agree`]).
fn held_by_every_rank(
    config: &TrainConfig,
    state: &CheckpointState,
    hidden_units: &[usize],
    train: &Encoded,
) -> Vec<collective::Held> {
    use collective::{Digest, Held, Shown};
    let mut data = Digest::default();
    for id in train.wide_ids.iter().chain(&train.embedding_ids) {
        data = data.bytes(&id.to_le_bytes());
    }
    for x in train.dense.iter().chain(&train.labels) {
        data = data.bytes(&x.to_bits().to_le_bytes());
    }
    // The spec serializes the same everywhere (vectors in order, no maps).
    let vocabularies = Digest::default()
        .bytes(&serde_json::to_vec(&state.spec).unwrap_or_default())
        .value();
    let model = Digest::default()
        .bytes(format!("{} {:?}", state.embedding_size, hidden_units).as_bytes())
        .value();
    let optimizer = Digest::default()
        .bytes(format!("{:?}", config.optimizer_config()).as_bytes())
        .value();
    let number = |what, value: u64| Held {
        what,
        value,
        shown: Shown::Number,
    };
    let flag = |what, value: Option<u64>| Held {
        what,
        value: value.unwrap_or(u64::MAX),
        shown: Shown::Flag,
    };
    let digest = |what, value| Held {
        what,
        value,
        shown: Shown::Digest,
    };
    vec![
        number("the number of training rows", train.n as u64),
        digest("the training data", data.value()),
        digest("the fitted vocabularies", vocabularies),
        number("the global step", state.global_step),
        number("the epoch", state.epoch),
        number("the batch in the epoch", state.batch_in_epoch),
        number("the train batch size", state.train_batch_size as u64),
        number("the seed", state.seed),
        digest("the optimizer's settings", optimizer),
        digest("the model's layers", model),
        flag("--train-steps", config.train_steps),
        flag("--num-epochs", config.num_epochs),
    ]
}

/// Metrics on the eval set (at most `max_batches` batches).
pub fn evaluate(
    network: &Network,
    eval: &Encoded,
    batch_size: usize,
    max_batches: Option<u64>,
    global_step: u64,
) -> Result<EvalMetrics> {
    let limit = max_batches.map_or(eval.n, |b| {
        usize::try_from(b)
            .ok()
            .and_then(|b| b.checked_mul(batch_size))
            .map_or(eval.n, |rows| rows.min(eval.n))
    });
    let logits = network.predict_first(eval, limit, batch_size)?;
    Ok(metrics::evaluate(
        &logits,
        &eval.labels[..limit],
        global_step,
    ))
}

/// Metrics on one line, as an Estimator logs them.
pub fn metrics_line(m: &EvalMetrics) -> String {
    format!(
        "Saving dict for global step {}: accuracy = {:.4}, accuracy_baseline = {:.4}, auc = {:.4}, \
         auc_precision_recall = {:.4}, average_loss = {:.4}, label/mean = {:.4}, loss = {:.4}, \
         precision = {:.4}, prediction/mean = {:.4}, recall = {:.4}",
        m.global_step,
        m.accuracy,
        m.accuracy_baseline,
        m.auc,
        m.auc_precision_recall,
        m.average_loss,
        m.label_mean,
        m.loss,
        m.precision,
        m.prediction_mean,
        m.recall
    )
}

/// The README's reference training flags (besides files and job-dir): the command that trained
/// the bundled `models/census` model and that the accuracy test runs.
pub const REFERENCE_ARGS: [&str; 4] = ["--num-epochs", "10", "--l2", "0.0001"];
