//! The runtime trait every workload driver implements, in the spirit of Nomad's task
//! drivers: fingerprint (health), capabilities, and execute (start + wait), with
//! stop through the job's [`CancelToken`].

use crate::stdio::LogSink;
use crate::{Capabilities, ComputeError, JobSpec, RuntimeKind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Resources one execution used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Wall-clock time of the execution proper, in milliseconds (µs precision).
    pub wall_time_ms: f64,
    /// Fuel consumed, where the runtime meters it.
    pub fuel_consumed: Option<u64>,
    /// Peak memory in bytes, where known.
    pub peak_memory_bytes: Option<u64>,
}

impl Usage {
    /// Its fields in canonical order, as serde writes them (see
    /// [`ResourceLimits::canonical_fields`](crate::ResourceLimits)).
    pub(crate) fn canonical_fields(
        &self,
        o: &mut crate::canonical::SortedObject,
    ) -> Result<(), crate::canonical::CanonicalError> {
        let Usage {
            wall_time_ms,
            fuel_consumed,
            peak_memory_bytes,
        } = self;
        o.field("fuel_consumed", fuel_consumed)?;
        o.field("peak_memory_bytes", peak_memory_bytes)?;
        o.field("wall_time_ms", wall_time_ms)
    }

    /// Sets the wall time from a duration, rounded to the microsecond so that the
    /// figure prints the same way everywhere.
    pub fn set_wall_time(&mut self, d: std::time::Duration) {
        self.wall_time_ms = d.as_micros() as f64 / 1000.0;
    }
}

/// A runtime's answer to "can you run jobs now?" (Nomad's fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Whether jobs can run.
    pub available: bool,
    /// The version of the engine, daemon or toolchain behind the runtime.
    pub version: Option<String>,
    /// Why it is unavailable, or any other note for the operator.
    pub detail: Option<String>,
}

impl Health {
    /// An available runtime of the given version.
    pub fn ok(version: impl Into<String>) -> Self {
        Health {
            available: true,
            version: Some(version.into()),
            detail: None,
        }
    }

    /// An unavailable runtime, with the reason and what to do about it.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Health {
            available: false,
            version: None,
            detail: Some(detail.into()),
        }
    }
}

/// A cooperative stop signal for a running job (Nomad's `StopTask`).
///
/// Cheap to clone; every clone sees the same state.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<CancelInner>,
}

#[derive(Debug, Default)]
struct CancelInner {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelToken {
    /// A token that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the job to stop.
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        self.inner.notify.notify_waiters();
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once the token fires.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.notify.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// One job handed to a runtime.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job's id (also given to the tool as `HANZO_JOB_ID`).
    pub id: String,
    /// What to run.
    pub spec: JobSpec,
    /// Fires when the job must stop.
    pub cancel: CancelToken,
    /// Where the tool's log bytes go while it runs (discarded by default); the
    /// runtime still returns the whole bounded log in [`Execution::logs`].
    pub logs: LogSink,
    /// Where the runtime announces slow steps before the tool runs (a compile, a
    /// build, a dependency install); nothing listens by default.
    pub progress: crate::progress::Progress,
    /// The peer that placed this job here (a libp2p peer id); `None` for this node's
    /// own jobs.
    pub origin: Option<String>,
    /// Set when this execution is one attempt of a verified job (CONTRACTS §8) that
    /// another node placed here.
    pub attempt: Option<Attempt>,
    /// How many agents this job runs under (CONTRACTS §10): 0 for a job a client
    /// submitted, the calling agent's depth plus one for an agent's tool call. It
    /// bounds how deep agents may call agents, and a nested agent takes none of the
    /// node's agent places (its root holds one), so agents calling agents cannot
    /// wait on each other.
    pub depth: u32,
}

/// One attempt of a verified job: what every node running it must see alike, so
/// that honest nodes give the same output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The submitter's job id, given to the tool as `HANZO_JOB_ID` on every node.
    pub job_id: String,
    /// The job's verification nonce (32 hex), signed into the receipt.
    pub nonce: String,
}

impl Job {
    /// The id the tool sees as `HANZO_JOB_ID`: the submitter's on an attempt of a
    /// verified job (the same on every node), this job's own otherwise.
    pub fn tool_job_id(&self) -> &str {
        self.attempt.as_ref().map_or(&self.id, |a| &a.job_id)
    }

    /// A job with a fresh random id.
    pub fn new(spec: JobSpec) -> Self {
        Job::with_id(new_job_id(), spec)
    }

    /// A job with the given id (one the job store assigned, say).
    pub fn with_id(id: impl Into<String>, spec: JobSpec) -> Self {
        Job {
            id: id.into(),
            spec,
            cancel: CancelToken::new(),
            logs: LogSink::default(),
            progress: Default::default(),
            origin: None,
            attempt: None,
            depth: 0,
        }
    }

    /// The same job, with its live log stream going to `sink`.
    pub fn with_log_sink(mut self, sink: LogSink) -> Self {
        self.logs = sink;
        self
    }

    /// The same job, with its slow steps announced to `progress`.
    pub fn with_progress(mut self, progress: crate::progress::Progress) -> Self {
        self.progress = progress;
        self
    }
}

