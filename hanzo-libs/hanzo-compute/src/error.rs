//! Typed errors shared by every runtime, and their mapping onto the CLI's exit codes
//! (CONTRACTS §3) and onto stable machine-readable codes (for receipts and the API).

use crate::limits::LimitKind;

/// Why a job did not produce an output.
///
/// Every runtime reports failures through this one enum so that the CLI, the API and
/// receipts name them the same way whatever ran the job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// The job itself is malformed: bad params, a missing or invalid module, an unknown
    /// function, an option the runtime cannot honour. Nothing ran.
    #[error("{0}")]
    InvalidInput(String),

    /// The tool ran and reported failure (an error envelope, a non-zero exit, a trap).
    #[error("tool failed: {0}")]
    ToolFailed(String),

    /// The tool broke one of the limits the runtime enforces and was stopped.
    #[error("limit exceeded: {limit}: {detail}")]
    LimitExceeded {
        /// Which limit was hit.
        limit: LimitKind,
        /// What happened, for a human.
        detail: String,
    },

    /// The runtime cannot run jobs on this host right now (no daemon, no toolchain).
    #[error("runtime unavailable: {0}")]
    Unavailable(String),

    /// The job was cancelled before it finished.
    #[error("cancelled")]
    Cancelled,

    /// A fault in the node itself, not in the job.
    #[error("internal error: {0}")]
    Internal(String),

    /// No node could take the job where its placement allows (CONTRACTS §7): the
    /// message says why, per candidate (refused at submission, or accepted and then
    /// lost or failed).
    #[error("unschedulable: {0}")]
    Unschedulable(String),

    /// A job with `verification` (CONTRACTS §8) ran on several nodes and their results
    /// did not agree well enough to trust one (`disagreed`), or too few nodes could run
    /// it (`insufficient_peers`). Every node's receipt is kept in the job's record.
    #[error("verification failed: {0}")]
    VerificationFailed(String),
}

impl ComputeError {
    /// The CLI exit code for this error (CONTRACTS §3).
    pub fn exit_code(&self) -> i32 {
        match self {
            ComputeError::ToolFailed(_) | ComputeError::Cancelled => 1,
            // There is no result one could trust: as with a tool that failed.
            ComputeError::VerificationFailed(_) => 1,
            ComputeError::InvalidInput(_) => 2,
            ComputeError::LimitExceeded { .. } => 3,
            ComputeError::Unavailable(_) => 4,
            ComputeError::Internal(_) => 5,
            // Nothing could run it where it may run: as with a runtime this node lacks.
            ComputeError::Unschedulable(_) => 4,
        }
    }

    /// A stable, machine-readable name for the kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            ComputeError::InvalidInput(_) => "invalid_input",
            ComputeError::ToolFailed(_) => "tool_failed",
            ComputeError::LimitExceeded { .. } => "limit_exceeded",
            ComputeError::Unavailable(_) => "unavailable",
            ComputeError::Cancelled => "cancelled",
            ComputeError::Internal(_) => "internal",
            ComputeError::Unschedulable(_) => "unschedulable",
            ComputeError::VerificationFailed(_) => "verification_failed",
        }
    }

    /// The error a stored or received `(code, message)` pair stands for: the inverse
    /// of [`code`](Self::code) and `to_string()`, so that an error that crossed the
    /// network or the store prints and maps to an exit code as the original did. An
    /// unknown code (a newer peer's) becomes [`Internal`](Self::Internal), naming it.
    pub fn from_parts(code: &str, message: &str) -> ComputeError {
        let rest = |prefix: &str| message.strip_prefix(prefix).unwrap_or(message).to_string();
        match code {
            "invalid_input" => ComputeError::InvalidInput(message.to_string()),
            "tool_failed" => ComputeError::ToolFailed(rest("tool failed: ")),
            "limit_exceeded" => {
                let body = rest("limit exceeded: ");
                match body.split_once(": ") {
                    Some((name, detail)) => match LimitKind::ALL.into_iter().find(|k| k.name() == name) {
                        Some(limit) => ComputeError::limit(limit, detail),
                        None => ComputeError::ToolFailed(message.to_string()),
                    },
                    None => ComputeError::ToolFailed(message.to_string()),
                }
            }
            "unavailable" => ComputeError::Unavailable(rest("runtime unavailable: ")),
            "cancelled" => ComputeError::Cancelled,
            "internal" => ComputeError::Internal(rest("internal error: ")),
            "unschedulable" => ComputeError::Unschedulable(rest("unschedulable: ")),
            "verification_failed" => ComputeError::VerificationFailed(rest("verification failed: ")),
            other => ComputeError::Internal(format!("{other}: {message}")),
        }
    }

    /// Shorthand for [`ComputeError::LimitExceeded`].
    pub fn limit(limit: LimitKind, detail: impl Into<String>) -> Self {
        ComputeError::LimitExceeded {
            limit,
            detail: detail.into(),
        }
    }

    /// Shorthand for [`ComputeError::InvalidInput`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        ComputeError::InvalidInput(msg.into())
    }

    /// Shorthand for [`ComputeError::Internal`].
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        ComputeError::Internal(msg.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(ComputeError::ToolFailed("x".into()).exit_code(), 1);
        assert_eq!(ComputeError::invalid("x").exit_code(), 2);
        assert_eq!(ComputeError::limit(LimitKind::Timeout, "x").exit_code(), 3);
        assert_eq!(ComputeError::Unavailable("x".into()).exit_code(), 4);
        assert_eq!(ComputeError::internal("x").exit_code(), 5);
    }

    #[test]
    fn errors_survive_a_trip_through_code_and_message() {
        for e in [
            ComputeError::invalid("bad params"),
            ComputeError::ToolFailed("boom: it broke".into()),
            ComputeError::limit(LimitKind::Memory, "over 64 MiB"),
            ComputeError::Unavailable("no daemon".into()),
            ComputeError::Cancelled,
            ComputeError::internal("disk"),
            ComputeError::Unschedulable("peer A: full".into()),
            ComputeError::VerificationFailed("disagreed: 1 vs 1".into()),
        ] {
            let back = ComputeError::from_parts(e.code(), &e.to_string());
            assert_eq!(back, e);
            assert_eq!(back.exit_code(), e.exit_code());
        }
        assert_eq!(ComputeError::from_parts("later", "x").code(), "internal");
    }

    #[test]
    fn limit_errors_name_the_limit() {
        let e = ComputeError::limit(LimitKind::Memory, "grew past 16 MiB");
        assert_eq!(e.to_string(), "limit exceeded: memory: grew past 16 MiB");
    }
}
