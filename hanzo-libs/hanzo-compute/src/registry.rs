//! The registry that dispatches a job to its runtime and signs the receipt (the
//! seed's `UniversalCompute`).

use crate::receipt::{ExecutionContext, ReceiptBody, ReceiptError, Signer, hash_json};
use crate::runtime::{Execution, Job, Runtime, Usage};
use crate::{ComputeError, JobSpec, NodeKey, Receipt, RuntimeKind};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

/// The result of one job, with its signed receipt.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    /// The job's id.
    pub job_id: String,
    /// The output, or why there is none.
    pub result: Result<serde_json::Value, ComputeError>,
    /// Resources used.
    pub usage: Usage,
    /// The tool's logs (stderr), bounded.
    pub logs: Vec<u8>,
    /// The receipt; `None` only when nothing was run (the job was rejected before
    /// its code was resolved).
    pub receipt: Option<Receipt>,
}

/// Whether to sign receipts; benchmarks measure both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// Sign a receipt for every execution (the default).
    On,
    /// Skip the receipt (hashes and signature); for measurement only.
    Off,
}

/// Every runtime of the node, keyed by kind, plus the signer of its receipts.
pub struct Compute {
    runtimes: BTreeMap<RuntimeKind, Arc<dyn Runtime>>,
    signer: Signer,
}

impl Compute {
    /// A registry with no runtimes that signs with `key`, batching receipts under load.
    pub fn new(key: Arc<NodeKey>) -> Self {
        Compute {
            runtimes: BTreeMap::new(),
            signer: Signer::new(key, true),
        }
    }

    /// Whether receipts finished together may share one signature (`[compute]
    /// batch_receipts`, on by default). Off, every receipt is signed alone.
    pub fn set_receipt_batching(&mut self, on: bool) {
        self.signer.set_batching(on);
    }

    /// Adds (or replaces) a runtime.
    pub fn register(&mut self, runtime: Arc<dyn Runtime>) {
        self.runtimes.insert(runtime.kind(), runtime);
    }

    /// The runtime for `kind`, if registered.
    pub fn runtime(&self, kind: RuntimeKind) -> Option<&Arc<dyn Runtime>> {
        self.runtimes.get(&kind)
    }

    /// Every registered runtime.
    pub fn runtimes(&self) -> impl Iterator<Item = &Arc<dyn Runtime>> {
        self.runtimes.values()
    }

    /// One runtime kind as operators see it (`hanzo-node runtimes --json`, `GET
    /// /v1/runtimes`): `{runtime, available, version, detail, capabilities}`; for a kind
    /// that is not registered, unavailable with `why_missing` as the detail.
    pub async fn runtime_report(
        &self,
        kind: RuntimeKind,
        why_missing: impl FnOnce() -> String,
    ) -> serde_json::Value {
        match self.runtime(kind) {
            Some(rt) => {
                let health = rt.health().await;
                let caps = rt.capabilities();
                serde_json::json!({
                    "runtime": kind,
                    "available": health.available,
                    "version": health.version,
                    "detail": health.detail,
                    "verification": caps.verification(),
                    "capabilities": caps,
                })
            }
            None => serde_json::json!({
                "runtime": kind,
                "available": false,
                "version": null,
                "detail": why_missing(),
                "verification": null,
                "capabilities": null,
            }),
        }
    }

    /// The node's key.
    pub fn key(&self) -> &NodeKey {
        self.signer.key()
    }

    /// Runs a job with a fresh id and signs its receipt.
    pub async fn run(&self, spec: JobSpec) -> JobOutcome {
        self.run_job(&Job::new(spec), Signing::On).await
    }

    /// Runs `job` on its runtime.
    ///
    /// Poll the future to the end or drop it: one parked after its first poll may
    /// hold the receipt signer's token for its thread, and every receipt of that
    /// thread would wait for it (receipt::signer).
    pub async fn run_job(&self, job: &Job, signing: Signing) -> JobOutcome {
        let outcome = |result, usage, logs, receipt| JobOutcome {
            job_id: job.id.clone(),
            result,
            usage,
            logs,
            receipt,
        };
        if let Err(e) = job.spec.validate() {
            return outcome(Err(e), Usage::default(), Vec::new(), None);
        }
        let Some(runtime) = self.runtimes.get(&job.spec.runtime) else {
            let e = ComputeError::Unavailable(format!(
                "the {} runtime is not enabled on this node",
                job.spec.runtime
            ));
            return outcome(Err(e), Usage::default(), Vec::new(), None);
        };
        // Counted while it runs, so that a receipt finished meanwhile can wait for
        // this one to share its signature.
        let running = (signing == Signing::On).then(|| self.signer.running());
        let started_at = SystemTime::now();
        let mut exec = runtime.execute(job).await;
        let finished_at = SystemTime::now();
        // A lying node (tests only): the altered output is what gets hashed, signed,
        // stored and sent, so the lie is consistent everywhere but in its value.
        if job.origin.is_some()
            && crate::failpoints::hit(crate::failpoints::CORRUPT_OUTPUT)
            && let Ok(v) = &exec.result
        {
            exec.result = Ok(serde_json::json!({ "lie": v }));
        }
        let receipt = match running {
            Some(running) => match self.receipt(job, runtime.as_ref(), &exec, started_at, finished_at) {
                // A peer's job gets the single form: a peer of an earlier version
                // reads no other (docs/receipts.md).
                Some(r) => self.signer.sign(r, running, job.origin.is_some()).await.map(Some),
                None => Ok(None),
            },
            None => Ok(None),
        };
        match receipt {
            Ok(receipt) => outcome(exec.result, exec.usage, exec.logs, receipt),
            Err(e) => outcome(Err(e), exec.usage, exec.logs, None),
        }
    }

    fn receipt(
        &self,
        job: &Job,
        runtime: &dyn Runtime,
        exec: &Execution,
        started_at: SystemTime,
        finished_at: SystemTime,
    ) -> Option<Receipt> {
        let code_hash = exec.code_hash.clone()?;
        // Bad input (an unknown function, params a tool cannot take) ran nothing
        // worth attesting.
        if let Err(ComputeError::InvalidInput(_)) = exec.result {
            return None;
        }
        let result = match &exec.result {
            Ok(output) => Ok(hash_json(output)),
            Err(e) => Err(ReceiptError {
                code: e.code().to_string(),
                message: e.to_string(),
            }),
        };
        let version = runtime.context_version();
        let context_hash =
            ExecutionContext::of(&job.spec, &exec.function, job.tool_job_id(), &version).hash();
        Some(Receipt::unsigned(ReceiptBody {
            job_id: job.id.clone(),
            runtime: job.spec.runtime,
            function: exec.function.clone(),
            code_hash,
            input_hash: hash_json(&job.spec.params),
            result,
            usage: exec.usage.clone(),
            limits: job.spec.limits.clone(),
            deterministic: job.spec.deterministic,
            started_at,
            finished_at,
            context_hash,
            runtime_version: version,
            nonce: job.attempt.as_ref().map(|a| a.nonce.clone()),
        }))
    }
}
