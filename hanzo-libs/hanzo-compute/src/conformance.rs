//! The conformance suite every runtime must pass, in the spirit of Nomad's shared
//! driver harness: one set of behavioural checks, written once, run against every
//! runtime with that runtime's own fixture tools.
//!
//! A runtime's test crate implements [`Harness`] (how to build a job that runs each
//! [`Fixture`] on it) and expands [`conformance_tests!`](crate::conformance_tests)
//! once; that generates one `#[tokio::test]` per check. Limit checks follow the
//! runtime's own capability table: a limit it declares `enforced` must stop the
//! fixture with a limit error naming it; a limit it does not enforce is not checked,
//! so the table and the behaviour can never disagree silently.

use crate::registry::{Compute, JobOutcome};
use crate::runtime::{Job, Runtime};
use crate::{ComputeError, JobSpec, LimitKind, NodeKey, Receipt, Support};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A behaviour the runtime's fixture tool must have. Each runtime provides a tool
/// (a module, image or script) with these behaviours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// Returns its params unchanged.
    Echo,
    /// Fails with a message containing `requested failure`.
    Fail,
    /// Never returns (a busy loop, no calls or sleeps).
    Spin,
    /// Allocates memory without bound and keeps it.
    MemoryHog,
    /// Given `{"bytes": N}`, outputs a JSON string of N characters.
    BigOutput,
    /// Given `{"message": M}`, writes M to its log stream and returns `{"logged": true}`.
    Log,
}

/// How the suite reaches one runtime.
pub trait Harness: Send + Sync {
    /// The runtime under test.
    fn runtime(&self) -> Arc<dyn Runtime>;
    /// A job that runs `fixture` on the runtime. The suite then sets params and limits.
    fn job(&self, fixture: Fixture) -> JobSpec;
}

fn compute(h: &dyn Harness) -> Compute {
    let mut c = Compute::new(Arc::new(NodeKey::generate().expect("OS randomness")));
    c.register(h.runtime());
    c
}

async fn run(
    h: &dyn Harness,
    fixture: Fixture,
    params: Value,
    tweak: impl FnOnce(&mut JobSpec),
) -> JobOutcome {
    let mut spec = h.job(fixture);
    spec.params = params;
    tweak(&mut spec);
    compute(h).run(spec).await
}

fn expect_limit(outcome: &JobOutcome, kind: LimitKind) {
    match &outcome.result {
        Err(ComputeError::LimitExceeded { limit, .. }) if *limit == kind => {}
        other => panic!("expected a {kind} limit error, got {other:?}"),
    }
    assert_eq!(outcome.result.as_ref().unwrap_err().exit_code(), 3);
}

fn verified(outcome: &JobOutcome) -> Receipt {
    let receipt = outcome.receipt.as_ref().expect("every execution has a receipt");
    Receipt::verify(&receipt.to_value()).expect("the receipt verifies")
}

/// The runtime reports itself available, with a version.
pub async fn health_is_available(h: &dyn Harness) {
    let health = h.runtime().health().await;
    assert!(health.available, "runtime unavailable: {:?}", health.detail);
    assert!(health.version.is_some());
}

/// The capability table names every limit, and the runtime enforces at least the
/// timeout and the output cap, which every runtime can.
pub async fn capabilities_are_complete(h: &dyn Harness) {
    let caps = h.runtime().capabilities();
    for kind in LimitKind::ALL {
        assert!(caps.limits.contains_key(&kind), "capability table lacks {kind}");
    }
    assert_eq!(caps.support(LimitKind::Timeout), Support::Enforced);
    assert_eq!(caps.support(LimitKind::Output), Support::Enforced);
    // A runtime claiming a deterministic profile its kind has not got would have
    // `deterministic: true` refused at the door (JobSpec::validate) while advertising
    // it; one with a profile it does not claim would make verified jobs weaker.
    let kind = h.runtime().kind();
    assert!(
        !caps.deterministic || kind.has_deterministic_profile(),
        "{kind} claims a deterministic profile its kind has not got"
    );
}

/// Params go in and come back out unchanged, with usage and a valid receipt.
pub async fn echo_round_trips(h: &dyn Harness) {
    let params = json!({"text": "héllo wörld ✓", "n": [1, 2.5, -3], "nested": {"ok": true, "none": null}});
    let out = run(h, Fixture::Echo, params.clone(), |_| {}).await;
    assert_eq!(out.result.as_ref().expect("echo succeeds"), &params);
    assert!(out.usage.wall_time_ms > 0.0);
    let r = verified(&out);
    r.check_input(&params).unwrap();
    r.check_output(&params).unwrap();
    assert_eq!(r.job_id, out.job_id);
}

/// A tool's own failure is a tool error (exit 1) with its message, and receipted.
pub async fn tool_failure_is_reported(h: &dyn Harness) {
    let out = run(h, Fixture::Fail, json!({}), |_| {}).await;
    match &out.result {
        Err(e @ ComputeError::ToolFailed(msg)) => {
            assert!(msg.contains("requested failure"), "message lost: {msg}");
            assert_eq!(e.exit_code(), 1);
        }
        other => panic!("expected a tool failure, got {other:?}"),
    }
    let r = verified(&out);
    assert_eq!(r.status, crate::receipt::Outcome::Failed);
    assert!(r.output_hash.is_none());
}

/// A tool that never returns is stopped at its timeout, and the runtime still works.
pub async fn timeout_stops_the_tool(h: &dyn Harness) {
    let t = Instant::now();
    let out = run(h, Fixture::Spin, json!({}), |s| s.limits.timeout_ms = 300).await;
    expect_limit(&out, LimitKind::Timeout);
    // A bound on correctness, not a benchmark: "stopped at 300 ms" must not mean
    // "stopped eventually".
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "timeout took {:?}",
        t.elapsed()
    );
    verified(&out);
    echo_round_trips(h).await;
}

