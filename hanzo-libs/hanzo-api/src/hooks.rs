//! The scheduler's hooks: every start and end of a job is recorded in the store, and
//! callers waiting for a job (`execute`, `?wait=true`) are told when it ended.

use crate::logs::LiveLogs;
use crate::metrics::Durations;
use hanzo_compute::{Job, JobOutcome};
use hanzo_jobstore::JobStore;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Hooks that keep the job store in step with the scheduler.
pub struct StoreHooks {
    store: JobStore,
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    pub(crate) durations: Durations,
    /// The live logs of the jobs that have not ended.
    pub(crate) live: LiveLogs,
}

impl StoreHooks {
    /// Hooks over `store`.
    pub fn new(store: JobStore) -> Self {
        StoreHooks {
            store,
            waiters: Mutex::new(HashMap::new()),
            durations: Durations::default(),
            live: LiveLogs::default(),
        }
    }

    /// A receiver that fires once the job's end is committed to the store. Register it
    /// before the job is handed to the scheduler, so that a quick job cannot end first.
    pub(crate) fn wait_for(&self, id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        w.entry(id.to_string()).or_default().push(tx);
        rx
    }

    /// Drops the waiters and live log of a job that never reached the scheduler.
    pub(crate) fn forget(&self, id: &str) {
        let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        w.remove(id);
        self.live.close(id);
    }

    /// Tells waiters and log followers that the job's end is in the store.
    fn wake(&self, id: &str) {
        self.live.close(id);
        let senders = {
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            w.remove(id)
        };
        for tx in senders.into_iter().flatten() {
            let _ = tx.send(());
        }
    }
}

#[async_trait::async_trait]
impl hanzo_scheduler::Hooks for StoreHooks {
    async fn starting(&self, job: &Job) -> bool {
        // Run only once `running` is committed: after a crash the store then knows the
        // job may have run, and never starts it a second time unless retries allow.
        match self.store.start(&job.id).await {
            Ok(true) => true,
            Ok(false) => {
                // Cancelled meanwhile: no `finished` follows, so wake waiters here.
                self.wake(&job.id);
                false
            }
            Err(e) => {
                eprintln!("hanzo-node: job {}: cannot record its start: {e}", job.id);
                self.wake(&job.id);
                false
            }
        }
    }

    async fn finished(&self, job: &Job, outcome: &JobOutcome) {
        if let Err(e) = self.store.finish(outcome).await {
            eprintln!("hanzo-node: job {}: cannot record its end: {e}", job.id);
        }
        if outcome.receipt.is_some() {
            // Only jobs that ran have a duration worth a histogram.
            self.durations
                .observe(job.spec.runtime, outcome.usage.wall_time_ms / 1000.0);
        }
        self.wake(&job.id);
    }
}
