//! # hanzo-testkit
//!
//! Test support shared by the runtime crates' test suites, so that each suite checks
//! the same things the same way. A dev-dependency only: nothing here ships in the node.
//!
//! - [`marker`] and [`host_processes`] / [`assert_no_process`]: "no process of the
//!   tool is alive afterwards", checked on the host's process table.
//! - [`toolchain`]: the real deno, uv, python and go binaries (past pyenv shims), or a
//!   panic that says how to install them (`bash scripts/test.sh` does).
//! - [`wasm_examples_dir`] and [`native_examples_dir`]: the Rust SDK's examples, built
//!   once for WASM or for this host.
//! - [`docker`]: the docker CLI, a daemon check, and fixture images built from local
//!   files ([`docker::busybox_image`]).
//! - [`nethost`]: a test host in a network namespace of the test's own, for tools
//!   granted `network: full` (never an outside address).

pub mod docker;
pub mod nethost;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A marker unique to this test process and call, to find a tool's processes on the
/// host: put it in the tool's command line (`sleep <marker>` is a valid sleep of
/// ~987 s; in a script, a comment or string holding it is enough when it is an
/// argument).
pub fn marker() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "987.{}{:04}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Host pids (other than this process) whose command line contains `needle`.
pub fn host_processes(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        // Zombies have an empty command line, and a dead process is no longer running.
        if String::from_utf8_lossy(&cmd).replace('\0', " ").contains(needle) {
            v.push(pid);
        }
    }
    v
}

/// Panics if a process whose command line contains `needle` is alive on the host.
pub fn assert_no_process(needle: &str) {
    let left = host_processes(needle);
    assert!(left.is_empty(), "processes left running: {left:?} ({needle})");
}

/// The real binary of a toolchain program (`deno`, `uv`, `go`, `python3`), past pyenv
/// shims; panics with how to install it. The test command installs all of them.
pub fn toolchain(name: &str) -> PathBuf {
    hanzo_sandbox::toolchain::find_program(name, None).unwrap_or_else(|e| {
        panic!(
            "{e}: the tests need real toolchains; run `bash scripts/test.sh` (it installs deno, uv and go)"
        )
    })
}

/// The repository's root (this crate lives in `hanzo-libs/hanzo-testkit`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Rust SDK's examples (`echo`, `text-tools`, `sentiment`) built in release for
/// `wasm32-wasip1`: `$HANZO_EXAMPLES_DIR` when the test command built them already
/// (it holds `echo.wasm`), else built here (once per test process).
pub fn wasm_examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        examples(
            "HANZO_EXAMPLES_DIR",
            "echo.wasm",
            Some("wasm32-wasip1"),
            &["echo", "text-tools", "sentiment"],
        )
    })
}

/// The Rust SDK's examples `echo` and `text-tools` built in release for this host: the
/// cdylibs (`libecho.so`, `libtext_tools.so`) and the stdio commands (`echo-cmd`,
/// `text-tools-cmd`). `$HANZO_NATIVE_EXAMPLES_DIR` when it holds them already.
pub fn native_examples_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        examples(
            "HANZO_NATIVE_EXAMPLES_DIR",
            "libecho.so",
            None,
            &["echo", "text-tools"],
        )
    })
}

fn examples(var: &str, probe: &str, target: Option<&str>, packages: &[&str]) -> PathBuf {
    if let Some(dir) = std::env::var_os(var).map(PathBuf::from)
        && dir.join(probe).is_file()
    {
        return dir;
    }
    let root = repo_root();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root).args(["build", "--quiet", "--release"]);
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    for p in packages {
        cmd.args(["-p", p]);
    }
    let status = cmd.status().expect("run cargo");
    assert!(
        status.success(),
        "building the SDK examples failed (is the wasm32-wasip1 target installed? run scripts/test.sh)"
    );
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    match target {
        Some(t) => dir.join(t).join("release"),
        None => dir.join("release"),
    }
}

/// The body (WAT instructions, locals first) of a function that keeps `locals` i64
/// locals live at once across `locals * rounds` branches: each local is set
/// (conditionally on the function's first param) from the previous one and all are summed
/// at the end. Cranelift's register allocator needs seconds to minutes for it (2000
/// locals, 3 rounds: far past a 1 s timeout): the hostile compile of the WASM runtime's
/// and the node's tests. The body leaves nothing on the stack.
pub fn live_locals_body(locals: usize, rounds: usize) -> String {
    let mut body = String::new();
    for r in 0..rounds {
        for i in 0..locals {
            let prev = if i == 0 { locals - 1 } else { i - 1 };
            body.push_str(&format!(
                "(if (i32.eqz (local.get 0)) (then (local.set $l{i} (i64.add (local.get $l{prev}) (i64.const {})))))\n",
                r * locals + i + 1
            ));
        }
    }
    // The sum keeps every local live up to the end.
    let mut sum = String::from("(i64.const 0)");
    for i in 0..locals {
        sum = format!("(i64.add {sum} (local.get $l{i}))");
    }
    let decls: String = (0..locals).map(|i| format!("(local $l{i} i64)")).collect();
    format!("{decls} {body} (drop {sum})")
}

/// A WASI command (WAT text) that writes `stdout` and `stderr` and exits with `code`:
/// the stdio contract's fixture for the WASM runtime and the node's CLI tests.
pub fn command_writing(stdout: &str, stderr: &str, code: i32) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{out}")
  (data (i32.const 8192) "{err}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const {out_len}))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 8192))
    (i32.store (i32.const 4) (i32.const {err_len}))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 16)))
    (call $exit (i32.const {code})))
)"#,
        out = esc(stdout),
        err = esc(stderr),
        out_len = stdout.len(),
        err_len = stderr.len(),
    )
}

/// A WASI command that copies stdin (the params) to stdout (the output), as WAT: the
/// echo tool of the node's API tests, and of `scripts/package-test.sh`, which reads the
/// same file.
pub const CAT_WAT: &str = include_str!("../fixtures/cat.wat");

/// A WASI command printing 8 bytes of `random_get` as `{"r": "<16 hex>"}`: another
/// answer on every node, except in the deterministic profile. The verification tests'
/// and the demo's.
pub const RANDOM_WAT: &str = include_str!("../fixtures/random.wat");
