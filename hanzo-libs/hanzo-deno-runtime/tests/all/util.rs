//! Shared helpers: a runtime on a private data directory, tools written to a temp dir,
//! the example tools, and running jobs.

use hanzo_compute::config::DenoConfig;
use hanzo_compute::{ComputeError, Execution, Job, JobSpec, Runtime, RuntimeKind};
use hanzo_deno_runtime::DenoRuntime;
use hanzo_sandbox::Sandbox;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A Deno runtime with its own data directory (and so its own module cache).
pub struct Node {
    pub rt: Arc<DenoRuntime>,
    pub data: tempfile::TempDir,
    /// Where [`Node::tool`] writes tools.
    pub tools: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        Node::with_pids(hanzo_sandbox::DEFAULT_PIDS_LIMIT)
    }

    pub fn with_pids(pids_limit: u32) -> Node {
        let data = tempfile::tempdir().expect("temp dir");
        let rt = runtime_at(data.path(), pids_limit);
        Node {
            rt,
            data,
            tools: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Writes a tool and returns its path.
    pub fn tool(&self, name: &str, source: &str) -> String {
        let p = self.tools.path().join(name);
        std::fs::write(&p, source).expect("write tool");
        p.display().to_string()
    }

    /// Runs `spec` directly on the runtime.
    pub async fn exec(&self, spec: JobSpec) -> Execution {
        self.rt.execute(&Job::new(spec)).await
    }

    /// Runs `function` of the tool at `path` with `params`; the result.
    pub async fn call(&self, path: &str, function: &str, params: Value) -> Result<Value, ComputeError> {
        self.exec(job(path).function(function).params(params))
            .await
            .result
    }
}

/// A runtime on the detected sandbox, with the real deno and `data_dir`.
pub fn runtime_at(data_dir: &Path, pids_limit: u32) -> Arc<DenoRuntime> {
    // Resolved here so that a missing deno fails loudly with how to install it.
    let deno = hanzo_testkit::toolchain("deno");
    let sandbox = Sandbox::detect();
    assert!(
        sandbox.isolates_filesystem(),
        "these tests need bubblewrap: {:?}",
        sandbox.notes()
    );
    let config = DenoConfig {
        binary: deno.display().to_string(),
    };
    Arc::new(DenoRuntime::new(Arc::new(sandbox), &config, data_dir, pids_limit))
}

/// A job for the tool at `path` with short limits suited to tests.
pub fn job(path: &str) -> JobSpec {
    let mut spec = JobSpec::new(RuntimeKind::Deno, path);
    spec.limits.timeout_ms = 20_000;
    spec
}

/// An example tool from `examples/deno`.
pub fn example(name: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "..", "examples", "deno", name]
        .iter()
        .collect();
    assert!(p.is_file(), "missing example {}", p.display());
    p.display().to_string()
}

/// Panics unless `r` is an error with this exit code whose message contains `needle`.
#[track_caller]
pub fn expect_err(r: &Result<Value, ComputeError>, code: i32, needle: &str) -> String {
    match r {
        Err(e) => {
            let msg = e.to_string();
            assert_eq!(e.exit_code(), code, "{msg}");
            assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
            msg
        }
        Ok(v) => panic!("expected an error (exit {code}) containing {needle:?}, got {v}"),
    }
}

/// Grants an env variable named after a fresh marker: deno's command line then holds
/// it (`--allow-env=...`), so the job's processes can be found on the host.
pub fn marked(mut spec: JobSpec) -> (JobSpec, String) {
    let m = hanzo_testkit::marker();
    spec.env.insert(format!("M{m}"), "1".into());
    (spec, m)
}

/// Runs a job with `--allow-all` instead of the job's permissions: the sandbox is then
/// the only wall, and must hold on its own.
pub async fn run_allow_all(node: &Node, spec: JobSpec) -> hanzo_sandbox::ProcessOutcome {
    // Prepares the tool (cache) by running it once as a normal job first.
    let job = Job::new(spec);
    let _ = node.rt.execute(&job).await;
    let mut cmd = node.rt.command(&job).expect("command");
    cmd.args.retain(|a| !a.starts_with("--allow-"));
    let runner = cmd
        .args
        .iter()
        .position(|a| a == hanzo_deno_runtime::RUNNER_FILE)
        .expect("runner argument");
    cmd.args.insert(runner, "--allow-all".into());
    let sandbox = Sandbox::detect();
    sandbox.run(cmd, &job.cancel).await
}
