//! The job store failing under a running node: writes the
//! scheduler's hooks make are retried, counted in `/metrics`, and surfaced, with real
//! failures: a full file system (a small tmpfs holding the data directory) and a
//! database locked by another process.

use crate::server::{CAT, Server};
use crate::util::Home;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A WASI command printing a JSON string of 192 × 64 KiB = 12 MiB: more than the
/// 8 MiB tmpfs the store lives on can take, less than the default output cap.
const TWELVE_MIB: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "\"")
  (func $out (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (local $i i32)
    (memory.fill (i32.const 65536) (i32.const 97) (i32.const 65536))
    (call $out (i32.const 16) (i32.const 1))
    (loop $more
      (call $out (i32.const 65536) (i32.const 65536))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $more (i32.lt_u (local.get $i) (i32.const 192))))
    (call $out (i32.const 16) (i32.const 1))))"#;

/// A tmpfs mounted for the test's lifetime (root only: the test fails otherwise).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn metric(s: &Server, line_start: &str) -> u64 {
    let text = s.req("GET", "/metrics", b"").text();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in /metrics:\n{text}"))
}

fn execute(s: &Server, source: &str, params: Value) -> Value {
    let r = s.post_json(
        "/v1/jobs/execute",
        &json!({"runtime": "wasm", "source": source, "params": params}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// The output does not fit on the disk: the end of the job cannot be stored as it is.
/// The hooks retry, then record the job `failed` without its output (a small write
/// that fits), count the failure, and the node goes on serving.
#[test]
fn a_job_end_the_disk_cannot_hold_is_retried_counted_and_recorded_failed() {
    let h = Home::new();
    let fs = Tmpfs::mount(&h.path("tmpfs"), "8m");
    let home = fs.0.join("home");
    let s = Server::start(&h, &[("HANZO_HOME", home.to_str().unwrap())]);
    let big = h.file("big.wat", TWELVE_MIB);
    let cat = h.file("cat.wat", CAT);
    assert_eq!(metric(&s, r#"hanzo_store_write_failures_total{op="finish"}"#), 0);
    // Both modules enter the module store (on the same tmpfs) while there is room.
    assert_eq!(execute(&s, &cat, json!(0))["status"], "succeeded");

    let t0 = Instant::now();
    let job = execute(&s, &big, json!({}));
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "internal", "{job}");
    let msg = job["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("job store could not record the job's result"),
        "{msg}"
    );
    assert!(job["output"].is_null() && job["receipt"].is_null(), "{job}");
    // Retried with backoff before giving up (0.1 + 0.2 + 0.4 + 0.8 s).
    assert!(t0.elapsed() >= Duration::from_millis(1500), "{:?}", t0.elapsed());
    assert_eq!(metric(&s, r#"hanzo_store_write_failures_total{op="finish"}"#), 1);

    // The store still takes small writes: healthy, and the next job runs and is kept.
    assert_eq!(s.req("GET", "/healthz", b"").status, 200);
    let ok = execute(&s, &cat, json!({"small": true}));
    assert_eq!(ok["status"], "succeeded", "{ok}");
    assert_eq!(ok["output"], json!({"small": true}));
}

/// Another process holds the database's write lock beyond the store's busy timeout:
/// a submission fails (500, counted), `/healthz` answers 503 naming the store while
/// its probe write cannot commit, and 200 again once the lock is gone.
#[test]
fn healthz_is_503_while_the_store_cannot_commit() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let cat = h.file("cat.wat", CAT);
    assert_eq!(execute(&s, &cat, json!(1))["status"], "succeeded");

    let db = h.path("home").join("jobs.db");
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             print('locked', flush=True)\n\
             sys.stdin.read()\n",
        ])
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("this test needs python3 (its sqlite3 module holds the lock)");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    let r = s.post_json("/v1/jobs", &json!({"runtime": "wasm", "source": cat}));
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("locked"), "{}", r.text());
    assert_eq!(metric(&s, r#"hanzo_store_write_failures_total{op="submit"}"#), 1);
    let r = s.req("GET", "/healthz", b"");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("job store cannot write"), "{}", r.text());

    // The lock goes: the next probe (at most one a second) commits, and all is well.
    holder.stdin.take().unwrap().write_all(b"").unwrap();
    holder.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.req("GET", "/healthz", b"").status != 200 {
        assert!(Instant::now() < deadline, "healthz never recovered");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(execute(&s, &cat, json!(2))["status"], "succeeded");
}
