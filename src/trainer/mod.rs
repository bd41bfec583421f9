//! `mlengine train`: the census sample's Wide & Deep classifier, trained with candle's autodiff,
//! evaluated, checkpointed and exported as a self-contained ONNX model.

pub mod args;
pub mod checkpoint;
pub mod export;
pub mod metrics;
pub mod network;
pub mod optimizer;
mod progress;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use args::TrainArgs;
use checkpoint::CheckpointState;
use metrics::EvalMetrics;
use network::{sigmoid_cross_entropy, Batch, Network};
use optimizer::Optimizer;

use crate::census::features::Encoded;
use crate::census::{csv, FeatureSpec};
use crate::storage::write_atomic;

/// What a training run produced.
#[derive(Debug)]
pub struct TrainOutcome {
    pub global_step: u64,
    pub metrics: EvalMetrics,
    pub export_dir: PathBuf,
}

/// The order of training rows in an epoch: a permutation fixed by the seed and the epoch, so a
/// resumed run continues exactly where the interrupted one was.
fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    order
}

pub fn run(args: &TrainArgs) -> Result<TrainOutcome> {
    args.validate()?;
    // candle sizes its thread use from RAYON_NUM_THREADS; set before the first tensor operation.
    // SAFETY: no other thread exists yet that could read the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", args.num_threads.to_string()) };
    let train_rows = csv::read_files(&args.train_files)?;
    let eval_rows = csv::read_files(&args.eval_files)?;
    std::fs::create_dir_all(&args.job_dir)
        .with_context(|| format!("cannot create --job-dir {}", args.job_dir.display()))?;
    write_atomic(
        &args.job_dir.join(".mlengine-job-dir"),
        b"mlengine train job-dir\n",
    )
    .with_context(|| format!("--job-dir {} is not writable", args.job_dir.display()))?;

    let hidden_units = args.hidden_units();
    let resumed = checkpoint::load_latest(&args.job_dir)?;
    let (mut state, network, mut optimizer) = match resumed {
        Some((state, tensors)) => {
            if state.embedding_size != args.embedding_size || state.hidden_units != hidden_units {
                anyhow::bail!(
                    "--job-dir {} holds a checkpoint with embedding size {} and layers {:?}, \
                     these flags ask for {} and {:?}: use another job-dir",
                    args.job_dir.display(),
                    state.embedding_size,
                    state.hidden_units,
                    args.embedding_size,
                    hidden_units
                );
            }
            let network =
                Network::init(&state.spec, state.embedding_size, &hidden_units, state.seed)?;
            network.load(&tensors)?;
            let mut optimizer = Optimizer::new(args.optimizer_config(), &network.named_vars())?;
            optimizer.restore(&network.named_vars(), &tensors, state.global_step)?;
            tracing::info!(
                global_step = state.global_step,
                "resuming from the latest checkpoint in {}",
                args.job_dir.display()
            );
            (state, network, optimizer)
        }
        None => {
            let spec = FeatureSpec::fit(&train_rows);
            let network = Network::init(&spec, args.embedding_size, &hidden_units, args.seed)?;
            let optimizer = Optimizer::new(args.optimizer_config(), &network.named_vars())?;
            let state = CheckpointState {
                global_step: 0,
                epoch: 0,
                batch_in_epoch: 0,
                seed: args.seed,
                train_batch_size: args.train_batch_size,
                embedding_size: args.embedding_size,
                hidden_units: hidden_units.clone(),
                optimizer: args.optimizer,
                spec,
            };
            (state, network, optimizer)
        }
    };
    let train = state.spec.encode(&train_rows);
    let eval = state.spec.encode(&eval_rows);
    tracing::info!(
        train_rows = train.n,
        eval_rows = eval.n,
        layers = ?hidden_units,
        "training the census Wide & Deep model"
    );

    train_loop(args, &mut state, &network, &mut optimizer, &train, &eval)?;

    let metrics = evaluate(
        &network,
        &eval,
        args.eval_batch_size,
        None,
        state.global_step,
    )?;
    record_metrics(args, &metrics)?;
    let weights = network.to_weights()?;
    let export_dir = export::export(&args.job_dir, &state.spec, &weights, args, &metrics)?;
    Ok(TrainOutcome {
        global_step: state.global_step,
        metrics,
        export_dir,
    })
}

fn done(args: &TrainArgs, state: &CheckpointState) -> bool {
    args.train_steps.is_some_and(|s| state.global_step >= s)
        || args.num_epochs.is_some_and(|e| state.epoch >= e)
}

