//! The agent runtime's limits and refusals, against a model endpoint served here (a few
//! lines of HTTP/1.1 on loopback answering canned replies) and a tool host of one echo
//! tool. The end-to-end tests with real tools, a real node and a request-checking
//! endpoint are the binary's (`hanzo-bin/hanzo-node/tests/all/agent.rs`).

use hanzo_agent::{AgentOptions, AgentRuntime, Call, Child, ToolDef, Tools};
use hanzo_compute::{Compute, ComputeError, Job, JobSpec, LimitKind, NodeKey, RuntimeKind};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the endpoint answers every request with: a body and a delay.
#[derive(Clone)]
struct Canned {
    body: String,
    delay: Duration,
}

/// Serves `canned` on a loopback port; returns the endpoint's base URL.
async fn endpoint(canned: Canned) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let canned = canned.clone();
            tokio::spawn(async move {
                // Read the head, then as many body bytes as it announces.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, length) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (i + 4, length);
                    }
                };
                while buf.len() < head_end + length {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                tokio::time::sleep(canned.delay).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    canned.body.len(),
                    canned.body
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}/v1")
}

fn answer(text: &str) -> String {
    json!({"choices": [{"message": {"role": "assistant", "content": text}}]}).to_string()
}

fn calls(n: usize) -> String {
    let calls: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("c{i}"), "type": "function", "function": {"name": "echo", "arguments": "{}"}}))
        .collect();
    json!({"choices": [{"message": {"role": "assistant", "content": null, "tool_calls": calls}}]}).to_string()
}

/// One tool, `echo`, answering its params without a job.
struct Echo;

#[async_trait::async_trait]
impl Tools for Echo {
    async fn describe(&self, name: &str) -> Result<Option<ToolDef>, ComputeError> {
        Ok((name == "echo").then(|| ToolDef {
            name: "echo".into(),
            description: None,
            schema: None,
            agent: false,
        }))
    }

    async fn call(&self, call: Call) -> Result<Child, ComputeError> {
        Ok(Child {
            job_id: None,
            result: Ok(call.params),
            receipt: None,
        })
    }
}

fn runtime(options: AgentOptions) -> Arc<AgentRuntime> {
    let rt = Arc::new(AgentRuntime::new(options).unwrap());
    assert!(rt.bind(Arc::new(Echo)));
    rt
}

fn file(endpoint: &str, extra: &str) -> String {
    format!("endpoint = \"{endpoint}\"\nmodel = \"m\"\ntools = [\"echo\"]\n{extra}")
}

fn job(source: String) -> Job {
    Job::new(JobSpec::new(RuntimeKind::Agent, source).params(json!({"prompt": "go"})))
}

async fn run(rt: &Arc<AgentRuntime>, job: &Job) -> Result<Value, ComputeError> {
    let mut compute = Compute::new(Arc::new(NodeKey::generate().unwrap()));
    compute.register(rt.clone());
    compute.run_job(job, hanzo_compute::Signing::On).await.result
}

