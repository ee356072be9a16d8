//! The store handle: open + recovery, writes through the writer thread, reads.

use crate::record::{
    CancelOutcome, Counts, Cursor, JobError, JobPage, JobRecord, JobStatus, ListFilter, Origin, Page,
    PlacementOutcome, RawJob, Recovery,
};
use crate::schema::{self, COLUMNS, Key, micros};
use crate::tools::{ToolRecord, ToolSpec};
use crate::writer::{self, Ack, Finished, NewJob, Op};
use crate::{Error, Result};
use hanzo_compute::stdio::LogBuffer;
use hanzo_compute::{ComputeError, JobOutcome, JobSpec, RuntimeKind, new_job_id};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;

/// The error code of a job failed because the node stopped while it was running.
pub const INTERRUPTED: &str = "interrupted";

/// The message that goes with [`INTERRUPTED`].
const INTERRUPTED_MESSAGE: &str = "interrupted: the node stopped while the job was running";

/// Idle read connections kept for reuse; more are opened when needed and closed after.
const MAX_IDLE_READERS: usize = 4;

/// When a commit is safe (SQLite's `synchronous` setting, in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous = NORMAL`: a commit is written to the WAL file before it is
    /// acknowledged, and the WAL is fsynced at each checkpoint. Every acknowledged
    /// write survives a crash or `kill -9` of the node; after a power loss or an OS crash
    /// the last few hundred milliseconds of commits may be missing (the database is never
    /// corrupt). The default: it is what the node promises (a killed node loses nothing)
    /// at a fraction of the cost.
    #[default]
    Normal,
    /// `synchronous = FULL`: the WAL is also fsynced before each commit is acknowledged,
    /// so acknowledged writes survive power loss too. Group commit shares one fsync among
    /// all writes of a batch, so this costs latency more than throughput.
    Full,
}

/// How long finished jobs (with their outputs, logs and receipts) are kept.
///
/// Only terminal jobs are ever deleted; queued and running ones are kept whatever
/// their age. Pruning runs on the writer thread every `interval`, a chunk at a time so
/// that callers' writes are never held up for long, and on demand with
/// [`JobStore::prune`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Delete finished jobs that finished longer ago than this.
    pub max_age: Option<Duration>,
    /// Keep at most this many finished jobs (the most recently finished).
    pub max_finished: Option<u64>,
    /// How often the writer prunes by itself.
    pub interval: Duration,
}

impl Retention {
    /// Keeps every job forever.
    pub fn keep_all() -> Self {
        Retention {
            max_age: None,
            max_finished: None,
            interval: Duration::from_secs(60),
        }
    }

    pub(crate) fn is_active(&self) -> bool {
        self.max_age.is_some() || self.max_finished.is_some()
    }
}

impl Default for Retention {
    /// Seven days, at most 100,000 finished jobs, pruned every minute.
    fn default() -> Self {
        Retention {
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
            max_finished: Some(100_000),
            interval: Duration::from_secs(60),
        }
    }
}

/// Settings of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// When a commit is safe; [`Durability::Normal`] by default.
    pub durability: Durability,
    /// The most bytes of a job's logs kept; more are dropped with a note saying how
    /// many. Default [`hanzo_compute::stdio::LOG_CAP`] (1 MiB).
    pub max_log_bytes: usize,
    /// How long finished jobs are kept.
    pub retention: Retention,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::default(),
            max_log_bytes: hanzo_compute::stdio::LOG_CAP,
            retention: Retention::default(),
        }
    }
}

/// A handle to the job store; cheap to clone, and every clone is the same store.
///
/// Writes are `async` and resolve once committed. If such a future is dropped after
/// it was first polled, the write may still be committed. Reads are short blocking
/// calls on a read-only connection (indexed point lookups; a page or the counts take
/// a few milliseconds on 100,000 jobs).
///
/// The store is closed when the last clone is dropped: queued writes are committed,
/// the writer thread exits and the lock on the data directory is released.
#[derive(Clone)]
pub struct JobStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: Options,
    sender: Option<Sender<Op>>,
    writer: Option<JoinHandle<()>>,
    /// Dropping it stops the checkpointer thread.
    stop_checkpointer: Option<Sender<()>>,
    checkpointer: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    /// Held for the store's lifetime so that a second node on the same data directory
    /// is refused instead of "recovering" the first node's running jobs.
    _lock: File,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain what is queued and exit.
        self.sender.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        self.stop_checkpointer.take();
        if let Some(c) = self.checkpointer.take() {
            let _ = c.join();
        }
    }
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore")
            .field("path", &self.inner.path)
            .field("options", &self.inner.options)
            .finish()
    }
}

