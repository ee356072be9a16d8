//! # hanzo-jobstore
//!
//! The node's durable job store: one SQLite database in WAL mode inside the data
//! directory. A job is committed before [`JobStore::submit`] returns, so an
//! acknowledged job survives a `kill -9` of the node; [`JobStore::open`] then applies
//! the restart rule (see [`Recovery`]) so that every acknowledged job reaches a
//! terminal state, and no job runs twice unless its spec allows retries.
//!
//! Writes go through one writer thread with *group commit*: every request queued
//! while the previous transaction was committing is applied in the next single
//! transaction, and each caller is answered only after that commit. Throughput
//! therefore grows with the number of concurrent callers, and an answer always means
//! "committed". Reads ([`get`](JobStore::get), [`get_raw`](JobStore::get_raw),
//! [`get_summary`](JobStore::get_summary), [`list`](JobStore::list),
//! [`counts`](JobStore::counts), [`logs`](JobStore::logs)) use separate read-only
//! connections, which WAL lets run alongside the writer; they are blocking calls (an
//! async caller runs them on a blocking thread, e.g. `tokio::task::spawn_blocking`).
//! Listings never load outputs, and [`get_raw`](JobStore::get_raw) reads one output
//! into a single buffer, so what a read holds is bounded by the page size and by the
//! one output asked for, not by what the tools printed.
//!
//! For the network of nodes, a job's attempts on peers are kept with it
//! ([`Placement`]: [`add_placement`](JobStore::add_placement), the fenced
//! [`end_placement`](JobStore::end_placement)), a job run for a peer keeps where it came
//! from ([`Origin`], [`submit_for_peer`](JobStore::submit_for_peer), one job per
//! execution id), and a job still in flight on a peer when the node stopped is handed
//! back untouched in [`Recovery::remote`].
//!
//! The same database keeps the node's named tools ([`ToolRecord`]:
//! [`put_tool`](JobStore::put_tool), [`get_tool`](JobStore::get_tool),
//! [`list_tools`](JobStore::list_tools), [`remove_tool`](JobStore::remove_tool)),
//! written through the same writer and just as durable.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hanzo_jobstore::Error> {
//! use hanzo_compute::{JobSpec, RuntimeKind};
//! use hanzo_jobstore::{JobStore, Options};
//!
//! let (store, recovery) = JobStore::open("/var/lib/hanzo/jobs.db", Options::default())?;
//! // `recovery.queued` are the jobs to schedule first, highest priority first.
//! let job = store.submit(JobSpec::new(RuntimeKind::Wasm, "sha256:...")).await?;
//! if store.start(&job.id).await? {
//!     // ... run it, then record how it ended with `store.finish(&outcome)`.
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod error;
mod record;
mod schema;
mod store;
mod tools;
mod writer;

pub use error::Error;
pub use record::{
    Accepted, CancelOutcome, Counts, Cursor, JobError, JobPage, JobRecord, JobStatus, ListFilter, Origin,
    Page, Placement, PlacementOutcome, RawJob, Recovery,
};
pub use store::{Durability, INTERRUPTED, JobStore, Options, Retention};
pub use tools::{ToolRecord, ToolSpec};

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
