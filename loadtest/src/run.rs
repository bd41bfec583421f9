//! The load loops. Closed loop: each of `connections` clients sends its next request as soon as
//! the previous one is answered, on its own connection. Open loop: a scheduler thread releases
//! requests at constant intervals into a bounded queue served by a pool of connections; latency
//! counts from each request's intended send time, so a slow server cannot hide its queueing
//! (no coordinated omission). Arrivals that find the queue full are dropped and counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::client::{connect, Conn, Outcome, Target};
use crate::result::Recorder;

pub struct RunConfig {
    pub target: Target,
    pub bodies: Arc<Vec<Bytes>>,
    pub connections: usize,
    /// Open loop when set: requests per second.
    pub rate: Option<f64>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Per request; a request that takes longer counts as a `timeout` transport error.
    pub timeout: Duration,
    /// Open loop: the most requests queued in the generator (not counting those in flight).
    pub max_outstanding: usize,
    /// How long to wait after the window for requests still in flight.
    pub drain: Duration,
}

pub struct RunOutput {
    pub recorder: Recorder,
    pub dropped: u64,
    pub unfinished: u64,
}

struct Shared {
    target: Target,
    bodies: Arc<Vec<Bytes>>,
    timeout: Duration,
    recorder: Mutex<Recorder>,
    started: AtomicU64,
    completed: AtomicU64,
    dropped: AtomicU64,
}

impl Shared {
    fn record(&self, outcome: &Outcome, latency: Duration, service: Option<Duration>) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut r) = self.recorder.lock() {
            r.record(outcome, us(latency), service.map(us));
        }
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    fn connect_failed(&self, error: &anyhow::Error) {
        if let Ok(mut r) = self.recorder.lock() {
            let key = format!("connect: {}", root_cause(error));
            *r.transport_errors.entry(key).or_default() += 1;
        }
    }

    async fn send(&self, conn: &mut Option<Conn>, body: Bytes) -> Outcome {
        let Some(c) = conn.as_mut() else {
            return Outcome::Transport("no connection".into());
        };
        let outcome = match tokio::time::timeout(self.timeout, c.send(&self.target, body)).await {
            Ok(o) => o,
            Err(_) => Outcome::Transport("timeout".into()),
        };
        if matches!(outcome, Outcome::Transport(_)) {
            *conn = None; // replaced before the next request
        }
        outcome
    }
}

fn root_cause(e: &anyhow::Error) -> String {
    let text = e.root_cause().to_string();
    let lower = text.to_ascii_lowercase();
    if lower.contains("refused") {
        "connection refused".into()
    } else {
        text.chars().take(60).collect()
    }
}

