//! The writer thread: group commit of every queued write in one transaction.

use crate::record::{CancelOutcome, JobError, JobRecord, JobStatus, Origin, PlacementOutcome};
use crate::schema::{self, Key};
use crate::{Error, Result, Retention};
use hanzo_compute::ComputeError;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// The most writes committed in one transaction. Bounds the time a caller at the end
/// of a batch waits and the memory a batch holds; beyond a few hundred, batching gains
/// nothing more because the commit's fixed cost is already amortised.
const MAX_BATCH: usize = 512;

/// The most finished jobs one pruning step deletes, so that pruning a large backlog
/// never holds the writer (and every caller waiting on it) for long.
pub(crate) const PRUNE_CHUNK: u64 = 2000;

/// Where the answer to a write goes, once its transaction has committed.
pub(crate) type Ack<T> = oneshot::Sender<Result<T>>;

/// A new job, encoded by the caller so that the writer thread only writes.
pub(crate) struct NewJob {
    pub id: String,
    pub runtime: &'static str,
    pub priority: i32,
    pub retries: u32,
    pub created_at: i64,
    pub spec: String,
    /// Set for a job run for a peer.
    pub origin: Option<Origin>,
}

/// How a job ended, encoded by the caller.
pub(crate) struct Finished {
    pub id: String,
    pub status: JobStatus,
    pub at: i64,
    pub output: Option<String>,
    pub error: Option<JobError>,
    pub usage: String,
    pub receipt: Option<String>,
    pub logs: Vec<u8>,
}

/// One write request.
pub(crate) enum Op {
    Submit(NewJob, Ack<i64>),
    /// Insert a job run for a peer (its `origin` is set), or find the one already made
    /// under that execution id: answers `None` when it inserted, the existing job
    /// otherwise.
    SubmitForPeer(NewJob, Ack<Option<Box<JobRecord>>>),
    AddPlacement {
        job_id: String,
        peer_id: String,
        execution_id: String,
        at: i64,
        ack: Ack<()>,
    },
    EndPlacement {
        execution_id: String,
        outcome: PlacementOutcome,
        reason: Option<String>,
        at: i64,
        ack: Ack<bool>,
    },
    RestartAttempt {
        id: String,
        at: i64,
        ack: Ack<bool>,
    },
    SetVerification {
        id: String,
        block: String,
        ack: Ack<bool>,
    },
    SetAcceptance {
        of: crate::Accepted,
        acceptance: String,
        ack: Ack<bool>,
    },
    Start {
        id: String,
        at: i64,
        ack: Ack<bool>,
    },
    Finish(Finished, Ack<bool>),
    Cancel {
        id: String,
        at: i64,
        ack: Ack<CancelOutcome>,
    },
    Prune {
        now: i64,
        ack: Ack<u64>,
    },
    /// Insert or replace a tool; answers the stored `created_at` and whether a tool of
    /// that name was replaced.
    PutTool {
        name: String,
        at: i64,
        definition: String,
        ack: Ack<(i64, bool)>,
    },
    RemoveTool {
        name: String,
        ack: Ack<bool>,
    },
    /// A write that changes nothing a reader sees (the schema version, rewritten): it
    /// tells whether a commit goes through now.
    Probe(Ack<bool>),
}

/// A write applied inside the open transaction, waiting for the commit.
enum Done {
    I64(Ack<i64>, Result<i64>),
    Bool(Ack<bool>, Result<bool>),
    Cancel(Ack<CancelOutcome>, Result<CancelOutcome>),
    U64(Ack<u64>, Result<u64>),
    Put(Ack<(i64, bool)>, Result<(i64, bool)>),
    Unit(Ack<()>, Result<()>),
    Existing(Ack<Option<Box<JobRecord>>>, Result<Option<Box<JobRecord>>>),
}

