//! Shared helpers: the docker CLI, the fixture images (built here from local files, never
//! pulled), a node (runtime + registry) with its own node id per test, and assertions.
//!
//! Fixture images carry a `hanzo.test.fixture` label holding a fingerprint of what they were
//! built from; a test process rebuilds an image only when the label does not match, under a
//! machine-wide file lock, so the tests (one process each under nextest) share one build.

use hanzo_compute::config::DockerConfig;
use hanzo_compute::{
    Compute, ComputeError, JobOutcome, JobSpec, LimitKind, NodeKey, RuntimeKind, new_job_id,
};
use hanzo_docker_runtime::{DockerOptions, DockerRuntime};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// busybox (static) with every applet linked in /bin; its command runs the shell script in
/// `$HANZO_TEST_SCRIPT` (params on stdin, as for any tool).
pub const BUSYBOX: &str = "hanzo-test/busybox:latest";
/// The SDK's echo tools as a static Linux executable, `FROM scratch`.
pub const ECHO: &str = "hanzo-test/echo:latest";
/// The SDK's text tools as a static Linux executable, `FROM scratch`.
pub const TEXT_TOOLS: &str = "hanzo-test/text-tools:latest";
/// The env variable the busybox image's command evaluates.
pub const SCRIPT_VAR: &str = "HANZO_TEST_SCRIPT";

/// Bump to force every machine to rebuild the fixtures.
const FIXTURE_VERSION: &str = "1";
const FIXTURE_LABEL: &str = "hanzo.test.fixture";
/// The target the static executables are built for; naming it keeps the static build
/// (its RUSTFLAGS) apart from the host build in `target/`.
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

// ---------------------------------------------------------------------------------------
// The docker CLI

/// Runs `docker ARGS` and returns its output, whatever the exit status.
pub fn docker_output(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the docker CLI ({e}); run `source scripts/docker.sh && ensure_docker`")
        })
}

/// Runs `docker ARGS`, panics unless it succeeds, returns its trimmed stdout.
pub fn docker(args: &[&str]) -> String {
    let out = docker_output(args);
    assert!(
        out.status.success(),
        "docker {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Panics (the test fails, it does not skip) unless a Docker daemon answers.
pub fn require_docker() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        let out = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!(
                "no Docker daemon answers `docker info` ({}); these tests need one: \
                 run `source scripts/docker.sh && ensure_docker`",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => {
                panic!("the docker CLI is missing ({e}); run `source scripts/docker.sh && ensure_docker`")
            }
        }
    });
}

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

/// Holds a machine-wide lock while fixtures are checked and built: the daemon is shared by
/// every test process (and every checkout) on the machine.
fn fixture_lock() -> std::fs::File {
    let path = std::env::temp_dir().join("hanzo-docker-test-fixtures.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    file.lock().expect("lock the fixture lock file");
    file
}

/// The `hanzo.test.fixture` label of a local image, if it exists.
fn fixture_label(image: &str) -> Option<String> {
    let out = docker_output(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{FIXTURE_LABEL}\"}}}}"),
        image,
    ]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Builds `image` with `build` unless it exists with the label `fingerprint`. `build`
/// receives the fingerprint and must tag the image.
fn ensure_fixture(image: &str, fingerprint: &str, build: impl FnOnce(&str)) {
    if fixture_label(image).as_deref() == Some(fingerprint) {
        return;
    }
    let _lock = fixture_lock();
    if fixture_label(image).as_deref() == Some(fingerprint) {
        return; // another process built it while this one waited
    }
    let old = docker_output(&["image", "inspect", "--format", "{{.Id}}", image]);
    build(fingerprint);
    assert_eq!(
        fixture_label(image).as_deref(),
        Some(fingerprint),
        "{image} was not built"
    );
    // The image the tag used to name is now dangling: remove it (fails harmlessly when a
    // container or another tag still uses it).
    if old.status.success() {
        let old = String::from_utf8_lossy(&old.stdout).trim().to_string();
        if old != docker(&["image", "inspect", "--format", "{{.Id}}", image]) {
            let _ = docker_output(&["rmi", &old]);
        }
    }
}

/// `docker import` of the directory `root` as `image`, with Dockerfile-style changes.
fn import_dir(root: &Path, image: &str, changes: &[String]) {
    let tar = root.with_extension("tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("run tar");
    assert!(status.success(), "tar of {} failed", root.display());
    let mut args = vec!["import".to_string()];
    for c in changes {
        args.push("--change".into());
        args.push(c.clone());
    }
    args.push(tar.display().to_string());
    args.push(image.to_string());
    docker(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// `hanzo-test/busybox:latest`: /bin/busybox from the host's busybox-static, a symlink for
/// every applet, /tmp, a passwd with `nobody`; `CMD sh -c 'eval "$HANZO_TEST_SCRIPT"'`.
pub fn busybox() -> &'static str {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        require_docker();
        let bin = Path::new("/usr/bin/busybox");
        let bytes = std::fs::read(bin).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}); install busybox-static (scripts/docker.sh)",
                bin.display()
            )
        });
        let cmd = format!(r#"CMD ["sh", "-c", "eval \"${SCRIPT_VAR}\""]"#);
        let fingerprint = sha256_hex(&[FIXTURE_VERSION.as_bytes(), &bytes, cmd.as_bytes()]);
        ensure_fixture(BUSYBOX, &fingerprint, |fp| {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("rootfs");
            for d in ["bin", "tmp", "etc"] {
                std::fs::create_dir_all(root.join(d)).unwrap();
            }
            std::fs::copy(bin, root.join("bin/busybox")).unwrap();
            let list = Command::new(bin).arg("--list").output().expect("busybox --list");
            for applet in String::from_utf8_lossy(&list.stdout).lines() {
                if applet != "busybox" && !applet.contains('/') {
                    std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
                }
            }
            std::fs::write(
                root.join("etc/passwd"),
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            )
            .unwrap();
            std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
            import_dir(
                &root,
                BUSYBOX,
                &[
                    cmd.clone(),
                    "ENV PATH=/bin".into(),
                    format!("LABEL {FIXTURE_LABEL}={fp}"),
                ],
            );
        });
    });
    BUSYBOX
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
                "--ignore-rust-version",
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
    format!("test-node-{}", &new_job_id()[..12])
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
