//! What the store keeps and returns.

use crate::Error;
use hanzo_compute::{ComputeError, JobSpec, RuntimeKind, Usage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// Where a job is in its life.
///
/// `queued → running → succeeded | failed | cancelled`, and `queued → cancelled |
/// failed` for jobs that never start. After a restart a `running` job goes back to
/// `queued` (retry) or on to `failed` / `cancelled`; see [`Recovery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted and waiting to run.
    Queued,
    /// Started by the scheduler ([`JobStore::start`](crate::JobStore::start)).
    Running,
    /// Finished with an output.
    Succeeded,
    /// Finished without an output (the tool failed, a limit was hit, the runtime was
    /// unavailable, or the node stopped while it ran and no retry was left).
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobStatus {
    /// Every status, in life order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    /// The name used in the database, the API and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the job is over (nothing will change it any more, except retention).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for JobStatus {
    type Err = ComputeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            ComputeError::invalid(format!(
                "unknown job status '{s}' (expected one of: queued, running, succeeded, failed, cancelled)"
            ))
        })
    }
}

/// Why a job has no output: the stable code and message of the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// [`ComputeError::code`] (`tool_failed`, `limit_exceeded`, ...), or
    /// [`INTERRUPTED`](crate::INTERRUPTED) for a job the node's stop cut short.
    pub code: String,
    /// For a human.
    pub message: String,
}

impl From<&ComputeError> for JobError {
    fn from(e: &ComputeError) -> Self {
        JobError {
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
}

/// One job as stored.
///
/// Its logs are not part of the record (they can be a mebibyte); read them with
/// [`JobStore::logs`](crate::JobStore::logs). Times serialise as RFC 3339 (UTC, µs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The job's id ([`hanzo_compute::new_job_id`]).
    pub id: String,
    /// What to run.
    pub spec: JobSpec,
    /// Where it is.
    pub status: JobStatus,
    /// Scheduling priority, higher first (a copy of `spec.priority`).
    pub priority: i32,
    /// How many times it was started. A job is retried after a node crash only while
    /// `attempts <= spec.retries`.
    pub attempts: u32,
    /// Whether a cancel was asked while it was running; the scheduler stops it and then
    /// records the outcome.
    pub cancel_requested: bool,
    /// When it was submitted.
    #[serde(with = "time")]
    pub created_at: SystemTime,
    /// When it last started.
    #[serde(with = "opt_time", default)]
    pub started_at: Option<SystemTime>,
    /// When it reached a terminal state.
    #[serde(with = "opt_time", default)]
    pub finished_at: Option<SystemTime>,
    /// The tool's output, when it succeeded. Only [`JobStore::get`](crate::JobStore::get)
    /// fills it in; listings and summaries leave it `None` and give
    /// [`output_bytes`](Self::output_bytes) instead (see [`JobStore::get_raw`](crate::JobStore::get_raw)
    /// for the output's stored JSON text).
    #[serde(default)]
    pub output: Option<Value>,
    /// The size in bytes of the output's JSON text as stored, when there is an output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u64>,
    /// Why it failed or was cancelled.
    #[serde(default)]
    pub error: Option<JobError>,
    /// The signed receipt, as JSON ([`hanzo_compute::Receipt::to_value`]).
    #[serde(default)]
    pub receipt: Option<Value>,
    /// Resources used, once it finished.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Its attempts on peers, oldest first ([`add_placement`](crate::JobStore::add_placement));
    /// empty for a job that never left this node. Every read fills it in (`get`,
    /// `get_raw`, `get_summary`, `list`, the records of [`Recovery`]).
    #[serde(default)]
    pub placements: Vec<Placement>,
    /// Set when this node runs the job for a peer
    /// ([`submit_for_peer`](crate::JobStore::submit_for_peer)): who asked, and under
    /// which execution id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    /// A verified job's verification block (CONTRACTS §8) as the placement layer
    /// stored it ([`set_verification`](crate::JobStore::set_verification)); `None` for
    /// every other job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Value>,
    /// On a job run for a peer: the peer's signed acceptance of this node's result
    /// ([`set_acceptance`](crate::JobStore::set_acceptance)), once it settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<Value>,
}

/// How an attempt of a job on a peer went.
///
/// An attempt starts `running`; [`end_placement`](crate::JobStore::end_placement)
/// moves it to one of the others exactly once, and nothing moves it afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementOutcome {
    /// The peer accepted it and has not answered yet.
    Running,
    /// The peer returned a result this node accepted.
    Succeeded,
    /// The peer returned a failure, or a result this node refused.
    Failed,
    /// The peer was lost (connection closed, no heartbeat); a result that arrives
    /// later is dropped.
    Lost,
    /// This node cancelled it.
    Cancelled,
}