impl Done {
    /// Answers the caller: its own result if the commit went through, else the
    /// commit's error (nothing of the batch was stored).
    fn send(self, commit: &Result<(), String>) {
        fn pick<T>(r: Result<T>, commit: &Result<(), String>) -> Result<T> {
            match commit {
                Ok(()) => r,
                Err(e) => Err(Error::Commit(e.clone())),
            }
        }
        // A caller that stopped waiting (its future dropped) is not an error: the write
        // is committed either way.
        match self {
            Done::I64(ack, r) => drop(ack.send(pick(r, commit))),
            Done::Bool(ack, r) => drop(ack.send(pick(r, commit))),
            Done::Cancel(ack, r) => drop(ack.send(pick(r, commit))),
            Done::U64(ack, r) => drop(ack.send(pick(r, commit))),
            Done::Put(ack, r) => drop(ack.send(pick(r, commit))),
            Done::Unit(ack, r) => drop(ack.send(pick(r, commit))),
            Done::Existing(ack, r) => drop(ack.send(pick(r, commit))),
        }
    }
}

/// Runs until every sender is gone and the queue is drained.
pub(crate) fn run(mut conn: Connection, rx: Receiver<Op>, retention: Retention) {
    let mut batch: Vec<Op> = Vec::with_capacity(MAX_BATCH);
    let mut next_prune = retention.is_active().then(|| Instant::now() + retention.interval);
    let mut pruning = false;
    loop {
        let first = if pruning {
            match rx.try_recv() {
                Ok(op) => Some(op),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => break,
            }
        } else if let Some(at) = next_prune {
            match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(op) => Some(op),
                Err(RecvTimeoutError::Timeout) => {
                    pruning = true;
                    next_prune = Some(Instant::now() + retention.interval);
                    None
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(op) => Some(op),
                Err(_) => break,
            }
        };
        if let Some(op) = first {
            batch.push(op);
            // Group commit: the caller that woke this thread is often about to queue
            // another write (a job's end and its attempt's, a start right behind a
            // submit), and on a busy core this thread would run first and commit each
            // alone. Yielding once lets them queue, so one commit carries them all:
            // ~40% fewer WAL pages written per job on a one-core node (BENCHMARKS.md).
            // With nothing else runnable on the core it returns at once.
            std::thread::yield_now();
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
        }

        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => {
                let e = Err(e.to_string());
                for op in batch.drain(..) {
                    reject(op).send(&e);
                }
                continue;
            }
        };
        if pruning {
            // Automatic pruning goes one chunk per transaction, between callers' batches.
            match prune_chunk(&tx, &retention, crate::schema::micros(SystemTime::now())) {
                Ok(n) if n >= PRUNE_CHUNK => {}
                _ => pruning = false,
            }
        }
        let done: Vec<Done> = batch.drain(..).map(|op| apply(&tx, op, &retention)).collect();
        let commit = tx.commit().map_err(|e| e.to_string());
        for d in done {
            d.send(&commit);
        }
    }
}

/// A write that never reached the database (the transaction could not begin); the
/// caller gets that error through [`Done::send`].
fn reject(op: Op) -> Done {
    match op {
        Op::Submit(_, ack) => Done::I64(ack, Err(Error::Closed)),
        Op::Start { ack, .. }
        | Op::Finish(_, ack)
        | Op::RemoveTool { ack, .. }
        | Op::Probe(ack)
        | Op::EndPlacement { ack, .. }
        | Op::RestartAttempt { ack, .. }
        | Op::SetVerification { ack, .. }
        | Op::SetAcceptance { ack, .. } => Done::Bool(ack, Err(Error::Closed)),
        Op::SubmitForPeer(_, ack) => Done::Existing(ack, Err(Error::Closed)),
        Op::AddPlacement { ack, .. } => Done::Unit(ack, Err(Error::Closed)),
        Op::Cancel { ack, .. } => Done::Cancel(ack, Err(Error::Closed)),
        Op::Prune { ack, .. } => Done::U64(ack, Err(Error::Closed)),
        Op::PutTool { ack, .. } => Done::Put(ack, Err(Error::Closed)),
    }
}

