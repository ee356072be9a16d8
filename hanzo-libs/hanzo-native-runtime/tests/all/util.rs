//! Shared helpers: the runtime under test (one sandbox per test process, this crate's
//! `hanzo-tool-host` as the helper), a node around it, fixture files, C libraries compiled
//! with `cc`, and the SDK examples built natively.

use hanzo_compute::{Compute, ComputeError, JobOutcome, JobSpec, LimitKind, NodeKey, RuntimeKind};
use hanzo_native_runtime::NativeRuntime;
use hanzo_sandbox::Sandbox;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

/// The helper binary cargo built for this test.
pub const HELPER: &str = env!("CARGO_BIN_EXE_hanzo-tool-host");

/// The sandbox, probed once per test process.
pub fn sandbox() -> Arc<Sandbox> {
    static S: OnceLock<Arc<Sandbox>> = OnceLock::new();
    S.get_or_init(|| Arc::new(Sandbox::detect())).clone()
}

/// The runtime with the default process limit.
pub fn runtime() -> Arc<NativeRuntime> {
    runtime_with_pids(hanzo_sandbox::DEFAULT_PIDS_LIMIT)
}

/// The runtime with a given process limit.
pub fn runtime_with_pids(pids: u32) -> Arc<NativeRuntime> {
    Arc::new(NativeRuntime::new(sandbox(), PathBuf::from(HELPER), pids))
}

/// A node with only the native runtime: runs jobs and signs receipts.
pub struct Node {
    compute: Compute,
}

impl Node {
    /// A node around [`runtime`].
    pub fn new() -> Node {
        Node::with(runtime())
    }

    /// A node around `rt`.
    pub fn with(rt: Arc<NativeRuntime>) -> Node {
        let mut compute = Compute::new(Arc::new(NodeKey::generate().expect("OS randomness")));
        compute.register(rt);
        Node { compute }
    }

    /// Runs a job.
    pub async fn run(&self, spec: JobSpec) -> JobOutcome {
        self.compute.run(spec).await
    }

    /// Runs `source` with `function` and `params`.
    pub async fn call(&self, source: &str, function: &str, params: serde_json::Value) -> JobOutcome {
        self.run(
            JobSpec::new(RuntimeKind::Native, source)
                .function(function)
                .params(params),
        )
        .await
    }
}

/// A job spec for `source` on the native runtime.
pub fn job(source: impl AsRef<Path>) -> JobSpec {
    JobSpec::new(RuntimeKind::Native, source.as_ref().display().to_string())
}

/// The output, or a panic with the error and the logs.
pub fn ok(out: &JobOutcome) -> &serde_json::Value {
    match &out.result {
        Ok(v) => v,
        Err(e) => panic!(
            "expected success, got {e:?}; logs: {}",
            String::from_utf8_lossy(&out.logs)
        ),
    }
}

/// Asserts the job failed with exit code `code`, and returns the error's text.
pub fn err(out: &JobOutcome, code: i32) -> String {
    match &out.result {
        Err(e) => {
            assert_eq!(
                e.exit_code(),
                code,
                "{e:?}; logs: {}",
                String::from_utf8_lossy(&out.logs)
            );
            e.to_string()
        }
        Ok(v) => panic!("expected exit code {code}, got output {v}"),
    }
}

/// Asserts a limit error naming `kind`.
pub fn limit(out: &JobOutcome, kind: LimitKind) {
    match &out.result {
        Err(ComputeError::LimitExceeded { limit, .. }) if *limit == kind => {}
        other => panic!(
            "expected a {kind} limit error, got {other:?}; logs: {}",
            String::from_utf8_lossy(&out.logs)
        ),
    }
}

/// Asserts a rejected job: invalid input (exit 2), with `needle` in the message, and no
/// receipt since nothing ran.
pub fn rejected(out: &JobOutcome, needle: &str) {
    let e = err(out, 2);
    assert!(e.contains(needle), "{e:?} lacks {needle:?}");
    assert!(!e.contains('\n'), "one line: {e:?}");
    assert!(out.receipt.is_none(), "nothing ran, so no receipt");
}

/// A directory of fixture files, removed at drop.
pub struct Fixtures {
    dir: tempfile::TempDir,
}

impl Fixtures {
    /// A fresh directory.
    pub fn new() -> Fixtures {
        Fixtures {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` with `mode`.
    pub fn file(&self, name: &str, contents: impl AsRef<[u8]>, mode: u32) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, contents).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    /// Writes an executable script.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        self.file(name, body, 0o755)
    }

    /// Compiles C `source` into the shared library `name` with `cc`.
    pub fn c_library(&self, name: &str, source: &str) -> PathBuf {
        let src = self.file(&format!("{name}.c"), source, 0o644);
        let out = self.dir.path().join(name);
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("the C fixtures need cc (apt-get install gcc)");
        assert!(status.success(), "cc failed on {name}");
        out
    }
}

/// The SDK examples built natively (see [`hanzo_testkit::native_examples_dir`]).
pub fn examples_dir() -> &'static Path {
    hanzo_testkit::native_examples_dir()
}

/// Path of one natively built example artifact.
pub fn example(file: &str) -> PathBuf {
    let p = examples_dir().join(file);
    assert!(p.is_file(), "{} was not built", p.display());
    p
}

/// Hex sha256 of a file's bytes.
pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

/// A `#!/bin/sh` script that re-executes itself with `marker` as its argument, so that
/// every process of it (forked shells included) carries the marker on its command line.
pub fn marked_sh(marker: &str, body: &str) -> String {
    format!("#!/bin/sh\n[ \"$1\" = \"{marker}\" ] || exec /bin/sh \"$0\" \"{marker}\"\n{body}\n")
}

/// The same for `/usr/bin/python3`.
pub fn marked_py(marker: &str, body: &str) -> String {
    format!(
        "#!/usr/bin/python3\nimport os, sys\nif sys.argv[1:] != [\"{marker}\"]:\n    \
         os.execv(\"/usr/bin/python3\", [\"/usr/bin/python3\", sys.argv[0], \"{marker}\"])\n{body}\n"
    )
}
