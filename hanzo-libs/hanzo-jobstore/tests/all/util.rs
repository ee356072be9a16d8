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