fn apply(conn: &Connection, op: Op, retention: &Retention) -> Done {
    match op {
        Op::Submit(job, ack) => Done::I64(ack, submit(conn, &job)),
        Op::SubmitForPeer(job, ack) => Done::Existing(ack, submit_for_peer(conn, &job)),
        Op::AddPlacement {
            job_id,
            peer_id,
            execution_id,
            at,
            ack,
        } => Done::Unit(ack, add_placement(conn, &job_id, &peer_id, &execution_id, at)),
        Op::EndPlacement {
            execution_id,
            outcome,
            reason,
            at,
            ack,
        } => Done::Bool(
            ack,
            end_placement(conn, &execution_id, outcome, reason.as_deref(), at),
        ),
        Op::RestartAttempt { id, at, ack } => Done::Bool(ack, restart_attempt(conn, &id, at)),
        Op::SetVerification { id, block, ack } => Done::Bool(ack, set_verification(conn, &id, &block)),
        Op::SetAcceptance { of, acceptance, ack } => Done::Bool(ack, set_acceptance(conn, &of, &acceptance)),
        Op::Start { id, at, ack } => Done::Bool(ack, start(conn, &id, at)),
        Op::Finish(f, ack) => Done::Bool(ack, finish(conn, &f)),
        Op::Cancel { id, at, ack } => Done::Cancel(ack, cancel(conn, &id, at)),
        Op::Prune { now, ack } => Done::U64(ack, prune_chunk(conn, retention, now)),
        Op::PutTool {
            name,
            at,
            definition,
            ack,
        } => Done::Put(ack, put_tool(conn, &name, at, &definition)),
        Op::RemoveTool { name, ack } => Done::Bool(ack, remove_tool(conn, &name)),
        Op::Probe(ack) => Done::Bool(
            ack,
            conn.pragma_update(None, "user_version", crate::schema::VERSION)
                .map(|()| true)
                .map_err(Error::from),
        ),
    }
}

fn put_tool(conn: &Connection, name: &str, at: i64, definition: &str) -> Result<(i64, bool)> {
    let existing: Option<i64> = conn
        .prepare_cached("SELECT created_at FROM tools WHERE name = ?1")?
        .query_row(params![name], |r| r.get(0))
        .optional()?;
    conn.prepare_cached(
        "INSERT INTO tools (name, created_at, updated_at, definition) VALUES (?1, ?2, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at,
             definition = excluded.definition",
    )?
    .execute(params![name, at, definition])?;
    Ok((existing.unwrap_or(at), existing.is_some()))
}

fn remove_tool(conn: &Connection, name: &str) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM tools WHERE name = ?1")?
        .execute(params![name])?;
    Ok(n == 1)
}

