//! How a run ended ([`Exit`]), what it produced ([`ProcessOutcome`]), and the mapping of
//! both onto the job contract (CONTRACTS §1a, §2) that every process runtime shares.

use hanzo_compute::{ComputeError, LimitKind, Usage};
use std::time::Duration;

/// How a sandboxed process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code. In bubblewrap mode a process killed by signal N reads
    /// as code 128+N, as in a shell: bubblewrap reports only an exit code.
    Exited(i32),
    /// A signal killed it (without bubblewrap).
    Signaled(i32),
    /// It ran past `timeout_ms`; the whole process tree was killed.
    TimedOut,
    /// The caller's cancel token fired; the whole process tree was killed.
    Cancelled,
    /// It wrote more than `max_output_bytes` on stdout; the whole tree was killed.
    OutputLimit,
    /// The kernel killed it at the memory limit (cgroup OOM).
    MemoryLimit,
    /// It needed more processes than `pids_limit` and did not finish cleanly.
    ProcessLimit,
    /// The spec was refused before anything ran (a work-file name with `..`, a missing
    /// program, mounts without bubblewrap): a fault of the job, not of the node.
    Rejected(String),
    /// The sandbox could not start the process (the node's fault or the host's).
    SpawnFailed(String),
}

impl Exit {
    /// The limit this ending breaks, if it is a limit.
    pub fn limit(&self) -> Option<LimitKind> {
        match self {
            Exit::TimedOut => Some(LimitKind::Timeout),
            Exit::OutputLimit => Some(LimitKind::Output),
            Exit::MemoryLimit => Some(LimitKind::Memory),
            Exit::ProcessLimit => Some(LimitKind::Processes),
            _ => None,
        }
    }
}

/// The limits a run was held to, kept for the messages of limit errors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub(crate) timeout_ms: u64,
    pub(crate) memory_mb: u64,
    pub(crate) max_output_bytes: u64,
    pub(crate) pids_limit: u32,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct ProcessOutcome {
    /// How it ended.
    pub exit: Exit,
    /// Everything written on stdout, up to `max_output_bytes`.
    pub stdout: Vec<u8>,
    /// The first MiB of stderr; when more was written, a final line
    /// `[hanzo-node: N more bytes of logs dropped]` says how much.
    pub stderr: Vec<u8>,
    /// From just before the start to the end of the process.
    pub wall: Duration,
    /// Peak memory: the job cgroup's high-water mark where there is one (every process
    /// of the job together); else, without bubblewrap, the largest resident set of any
    /// one process; else unknown.
    pub peak_memory_bytes: Option<u64>,
    pub(crate) applied: Applied,
}

impl ProcessOutcome {
    pub(crate) fn failed(exit: Exit, applied: Applied, wall: Duration) -> Self {
        ProcessOutcome {
            exit,
            stdout: Vec::new(),
            stderr: Vec::new(),
            wall,
            peak_memory_bytes: None,
            applied,
        }
    }

    /// Whether the process exited 0.
    pub fn success(&self) -> bool {
        self.exit == Exit::Exited(0)
    }

    /// The run under the stdio contract (CONTRACTS §1a): on exit 0, stdout as one JSON
    /// document; otherwise the error, naming the limit when one was hit.
    pub fn result(&self) -> Result<serde_json::Value, ComputeError> {
        let a = &self.applied;
        match &self.exit {
            Exit::Exited(0) => hanzo_compute::stdio::parse_output(&self.stdout),
            Exit::Exited(code) => Err(hanzo_compute::stdio::failure(
                i64::from(*code),
                &self.stdout,
                &self.stderr,
            )),
            Exit::Signaled(sig) => Err(ComputeError::ToolFailed(format!(
                "killed by signal {sig}{}",
                hanzo_compute::stdio::last_log_line(&self.stderr)
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            ))),
            Exit::TimedOut => Err(ComputeError::limit(
                LimitKind::Timeout,
                format!("killed after the {} ms timeout", a.timeout_ms),
            )),
            Exit::Cancelled => Err(ComputeError::Cancelled),
            Exit::OutputLimit => Err(ComputeError::limit(
                LimitKind::Output,
                format!("the tool wrote more than {} bytes of output", a.max_output_bytes),
            )),
            Exit::MemoryLimit => Err(ComputeError::limit(
                LimitKind::Memory,
                format!(
                    "killed by the kernel at the {} MiB memory limit (memory_mb)",
                    a.memory_mb
                ),
            )),
            Exit::ProcessLimit => Err(ComputeError::limit(
                LimitKind::Processes,
                format!("the tool hit the limit of {} processes", a.pids_limit),
            )),
            Exit::Rejected(m) => Err(ComputeError::InvalidInput(m.clone())),
            Exit::SpawnFailed(m) => Err(ComputeError::Internal(format!("could not start the tool: {m}"))),
        }
    }

    /// The run's usage, for a receipt.
    pub fn usage(&self) -> Usage {
        let mut u = Usage {
            peak_memory_bytes: self.peak_memory_bytes,
            ..Usage::default()
        };
        u.set_wall_time(self.wall);
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(exit: Exit, stdout: &str, stderr: &str) -> ProcessOutcome {
        ProcessOutcome {
            exit,
            stdout: stdout.into(),
            stderr: stderr.into(),
            wall: Duration::from_millis(3),
            peak_memory_bytes: None,
            applied: Applied {
                timeout_ms: 500,
                memory_mb: 32,
                max_output_bytes: 10,
                pids_limit: 8,
            },
        }
    }

    #[test]
    fn results_follow_the_stdio_contract() {
        assert_eq!(
            outcome(Exit::Exited(0), "{\"a\":1}\n", "").result().unwrap(),
            serde_json::json!({"a": 1})
        );
        let e = outcome(Exit::Exited(3), "", "boom\n").result().unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("boom"), "{e}");
        let e = outcome(Exit::Signaled(11), "", "").result().unwrap_err();
        assert!(e.to_string().contains("signal 11"), "{e}");
    }

    #[test]
    fn limits_are_named_with_their_values() {
        for (exit, kind, text) in [
            (Exit::TimedOut, LimitKind::Timeout, "500 ms"),
            (Exit::MemoryLimit, LimitKind::Memory, "32 MiB"),
            (Exit::OutputLimit, LimitKind::Output, "10 bytes"),
            (Exit::ProcessLimit, LimitKind::Processes, "8 processes"),
        ] {
            assert_eq!(exit.limit(), Some(kind));
            match outcome(exit, "", "").result() {
                Err(ComputeError::LimitExceeded { limit, detail }) => {
                    assert_eq!(limit, kind);
                    assert!(detail.contains(text), "{detail}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            outcome(Exit::Cancelled, "", "").result(),
            Err(ComputeError::Cancelled)
        );
        assert_eq!(
            outcome(Exit::Rejected("x".into()), "", "")
                .result()
                .unwrap_err()
                .exit_code(),
            2
        );
        assert_eq!(
            outcome(Exit::SpawnFailed("x".into()), "", "")
                .result()
                .unwrap_err()
                .exit_code(),
            5
        );
    }
}
