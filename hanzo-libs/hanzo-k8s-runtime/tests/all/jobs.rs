//! Tool jobs against the scripted API: the exact request sequence of each outcome, and
//! the Job's DELETE in every case where a Job was created.

use crate::api::{
    self, Attach, Fixture, NS, Script, pod_event, pod_event_of, pod_event_with, running, terminated, waiting,
};
use hanzo_compute::config::KubernetesConfig;
use hanzo_compute::{ComputeError, Execution, Job, JobSpec, LimitKind, Runtime, RuntimeKind};
use hanzo_k8s_runtime::KubernetesRuntime;
use serde_json::json;
use std::time::{Duration, Instant};

fn runtime(client: kube::Client) -> KubernetesRuntime {
    runtime_with(client, 0)
}

fn runtime_with(client: kube::Client, backoff_limit: i32) -> KubernetesRuntime {
    let config = KubernetesConfig {
        namespace: NS.into(),
        backoff_limit,
        ..Default::default()
    };
    KubernetesRuntime::with_client(client, config).with_node_id("node-1")
}

struct Ran {
    fixture: Fixture,
    exec: Execution,
    job: Job,
    took: Duration,
}

impl Ran {
    fn name(&self) -> String {
        format!("hanzo-tool-{}", self.job.id)
    }

    fn deleted(&self) -> String {
        format!("delete job/{} propagationPolicy=Background", self.name())
    }

    fn error(&self) -> &ComputeError {
        self.exec.result.as_ref().expect_err("the job should fail")
    }

    fn assert_sequence(&self, expected: &[&str]) {
        let expected: Vec<String> = expected
            .iter()
            .map(|s| {
                if *s == "DELETE" {
                    self.deleted()
                } else {
                    s.to_string()
                }
            })
            .collect();
        assert_eq!(
            self.fixture.requests(),
            expected,
            "result: {:?}",
            self.exec.result
        );
    }
}

async fn run_with(script: Script, tweak: impl FnOnce(&mut JobSpec), cancel_after: Option<Duration>) -> Ran {
    run_on(script, tweak, cancel_after, 0).await
}

async fn run_on(
    script: Script,
    tweak: impl FnOnce(&mut JobSpec),
    cancel_after: Option<Duration>,
    backoff_limit: i32,
) -> Ran {
    let fixture = Fixture::start(script).await;
    let rt = runtime_with(fixture.client(), backoff_limit);
    let mut spec = JobSpec::new(RuntimeKind::K8s, "busybox:1.36");
    spec.params = json!({"text": "héllo", "n": [1, 2]});
    tweak(&mut spec);
    let job = Job::new(spec);
    if let Some(after) = cancel_after {
        // Cancel `after` the tool is attached (running), however slow the machine.
        let token = job.cancel.clone();
        let f = fixture.clone();
        tokio::spawn(async move {
            while !f.requests().iter().any(|r| r.starts_with("attach")) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(after).await;
            token.cancel();
        });
    }
    let started = Instant::now();
    let exec = tokio::time::timeout(Duration::from_secs(30), rt.execute(&job))
        .await
        .expect("the runtime never hangs past its deadlines");
    Ran {
        fixture,
        exec,
        job,
        took: started.elapsed(),
    }
}

async fn run(script: Script) -> Ran {
    run_with(script, |_| {}, None).await
}

const ATTACHED: [&str; 5] = [
    "create jobs",
    "list pods",
    "watch pods",
    "attach pod/hanzo-tool-pod",
    "DELETE",
];