fn submit(conn: &Connection, job: &NewJob) -> Result<i64> {
    let (origin_peer, execution_id) = match &job.origin {
        Some(o) => (Some(o.peer_id.as_str()), Some(o.execution_id.as_str())),
        None => (None, None),
    };
    conn.prepare_cached(
        "INSERT INTO jobs (id, runtime, status, priority, retries, created_at, spec,
             origin_peer, execution_id)
         VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        job.id,
        job.runtime,
        job.priority,
        job.retries,
        job.created_at,
        job.spec,
        origin_peer,
        execution_id
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Look-up and insert in the same transaction, on the only writing connection: two
/// offers with the same execution id, in one batch or in two, make one job.
///
/// The existing job is handed back only to the peer that made it. Another peer naming
/// the same execution id (a collision, or a peer guessing ids) gets
/// [`Error::ExecutionTaken`], never the other peer's job (its spec, output, receipt).
fn submit_for_peer(conn: &Connection, job: &NewJob) -> Result<Option<Box<JobRecord>>> {
    let Some(origin) = &job.origin else {
        submit(conn, job)?;
        return Ok(None);
    };
    match schema::select_job(conn, Key::ExecutionId, &origin.execution_id)? {
        None => {
            submit(conn, job)?;
            Ok(None)
        }
        Some((_, existing)) if existing.origin.as_ref().map(|o| &o.peer_id) == Some(&origin.peer_id) => {
            Ok(Some(Box::new(existing)))
        }
        Some(_) => Err(Error::ExecutionTaken(origin.execution_id.clone())),
    }
}

/// Appends attempt `max(seq) + 1` of the job as `running`. The checks give the caller a
/// precise error instead of a constraint failure; the unique indexes stay the guard.
fn add_placement(conn: &Connection, job_id: &str, peer_id: &str, execution_id: &str, at: i64) -> Result<()> {
    let job = conn
        .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")?
        .query_row(params![job_id], |_| Ok(()))
        .optional()?;
    if job.is_none() {
        return Err(Error::JobNotFound(job_id.to_string()));
    }
    let taken = conn
        .prepare_cached("SELECT 1 FROM placements WHERE execution_id = ?1")?
        .query_row(params![execution_id], |_| Ok(()))
        .optional()?;
    if taken.is_some() {
        return Err(Error::ExecutionTaken(execution_id.to_string()));
    }
    conn.prepare_cached(
        "INSERT INTO placements (job_id, seq, execution_id, peer_id, outcome, started_at)
         SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, 'running', ?4
         FROM placements WHERE job_id = ?1",
    )?
    .execute(params![job_id, execution_id, peer_id, at])?;
    Ok(())
}

/// Stores a job's verification block; `true` if the job exists.
fn set_verification(conn: &Connection, id: &str, block: &str) -> Result<bool> {
    let n = conn
        .prepare_cached("UPDATE jobs SET verification = ?1 WHERE id = ?2")?
        .execute(params![block, id])?;
    Ok(n == 1)
}

/// Stores an acceptance once: a second one for the same attempt or job changes nothing
/// and answers `false` (a peer repeating its settlement is paid once).
fn set_acceptance(conn: &Connection, of: &crate::Accepted, acceptance: &str) -> Result<bool> {
    let (sql, key) = match of {
        crate::Accepted::Attempt(e) => (
            "UPDATE placements SET acceptance = ?1 WHERE execution_id = ?2 AND acceptance IS NULL",
            e,
        ),
        crate::Accepted::Job(id) => (
            "UPDATE jobs SET acceptance = ?1 WHERE id = ?2 AND acceptance IS NULL",
            id,
        ),
    };
    Ok(conn.prepare_cached(sql)?.execute(params![acceptance, key])? == 1)
}

/// The fence: an attempt ends once. Conditional on `running`, so the first end wins
/// (e.g. `lost` on a peer's silence) and a later one (the lost attempt's late result)
/// changes nothing and answers `false`.
fn end_placement(
    conn: &Connection,
    execution_id: &str,
    outcome: PlacementOutcome,
    reason: Option<&str>,
    at: i64,
) -> Result<bool> {
    if outcome == PlacementOutcome::Running {
        return Err(Error::InvalidEnd);
    }
    let n = conn
        .prepare_cached(
            "UPDATE placements SET outcome = ?2, reason = ?3, ended_at = ?4
             WHERE execution_id = ?1 AND outcome = 'running'",
        )?
        .execute(params![execution_id, outcome.name(), reason, at])?;
    Ok(n == 1)
}

/// Another attempt of a job already `running` (placed again after a lost attempt).
/// Like [`start`], conditional: not for a job that is no longer running, nor for one
/// whose cancel was asked (it must be stopped, not placed again).
fn restart_attempt(conn: &Connection, id: &str, at: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET attempts = attempts + 1, started_at = ?2
             WHERE id = ?1 AND status = 'running' AND cancel_requested = 0",
        )?
        .execute(params![id, at])?;
    Ok(n == 1)
}

/// The only transition into `running`, and it is conditional on `queued`: two
/// callers starting the same job cannot both succeed, which (with the commit before
/// the answer) is what keeps a job from running twice.
fn start(conn: &Connection, id: &str, at: i64) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?2
             WHERE id = ?1 AND status = 'queued'",
        )?
        .execute(params![id, at])?;
    Ok(n == 1)
}