/// Number of steps this run will take, when it is known in advance.
fn planned_steps(args: &TrainArgs, state: &CheckpointState, rows: usize) -> Option<u64> {
    let per_epoch = (rows / state.train_batch_size).max(1) as u64;
    let by_steps = args
        .train_steps
        .map(|s| s.saturating_sub(state.global_step));
    let by_epochs = args
        .num_epochs
        .map(|e| (e.saturating_sub(state.epoch) * per_epoch).saturating_sub(state.batch_in_epoch));
    match (by_steps, by_epochs) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn train_loop(
    args: &TrainArgs,
    state: &mut CheckpointState,
    network: &Network,
    optimizer: &mut Optimizer,
    train: &Encoded,
    eval: &Encoded,
) -> Result<()> {
    if done(args, state) {
        tracing::info!(
            global_step = state.global_step,
            "the checkpoint already reached the requested steps or epochs; evaluating and exporting"
        );
        return Ok(());
    }
    let batch_size = state.train_batch_size;
    if batch_size != args.train_batch_size {
        tracing::warn!(
            checkpoint = batch_size,
            flag = args.train_batch_size,
            "keeping the checkpoint's batch size so the resumed run sees the same batches"
        );
    }
    let vars = network.named_vars();
    let start = Instant::now();
    let mut last_eval_step = state.global_step;
    let mut progress = progress::Progress::new(
        planned_steps(args, state, train.n),
        args.log_step_count_steps,
    );
    let mut order = epoch_order(train.n, state.seed, state.epoch);
    while !done(args, state) {
        let first = state.batch_in_epoch as usize * batch_size;
        // A partial last batch is dropped (tf.data's drop_remainder): one step on a handful of
        // rows moves every weight towards those rows, which measurably hurts a model evaluated
        // right after it. Rows skipped here are seen in other epochs, whose orders differ.
        if first >= train.n || (first > 0 && first + batch_size > train.n) {
            state.epoch += 1;
            state.batch_in_epoch = 0;
            order = epoch_order(train.n, state.seed, state.epoch);
            continue;
        }
        let rows = &order[first..(first + batch_size).min(train.n)];
        let batch = Batch::gather(train, rows)?;
        let logits = network.forward(&batch)?;
        let loss = sigmoid_cross_entropy(&logits, &batch.labels)?;
        let grads = loss.backward()?;
        optimizer.step(&vars, &grads)?;
        state.global_step += 1;
        state.batch_in_epoch += 1;
        progress.step(state.global_step, loss.to_scalar::<f32>()?);

        let finished = done(args, state);
        if state
            .global_step
            .is_multiple_of(args.save_checkpoints_steps)
            || finished
        {
            checkpoint::save(
                &args.job_dir,
                state,
                network,
                optimizer,
                args.keep_checkpoint_max,
            )?;
            let due = state.global_step - last_eval_step >= args.min_eval_frequency
                && start.elapsed().as_secs() >= args.eval_delay_secs;
            if due && !finished {
                let metrics = evaluate(
                    network,
                    eval,
                    args.eval_batch_size,
                    args.eval_steps,
                    state.global_step,
                )?;
                progress.suspend(|| print_metrics(&metrics));
                record_metrics(args, &metrics)?;
                last_eval_step = state.global_step;
            }
        }
    }
    progress.finish(state.global_step);
    Ok(())
}

/// Metrics on the eval set (at most `max_batches` batches).
pub fn evaluate(
    network: &Network,
    eval: &Encoded,
    batch_size: usize,
    max_batches: Option<u64>,
    global_step: u64,
) -> Result<EvalMetrics> {
    let limit = max_batches.map_or(eval.n, |b| (b as usize * batch_size).min(eval.n));
    let logits = network.predict_first(eval, limit, batch_size)?;
    Ok(metrics::evaluate(
        &logits,
        &eval.labels[..limit],
        global_step,
    ))
}

/// Prints metrics on one line, as an Estimator logs them.
pub fn print_metrics(m: &EvalMetrics) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stdout(),
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
    );
}

/// Latest metrics in `<job-dir>/eval_metrics.json`, every evaluation in `eval_history.jsonl`.
fn record_metrics(args: &TrainArgs, metrics: &EvalMetrics) -> Result<()> {
    write_atomic(
        &args.job_dir.join("eval_metrics.json"),
        &serde_json::to_vec_pretty(metrics)?,
    )?;
    use std::io::Write;
    let path = args.job_dir.join("eval_history.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{}", serde_json::to_string(metrics)?)?;
    Ok(())
}

/// The README's reference training flags (besides files and job-dir): the command that trained
/// the bundled `models/census` model and that the accuracy test runs.
pub const REFERENCE_ARGS: [&str; 4] = ["--num-epochs", "10", "--l2", "0.0001"];
