//! Round trips of every operation.

use crate::util::{db, failed, open, options, spec, succeeded};
use hanzo_compute::{ComputeError, LimitKind, Receipt, RuntimeKind};
use hanzo_jobstore::{CancelOutcome, Error, JobRecord, JobStatus, JobStore, Options};
use serde_json::json;

#[tokio::test]
async fn submit_then_get_returns_the_same_record() {
    let (_dir, path) = db();
    let (store, recovery) = open(&path);
    assert!(recovery.queued.is_empty());
    let mut s = spec(1).function("shout");
    s.priority = 7;
    s.retries = 2;
    s.env.insert("K".into(), "v".into());
    let job = store.submit(s.clone()).await.unwrap();
    assert_eq!(job.id.len(), 32);
    assert_eq!(job.status, JobStatus::Queued);
    assert_eq!((job.priority, job.attempts), (7, 0));
    assert_eq!(job.spec, s);
    let got = store.get(&job.id).unwrap().unwrap();
    assert_eq!(got, job);
    // The record travels as JSON (the API) and comes back identical.
    let text = serde_json::to_string(&got).unwrap();
    assert!(text.contains("\"status\":\"queued\""), "{text}");
    let back: JobRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back, got);
}

#[tokio::test]
async fn start_and_finish_keep_output_receipt_usage_and_logs() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let job = store.submit(spec(2)).await.unwrap();
    assert!(store.start(&job.id).await.unwrap());
    assert!(
        !store.start(&job.id).await.unwrap(),
        "a running job must not start again"
    );
    let running = store.get(&job.id).unwrap().unwrap();
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(running.attempts, 1);
    assert!(running.started_at.unwrap() >= running.created_at);
    assert_eq!(store.logs(&job.id).unwrap(), Some(Vec::new()));

    let outcome = succeeded(&job.id, &job.spec, json!({ "echo": 2 }));
    assert!(store.finish(&outcome).await.unwrap());
    let done = store.get(&job.id).unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.output, Some(json!({ "echo": 2 })));
    assert_eq!(done.error, None);
    assert_eq!(done.usage.as_ref(), Some(&outcome.usage));
    assert!(done.finished_at.unwrap() >= done.started_at.unwrap());
    // The stored receipt is the signed one: it still verifies.
    let receipt = Receipt::verify(done.receipt.as_ref().unwrap()).unwrap();
    assert_eq!(receipt.job_id, job.id);
    assert_eq!(store.logs(&job.id).unwrap().unwrap(), b"a log line\n");
    // Terminal is terminal.
    assert!(!store.finish(&outcome).await.unwrap());
    assert!(!store.start(&job.id).await.unwrap());
}

#[tokio::test]
async fn errors_are_stored_with_code_and_message() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let a = store.submit(spec(1)).await.unwrap();
    let b = store.submit(spec(2)).await.unwrap();
    for id in [&a.id, &b.id] {
        assert!(store.start(id).await.unwrap());
    }
    let limit = ComputeError::limit(LimitKind::Timeout, "ran for 30 s");
    assert!(store.finish(&failed(&a.id, limit.clone())).await.unwrap());
    assert!(
        store
            .finish(&failed(&b.id, ComputeError::Cancelled))
            .await
            .unwrap()
    );
    let a = store.get(&a.id).unwrap().unwrap();
    assert_eq!(a.status, JobStatus::Failed);
    let e = a.error.unwrap();
    assert_eq!(e.code, "limit_exceeded");
    assert_eq!(e.message, limit.to_string());
    assert_eq!(a.output, None);
    let b = store.get(&b.id).unwrap().unwrap();
    assert_eq!(b.status, JobStatus::Cancelled);
    assert_eq!(b.error.unwrap().code, "cancelled");
}

#[tokio::test]
async fn a_queued_job_can_fail_without_running() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let job = store.submit(spec(1)).await.unwrap();
    let e = ComputeError::Unavailable("docker: no daemon".into());
    assert!(store.finish(&failed(&job.id, e)).await.unwrap());
    let got = store.get(&job.id).unwrap().unwrap();
    assert_eq!(got.status, JobStatus::Failed);
    assert_eq!(got.attempts, 0);
    assert_eq!(got.error.unwrap().code, "unavailable");
    assert!(!store.start(&job.id).await.unwrap());
}