fn finish(conn: &Connection, f: &Finished) -> Result<bool> {
    let (code, message) = match &f.error {
        Some(e) => (Some(e.code.as_str()), Some(e.message.as_str())),
        None => (None, None),
    };
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET status = ?2, finished_at = ?3, output = ?4, error_code = ?5,
                 error_message = ?6, usage = ?7, receipt = ?8, logs = ?9
             WHERE id = ?1 AND status IN ('queued', 'running')",
        )?
        .execute(params![
            f.id,
            f.status.name(),
            f.at,
            f.output,
            code,
            message,
            f.usage,
            f.receipt,
            f.logs
        ])?;
    Ok(n == 1)
}

fn cancel(conn: &Connection, id: &str, at: i64) -> Result<CancelOutcome> {
    let e = JobError::from(&ComputeError::Cancelled);
    let n = conn
        .prepare_cached(
            "UPDATE jobs SET status = 'cancelled', finished_at = ?2, error_code = ?3,
                 error_message = ?4
             WHERE id = ?1 AND status = 'queued'",
        )?
        .execute(params![id, at, e.code, e.message])?;
    if n == 1 {
        return Ok(CancelOutcome::Cancelled);
    }
    let n = conn
        .prepare_cached("UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'")?
        .execute(params![id])?;
    if n == 1 {
        return Ok(CancelOutcome::Requested);
    }
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM jobs WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?;
    Ok(match status {
        None => CancelOutcome::NotFound,
        Some(s) => CancelOutcome::AlreadyFinished(s.parse().map_err(|e: ComputeError| Error::Corrupt {
            id: id.to_string(),
            detail: e.to_string(),
        })?),
    })
}

/// How often the checkpointer copies committed WAL frames into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Runs `PRAGMA wal_checkpoint(PASSIVE)` on its own connection every
/// [`CHECKPOINT_EVERY`] until `stop` is dropped.
///
/// Left to SQLite, the checkpoint (copying the WAL into the database file, with its
/// fsyncs) runs inside the commit that crosses `wal_autocheckpoint`, and every caller
/// of that batch waits for it: a few hundred milliseconds now and then under load. A
/// passive checkpoint on another connection runs alongside the writer instead (WAL
/// allows it: it never blocks the writer or readers), and the writer then restarts
/// the WAL from the beginning by itself. The writer keeps a high autocheckpoint
/// threshold as a backstop in case this thread falls behind.
pub(crate) fn checkpointer(conn: Connection, stop: Receiver<()>) {
    loop {
        match stop.recv_timeout(CHECKPOINT_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        // A failed checkpoint is retried on the next tick; the backstop covers the rest.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}

/// Deletes up to [`PRUNE_CHUNK`] finished jobs that the retention setting no longer
/// keeps: older than `max_age`, then beyond the newest `max_finished`.
pub(crate) fn prune_chunk(conn: &Connection, retention: &Retention, now: i64) -> Result<u64> {
    let mut deleted = 0u64;
    if let Some(age) = retention.max_age {
        let cutoff = now.saturating_sub(age.as_micros().min(i64::MAX as u128) as i64);
        deleted += conn
            .prepare_cached(
                "DELETE FROM jobs WHERE seq IN (
                     SELECT seq FROM jobs
                     WHERE finished_at IS NOT NULL AND finished_at < ?1 LIMIT ?2)",
            )?
            .execute(params![cutoff, PRUNE_CHUNK as i64])? as u64;
    }
    if let Some(keep) = retention.max_finished
        && deleted < PRUNE_CHUNK
    {
        deleted += conn
            .prepare_cached(
                "DELETE FROM jobs WHERE seq IN (
                     SELECT seq FROM jobs WHERE finished_at IS NOT NULL
                     ORDER BY finished_at DESC, seq DESC LIMIT ?1 OFFSET ?2)",
            )?
            .execute(params![
                (PRUNE_CHUNK - deleted) as i64,
                keep.min(i64::MAX as u64) as i64
            ])? as u64;
    }
    Ok(deleted)
}
