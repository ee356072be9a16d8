//! A sandboxed process the caller talks to over its stdin and stdout for as long as it
//! likes: a stdio server (an MCP server, say) kept warm across many calls, where
//! [`Sandbox::run`] is one document in, one out.
//!
//! Everything [`Sandbox::run`] enforces holds for the session's whole life: namespaces,
//! the read-only root, the network grant, the memory, process and CPU limits of its
//! cgroup. What it cannot know is when a *call* is over, so the session has no timeout
//! and no output cap of its own: the caller bounds each exchange (its deadline, the
//! bytes it accepts) and [`stop`](Session::stop)s a session that broke them.

use crate::run::{self, Live};
use crate::{Exit, ProcessOutcome, ProcessSpec, Sandbox};
use hanzo_compute::CancelToken;
use tokio::net::unix::pipe;

/// A running sandboxed process with its stdin and stdout open to the caller.
///
/// Dropping it kills the whole process tree and cleans up (on a thread of its own);
/// [`stop`](Session::stop) does the same, waits for it, and reports how it ended.
pub struct Session {
    live: Live,
}

impl Sandbox {
    /// Starts `spec`'s program and hands back its pipes instead of supervising a single
    /// exchange. `spec.stdin` must be empty (write to [`Session::take_io`]'s sender);
    /// `spec.limits.timeout_ms` and `max_output_bytes` are the caller's to apply.
    /// Every byte of stderr goes to `spec.log_sink` as it comes (none is kept: a server
    /// may log for days), so the caller decides what of it to keep, and for which call.
    ///
    /// Like [`run`](Sandbox::run), must be called on a thread that outlives the
    /// session (any tokio worker does): the process is killed when the thread that
    /// started it exits.
    pub async fn spawn(&self, spec: ProcessSpec) -> Result<Session, ProcessOutcome> {
        let mut spec = spec;
        spec.stdin.clear();
        let live = run::open(self, &spec, &CancelToken::new(), true).await?;
        Ok(Session { live })
    }
}

impl Session {
    /// The process's stdin (to write to) and stdout (to read from); `None` once taken.
    pub fn take_io(&mut self) -> Option<(pipe::Sender, pipe::Receiver)> {
        match (self.live.stdin.take(), self.live.stdout.take()) {
            (Some(i), Some(o)) => Some((i, o)),
            _ => None,
        }
    }

    /// Resolves once the process has exited by itself (or was killed). Cancel-safe:
    /// it can be raced against other work and awaited again.
    pub async fn exited(&mut self) {
        if !self.live.child_done {
            let _ = (&mut self.live.exited).await;
            self.live.child_done = true;
        }
    }

    /// Reads what the process has written on stderr so far into the spec's sink (its
    /// reader otherwise runs on its own time): bytes written before an answer on stdout
    /// are the answer's logs. Gives up after 100 ms (a reader stuck on a full sink).
    pub async fn flush_logs(&self) {
        let Some(tx) = &self.live.flush else { return };
        let (ack, done) = tokio::sync::oneshot::channel();
        if tx.send(ack).await.is_ok() {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), done).await;
        }
    }

    /// Whether the process has exited, without waiting.
    pub fn has_exited(&self) -> bool {
        self.live.child_done || self.live.exited.is_finished()
    }

    /// The peak memory of the session's processes so far, where a memory cgroup
    /// measures it.
    pub fn peak_memory_bytes(&self) -> Option<u64> {
        self.live.peak_memory()
    }

    /// Kills the whole process tree (unless it has already exited), waits for it,
    /// cleans up, and reports how it ended: `why` when the caller stopped it for a
    /// reason of its own (a deadline, an output cap, a cancellation), else how it
    /// ended by itself. The outcome's stderr is empty: it went to the spec's sink.
    pub async fn stop(mut self, why: Option<Exit>) -> ProcessOutcome {
        if self.live.exited.is_finished() {
            self.live.child_done = true;
        }
        self.live.finish(why, None, Vec::new(), 0).await
    }
}
