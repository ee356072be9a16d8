//! Runs the real binary with a private data directory.

use std::path::PathBuf;
use std::process::{Command, Output};

pub struct Home {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The last line of stderr, which carries the error.
    /// The contract's `error:` line: the last line starting so (a tool's logs come
    /// before it; a usage error's hints and usage line after it).
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| self.stderr.lines().last().unwrap_or(""))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout not JSON ({e}): {}", self.stdout))
    }
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a fixture file and returns its path as a string.
    pub fn file(&self, name: &str, contents: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        p.display().to_string()
    }

    /// Another program (script(1), say) with this home's environment for the node.
    pub fn cmd_of(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("HANZO_HOME", self.path("home"));
        c.env_remove("HANZO_CONFIG");
        c
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hanzo-node"));
        c.env("HANZO_HOME", self.path("home"));
        c.env_remove("HANZO_CONFIG");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, |_| {})
    }

    /// Runs with `input` piped to stdin (then closed).
    pub fn run_stdin(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut c = self.cmd();
        c.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("run hanzo-node");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_string();
        // Written from a thread: a large input must not dead-lock against the output.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().expect("run hanzo-node");
        writer.join().unwrap();
        Run {
            code: out.status.code().expect("exited, not killed"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn run_with(&self, args: &[&str], tweak: impl FnOnce(&mut Command)) -> Run {
        let mut c = self.cmd();
        c.args(args);
        tweak(&mut c);
        let Output {
            status,
            stdout,
            stderr,
        } = c.output().expect("run hanzo-node");
        Run {
            code: status.code().expect("exited, not killed"),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

/// Runs the node as uid/gid 65534 (a node that is not root) with a data directory of
/// its own under a world-writable temporary directory, and `env` set.
pub fn run_as_nobody(args: &[&str], env: &[(&str, &str)]) -> Run {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::Builder::new().prefix("hanzo-nobody").tempdir().unwrap();
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_hanzo-node"))
        .args(args)
        .env("HANZO_HOME", home.path().join("home"))
        .env_remove("HANZO_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// An exports-ABI module whose `run` returns `envelope` (plain text).
pub fn returning(envelope: &str) -> String {
    let data = envelope.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"(module
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 65536))
  (func (export "hanzo_alloc") (param $len i32) (result i32)
    (local $p i32) (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $len))) (local.get $p))
  (data (i32.const 1024) "{data}")
  (func (export "run") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const {len}))))"#,
        len = envelope.len()
    )
}

/// An exports-ABI module whose `run` has the given body (which must leave an i64).
pub fn with_body(body: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 2)
  (func (export "hanzo_alloc") (param i32) (result i32) (i32.const 65536))
  {body})"#
    )
}

/// The SDK examples for wasm32-wasip1 (see [`hanzo_testkit::wasm_examples_dir`]).
pub fn examples_dir() -> PathBuf {
    hanzo_testkit::wasm_examples_dir().to_path_buf()
}

/// Asserts the exit code and that the last stderr line is one `error:` line naming
/// `needle` (CONTRACTS §3).
pub fn assert_one_error_line(r: &Run, code: i32, needle: &str) {
    assert_eq!(r.code, code, "stderr: {}", r.stderr);
    let errors = r.stderr.lines().filter(|l| l.starts_with("error:")).count();
    assert_eq!(errors, 1, "one line starts with error:, in {}", r.stderr);
    let line = r.error_line();
    assert!(line.starts_with("error: "), "error line: {line:?}");
    assert!(line.contains(needle), "error line {line:?} lacks {needle:?}");
}

/// The `hanzo-node` built with its `failpoints` feature (CONTRACTS §8), for tests of
/// nodes that lie, drop results or stall: `$HANZO_FAILPOINTS_BIN`, else
/// `hanzo-node-failpoints` beside the test's own binary, as `scripts/test.sh` leaves
/// it. Without it the test fails saying how to build it: a test that needs a liar
/// must not pass without one.
pub fn failpoints_bin() -> String {
    if let Ok(p) = std::env::var("HANZO_FAILPOINTS_BIN") {
        return p;
    }
    let sibling =
        std::path::Path::new(env!("CARGO_BIN_EXE_hanzo-node")).with_file_name("hanzo-node-failpoints");
    assert!(
        sibling.is_file(),
        "no {}: build it with `cargo build -p hanzo-node --features failpoints && cp target/debug/hanzo-node{{,-failpoints}}` \
         (scripts/test.sh does), or set HANZO_FAILPOINTS_BIN",
        sibling.display()
    );
    sibling.display().to_string()
}
