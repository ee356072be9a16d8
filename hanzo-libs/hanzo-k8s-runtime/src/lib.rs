//! # hanzo-k8s-runtime
//!
//! Runs container tools as Kubernetes Jobs through kube-rs, behind hanzo-compute's
//! [`Runtime`] trait, under the same stdio contract as the Docker runtime (CONTRACTS
//! §1a): the node attaches to the tool's container, writes the params on stdin and
//! closes it, and reads stdout (the output) and stderr (the logs) as separate
//! streams. A tool moves from `run docker IMAGE` to `run k8s IMAGE` unchanged.
//!
//! Pods run under the "restricted" Pod Security profile (non-root, no privilege
//! escalation, every capability dropped, seccomp `RuntimeDefault`), with requests equal
//! to limits from the job's `ResourceLimits`, a read-only root with a `/tmp` of
//! `disk_mb`, no service-account token, and `hanzo.*` labels. The Job is deleted in
//! every outcome; its `activeDeadlineSeconds` and `ttlSecondsAfterFinished` clean up
//! after a node that died. See the README for the design, RBAC and the e2e test.
//!
//! Services ([`hanzo_compute::service::ServiceRuntime`], the [`service`] module): the
//! Docker runtime's [`ServiceSpec`](hanzo_compute::service::ServiceSpec) as a
//! Deployment, a ClusterIP Service and, for a `host`, an Ingress.

#![warn(missing_docs)]

pub mod client;
mod errors;
pub mod labels;
pub mod manifest;
pub mod service;
mod tool;

pub use errors::K8sError;

use hanzo_compute::config::KubernetesConfig;
use hanzo_compute::{Capabilities, Execution, Health, Job, LimitKind, Runtime, RuntimeKind, Support};
use std::time::Duration;

/// How long `health()` waits for the API server's `/version`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The Kubernetes runtime: one client, one namespace.
#[derive(Clone)]
pub struct KubernetesRuntime {
    client: kube::Client,
    config: KubernetesConfig,
    node_id: String,
}

impl std::fmt::Debug for KubernetesRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesRuntime")
            .field("namespace", &self.config.namespace)
            .field("node_id", &self.node_id)
            .finish()
    }
}

impl KubernetesRuntime {
    /// A runtime for `[compute.kubernetes]`: the kubeconfig at `config_path` (`~`
    /// expanded) and `context`, or the pod's service account when
    /// `KUBERNETES_SERVICE_HOST` is set and `config_path` is empty or missing. Nothing
    /// is contacted yet: `health()` says whether the cluster answers.
    pub async fn new(config: &KubernetesConfig) -> Result<Self, K8sError> {
        check(config)?;
        let client = client::build(config).await?;
        Ok(Self::with_client(client, config.clone()))
    }

    /// A runtime on an existing client (tests, or a node that built its own).
    pub fn with_client(client: kube::Client, config: KubernetesConfig) -> Self {
        KubernetesRuntime {
            client,
            config,
            node_id: String::new(),
        }
    }

    /// Sets the node id written into the `hanzo.node` label and annotation.
    pub fn with_node_id(mut self, node_id: impl Into<String>) -> Self {
        self.node_id = node_id.into();
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &KubernetesConfig {
        &self.config
    }

    /// The client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }
}

fn check(config: &KubernetesConfig) -> Result<(), K8sError> {
    if config.namespace.is_empty() {
        return Err(K8sError::Config {
            key: "namespace",
            reason: "must not be empty".into(),
        });
    }
    manifest::pull_policy(&config.image_pull_policy).map_err(|_| K8sError::Config {
        key: "image_pull_policy",
        reason: format!(
            "'{}' (expected Always, IfNotPresent or Never)",
            config.image_pull_policy
        ),
    })?;
    manifest::parse_user(&config.default_user).map_err(|e| K8sError::Config {
        key: "default_user",
        reason: e.to_string(),
    })?;
    if config.backoff_limit < 0 || config.ttl_seconds_after_finished < 0 {
        return Err(K8sError::Config {
            key: "backoff_limit",
            reason: "backoff_limit and ttl_seconds_after_finished must not be negative".into(),
        });
    }
    Ok(())
}

#[async_trait::async_trait]
impl Runtime for KubernetesRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::K8s
    }

    fn capabilities(&self) -> Capabilities {
        let mut c = Capabilities::new(
            "Kubernetes pod under the restricted Pod Security profile (non-root, no capabilities, \
             seccomp RuntimeDefault, read-only root); network isolation is not enforced: pods get the \
             cluster network unless the namespace has a NetworkPolicy",
        )
        .with(
            LimitKind::Memory,
            Support::Enforced,
            "container memory limit (= request) enforced by the kubelet's cgroup; an OOM kill is a memory limit error",
        )
        .with(
            LimitKind::CpuShares,
            Support::Enforced,
            "container CPU limit (= request) of cpu_shares/1024 cores, a CFS quota set by the kubelet",
        )
        .with(
            LimitKind::Timeout,
            Support::Enforced,
            "the node deletes the Job at timeout_ms after the container started; activeDeadlineSeconds \
             (timeout plus pod_start_timeout_seconds) is the cluster's backstop",
        )
        .with(
            LimitKind::Output,
            Support::Enforced,
            "stdout is read over the attach stream up to the cap; past it the Job is deleted",
        )
        .with(
            LimitKind::Disk,
            Support::Enforced,
            "read-only root; /tmp is an emptyDir of disk_mb and the pod's ephemeral-storage limit is disk_mb \
             (the kubelet evicts past it, checked periodically)",
        )
        .with(
            LimitKind::Processes,
            Support::Unsupported,
            "Kubernetes has no per-pod pids limit in the API; the kubelet's podPidsLimit applies if the operator set one",
        )
        .with(
            LimitKind::NetworkBandwidth,
            Support::Unsupported,
            "no bandwidth shaping",
        )
        .with(LimitKind::Fuel, Support::Unsupported, "fuel is a WASM measure")
        .with(
            LimitKind::Stack,
            Support::Unsupported,
            "the process's own stack rlimit applies",
        );
        c.network = true;
        c.mounts = false;
        c
    }

    async fn health(&self) -> Health {
        match tokio::time::timeout(HEALTH_TIMEOUT, self.client.apiserver_version()).await {
            Ok(Ok(info)) => Health::ok(format!("Kubernetes {}", info.git_version)),
            Ok(Err(e)) => Health::unavailable(format!(
                "Kubernetes API server unreachable ({}); check [compute.kubernetes] config_path/context and \
                 `kubectl cluster-info`",
                errors::describe(&e)
            )),
            Err(_) => Health::unavailable(format!(
                "Kubernetes API server did not answer /version within {} s",
                HEALTH_TIMEOUT.as_secs()
            )),
        }
    }

    async fn execute(&self, job: &Job) -> Execution {
        tool::run(self, job).await
    }
}