/// `path` with `suffix` appended to its file name (`jobs.db-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

/// Open options that create the file with mode 0600.
fn private(opts: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts
}

/// Takes group and other permissions off an existing file (a missing one is fine).
fn tighten(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl JobStore {
    /// Opens (creating if needed) the store at `path`, e.g. `$HANZO_HOME/jobs.db`, and
    /// applies the restart rule to jobs a previous run left running (see [`Recovery`]).
    ///
    /// Besides the database, SQLite keeps `<path>-wal` and `<path>-shm`, and the store
    /// holds an advisory lock on `<path>.lock`: a second process opening the same store
    /// gets [`Error::Locked`]. Blocking; call it at startup.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<(JobStore, Recovery)> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = private(File::options().create(true).truncate(false).write(true))
            .open(&lock_path)
            .map_err(|source| Error::Io {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(Error::Locked(path)),
            Err(TryLockError::Error(source)) => {
                return Err(Error::Io {
                    path: lock_path,
                    source,
                });
            }
        }

        // The store holds every job's spec, secret `env` values included: owner only.
        // SQLite gives the `-wal` and `-shm` files it creates the database's mode, so
        // the database is made (or tightened) first; files an older version left
        // readable are tightened too.
        private(File::options().create(true).truncate(false).write(true))
            .open(&path)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        for p in [
            path.clone(),
            lock_path.clone(),
            sibling(&path, "-wal"),
            sibling(&path, "-shm"),
        ] {
            tighten(&p).map_err(|source| Error::Io { path: p, source })?;
        }
        let mut conn = schema::open_writer(&path, options.durability)?;
        let recovery = recover(&mut conn)?;
        for p in [sibling(&path, "-wal"), sibling(&path, "-shm")] {
            tighten(&p).map_err(|source| Error::Io { path: p, source })?;
        }

        let spawn_error = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let ckpt_conn = schema::open_checkpointer(&path)?;
        let (stop_checkpointer, stop) = mpsc::channel();
        let checkpointer = std::thread::Builder::new()
            .name("hanzo-jobstore-ckpt".into())
            .spawn(move || writer::checkpointer(ckpt_conn, stop))
            .map_err(spawn_error)?;
        let (sender, rx) = mpsc::channel();
        let retention = options.retention;
        let writer = std::thread::Builder::new()
            .name("hanzo-jobstore".into())
            .spawn(move || writer::run(conn, rx, retention))
            .map_err(spawn_error)?;
        let store = JobStore {
            inner: Arc::new(Inner {
                path,
                options,
                sender: Some(sender),
                writer: Some(writer),
                stop_checkpointer: Some(stop_checkpointer),
                checkpointer: Some(checkpointer),
                readers: Mutex::new(Vec::new()),
                _lock: lock,
            }),
        };
        Ok((store, recovery))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The settings the store was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Stores a new job as `queued` under a fresh id and returns it once committed:
    /// from then on it survives a crash of the node. The spec is stored as given
    /// (validate it first).
    pub async fn submit(&self, spec: JobSpec) -> Result<JobRecord> {
        let (job, record) = new_job(spec, None)?;
        self.call(|ack| Op::Submit(job, ack)).await?;
        Ok(record)
    }

    /// Stores a job this node runs for a peer, as [`submit`](Self::submit) does, with
    /// its [`Origin`] (the submitter's peer id and execution id); answers the job and
    /// `true` once committed.
    ///
    /// An offer can arrive twice (the submitter did not get the first answer and
    /// asked again): if a job of the same peer already has this execution id, nothing
    /// is written and that job comes back with `false`, as it is now (any status;
    /// without its output, as [`get_summary`](Self::get_summary) gives it), so the
    /// caller must not run it again. The same execution id from another peer is
    /// [`Error::ExecutionTaken`]: a peer never gets another peer's job.
    ///
    /// The spec is stored as given and the restart rule applies to the job as to any
    /// other (it is retried after a crash of this node while `attempts <=
    /// spec.retries`): a caller that leaves retries to the submitter stores
    /// `retries: 0`.
    pub async fn submit_for_peer(&self, spec: JobSpec, origin: Origin) -> Result<(JobRecord, bool)> {
        let (job, record) = new_job(spec, Some(origin))?;
        match self.call(|ack| Op::SubmitForPeer(job, ack)).await? {
            None => Ok((record, true)),
            Some(existing) => Ok((*existing, false)),
        }
    }

    /// Records a new attempt of job `job_id` on peer `peer_id` under `execution_id`, as
    /// `running`, after the job's other attempts (they are numbered in order). Record it
    /// before the offer leaves, so that a crash of this node cannot forget an attempt a
    /// peer may be running.
    ///
    /// [`Error::JobNotFound`] when no job has that id, [`Error::ExecutionTaken`] when
    /// the execution id already names an attempt; nothing is written then. The job's
    /// status is not changed (see [`start`](Self::start) and
    /// [`restart_attempt`](Self::restart_attempt)).
    pub async fn add_placement(&self, job_id: &str, peer_id: &str, execution_id: &str) -> Result<()> {
        let at = micros(SystemTime::now());
        let (job_id, peer_id, execution_id) =
            (job_id.to_string(), peer_id.to_string(), execution_id.to_string());
        self.call(|ack| Op::AddPlacement {
            job_id,
            peer_id,
            execution_id,
            at,
            ack,
        })
        .await
    }

    /// Stores a signed acceptance (CONTRACTS §8): this node's of an attempt's result,
    /// or a peer's of the result of a job this node ran for it. Once: `true` if this
    /// call stored it, `false` if one was stored before or there is no such attempt or
    /// job.
    pub async fn set_acceptance(&self, of: crate::Accepted, acceptance: &serde_json::Value) -> Result<bool> {
        let acceptance = acceptance.to_string();
        self.call(|ack| Op::SetAcceptance { of, acceptance, ack }).await
    }

    /// Stores a verified job's verification block (CONTRACTS §8), replacing the one
    /// before: written when its attempts start (the nonce) and when it is decided.
    /// `true` if the job exists. Queued like every write: one queued just before
    /// [`finish`](Self::finish) usually shares its commit.
    pub async fn set_verification(&self, id: &str, block: &serde_json::Value) -> Result<bool> {
        let id = id.to_string();
        let block = block.to_string();
        self.call(|ack| Op::SetVerification { id, block, ack }).await
    }

    /// Ends the attempt `execution_id` with `outcome` and `reason`, stamping `ended_at`,
    /// only if it is still `running`; `true` if this call ended it. This is the fence
    /// between attempts: once an attempt is `lost` (or ended any other way), a result
    /// that arrives later for it changes nothing and gets `false`, and so does an
    /// unknown execution id. Ending as [`PlacementOutcome::Running`] is
    /// [`Error::InvalidEnd`]. The job itself is not changed (record its end with
    /// [`finish`](Self::finish)).
    pub async fn end_placement(
        &self,
        execution_id: &str,
        outcome: PlacementOutcome,
        reason: Option<&str>,
    ) -> Result<bool> {
        let at = micros(SystemTime::now());
        let execution_id = execution_id.to_string();
        let reason = reason.map(str::to_string);
        self.call(|ack| Op::EndPlacement {
            execution_id,
            outcome,
            reason,
            at,
            ack,
        })
        .await
    }

    /// Counts another attempt of a job that is already `running` and moves its
    /// `started_at` to now: for a job placed again after an attempt was lost
    /// ([`start`](Self::start) only starts a `queued` job, and refuses a running one).
    /// `true` once committed; `false`, changing nothing, when the job is not running
    /// (finished, still queued, unknown) or a cancel was asked for it: the caller must
    /// then not place it again (a cancelled one is [`finish`](Self::finish)ed instead).
    /// Like `start`, it does not check `attempts` against `spec.retries`: that is the
    /// caller's decision.
    pub async fn restart_attempt(&self, id: &str) -> Result<bool> {
        let at = micros(SystemTime::now());
        let id = id.to_string();
        self.call(|ack| Op::RestartAttempt { id, at, ack }).await
    }

    /// Moves a job from `queued` to `running` and counts the attempt; `true` once that
    /// is committed. `false` if the job is not queued (cancelled, already started, or
    /// unknown): the caller must then not run it. Run a job only after `true`. A job
    /// placed on a peer is started the same way when its first attempt is accepted;
    /// later attempts go through [`restart_attempt`](Self::restart_attempt).
    pub async fn start(&self, id: &str) -> Result<bool> {
        let at = micros(SystemTime::now());
        let id = id.to_string();
        self.call(|ack| Op::Start { id, at, ack }).await
    }

    /// The most log bytes kept per job ([`Options::max_log_bytes`]): longer logs are
    /// stored shortened, so a caller holding the outcome knows whether its logs are
    /// the stored ones.
    pub fn max_log_bytes(&self) -> usize {
        self.inner.options.max_log_bytes
    }

    /// Records how a job ended: `succeeded` with its output, `cancelled` for
    /// [`ComputeError::Cancelled`], `failed` with the error's code and message
    /// otherwise; plus usage, receipt and the logs (bounded by
    /// [`Options::max_log_bytes`]). Accepts a `running` job, or a `queued` one that is
    /// failed without running (e.g. its runtime is unavailable). Returns `false`, and
    /// changes nothing, when the job is unknown or already terminal.
    pub async fn finish(&self, outcome: &JobOutcome) -> Result<bool> {
        let (status, output, error) = match &outcome.result {
            Ok(v) => (JobStatus::Succeeded, Some(encode("output", v)?), None),
            Err(e @ ComputeError::Cancelled) => (JobStatus::Cancelled, None, Some(e.into())),
            Err(e) => (JobStatus::Failed, None, Some(JobError::from(e))),
        };
        let receipt = match &outcome.receipt {
            Some(r) => Some(encode("receipt", &r.to_value())?),
            None => None,
        };
        let logs = if outcome.logs.len() > self.inner.options.max_log_bytes {
            let mut b = LogBuffer::new(self.inner.options.max_log_bytes);
            b.push(&outcome.logs);
            b.finish()
        } else {
            outcome.logs.clone()
        };
        let f = Finished {
            id: outcome.job_id.clone(),
            status,
            at: micros(SystemTime::now()),
            output,
            error,
            usage: encode("usage", &outcome.usage)?,
            receipt,
            logs,
        };
        self.call(|ack| Op::Finish(f, ack)).await
    }

    /// Cancels a job: a queued one at once (it will never start); for a running one the
    /// request is recorded and [`CancelOutcome::Requested`] tells the caller to stop it
    /// (then [`finish`](Self::finish) it). A request recorded before a node crash makes
    /// the restart mark the job cancelled rather than retry it.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let at = micros(SystemTime::now());
        let id = id.to_string();
        self.call(|ack| Op::Cancel { id, at, ack }).await
    }

    /// Applies the retention setting now, to completion; returns how many finished jobs
    /// were deleted. (The writer also does this by itself every `retention.interval`.)
    pub async fn prune(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let now = micros(SystemTime::now());
            let n = self.call(|ack| Op::Prune { now, ack }).await?;
            total += n;
            if n < writer::PRUNE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// One job, without its logs, with its output parsed. The output is held twice
    /// meanwhile (its text and the parsed value); to send it on, prefer
    /// [`get_raw`](Self::get_raw), which holds it once.
    pub fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        let Some(RawJob { mut record, output }) = self.get_raw(id)? else {
            return Ok(None);
        };
        if let Some(text) = output {
            let value = serde_json::from_slice(&text).map_err(|e| Error::Corrupt {
                id: record.id.clone(),
                detail: format!("output: {e}"),
            })?;
            record.output = Some(value);
        }
        Ok(Some(record))
    }

    /// One job without its logs and without its output (`output_bytes` gives its
    /// size): its status, error, receipt and times, at a cost that does not depend on
    /// the output.
    pub fn get_summary(&self, id: &str) -> Result<Option<JobRecord>> {
        self.read(|conn| {
            let tx = conn.unchecked_transaction()?;
            Ok(schema::select_job(&tx, Key::Id, id)?.map(|(_, r)| r))
        })
    }

    /// The job this node runs for a peer under the peer's `execution_id`
    /// ([`submit_for_peer`](Self::submit_for_peer)), as [`get_summary`](Self::get_summary)
    /// gives it (no output). Only jobs run for peers have one: the execution ids of this
    /// node's own attempts on peers are in the jobs' [`placements`](JobRecord::placements).
    /// Check that its [`origin`](JobRecord::origin) is the peer asking before answering it.
    pub fn find_execution(&self, execution_id: &str) -> Result<Option<JobRecord>> {
        self.read(|conn| {
            let tx = conn.unchecked_transaction()?;
            Ok(schema::select_job(&tx, Key::ExecutionId, execution_id)?.map(|(_, r)| r))
        })
    }

    /// One job and its output as the JSON text stored, read straight into one buffer
    /// of exactly its size (SQLite's incremental blob I/O: no second copy in SQLite's
    /// memory, no parse). The record and the output are read in one transaction, so
    /// they belong together even if the job is pruned meanwhile.
    pub fn get_raw(&self, id: &str) -> Result<Option<RawJob>> {
        self.read(|conn| {
            let tx = conn.unchecked_transaction()?;
            let Some((seq, record)) = schema::select_job(&tx, Key::Id, id)? else {
                return Ok(None);
            };
            let output = match record.output_bytes {
                None => None,
                Some(n) => {
                    let mut blob = tx.blob_open(rusqlite::MAIN_DB, "jobs", "output", seq, true)?;
                    let mut text = Vec::with_capacity(n as usize);
                    std::io::Read::read_to_end(&mut blob, &mut text).map_err(|source| Error::Io {
                        path: self.inner.path.clone(),
                        source,
                    })?;
                    Some(text)
                }
            };
            // A read-only transaction: ending it releases the snapshot.
            drop(tx);
            Ok(Some(RawJob { record, output }))
        })
    }

    /// A job's logs, as bounded when it finished; `None` for an unknown job, empty for
    /// one that has not finished.
    pub fn logs(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.read(|conn| {
            let logs: Option<Option<Vec<u8>>> = conn
                .prepare_cached("SELECT logs FROM jobs WHERE id = ?1")?
                .query_row(params![id], |r| r.get(0))
                .optional()?;
            Ok(logs.map(Option::unwrap_or_default))
        })
    }

    /// A page of jobs matching `filter`, newest first. Follow [`JobPage::next`] for the
    /// next page; pages neither repeat nor skip a job, even while jobs are added or
    /// pruned (a job whose status changes between pages may of course enter or leave a
    /// status filter).
    pub fn list(&self, filter: ListFilter, page: Page) -> Result<JobPage> {
        let limit = page.limit.clamp(1, Page::MAX_LIMIT);
        let mut sql = format!("SELECT {COLUMNS} FROM jobs WHERE 1");
        let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
        if let Some(s) = filter.status {
            sql.push_str(" AND status = ?");
            args.push(Box::new(s.name()));
        }
        if let Some(r) = filter.runtime {
            sql.push_str(" AND runtime = ?");
            args.push(Box::new(r.name()));
        }
        if let Some(Cursor(seq)) = page.after {
            sql.push_str(" AND seq < ?");
            args.push(Box::new(seq));
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        // One more than asked, to learn whether there is a next page.
        args.push(Box::new(limit as i64 + 1));
        self.read(|conn| {
            // One snapshot for the page and its placements.
            let tx = conn.unchecked_transaction()?;
            let mut jobs = Vec::new();
            let mut last = None;
            let mut more = false;
            {
                let mut stmt = tx.prepare_cached(&sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
                while let Some(row) = rows.next()? {
                    if jobs.len() == limit as usize {
                        more = true;
                        break;
                    }
                    let (seq, job) = schema::decode(row)?;
                    last = Some(seq);
                    jobs.push(job);
                }
            }
            schema::attach_placements(&tx, &mut jobs)?;
            Ok(JobPage {
                jobs,
                next: if more { last.map(Cursor) } else { None },
            })
        })
    }

    /// How many jobs there are per runtime and status (for metrics; the `queued` rows
    /// are the queue depth).
    pub fn counts(&self) -> Result<Counts> {
        self.read(|conn| {
            let mut stmt =
                conn.prepare_cached("SELECT runtime, status, COUNT(*) FROM jobs GROUP BY runtime, status")?;
            let mut rows = stmt.query([])?;
            let mut counts = Counts::new();
            while let Some(row) = rows.next()? {
                let runtime: String = row.get(0)?;
                let status: String = row.get(1)?;
                let n: i64 = row.get(2)?;
                let bad = |e: ComputeError| Error::Corrupt {
                    id: "(counts)".into(),
                    detail: e.to_string(),
                };
                let key = (
                    runtime.parse::<RuntimeKind>().map_err(bad)?,
                    status.parse::<JobStatus>().map_err(bad)?,
                );
                counts.insert(key, n as u64);
            }
            Ok(counts)
        })
    }

    /// Registers a tool under `spec.name`, replacing any tool of that name (its
    /// `created_at` is kept), and returns it once committed, with `true` when it
    /// replaced one. The spec is stored as given (validate it first).
    pub async fn put_tool(&self, spec: ToolSpec) -> Result<(ToolRecord, bool)> {
        let now = SystemTime::now();
        let at = micros(now);
        let definition = encode("tool", &spec)?;
        let name = spec.name.clone();
        let (created, replaced) = self
            .call(|ack| Op::PutTool {
                name,
                at,
                definition,
                ack,
            })
            .await?;
        let record = ToolRecord {
            spec,
            created_at: schema::from_micros(created),
            updated_at: truncate_micros(now),
        };
        Ok((record, replaced))
    }

    /// The tool called `name`.
    pub fn get_tool(&self, name: &str) -> Result<Option<ToolRecord>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT name, created_at, updated_at, definition FROM tools WHERE name = ?1",
            )?;
            let mut rows = stmt.query(params![name])?;
            match rows.next()? {
                Some(row) => Ok(Some(decode_tool(row)?)),
                None => Ok(None),
            }
        })
    }

    /// Every tool, by name.
    pub fn list_tools(&self) -> Result<Vec<ToolRecord>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT name, created_at, updated_at, definition FROM tools ORDER BY name")?;
            let mut rows = stmt.query([])?;
            let mut tools = Vec::new();
            while let Some(row) = rows.next()? {
                tools.push(decode_tool(row)?);
            }
            Ok(tools)
        })
    }

    /// Removes the tool called `name`; `false` if there was none. Jobs already
    /// submitted through it are not touched.
    pub async fn remove_tool(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.call(|ack| Op::RemoveTool { name, ack }).await
    }

    /// Commits a write that changes nothing a reader sees; `Ok` when a commit goes
    /// through now. For health checks after a failed write (a full disk, an I/O error).
    pub async fn probe(&self) -> Result<()> {
        self.call(Op::Probe).await.map(|_| ())
    }

    async fn call<T>(&self, make: impl FnOnce(Ack<T>) -> Op) -> Result<T> {
        let (ack, rx) = oneshot::channel();
        let sender = self.inner.sender.as_ref().ok_or(Error::Closed)?;
        sender.send(make(ack)).map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => schema::open_reader(&self.inner.path)?,
        };
        let result = f(&conn);
        let mut pool = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        result
    }
}

