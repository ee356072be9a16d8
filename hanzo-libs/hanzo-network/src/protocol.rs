//! What nodes say to each other, and how much of it a node will read.
//!
//! Two protocols of requests and answers (CBOR, each message bounded before it is
//! decoded) and one gossipsub topic:
//! - `/hanzo/jobs/3`: offer a job, await its result, cancel it; one long-lived stream
//!   per peer, requests and answers in frames (see the `jobs` module).
//! - `/hanzo/modules/1`: fetch code by sha256, one chunk per request
//!   (request-response).
//! - `hanzo/adverts/4`: every node's sealed advert ([`Advert`](crate::Advert)).
//!
//! Values that are JSON in the node (job specs, outputs, receipts) travel as JSON
//! text, not as CBOR values: the receiver parses them with the same code and limits
//! as the HTTP API, and hashes are computed over exactly what was sent.

use serde::{Deserialize, Serialize};

/// The job protocol.
pub const JOBS_PROTOCOL: &str = "/hanzo/jobs/3";
/// The code-by-hash protocol.
pub const MODULES_PROTOCOL: &str = "/hanzo/modules/1";
/// The Kademlia protocol: our own DHT, not the IPFS one.
pub const KAD_PROTOCOL: &str = "/hanzo/kad/1";
/// The identify protocol version string.
pub const IDENTIFY_PROTOCOL: &str = "/hanzo/1";
/// The gossipsub topic adverts are published on. Its number moves with the job
/// protocol's: nodes that cannot place jobs on each other do not see each other's
/// adverts (a node of `/hanzo/jobs/1` would only fail every offer).
pub const ADVERT_TOPIC: &str = "hanzo/adverts/4";

/// The largest request a node reads: a job spec is at most 1 MiB in the API, plus
/// the envelope.
pub const MAX_REQUEST_BYTES: u64 = 2 * 1024 * 1024;
/// The largest response a node reads: an output (at most the executor's
/// `max_output_bytes`, 16 MiB by default), logs (1 MiB) and a receipt, or one chunk.
/// A result larger than this fails the attempt rather than being read.
pub const MAX_RESPONSE_BYTES: u64 = 24 * 1024 * 1024;
/// The largest chunk request read (a sha256 and an offset fit in a hundred bytes).
pub const MAX_CHUNK_REQUEST_BYTES: u64 = 1024;
/// Bytes per module chunk.
pub const CHUNK_BYTES: u64 = 1024 * 1024;
/// The largest advert accepted (gossipsub's transmit limit for the node).
pub const MAX_ADVERT_BYTES: usize = 16 * 1024;
/// Logs returned with a remote result, at most (the node keeps the same 1 MiB).
pub const MAX_REMOTE_LOG_BYTES: usize = 1024 * 1024;
/// The longest an executor holds an offer's answer for the job's result.
pub const MAX_OFFER_HOLD_MS: u64 = 1_000;
/// The longest an `Await` may ask the executor to hold the reply.
pub const MAX_AWAIT_MS: u64 = 10_000;
/// Length limits of the identifiers in messages.
pub const MAX_ID_LEN: usize = 128;

/// A request on `/hanzo/jobs/3`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobRequest {
    /// Run this job: the executor reserves capacity under its own admission and
    /// answers [`JobResponse::Accepted`] or [`JobResponse::Declined`].
    Offer(Offer),
    /// Reply once the execution ends or after `wait_ms`, whichever is first
    /// ([`JobResponse::Finished`] or [`JobResponse::Running`]). This long poll is
    /// also the progress heartbeat: a submitter that hears nothing marks the attempt
    /// lost.
    Await {
        /// The submitter's execution id.
        execution_id: String,
        /// How long the executor may hold the reply (capped at [`MAX_AWAIT_MS`]).
        wait_ms: u64,
    },
    /// Stop the execution (a fenced duplicate, or the submitter's cancel).
    Cancel {
        /// The submitter's execution id.
        execution_id: String,
    },
    /// The submitter's decisions on ended executions' results (CONTRACTS §8), at most
    /// [`MAX_SETTLEMENTS`] in one message: a submitter batches what it settles with
    /// one executor. Answered [`JobResponse::Settled`]; repeating one changes nothing.
    Settle(Vec<Settlement>),
}

/// The most settlements one `Settle` carries.
pub const MAX_SETTLEMENTS: usize = 256;

/// The submitter's decision on one execution's result: taken, with its signed
/// acceptance (the billing record's second half, JSON text), or not taken
/// (`acceptance: None`), with why (a dissent, a result that did not check out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The submitter's execution id.
    pub execution_id: String,
    /// The acceptance, as JSON text ([`hanzo_compute::billing::Acceptance`]).
    pub acceptance: Option<String>,
    /// Why the result was not taken, when it was not.
    pub reason: Option<String>,
}

