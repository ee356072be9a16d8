//! The bridge between a [`Job`] (CONTRACTS §1a) and a sandboxed process, shared by
//! every process runtime so that each one only decides *what* to run.

use crate::{ProcessOutcome, ProcessSpec};
use hanzo_compute::{Execution, Job};
use std::path::PathBuf;

/// The `PATH` a tool gets unless its job grants another one.
pub const TOOL_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

impl ProcessSpec {
    /// A spec that runs `program` for `job` under the stdio contract: the job's params
    /// as JSON on stdin; an environment of exactly the job's grants plus `PATH`
    /// ([`TOOL_PATH`] unless granted), `LANG=C.UTF-8`, `HANZO_FUNCTION` and
    /// `HANZO_JOB_ID`; the job's mounts, network and limits. A runtime adds its
    /// toolchain (read-only paths, arguments, work files) on top.
    pub fn for_job(program: impl Into<PathBuf>, job: &Job) -> ProcessSpec {
        let mut spec = ProcessSpec::new(program);
        spec.env.insert("PATH".into(), TOOL_PATH.into());
        spec.env.insert("LANG".into(), "C.UTF-8".into());
        // Validated jobs cannot set the reserved names; insert them last regardless.
        spec.env.extend(job.spec.env.clone());
        spec.env.insert(
            "HANZO_FUNCTION".into(),
            job.spec.function_or_default().to_string(),
        );
        spec.env
            .insert("HANZO_JOB_ID".into(), job.tool_job_id().to_string());
        // serde_json cannot fail on a Value.
        spec.stdin = serde_json::to_vec(&job.spec.params).unwrap_or_default();
        spec.mounts = job.spec.mounts.clone();
        spec.network = job.spec.network;
        spec.limits = job.spec.limits.clone();
        spec.log_sink = job.logs.clone();
        spec
    }
}

impl ProcessOutcome {
    /// The run as an [`Execution`] of `job`: the stdio contract's result
    /// ([`result`](Self::result)), usage and logs, with `code_hash` naming what ran.
    pub fn execution(self, job: &Job, code_hash: Option<String>) -> Execution {
        let result = self.result();
        let usage = self.usage();
        Execution {
            code_hash,
            function: job.spec.function_or_default().to_string(),
            result,
            usage,
            logs: self.stderr,
        }
    }
}
