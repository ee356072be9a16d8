//! The restart rule, by closing and reopening the store with jobs left running.

use crate::util::{db, integrity, open, spec, succeeded};
use hanzo_jobstore::{INTERRUPTED, JobStatus, JobStore};
use serde_json::json;

async fn submit(store: &JobStore, n: u64, priority: i32, retries: u32) -> String {
    let mut s = spec(n);
    s.priority = priority;
    s.retries = retries;
    store.submit(s).await.unwrap().id
}

#[tokio::test]
async fn running_jobs_are_retried_failed_or_cancelled_by_their_spec() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let no_retry = submit(&store, 1, 0, 0).await;
    let one_retry = submit(&store, 2, 0, 1).await;
    let cancelling = submit(&store, 3, 0, 5).await;
    let done = submit(&store, 4, 0, 0).await;
    let low = submit(&store, 5, -1, 0).await;
    let high = submit(&store, 6, 10, 0).await;
    let mid_a = submit(&store, 7, 0, 0).await;
    let mid_b = submit(&store, 8, 0, 0).await;
    for id in [&no_retry, &one_retry, &cancelling, &done] {
        assert!(store.start(id).await.unwrap());
    }
    let out = succeeded(&done, &spec(4), json!("ok"));
    assert!(store.finish(&out).await.unwrap());
    store.cancel(&cancelling).await.unwrap();
    // The node stops with three jobs running (closing is the same as a crash for the
    // rows: they say `running`; the crash test kills a real process).
    drop(store);

    let (store, rec) = open(&path);
    assert_eq!(rec.failed, vec![no_retry.clone()]);
    assert_eq!(rec.retried, vec![one_retry.clone()]);
    assert_eq!(rec.cancelled, vec![cancelling.clone()]);
    let order: Vec<_> = rec.queued.iter().map(|j| j.id.clone()).collect();
    // Higher priority first, first come first served within a priority (the retried
    // job keeps its place: it was submitted second).
    assert_eq!(order, vec![high, one_retry.clone(), mid_a, mid_b, low]);

    let f = store.get(&no_retry).unwrap().unwrap();
    assert_eq!(f.status, JobStatus::Failed);
    assert_eq!(f.attempts, 1);
    let e = f.error.unwrap();
    assert_eq!(e.code, INTERRUPTED);
    assert_eq!(
        e.message,
        "interrupted: the node stopped while the job was running"
    );
    assert!(f.finished_at.is_some());
    let r = store.get(&one_retry).unwrap().unwrap();
    assert_eq!((r.status, r.attempts, r.started_at), (JobStatus::Queued, 1, None));
    let c = store.get(&cancelling).unwrap().unwrap();
    assert_eq!(c.status, JobStatus::Cancelled);
    assert_eq!(c.error.unwrap().code, "cancelled");
    assert_eq!(store.get(&done).unwrap().unwrap().status, JobStatus::Succeeded);

    // The retry runs (attempt 2) and is interrupted again: no retry is left.
    assert!(store.start(&one_retry).await.unwrap());
    assert_eq!(store.get(&one_retry).unwrap().unwrap().attempts, 2);
    drop(store);
    let (store, rec) = open(&path);
    assert_eq!(rec.failed, vec![one_retry.clone()]);
    assert!(rec.retried.is_empty() && rec.cancelled.is_empty());
    assert_eq!(rec.queued.len(), 4);
    let r = store.get(&one_retry).unwrap().unwrap();
    assert_eq!((r.status, r.attempts), (JobStatus::Failed, 2));
    drop(store);

    // A restart with nothing running changes nothing.
    let (_store, rec) = open(&path);
    assert!(rec.failed.is_empty() && rec.retried.is_empty() && rec.cancelled.is_empty());
    assert_eq!(rec.queued.len(), 4);
    assert_eq!(integrity(&path), "ok");
}

#[tokio::test]
async fn a_job_runs_at_most_one_plus_retries_times_across_restarts() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let id = submit(&store, 1, 0, 2).await;
    drop(store);
    let mut starts = 0;
    for _ in 0..6 {
        let (store, rec) = open(&path);
        if rec.queued.iter().any(|j| j.id == id) && store.start(&id).await.unwrap() {
            starts += 1;
        }
    }
    assert_eq!(starts, 3);
    let (store, _) = open(&path);
    let job = store.get(&id).unwrap().unwrap();
    assert_eq!((job.status, job.attempts), (JobStatus::Failed, 3));
}
