//! The scheduler's hooks: every start and end of a job is recorded in the store, and
//! callers waiting for a job (`execute`, `?wait=true`) are told when it ended.
//!
//! A store write that fails (a full disk, an I/O error) is retried with backoff
//! ([`WRITE_ATTEMPTS`]); one that still fails is counted
//! (`hanzo_store_write_failures_total{op}` in `/metrics`) and, for a job's end, the
//! job is recorded `failed` without its output, logs or receipt if that smaller write
//! goes through (an output too large for the disk left then). While the store cannot
//! commit even that, [`StoreHealth`] makes `/healthz` answer 503 until a write (or the
//! probe `/healthz` makes) goes through again.

use crate::logs::LiveLogs;
use crate::metrics::Durations;
use hanzo_compute::{ComputeError, Job, JobOutcome};
use hanzo_jobstore::JobStore;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Attempts of one store write from the hooks: the first and four retries, waiting
/// 0.1, 0.2, 0.4 and 0.8 s between them (1.5 s in all). Bounded because the job's
/// slot is held meanwhile, and a store that fails for longer is an operator's matter.
pub(crate) const WRITE_ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// How often `/healthz` re-tries the store with a probe write while it is failing.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Whether the store's writes go through, as learned from the writes themselves.
#[derive(Default)]
pub(crate) struct StoreHealth {
    /// Writes that failed for good, by operation (`start`, `finish`, `submit`).
    failures: Mutex<BTreeMap<&'static str, u64>>,
    /// The error of the last write, while the last write failed.
    failing: Mutex<Option<String>>,
    last_probe: Mutex<Option<Instant>>,
}

impl StoreHealth {
    /// Records how a write ended and hands its result back.
    pub(crate) fn track<T>(
        &self,
        op: &'static str,
        r: Result<T, hanzo_jobstore::Error>,
    ) -> Result<T, hanzo_jobstore::Error> {
        match &r {
            Ok(_) => self.ok(),
            Err(e) => self.failed(op, e),
        }
        r
    }

    fn ok(&self) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn failed(&self, op: &'static str, e: &hanzo_jobstore::Error) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(op)
            .or_default() += 1;
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// Write failures so far, by operation (for `/metrics`).
    pub(crate) fn failures(&self) -> BTreeMap<&'static str, u64> {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why the store cannot write, while its last write failed. At most every
    /// [`PROBE_EVERY`] it first tries a probe write, so that the node reports healthy
    /// again once the store recovers, even when no job comes to write.
    pub(crate) async fn check(&self, store: &JobStore) -> Option<String> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).as_ref()?;
        let due = {
            let mut last = self.last_probe.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= PROBE_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            match store.probe().await {
                Ok(()) => self.ok(),
                Err(e) => *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string()),
            }
        }
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Runs a store write up to [`WRITE_ATTEMPTS`] times with doubling waits.
async fn retried<T, F, Fut>(id: &str, what: &str, mut write: F) -> Result<T, hanzo_jobstore::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, hanzo_jobstore::Error>>,
{
    let mut wait = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match write().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= WRITE_ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!(job = %id, attempt, error = %printable(&e.to_string()), "cannot record the job's {what}; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
        }
    }
}

/// The job's line in the node's log: id, runtime, outcome, duration (and the error's
/// code and message when it failed). The message may be the tool's own words (its
/// error envelope, its last stderr line): it goes through [`printable`], so a newline
/// or an escape sequence in it cannot forge a log line or drive a terminal (the text
/// formatter escapes only the `message` field by itself).
fn log_outcome(job: &Job, outcome: &JobOutcome) {
    let runtime = job.spec.runtime.name();
    let duration_ms = outcome.usage.wall_time_ms;
    match &outcome.result {
        Ok(_) => tracing::info!(job = %job.id, runtime, outcome = "succeeded", duration_ms, "job finished"),
        Err(ComputeError::Cancelled) => {
            tracing::info!(job = %job.id, runtime, outcome = "cancelled", duration_ms, "job finished")
        }
        Err(e) => tracing::info!(
            job = %job.id,
            runtime,
            outcome = "failed",
            duration_ms,
            error_code = e.code(),
            error = %printable(&e.to_string()),
            "job finished"
        ),
    }
}

/// `text` with every control character written as an escape (`\n`, `\u{1b}`): one
/// line, and nothing a terminal acts on.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// What a waiter hears once a job's end is committed: the outcome exactly as the store
/// recorded it, for a waiter that asked for it ([`StoreHooks::wait_for_outcome`]), so
/// that it need not read the job back; `None` when it did not ask, or when what the
/// store holds is not that outcome (the job had ended already, or only a smaller
/// `failed` record went through): such a waiter reads the store.
pub type Ended = Option<Arc<JobOutcome>>;

/// One caller waiting for a job's end.
struct Waiter {
    tx: oneshot::Sender<Ended>,
    /// Whether it wants the outcome (a copy of the output and logs is made for it).
    outcome: bool,
}

/// Hooks that keep the job store in step with the scheduler.
pub struct StoreHooks {
    store: JobStore,
    waiters: Mutex<HashMap<String, Vec<Waiter>>>,
    pub(crate) durations: Durations,
    /// The live logs of the jobs that have not ended.
    pub(crate) live: LiveLogs,
    /// Whether store writes go through.
    pub(crate) health: StoreHealth,
}

