//! The store's errors.

use std::path::PathBuf;

/// Why a store operation failed.
///
/// An operation that returns an error was not acknowledged; for a write this means
/// it is not in the store (its transaction was rolled back), with one exception
/// documented on [`Error::Closed`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite reported an error (I/O, disk full, a malformed database, ...).
    #[error("job store: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// The commit of a batch of writes failed, so none of the batch was stored.
    #[error("job store: commit failed: {0}")]
    Commit(String),

    /// The database file, its directory or its lock file could not be used.
    #[error("job store: {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },

    /// Another process (another node) already has this store open.
    #[error(
        "job store: {0} is in use by another process (is another hanzo-node running on this data directory?)"
    )]
    Locked(PathBuf),

    /// The writer thread has stopped (the store was closed, or the thread died). A write
    /// in flight at that moment may or may not have been committed.
    #[error("job store: the writer has stopped")]
    Closed,

    /// SQLite could not put the database in WAL mode (e.g. a file system without shared
    /// memory support); the store needs WAL for concurrent reads and its durability.
    #[error("job store: cannot use WAL mode (the database stays in {0} mode)")]
    NoWal(String),

    /// The database was created by a newer version of this crate.
    #[error("job store: schema version {found} is newer than this node supports ({supported})")]
    SchemaVersion {
        /// The version found in the database.
        found: i64,
        /// The newest version this crate knows.
        supported: i64,
    },

    /// A stored row could not be decoded (a column holds JSON or a value this version
    /// does not understand).
    #[error("job store: job {id}: {detail}")]
    Corrupt {
        /// The job's id.
        id: String,
        /// What could not be decoded.
        detail: String,
    },

    /// A value could not be encoded as JSON for storage.
    #[error("job store: cannot encode {what}: {source}")]
    Encode {
        /// Which field.
        what: &'static str,
        /// The serialiser's error.
        source: serde_json::Error,
    },

    /// A pagination cursor that this store did not issue.
    #[error("invalid cursor '{0}'")]
    InvalidCursor(String),

    /// No job has this id ([`JobStore::add_placement`](crate::JobStore::add_placement)).
    /// The caller's mistake, not a failure of the store: nothing was written.
    #[error("job store: no job '{0}'")]
    JobNotFound(String),

    /// The execution id already names an attempt
    /// ([`add_placement`](crate::JobStore::add_placement)) or, in
    /// [`submit_for_peer`](crate::JobStore::submit_for_peer), a job run for another
    /// peer. The caller's mistake (or a peer's), not a failure of the store: nothing was
    /// written.
    #[error("job store: execution id '{0}' is already taken")]
    ExecutionTaken(String),

    /// [`end_placement`](crate::JobStore::end_placement) was asked to end an attempt as
    /// `running`, which is not an end. Nothing was written.
    #[error("job store: an attempt cannot end as 'running'")]
    InvalidEnd,
}