/// The restart rule, in one transaction, before the writer thread starts.
fn recover(conn: &mut Connection) -> Result<Recovery> {
    let now = micros(SystemTime::now());
    let mut recovery = Recovery::default();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        // `remote`: an attempt still running on a peer (any, not only the latest, so that
        // concurrent attempts of one job are covered too).
        let mut running = tx.prepare(
            "SELECT id, attempts, retries, cancel_requested,
                    EXISTS (SELECT 1 FROM placements p
                            WHERE p.job_id = jobs.id AND p.outcome = 'running')
             FROM jobs WHERE status = 'running' ORDER BY seq",
        )?;
        let rows = running
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, bool>(3)?,
                    r.get::<_, bool>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let cancelled = JobError::from(&ComputeError::Cancelled);
        for (id, attempts, retries, cancel_requested, remote) in rows {
            if remote {
                // Left as it is: the attempt may still finish on the peer, and only the
                // placement code can re-attach to it, end it or cancel it there.
                let (_, job) = schema::select_job(&tx, Key::Id, &id)?.ok_or_else(|| Error::Corrupt {
                    id: id.clone(),
                    detail: "vanished during recovery".into(),
                })?;
                recovery.remote.push(job);
            } else if cancel_requested {
                tx.execute(
                    "UPDATE jobs SET status = 'cancelled', finished_at = ?2, error_code = ?3,
                         error_message = ?4
                     WHERE id = ?1",
                    params![id, now, cancelled.code, cancelled.message],
                )?;
                recovery.cancelled.push(id);
            } else if attempts <= retries {
                tx.execute(
                    "UPDATE jobs SET status = 'queued', started_at = NULL WHERE id = ?1",
                    params![id],
                )?;
                recovery.retried.push(id);
            } else {
                tx.execute(
                    "UPDATE jobs SET status = 'failed', finished_at = ?2, error_code = ?3,
                         error_message = ?4
                     WHERE id = ?1",
                    params![id, now, INTERRUPTED, INTERRUPTED_MESSAGE],
                )?;
                recovery.failed.push(id);
            }
        }
        let mut queued = tx.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE status = 'queued' ORDER BY priority DESC, seq"
        ))?;
        let mut rows = queued.query([])?;
        while let Some(row) = rows.next()? {
            recovery.queued.push(schema::decode(row)?.1);
        }
        schema::attach_placements(&tx, &mut recovery.queued)?;
    }
    tx.commit()?;
    Ok(recovery)
}

