//! The database schema, connection settings and row decoding.

use crate::record::{JobError, JobRecord, JobStatus, Origin, Placement, PlacementOutcome};
use crate::{Durability, Error, Result};
use rusqlite::{Connection, OpenFlags, Row, params};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The schema version this crate writes (`PRAGMA user_version`).
pub(crate) const VERSION: i64 = 4;

/// `seq` orders jobs by insertion and is never reused (AUTOINCREMENT), which is what
/// makes FIFO order and pagination cursors stable across deletions. `finished_at` is
/// set exactly when the status becomes terminal, so the partial index on it holds
/// only finished jobs (retention reads it). Large columns come last so that scans
/// that do not need them step over fewer bytes.
///
/// This is the table a new store gets. A store made by version 1 or 2 has the same
/// columns but `origin_peer` and `execution_id` at the end, added by [`V3_COLUMNS`]
/// (`ALTER TABLE ADD COLUMN` cannot place them and costs nothing, where rebuilding the
/// table would copy every job at startup); queries name their columns, so both
/// layouts read the same. The difference is only that, in an upgraded store, reading
/// a non-null origin steps over the row's output and logs.
const SCHEMA: &str = "
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
    origin_peer      TEXT,
    execution_id     TEXT,
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

/// Version 2 added the named tools. `definition` is the whole [`ToolRecord`] as JSON
/// (the times are columns too, so that replacing a tool can keep `created_at`).
///
/// [`ToolRecord`]: crate::ToolRecord
const TOOLS: &str = "
CREATE TABLE tools (
    name       TEXT    PRIMARY KEY,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    definition TEXT    NOT NULL
);
";

/// Version 3's two columns of `jobs`, for a store made by an older version (a new
/// store has them in [`SCHEMA`]). A job run for a peer keeps the peer's id and the
/// peer's execution id; both stay NULL for every other job.
const V3_COLUMNS: &str = "
ALTER TABLE jobs ADD COLUMN origin_peer TEXT;
ALTER TABLE jobs ADD COLUMN execution_id TEXT;
";

/// Version 3: the network of nodes. `placements` holds one row per attempt of a job on
/// a peer (`seq` numbers a job's attempts from 1); the trigger deletes a job's rows
/// with the job, whichever statement deletes it (retention today), so no placement
/// outlives its job. The partial unique index makes a peer's execution id name at
/// most one job here, which is what makes a repeated offer find the job it already
/// made instead of running it twice.
const V3: &str = "
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

/// Version 4: verified jobs and settlement (CONTRACTS §8). `jobs.verification` is a
/// verified job's block as JSON (strategy, nonce, verdict, every node's receipt, the
/// dissenters); `placements.acceptance` is this node's signed acceptance of the result
/// an attempt returned (the billing record's second half); `jobs.acceptance`, on a job
/// run for a peer, that peer's acceptance of this node's result. All NULL otherwise.
/// Added at the end in every store, new or upgraded, so both layouts are one.
const V4: &str = "
ALTER TABLE jobs ADD COLUMN verification TEXT;
ALTER TABLE jobs ADD COLUMN acceptance TEXT;
ALTER TABLE placements ADD COLUMN acceptance TEXT;
";

/// The columns [`decode`] reads, in order. Not the output itself, only its size:
/// `octet_length` is answered from the record header, without loading the value (an
/// output can be as large as the node's output cap, and a page holds up to 1000 jobs).
pub(crate) const COLUMNS: &str = "seq, id, status, priority, attempts, cancel_requested, \
     created_at, started_at, finished_at, error_code, error_message, usage, spec, \
     octet_length(output), receipt, origin_peer, execution_id, verification, acceptance";

/// How long a connection waits for a lock before giving up. Only a checkpoint or a
/// second writer (there is none: the store holds a lock file) can make it wait.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the writing connection, creating or checking the schema.
pub(crate) fn open_writer(path: &Path, durability: Durability) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::NoWal(mode));
    }
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.pragma_update(None, "synchronous", sync)?;
    // After a checkpoint, cut the WAL back to this size so that a burst does not leave
    // a large file behind for good.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoints run on the checkpointer's connection; this is only the backstop
    // (about 32 MiB of WAL) should that thread fall behind.
    conn.pragma_update(None, "wal_autocheckpoint", 8000)?;

    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    match version {
        0 => {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(SCHEMA)?;
            tx.execute_batch(TOOLS)?;
            tx.execute_batch(V3)?;
            tx.execute_batch(V4)?;
            tx.pragma_update(None, "user_version", VERSION)?;
            tx.commit()?;
        }
        // A store written by an older version: its jobs stay (with no placements and no
        // origin), the newer tables and columns are added, all in one transaction.
        1..=3 => {
            let tx = conn.unchecked_transaction()?;
            if version == 1 {
                tx.execute_batch(TOOLS)?;
            }
            if version < 3 {
                tx.execute_batch(V3_COLUMNS)?;
                tx.execute_batch(V3)?;
            }
            tx.execute_batch(V4)?;
            tx.pragma_update(None, "user_version", VERSION)?;
            tx.commit()?;
        }
        VERSION => {}
        found => {
            return Err(Error::SchemaVersion {
                found,
                supported: VERSION,
            });
        }
    }
    Ok(conn)
}

/// Opens the checkpointer's connection (read-write, but it only checkpoints).
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Opens a read-only connection (WAL lets it read while the writer commits).
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// Microseconds since the Unix epoch, the unit of every time column.
pub(crate) fn micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

pub(crate) fn from_micros(us: i64) -> SystemTime {
    if us >= 0 {
        UNIX_EPOCH + Duration::from_micros(us as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())
    }
}

