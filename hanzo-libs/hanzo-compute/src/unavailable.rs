//! A runtime that could not start (no kubeconfig, say): registered anyway so that the
//! node reports *why* through `health` and every job on it fails with that reason and
//! exit 4, instead of the runtime looking "not built in".

use crate::runtime::{Execution, Health, Job, Runtime};
use crate::{Capabilities, ComputeError, RuntimeKind};

/// A runtime of `kind` that cannot run anything, for the stated reason.
#[derive(Debug, Clone)]
pub struct UnavailableRuntime {
    kind: RuntimeKind,
    reason: String,
}

impl UnavailableRuntime {
    /// A `kind` runtime that failed to start because of `reason` (with what to do).
    pub fn new(kind: RuntimeKind, reason: impl Into<String>) -> Self {
        UnavailableRuntime {
            kind,
            reason: reason.into(),
        }
    }

    /// Why it cannot run jobs.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[async_trait::async_trait]
impl Runtime for UnavailableRuntime {
    fn kind(&self) -> RuntimeKind {
        self.kind
    }

    /// Nothing is honoured: nothing runs.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new(format!("unavailable: {}", self.reason))
    }

    async fn health(&self) -> Health {
        Health::unavailable(self.reason.clone())
    }

    async fn execute(&self, job: &Job) -> Execution {
        Execution::rejected(&job.spec, ComputeError::Unavailable(self.reason.clone()))
    }

    /// What a run would say: the runtime is unavailable, and why.
    async fn resolve_code(&self, _spec: &crate::JobSpec) -> Result<Option<String>, ComputeError> {
        Err(ComputeError::Unavailable(self.reason.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobSpec;

    #[tokio::test]
    async fn it_says_why_and_refuses_every_job_with_exit_4() {
        let rt = UnavailableRuntime::new(RuntimeKind::K8s, "no kubeconfig at /nowhere");
        let h = rt.health().await;
        assert!(!h.available);
        assert_eq!(h.detail.as_deref(), Some("no kubeconfig at /nowhere"));
        let spec = JobSpec::new(RuntimeKind::K8s, "busybox");
        let out = rt.execute(&Job::new(spec)).await;
        let err = out.result.unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(err.to_string().contains("no kubeconfig"), "{err}");
        assert!(out.code_hash.is_none(), "nothing ran, so no receipt");
    }
}