/// A fresh job id: 32 hex digits, the first 12 the milliseconds since the Unix epoch,
/// the other 20 (80 bits) unpredictable.
///
/// Ids made later sort later. The job store keeps unique indexes on job ids and on
/// execution ids (made the same way): a random key lands on a random page of each
/// index, and every such page is written to the WAL at the next commit, where a
/// time-ordered key lands on the page the previous one did. A remote job writes
/// three such keys on the submitter and two on the executor (BENCHMARKS.md).
///
/// The last 80 bits are a keyed pseudo-random function (SipHash, the key drawn from
/// the OS once per process) of a counter: no system call per id (`getrandom` per id
/// was a tenth of a WASM job's bookkeeping), and still unpredictable to anyone who has
/// seen other ids, which matters: a peer that could guess a node's next execution ids
/// could claim them on other nodes first. An id is no secret (the API's token is),
/// and the time it shows is the job's `created_at`. Take a *suffix* of one for a
/// short unique name: its prefix is shared by every id of the same minute.
pub fn new_job_id() -> String {
    use std::hash::BuildHasher;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    // std's `RandomState` keys SipHash-1-3 from the OS's random source.
    static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let key = KEY.get_or_init(std::hash::RandomState::new);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(ms << 16).to_be_bytes());
    b[6..14].copy_from_slice(&key.hash_one((n, 0u8)).to_be_bytes());
    b[14..].copy_from_slice(&key.hash_one((n, 1u8)).to_be_bytes()[..2]);
    crate::receipt::to_hex(&b)
}

/// What a runtime reports after running (or failing to run) a job.
#[derive(Debug, Clone)]
pub struct Execution {
    /// sha256 (hex) of the code that was resolved; `None` if it never got that far,
    /// in which case no receipt is issued.
    pub code_hash: Option<String>,
    /// The function that was called.
    pub function: String,
    /// The output, or why there is none.
    pub result: Result<serde_json::Value, ComputeError>,
    /// Resources used.
    pub usage: Usage,
    /// The tool's log stream (stderr), bounded.
    pub logs: Vec<u8>,
}

impl Execution {
    /// An execution that failed before any code was resolved.
    pub fn rejected(spec: &JobSpec, error: ComputeError) -> Self {
        Execution {
            code_hash: None,
            function: spec.function_or_default().to_string(),
            result: Err(error),
            usage: Usage::default(),
            logs: Vec::new(),
        }
    }
}

/// How a tool describes itself, where its runtime can ask it (an MCP server's
/// `tools/list` entry): what a named tool stores when it is registered without a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDescription {
    /// The tool's own name.
    pub name: String,
    /// What it does, in its words.
    pub description: Option<String>,
    /// The JSON Schema of its params.
    pub input_schema: serde_json::Value,
    /// The JSON Schema of its output, where it declares one.
    pub output_schema: Option<serde_json::Value>,
}

/// A workload driver: WASM, Docker, Deno, ...
///
/// Implementations must be safe to call concurrently from many tasks, must honour
/// every limit their [`capabilities`](Runtime::capabilities) call enforced, and must
/// leave nothing of a job behind (instance, container, process) once `execute`
/// returns, whatever the outcome.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Which runtime this is.
    fn kind(&self) -> RuntimeKind;

    /// What the runtime enforces, honestly.
    fn capabilities(&self) -> Capabilities;

    /// Whether the runtime can run jobs now, and its version.
    async fn health(&self) -> Health;

    /// Runs a job to completion, timeout, limit or cancellation.
    async fn execute(&self, job: &Job) -> Execution;

    /// The version receipts name as `runtime_version`, part of the execution context
    /// ([`crate::receipt::ExecutionContext`]): whatever could make two honest runs of
    /// the same code differ. Cheap and fixed for the process (unlike `health`).
    fn context_version(&self) -> String {
        format!("{} hanzo {}", self.kind(), env!("CARGO_PKG_VERSION"))
    }

    /// The content identity `spec` would run, as its receipt would record it in
    /// `code_hash`, found without running it; `None` when this runtime cannot say. The
    /// network pins code that travels by reference with it (a container image: its
    /// id), so the runtime resolves under its own rules (pull policy, registry) and
    /// never fetches more than a run of `spec` would.
    async fn resolve_code(&self, spec: &JobSpec) -> Result<Option<String>, ComputeError> {
        let _ = spec;
        Ok(None)
    }

    /// The tool `spec` names, as it describes itself (its schemas), asked of the tool
    /// itself under `spec`'s limits; `None` when this runtime's tools do not describe
    /// themselves.
    async fn describe(&self, spec: &JobSpec) -> Result<Option<ToolDescription>, ComputeError> {
        let _ = spec;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::new_job_id;
    use std::collections::HashSet;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn job_ids_are_hex_unique_and_sort_by_the_time_they_were_made() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let first = new_job_id();
        assert_eq!(first.len(), 32);
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let ms = u64::from_str_radix(&first[..12], 16).unwrap();
        assert!(ms >= before && ms < before + 60_000, "{first}: {ms} vs {before}");
        // Many in the same millisecond: 80 unpredictable bits keep them apart.
        let ids: HashSet<String> = (0..20_000).map(|_| new_job_id()).collect();
        assert_eq!(ids.len(), 20_000);
        std::thread::sleep(Duration::from_millis(2));
        let later = new_job_id();
        assert!(ids.iter().all(|id| *id < later), "an id made later sorts later");
        assert!(first < later);
    }
}
