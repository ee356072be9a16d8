//! Every manifest the runtime generates, validated against the official Kubernetes
//! JSON schemas of the pinned version (k8s-openapi's `v1_33`) with kubernetes-validate
//! from PyPI, run through uv, strictly (unknown fields are errors).

use hanzo_compute::config::KubernetesConfig;
use hanzo_compute::service::{HealthCheck, ServiceSpec};
use hanzo_compute::{Job, JobSpec, Network, RuntimeKind};
use hanzo_k8s_runtime::{manifest, service};
use std::path::Path;
use std::process::Command;

/// kubernetes-validate, pinned: its 1.37.0 release carries the schemas of 1.25 to 1.37.
const VALIDATOR: &str = "kubernetes-validate==1.37.0";
/// The Kubernetes version k8s-openapi is pinned to.
const KUBERNETES: &str = "1.33.0";

fn validate(file: &Path) -> (bool, String) {
    let out = Command::new(hanzo_testkit::toolchain("uv"))
        .args([
            "tool",
            "run",
            "--from",
            VALIDATOR,
            "kubernetes-validate",
            "-k",
            KUBERNETES,
            "--strict",
        ])
        .arg(file)
        .output()
        .expect("uv runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn manifests() -> Vec<(&'static str, serde_json::Value)> {
    let config = KubernetesConfig::default();
    let mut out = Vec::new();
    let base = JobSpec::new(
        RuntimeKind::K8s,
        "registry.example/tools/echo:1.2@sha256:".to_string() + &"a".repeat(64),
    );
    out.push(("defaults", base.clone()));
    let mut rich = base.clone();
    rich.env.insert("API_URL".into(), "https://example".into());
    rich.network = Network::Full;
    rich.user = Some("1000:1000".into());
    rich.function = Some("summarise".into());
    rich.limits.memory_mb = 8192;
    rich.limits.cpu_shares = 100;
    rich.limits.disk_mb = 1;
    rich.limits.timeout_ms = 3_600_001;
    out.push(("rich", rich));
    let mut tiny = base;
    tiny.limits.memory_mb = 6;
    tiny.limits.cpu_shares = 1;
    tiny.limits.timeout_ms = 1;
    tiny.user = Some("65534".into());
    out.push(("tiny", tiny));
    let retries = KubernetesConfig {
        backoff_limit: 3,
        ttl_seconds_after_finished: 0,
        image_pull_policy: "Always".into(),
        service_account: String::new(),
        ..config.clone()
    };
    let mut all: Vec<(&'static str, serde_json::Value)> = out
        .into_iter()
        .map(|(name, spec)| {
            let job = manifest::tool_job(&Job::new(spec), &config, &"f".repeat(64)).unwrap();
            (name, serde_json::to_value(job).unwrap())
        })
        .collect();
    let job = manifest::tool_job(&Job::new(JobSpec::new(RuntimeKind::K8s, "busybox")), &retries, "").unwrap();
    all.push(("retries", serde_json::to_value(job).unwrap()));
    all
}

#[test]
fn every_generated_manifest_is_valid_for_the_pinned_version() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in manifests() {
        assert_eq!(value["apiVersion"], "batch/v1");
        assert_eq!(value["kind"], "Job");
        // JSON is YAML: kubernetes-validate reads it as is.
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, serde_json::to_string_pretty(&value).unwrap()).unwrap();
        let (ok, text) = validate(&file);
        assert!(
            ok,
            "{name} is not a valid Job for Kubernetes {KUBERNETES}:\n{text}\n{value:#}"
        );
    }
}

#[test]
fn the_validator_rejects_what_is_not_valid() {
    // The control: a field the schema lacks must fail, or the check above proves nothing.
    let (_, mut value) = manifests().remove(0);
    value["spec"]["template"]["spec"]["containers"][0]["stdinOnly"] = serde_json::json!(true);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, value.to_string()).unwrap();
    let (ok, text) = validate(&file);
    assert!(!ok, "an unknown field passed strict validation:\n{text}");
}

fn service_specs() -> Vec<(&'static str, ServiceSpec)> {
    let mut minimal = ServiceSpec::new("0web", "busybox:1.36");
    minimal.ports = vec![8080];
    let mut rich = ServiceSpec::new(
        "api-server",
        "registry.example/api:2@sha256:".to_string() + &"b".repeat(64),
    );
    rich.ports = vec![80, 443, 65535];
    rich.replicas = 64;
    rich.env.insert("MODE".into(), "prod".into());
    rich.command = Some(vec!["serve".into(), "--port=80".into()]);
    rich.user = Some("1000:1000".into());
    rich.limits.memory_mb = 6;
    rich.limits.cpu_shares = 1;
    rich.limits.disk_mb = 1;
    rich.health_check = Some(HealthCheck {
        command: vec!["/bin/check".into()],
        interval_ms: 1,
        timeout_ms: 3_600_000,
        retries: 0,
    });
    rich.host = Some("*.apps.example.com".into());
    let mut portless = ServiceSpec::new("w".repeat(40), "worker:1");
    portless.user = Some("65534".into());
    vec![("minimal", minimal), ("rich", rich), ("portless", portless)]
}

#[test]
fn every_service_manifest_is_valid_for_the_pinned_version() {
    let config = KubernetesConfig::default();
    let dir = tempfile::tempdir().unwrap();
    let mut kinds = Vec::new();
    for (name, spec) in service_specs() {
        let node = "f".repeat(64);
        let owner = Some(service::owned_by(
            &service::object_name(&spec.name),
            "0b4f4a4e-1c1e-4c1b-9d1a-2f3e4d5c6b7a",
        ));
        let mut docs =
            vec![serde_json::to_value(service::deployment(&spec, &config, &node).unwrap()).unwrap()];
        docs.extend(
            service::service(&spec, &config, &node, owner.clone())
                .unwrap()
                .map(|s| serde_json::to_value(s).unwrap()),
        );
        docs.extend(
            service::ingress(&spec, &config, &node, owner)
                .unwrap()
                .map(|i| serde_json::to_value(i).unwrap()),
        );
        for doc in docs {
            let kind = doc["kind"].as_str().unwrap().to_string();
            let file = dir.path().join(format!("{name}-{kind}.yaml"));
            std::fs::write(&file, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
            let (ok, text) = validate(&file);
            assert!(
                ok,
                "{name}: not a valid {kind} for Kubernetes {KUBERNETES}:\n{text}\n{doc:#}"
            );
            kinds.push(format!("{name}/{kind}"));
        }
    }
    // Every kind was generated and checked.
    assert_eq!(
        kinds,
        [
            "minimal/Deployment",
            "minimal/Service",
            "rich/Deployment",
            "rich/Service",
            "rich/Ingress",
            "portless/Deployment"
        ]
    );
}
