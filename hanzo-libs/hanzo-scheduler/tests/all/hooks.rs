//! The hooks: exactly one end per job, `starting = false` prevents the run, and a
//! panicking runtime still yields an outcome and frees its resources.

use crate::util::*;
use hanzo_compute::ComputeError;
use hanzo_scheduler::{Options, Resources};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_are_called_once_per_job_and_a_veto_prevents_the_run() {
    let env = Env::new(resources(3, 16, 8), Options::default());
    env.gated.auto(Duration::ZERO);
    let jobs: Vec<_> = (0..60).map(|n| gated(n, (n % 4) as i32)).collect();
    let denied: Vec<_> = jobs
        .iter()
        .filter(|j| j.spec.params["n"].as_i64().unwrap() % 6 == 0)
        .collect();
    env.hooks
        .deny
        .lock()
        .unwrap()
        .extend(denied.iter().map(|j| j.id.clone()));
    for j in &jobs {
        env.submit(j).await;
    }
    env.hooks.wait_finished(50).await;
    // Vetoed jobs release their slot in their own task; wait for the last of them.
    let t = std::time::Instant::now();
    while env.scheduler.snapshot().running > 0 {
        assert!(t.elapsed() < PATIENCE);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = env.gated.started();
    for j in &jobs {
        let n = j.spec.params["n"].as_i64().unwrap();
        assert_eq!(env.hooks.starting_calls(&j.id), 1, "job {n}");
        if n % 6 == 0 {
            assert!(!env.hooks.finished.lock().unwrap().contains_key(&j.id), "job {n}");
            assert!(!started.contains(&n), "vetoed job {n} ran");
        } else {
            assert_eq!(ok(&env.hooks.outcome(&j.id)), json!({ "n": n }));
        }
    }
    assert_eq!(started.len(), 50);
    let snap = env.scheduler.snapshot();
    assert_eq!(
        (
            snap.counters.accepted,
            snap.counters.started,
            snap.counters.finished,
            snap.counters.skipped
        ),
        (60, 50, 50, 10)
    );
    assert_eq!(snap.in_use, Resources::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_runtime_gives_an_internal_error_and_frees_the_slot() {
    let env = Env::new(resources(1, 16, 8), Options::default());
    env.gated.auto(Duration::ZERO);
    let mut bad = gated(1, 0);
    bad.spec.params = json!({"panic": true});
    let good = gated(2, 0);
    env.submit(&bad).await;
    env.submit(&good).await;
    env.hooks.wait_finished(2).await;
    let out = env.hooks.outcome(&bad.id);
    assert!(
        matches!(&out.result, Err(ComputeError::Internal(m)) if m.contains("panicked") && m.contains("asked to panic")),
        "{out:?}"
    );
    assert_eq!(ok(&env.hooks.outcome(&good.id)), json!({"n": 2}));
    assert_eq!(env.scheduler.snapshot().in_use, Resources::ZERO);
}
