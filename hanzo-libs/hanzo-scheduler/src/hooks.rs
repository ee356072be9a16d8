//! How the job store (and anything else) follows a job through the scheduler.

use hanzo_compute::{Job, JobOutcome};

/// Callbacks around each job, awaited in the job's own task (never in a caller of
/// [`Scheduler::submit`](crate::Scheduler::submit), never under a lock).
///
/// For every job the scheduler accepted, exactly one of these ends its story:
/// - [`starting`](Hooks::starting) returns `false`: the job does not run and nothing
///   else is called;
/// - [`finished`](Hooks::finished) is called once with the outcome: after the job ran
///   (`starting` returned `true` just before), or without `starting` when it never
///   could run (cancelled while queued; a resumed job whose runtime is gone).
///
/// A slow hook delays only its own job; but `starting` runs while the job already
/// holds its resources, so its latency counts against `max_concurrent_jobs`.
#[async_trait::async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// Called just before `job` runs, with its resources already reserved. Return
    /// `false` to not run it: e.g. the store says it was cancelled meanwhile, or its
    /// move to `running` could not be recorded. This is where "nothing runs twice" is
    /// kept: run a job only once its start is durable.
    async fn starting(&self, job: &Job) -> bool {
        let _ = job;
        true
    }

    /// Called once with the outcome of a job that ran, or with why it never ran
    /// ([`ComputeError::Cancelled`](hanzo_compute::ComputeError::Cancelled),
    /// [`ComputeError::Unavailable`](hanzo_compute::ComputeError::Unavailable), ...).
    /// The job's resources are already free when this is called.
    async fn finished(&self, job: &Job, outcome: &JobOutcome) {
        let _ = (job, outcome);
    }
}

/// Hooks that do nothing: every job starts, outcomes are dropped. For tests and
/// benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl Hooks for NoHooks {}
