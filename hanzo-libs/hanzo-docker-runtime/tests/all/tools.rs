//! Tools doing their job: the stdio contract (CONTRACTS §1a) end to end through real
//! containers: receipts, real work, the environment, mounts, failures and big payloads.

use crate::util::*;
use hanzo_compute::receipt::Outcome;
use hanzo_compute::{JobSpec, Receipt, RuntimeKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

/// A script that prints its environment as one JSON object (except the script itself).
const PRINT_ENV: &str = r#"env | grep -v "^HANZO_TEST_SCRIPT=" | awk 'BEGIN { printf "{" } { i = index($0, "="); k = substr($0, 1, i - 1); v = substr($0, i + 1); gsub(/"/, "\\\"", v); printf "%s\"%s\":\"%s\"", (n++ ? "," : ""), k, v } END { print "}" }'"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trip_is_receipted_with_the_image_id() {
    let node = Node::new();
    let params = json!({"text": "héllo wörld ✓", "n": [1, 2.5, -3], "nested": {"ok": true, "none": null}});
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..5 {
        let t = Instant::now();
        let out = node.run(echo_job("run").params(params.clone())).await;
        times.push(t.elapsed());
        assert_eq!(expect_ok(&out), params);
        assert_gone(&out.job_id);
        last = Some(out);
    }
    let out = last.unwrap();
    let receipt = Receipt::verify(&out.receipt.as_ref().expect("a receipt").to_value()).expect("verifies");
    assert_eq!(receipt.code_hash, image_id(ECHO), "code_hash is the image id");
    assert_eq!(receipt.runtime, RuntimeKind::Docker);
    assert_eq!(receipt.function, "run");
    assert_eq!(receipt.status, Outcome::Succeeded);
    assert_eq!(receipt.job_id, out.job_id);
    receipt.check_input(&params).unwrap();
    receipt.check_output(&params).unwrap();
    assert!(out.usage.wall_time_ms > 0.0);
    // The first run also connects to the daemon and reaps orphans.
    eprintln!(
        "one-shot echo, end to end: first {:?}, then {:?} (container wall time of the last {} ms)",
        times[0],
        &times[1..],
        out.usage.wall_time_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_tools_do_real_work() {
    let node = Node::new();
    let job = |function: &str, params: Value| {
        JobSpec::new(RuntimeKind::Docker, text_tools())
            .function(function)
            .params(params)
    };
    let text = "The quick brown fox jumps over the lazy dog. The dog sleeps!\n\n\
                A second paragraph, with the fox again.";
    let out = node.run(job("word_stats", json!({"text": text, "top": 3}))).await;
    let stats = expect_ok(&out);
    // Counted by hand: 9 + 3 + 7 words in 3 sentences and 2 paragraphs; "the" four times.
    assert_eq!(stats["words"], 19);
    assert_eq!(stats["sentences"], 3);
    assert_eq!(stats["paragraphs"], 2);
    assert_eq!(stats["unique_words"], 14);
    assert_eq!(stats["characters"], text.chars().count());
    assert_eq!(
        stats["top_words"],
        json!([{"word": "the", "count": 4}, {"word": "dog", "count": 2}, {"word": "fox", "count": 2}])
    );
    let receipt = out.receipt.unwrap();
    assert_eq!(receipt.code_hash, image_id(TEXT_TOOLS));
    assert_eq!(receipt.function, "word_stats");

    let out = node
        .run(job("slugify", json!({"text": "Hello, Wörld! Rust & Docker"})))
        .await;
    assert_eq!(expect_ok(&out), json!({"slug": "hello-world-rust-docker"}));
    let out = node
        .run(job(
            "extract_emails",
            json!({"text": "mail bob@example.com and ALICE@Example.org, again bob@example.com"}),
        ))
        .await;
    assert_eq!(
        expect_ok(&out),
        json!({"count": 2, "emails": ["ALICE@example.org", "bob@example.com"]})
    );
    // An unknown function is the tool's own failure, with its message.
    let out = node.run(job("nope", json!({}))).await;
    let msg = expect_tool_failure(&out);
    assert!(msg.contains("unknown function `nope`"), "{msg}");
    assert_gone(&out.job_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_env_reaches_the_tool_and_host_env_does_not() {
    let node = Node::new();
    let mut spec = script_job(PRINT_ENV).function("custom_fn");
    spec.env
        .insert("GRANTED".into(), "a value = with \"quotes\" and spaces".into());
    spec.env.insert("EMPTY".into(), String::new());
    let out = node.run(spec).await;
    let env: BTreeMap<String, String> =
        serde_json::from_value(expect_ok(&out)).expect("an object of strings");
    assert_eq!(env["HANZO_FUNCTION"], "custom_fn");
    assert_eq!(env["HANZO_JOB_ID"], out.job_id);
    assert_eq!(env["GRANTED"], "a value = with \"quotes\" and spaces");
    assert_eq!(env["EMPTY"], "");
    // Besides the grants, only what the image and Docker set (PATH, HOSTNAME, HOME) and
    // what the shell adds itself (PWD, SHLVL).
    let expected = [
        "EMPTY",
        "GRANTED",
        "HANZO_FUNCTION",
        "HANZO_JOB_ID",
        "HOME",
        "HOSTNAME",
        "PATH",
        "PWD",
        "SHLVL",
    ];
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(names, expected, "environment: {env:?}");
    assert_eq!(env["PATH"], "/bin", "the image's PATH, not the host's");
    for (k, v) in std::env::vars() {
        if !expected[4..].contains(&k.as_str()) {
            assert!(
                !env.contains_key(&k),
                "host variable {k}={v} leaked into the tool"
            );
        }
    }

    // Without a function the tool is told `run`.
    let out = node.run(script_job(PRINT_ENV)).await;
    assert_eq!(expect_ok(&out)["HANZO_FUNCTION"], "run");
    assert_gone(&out.job_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_are_read_only_unless_rw() {
    let node = Node::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "hello from the host").unwrap();
    // The tool runs as 65534: let it in, and (for the rw case) let it write.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(dir.path().join("in.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let script = r#"c=$(cat /data/in.txt); if echo written > /data/out.txt 2>/dev/null; then w=true; else w=false; fi; printf '{"content":"%s","wrote":%s}' "$c" "$w""#;

    for (suffix, writable) in [("", false), (":ro", false), (":rw", true)] {
        let mut spec = script_job(script);
        spec.mounts = vec![format!("{}:/data{suffix}", dir.path().display()).parse().unwrap()];
        let out = node.run(spec).await;
        assert_eq!(
            expect_ok(&out),
            json!({"content": "hello from the host", "wrote": writable}),
            "mount {suffix:?}"
        );
        assert_eq!(dir.path().join("out.txt").exists(), writable, "mount {suffix:?}");
        assert_gone(&out.job_id);
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("out.txt")).unwrap(),
        "written\n"
    );

    // A mount of a host path that does not exist is bad input, and nothing is created.
    let mut spec = script_job("echo '{}'");
    spec.mounts = vec!["/nonexistent/hanzo-test:/data".parse().unwrap()];
    let out = node.run(spec).await;
    let msg = expect_invalid(&out);
    assert!(msg.contains("/nonexistent/hanzo-test"), "{msg}");
    assert_gone(&out.job_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_failures_carry_the_last_stderr_line_or_the_error_field() {
    let node = Node::new();
    let out = node
        .run(script_job(
            "echo 'first line' >&2; echo 'the real reason' >&2; exit 7",
        ))
        .await;
    let msg = expect_tool_failure(&out);
    assert!(msg.contains("the real reason") && msg.contains('7'), "{msg}");
    assert!(!msg.contains("first line"), "{msg}");
    assert!(String::from_utf8_lossy(&out.logs).contains("first line"));
    let receipt = out.receipt.as_ref().expect("a failed run is receipted");
    assert_eq!(receipt.status, Outcome::Failed);
    assert_gone(&out.job_id);

    let out = node
        .run(script_job(
            r#"echo 'noise' >&2; echo '{"error": "from the error field"}'; exit 1"#,
        ))
        .await;
    let msg = expect_tool_failure(&out);
    assert!(msg.contains("from the error field"), "{msg}");

    // Exit 0 with something other than one JSON document is a failure too.
    let out = node.run(script_job("echo 'not json'")).await;
    let msg = expect_tool_failure(&out);
    assert!(msg.contains("not one JSON document"), "{msg}");
    let out = node.run(script_job("true")).await;
    let msg = expect_tool_failure(&out);
    assert!(msg.contains("no output"), "{msg}");
    assert_gone(&out.job_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_params_go_both_ways() {
    let node = Node::new();
    // 4 MiB each way, far above any pipe buffer: stdin and stdout must flow at once.
    let params = json!({"blob": "x".repeat(4 << 20), "tail": [1, 2, 3]});
    let t = Instant::now();
    let out = node.run(echo_job("run").params(params.clone())).await;
    assert_eq!(expect_ok(&out), params);
    eprintln!("4 MiB echo round trip: {:?}", t.elapsed());

    // The busybox `cat` tool too (a plain process reading stdin to EOF).
    let out = node.run(script_job("cat").params(params.clone())).await;
    assert_eq!(expect_ok(&out), params);
    assert_gone(&out.job_id);
}

/// A tool that exits without reading its (large) params. Docker 20.10 then ends the attach
/// stream's output but, on an otherwise idle daemon, neither reads nor closes its stdin side
/// (activity of other containers on the daemon happens to unstick it); a writer that insists
/// on finishing blocks until the job's timeout.
async fn ignores_its_stdin(node: &Node) {
    // 8 MiB the tool never reads: far more than the socket buffers hold.
    let params = json!({"blob": "y".repeat(8 << 20)});
    let mut spec = script_job(r#"sleep 1; echo '{"ignored": true}'"#).params(params);
    spec.limits.timeout_ms = 10_000;
    let t = Instant::now();
    let out = node.run(spec).await;
    assert_eq!(
        expect_ok(&out),
        json!({"ignored": true}),
        "after {:?}",
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(6), "took {:?}", t.elapsed());
    assert_gone(&out.job_id);
}

/// On the real daemon: fails reliably when run alone, may pass beside other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_that_ignores_its_stdin_still_finishes() {
    ignores_its_stdin(&Node::new()).await;
}

/// A proxy in front of the daemon's socket that behaves like an idle Docker 20.10 daemon
/// after a container exits: once the daemon's side of a connection has ended, the client's
/// side is half-closed (the output ends) but never read again nor closed.
struct StallingProxy {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl StallingProxy {
    fn start(upstream: &'static str) -> StallingProxy {
        use tokio::io::AsyncWriteExt;
        use tokio::net::{UnixListener, UnixStream};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            // Client write halves are kept here, open and unread, until the proxy ends.
            let stalled = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            while let Ok((client, _)) = listener.accept().await {
                let Ok(daemon) = UnixStream::connect(upstream).await else {
                    continue;
                };
                let stalled = stalled.clone();
                tokio::spawn(async move {
                    let (mut client_r, mut client_w) = client.into_split();
                    let (mut daemon_r, mut daemon_w) = daemon.into_split();
                    let to_daemon = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut client_r, &mut daemon_w).await;
                        let _ = daemon_w.shutdown().await;
                    });
                    let _ = tokio::io::copy(&mut daemon_r, &mut client_w).await;
                    let _ = client_w.shutdown().await;
                    if !to_daemon.is_finished() {
                        // Stop reading from the client, but keep its connection open.
                        to_daemon.abort();
                        stalled.lock().unwrap().push(client_w);
                    }
                });
            }
        });
        StallingProxy {
            path,
            _dir: dir,
            task,
        }
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The same, deterministically: through a proxy that always behaves like the idle daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_that_ignores_its_stdin_still_finishes_when_the_daemon_keeps_stdin_open() {
    require_docker();
    let proxy = StallingProxy::start("/var/run/docker.sock");
    let node = Node::with_config(hanzo_compute::config::DockerConfig {
        socket: proxy.path.display().to_string(),
        ..test_config()
    });
    // The proxy itself is transparent to ordinary jobs.
    let params = json!({"through": "the proxy", "pad": "z".repeat(100_000)});
    let out = node.run(echo_job("run").params(params.clone())).await;
    assert_eq!(expect_ok(&out), params);
    ignores_its_stdin(&node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_flood_is_capped_and_the_output_survives() {
    let node = Node::new();
    // 5 MB of log lines, then a normal output.
    let out = node
        .run(script_job(
            r#"yes 'a log line that repeats' | head -c 5000000 >&2; echo '{"done": true}'"#,
        ))
        .await;
    assert_eq!(expect_ok(&out), json!({"done": true}));
    let logs = String::from_utf8_lossy(&out.logs);
    assert!(
        out.logs.len() <= (1 << 20) + 200,
        "logs kept: {} bytes",
        out.logs.len()
    );
    assert!(
        logs.contains("more bytes of logs dropped"),
        "{}",
        &logs[logs.len() - 200..]
    );
    assert_gone(&out.job_id);
}

/// The node's own variables are the node's: a job cannot make the tool believe it is
/// another job, or run another function than the one receipted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_cannot_override_the_nodes_variables() {
    let node = Node::new();
    let mut spec = script_job(PRINT_ENV);
    spec.env.insert("HANZO_JOB_ID".into(), "someone-elses-job".into());
    spec.env
        .insert("HANZO_FUNCTION".into(), "another_function".into());
    let out = node.run(spec).await;
    match &out.result {
        // Refusing the job is fine ...
        Err(e) => assert_eq!(e.exit_code(), 2, "{e:?}"),
        // ... running it with the job's real id and function too.
        Ok(env) => {
            assert_eq!(
                env["HANZO_JOB_ID"],
                out.job_id.as_str(),
                "the tool was told another job id"
            );
            assert_eq!(
                env["HANZO_FUNCTION"], "run",
                "the tool ran another function than receipted"
            );
        }
    }
    assert_gone(&out.job_id);
}

/// A mount onto the scratch tmpfs is a bad job (exit 2), not a fault of the node (exit 5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_over_tmp_is_bad_input() {
    let node = Node::new();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = script_job("echo '{}'");
    spec.mounts = vec![format!("{}:/tmp", dir.path().display()).parse().unwrap()];
    let out = node.run(spec).await;
    eprintln!("mount over /tmp: {:?}", out.result);
    expect_invalid(&out);
    assert_gone(&out.job_id);
}
