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
/// The restart rule, for each job found `running` (the node stopped while it ran):
/// - cancel requested → `cancelled` (it was being stopped anyway);
/// - else `attempts <= spec.retries` → `queued` again (it runs again, as its spec
///   allows; `attempts` already counts the interrupted run);
/// - else → `failed` with code [`INTERRUPTED`](crate::INTERRUPTED) and the message
///   "interrupted: the node stopped while the job was running".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    /// Every queued job (those never started and those being retried), highest
    /// priority first, oldest first within a priority: the scheduler's initial queue.
    pub queued: Vec<JobRecord>,
    /// Ids of interrupted jobs put back in the queue.
    pub retried: Vec<String>,
    /// Ids of interrupted jobs marked failed.
    pub failed: Vec<String>,
    /// Ids of interrupted jobs whose cancel had been requested, now cancelled.
    pub cancelled: Vec<String>,
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
