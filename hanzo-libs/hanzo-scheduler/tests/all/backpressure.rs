//! A bounded queue: a full queue refuses with a `Retry-After` estimated from the
//! recent completion rate; permits hold places.

use crate::util::*;
use hanzo_scheduler::{Options, Rejection};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_with_retry_after() {
    let options = Options {
        queue_capacity: 3,
        ..Options::default()
    };
    let env = Env::new(resources(1, 16, 8), options);
    env.submit(&gated(0, 0)).await;
    env.gated.wait_started(1).await;
    for n in 1..=3 {
        env.submit(&gated(n, 0)).await;
    }
    let e = env.scheduler.submit(gated(4, 0)).await.unwrap_err();
    // Nothing has finished yet to estimate from: the documented 5 s.
    assert_eq!(
        e,
        Rejection::QueueFull {
            retry_after: Duration::from_secs(5),
            capacity: 3
        }
    );
    assert_eq!((e.status(), e.code()), (429, "queue_full"));
    // A higher priority does not jump a full queue either.
    assert!(matches!(
        env.scheduler.submit(gated(5, 100)).await,
        Err(Rejection::QueueFull { .. })
    ));
    // Once a job leaves the queue there is room again.
    env.gated.release(1);
    env.hooks.wait_finished(1).await;
    env.submit(&gated(6, 0)).await;
    let snap = env.scheduler.snapshot();
    assert_eq!((snap.queued, snap.running), (3, 1));
    assert_eq!(snap.counters.rejected.get("queue_full"), Some(&2));
    env.gated.release(10);
    env.hooks.wait_finished(5).await;
    assert_eq!(env.gated.started(), vec![0, 1, 2, 3, 6]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_follows_the_recent_throughput() {
    // One slot, jobs of 20 ms: about 50 jobs/s, so 400 queued jobs drain in ~8 s.
    let options = Options {
        queue_capacity: 400,
        ..Options::default()
    };
    let env = Env::new(resources(1, 16, 8), options);
    env.gated.auto(Duration::from_millis(20));
    for n in 0..40 {
        env.submit(&gated(n, 0)).await;
    }
    env.hooks.wait_finished(40).await;
    let rate = env.scheduler.snapshot().throughput_per_sec;
    assert!((10.0..=55.0).contains(&rate), "{rate} jobs/s");
    let mut n = 100;
    let retry_after = loop {
        match env.scheduler.submit(gated(n, 0)).await {
            Ok(()) => n += 1,
            Err(Rejection::QueueFull { retry_after, .. }) => break retry_after,
            Err(e) => panic!("{e}"),
        }
    };
    let expected = 400.0 / rate;
    let got = retry_after.as_secs_f64();
    assert!(
        // The rate moves a little while the queue fills; the 5 s fallback and the
        // 60 s ceiling are both far outside this band.
        got >= expected * 0.8 && got <= expected * 1.25 + 1.0,
        "retry_after {got} s, expected ~{expected:.1} s at {rate:.1} jobs/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permit_holds_a_place_until_used_or_dropped() {
    let options = Options {
        queue_capacity: 2,
        ..Options::default()
    };
    let env = Env::new(resources(1, 16, 8), options);
    env.submit(&gated(0, 0)).await;
    env.gated.wait_started(1).await;
    env.submit(&gated(1, 0)).await;
    let job = gated(2, 0);
    let permit = env.scheduler.reserve(&job.spec).await.unwrap();
    // The place is taken while, say, the API persists the job.
    assert!(matches!(
        env.scheduler.reserve(&job.spec).await,
        Err(Rejection::QueueFull { .. })
    ));
    drop(permit);
    let permit = env.scheduler.reserve(&job.spec).await.unwrap();
    permit.submit(job.clone()).unwrap();
    assert_eq!(env.scheduler.snapshot().queued, 2);
    env.gated.release(3);
    env.hooks.wait_finished(3).await;
    assert_eq!(env.gated.started(), vec![0, 1, 2]);
}
