//! The network's side of the store (schema version 3): attempts of a job on peers
//! (placements) and their fence, jobs run for a peer (origin, idempotent by execution
//! id), the restart rule for jobs in flight on a peer, retention, and the upgrade of a
//! version-2 store.

use crate::util::{db, failed, integrity, old_store, open, options, spec, succeeded, user_version};
use hanzo_compute::ComputeError;
use hanzo_jobstore::{
    Accepted, CancelOutcome, Error, INTERRUPTED, JobRecord, JobStatus, JobStore, ListFilter, Origin, Page,
    PlacementOutcome, Retention,
};
use serde_json::json;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

fn origin(peer: &str, execution: &str) -> Origin {
    Origin {
        peer_id: peer.into(),
        execution_id: execution.into(),
    }
}

/// `(peer, execution id, outcome, reason)` of each placement, in the order given.
fn attempts(job: &JobRecord) -> Vec<(&str, &str, PlacementOutcome, Option<&str>)> {
    job.placements
        .iter()
        .map(|p| {
            (
                p.peer_id.as_str(),
                p.execution_id.as_str(),
                p.outcome,
                p.reason.as_deref(),
            )
        })
        .collect()
}

fn placement_rows(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT COUNT(*) FROM placements", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_version_2_store_is_upgraded_in_place_and_its_jobs_keep_working() {
    let (_dir, path) = db();
    // A store as version 2 left it: a queued job, a finished one with output, receipt
    // and logs, and a tool.
    let finished_spec = spec(2);
    let outcome = succeeded("done", &finished_spec, json!({"r": 2}));
    {
        let conn = old_store(&path, 2);
        conn.execute(
            "INSERT INTO jobs (id, runtime, status, priority, retries, created_at, spec)
             VALUES ('waiting', 'wasm', 'queued', 3, 1, 1000, ?1)",
            [serde_json::to_string(&spec(1)).unwrap()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO jobs (id, runtime, status, priority, retries, attempts, created_at,
                 started_at, finished_at, usage, spec, output, receipt, logs)
             VALUES ('done', 'wasm', 'succeeded', 0, 0, 1, 2000, 2100, 2200, ?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                serde_json::to_string(&outcome.usage).unwrap(),
                serde_json::to_string(&finished_spec).unwrap(),
                r#"{"r":2}"#,
                serde_json::to_string(&outcome.receipt.as_ref().unwrap().to_value()).unwrap(),
                b"old logs\n".to_vec(),
            ],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO tools (name, created_at, updated_at, definition)
             VALUES ('t', 1, 1, '{\"name\":\"t\",\"runtime\":\"wasm\",\"source\":\"sha256:00\"}')",
            [],
        )
        .unwrap();
    }

    let (store, rec) = open(&path);
    assert_eq!(user_version(&path), 4);
    assert!(rec.remote.is_empty());
    assert_eq!(rec.queued.len(), 1);
    assert_eq!(rec.queued[0].id, "waiting");
    assert!(rec.queued[0].placements.is_empty());

    let waiting = store.get("waiting").unwrap().unwrap();
    assert_eq!(
        (waiting.status, waiting.priority, waiting.attempts),
        (JobStatus::Queued, 3, 0)
    );
    assert_eq!(waiting.spec, spec(1));
    assert!(waiting.placements.is_empty() && waiting.origin.is_none());
    let done = store.get("done").unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.output, Some(json!({"r": 2})));
    assert_eq!(done.usage.as_ref(), Some(&outcome.usage));
    assert!(hanzo_compute::Receipt::verify(done.receipt.as_ref().unwrap()).is_ok());
    assert!(done.placements.is_empty() && done.origin.is_none());
    assert_eq!(store.logs("done").unwrap().unwrap(), b"old logs\n");
    assert_eq!(store.get_tool("t").unwrap().unwrap().spec.source, "sha256:00");
    let page = store.list(ListFilter::default(), Page::default()).unwrap();
    assert_eq!(page.jobs.len(), 2);
    assert!(page.jobs.iter().all(|j| j.placements.is_empty()));

    // The old jobs take part in everything new: the queued one is placed on a peer and
    // started, new jobs (local and for peers) go in beside them.
    store.add_placement("waiting", "peer-a", "x1").await.unwrap();
    assert!(store.start("waiting").await.unwrap());
    let (peer_job, created) = store
        .submit_for_peer(spec(3), origin("peer-b", "e1"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(store.find_execution("e1").unwrap().unwrap().id, peer_job.id);
    let local = store.submit(spec(4)).await.unwrap();
    assert_eq!(store.get(&local.id).unwrap().unwrap(), local);
    drop(store);

    // Reopening the upgraded store migrates nothing again and recovers the remote job.
    let (store, rec) = open(&path);
    assert_eq!(rec.remote.len(), 1);
    assert_eq!(rec.remote[0].id, "waiting");
    assert_eq!(
        store.get(&peer_job.id).unwrap().unwrap().origin,
        Some(origin("peer-b", "e1"))
    );
    drop(store);
    assert_eq!(integrity(&path), "ok");
}

#[tokio::test]
async fn placements_are_appended_in_order_and_ended_once() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let job = store.submit(spec(1)).await.unwrap();
    let before = SystemTime::now() - Duration::from_secs(1);

    store.add_placement(&job.id, "peer-a", "x1").await.unwrap();
    assert!(store.start(&job.id).await.unwrap());
    let got = store.get(&job.id).unwrap().unwrap();
    assert_eq!(
        attempts(&got),
        vec![("peer-a", "x1", PlacementOutcome::Running, None)]
    );
    assert!(got.placements[0].started_at >= before);
    assert_eq!(got.placements[0].ended_at, None);

    // peer-a goes silent: the attempt is lost, the job goes to peer-b.
    assert!(
        store
            .end_placement("x1", PlacementOutcome::Lost, Some("no heartbeat for 10 s"))
            .await
            .unwrap()
    );
    store.add_placement(&job.id, "peer-b", "x2").await.unwrap();
    // The fence: peer-a's late result changes nothing, nor does a second end.
    assert!(
        !store
            .end_placement("x1", PlacementOutcome::Succeeded, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_placement("x1", PlacementOutcome::Lost, Some("again"))
            .await
            .unwrap()
    );
    assert!(
        store
            .end_placement("x2", PlacementOutcome::Succeeded, None)
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_placement("x2", PlacementOutcome::Failed, Some("late"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .end_placement("nobody", PlacementOutcome::Lost, None)
            .await
            .unwrap()
    );
    assert!(matches!(
        store.end_placement("x2", PlacementOutcome::Running, None).await,
        Err(Error::InvalidEnd)
    ));

    let got = store.get(&job.id).unwrap().unwrap();
    assert_eq!(
        attempts(&got),
        vec![
            (
                "peer-a",
                "x1",
                PlacementOutcome::Lost,
                Some("no heartbeat for 10 s")
            ),
            ("peer-b", "x2", PlacementOutcome::Succeeded, None),
        ]
    );
    for p in &got.placements {
        assert!(p.ended_at.unwrap() >= p.started_at);
    }
    // The job's own status is the caller's to record.
    assert_eq!(got.status, JobStatus::Running);
    assert!(
        store
            .finish(&succeeded(&job.id, &job.spec, json!(1)))
            .await
            .unwrap()
    );
    let done = store.get(&job.id).unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.placements, got.placements);
    // Every read carries them, the same.
    assert_eq!(
        store.get_summary(&job.id).unwrap().unwrap().placements,
        got.placements
    );
    assert_eq!(
        store.get_raw(&job.id).unwrap().unwrap().record.placements,
        got.placements
    );

    // Refusals write nothing.
    let other = store.submit(spec(2)).await.unwrap();
    match store.add_placement(&other.id, "peer-c", "x1").await {
        Err(Error::ExecutionTaken(e)) => assert_eq!(e, "x1"),
        r => panic!("a taken execution id was accepted: {r:?}"),
    }
    match store.add_placement("no-such-job", "peer-c", "x9").await {
        Err(Error::JobNotFound(id)) => assert_eq!(id, "no-such-job"),
        r => panic!("a placement of an unknown job was accepted: {r:?}"),
    }
    assert!(store.get(&other.id).unwrap().unwrap().placements.is_empty());
    assert_eq!(placement_rows(&path), 2);
    // The record travels as JSON (the API) and comes back identical.
    let text = serde_json::to_string(&done).unwrap();
    assert!(text.contains(r#""outcome":"lost""#), "{text}");
    assert!(!text.contains("\"origin\""), "{text}");
    let back: JobRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back, done);
}

#[tokio::test]
async fn list_fills_each_jobs_placements_oldest_first() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let mut ids = Vec::new();
    for n in 0..6 {
        let job = store.submit(spec(n)).await.unwrap();
        // Job n has n attempts, on peers p0..p(n-1), every one but the last lost.
        for k in 0..n {
            let x = format!("{}-{k}", job.id);
            store.add_placement(&job.id, &format!("p{k}"), &x).await.unwrap();
            if k + 1 < n {
                assert!(
                    store
                        .end_placement(&x, PlacementOutcome::Lost, None)
                        .await
                        .unwrap()
                );
            }
        }
        ids.push(job.id);
    }
    let check = |job: &JobRecord| {
        let n = ids.iter().position(|id| *id == job.id).unwrap();
        let peers: Vec<_> = job.placements.iter().map(|p| p.peer_id.clone()).collect();
        let want: Vec<_> = (0..n).map(|k| format!("p{k}")).collect();
        assert_eq!(peers, want, "job {n}");
        for (k, p) in job.placements.iter().enumerate() {
            let expected = if k + 1 < n {
                PlacementOutcome::Lost
            } else {
                PlacementOutcome::Running
            };
            assert_eq!(p.outcome, expected);
            assert_eq!(p.execution_id, format!("{}-{k}", job.id));
        }
    };
    // Across pages too.
    let first = store.list(ListFilter::default(), Page::first(4)).unwrap();
    assert_eq!(first.jobs.len(), 4);
    let second = store
        .list(
            ListFilter::default(),
            Page {
                limit: 4,
                after: first.next,
            },
        )
        .unwrap();
    assert_eq!(second.jobs.len(), 2);
    for job in first.jobs.iter().chain(&second.jobs) {
        check(job);
        assert_eq!(*job, store.get_summary(&job.id).unwrap().unwrap());
    }
}

#[tokio::test]
async fn submit_for_peer_makes_one_job_per_execution_id() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let (job, created) = store
        .submit_for_peer(spec(1), origin("peer-a", "e1"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!(job.origin, Some(origin("peer-a", "e1")));
    assert_eq!(store.get(&job.id).unwrap().unwrap(), job);
    assert_eq!(store.find_execution("e1").unwrap().unwrap(), job);
    assert_eq!(store.find_execution("e2").unwrap(), None);

    // The offer again (its answer was lost): the same job, not a second one, even once
    // it runs; whatever spec came with the repeat.
    assert!(store.start(&job.id).await.unwrap());
    let (again, created) = store
        .submit_for_peer(spec(99), origin("peer-a", "e1"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again.id, job.id);
    assert_eq!((again.status, again.attempts), (JobStatus::Running, 1));
    assert_eq!(again.spec, spec(1));
    // Another peer naming that execution id does not get peer-a's job.
    match store.submit_for_peer(spec(1), origin("peer-b", "e1")).await {
        Err(Error::ExecutionTaken(e)) => assert_eq!(e, "e1"),
        r => panic!("peer-b got {r:?}"),
    }
    // A finished job is handed back as it is (no output, its size instead).
    assert!(
        store
            .finish(&succeeded(&job.id, &job.spec, json!("out")))
            .await
            .unwrap()
    );
    let (done, created) = store
        .submit_for_peer(spec(1), origin("peer-a", "e1"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!((done.output, done.output_bytes), (None, Some(5)));
    assert_eq!(
        store
            .list(ListFilter::default(), Page::default())
            .unwrap()
            .jobs
            .len(),
        1
    );

    // Another execution id of the same peer is another job; local jobs have no origin.
    let (second, created) = store
        .submit_for_peer(spec(2), origin("peer-a", "e2"))
        .await
        .unwrap();
    assert!(created && second.id != job.id);
    let local = store.submit(spec(3)).await.unwrap();
    assert_eq!(store.get(&local.id).unwrap().unwrap().origin, None);
    let text = serde_json::to_string(&second).unwrap();
    assert!(
        text.contains(r#""origin":{"peer_id":"peer-a","execution_id":"e2"}"#),
        "{text}"
    );
    assert_eq!(serde_json::from_str::<JobRecord>(&text).unwrap(), second);
    // Kept across a restart.
    drop(store);
    let (store, rec) = open(&path);
    assert_eq!(rec.queued.len(), 2);
    assert_eq!(store.find_execution("e2").unwrap().unwrap(), second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_repeats_of_an_offer_make_one_job() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    // Enough at once that several repeats land in one group-commit batch.
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .submit_for_peer(spec(1), origin("peer-a", "dup"))
                .await
                .unwrap()
        }));
    }
    let mut created = 0;
    let mut ids = HashSet::new();
    for t in tasks {
        let (job, c) = t.await.unwrap();
        created += c as u32;
        ids.insert(job.id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(
        store
            .list(ListFilter::default(), Page::default())
            .unwrap()
            .jobs
            .len(),
        1
    );
}

#[tokio::test]
async fn restart_attempt_counts_another_attempt_of_a_running_job() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let job = store.submit(spec(1)).await.unwrap();
    assert!(
        !store.restart_attempt(&job.id).await.unwrap(),
        "a queued job is started, not restarted"
    );
    assert!(store.start(&job.id).await.unwrap());
    let first = store.get(&job.id).unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(store.restart_attempt(&job.id).await.unwrap());
    let second = store.get(&job.id).unwrap().unwrap();
    assert_eq!((second.status, second.attempts), (JobStatus::Running, 2));
    assert!(second.started_at > first.started_at);
    assert!(
        store
            .finish(&failed(&job.id, ComputeError::ToolFailed("x".into())))
            .await
            .unwrap()
    );
    assert!(!store.restart_attempt(&job.id).await.unwrap(), "a finished job");
    assert!(!store.restart_attempt("no-such-job").await.unwrap());

    let cancelled = store.submit(spec(2)).await.unwrap();
    assert!(store.start(&cancelled.id).await.unwrap());
    assert_eq!(
        store.cancel(&cancelled.id).await.unwrap(),
        CancelOutcome::Requested
    );
    assert!(
        !store.restart_attempt(&cancelled.id).await.unwrap(),
        "a job being cancelled"
    );
    assert_eq!(store.get(&cancelled.id).unwrap().unwrap().attempts, 1);
}

#[tokio::test]
async fn jobs_in_flight_on_a_peer_survive_a_restart_untouched() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let submit = |n: u64, retries: u32| {
        let store = store.clone();
        async move {
            let mut s = spec(n);
            s.retries = retries;
            store.submit(s).await.unwrap().id
        }
    };
    // In flight on peer-a (no retries left: the old rule would fail it).
    let remote = submit(1, 0).await;
    store.add_placement(&remote, "peer-a", "r1").await.unwrap();
    assert!(store.start(&remote).await.unwrap());
    // Lost on peer-a, placed again on peer-b and in flight there.
    let replaced = submit(2, 1).await;
    store.add_placement(&replaced, "peer-a", "p1").await.unwrap();
    assert!(store.start(&replaced).await.unwrap());
    assert!(
        store
            .end_placement("p1", PlacementOutcome::Lost, Some("gone"))
            .await
            .unwrap()
    );
    store.add_placement(&replaced, "peer-b", "p2").await.unwrap();
    assert!(store.restart_attempt(&replaced).await.unwrap());
    // In flight, with a cancel asked: still the placement code's to stop on the peer.
    let stopping = submit(3, 5).await;
    store.add_placement(&stopping, "peer-a", "s1").await.unwrap();
    assert!(store.start(&stopping).await.unwrap());
    assert_eq!(store.cancel(&stopping).await.unwrap(), CancelOutcome::Requested);
    // Between attempts (the last one lost): the old rule, failed or queued again.
    let between = submit(4, 0).await;
    store.add_placement(&between, "peer-a", "b1").await.unwrap();
    assert!(store.start(&between).await.unwrap());
    assert!(
        store
            .end_placement("b1", PlacementOutcome::Lost, None)
            .await
            .unwrap()
    );
    let between_retry = submit(5, 1).await;
    store.add_placement(&between_retry, "peer-a", "c1").await.unwrap();
    assert!(store.start(&between_retry).await.unwrap());
    assert!(
        store
            .end_placement("c1", PlacementOutcome::Failed, Some("declined"))
            .await
            .unwrap()
    );
    // Running here, never placed: the old rule.
    let local = submit(6, 0).await;
    assert!(store.start(&local).await.unwrap());
    // Offer recorded, no answer yet: queued, with its running attempt.
    let offered = submit(7, 0).await;
    store.add_placement(&offered, "peer-c", "o1").await.unwrap();
    let before: Vec<JobRecord> = [&remote, &replaced, &stopping]
        .iter()
        .map(|id| store.get(id).unwrap().unwrap())
        .collect();
    // The node stops (the rows say `running`, as after a kill -9; the crash tests kill
    // a real process).
    drop(store);

    let (store, rec) = open(&path);
    // Untouched, oldest first, with their placements.
    assert_eq!(rec.remote, before);
    assert_eq!(rec.remote[1].placements.len(), 2);
    assert!(rec.remote[2].cancel_requested);
    for job in &before {
        assert_eq!(store.get(&job.id).unwrap().unwrap(), *job);
    }
    assert_eq!(rec.failed, vec![between.clone(), local.clone()]);
    assert_eq!(rec.retried, vec![between_retry.clone()]);
    assert!(rec.cancelled.is_empty());
    let queued: Vec<_> = rec.queued.iter().map(|j| j.id.clone()).collect();
    assert_eq!(queued, vec![between_retry.clone(), offered.clone()]);
    assert_eq!(
        attempts(&rec.queued[1]),
        vec![("peer-c", "o1", PlacementOutcome::Running, None)]
    );
    assert_eq!(
        attempts(&rec.queued[0]),
        vec![("peer-a", "c1", PlacementOutcome::Failed, Some("declined"))]
    );
    let b = store.get(&between).unwrap().unwrap();
    assert_eq!(
        (b.status, b.error.unwrap().code.as_str()),
        (JobStatus::Failed, INTERRUPTED)
    );
    assert_eq!(b.placements.len(), 1, "the rule leaves placements alone");

    // The placement code re-attaches: peer-a's result arrives for `remote`; `replaced`
    // loses its second peer too and fails; `stopping` is cancelled on the peer.
    assert!(
        store
            .end_placement("r1", PlacementOutcome::Succeeded, None)
            .await
            .unwrap()
    );
    assert!(
        store
            .finish(&succeeded(&remote, &spec(1), json!("r")))
            .await
            .unwrap()
    );
    assert!(
        store
            .end_placement("p2", PlacementOutcome::Lost, None)
            .await
            .unwrap()
    );
    // No running attempt is left and nothing finished it: the next restart applies the
    // old rule (attempts 2 > retries 1: failed).
    assert!(
        store
            .end_placement("s1", PlacementOutcome::Cancelled, None)
            .await
            .unwrap()
    );
    drop(store);
    let (store, rec) = open(&path);
    assert!(rec.remote.is_empty());
    assert_eq!(rec.failed, vec![replaced.clone()]);
    assert_eq!(rec.cancelled, vec![stopping.clone()]);
    assert_eq!(store.get(&remote).unwrap().unwrap().status, JobStatus::Succeeded);
    drop(store);
    assert_eq!(integrity(&path), "ok");
}

#[tokio::test]
async fn retention_deletes_placements_with_their_jobs() {
    let (_dir, path) = db();
    let keep = Retention {
        max_age: None,
        max_finished: Some(2),
        interval: Duration::from_secs(3600),
    };
    let (store, _) = JobStore::open(
        &path,
        hanzo_jobstore::Options {
            retention: keep,
            ..options()
        },
    )
    .unwrap();
    let mut finished = Vec::new();
    for n in 0..5 {
        let job = store.submit(spec(n)).await.unwrap();
        store
            .add_placement(&job.id, "peer-a", &format!("a{n}"))
            .await
            .unwrap();
        store
            .add_placement(&job.id, "peer-b", &format!("b{n}"))
            .await
            .unwrap();
        assert!(store.start(&job.id).await.unwrap());
        assert!(
            store
                .finish(&succeeded(&job.id, &job.spec, json!(n)))
                .await
                .unwrap()
        );
        finished.push(job.id);
    }
    let live = store.submit(spec(9)).await.unwrap().id;
    store.add_placement(&live, "peer-a", "live").await.unwrap();
    assert_eq!(placement_rows(&path), 11);

    assert_eq!(store.prune().await.unwrap(), 3);
    assert_eq!(
        placement_rows(&path),
        5,
        "the 3 pruned jobs' 6 placements went with them"
    );
    for id in &finished[..3] {
        assert!(store.get(id).unwrap().is_none());
    }
    for id in &finished[3..] {
        assert_eq!(store.get(id).unwrap().unwrap().placements.len(), 2);
    }
    assert_eq!(store.get(&live).unwrap().unwrap().placements.len(), 1);
    // The execution ids of pruned attempts are free again; kept ones are not.
    let again = store.submit(spec(10)).await.unwrap().id;
    store.add_placement(&again, "peer-a", "a0").await.unwrap();
    assert!(matches!(
        store.add_placement(&again, "peer-a", "a4").await,
        Err(Error::ExecutionTaken(_))
    ));
}

#[tokio::test]
async fn lookups_by_execution_id_and_job_use_their_indexes() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    store.submit(spec(1)).await.unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        rows.join("; ")
    };
    let p = plan("SELECT id FROM jobs WHERE execution_id = 'x'");
    assert!(p.contains("USING INDEX jobs_execution"), "{p}");
    let p = plan("SELECT peer_id FROM placements WHERE job_id = 'j' ORDER BY seq");
    assert!(
        p.contains("USING INDEX placements_job") && !p.contains("TEMP B-TREE"),
        "{p}"
    );
    let p = plan(
        "SELECT peer_id FROM placements WHERE job_id IN (SELECT value FROM json_each('[\"a\"]'))
         ORDER BY job_id, seq",
    );
    assert!(p.contains("USING INDEX placements_job"), "{p}");
    let p = plan("UPDATE placements SET outcome = 'lost' WHERE execution_id = 'x'");
    assert!(p.contains("USING INDEX sqlite_autoindex_placements"), "{p}");
}

#[tokio::test]
async fn a_version_3_store_gains_the_verification_block_and_acceptances_and_keeps_its_placements() {
    let (_dir, path) = db();
    {
        let conn = old_store(&path, 3);
        conn.execute(
            "INSERT INTO jobs (id, runtime, status, priority, retries, attempts, created_at,
                 started_at, spec)
             VALUES ('placed', 'wasm', 'running', 0, 0, 1, 1000, 1100, ?1)",
            [serde_json::to_string(&spec(1)).unwrap()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO placements (job_id, seq, execution_id, peer_id, outcome, started_at)
             VALUES ('placed', 1, 'e1', 'p1', 'running', 1100)",
            [],
        )
        .unwrap();
    }
    let (store, rec) = open(&path);
    assert_eq!(user_version(&path), 4);
    assert_eq!(rec.remote.len(), 1, "the running placement is re-attached");
    let job = store.get("placed").unwrap().unwrap();
    assert_eq!(job.placements.len(), 1);
    assert_eq!(job.placements[0].execution_id, "e1");
    assert_eq!(job.verification, None);
    // An acceptance is stored once, for the attempt and for a job run for a peer.
    let first = json!({"amount": 7});
    assert!(
        store
            .set_acceptance(Accepted::Attempt("e1".into()), &first)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_acceptance(Accepted::Attempt("e1".into()), &json!({"amount": 9}))
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_acceptance(Accepted::Attempt("nope".into()), &first)
            .await
            .unwrap()
    );
    assert!(
        store
            .set_acceptance(Accepted::Job("placed".into()), &first)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_acceptance(Accepted::Job("placed".into()), &json!({"amount": 9}))
            .await
            .unwrap()
    );
    let job = store.get("placed").unwrap().unwrap();
    assert_eq!(job.placements[0].acceptance, Some(first.clone()));
    assert_eq!(job.acceptance, Some(first));
    let block = json!({"strategy": "redundant", "nonce": "00", "verdict": null});
    assert!(store.set_verification("placed", &block).await.unwrap());
    assert!(!store.set_verification("nope", &block).await.unwrap());
    assert_eq!(store.get("placed").unwrap().unwrap().verification, Some(block));
    drop(store);
    assert_eq!(integrity(&path), "ok");
}