impl PlacementOutcome {
    /// Every outcome.
    pub const ALL: [PlacementOutcome; 5] = [
        PlacementOutcome::Running,
        PlacementOutcome::Succeeded,
        PlacementOutcome::Failed,
        PlacementOutcome::Lost,
        PlacementOutcome::Cancelled,
    ];

    /// The name used in the database and the API.
    pub fn name(self) -> &'static str {
        match self {
            PlacementOutcome::Running => "running",
            PlacementOutcome::Succeeded => "succeeded",
            PlacementOutcome::Failed => "failed",
            PlacementOutcome::Lost => "lost",
            PlacementOutcome::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for PlacementOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PlacementOutcome {
    type Err = ComputeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PlacementOutcome::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            ComputeError::invalid(format!(
                "unknown placement outcome '{s}' (expected one of: running, succeeded, failed, lost, cancelled)"
            ))
        })
    }
}

/// One attempt of a job on a peer. Times serialise as RFC 3339 (UTC, µs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The peer it was placed on.
    pub peer_id: String,
    /// This attempt's own id, unique in the store: a result is matched to its attempt by
    /// it, so a late result of an attempt already ended is recognised and dropped.
    pub execution_id: String,
    /// How it went.
    pub outcome: PlacementOutcome,
    /// Why it failed, was lost or was cancelled, when the caller said.
    pub reason: Option<String>,
    /// When it was recorded ([`add_placement`](crate::JobStore::add_placement)).
    #[serde(with = "time")]
    pub started_at: SystemTime,
    /// When it ended; `None` while `running`.
    #[serde(with = "opt_time", default)]
    pub ended_at: Option<SystemTime>,
    /// This node's signed acceptance of the result the attempt returned, when it took
    /// it ([`set_acceptance`](crate::JobStore::set_acceptance)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acceptance: Option<Value>,
}

/// What a signed acceptance is of ([`set_acceptance`](crate::JobStore::set_acceptance)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// The result of an attempt this node placed (by its execution id).
    Attempt(String),
    /// The result of a job this node ran for a peer (by the job's id).
    Job(String),
}

/// Where a job this node runs for a peer came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The submitting node's peer id.
    pub peer_id: String,
    /// The submitter's id of this attempt (its [`Placement::execution_id`]); unique
    /// among the jobs of this store.
    pub execution_id: String,
}

/// A job and its output as the JSON text the store holds
/// ([`JobStore::get_raw`](crate::JobStore::get_raw)).
#[derive(Debug, Clone, PartialEq)]
pub struct RawJob {
    /// The job, with `output` left `None` (and `output_bytes` set when it has one).
    pub record: JobRecord,
    /// The output's JSON text exactly as [`finish`](crate::JobStore::finish) stored it
    /// (valid JSON), when the job has an output.
    pub output: Option<Vec<u8>>,
}

