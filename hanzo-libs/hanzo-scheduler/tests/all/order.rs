//! Queue order: priority, FIFO within a priority, bounded backfill, resume.

use crate::util::*;
use hanzo_compute::{ComputeError, Job, JobSpec, RuntimeKind};
use hanzo_scheduler::{Options, Resumed};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn higher_priority_first_and_fifo_within_a_priority() {
    let env = Env::new(resources(1, 16, 8), Options::default());
    env.submit(&gated(0, 0)).await;
    env.gated.wait_started(1).await;
    for (n, p) in [(1, 0), (2, 5), (3, 0), (4, 5), (5, 10), (6, -3), (7, 0)] {
        env.submit(&gated(n, p)).await;
    }
    let snap = env.scheduler.snapshot();
    assert_eq!(snap.queued, 7);
    assert_eq!(snap.running, 1);
    assert_eq!(
        snap.queued_by_priority,
        BTreeMap::from([(-3, 1), (0, 3), (5, 2), (10, 1)])
    );
    env.gated.release(8);
    env.hooks.wait_finished(8).await;
    assert_eq!(env.gated.started(), vec![0, 5, 2, 4, 1, 3, 7, 6]);
}

/// 1 GiB in all; job 1 (600 MiB) runs, job 2 (800 MiB) cannot fit beside it, and six
/// 100 MiB jobs wait behind job 2.
async fn blocked_head(backfill_limit: u32) -> Env {
    let options = Options {
        backfill_limit,
        ..Options::default()
    };
    let env = Env::new(resources(10, 1, 8), options);
    env.submit(&sized(1, 0, 600, 64)).await;
    env.gated.wait_started(1).await;
    env.submit(&sized(2, 0, 800, 64)).await;
    for n in 3..=8 {
        env.submit(&sized(n, 0, 100, 64)).await;
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_job_lets_only_a_bounded_number_of_smaller_ones_pass() {
    let env = blocked_head(2).await;
    // Admission is decided inside `submit`: two small jobs passed job 2, then the
    // scheduler held the rest for it although they would fit.
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.running, snap.queued), (3, 5));
    assert_eq!(snap.in_use.memory_mb, 800);
    env.gated.wait_started(3).await;
    // Job 1 ends (the gate is FIFO): job 2 now fits beside jobs 3 and 4 and starts
    // before any later small job.
    env.gated.release(1);
    env.gated.wait_started(4).await;
    assert_eq!(
        first_groups(&env.gated.started(), &[1, 2, 1]),
        vec![vec![1], vec![3, 4], vec![2]]
    );
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.running, snap.in_use.memory_mb), (3, 1000));
    env.gated.release(100);
    env.hooks.wait_finished(8).await;
    assert!(env.gated.seen.lock().unwrap().peak.memory_mb <= 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_head_of_line_when_backfill_is_off() {
    let env = blocked_head(0).await;
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.running, snap.queued), (1, 7));
    env.gated.release(1);
    // Job 2 (800) starts, then 3 and 4 fit beside it (1000 MiB), 5 does not.
    env.gated.wait_started(4).await;
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.running, snap.in_use.memory_mb), (3, 1000));
    // Admitted together, so they may reach the runtime in either order.
    assert_eq!(
        first_groups(&env.gated.started(), &[1, 3]),
        vec![vec![1], vec![2, 3, 4]]
    );
    env.gated.release(100);
    env.hooks.wait_finished(8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_keeps_priority_then_given_order_beyond_the_queue_capacity() {
    let options = Options {
        queue_capacity: 2,
        ..Options::default()
    };
    let env = Env::new(resources(1, 16, 8), options);
    env.submit(&gated(0, 0)).await;
    env.gated.wait_started(1).await;
    let gone = Job::new(JobSpec::new(RuntimeKind::K8s, "img"));
    let jobs = vec![gated(1, 0), gated(2, 5), gated(3, 0), gated(4, 5), gone.clone()];
    let report = env.scheduler.resume(jobs.clone()).await;
    assert_eq!(
        report,
        Resumed {
            queued: 4,
            failed: 1,
            duplicates: 0
        }
    );
    // The job whose runtime is gone ended at once, without starting.
    let out = env.hooks.outcome(&gone.id);
    assert!(
        matches!(&out.result, Err(ComputeError::Unavailable(m)) if m.contains("k8s")),
        "{out:?}"
    );
    assert_eq!(env.hooks.starting_calls(&gone.id), 0);
    // Resumed twice (a second recovery pass) changes nothing.
    let again = env.scheduler.resume(jobs[..4].to_vec()).await;
    assert_eq!(again.duplicates, 4);
    assert_eq!(env.scheduler.snapshot().queued, 4);
    env.gated.release(5);
    env.hooks.wait_finished(6).await;
    assert_eq!(env.gated.started(), vec![0, 2, 4, 1, 3]);
}

/// The first jobs started, split into groups of the given sizes, each sorted (jobs
/// admitted at the same moment start in their own tasks, in no fixed order).
fn first_groups(started: &[i64], sizes: &[usize]) -> Vec<Vec<i64>> {
    let mut rest = started;
    sizes
        .iter()
        .map(|&n| {
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let mut g = group.to_vec();
            g.sort();
            g
        })
        .collect()
}
