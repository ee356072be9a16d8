//! Long-running services: deployed, answering on their ports, surviving a killed
//! replica, scaled, and removed.

use crate::util::*;
use hanzo_compute::service::{HealthCheck, ServiceRuntime, ServiceSpec, ServiceStatus};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// An HTTP server on port 8080 that answers `hello <replica's hostname>`.
fn web_spec(name: &str, replicas: u32) -> ServiceSpec {
    let mut spec = ServiceSpec::new(name, busybox());
    spec.replicas = replicas;
    spec.ports = vec![8080];
    spec.limits.memory_mb = 64;
    spec.env.insert(
        SCRIPT_VAR.into(),
        "echo hello > /tmp/index.html && exec httpd -f -p 8080 -h /tmp".into(),
    );
    spec.health_check = Some(HealthCheck {
        command: vec![
            "wget".into(),
            "-q".into(),
            "-O".into(),
            "/dev/null".into(),
            "http://127.0.0.1:8080/".into(),
        ],
        interval_ms: 500,
        timeout_ms: 1_000,
        retries: 3,
    });
    spec
}

fn get(endpoint: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect_timeout(&endpoint.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// Waits until `endpoint` answers with the page.
async fn answers(endpoint: &str, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if get(endpoint).is_some_and(|b| b.contains("hello")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn unique_name() -> String {
    format!("web-{}", &hanzo_compute::new_job_id()[24..])
}

/// Removes the service when the test ends, however it ends.
struct ServiceGuard(String);

impl Drop for ServiceGuard {
    fn drop(&mut self) {
        for id in containers(&format!("label=hanzo.service={}", self.0)) {
            let _ = docker_output(&["rm", "-f", &id]);
        }
    }
}

fn replica_pid(status: &ServiceStatus, index: usize) -> String {
    docker(&["inspect", "-f", "{{.State.Pid}}", &status.replicas[index].id])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_answers_survives_a_killed_replica_scales_and_is_removed() {
    let node = Node::new();
    let name = unique_name();
    let _guard = ServiceGuard(name.clone());
    let status = node.rt.deploy(&web_spec(&name, 2)).await.expect("deploy");
    assert_eq!(status.replicas_desired, 2);
    assert_eq!(status.endpoints.len(), 2, "{status:?}");
    for ep in &status.endpoints {
        assert!(answers(ep, Duration::from_secs(20)).await, "{ep} does not answer");
    }

    // Kill replica 0's process from the host, as a crash would.
    let victim = status.replicas[0].endpoints[0].clone();
    let pid = replica_pid(&status, 0);
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    let t = Instant::now();
    let mut back = false;
    while t.elapsed() < Duration::from_secs(30) && !back {
        // `inspect` also revives a stopped replica; Docker's restart policy usually wins.
        let s = node.rt.inspect(&name).await.expect("inspect");
        back = s.replicas_running == 2 && answers(&victim, Duration::from_secs(2)).await;
    }
    assert!(back, "the killed replica did not come back on {victim}");

    let status = node.rt.scale(&name, 3).await.expect("scale up");
    assert_eq!(status.replicas_desired, 3);
    assert_eq!(status.endpoints.len(), 3);
    for ep in &status.endpoints {
        assert!(
            answers(ep, Duration::from_secs(20)).await,
            "{ep} does not answer after scaling"
        );
    }
    let status = node.rt.scale(&name, 1).await.expect("scale down");
    assert_eq!(status.replicas.len(), 1);
    assert!(node.rt.list().await.unwrap().iter().any(|s| s.name == name));

    node.rt.remove(&name).await.expect("remove");
    assert!(containers(&format!("label=hanzo.service={name}")).is_empty());
    let e = node.rt.inspect(&name).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
}

#[tokio::test]
async fn bad_service_specs_are_bad_input() {
    let node = Node::new();
    let mut spec = web_spec("Bad_Name", 1);
    assert_eq!(node.rt.deploy(&spec).await.unwrap_err().exit_code(), 2);
    spec.name = unique_name();
    spec.image = "hanzo-test/no-such-image:1".into();
    let e = node.rt.deploy(&spec).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(containers(&format!("label=hanzo.service={}", spec.name)).is_empty());
}
