//! Cancellation of queued and running jobs, the running ones really stopped.

use crate::util::*;
use hanzo_compute::{ComputeError, Job, JobSpec, RuntimeKind};
use hanzo_scheduler::{CancelResult, Options};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_is_removed_and_never_starts() {
    let env = Env::new(resources(1, 16, 8), Options::default());
    env.submit(&gated(0, 0)).await;
    env.gated.wait_started(1).await;
    let x = gated(1, 0);
    let y = gated(2, 0);
    env.submit(&x).await;
    env.submit(&y).await;
    assert_eq!(env.scheduler.cancel(&x.id).await, CancelResult::Dequeued);
    // The hook heard of it before cancel returned.
    assert_eq!(env.hooks.outcome(&x.id).result, Err(ComputeError::Cancelled));
    assert_eq!(env.scheduler.cancel(&x.id).await, CancelResult::NotFound);
    assert_eq!(env.scheduler.snapshot().queued, 1);
    env.gated.release(10);
    env.hooks.wait_finished(3).await;
    assert_eq!(env.gated.started(), vec![0, 2]);
    assert_eq!(env.hooks.starting_calls(&x.id), 0);
    assert_eq!(env.hooks.outcome(&x.id).receipt, None);
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.counters.cancelled_queued, snap.counters.finished), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_blocked_head_lets_the_others_start() {
    // Strict head-of-line: the small job waits behind the big one although it fits.
    let options = Options {
        backfill_limit: 0,
        ..Options::default()
    };
    let env = Env::new(resources(10, 1, 8), options);
    env.submit(&sized(0, 0, 600, 64)).await;
    env.gated.wait_started(1).await;
    let big = sized(1, 5, 800, 64);
    let small = sized(2, 0, 400, 64);
    env.submit(&big).await;
    env.submit(&small).await;
    assert_eq!(env.scheduler.snapshot().running, 1);
    // Removing the head starts the small job at once, with nothing finished.
    assert_eq!(env.scheduler.cancel(&big.id).await, CancelResult::Dequeued);
    assert_eq!(env.scheduler.snapshot().running, 2);
    env.gated.wait_started(2).await;
    env.gated.release(2);
    env.hooks.wait_finished(3).await;
    assert_eq!(env.gated.started(), vec![0, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_stopped() {
    let env = Env::new(resources(1, 16, 8), Options::default());
    let j = gated(0, 0);
    env.submit(&j).await;
    env.gated.wait_started(1).await;
    assert_eq!(env.scheduler.cancel(&j.id).await, CancelResult::Stopping);
    env.hooks.wait_finished(1).await;
    assert_eq!(env.hooks.outcome(&j.id).result, Err(ComputeError::Cancelled));
    assert_eq!(env.scheduler.cancel(&j.id).await, CancelResult::NotFound);
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.running, snap.in_use.jobs), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_wasm_instance_is_stopped_at_once() {
    let env = Env::new(resources(2, 16, 8), Options::default());
    let spin = env.fixture("spin", SPIN);
    let mut spec = JobSpec::new(RuntimeKind::Wasm, spin);
    spec.limits.timeout_ms = 60_000;
    let j = Job::new(spec);
    env.submit(&j).await;
    // Let the guest get into its loop.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(env.scheduler.snapshot().running, 1);
    let t = Instant::now();
    assert_eq!(env.scheduler.cancel(&j.id).await, CancelResult::Stopping);
    env.hooks.wait_finished(1).await;
    let stopped_in = t.elapsed();
    let out = env.hooks.outcome(&j.id);
    assert_eq!(out.result, Err(ComputeError::Cancelled));
    assert!(stopped_in < Duration::from_secs(2), "took {stopped_in:?} to stop");
    // It really ran (and spun) before it was stopped.
    assert!(out.usage.wall_time_ms >= 100.0, "{:?}", out.usage);
    assert_eq!(env.scheduler.snapshot().running, 0);
    // The runtime is fine afterwards.
    let echo = env.fixture("echo", ECHO);
    let e = Job::new(JobSpec::new(RuntimeKind::Wasm, echo).params(json!({"after": "cancel"})));
    env.submit(&e).await;
    env.hooks.wait_finished(2).await;
    assert_eq!(ok(&env.hooks.outcome(&e.id)), json!({"after": "cancel"}));
}
