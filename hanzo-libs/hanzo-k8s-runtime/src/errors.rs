//! Errors: the runtime's own ([`K8sError`], building a client) and the mapping of the
//! API server's answers onto [`ComputeError`], naming what the node tried to do.

use hanzo_compute::ComputeError;

/// Why a [`KubernetesRuntime`](crate::KubernetesRuntime) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The kubeconfig file could not be read or parsed, or lacks the context.
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig {
        /// The file (after `~` expansion).
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// In-cluster configuration (service account token, CA) was not usable.
    #[error("in-cluster configuration: {0}")]
    InCluster(String),
    /// A `[compute.kubernetes]` value is invalid.
    #[error("compute.kubernetes.{key}: {reason}")]
    Config {
        /// The key.
        key: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The HTTP client could not be built from the configuration (TLS, proxy).
    #[error("cannot build the Kubernetes client: {0}")]
    Client(String),
}

impl From<K8sError> for ComputeError {
    fn from(e: K8sError) -> Self {
        ComputeError::Unavailable(format!("Kubernetes: {e}"))
    }
}

/// One API call, for messages: the verb and resource as RBAC names them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call {
    /// `create`, `get`, `list`, `watch`, `delete`.
    pub verb: &'static str,
    /// `jobs.batch`, `pods`, `pods/attach`, ...
    pub resource: &'static str,
}

pub(crate) const CREATE_JOB: Call = Call {
    verb: "create",
    resource: "jobs.batch",
};
pub(crate) const GET_JOB: Call = Call {
    verb: "get",
    resource: "jobs.batch",
};
pub(crate) const DELETE_JOB: Call = Call {
    verb: "delete",
    resource: "jobs.batch",
};
pub(crate) const WATCH_PODS: Call = Call {
    verb: "list/watch",
    resource: "pods",
};
pub(crate) const ATTACH_POD: Call = Call {
    verb: "create",
    resource: "pods/attach",
};
pub(crate) const GET_LOG: Call = Call {
    verb: "get",
    resource: "pods/log",
};

/// Whether an error means the API server could not be reached at all (refused,
/// unresolvable, TLS, timeout) rather than answered.
pub(crate) fn unreachable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_))
}

/// An API error as the job's error, naming the call.
pub(crate) fn api(call: Call, namespace: &str, e: &kube::Error) -> ComputeError {
    match e {
        kube::Error::Api(s) if s.code == 403 => ComputeError::Unavailable(format!(
            "forbidden by RBAC: the node may not {} {} in namespace {namespace} ({}); grant it that verb \
             (see hanzo-k8s-runtime's README for the Role)",
            call.verb,
            call.resource,
            s.message.trim()
        )),
        kube::Error::Api(s) if s.code == 401 => ComputeError::Unavailable(format!(
            "the API server refused the node's credentials ({} {}: {})",
            call.verb,
            call.resource,
            s.message.trim()
        )),
        kube::Error::Api(s) if s.code == 404 && call.resource == "jobs.batch" && call.verb == "create" => {
            ComputeError::Unavailable(format!(
                "namespace {namespace} does not exist ({}); create it or set [compute.kubernetes] namespace",
                s.message.trim()
            ))
        }
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => ComputeError::invalid(format!(
            "the API server rejected the {} ({})",
            call.resource,
            s.message.trim()
        )),
        kube::Error::Api(s) => ComputeError::internal(format!(
            "{} {} failed: {} {} ({})",
            call.verb,
            call.resource,
            s.code,
            s.reason,
            s.message.trim()
        )),
        e if unreachable(e) => ComputeError::Unavailable(format!(
            "no reachable Kubernetes API server ({}); check [compute.kubernetes] config_path/context and \
             `kubectl cluster-info`",
            describe(e)
        )),
        e => ComputeError::internal(format!("{} {} failed: {}", call.verb, call.resource, describe(e))),
    }
}

/// A kube error in one line, with its innermost cause (where "connection refused" is).
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = s.source();
    }
    text.lines().next().unwrap_or_default().to_string()
}
