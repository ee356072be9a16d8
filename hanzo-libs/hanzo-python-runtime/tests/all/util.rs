//! What every test module needs: one sandbox per test process, a runtime with a data
//! directory of its own, scripts written to temporary files, and jobs run to the end.

use hanzo_compute::config::PythonConfig;
use hanzo_compute::{ComputeError, Execution, Job, JobSpec, Runtime, RuntimeKind};
use hanzo_python_runtime::PythonRuntime;
use hanzo_sandbox::{DEFAULT_PIDS_LIMIT, Options, Sandbox};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The host's sandbox, probed once per test process.
pub fn sandbox() -> Arc<Sandbox> {
    static S: OnceLock<Arc<Sandbox>> = OnceLock::new();
    S.get_or_init(|| Arc::new(Sandbox::detect_with(Options::default())))
        .clone()
}

/// A runtime with a fresh data directory (so a fresh environment cache) and a
/// directory for the test's scripts.
pub struct Node {
    pub rt: Arc<PythonRuntime>,
    /// Kept for its lifetime: the data directory is removed with it.
    pub _data: tempfile::TempDir,
    pub scripts: tempfile::TempDir,
}

impl Node {
    pub fn new() -> Node {
        Self::with_config(&PythonConfig::default())
    }

    pub fn with_config(config: &PythonConfig) -> Node {
        Self::with_sandbox(sandbox(), config)
    }

    /// A runtime on `sandbox` instead of the host's default one.
    pub fn with_sandbox(sandbox: Arc<Sandbox>, config: &PythonConfig) -> Node {
        let data = tempfile::tempdir().expect("tempdir");
        let rt = Arc::new(PythonRuntime::new(
            sandbox,
            config,
            data.path(),
            DEFAULT_PIDS_LIMIT,
        ));
        Node {
            rt,
            _data: data,
            scripts: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Writes `text` as the script `name` and returns its path.
    pub fn script(&self, name: &str, text: &str) -> PathBuf {
        let p = self.scripts.path().join(name);
        std::fs::write(&p, text).expect("write script");
        p
    }

    /// A job running `path`.
    pub fn job(&self, path: &Path) -> JobSpec {
        JobSpec::new(RuntimeKind::Python, path.display().to_string())
    }

    /// Runs a job to the end.
    pub async fn run(&self, spec: JobSpec) -> Execution {
        self.rt.execute(&Job::new(spec)).await
    }

    /// Writes `text` as `name` and runs it with `params`.
    pub async fn run_script(&self, name: &str, text: &str, params: serde_json::Value) -> Execution {
        let p = self.script(name, text);
        self.run(self.job(&p).params(params)).await
    }

    /// The finished environments in the cache (not the temporary or lock files).
    pub fn envs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.rt.envs_dir())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Temporary build directories left in the cache.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.rt.envs_dir())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".tmp-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The repository's examples/python directory.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python")
}

/// The output of a job that must succeed, with its logs on failure.
pub fn ok(ex: &Execution) -> &serde_json::Value {
    match &ex.result {
        Ok(v) => v,
        Err(e) => panic!("job failed: {e}\nlogs:\n{}", String::from_utf8_lossy(&ex.logs)),
    }
}

/// The error of a job that must fail.
pub fn err(ex: &Execution) -> &ComputeError {
    match &ex.result {
        Ok(v) => panic!("job succeeded with {v}"),
        Err(e) => e,
    }
}

/// The job's logs as text.
pub fn logs(ex: &Execution) -> String {
    String::from_utf8_lossy(&ex.logs).into_owned()
}

/// Whether this test is alone in its process (nextest runs one test per process), so it
/// may change the process's environment, which the runtime reads (`UV_INDEX_URL`).
/// Under a runner that shares the process (`cargo test`), it re-runs itself alone in a
/// child test process, checks that it passed, and returns false.
pub fn alone_in_process(test: &str) -> bool {
    if std::env::var("NEXTEST_EXECUTION_MODE").as_deref() == Ok("process-per-test")
        || std::env::var_os("HANZO_TEST_ALONE").is_some()
    {
        return true;
    }
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("HANZO_TEST_ALONE", "1")
        .status()
        .expect("re-run the test binary");
    assert!(status.success(), "{test} failed in its own process");
    false
}

/// Files directly in the cache's envs directory whose name starts with `.lock-`.
pub fn lock_files(n: &Node) -> Vec<PathBuf> {
    std::fs::read_dir(n.rt.envs_dir())
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".lock-"))
                .collect()
        })
        .unwrap_or_default()
}
