//! Shared helpers: the docker CLI, the fixture images (built here from local files, never
//! pulled), a node (runtime + registry) with its own node id per test, and assertions.
//!
//! The docker CLI helpers, the busybox image and the fixture machinery (a fingerprint label,
//! rebuilt only on change, under a machine-wide lock) live in `hanzo_testkit::docker`, shared
//! with the node's API tests; the images of the SDK's examples are built here.

use hanzo_compute::config::DockerConfig;
use hanzo_compute::{
    Compute, ComputeError, JobOutcome, JobSpec, LimitKind, NodeKey, RuntimeKind, new_job_id,
};
use hanzo_docker_runtime::{DockerOptions, DockerRuntime};
use hanzo_testkit::docker::{FIXTURE_LABEL, FIXTURE_VERSION, ensure_fixture, import_dir, sha256_hex};
pub use hanzo_testkit::docker::{SCRIPT_VAR, docker, docker_output, require_docker};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The SDK's echo tools as a static Linux executable, `FROM scratch`.
pub const ECHO: &str = "hanzo-test/echo:latest";
/// The SDK's text tools as a static Linux executable, `FROM scratch`.
pub const TEXT_TOOLS: &str = "hanzo-test/text-tools:latest";

/// The target the static executables are built for; naming it keeps the static build
/// (its RUSTFLAGS) apart from the host build in `target/`.
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

// ---------------------------------------------------------------------------------------
// The docker CLI (the basics are hanzo_testkit::docker's)

/// The image id (hex, without `sha256:`) of a local image.
pub fn image_id(image: &str) -> String {
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", image]);
    id.strip_prefix("sha256:").unwrap_or(&id).to_string()
}

/// Ids of every container (running or not) matching a `docker ps` filter.
pub fn containers(filter: &str) -> Vec<String> {
    docker(&["ps", "-aq", "--no-trunc", "--filter", filter])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Asserts that no container of the job is left, running or stopped.
#[track_caller]
pub fn assert_gone(job_id: &str) {
    let left = containers(&format!("label=hanzo.job={job_id}"));
    assert!(left.is_empty(), "job {job_id} left containers behind: {left:?}");
}

/// Waits up to `within` for the job's container to appear; returns its id.
pub async fn wait_for_container(job_id: &str, within: Duration) -> String {
    let t = Instant::now();
    loop {
        if let Some(id) = containers(&format!("label=hanzo.job={job_id}"))
            .into_iter()
            .next()
        {
            return id;
        }
        assert!(
            t.elapsed() < within,
            "no container for job {job_id} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to `within` for a container to be running; returns its `docker inspect`.
pub async fn wait_until_running(id: &str, within: Duration) -> serde_json::Value {
    let t = Instant::now();
    loop {
        let inspected: serde_json::Value = serde_json::from_str(&docker(&["inspect", id])).unwrap();
        if inspected[0]["State"]["Running"] == true {
            return inspected[0].clone();
        }
        assert!(
            t.elapsed() < within,
            "container {id} not running after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes a container created by hand when dropped.
pub struct ContainerGuard(pub String);

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", "-v", &self.0]);
    }
}

/// Removes image tags (and so the images they alone held) when dropped.
#[derive(Default)]
pub struct ImageGuard(pub Vec<String>);

impl Drop for ImageGuard {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = docker_output(&["rmi", image]);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Fixture images

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_absolute() {
                t
            } else {
                workspace_root().join(t)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// `hanzo-test/busybox:latest` (built by `hanzo_testkit::docker::busybox_image`).
pub fn busybox() -> &'static str {
    hanzo_testkit::docker::busybox_image()
}

/// Every file under `path` (or `path` itself), sorted, for fingerprints.
fn files_under(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            files_under(&e, out);
        }
    } else if path.is_file() {
        out.push(path.to_path_buf());
    }
}

/// A fingerprint of everything the static example builds depend on: the SDK, both
/// examples, the lock file and the build command.
fn examples_fingerprint() -> &'static str {
    static FP: OnceLock<String> = OnceLock::new();
    FP.get_or_init(|| {
        let root = workspace_root();
        let mut files = Vec::new();
        for p in [
            "Cargo.lock",
            "hanzo-sdk/rust",
            "examples/rust/echo",
            "examples/rust/text-tools",
        ] {
            files_under(&root.join(p), &mut files);
        }
        let mut h = Sha256::new();
        h.update(FIXTURE_VERSION);
        h.update(STATIC_TARGET);
        for f in files {
            if f.components().any(|c| c.as_os_str() == "target") {
                continue;
            }
            h.update(f.strip_prefix(&root).unwrap().display().to_string());
            h.update(std::fs::read(&f).unwrap());
        }
        hex::encode(h.finalize())
    })
}

/// Builds `echo-cmd` and `text-tools-cmd` as static executables (once per process, and only
/// when an image needs them); returns the directory holding them.
fn static_examples() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let t = Instant::now();
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .args([
                "build",
                "--quiet",
                "--release",
                "--target",
                STATIC_TARGET,
                "-p",
                "echo",
                "--bin",
                "echo-cmd",
                "-p",
                "text-tools",
                "--bin",
                "text-tools-cmd",
            ])
            .status()
            .expect("run cargo");
        assert!(status.success(), "building the static example commands failed");
        eprintln!("built the static example commands in {:?}", t.elapsed());
        let dir = target_dir().join(STATIC_TARGET).join("release");
        for bin in ["echo-cmd", "text-tools-cmd"] {
            assert_static(&dir.join(bin));
        }
        dir
    })
}

