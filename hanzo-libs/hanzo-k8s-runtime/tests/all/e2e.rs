//! End to end against a real cluster, only when `HANZO_K8S_E2E=1` (see the README:
//! kind or k3d, the image in tests/e2e/). Without it the test says it was skipped.

use hanzo_compute::config::KubernetesConfig;
use hanzo_compute::service::{HealthCheck, ServiceRuntime, ServiceSpec};
use hanzo_compute::{ComputeError, Job, JobSpec, Runtime, RuntimeKind};
use hanzo_k8s_runtime::KubernetesRuntime;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job as K8sJob;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use serde_json::json;

fn env(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The cluster's configuration, or `None` (and a note) without `HANZO_K8S_E2E=1`.
fn e2e_config() -> Option<KubernetesConfig> {
    if std::env::var("HANZO_K8S_E2E").as_deref() != Ok("1") {
        eprintln!("skipped: set HANZO_K8S_E2E=1 and a kubeconfig to run against a real cluster (see README)");
        return None;
    }
    Some(KubernetesConfig {
        config_path: env("KUBECONFIG", "~/.kube/config"),
        context: env("HANZO_K8S_E2E_CONTEXT", ""),
        namespace: env("HANZO_K8S_E2E_NAMESPACE", "default"),
        service_account: env("HANZO_K8S_E2E_SERVICE_ACCOUNT", ""),
        ..Default::default()
    })
}

#[tokio::test]
async fn a_busybox_tool_runs_end_to_end() {
    let Some(config) = e2e_config() else { return };
    let image = env("HANZO_K8S_E2E_IMAGE", "hanzo-e2e-tool:1");
    let rt = KubernetesRuntime::new(&config)
        .await
        .expect("a client")
        .with_node_id("e2e");
    let health = rt.health().await;
    assert!(health.available, "{health:?}");

    let params = json!({"text": "héllo", "n": [1, 2.5]});
    let mut spec = JobSpec::new(RuntimeKind::K8s, &image);
    spec.params = params.clone();
    spec.limits.timeout_ms = 120_000;
    let job = Job::new(spec.clone());
    let exec = rt.execute(&job).await;
    assert_eq!(exec.result.as_ref().expect("echo succeeds"), &params);
    assert!(
        String::from_utf8_lossy(&exec.logs).contains("bytes of params"),
        "logs: {:?}",
        exec.logs
    );
    assert!(exec.code_hash.is_some());
    assert_gone(&rt, &config, &job).await;

    spec.params = json!({"fail": true});
    let job = Job::new(spec.clone());
    let e = rt.execute(&job).await.result.unwrap_err();
    assert_eq!(
        e,
        ComputeError::ToolFailed("exited with code 1: requested failure".into())
    );
    assert_gone(&rt, &config, &job).await;

    spec.source = "registry.invalid/hanzo/nope:1".into();
    let job = Job::new(spec);
    let started = std::time::Instant::now();
    let e = rt.execute(&job).await.result.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(started.elapsed().as_secs() < 100, "a pull error fails fast");
    assert_gone(&rt, &config, &job).await;
}

/// The Job is gone (its pod follows through the garbage collector).
async fn assert_gone(rt: &KubernetesRuntime, config: &KubernetesConfig, job: &Job) {
    let jobs: Api<K8sJob> = Api::namespaced(rt.client().clone(), &config.namespace);
    let left = jobs
        .list(&ListParams::default().labels(&format!("hanzo.job={}", job.id)))
        .await
        .unwrap();
    assert!(left.items.is_empty(), "Job left behind for {}", job.id);
}

#[tokio::test]
async fn a_busybox_httpd_service_deploys_scales_and_goes() {
    let Some(config) = e2e_config() else { return };
    let rt = KubernetesRuntime::new(&config)
        .await
        .expect("a client")
        .with_node_id("e2e");
    let name = format!("e2e-{}", std::process::id());
    let mut spec = ServiceSpec::new(&name, env("HANZO_K8S_E2E_SERVICE_IMAGE", "busybox:1.36"));
    spec.ports = vec![8080];
    // The root is read-only; /tmp is the writable emptyDir.
    spec.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "echo ok > /tmp/index.html && exec httpd -f -p 8080 -h /tmp".into(),
    ]);
    spec.limits.memory_mb = 32;
    spec.health_check = Some(HealthCheck {
        command: vec![
            "wget".into(),
            "-q".into(),
            "-O-".into(),
            "http://127.0.0.1:8080/".into(),
        ],
        interval_ms: 2_000,
        timeout_ms: 1_000,
        retries: 3,
    });
    let _ = rt.remove(&name).await;
    let status = rt.deploy(&spec).await.expect("deploys");
    let dns = format!("hanzo-svc-{name}.{}.svc:8080", config.namespace);
    assert_eq!(status.endpoints, [dns]);

    // Ready: the pod runs and its readiness probe (the health check) passes.
    let ready = wait_for(&rt, &name, |s| {
        s.replicas_running == 1 && s.replicas.iter().all(|r| r.health == "healthy")
    })
    .await;
    assert_eq!(ready.replicas_desired, 1, "{ready:?}");

    // The Service selects the pods on the port.
    let services: Api<Service> = Api::namespaced(rt.client().clone(), &config.namespace);
    let svc = services
        .get(&format!("hanzo-svc-{name}"))
        .await
        .expect("the Service exists");
    let svc_spec = svc.spec.unwrap();
    assert_eq!(svc_spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(svc_spec.ports.unwrap()[0].port, 8080);
    assert!(svc_spec.cluster_ip.is_some_and(|ip| !ip.is_empty()));

    let scaled = rt.scale(&name, 2).await.expect("scales");
    assert_eq!(scaled.replicas_desired, 2);
    wait_for(&rt, &name, |s| s.replicas_running == 2).await;
    assert!(rt.list().await.unwrap().iter().any(|s| s.name == name));

    rt.remove(&name).await.expect("removes");
    let deployments: Api<Deployment> = Api::namespaced(rt.client().clone(), &config.namespace);
    assert!(
        deployments
            .get_opt(&format!("hanzo-svc-{name}"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        services
            .get_opt(&format!("hanzo-svc-{name}"))
            .await
            .unwrap()
            .is_none()
    );
    let e = rt.remove(&name).await.unwrap_err();
    assert_eq!(e.exit_code(), 2);
}

/// Polls `inspect` until `done` holds, for up to two minutes.
async fn wait_for(
    rt: &KubernetesRuntime,
    name: &str,
    done: impl Fn(&hanzo_compute::service::ServiceStatus) -> bool,
) -> hanzo_compute::service::ServiceStatus {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let s = rt.inspect(name).await.expect("inspects");
        if done(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < until,
            "not there within 2 minutes: {s:?}"
        );
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}