#[tokio::test]
async fn cancel_covers_queued_running_finished_and_unknown_jobs() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let queued = store.submit(spec(1)).await.unwrap();
    let running = store.submit(spec(2)).await.unwrap();
    let done = store.submit(spec(3)).await.unwrap();
    assert!(store.start(&running.id).await.unwrap());
    assert!(store.start(&done.id).await.unwrap());
    let out = succeeded(&done.id, &done.spec, json!(3));
    assert!(store.finish(&out).await.unwrap());

    assert_eq!(store.cancel(&queued.id).await.unwrap(), CancelOutcome::Cancelled);
    let q = store.get(&queued.id).unwrap().unwrap();
    assert_eq!(q.status, JobStatus::Cancelled);
    assert!(q.finished_at.is_some());
    assert!(
        !store.start(&queued.id).await.unwrap(),
        "a cancelled job must never start"
    );

    assert_eq!(store.cancel(&running.id).await.unwrap(), CancelOutcome::Requested);
    let r = store.get(&running.id).unwrap().unwrap();
    assert_eq!((r.status, r.cancel_requested), (JobStatus::Running, true));
    assert!(
        store
            .finish(&failed(&running.id, ComputeError::Cancelled))
            .await
            .unwrap()
    );
    assert_eq!(
        store.cancel(&running.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobStatus::Cancelled)
    );
    assert_eq!(
        store.cancel(&done.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(JobStatus::Succeeded)
    );
    assert_eq!(
        store.cancel("0123456789abcdef").await.unwrap(),
        CancelOutcome::NotFound
    );
}

#[tokio::test]
async fn unknown_ids_are_reported_as_absent() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    assert_eq!(store.get("nope").unwrap(), None);
    assert_eq!(store.logs("nope").unwrap(), None);
    assert!(!store.start("nope").await.unwrap());
    assert!(
        !store
            .finish(&failed("nope", ComputeError::internal("x")))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn logs_beyond_the_cap_are_cut_with_a_note() {
    let (_dir, path) = db();
    let opts = Options {
        max_log_bytes: 1000,
        ..options()
    };
    let (store, _) = JobStore::open(&path, opts).unwrap();
    let job = store.submit(spec(1)).await.unwrap();
    assert!(store.start(&job.id).await.unwrap());
    let mut out = failed(&job.id, ComputeError::ToolFailed("boom".into()));
    out.logs = vec![b'x'; 5000];
    assert!(store.finish(&out).await.unwrap());
    let logs = store.logs(&job.id).unwrap().unwrap();
    assert!(logs.starts_with(&[b'x'; 1000]));
    let tail = String::from_utf8_lossy(&logs[1000..]).into_owned();
    assert_eq!(tail, "\n[hanzo-node: 4000 more bytes of logs dropped]\n");
}

#[tokio::test]
async fn counts_are_by_runtime_and_status() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let mut ids = Vec::new();
    for n in 0..6 {
        let mut s = spec(n);
        if n % 2 == 1 {
            s.runtime = RuntimeKind::Python;
        }
        ids.push(store.submit(s).await.unwrap().id);
    }
    // wasm: 0 queued→running, 2 succeeded, 4 queued; python: 1,3 cancelled, 5 queued.
    assert!(store.start(&ids[0]).await.unwrap());
    assert!(store.start(&ids[2]).await.unwrap());
    let out = succeeded(&ids[2], &spec(2), json!(null));
    assert!(store.finish(&out).await.unwrap());
    store.cancel(&ids[1]).await.unwrap();
    store.cancel(&ids[3]).await.unwrap();
    let counts = store.counts().unwrap();
    let c = |r, s| counts.get(&(r, s)).copied();
    assert_eq!(c(RuntimeKind::Wasm, JobStatus::Running), Some(1));
    assert_eq!(c(RuntimeKind::Wasm, JobStatus::Succeeded), Some(1));
    assert_eq!(c(RuntimeKind::Wasm, JobStatus::Queued), Some(1));
    assert_eq!(c(RuntimeKind::Python, JobStatus::Cancelled), Some(2));
    assert_eq!(c(RuntimeKind::Python, JobStatus::Queued), Some(1));
    assert_eq!(counts.values().sum::<u64>(), 6);
}