/// Panics unless `file` is a statically linked executable (what `FROM scratch` needs).
pub fn assert_static(file: &Path) {
    let out = Command::new("file")
        .arg("-b")
        .arg(file)
        .output()
        .expect("run file(1)");
    let what = String::from_utf8_lossy(&out.stdout);
    assert!(
        what.contains("statically linked") || what.contains("static-pie linked"),
        "{} is not static: {what}",
        file.display()
    );
    let ldd = Command::new("ldd").arg(file).output().expect("run ldd");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        text.contains("statically linked") || text.contains("not a dynamic executable"),
        "ldd {}: {text}",
        file.display()
    );
}

/// A `FROM scratch` image of one static executable as its entrypoint.
fn scratch_image(image: &str, bin: &str) {
    let fingerprint = sha256_hex(&[examples_fingerprint().as_bytes(), bin.as_bytes()]);
    ensure_fixture(image, &fingerprint, |fp| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::copy(static_examples().join(bin), root.join(bin)).unwrap();
        import_dir(
            &root,
            image,
            &[
                format!(r#"ENTRYPOINT ["/{bin}"]"#),
                format!("LABEL {FIXTURE_LABEL}={fp}"),
            ],
        );
    });
}

/// `hanzo-test/echo:latest`.
pub fn echo() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        require_docker();
        scratch_image(ECHO, "echo-cmd");
    });
    ECHO
}

/// `hanzo-test/text-tools:latest`.
pub fn text_tools() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        require_docker();
        scratch_image(TEXT_TOOLS, "text-tools-cmd");
    });
    TEXT_TOOLS
}

// ---------------------------------------------------------------------------------------
// Nodes and jobs

/// A node id no other test uses: a runtime reaps every tool container labelled with its
/// node id when it connects, so tests running side by side must not share one.
pub fn unique_node_id() -> String {
    format!("test-node-{}", &new_job_id()[20..])
}

/// The test configuration: images are local, so nothing is ever pulled.
pub fn test_config() -> DockerConfig {
    DockerConfig {
        pull_policy: "never".into(),
        ..Default::default()
    }
}

/// A Docker runtime and a registry that signs receipts.
pub struct Node {
    pub id: String,
    pub rt: Arc<DockerRuntime>,
    pub compute: Arc<Compute>,
}

impl Node {
    pub fn new() -> Node {
        Self::with_config(test_config())
    }

    pub fn with_config(config: DockerConfig) -> Node {
        Self::from_runtime(|id| {
            DockerRuntime::new(DockerOptions {
                config,
                node_id: id.to_string(),
            })
        })
    }

    pub fn from_runtime(make: impl FnOnce(&str) -> DockerRuntime) -> Node {
        // Every test needs the daemon, also those about a missing one (they compare).
        require_docker();
        let id = unique_node_id();
        let rt = Arc::new(make(&id));
        let mut compute = Compute::new(Arc::new(NodeKey::generate().unwrap()));
        compute.register(rt.clone());
        Node {
            id,
            rt,
            compute: Arc::new(compute),
        }
    }

    pub async fn run(&self, spec: JobSpec) -> JobOutcome {
        self.compute.run(spec).await
    }
}

impl Drop for Node {
    /// A test that fails half-way (a panic while a job runs) must still leave nothing
    /// behind: remove whatever carries this node's id. The tests assert, before this runs,
    /// that the runtime removed its containers itself.
    fn drop(&mut self) {
        // Never panic here (a panic while unwinding aborts): ignore every error.
        let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &format!("label=hanzo.node={}", self.id)])
            .output()
        else {
            return;
        };
        let left = String::from_utf8_lossy(&out.stdout).to_string();
        if !left.trim().is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(left.split_whitespace())
                .output();
        }
    }
}

/// A job on the echo image calling `function`.
pub fn echo_job(function: &str) -> JobSpec {
    JobSpec::new(RuntimeKind::Docker, echo()).function(function)
}

/// A job on the busybox image running `script` with `sh -c` (params on its stdin).
pub fn script_job(script: &str) -> JobSpec {
    let mut spec = JobSpec::new(RuntimeKind::Docker, busybox());
    spec.env.insert(SCRIPT_VAR.into(), script.into());
    spec
}

/// Asserts a limit error of `kind` (exit 3) and returns its message.
#[track_caller]
pub fn expect_limit(out: &JobOutcome, kind: LimitKind) -> String {
    match &out.result {
        Err(e @ ComputeError::LimitExceeded { limit, .. }) if *limit == kind => {
            assert_eq!(e.exit_code(), 3);
            e.to_string()
        }
        other => panic!(
            "expected a {kind} limit error, got {other:?}; logs: {}",
            String::from_utf8_lossy(&out.logs)
        ),
    }
}

/// Asserts a tool failure (exit 1) and returns its message.
#[track_caller]
pub fn expect_tool_failure(out: &JobOutcome) -> String {
    match &out.result {
        Err(e @ ComputeError::ToolFailed(msg)) => {
            assert_eq!(e.exit_code(), 1);
            msg.clone()
        }
        other => panic!(
            "expected a tool failure, got {other:?}; logs: {}",
            String::from_utf8_lossy(&out.logs)
        ),
    }
}

/// Asserts bad input (exit 2) and returns its message.
#[track_caller]
pub fn expect_invalid(out: &JobOutcome) -> String {
    match &out.result {
        Err(e @ ComputeError::InvalidInput(msg)) => {
            assert_eq!(e.exit_code(), 2);
            msg.clone()
        }
        other => panic!("expected bad input, got {other:?}"),
    }
}

/// Asserts success and returns the output.
#[track_caller]
pub fn expect_ok(out: &JobOutcome) -> serde_json::Value {
    match &out.result {
        Ok(v) => v.clone(),
        Err(e) => panic!(
            "expected success, got {e:?}; logs: {}",
            String::from_utf8_lossy(&out.logs)
        ),
    }
}