/// What [`JobStore::cancel`](crate::JobStore::cancel) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// The job was queued and is now cancelled; it will never start.
    Cancelled,
    /// The job is running: the request is recorded (`cancel_requested`) and the caller
    /// must stop it through its `CancelToken`, then [`finish`](crate::JobStore::finish) it.
    Requested,
    /// The job had already finished with this status; nothing changed.
    AlreadyFinished(JobStatus),
    /// No job has this id.
    NotFound,
}

/// Which jobs [`JobStore::list`](crate::JobStore::list) returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only jobs with this status.
    pub status: Option<JobStatus>,
    /// Only jobs for this runtime.
    pub runtime: Option<RuntimeKind>,
}

/// A position in a listing, handed back as [`JobPage::next`]. It is opaque text
/// (`Display`/`FromStr`) so that it can travel in a URL.
///
/// Listings are ordered newest first by an insertion sequence that is never reused,
/// so a cursor stays valid while jobs are added or pruned: a page never repeats or
/// skips a job that existed when the first page was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor(pub(crate) i64);

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Cursor {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Cursor(n)),
            _ => Err(Error::InvalidCursor(s.to_string())),
        }
    }
}

/// Which page of a listing to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// At most this many jobs (clamped to 1..=[`Page::MAX_LIMIT`]).
    pub limit: u32,
    /// Start after this position (the previous page's [`JobPage::next`]); `None` for
    /// the newest jobs.
    pub after: Option<Cursor>,
}

impl Page {
    /// The largest page served, so that a listing can never hold much memory.
    pub const MAX_LIMIT: u32 = 1000;

    /// The first page of `limit` jobs.
    pub fn first(limit: u32) -> Self {
        Page { limit, after: None }
    }
}

impl Default for Page {
    fn default() -> Self {
        Page::first(100)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// The jobs, newest first, without their outputs (`output` is `None`,
    /// `output_bytes` tells the size): a page of a thousand jobs holds no outputs, so
    /// its memory does not grow with what the tools printed.
    pub jobs: Vec<JobRecord>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<Cursor>,
}

/// Number of jobs per (runtime, status), for metrics. Pairs with no job are absent.
pub type Counts = BTreeMap<(RuntimeKind, JobStatus), u64>;

/// What [`JobStore::open`](crate::JobStore::open) did to the jobs a previous run left
/// behind, and what is left to run.
///
/// A job found `running` with an attempt still `running` on a peer (a placement row
/// with outcome `running`) was in flight elsewhere when this node stopped: it is left
/// exactly as it was (status, attempts, `cancel_requested` and placements untouched)
/// and listed in [`remote`](Self::remote), for the placement code to re-attach to the
/// attempt (or end it and place the job again, or cancel it on the peer when
/// `cancel_requested` is set).
///
/// The restart rule, for every other job found `running` (the node stopped while it
/// ran here, or between two attempts on peers):
/// - cancel requested → `cancelled` (it was being stopped anyway);
/// - else `attempts <= spec.retries` → `queued` again (it runs again, as its spec
///   allows; `attempts` already counts the interrupted run);
/// - else → `failed` with code [`INTERRUPTED`](crate::INTERRUPTED) and the message
///   "interrupted: the node stopped while the job was running".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    /// Every queued job (those never started and those being retried), highest
    /// priority first, oldest first within a priority: the scheduler's initial queue.
    /// Their placements are filled in: a queued job can hold a `running` attempt
    /// recorded before the peer's answer (and [`start`](crate::JobStore::start)) came.
    pub queued: Vec<JobRecord>,
    /// Ids of interrupted jobs put back in the queue.
    pub retried: Vec<String>,
    /// Ids of interrupted jobs marked failed.
    pub failed: Vec<String>,
    /// Ids of interrupted jobs whose cancel had been requested, now cancelled.
    pub cancelled: Vec<String>,
    /// Jobs left `running` because an attempt on a peer is still `running` (see above),
    /// oldest first, with their placements. The store changed nothing about them.
    pub remote: Vec<JobRecord>,
}

pub(crate) mod time {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

mod opt_time {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&humantime::format_rfc3339_micros(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
