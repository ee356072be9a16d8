//! A burst of 10,000 tiny WASM jobs: all complete, correctly, and nothing leaks.

use crate::util::*;
use hanzo_compute::{Job, JobSpec, RuntimeKind};
use hanzo_scheduler::{Options, Resources};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tiny_wasm_jobs_complete_without_leaks() {
    const N: usize = 10_000;
    let env = Env::new(resources(10, 16, 8), Options::default());
    let echo = env.fixture("echo", ECHO);
    let jobs: Vec<Job> = (0..N)
        .map(|i| {
            let spec = JobSpec::new(RuntimeKind::Wasm, echo.clone())
                .params(json!({ "i": i }))
                .limits(tiny_limits());
            Job::new(spec)
        })
        .collect();
    for j in &jobs {
        env.submit(j).await;
    }
    env.hooks.wait_finished(N).await;
    for (i, j) in jobs.iter().enumerate() {
        let out = env.hooks.outcome(&j.id);
        assert_eq!(ok(&out), json!({ "i": i }));
        assert!(out.receipt.is_some(), "receipts are signed by default");
    }
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.queued, snap.running), (0, 0));
    assert_eq!(snap.in_use, Resources::ZERO);
    assert!(snap.queued_by_priority.is_empty() && snap.running_by_runtime.is_empty());
    assert_eq!(
        (
            snap.counters.accepted,
            snap.counters.started,
            snap.counters.finished
        ),
        (N as u64, N as u64, N as u64)
    );
}