impl StoreHooks {
    /// Hooks over `store`.
    pub fn new(store: JobStore) -> Self {
        StoreHooks {
            store,
            waiters: Mutex::new(HashMap::new()),
            durations: Durations::default(),
            live: LiveLogs::default(),
            health: StoreHealth::default(),
        }
    }

    /// A receiver that fires once the job's end is committed to the store. Register it
    /// before the job is handed to the scheduler, so that a quick job cannot end first.
    pub(crate) fn wait_for(&self, id: &str) -> oneshot::Receiver<Ended> {
        self.waiter(id, false)
    }

    /// Like [`wait_for`](Self::wait_for), and the receiver gets the outcome as stored
    /// (see [`Ended`]).
    pub(crate) fn wait_for_outcome(&self, id: &str) -> oneshot::Receiver<Ended> {
        self.waiter(id, true)
    }

    fn waiter(&self, id: &str, outcome: bool) -> oneshot::Receiver<Ended> {
        let (tx, rx) = oneshot::channel();
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let list = w.entry(id.to_string()).or_default();
        // Waiters that gave up (a client gone, a peer's await that timed out) are
        // dropped here, not kept until the job ends.
        list.retain(|t| !t.tx.is_closed());
        list.push(Waiter { tx, outcome });
        rx
    }

    /// Drops the waiters and live log of a job that never reached the scheduler.
    pub(crate) fn forget(&self, id: &str) {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        w.remove(id);
        self.live.close(id);
    }

    /// Tells waiters and log followers that the job's end is in the store; `stored` is
    /// the outcome when the store recorded exactly it.
    fn wake(&self, id: &str, stored: Option<&JobOutcome>) {
        self.live.close(id);
        let waiters = {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            w.remove(id)
        };
        // One copy, shared, and only when someone asked for it.
        let mut shared: Option<Arc<JobOutcome>> = None;
        for w in waiters.into_iter().flatten() {
            let ended = match stored {
                Some(o) if w.outcome => Some(shared.get_or_insert_with(|| Arc::new(o.clone())).clone()),
                _ => None,
            };
            let _ = w.tx.send(ended);
        }
    }
}

#[async_trait::async_trait]
impl hanzo_scheduler::Hooks for StoreHooks {
    async fn starting(&self, job: &Job) -> bool {
        tracing::debug!(job = %job.id, runtime = job.spec.runtime.name(), "job starting");
        // Run only once `running` is committed: after a crash the store then knows the
        // job may have run, and never starts it a second time unless retries allow.
        let started = retried(&job.id, "start", || self.store.start(&job.id)).await;
        match self.health.track("start", started) {
            Ok(true) => true,
            Ok(false) => {
                // Cancelled meanwhile: no `finished` follows, so wake waiters here.
                self.wake(&job.id, None);
                false
            }
            Err(e) => {
                tracing::error!(job = %job.id, error = %printable(&e.to_string()), "cannot record the job's start; it does not run");
                // It does not run. End it as failed if the store takes that; otherwise
                // it stays queued there, and the node runs it after a restart.
                let failed = JobOutcome {
                    job_id: job.id.clone(),
                    result: Err(ComputeError::internal(format!(
                        "the job store could not record the job's start: {e}"
                    ))),
                    usage: Default::default(),
                    logs: Vec::new(),
                    receipt: None,
                };
                let _ = self.health.track("finish", self.store.finish(&failed).await);
                self.wake(&job.id, None);
                false
            }
        }
    }

    async fn finished(&self, job: &Job, outcome: &JobOutcome) {
        log_outcome(job, outcome);
        let stored = retried(&job.id, "end", || self.store.finish(outcome)).await;
        let stored = self.health.track("finish", stored);
        // `Ok(true)`: the store holds this outcome; `Ok(false)`: the job had ended
        // already (cancelled while queued), and holds that end.
        // Logs over the store's cap are kept shortened: then the stored outcome is not
        // this one to the byte, and a waiter reads it back.
        let exact = matches!(stored, Ok(true)) && outcome.logs.len() <= self.store.max_log_bytes();
        if let Err(e) = stored {
            tracing::error!(job = %job.id, error = %printable(&e.to_string()), "cannot record the job's end; recording it as failed");
            // The output or the logs may be what does not fit (a full disk): record the
            // job as failed without them, so that it does not stay `running` and its
            // waiters read why. The receipt stays out too: it vouches for an output the
            // store does not hold.
            let failed = JobOutcome {
                job_id: job.id.clone(),
                result: Err(ComputeError::internal(format!(
                    "the job store could not record the job's result: {e}"
                ))),
                usage: outcome.usage.clone(),
                logs: Vec::new(),
                receipt: None,
            };
            if let Err(e) = self.health.track("finish", self.store.finish(&failed).await) {
                tracing::error!(
                    job = %job.id,
                    error = %printable(&e.to_string()),
                    "cannot record the job's failure either; it stays running in the store until the node restarts"
                );
            }
        }
        if outcome.receipt.is_some() {
            // Only jobs that ran have a duration worth a histogram.
            self.durations
                .observe(job.spec.runtime, outcome.usage.wall_time_ms / 1000.0);
        }
        self.wake(&job.id, exact.then_some(outcome));
    }
}
