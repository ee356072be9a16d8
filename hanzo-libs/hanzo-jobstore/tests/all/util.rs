//! Helpers shared by the tests.

use hanzo_compute::receipt::{ReceiptBody, hash_json};
use hanzo_compute::{
    ComputeError, JobOutcome, JobSpec, NodeKey, Receipt, ResourceLimits, RuntimeKind, Usage,
};
use hanzo_jobstore::{JobStore, Options, Recovery, Retention};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A fresh directory and the database path inside it.
pub fn db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.db");
    (dir, path)
}

/// Options with automatic pruning off, so that tests see exactly what they wrote.
pub fn options() -> Options {
    Options {
        retention: Retention::keep_all(),
        ..Options::default()
    }
}

pub fn open(path: &Path) -> (JobStore, Recovery) {
    JobStore::open(path, options()).unwrap()
}

/// A small WASM job numbered `n`.
pub fn spec(n: u64) -> JobSpec {
    JobSpec::new(RuntimeKind::Wasm, "sha256:00").params(json!({ "n": n }))
}

/// A successful outcome with a real signed receipt.
pub fn succeeded(job_id: &str, spec: &JobSpec, output: Value) -> JobOutcome {
    let key = NodeKey::from_seed([7; 32]);
    let mut usage = Usage::default();
    usage.set_wall_time(std::time::Duration::from_micros(1234));
    usage.fuel_consumed = Some(42);
    let receipt = Receipt::sign(
        ReceiptBody {
            job_id: job_id.to_string(),
            runtime: spec.runtime,
            function: spec.function_or_default().to_string(),
            code_hash: "00".repeat(32),
            input_hash: hash_json(&spec.params),
            result: Ok(hash_json(&output)),
            usage: usage.clone(),
            limits: ResourceLimits::default(),
            deterministic: false,
            started_at: SystemTime::now(),
            finished_at: SystemTime::now(),
            context_hash: "11".repeat(32),
            runtime_version: "wasm test".into(),
            nonce: None,
        },
        &key,
    )
    .unwrap();
    JobOutcome {
        job_id: job_id.to_string(),
        result: Ok(output),
        usage,
        logs: b"a log line\n".to_vec(),
        receipt: Some(receipt),
    }
}

/// An outcome without output.
pub fn failed(job_id: &str, error: ComputeError) -> JobOutcome {
    JobOutcome {
        job_id: job_id.to_string(),
        result: Err(error),
        usage: Usage::default(),
        logs: Vec::new(),
        receipt: None,
    }
}

/// `PRAGMA integrity_check` through a separate connection.
pub fn integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// The `jobs` table and indexes exactly as schema version 1 made them (and version 2
/// kept them), to build stores that older versions left behind.
pub const V1_SCHEMA: &str = "
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    runtime          TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    retries          INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    error_code       TEXT,
    error_message    TEXT,
    usage            TEXT,
    spec             TEXT    NOT NULL,
    output           TEXT,
    receipt          TEXT,
    logs             BLOB
);
CREATE INDEX jobs_status ON jobs (status, seq);
CREATE INDEX jobs_runtime_status ON jobs (runtime, status, seq);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
";

/// What version 2 added: the named tools.
pub const V2_TOOLS: &str = "
CREATE TABLE tools (
    name       TEXT    PRIMARY KEY,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    definition TEXT    NOT NULL
);
";

/// What version 3 added: where a peer's job came from, and the attempts on peers.
pub const V3: &str = "
ALTER TABLE jobs ADD COLUMN origin_peer TEXT;
ALTER TABLE jobs ADD COLUMN execution_id TEXT;
CREATE UNIQUE INDEX jobs_execution ON jobs (execution_id) WHERE execution_id IS NOT NULL;
CREATE TABLE placements (
    job_id       TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    execution_id TEXT    NOT NULL UNIQUE,
    peer_id      TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    reason       TEXT,
    started_at   INTEGER NOT NULL,
    ended_at     INTEGER
);
CREATE UNIQUE INDEX placements_job ON placements (job_id, seq);
CREATE TRIGGER jobs_delete_placements AFTER DELETE ON jobs BEGIN
    DELETE FROM placements WHERE job_id = old.id;
END;
";

/// Makes an empty store of schema `version` (1 to 3) at `path`, in WAL mode as those
/// versions left it, and returns a connection to it for filling it in.
pub fn old_store(path: &Path, version: i64) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch(V1_SCHEMA).unwrap();
    if version >= 2 {
        conn.execute_batch(V2_TOOLS).unwrap();
    }
    if version >= 3 {
        conn.execute_batch(V3).unwrap();
    }
    conn.pragma_update(None, "user_version", version).unwrap();
    conn
}

/// The schema version stored in the database at `path`.
pub fn user_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap()
}