/// A tool that allocates without bound hits the memory limit, when enforced.
pub async fn memory_limit_is_enforced(h: &dyn Harness) {
    if h.runtime().capabilities().support(LimitKind::Memory) != Support::Enforced {
        return;
    }
    let out = run(h, Fixture::MemoryHog, json!({}), |s| {
        s.limits.memory_mb = 32;
        s.limits.timeout_ms = 20_000;
    })
    .await;
    expect_limit(&out, LimitKind::Memory);
    echo_round_trips(h).await;
}

/// Output over the cap is a limit error; output under it arrives whole.
pub async fn output_cap_is_enforced(h: &dyn Harness) {
    let out = run(h, Fixture::BigOutput, json!({"bytes": 1000}), |_| {}).await;
    let s = out.result.expect("small output succeeds");
    assert_eq!(s.as_str().map(str::len), Some(1000));
    let out = run(h, Fixture::BigOutput, json!({"bytes": 2 * 1024 * 1024}), |s| {
        s.limits.max_output_bytes = 1024 * 1024
    })
    .await;
    expect_limit(&out, LimitKind::Output);
}

/// The tool's log stream is kept apart from its output.
pub async fn logs_are_kept_apart(h: &dyn Harness) {
    let out = run(
        h,
        Fixture::Log,
        json!({"message": "conformance-log-line"}),
        |_| {},
    )
    .await;
    assert_eq!(out.result.expect("log succeeds"), json!({"logged": true}));
    let logs = String::from_utf8_lossy(&out.logs);
    assert!(logs.contains("conformance-log-line"), "logs: {logs:?}");
}

/// The log stream also goes to the job's [`LogSink`](crate::stdio::LogSink) as it is
/// written (what `?follow=true` serves), byte for byte what the runtime keeps.
pub async fn logs_reach_the_live_sink(h: &dyn Harness) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let sink = {
        let seen = seen.clone();
        crate::stdio::LogSink::new(move |chunk| seen.lock().expect("not poisoned").extend_from_slice(chunk))
    };
    let mut spec = h.job(Fixture::Log);
    spec.params = json!({"message": "conformance-live-line"});
    let job = Job::new(spec).with_log_sink(sink);
    let out = compute(h).run_job(&job, crate::registry::Signing::On).await;
    assert_eq!(out.result.expect("log succeeds"), json!({"logged": true}));
    let seen = seen.lock().expect("not poisoned").clone();
    let live = String::from_utf8_lossy(&seen);
    assert!(live.contains("conformance-live-line"), "live logs: {live:?}");
    assert!(
        out.logs.starts_with(&seen),
        "the live logs {live:?} are not what was kept: {:?}",
        String::from_utf8_lossy(&out.logs)
    );
}

/// Changing any field of a receipt makes it fail verification.
pub async fn receipts_are_tamper_evident(h: &dyn Harness) {
    let out = run(h, Fixture::Echo, json!({"x": 1}), |_| {}).await;
    let v = verified(&out).to_value();
    for (field, altered) in [
        ("output_hash", json!("0".repeat(64))),
        ("input_hash", json!("1".repeat(64))),
        ("code_hash", json!("2".repeat(64))),
        ("job_id", json!("someone-else")),
        // Any runtime but the one that ran it.
        (
            "runtime",
            json!(if v["runtime"] == "wasm" { "docker" } else { "wasm" }),
        ),
        ("finished_at", json!("2000-01-01T00:00:00Z")),
    ] {
        let mut t = v.clone();
        t[field] = altered;
        assert!(Receipt::verify(&t).is_err(), "altered {field} still verifies");
    }
    let mut t = v.clone();
    t["usage"]["wall_time_ms"] = json!(0.001);
    assert!(Receipt::verify(&t).is_err(), "altered usage still verifies");
}

/// Many jobs at once each get their own answer.
pub async fn concurrent_jobs_stay_separate(h: &dyn Harness) {
    let c = Arc::new(compute(h));
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        let spec = h.job(Fixture::Echo);
        tasks.push(tokio::spawn(async move {
            let params = json!({"i": i, "pad": "x".repeat(i * 10)});
            let mut spec = spec;
            spec.params = params.clone();
            (params, c.run(spec).await)
        }));
    }
    for t in tasks {
        let (params, out) = t.await.expect("task");
        assert_eq!(out.result.expect("echo succeeds"), params);
    }
}

/// Cancelling a running job stops it promptly.
pub async fn cancel_stops_a_running_job(h: &dyn Harness) {
    let c = compute(h);
    let mut spec = h.job(Fixture::Spin);
    spec.limits.timeout_ms = 60_000;
    let job = Job::new(spec);
    let cancel = job.cancel.clone();
    let t = Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let out = c.run_job(&job, crate::registry::Signing::On).await;
    assert_eq!(out.result.unwrap_err(), ComputeError::Cancelled);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "cancel took {:?}",
        t.elapsed()
    );
}

/// Expands to one `#[tokio::test]` per conformance check, each building its
/// harness with `$harness` (an expression evaluated afresh per test).
///
/// The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            health_is_available,
            capabilities_are_complete,
            echo_round_trips,
            tool_failure_is_reported,
            timeout_stops_the_tool,
            memory_limit_is_enforced,
            output_cap_is_enforced,
            logs_are_kept_apart,
            logs_reach_the_live_sink,
            receipts_are_tamper_evident,
            concurrent_jobs_stay_separate,
            cancel_stops_a_running_job
        );
    };
    (@cases $harness:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::conformance::$name(&harness).await;
            }
        )*
    };
}
