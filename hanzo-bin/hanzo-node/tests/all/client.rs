//! `hanzo-node job ...`: the CLI as a client of a real `hanzo-node serve` on a loopback
//! port (private HANZO_HOME, WASM runtime only, WAT modules from files).

use crate::server::{CAT, Server, free_port};
use crate::util::{Home, Run, assert_one_error_line, with_body};
use hanzo_testkit::command_writing;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SPIN: &str = r#"(func (export "run") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))"#;

/// The CLI against a served node: `hanzo-node job <args> --node <url>` and friends.
trait JobCli {
    fn cli(&self, home: &Home, args: &[&str]) -> Run;
    fn cli_get(&self, home: &Home, id: &str) -> Value;
    fn cli_wait(&self, home: &Home, id: &str, want: &str) -> Value;
}

impl JobCli for Server {
    fn cli(&self, home: &Home, args: &[&str]) -> Run {
        let url = self.url();
        let mut all = vec!["job"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--node", &url]);
        home.run(&all)
    }

    fn cli_get(&self, home: &Home, id: &str) -> Value {
        let r = self.cli(home, &["get", id, "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json()
    }

    fn cli_wait(&self, home: &Home, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let j = self.cli_get(home, id);
            if j["status"] == want {
                return j;
            }
            assert!(Instant::now() < deadline, "job {id} never {want}: {j}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn client_submit_wait_prints_the_output_and_exit_codes() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let cat = h.file("cat.wat", CAT);
    let r = s.cli(
        &h,
        &[
            "submit",
            "wasm",
            &cat,
            "--params",
            r#"{"x":[1,2,"three"]}"#,
            "--wait",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json(), json!({"x": [1, 2, "three"]}));

    // --json prints the whole result as `run` does, receipt included.
    let r = s.cli(
        &h,
        &[
            "submit",
            "wasm",
            &cat,
            "--params",
            "{\"y\":2}",
            "--wait",
            "--json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["output"], json!({"y": 2}));
    assert!(v["receipt"].is_object(), "{v}");

    // A failing tool: its logs on stderr, one error line last, exit 1 as `run`.
    let fail = h.file("fail.wat", &command_writing("", "it broke\n", 3));
    let r = s.cli(&h, &["submit", "wasm", &fail, "--wait"]);
    assert_one_error_line(&r, 1, "tool failed");
    assert!(r.stderr.contains("it broke"), "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    // A limit: fuel runs out on the spinning guest → exit 3.
    let spin = h.file("spin.wat", &with_body(SPIN));
    let r = s.cli(&h, &["submit", "wasm", &spin, "--fuel", "100000", "--wait"]);
    assert_one_error_line(&r, 3, "fuel");

    // Bad input is refused by the node with 400 → exit 2, one line naming the field.
    let r = s.cli(&h, &["submit", "wasm", &cat, "--memory-mb", "0", "--wait"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.error_line().starts_with("error: "), "{}", r.stderr);
}

#[test]
fn client_submit_get_ls_logs() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let tool = h.file(
        "tool.wat",
        &command_writing(r#"{"answer":42}"#, "working hard\n", 0),
    );
    let r = s.cli(&h, &["submit", "wasm", &tool, "--priority", "5"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    assert!(!id.is_empty() && !id.contains(char::is_whitespace), "id: {id:?}");

    let job = s.cli_wait(&h, &id, "succeeded");
    assert_eq!(job["output"], json!({"answer": 42}), "{job}");
    assert_eq!(job["priority"], 5, "{job}");
    assert!(
        job["spec"]["source"].as_str().unwrap().starts_with("sha256:"),
        "uploaded: {job}"
    );

    let r = s.cli(&h, &["get", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("succeeded"), "{}", r.stdout);
    assert!(r.stdout.contains(r#"{"answer":42}"#), "{}", r.stdout);

    let r = s.cli(&h, &["ls"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut lines = r.stdout.lines();
    assert!(lines.next().unwrap().starts_with("ID"), "{}", r.stdout);
    let row = lines
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed: {}", r.stdout));
    assert!(row.contains("succeeded") && row.contains("wasm"), "{row}");
    // The table shows the output's size, never the output.
    let output_len = r#"{"answer":42}"#.len().to_string();
    assert!(row.split_whitespace().any(|c| c == output_len), "{row}");
    assert!(!row.contains("answer"), "{row}");

    let r = s.cli(&h, &["ls", "--status", "failed", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["jobs"], json!([]));
    let r = s.cli(&h, &["ls", "--runtime", "wasm", "--limit", "1", "--json"]);
    let listed = &r.json()["jobs"][0];
    assert_eq!(listed["id"], id.as_str());
    // List rows leave the output out (a page of large outputs cost the node a
    // gigabyte) and say its size instead; `get` above still has it.
    assert!(listed.get("output").is_none(), "{listed}");
    assert_eq!(listed["output_bytes"], 13, "{listed}");
    assert_eq!(job["output_bytes"], 13, "{job}");
    let r = s.cli(&h, &["ls", "--status", "bogus"]);
    assert_one_error_line(&r, 2, "status");

    let r = s.cli(&h, &["logs", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "working hard\n");

    let r = s.cli(&h, &["get", "0123"]);
    assert_one_error_line(&r, 2, "no job 0123");
}

#[test]
fn client_cancel_a_spinning_job() {
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let spin = h.file("spin.wat", &with_body(SPIN));
    let r = s.cli(&h, &["submit", "wasm", &spin, "--timeout-ms", "30000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let id = r.stdout.trim().to_string();
    s.cli_wait(&h, &id, "running");

    let t = Instant::now();
    let r = s.cli(&h, &["cancel", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with(&id), "{}", r.stdout);
    let job = s.cli_wait(&h, &id, "cancelled");
    assert!(t.elapsed() < Duration::from_secs(10), "not stopped: {job}");

    // Cancelling again: the node answers 409 already_finished → one error line, exit 2.
    let r = s.cli(&h, &["cancel", &id]);
    assert_one_error_line(&r, 2, "already");
}

#[test]
fn client_auth_uses_the_token() {
    let h = Home::new();
    let s = Server::start(&h, &[("HANZO_NODE_API_TOKEN", "s3cret")]);
    let r = h.run_with(&["job", "ls", "--node", &s.url()], |c| {
        c.env_remove("HANZO_NODE_API_TOKEN");
    });
    assert_one_error_line(&r, 2, "token");
    let r = s.cli(&h, &["ls", "--token", "s3cret"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The configured token (here from the environment) is used by default.
    let r = h.run_with(&["job", "ls", "--node", &s.url()], |c| {
        c.env("HANZO_NODE_API_TOKEN", "s3cret");
    });
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn client_no_node_is_exit_4_with_one_error_line() {
    let h = Home::new();
    let url = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec!["job", "ls", "--node", &url],
        vec!["job", "get", "abc", "--node", &url],
        vec!["job", "submit", "wasm", "sha256:00", "--node", &url],
    ] {
        let r = h.run(&args);
        assert_one_error_line(&r, 4, "no node at");
        assert!(r.error_line().contains("hanzo-node serve"), "{}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    }
    // Without --node, the configured api_listen is the default.
    let port = free_port();
    let r = h.run_with(&["job", "ls"], |c| {
        c.env("HANZO_NODE_API_LISTEN", format!("127.0.0.1:{port}"));
    });
    assert_one_error_line(&r, 4, &format!("127.0.0.1:{port}"));
    let r = h.run(&["job", "ls", "--node", "https://example.com:443"]);
    assert_one_error_line(&r, 2, "http://");
}

/// The client speaks plain http: a token sent to another machine crosses the network
/// in clear. With a token, a non-loopback `--node` is refused before anything is sent
/// (the address here is never contacted: connecting would take the 5 s timeout and
/// end in exit 4), and a loopback name is fine.
#[test]
fn client_sends_its_token_only_to_loopback() {
    let h = Home::new();
    for (args, env_token) in [
        (
            vec!["job", "ls", "--node", "http://10.1.2.3:3690", "--token", "t"],
            None,
        ),
        (vec!["job", "ls", "--node", "http://10.1.2.3:3690"], Some("t")),
        (
            vec!["tool", "ls", "--node", "http://[fd00::1]:3690", "--token", "t"],
            None,
        ),
        (
            vec![
                "job",
                "get",
                "x",
                "--node",
                "http://10.1.2.3:3690",
                "--token",
                "t",
            ],
            None,
        ),
    ] {
        let started = Instant::now();
        let r = h.run_with(&args, |c| {
            match env_token {
                Some(t) => c.env("HANZO_NODE_API_TOKEN", t),
                None => c.env_remove("HANZO_NODE_API_TOKEN"),
            };
        });
        assert_one_error_line(&r, 2, "non-loopback");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{args:?} tried to connect"
        );
    }
    // A planted <data_dir>/api-url naming another host gets no token either: the file
    // only says where a local node listens, the loopback rule still decides.
    let data = h.path("home");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("api-url"), "http://10.1.2.3:3690\n").unwrap();
    let started = Instant::now();
    let r = h.run_with(&["job", "ls"], |c| {
        c.env("HANZO_NODE_API_TOKEN", "t");
    });
    assert_one_error_line(&r, 2, "non-loopback");
    assert!(started.elapsed() < Duration::from_secs(4), "it tried to connect");
    std::fs::remove_file(data.join("api-url")).unwrap();
    let s = Server::start(&h, &[]);
    let r = h.run(&["job", "ls", "--node", &format!("http://localhost:{}", s.port)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A tool writing terminal escape sequences (clear the screen, retitle the window,
/// OSC 52 clipboard writes, `\r` to overwrite a line) into its logs: `job logs`, its
/// `--follow`, `submit --wait` and `run` print them escaped; `--raw` prints the bytes.
#[test]
fn client_escapes_control_characters_in_tool_logs() {
    let raw: &[u8] = b"step \x1b[2J\x1b]0;pwned\x07 done\rFAKE\tok\n";
    let escaped = "step \\x1b[2J\\x1b]0;pwned\\x07 done\\rFAKE\tok\n";
    let data: String = raw.iter().map(|b| format!("\\{b:02x}")).collect();
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "{{}}")
  (data (i32.const 8192) "{data}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 8192))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 16)))))"#,
        len = raw.len()
    );
    let h = Home::new();
    let tool = h.file("noisy.wat", &wat);
    let s = Server::start(&h, &[]);

    let r = s.cli(&h, &["submit", "wasm", &tool, "--wait"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(escaped), "{:?}", r.stderr);
    assert!(
        !r.stderr.contains('\x1b') && !r.stderr.contains('\r'),
        "{:?}",
        r.stderr
    );

    let r = s.cli(&h, &["submit", "wasm", &tool]);
    let id = r.stdout.trim().to_string();
    s.wait_terminal(&id);
    let r = s.cli(&h, &["logs", &id]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, escaped);
    let r = s.cli(&h, &["logs", &id, "--follow"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The event stream splits lines at \r (as the SSE format does): each part escaped.
    assert!(!r.stdout.contains('\x1b'), "{:?}", r.stdout);
    assert!(
        r.stdout.contains("step \\x1b[2J\\x1b]0;pwned\\x07 done\n"),
        "{:?}",
        r.stdout
    );
    let out = h
        .cmd()
        .args(["job", "logs", &id, "--raw", "--node", &s.url()])
        .output()
        .unwrap();
    assert_eq!(out.stdout, raw);

    let r = h.run(&["run", "wasm", &tool]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains(escaped), "{:?}", r.stderr);
    assert!(
        !r.stderr.contains('\x1b') && !r.stderr.contains('\r'),
        "{:?}",
        r.stderr
    );
}
