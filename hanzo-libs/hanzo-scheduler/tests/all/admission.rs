//! Admission: never over capacity on any of slots, memory and CPU; jobs refused at
//! the door with a clear reason.

use crate::util::*;
use hanzo_compute::config::ResourcesConfig;
use hanzo_compute::{Job, JobSpec, RuntimeKind};
use hanzo_scheduler::{Options, Rejection, Resources};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Runs `n` jobs made by `make` (each finishing 2 ms after it starts) and returns the
/// most of each resource the runtime saw held at once.
async fn peak(res: ResourcesConfig, n: i64, make: impl Fn(i64) -> Job) -> Resources {
    let env = Env::new(res.clone(), Options::default());
    env.gated.auto(Duration::from_millis(2));
    for i in 0..n {
        env.submit(&make(i)).await;
    }
    env.hooks.wait_finished(n as usize).await;
    let seen = env.gated.seen.lock().unwrap();
    let cap = Resources::capacity(&res);
    assert!(
        seen.peak.fits_in(&cap),
        "peak {:?} over capacity {cap:?}",
        seen.peak
    );
    assert_eq!(seen.current, Resources::ZERO);
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.running, snap.queued, snap.in_use), (0, 0, Resources::ZERO));
    seen.peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_bound_concurrency() {
    let p = peak(resources(4, 16, 8), 100, |i| sized(i, 0, 64, 64)).await;
    assert_eq!(p.jobs, 4, "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bounds_concurrency() {
    // 1 GiB holds three 300 MiB jobs.
    let p = peak(resources(50, 1, 64), 60, |i| sized(i, 0, 300, 64)).await;
    assert_eq!((p.jobs, p.memory_mb), (3, 900), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_bounds_concurrency() {
    // 1024 shares is a core; 1536 shares a core and a half.
    let p = peak(resources(50, 16, 3), 60, |i| sized(i, 0, 64, 1024)).await;
    assert_eq!((p.jobs, p.cpu_millicores), (3, 3000), "{p:?}");
    let p = peak(resources(50, 16, 3), 60, |i| sized(i, 0, 64, 1536)).await;
    assert_eq!((p.jobs, p.cpu_millicores), (2, 3000), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_demands_never_exceed_any_resource() {
    let p = peak(resources(6, 2, 4), 300, |i| {
        let memory = [100, 700, 250, 400, 50][i as usize % 5];
        let shares = [256, 2048, 512, 1024, 3000, 100][i as usize % 6];
        sized(i, (i % 3) as i32, memory, shares)
    })
    .await;
    // `peak` checked every dimension against the capacity; it also got close to it.
    assert!(p.memory_mb > 1024 || p.cpu_millicores > 2000, "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_larger_than_the_node_is_refused_naming_the_resource() {
    let env = Env::new(resources(4, 2, 2), Options::default());
    let mut big = gated(1, 0);
    big.spec.limits.memory_mb = 4096;
    let e = env.scheduler.submit(big).await.unwrap_err();
    assert!(
        matches!(&e, Rejection::TooLarge(m) if m.contains("4096 MiB") && m.contains("total_memory_gb = 2")),
        "{e}"
    );
    assert_eq!(e.status(), 422);
    let mut hungry = gated(2, 0);
    hungry.spec.limits.cpu_shares = 3 * 1024;
    let e = env.scheduler.submit(hungry).await.unwrap_err();
    assert!(
        matches!(&e, Rejection::TooLarge(m) if m.contains("3 CPU cores")),
        "{e}"
    );
    // Exactly the node's size is fine.
    env.gated.auto(Duration::ZERO);
    let whole = sized(3, 0, 2048, 2048);
    env.submit(&whole).await;
    env.hooks.wait_finished(1).await;
    ok(&env.hooks.outcome(&whole.id));
    let snap = env.scheduler.snapshot();
    assert_eq!(snap.counters.rejected.get("too_large"), Some(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_spec_is_refused() {
    let env = Env::new(resources(4, 2, 2), Options::default());
    let mut j = gated(1, 0);
    j.spec.limits.timeout_ms = 0;
    let e = env.scheduler.submit(j).await.unwrap_err();
    assert!(
        matches!(&e, Rejection::Invalid(m) if m.contains("timeout_ms")),
        "{e}"
    );
    assert_eq!(e.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_runtimes_fail_at_once_and_health_is_cached() {
    let env = Env::new(resources(4, 2, 2), Options::default());
    // Not registered at all.
    let e = env
        .scheduler
        .submit(Job::new(JobSpec::new(RuntimeKind::Docker, "alpine")))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Rejection::RuntimeUnavailable("the docker runtime is not enabled on this node".into())
    );
    assert_eq!(e.status(), 503);
    // Registered, but its health says it cannot run jobs: the reason is passed on.
    env.gated.available.store(false, Ordering::SeqCst);
    for i in 0..50 {
        let e = env.scheduler.submit(gated(i, 0)).await.unwrap_err();
        assert!(
            matches!(&e, Rejection::RuntimeUnavailable(m) if m.contains("native runtime is unavailable") && m.contains("start it with `testd`")),
            "{e}"
        );
    }
    // One probe answered all fifty.
    assert_eq!(env.gated.health_calls.load(Ordering::SeqCst), 1);
    // The daemon comes back; after a refresh jobs run again.
    env.gated.available.store(true, Ordering::SeqCst);
    env.scheduler.refresh_health();
    env.gated.auto(Duration::ZERO);
    let j = gated(1, 0);
    env.submit(&j).await;
    env.hooks.wait_finished(1).await;
    ok(&env.hooks.outcome(&j.id));
    assert_eq!(env.gated.health_calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        env.scheduler
            .snapshot()
            .counters
            .rejected
            .get("runtime_unavailable"),
        Some(&51)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_job_cannot_be_queued_twice() {
    let env = Env::new(resources(1, 2, 2), Options::default());
    let j = gated(1, 0);
    env.submit(&j).await;
    env.gated.wait_started(1).await;
    // Running.
    let e = env.scheduler.submit(j.clone()).await.unwrap_err();
    assert_eq!(e, Rejection::Duplicate(j.id.clone()));
    // Queued.
    let k = gated(2, 0);
    env.submit(&k).await;
    assert_eq!(env.scheduler.submit(k.clone()).await.unwrap_err().status(), 409);
    env.gated.release(2);
    env.hooks.wait_finished(2).await;
    assert_eq!(env.gated.started(), vec![1, 2]);
}