#[tokio::test]
async fn a_second_open_of_the_same_store_is_refused_until_the_first_closes() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let job = store.submit(spec(1)).await.unwrap();
    let err = JobStore::open(&path, options()).unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err}");
    assert!(err.to_string().contains("another"), "{err}");
    let clone = store.clone();
    drop(store);
    // A clone keeps the store open.
    assert!(JobStore::open(&path, options()).is_err());
    drop(clone);
    let (store, recovery) = open(&path);
    assert_eq!(recovery.queued.len(), 1);
    assert_eq!(store.get(&job.id).unwrap().unwrap().id, job.id);
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused() {
    let (_dir, path) = db();
    drop(open(&path));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = JobStore::open(&path, options()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaVersion {
                found: 99,
                supported: 4
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn the_database_is_in_wal_mode_and_locked() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    store.submit(spec(1)).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    assert!(path.with_file_name("jobs.db-wal").exists());
    assert!(path.with_file_name("jobs.db.lock").exists());
}

/// A listing holds no outputs (a page of six 40 MiB outputs once cost the node
/// 1 GB): rows carry `output_bytes` only, while `get` and `get_raw` still give the
/// output, the latter as the exact JSON text stored.
#[tokio::test]
async fn list_rows_and_summaries_carry_the_output_size_not_the_output() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    let job = store.submit(spec(1)).await.unwrap();
    assert!(store.start(&job.id).await.unwrap());
    let output = json!({ "text": "é".repeat(1000), "n": [1, 2, 3] });
    let text = serde_json::to_vec(&output).unwrap();
    assert!(
        store
            .finish(&succeeded(&job.id, &job.spec, output.clone()))
            .await
            .unwrap()
    );
    let queued = store.submit(spec(2)).await.unwrap();

    let page = store.list(Default::default(), Default::default()).unwrap();
    assert_eq!(page.jobs.len(), 2);
    let row = page.jobs.iter().find(|j| j.id == job.id).unwrap();
    assert_eq!(row.output, None, "a list row must not carry the output");
    // Bytes, not characters: "é" is two bytes of UTF-8.
    assert_eq!(row.output_bytes, Some(text.len() as u64));
    let listed = serde_json::to_value(row).unwrap();
    assert_eq!(listed["output_bytes"], json!(text.len()));
    let other = page.jobs.iter().find(|j| j.id == queued.id).unwrap();
    assert_eq!((other.output.as_ref(), other.output_bytes), (None, None));
    assert!(serde_json::to_value(other).unwrap().get("output_bytes").is_none());

    let summary = store.get_summary(&job.id).unwrap().unwrap();
    assert_eq!(
        (summary.output, summary.output_bytes),
        (None, Some(text.len() as u64))
    );
    assert_eq!(summary.status, JobStatus::Succeeded);
    assert!(summary.receipt.is_some());

    let raw = store.get_raw(&job.id).unwrap().unwrap();
    assert_eq!(raw.output.as_deref(), Some(&text[..]));
    assert_eq!(raw.record.output, None);
    assert_eq!(store.get(&job.id).unwrap().unwrap().output, Some(output));
    let raw = store.get_raw(&queued.id).unwrap().unwrap();
    assert_eq!(raw.output, None);
    assert!(store.get_raw("nope").unwrap().is_none());
    assert!(store.get_summary("nope").unwrap().is_none());
}

/// The health probe commits through the writer.
#[tokio::test]
async fn the_probe_commits() {
    let (_dir, path) = db();
    let (store, _) = open(&path);
    store.probe().await.unwrap();
    let job = store.submit(spec(1)).await.unwrap();
    assert!(store.get(&job.id).unwrap().is_some());
}