/// A new job to insert, and the record that the store will then hold for it.
fn new_job(spec: JobSpec, origin: Option<Origin>) -> Result<(NewJob, JobRecord)> {
    let created_at = SystemTime::now();
    let id = new_job_id();
    let job = NewJob {
        id: id.clone(),
        runtime: spec.runtime.name(),
        priority: spec.priority,
        retries: spec.retries,
        created_at: micros(created_at),
        spec: encode("spec", &spec)?,
        origin: origin.clone(),
    };
    let record = JobRecord {
        id,
        priority: spec.priority,
        spec,
        status: JobStatus::Queued,
        attempts: 0,
        cancel_requested: false,
        // The stored value has µs precision; return exactly what `get` will.
        created_at: truncate_micros(created_at),
        started_at: None,
        finished_at: None,
        output: None,
        output_bytes: None,
        error: None,
        receipt: None,
        usage: None,
        placements: Vec::new(),
        origin,
        verification: None,
        acceptance: None,
    };
    Ok((job, record))
}

fn decode_tool(row: &rusqlite::Row<'_>) -> Result<ToolRecord> {
    let name: String = row.get(0)?;
    let definition: String = row.get(3)?;
    let spec = serde_json::from_str(&definition).map_err(|e| Error::Corrupt {
        id: format!("tool {name}"),
        detail: e.to_string(),
    })?;
    Ok(ToolRecord {
        spec,
        created_at: schema::from_micros(row.get(1)?),
        updated_at: schema::from_micros(row.get(2)?),
    })
}

fn truncate_micros(t: SystemTime) -> SystemTime {
    let us = micros(t);
    std::time::UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

fn encode<T: serde::Serialize>(what: &'static str, v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|source| Error::Encode { what, source })
}
