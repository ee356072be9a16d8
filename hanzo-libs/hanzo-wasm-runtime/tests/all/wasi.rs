//! WASI grants nothing from the host by default; `mounts` and `env` grant exactly
//! what they list.

use crate::util::*;
use hanzo_compute::{JobSpec, Mount, RuntimeKind};
use serde_json::Value;

/// A WASI command whose `_start` computes an i32 with `body` (which may use the
/// string at offset 3000 as a path) and prints it as {"v":"NN"}.
fn probe(body: &str, path: &str) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 2048) "{{\"v\":\"00\"}}")
  (data (i32.const 3000) "{path}")
  (func $emit (param $n i32)
    (i32.store8 (i32.const 2054) (i32.add (i32.const 48) (i32.div_u (local.get $n) (i32.const 10))))
    (i32.store8 (i32.const 2055) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
    (i32.store (i32.const 0) (i32.const 2048))
    (i32.store (i32.const 4) (i32.const 10))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))))
  (func (export "_start") (call $emit {body}))
)"#,
        body = body.replace("PATH_LEN", &path.len().to_string()),
    )
}

const PRESTAT: &str = "(call $prestat (i32.const 3) (i32.const 100))";
/// path_open(fd 3, path, no oflags, rights FD_READ)
const OPEN_READ: &str = "(call $open (i32.const 3) (i32.const 0) (i32.const 3000) (i32.const PATH_LEN) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200))";
/// path_open(fd 3, path, O_CREAT, rights FD_WRITE)
const OPEN_CREATE: &str = "(call $open (i32.const 3) (i32.const 0) (i32.const 3000) (i32.const PATH_LEN) (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 200))";
const ENV_COUNT: &str = "(drop (call $env_sizes (i32.const 100) (i32.const 104))) (i32.load (i32.const 100))";

async fn probe_value(node: &Node, body: &str, path: &str, tweak: impl FnOnce(&mut JobSpec)) -> u32 {
    let src = node.fixture("probe", &probe(body, path));
    let mut spec = JobSpec::new(RuntimeKind::Wasm, src);
    tweak(&mut spec);
    let out = node.run(spec).await.result.expect("probe runs");
    match out {
        Value::Object(m) => m["v"].as_str().unwrap().parse().unwrap(),
        other => panic!("probe printed {other}"),
    }
}

const EBADF: u32 = 8;

#[tokio::test]
async fn no_directories_are_preopened_by_default() {
    let node = Node::new();
    assert_eq!(probe_value(&node, PRESTAT, "", |_| {}).await, EBADF);
}

#[tokio::test]
async fn host_files_cannot_be_opened_without_a_mount() {
    let node = Node::new();
    for path in ["/etc/passwd", "etc/passwd", "../../../../etc/passwd"] {
        assert_eq!(probe_value(&node, OPEN_READ, path, |_| {}).await, EBADF, "{path}");
    }
}

fn mount(dir: &std::path::Path, writable: bool) -> Mount {
    Mount {
        host: dir.to_path_buf(),
        guest: "/data".into(),
        writable,
    }
}

#[tokio::test]
async fn a_mount_grants_exactly_its_directory() {
    let node = Node::new();
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(shared.path().join("input.txt"), "hello").unwrap();
    let ro = |s: &mut JobSpec| s.mounts = vec![mount(shared.path(), false)];
    assert_eq!(probe_value(&node, PRESTAT, "", ro).await, 0);
    assert_eq!(probe_value(&node, OPEN_READ, "input.txt", ro).await, 0);
    // Escapes out of the mount fail, whatever the spelling.
    for path in ["../input.txt", "../../etc/passwd", "/etc/passwd"] {
        assert_ne!(probe_value(&node, OPEN_READ, path, ro).await, 0, "{path}");
    }
    // Read-only unless :rw.
    assert_ne!(probe_value(&node, OPEN_CREATE, "new.txt", ro).await, 0);
    assert!(!shared.path().join("new.txt").exists());
    let rw = |s: &mut JobSpec| s.mounts = vec![mount(shared.path(), true)];
    assert_eq!(probe_value(&node, OPEN_CREATE, "new.txt", rw).await, 0);
    assert!(shared.path().join("new.txt").exists());
}

#[tokio::test]
async fn the_environment_holds_only_what_the_job_lists() {
    // SAFETY: this test binary's threads do not read the environment concurrently
    // in a way that matters; the variable only proves nothing leaks.
    unsafe { std::env::set_var("HANZO_TEST_SECRET", "leak") };
    let node = Node::new();
    // HANZO_FUNCTION and HANZO_JOB_ID, nothing from the host.
    assert_eq!(probe_value(&node, ENV_COUNT, "", |_| {}).await, 2);
    let with = |s: &mut JobSpec| {
        s.env.insert("API_MODE".into(), "test".into());
    };
    assert_eq!(probe_value(&node, ENV_COUNT, "", with).await, 3);
}

#[tokio::test]
async fn a_missing_mount_source_is_bad_input() {
    let node = Node::new();
    let src = node.fixture("probe", &probe(PRESTAT, ""));
    let mut spec = JobSpec::new(RuntimeKind::Wasm, src);
    spec.mounts = vec!["/nonexistent/dir:/data".parse().unwrap()];
    let e = node.run(spec).await.result.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
}

/// A mount source reached through a symlink (a directory a job holding its parent
/// writable swapped for `-> /etc` after the job was admitted) is refused, not preopened.
#[tokio::test]
async fn a_mount_source_through_a_symlink_is_refused() {
    let node = Node::new();
    let src = node.fixture("probe", &probe(PRESTAT, ""));
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    std::os::unix::fs::symlink("/etc", base.join("out")).unwrap();
    let mut spec = JobSpec::new(RuntimeKind::Wasm, src);
    spec.mounts = vec![format!("{}:/data", base.join("out").display()).parse().unwrap()];
    let e = node.run(spec).await.result.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
}