#[tokio::test]
async fn success_separates_the_output_from_the_logs() {
    let r = run(Script {
        events: vec![
            pod_event("ADDED", 11, waiting("ContainerCreating", "")),
            pod_event("MODIFIED", 12, running()),
        ],
        attach: Attach {
            stdout: b"{\"echo\": \"h\\u00e9llo\"}\n".to_vec(),
            stderr: b"loading\nready\n".to_vec(),
            then: vec![pod_event("MODIFIED", 13, terminated(0, "Completed"))],
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    assert_eq!(r.exec.result.as_ref().unwrap(), &json!({"echo": "héllo"}));
    assert_eq!(r.exec.logs, b"loading\nready\n");
    // The params went in on stdin, exactly as JSON, and nothing else.
    let stdin: serde_json::Value = serde_json::from_slice(&r.fixture.stdin()).unwrap();
    assert_eq!(stdin, r.job.spec.params);
    assert_eq!(r.exec.code_hash.as_deref(), Some("ab".repeat(32).as_str()));
    r.assert_sequence(&ATTACHED);
    let created = r.fixture.created().unwrap();
    assert_eq!(created["metadata"]["name"], json!(r.name()));
    assert_eq!(created["metadata"]["labels"]["hanzo.job"], json!(r.job.id));
    assert_eq!(created["metadata"]["labels"]["hanzo.node"], json!("node-1"));
    assert_eq!(created["spec"]["backoffLimit"], json!(0));
    let container = &created["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["env"][0],
        json!({"name": "HANZO_FUNCTION", "value": "run"})
    );
    assert_eq!(
        container["env"][1],
        json!({"name": "HANZO_JOB_ID", "value": r.job.id})
    );
}

#[tokio::test]
async fn a_tool_failure_is_exit_1_with_the_tools_message() {
    let r = run(Script {
        events: vec![pod_event("ADDED", 11, running())],
        attach: Attach {
            stderr: b"starting\nrequested failure\n".to_vec(),
            then: vec![pod_event("MODIFIED", 12, terminated(1, "Error"))],
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    assert_eq!(
        r.error(),
        &ComputeError::ToolFailed("exited with code 1: requested failure".into())
    );
    assert_eq!(r.error().exit_code(), 1);
    assert_eq!(r.exec.logs, b"starting\nrequested failure\n");
    r.assert_sequence(&ATTACHED);
}

#[tokio::test]
async fn the_nodes_deadline_deletes_the_job() {
    let r = run_with(
        Script {
            events: vec![pod_event("ADDED", 11, running())],
            attach: Attach {
                hang: true,
                ..Default::default()
            },
            ..Default::default()
        },
        |s| s.limits.timeout_ms = 400,
        None,
    )
    .await;
    assert!(
        matches!(
            r.error(),
            ComputeError::LimitExceeded {
                limit: LimitKind::Timeout,
                ..
            }
        ),
        "{:?}",
        r.error()
    );
    assert_eq!(r.error().exit_code(), 3);
    assert!(
        r.took >= Duration::from_millis(400) && r.took < Duration::from_secs(5),
        "{:?}",
        r.took
    );
    r.assert_sequence(&ATTACHED);
}

#[tokio::test]
async fn the_jobs_deadline_exceeded_is_a_timeout() {
    let unschedulable = json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient memory."}]});
    let mut pending = pod_event_with("ADDED", 11, json!(null), unschedulable);
    pending["object"]["status"]
        .as_object_mut()
        .unwrap()
        .remove("containerStatuses");
    let mut gone = pending.clone();
    gone["type"] = json!("DELETED");
    let r = run(Script {
        events: vec![pending, gone],
        job: json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x", "namespace": NS},
            "status": {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
            "message": "Job was active longer than specified deadline"}]}}),
        ..Default::default()
    })
    .await;
    let e = r.error();
    assert!(
        matches!(
            e,
            ComputeError::LimitExceeded {
                limit: LimitKind::Timeout,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("Insufficient memory"), "{e}");
    let get = format!("get job/{}", r.name());
    r.assert_sequence(&["create jobs", "list pods", "watch pods", &get, "DELETE"]);
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_fast_with_the_reason() {
    let r = run(Script {
        events: vec![
            pod_event("ADDED", 11, waiting("ContainerCreating", "")),
            pod_event(
                "MODIFIED",
                12,
                waiting("ErrImagePull", "failed to pull image \"busybox:nope\": not found"),
            ),
        ],
        ..Default::default()
    })
    .await;
    let e = r.error();
    assert_eq!(e.exit_code(), 2, "{e:?}");
    assert!(
        e.to_string().contains("ErrImagePull") && e.to_string().contains("not found"),
        "{e}"
    );
    assert!(
        r.took < Duration::from_secs(5),
        "not a hang until the deadline: {:?}",
        r.took
    );
    r.assert_sequence(&["create jobs", "list pods", "watch pods", "DELETE"]);
}

#[tokio::test]
async fn an_eviction_for_node_pressure_is_unavailable() {
    let evicted = pod_event_with(
        "MODIFIED",
        12,
        terminated(137, "Error"),
        json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
    );
    let r = run(Script {
        events: vec![pod_event("ADDED", 11, running())],
        attach: Attach {
            hang: true,
            then: vec![evicted],
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let e = r.error();
    assert_eq!(e.exit_code(), 4, "{e:?}");
    assert!(
        e.to_string().contains("evicted") && e.to_string().contains("low on resource: memory"),
        "{e}"
    );
    r.assert_sequence(&ATTACHED);
}

#[tokio::test]
async fn an_eviction_past_the_disk_limit_is_a_disk_limit_error() {
    let evicted = pod_event_with(
        "MODIFIED",
        12,
        terminated(137, "Error"),
        json!({"phase": "Failed", "reason": "Evicted",
               "message": "Pod ephemeral local storage usage exceeds the total limit of containers 512Mi."}),
    );
    let r = run(Script {
        events: vec![pod_event("ADDED", 11, running())],
        attach: Attach {
            hang: true,
            then: vec![evicted],
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    assert!(
        matches!(
            r.error(),
            ComputeError::LimitExceeded {
                limit: LimitKind::Disk,
                ..
            }
        ),
        "{:?}",
        r.error()
    );
    r.assert_sequence(&ATTACHED);
}

#[tokio::test]
async fn an_oom_kill_is_a_memory_limit_error() {
    let r = run(Script {
        events: vec![pod_event("ADDED", 11, running())],
        attach: Attach {
            then: vec![pod_event("MODIFIED", 12, terminated(137, "OOMKilled"))],
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let e = r.error();
    assert!(
        matches!(
            e,
            ComputeError::LimitExceeded {
                limit: LimitKind::Memory,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 3);
    assert!(e.to_string().contains("256 MiB"), "{e}");
    r.assert_sequence(&ATTACHED);
}

#[tokio::test]
async fn forbidden_names_the_verb_and_the_resource() {
    let r = run(Script {
        create: Some(api::forbidden("create", "jobs", "batch")),
        ..Default::default()
    })
    .await;
    let e = r.error().to_string();
    assert!(
        e.contains("forbidden by RBAC") && e.contains("create jobs.batch") && e.contains(NS),
        "{e}"
    );
    assert_eq!(r.error().exit_code(), 4);
    // Nothing was created, so there is nothing to delete.
    r.assert_sequence(&["create jobs"]);
}

#[tokio::test]
async fn forbidden_after_the_job_was_created_still_deletes_it() {
    let r = run(Script {
        list_error: Some(api::forbidden("list", "pods", "")),
        ..Default::default()
    })
    .await;
    let e = r.error().to_string();
    assert!(
        e.contains("forbidden by RBAC") && e.contains("list/watch pods"),
        "{e}"
    );
    r.assert_sequence(&["create jobs", "list pods", "DELETE"]);
}

#[tokio::test]
async fn an_unreachable_api_server_is_unavailable() {
    // A port that was just free: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = kube::Client::try_from(kube::Config::new(
        format!("http://127.0.0.1:{port}").parse().unwrap(),
    ))
    .unwrap();
    let rt = runtime(client);
    let exec = rt
        .execute(&Job::new(JobSpec::new(RuntimeKind::K8s, "busybox:1.36")))
        .await;
    let e = exec.result.unwrap_err();
    assert_eq!(e.exit_code(), 4, "{e:?}");
    assert!(
        e.to_string().contains("no reachable Kubernetes API server"),
        "{e}"
    );
    let health = rt.health().await;
    assert!(!health.available);
    assert!(health.detail.unwrap().contains("unreachable"));
}

#[tokio::test]
async fn cancel_deletes_the_job() {
    let r = run_with(
        Script {
            events: vec![pod_event("ADDED", 11, running())],
            attach: Attach {
                hang: true,
                ..Default::default()
            },
            ..Default::default()
        },
        |_| {},
        Some(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(r.error(), &ComputeError::Cancelled);
    assert!(r.took < Duration::from_secs(5), "{:?}", r.took);
    r.assert_sequence(&ATTACHED);
}

#[tokio::test]
async fn output_past_the_cap_is_an_output_limit_error() {
    let r = run_with(
        Script {
            events: vec![pod_event("ADDED", 11, running())],
            attach: Attach {
                stdout: vec![b'7'; 20_000],
                then: vec![pod_event("MODIFIED", 12, terminated(0, "Completed"))],
                ..Default::default()
            },
            ..Default::default()
        },
        |s| s.limits.max_output_bytes = 1000,
        None,
    )
    .await;
    assert!(
        matches!(
            r.error(),
            ComputeError::LimitExceeded {
                limit: LimitKind::Output,
                ..
            }
        ),
        "{:?}",
        r.error()
    );
    r.assert_sequence(&ATTACHED);
}

#[tokio::test]
async fn a_container_that_ends_before_the_attach_is_reported_with_its_log() {
    let r = run(Script {
        events: vec![pod_event("ADDED", 11, terminated(0, "Completed"))],
        log: "{\"early\": true}\n".into(),
        ..Default::default()
    })
    .await;
    let e = r.error().to_string();
    assert!(e.contains("before the node could attach"), "{e}");
    assert_eq!(r.exec.logs, b"{\"early\": true}\n");
    r.assert_sequence(&[
        "create jobs",
        "list pods",
        "watch pods",
        "log pod/hanzo-tool-pod",
        "DELETE",
    ]);
}

#[tokio::test]
async fn health_reports_the_api_servers_version() {
    let fixture = Fixture::start(Script::default()).await;
    let health = runtime(fixture.client()).health().await;
    assert!(health.available, "{health:?}");
    assert_eq!(health.version.as_deref(), Some("Kubernetes v1.33.1"));
    assert_eq!(fixture.requests(), ["get version"]);
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_created() {
    let r = run_with(Script::default(), |s| s.user = Some("0:0".into()), None).await;
    assert_eq!(r.error().exit_code(), 2);
    assert!(r.error().to_string().contains("root"), "{}", r.error());
    r.assert_sequence(&[]);
}

#[tokio::test]
async fn with_a_backoff_limit_the_next_pod_is_followed() {
    let second = |kind, rv, state| pod_event_of("hanzo-tool-pod-2", kind, rv, state, json!({}));
    let script = Script {
        events: vec![pod_event("ADDED", 11, running())],
        attaches: vec![
            Attach {
                stderr: b"flaky\n".to_vec(),
                then: vec![
                    pod_event("MODIFIED", 12, terminated(1, "Error")),
                    second("ADDED", 13, running()),
                ],
                ..Default::default()
            },
            Attach {
                stdout: b"{\"ok\": 2}".to_vec(),
                then: vec![second("MODIFIED", 14, terminated(0, "Completed"))],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let r = run_on(script, |_| {}, None, 1).await;
    assert_eq!(r.exec.result.as_ref().unwrap(), &json!({"ok": 2}));
    // Both attempts read the params.
    let params = serde_json::to_vec(&r.job.spec.params).unwrap();
    assert_eq!(r.fixture.stdin(), [params.clone(), params].concat());
    r.assert_sequence(&[
        "create jobs",
        "list pods",
        "watch pods",
        "attach pod/hanzo-tool-pod",
        "attach pod/hanzo-tool-pod-2",
        "DELETE",
    ]);
    assert_eq!(r.fixture.created().unwrap()["spec"]["backoffLimit"], json!(1));
}

/// Runs `script` with a live log sink on the job; returns what the sink received.
async fn run_with_sink(script: Script) -> (Ran, Vec<u8>) {
    use hanzo_compute::stdio::LogSink;
    use std::sync::{Arc, Mutex};
    let fixture = Fixture::start(script).await;
    let rt = runtime(fixture.client());
    let mut spec = JobSpec::new(RuntimeKind::K8s, "busybox:1.36");
    spec.params = json!({"text": "héllo"});
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let job = Job::new(spec).with_log_sink(LogSink::new(move |chunk| {
        s.lock().unwrap().extend_from_slice(chunk)
    }));
    let started = Instant::now();
    let exec = tokio::time::timeout(Duration::from_secs(30), rt.execute(&job))
        .await
        .expect("the runtime never hangs past its deadlines");
    let seen = seen.lock().unwrap().clone();
    (
        Ran {
            fixture,
            exec,
            job,
            took: started.elapsed(),
        },
        seen,
    )
}

#[tokio::test]
async fn the_jobs_log_sink_receives_the_stderr_stream_live() {
    // More than one websocket frame (4 KiB chunks) of logs, and an output that must not
    // reach the sink.
    let stderr: Vec<u8> = (0..2000)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let (r, seen) = run_with_sink(Script {
        events: vec![pod_event("ADDED", 11, running())],
        attach: Attach {
            stdout: b"{\"secret_output\": 1}\n".to_vec(),
            stderr: stderr.clone(),
            then: vec![pod_event("MODIFIED", 12, terminated(0, "Completed"))],
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    assert_eq!(r.exec.result.as_ref().unwrap(), &json!({"secret_output": 1}));
    assert_eq!(r.exec.logs, stderr);
    assert_eq!(seen, stderr, "the sink sees exactly the kept logs, in order");
    r.assert_sequence(&ATTACHED);
}

#[tokio::test]
async fn the_jobs_log_sink_receives_the_merged_log_of_the_fallback() {
    let (r, seen) = run_with_sink(Script {
        events: vec![pod_event("ADDED", 11, terminated(3, "Error"))],
        log: "early words\n".into(),
        ..Default::default()
    })
    .await;
    assert!(r.error().to_string().contains("before the node could attach"));
    assert_eq!(r.exec.logs, b"early words\n");
    assert_eq!(seen, b"early words\n");
}