/// Decodes a row selected with [`COLUMNS`] (`output` is left `None`, `output_bytes`
/// set); returns the row's `seq` too.
pub(crate) fn decode(row: &Row<'_>) -> Result<(i64, JobRecord)> {
    let seq: i64 = row.get(0)?;
    let id: String = row.get(1)?;
    let corrupt = |detail: String| Error::Corrupt {
        id: id.clone(),
        detail,
    };
    let status: String = row.get(2)?;
    let status = status.parse::<JobStatus>().map_err(|e| corrupt(e.to_string()))?;
    let json = |idx: usize, what: &str| -> Result<Option<serde_json::Value>> {
        let text: Option<String> = row.get(idx)?;
        text.map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| corrupt(format!("{what}: {e}")))
    };
    let spec: String = row.get(12)?;
    let spec = serde_json::from_str(&spec).map_err(|e| corrupt(format!("spec: {e}")))?;
    let usage: Option<String> = row.get(11)?;
    let usage = usage
        .map(|u| serde_json::from_str(&u))
        .transpose()
        .map_err(|e| corrupt(format!("usage: {e}")))?;
    let error_code: Option<String> = row.get(9)?;
    let error_message: Option<String> = row.get(10)?;
    let error = error_code.map(|code| JobError {
        code,
        message: error_message.unwrap_or_default(),
    });
    let record = JobRecord {
        spec,
        status,
        priority: row.get(3)?,
        attempts: row.get(4)?,
        cancel_requested: row.get(5)?,
        created_at: from_micros(row.get(6)?),
        started_at: row.get::<_, Option<i64>>(7)?.map(from_micros),
        finished_at: row.get::<_, Option<i64>>(8)?.map(from_micros),
        output: None,
        output_bytes: row.get::<_, Option<i64>>(13)?.map(|n| n.max(0) as u64),
        error,
        receipt: json(14, "receipt")?,
        usage,
        placements: Vec::new(),
        origin: match (
            row.get::<_, Option<String>>(15)?,
            row.get::<_, Option<String>>(16)?,
        ) {
            (Some(peer_id), Some(execution_id)) => Some(Origin {
                peer_id,
                execution_id,
            }),
            _ => None,
        },
        verification: json(17, "verification")?,
        acceptance: json(18, "acceptance")?,
        id: id.clone(),
    };
    Ok((seq, record))
}

/// The job whose `key` (`id` or `execution_id`, both uniquely indexed) is `value`,
/// with its placements, without its output; and its `seq` (the rowid). Read it inside
/// a transaction so that the two queries see the same state.
pub(crate) fn select_job(conn: &Connection, key: Key, value: &str) -> Result<Option<(i64, JobRecord)>> {
    let column = match key {
        Key::Id => "id",
        Key::ExecutionId => "execution_id",
    };
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM jobs WHERE {column} = ?1"))?;
    let mut rows = stmt.query(params![value])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let (seq, mut record) = decode(row)?;
    record.placements = placements_of(conn, &record.id)?;
    Ok(Some((seq, record)))
}

/// The unique column a job is looked up by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key {
    Id,
    ExecutionId,
}

/// The columns of a placement row, read by [`decode_placement`] after the job id.
const PLACEMENT_COLUMNS: &str =
    "job_id, peer_id, execution_id, outcome, reason, started_at, ended_at, acceptance";

fn decode_placement(row: &Row<'_>) -> Result<(String, Placement)> {
    let job_id: String = row.get(0)?;
    let outcome: String = row.get(3)?;
    let outcome = outcome.parse::<PlacementOutcome>().map_err(|e| Error::Corrupt {
        id: job_id.clone(),
        detail: format!("placement: {e}"),
    })?;
    let placement = Placement {
        peer_id: row.get(1)?,
        execution_id: row.get(2)?,
        outcome,
        reason: row.get(4)?,
        started_at: from_micros(row.get(5)?),
        ended_at: row.get::<_, Option<i64>>(6)?.map(from_micros),
        acceptance: row
            .get::<_, Option<String>>(7)?
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| Error::Corrupt {
                id: job_id.clone(),
                detail: format!("placement acceptance: {e}"),
            })?,
    };
    Ok((job_id, placement))
}

/// The placements of job `id`, oldest first (one lookup in `placements_job`).
pub(crate) fn placements_of(conn: &Connection, id: &str) -> Result<Vec<Placement>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PLACEMENT_COLUMNS} FROM placements WHERE job_id = ?1 ORDER BY seq"
    ))?;
    let mut rows = stmt.query(params![id])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode_placement(row)?.1);
    }
    Ok(out)
}

/// Fills in the placements of `jobs` with one query for all of them (the ids go in as
/// one JSON array, so the statement is the same whatever the page size, and each id
/// is one probe of `placements_job`). Skipped when no job has ever been placed.
pub(crate) fn attach_placements(conn: &Connection, jobs: &mut [JobRecord]) -> Result<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let any: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM placements)")?
        .query_row([], |r| r.get(0))?;
    if !any {
        return Ok(());
    }
    let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    let ids = serde_json::to_string(&ids).map_err(|source| Error::Encode { what: "ids", source })?;
    let index: HashMap<String, usize> = jobs.iter().enumerate().map(|(i, j)| (j.id.clone(), i)).collect();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PLACEMENT_COLUMNS} FROM placements
         WHERE job_id IN (SELECT value FROM json_each(?1)) ORDER BY job_id, seq"
    ))?;
    let mut rows = stmt.query(params![ids])?;
    while let Some(row) = rows.next()? {
        let (job_id, placement) = decode_placement(row)?;
        if let Some(&i) = index.get(&job_id) {
            jobs[i].placements.push(placement);
        }
    }
    Ok(())
}