/// An offer of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Names this attempt on both sides; a new attempt gets a new id, which is what
    /// fences a late result of a lost one.
    pub execution_id: String,
    /// The job spec as JSON text, its source `sha256:<hex>` for code that travels by
    /// hash (fetched from the submitter on `/hanzo/modules/1`).
    pub spec: String,
    /// The size of the code behind `sha256:` (so the executor can refuse what its
    /// module quota cannot hold before fetching a byte).
    pub code_bytes: u64,
    /// How long the submitter will wait for the result, in ms (the job's deadline).
    pub deadline_ms: u64,
    /// For a script (Deno, Python): its file extension (`ts`, `js`, `py`, ...), which
    /// decides how the executor's runtime reads it. `None` for a WASM module.
    #[serde(default)]
    pub file_ext: Option<String>,
    /// For a container image, which travels by reference (the spec's `source`): the
    /// image id (hex, the `code_hash` of a Docker receipt) the submitter resolved it
    /// to. The executor resolves the reference itself, declines when it finds another
    /// image, and runs the job by this id, so a moved tag cannot swap what runs.
    #[serde(default)]
    pub image_id: Option<String>,
    /// How long the executor may hold its `Accepted` for the job's result, in ms
    /// (capped at [`MAX_OFFER_HOLD_MS`]): a short job's result then comes with its
    /// acceptance, one round trip instead of an offer and an `Await`. 0: answer at once.
    #[serde(default)]
    pub wait_ms: u64,
    /// Set when the job is verified (CONTRACTS §8): this offer is one of several
    /// attempts on distinct nodes whose results the submitter compares. The executor
    /// runs it exactly as sent (it declines limits over its ceilings instead of
    /// lowering them, which would make its result incomparable), gives the tool
    /// `job_id` as `HANZO_JOB_ID`, and signs `nonce` into its receipt.
    #[serde(default)]
    pub attempt: Option<AttemptBinding>,
}

/// What binds one attempt of a verified job to that job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptBinding {
    /// The submitter's job id (32 hex).
    pub job_id: String,
    /// The job's verification nonce (32 hex), chosen by the submitter at random.
    pub nonce: String,
}

/// A reply on `/hanzo/jobs/3`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobResponse {
    /// Capacity is reserved and the job is the executor's to run.
    Accepted {
        /// The offer's execution id.
        execution_id: String,
        /// The executor's prices as it accepted: what the job will be charged at.
        price: crate::advert::Price,
        /// The result, when the job ended while the offer's `wait_ms` held the answer.
        #[serde(default)]
        result: Option<Box<RemoteResult>>,
    },
    /// Not taken, and why (the submitter tries its next candidate).
    Declined {
        /// A one-line reason, for the job's `unschedulable` error.
        reason: String,
        /// Full for now (no free capacity, the peer's share taken), not unwilling: the
        /// same offer may be taken once a job here ends.
        #[serde(default)]
        busy: bool,
    },
    /// Still queued or running.
    Running {
        /// The execution id.
        execution_id: String,
    },
    /// Ended.
    Finished(Box<RemoteResult>),
    /// The executor knows no such execution (never offered, or long forgotten).
    Unknown {
        /// The execution id.
        execution_id: String,
    },
    /// Refused without looking: rate limited, busy, or a malformed request.
    Refused {
        /// Why.
        reason: String,
    },
    /// The settlements were read: how many were recorded now (the others had been,
    /// named unknown executions, or did not check out).
    Settled {
        /// Recorded by this message.
        recorded: u32,
    },
}

/// The end of a remote execution, as the executor recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteResult {
    /// The execution id.
    pub execution_id: String,
    /// `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// The output as JSON text, when it succeeded.
    pub output: Option<String>,
    /// Why it failed: `(code, message)`.
    pub error: Option<(String, String)>,
    /// The usage as JSON text.
    pub usage: Option<String>,
    /// The tool's logs (at most [`MAX_REMOTE_LOG_BYTES`]).
    #[serde(with = "serde_bytes")]
    pub logs: Vec<u8>,
    /// The executor's signed receipt as JSON text.
    pub receipt: Option<String>,
}

/// A request on `/hanzo/modules/1`: up to [`CHUNK_BYTES`] of the code with this hash,
/// from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRequest {
    /// sha256 of the whole code, hex.
    pub sha256: String,
    /// Where the chunk starts.
    pub offset: u64,
}

/// A reply on `/hanzo/modules/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkResponse {
    /// Bytes from the requested offset; `total` is the code's size.
    Chunk {
        /// The code's size in bytes.
        total: u64,
        /// The chunk.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// This node does not hold that code for the asker (only a peer offered a job
    /// with it may fetch it).
    NotFound,
    /// Refused without looking.
    Refused {
        /// Why.
        reason: String,
    },
}

/// Whether `id` is an identifier a peer may send: short, printable ASCII without
/// spaces (it ends up in logs and the job store).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}