fn limit(r: Result<Value, ComputeError>, kind: LimitKind) {
    match r {
        Err(ComputeError::LimitExceeded { limit, .. }) if limit == kind => {}
        other => panic!("expected the {kind} limit, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receipt_names_the_files_sha256_and_binds_the_output() {
    let url = endpoint(Canned {
        body: answer("42"),
        delay: Duration::ZERO,
    })
    .await;
    let rt = runtime(AgentOptions::default());
    let source = file(&url, "");
    let mut compute = Compute::new(Arc::new(NodeKey::generate().unwrap()));
    compute.register(rt.clone());
    let out = compute
        .run_job(&job(source.clone()), hanzo_compute::Signing::On)
        .await;
    let value = out.result.unwrap();
    assert_eq!(value["answer"], "42");
    assert_eq!(value["usage"]["requests"], 1);
    let receipt = out.receipt.unwrap();
    assert_eq!(
        receipt.code_hash,
        hanzo_compute::receipt::sha256_hex(source.as_bytes())
    );
    assert_eq!(
        receipt.output_hash.as_deref(),
        Some(hanzo_compute::receipt::hash_json(&value).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_past_the_memory_limit_is_read_no_further() {
    let big = answer(&"x".repeat(3 << 20));
    let url = endpoint(Canned {
        body: big,
        delay: Duration::ZERO,
    })
    .await;
    let rt = runtime(AgentOptions::default());
    let mut j = job(file(&url, ""));
    j.spec.limits.memory_mb = 1;
    limit(run(&rt, &j).await, LimitKind::Memory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_cap_holds_for_the_answer() {
    let url = endpoint(Canned {
        body: answer(&"y".repeat(5000)),
        delay: Duration::ZERO,
    })
    .await;
    let rt = runtime(AgentOptions::default());
    let mut j = job(file(&url, ""));
    j.spec.limits.max_output_bytes = 1000;
    limit(run(&rt, &j).await, LimitKind::Output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_model_meets_the_timeout_and_a_cancel() {
    let url = endpoint(Canned {
        body: answer("late"),
        delay: Duration::from_secs(20),
    })
    .await;
    let rt = runtime(AgentOptions::default());
    let mut j = job(file(&url, ""));
    j.spec.limits.timeout_ms = 500;
    let started = Instant::now();
    limit(run(&rt, &j).await, LimitKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let j = job(file(&url, ""));
    let cancel = j.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    assert!(matches!(run(&rt, &j).await, Err(ComputeError::Cancelled)));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_are_bounded_per_run_and_per_reply() {
    // The model keeps calling: the ninth call is over max_steps = 8.
    let url = endpoint(Canned {
        body: calls(1),
        delay: Duration::ZERO,
    })
    .await;
    let rt = runtime(AgentOptions::default());
    limit(run(&rt, &job(file(&url, ""))).await, LimitKind::Steps);
    // 65 calls in one reply: malformed, whatever max_steps says.
    let url = endpoint(Canned {
        body: calls(65),
        delay: Duration::ZERO,
    })
    .await;
    let r = run(&rt, &job(file(&url, "max_steps = 64"))).await;
    assert!(
        matches!(&r, Err(ComputeError::ToolFailed(m)) if m.contains("65 tool calls")),
        "{r:?}"
    );
    // A file asking more than the node's ceiling: bad input.
    let rt = runtime(AgentOptions {
        max_steps: 4,
        ..AgentOptions::default()
    });
    let r = run(&rt, &job(file(&url, ""))).await;
    assert!(
        matches!(&r, Err(ComputeError::InvalidInput(m)) if m.contains("max_steps")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_mounts_and_unknown_tools_are_refused_before_the_model() {
    // Nothing listens here: a refusal that reached the model would be exit 4, not 2.
    let url = "http://127.0.0.1:9/v1";
    let rt = runtime(AgentOptions::default());
    let mut j = job(file(url, ""));
    j.origin = Some("12D3KooWpeer".into());
    let r = run(&rt, &j).await;
    assert!(
        matches!(&r, Err(ComputeError::InvalidInput(m)) if m.contains("peers")),
        "{r:?}"
    );
    let mut j = job(file(url, ""));
    j.spec.mounts.push("/tmp:/data".parse().unwrap());
    assert!(matches!(run(&rt, &j).await, Err(ComputeError::InvalidInput(_))));
    let j = job(format!(
        "endpoint = \"{url}\"\nmodel = \"m\"\ntools = [\"nope\"]\n"
    ));
    let r = run(&rt, &j).await;
    assert!(
        matches!(&r, Err(ComputeError::InvalidInput(m)) if m.contains("no tool 'nope'")),
        "{r:?}"
    );
    let mut j = job(file(url, ""));
    j.spec.params = json!({"prompt": "a", "messages": []});
    assert!(matches!(run(&rt, &j).await, Err(ComputeError::InvalidInput(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_key_goes_only_where_key_vars_says() {
    // A variable only this test uses: the process's environment is shared.
    const VAR: &str = "HANZO_AGENT_RUNTIME_TEST_KEY";
    // SAFETY: no other test reads or writes this variable.
    unsafe { std::env::set_var(VAR, "sk-operator") };
    let url = endpoint(Canned {
        body: answer("ok"),
        delay: Duration::ZERO,
    })
    .await;
    let with_key = |endpoint: &str| {
        job(format!(
            "endpoint = \"{endpoint}\"\nmodel = \"m\"\napi_key_env = \"{VAR}\"\n"
        ))
    };
    // Not listed: refused.
    let rt = runtime(AgentOptions::default());
    let r = run(&rt, &with_key(&url)).await;
    assert!(
        matches!(&r, Err(ComputeError::InvalidInput(m)) if m.contains("key_vars")),
        "{r:?}"
    );
    // Listed for another endpoint: refused, before anything is sent.
    let rt = runtime(AgentOptions {
        key_vars: vec![format!("{VAR}@http://127.0.0.1:1/v1")],
        ..AgentOptions::default()
    });
    let r = run(&rt, &with_key(&url)).await;
    assert!(
        matches!(&r, Err(ComputeError::InvalidInput(m)) if m.contains("may not be sent")),
        "{r:?}"
    );
    // Listed for this one (or for any): sent.
    for entry in [format!("{VAR}@{url}"), VAR.to_string()] {
        let rt = runtime(AgentOptions {
            key_vars: vec![entry],
            ..AgentOptions::default()
        });
        assert_eq!(run(&rt, &with_key(&url)).await.unwrap()["answer"], "ok");
    }
}