/// Runs the load and returns what the measured window recorded.
pub async fn run(cfg: RunConfig) -> Result<RunOutput> {
    if cfg.bodies.is_empty() {
        return Err(anyhow!("no request bodies"));
    }
    let connections = cfg.connections.max(1);
    // Connect everyone first: connection set-up is not part of the measurement.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(
            connect(&cfg.target)
                .await
                .with_context(|| format!("cannot connect to {}", cfg.target.addr))?,
        );
    }
    let shared = Arc::new(Shared {
        target: cfg.target.clone(),
        bodies: Arc::clone(&cfg.bodies),
        timeout: cfg.timeout,
        recorder: Mutex::new(Recorder::default()),
        started: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    let start = Instant::now();
    let warm_end = start + cfg.warmup;
    let end = warm_end + cfg.duration;

    let workers: Vec<JoinHandle<()>> = match cfg.rate {
        None => conns
            .into_iter()
            .enumerate()
            .map(|(id, conn)| {
                let shared = Arc::clone(&shared);
                let first = id * shared.bodies.len() / connections;
                tokio::spawn(closed_client(shared, conn, first, warm_end, end))
            })
            .collect(),
        Some(rate) => {
            let queue = Arc::new(Queue::new());
            {
                let (shared, queue) = (Arc::clone(&shared), Arc::clone(&queue));
                let cap = cfg.max_outstanding.max(1);
                std::thread::Builder::new()
                    .name("scheduler".into())
                    .spawn(move || schedule(&queue, &shared, cap, rate, start, warm_end, end))
                    .context("cannot start the scheduler thread")?;
            }
            conns
                .into_iter()
                .enumerate()
                .map(|(id, conn)| {
                    let shared = Arc::clone(&shared);
                    let queue = Arc::clone(&queue);
                    let first = id * shared.bodies.len() / connections;
                    tokio::spawn(open_client(shared, conn, queue, first, warm_end))
                })
                .collect()
        }
    };

    let deadline = tokio::time::Instant::from_std(end + cfg.drain);
    for mut worker in workers {
        if tokio::time::timeout_at(deadline, &mut worker)
            .await
            .is_err()
        {
            worker.abort();
        }
    }
    let started = shared.started.load(Ordering::Relaxed);
    let completed = shared.completed.load(Ordering::Relaxed);
    let dropped = shared.dropped.load(Ordering::Relaxed);
    let recorder = std::mem::take(
        &mut *shared
            .recorder
            .lock()
            .map_err(|_| anyhow!("recorder lock poisoned"))?,
    );
    Ok(RunOutput {
        recorder,
        dropped,
        unfinished: started.saturating_sub(completed),
    })
}

async fn ensure_conn(shared: &Shared, conn: &mut Option<Conn>, measured: bool) -> bool {
    if conn.is_some() {
        return true;
    }
    match connect(&shared.target).await {
        Ok(c) => {
            *conn = Some(c);
            true
        }
        Err(e) => {
            if measured {
                shared.connect_failed(&e);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            false
        }
    }
}

async fn closed_client(
    shared: Arc<Shared>,
    conn: Conn,
    mut next: usize,
    warm_end: Instant,
    end: Instant,
) {
    let mut conn = Some(conn);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if !ensure_conn(&shared, &mut conn, now >= warm_end).await {
            continue;
        }
        let body = shared.bodies[next].clone();
        next = (next + 1) % shared.bodies.len();
        let sent = Instant::now();
        let measured = sent >= warm_end && sent < end;
        if measured {
            shared.started.fetch_add(1, Ordering::Relaxed);
        }
        let outcome = shared.send(&mut conn, body).await;
        if measured {
            shared.record(&outcome, sent.elapsed(), None);
        }
    }
}

/// The open loop's queue of intended send times: many producers' permits, many consumers
/// (a semaphore counts the items, so every idle connection is woken at once, not in turn).
struct Queue {
    items: Mutex<VecDeque<Instant>>,
    ready: Semaphore,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            items: Mutex::new(VecDeque::new()),
            ready: Semaphore::new(0),
        }
    }
    fn pop(&self) -> Option<Instant> {
        self.items.lock().ok().and_then(|mut q| q.pop_front())
    }
    /// The next item; None once the scheduler has finished and the queue is empty.
    async fn next(&self) -> Option<Instant> {
        loop {
            match self.ready.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => return self.pop(), // closed: drain what is left
            }
            if let Some(t) = self.pop() {
                return Some(t);
            }
        }
    }
}

async fn open_client(
    shared: Arc<Shared>,
    conn: Conn,
    queue: Arc<Queue>,
    mut next: usize,
    warm_end: Instant,
) {
    let mut conn = Some(conn);
    while let Some(intended) = queue.next().await {
        let measured = intended >= warm_end;
        let mut connected = ensure_conn(&shared, &mut conn, measured).await;
        if !connected {
            connected = ensure_conn(&shared, &mut conn, measured).await;
        }
        if !connected {
            if measured {
                shared.record(
                    &Outcome::Transport("no connection".into()),
                    intended.elapsed(),
                    None,
                );
            }
            continue;
        }
        let body = shared.bodies[next].clone();
        next = (next + 1) % shared.bodies.len();
        let sent = Instant::now();
        let outcome = shared.send(&mut conn, body).await;
        if measured {
            let done = Instant::now();
            shared.record(&outcome, done - intended, Some(done - sent));
        }
    }
}

/// Releases one request every `1/rate` s from `start` to `end` (std sleep, about 60 µs late at
/// worst on Linux; a late wake-up releases every request that is due). The request's intended
/// time travels with it.
fn schedule(
    queue: &Queue,
    shared: &Shared,
    cap: usize,
    rate: f64,
    start: Instant,
    warm_end: Instant,
    end: Instant,
) {
    let step_ns = 1e9 / rate;
    let at = |i: u64| start + Duration::from_nanos((i as f64 * step_ns) as u64);
    let mut i: u64 = 0;
    while at(i) < end {
        let now = Instant::now();
        if at(i) > now {
            std::thread::sleep(at(i) - now);
            continue;
        }
        // Release every request that is due, under one lock and one wake-up.
        let mut released = 0;
        let Ok(mut items) = queue.items.lock() else {
            break;
        };
        while at(i) <= now && at(i) < end {
            let intended = at(i);
            let measured = intended >= warm_end;
            if items.len() >= cap {
                if measured {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
            } else {
                items.push_back(intended);
                released += 1;
                if measured {
                    shared.started.fetch_add(1, Ordering::Relaxed);
                }
            }
            i += 1;
        }
        drop(items);
        queue.ready.add_permits(released);
    }
    queue.ready.close();
}
