//! Long-running services on Kubernetes, from the same [`ServiceSpec`] as the Docker
//! runtime: a Deployment (the replicas), a ClusterIP Service (its ports) and, when the
//! spec names a host, an Ingress, all named `hanzo-svc-<name>` and labelled `hanzo.*`.
//! The Deployment carries the spec as an annotation, so the cluster itself is the record
//! of what is deployed (as the Docker runtime's labels are); Service and Ingress are
//! owned by the Deployment, so the garbage collector removes them with it even when the
//! node dies half-way through a removal.
//!
//! The manifest builders are pure functions (public, so the tests validate each one
//! against the official schemas); [`ServiceRuntime`] for [`KubernetesRuntime`] applies
//! them with server-side apply.

use crate::errors::{self, Call};
use crate::{KubernetesRuntime, labels, manifest};
use hanzo_compute::config::KubernetesConfig;
use hanzo_compute::service::{
    HealthCheck, MAX_REPLICAS, Replica, RestartPolicy, ServiceRuntime, ServiceSpec, ServiceStatus,
    validate_name,
};
use hanzo_compute::{ComputeError, Network, RuntimeKind};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, Pod, PodSpec, PodTemplateSpec, Probe, Service, ServicePort,
    ServiceSpec as K8sServiceSpec,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use std::collections::BTreeMap;

/// The service's container name.
pub const CONTAINER: &str = "service";
/// The field manager of the node's server-side applies.
pub const FIELD_MANAGER: &str = "hanzo-node";
/// The Deployment annotation holding the spec as JSON.
pub const SPEC_ANNOTATION: &str = "hanzo.spec";

const GET_DEPLOYMENT: Call = Call {
    verb: "get",
    resource: "deployments.apps",
};
const LIST_DEPLOYMENTS: Call = Call {
    verb: "list",
    resource: "deployments.apps",
};
// Server-side apply is authorized as `patch`, and also as `create` when the object
// does not exist yet: the message names both.
const APPLY_DEPLOYMENT: Call = Call {
    verb: "create/patch",
    resource: "deployments.apps",
};
const PATCH_DEPLOYMENT: Call = Call {
    verb: "patch",
    resource: "deployments.apps",
};
const DELETE_DEPLOYMENT: Call = Call {
    verb: "delete",
    resource: "deployments.apps",
};
const APPLY_SERVICE: Call = Call {
    verb: "create/patch",
    resource: "services",
};
const DELETE_SERVICE: Call = Call {
    verb: "delete",
    resource: "services",
};
const APPLY_INGRESS: Call = Call {
    verb: "create/patch",
    resource: "ingresses.networking.k8s.io",
};
const DELETE_INGRESS: Call = Call {
    verb: "delete",
    resource: "ingresses.networking.k8s.io",
};
const LIST_PODS: Call = Call {
    verb: "list",
    resource: "pods",
};

/// The name of a service's Deployment, Service and Ingress. The prefix keeps the node's
/// objects apart from others in the namespace and makes every name a valid Service name
/// (DNS-1035: it must start with a letter; a service name may start with a digit).
pub fn object_name(service: &str) -> String {
    format!("hanzo-svc-{service}")
}

/// The in-cluster endpoints of a service in `namespace`: `NAME.NAMESPACE.svc:PORT` per
/// port, then `http://HOST/` when an Ingress routes a host to it.
pub fn endpoints(spec: &ServiceSpec, namespace: &str) -> Vec<String> {
    let name = object_name(&spec.name);
    let mut out: Vec<String> = spec
        .ports
        .iter()
        .map(|p| format!("{name}.{namespace}.svc:{p}"))
        .collect();
    if let Some(host) = &spec.host {
        out.push(format!("http://{host}/"));
    }
    out
}

/// Everything in the spec that a Deployment cannot honour, refused before any request.
pub fn check(spec: &ServiceSpec) -> Result<(), ComputeError> {
    spec.validate()?;
    if spec.replicas == 0 {
        return Err(ComputeError::invalid("a service needs at least one replica"));
    }
    // A Deployment's pods only allow restartPolicy Always: Kubernetes restarts every
    // replica that stops. Mapping on-failure or never to Always would quietly restart
    // what the spec says must stay down, so they are refused.
    match spec.restart {
        RestartPolicy::Always => {}
        other => {
            let word = match other {
                RestartPolicy::OnFailure => "on-failure",
                _ => "never",
            };
            return Err(ComputeError::invalid(format!(
                "restart {word} is not possible on Kubernetes: a Deployment restarts every replica that \
                 stops (restartPolicy Always); deploy with restart always, or run one-off work as a tool job"
            )));
        }
    }
    // Pods get the cluster network; this runtime creates no NetworkPolicy, so `none`
    // could not be kept and is refused rather than ignored.
    if spec.network == Network::None {
        return Err(ComputeError::invalid(
            "network none is not enforced by the k8s runtime (pods get the cluster network); \
             deploy with network full, or isolate the namespace with a NetworkPolicy",
        ));
    }
    manifest::check_image(&spec.image)?;
    manifest::check_limits(&spec.limits)?;
    if let Some(user) = &spec.user {
        manifest::parse_user(user)?;
    }
    if let Some(h) = &spec.health_check
        && h.command.is_empty()
    {
        return Err(ComputeError::invalid("a health check needs a command"));
    }
    if let Some(host) = &spec.host {
        check_host(host)?;
        if spec.ports.is_empty() {
            return Err(ComputeError::invalid(format!(
                "host '{host}' needs a port to route to: add one to ports"
            )));
        }
    }
    Ok(())
}

/// An Ingress host: a lower-case DNS name (RFC 1123), optionally `*.` a wildcard; no
/// port, no scheme, no IP address.
fn check_host(host: &str) -> Result<(), ComputeError> {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let labels: Vec<&str> = name.split('.').collect();
    let numeric = labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit()));
    if host.len() <= 253 && labels.iter().all(|l| label_ok(l)) && !numeric {
        Ok(())
    } else {
        Err(ComputeError::invalid(format!(
            "invalid host '{host}' (a lower-case DNS name such as app.example.com, no scheme or port)"
        )))
    }
}

/// Whole seconds for a probe field: `ms` rounded up, at least 1.
fn probe_seconds(ms: u64) -> i32 {
    i32::try_from(ms.div_ceil(1000).max(1)).unwrap_or(i32::MAX)
}

/// The health check as a probe: every `interval_ms`, `timeout_ms` each, `retries`
/// failures in a row.
fn probe(h: &HealthCheck) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(h.command.clone()),
        }),
        period_seconds: Some(probe_seconds(h.interval_ms)),
        timeout_seconds: Some(probe_seconds(h.timeout_ms)),
        failure_threshold: Some(i32::try_from(h.retries.max(1)).unwrap_or(i32::MAX)),
        success_threshold: Some(1),
        ..Default::default()
    }
}

/// The service's Deployment.
pub fn deployment(
    spec: &ServiceSpec,
    config: &KubernetesConfig,
    node_id: &str,
) -> Result<Deployment, ComputeError> {
    check(spec)?;
    let policy = manifest::pull_policy(&config.image_pull_policy)?;
    let (uid, gid) = manifest::parse_user(spec.user.as_deref().unwrap_or(&config.default_user))?;
    let env = manifest::env_vars(Vec::new(), &spec.env)?;
    let labels = labels::service(node_id, &spec.name);
    let spec_json = serde_json::to_string(spec).map_err(ComputeError::internal)?;
    let container = Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some(policy.to_string()),
        // `command` replaces the image's CMD, as it does on Docker (`args` in
        // Kubernetes' terms); the image's ENTRYPOINT stays, so a service moves unchanged.
        args: spec.command.clone(),
        env: (!env.is_empty()).then_some(env),
        ports: (!spec.ports.is_empty()).then(|| {
            spec.ports
                .iter()
                .map(|p| ContainerPort {
                    container_port: i32::from(*p),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                })
                .collect()
        }),
        resources: Some(manifest::resources(&spec.limits)),
        security_context: Some(manifest::container_security(uid, gid)),
        volume_mounts: Some(vec![manifest::tmp_mount()]),
        // Docker marks a replica that fails its check `retries` times unhealthy; here it
        // also leaves the Service's endpoints (readiness) and is restarted (liveness).
        liveness_probe: spec.health_check.as_ref().map(probe),
        readiness_probe: spec.health_check.as_ref().map(probe),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Always".into()),
        service_account_name: (!config.service_account.is_empty()).then(|| config.service_account.clone()),
        // A service must not hold credentials to the cluster that runs it.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(manifest::pod_security(uid, gid)),
        volumes: Some(vec![manifest::tmp_volume(spec.limits.disk_mb)]),
        ..Default::default()
    };
    Ok(Deployment {
        metadata: ObjectMeta {
            name: Some(object_name(&spec.name)),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([
                (labels::NODE.to_string(), node_id.to_string()),
                (SPEC_ANNOTATION.to_string(), spec_json),
            ])),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(spec.replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    })
}

/// The owner reference to the applied Deployment (`uid` from the API server's answer).
pub fn owned_by(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        block_owner_deletion: None,
    }
}

fn meta(
    spec: &ServiceSpec,
    config: &KubernetesConfig,
    node_id: &str,
    owner: Option<OwnerReference>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name(&spec.name)),
        namespace: Some(config.namespace.clone()),
        labels: Some(labels::service(node_id, &spec.name)),
        annotations: Some(BTreeMap::from([(labels::NODE.to_string(), node_id.to_string())])),
        owner_references: owner.map(|o| vec![o]),
        ..Default::default()
    }
}

/// The ClusterIP Service of the service's ports, `None` without ports.
pub fn service(
    spec: &ServiceSpec,
    config: &KubernetesConfig,
    node_id: &str,
    owner: Option<OwnerReference>,
) -> Result<Option<Service>, ComputeError> {
    check(spec)?;
    if spec.ports.is_empty() {
        return Ok(None);
    }
    Ok(Some(Service {
        metadata: meta(spec, config, node_id, owner),
        spec: Some(K8sServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(labels::service(node_id, &spec.name)),
            ports: Some(
                spec.ports
                    .iter()
                    .map(|p| ServicePort {
                        // Names are required once there are several ports.
                        name: Some(format!("tcp-{p}")),
                        port: i32::from(*p),
                        target_port: Some(IntOrString::Int(i32::from(*p))),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }))
}

/// The Ingress routing `host` to the Service's first port, `None` without a host. No
/// ingress class is named: the cluster's default IngressClass takes it.
pub fn ingress(
    spec: &ServiceSpec,
    config: &KubernetesConfig,
    node_id: &str,
    owner: Option<OwnerReference>,
) -> Result<Option<Ingress>, ComputeError> {
    check(spec)?;
    let (Some(host), Some(port)) = (&spec.host, spec.ports.first()) else {
        return Ok(None);
    };
    Ok(Some(Ingress {
        metadata: meta(spec, config, node_id, owner),
        spec: Some(IngressSpec {
            rules: Some(vec![IngressRule {
                host: Some(host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: object_name(&spec.name),
                                port: Some(ServiceBackendPort {
                                    number: Some(i32::from(*port)),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..Default::default()
        }),
        status: None,
    }))
}

/// An API error of a service call. A 404 on an apply means the namespace is missing
/// (server-side apply creates the object itself).
fn api(call: Call, ns: &str, e: &kube::Error) -> ComputeError {
    match e {
        kube::Error::Api(s) if s.code == 404 && call.verb == APPLY_DEPLOYMENT.verb => {
            ComputeError::Unavailable(format!(
                "namespace {ns} does not exist ({}); create it or set [compute.kubernetes] namespace",
                s.message.trim()
            ))
        }
        e => errors::api(call, ns, e),
    }
}

fn no_service(name: &str) -> ComputeError {
    ComputeError::invalid(format!("no service named '{name}'"))
}

/// Seconds since `t` (0 for a time in the future).
fn seconds_since(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> i64 {
    (k8s_openapi::jiff::Timestamp::now().as_second() - t.0.as_second()).max(0)
}

/// One pod as a [`Replica`].
fn replica(pod: &Pod, spec: &ServiceSpec) -> Replica {
    let status = pod.status.as_ref();
    let container = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER));
    let state = container.and_then(|c| c.state.as_ref());
    let running = state.and_then(|s| s.running.as_ref());
    let ready = container.is_some_and(|c| c.ready);
    let state_word = if pod.metadata.deletion_timestamp.is_some() {
        "terminating".to_string()
    } else if running.is_some() {
        "running".to_string()
    } else if let Some(w) = state.and_then(|s| s.waiting.as_ref()) {
        // The kubelet's reason says more than any word of ours: `ContainerCreating`,
        // `CrashLoopBackOff`, `ImagePullBackOff`, ...
        w.reason.clone().unwrap_or_else(|| "waiting".into())
    } else if state.and_then(|s| s.terminated.as_ref()).is_some() {
        "exited".to_string()
    } else {
        status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "unknown".into())
            .to_ascii_lowercase()
    };
    let health = match &spec.health_check {
        None => "none",
        Some(_) if ready => "healthy",
        // As Docker: `starting` until the check could have failed `retries` times.
        Some(h) => match running.and_then(|r| r.started_at.as_ref()) {
            Some(t)
                if seconds_since(t)
                    < i64::from(probe_seconds(h.interval_ms)) * i64::from(h.retries.max(1)) =>
            {
                "starting"
            }
            Some(_) => "unhealthy",
            None if state_word == "ContainerCreating"
                || state_word == "PodInitializing"
                || state.is_none() =>
            {
                "starting"
            }
            None => "unhealthy",
        },
    };
    let endpoints = status
        .and_then(|s| s.pod_ip.as_ref())
        .map(|ip| spec.ports.iter().map(|p| format!("{ip}:{p}")).collect())
        .unwrap_or_default();
    Replica {
        id: pod.metadata.name.clone().unwrap_or_default(),
        state: state_word,
        health: health.to_string(),
        endpoints,
    }
}

impl KubernetesRuntime {
    fn ns(&self) -> &str {
        &self.config.namespace
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), self.ns())
    }

    /// This node's Deployment of service `name`, if any.
    async fn deployment_of(&self, name: &str) -> Result<Option<Deployment>, ComputeError> {
        let found = self
            .deployments()
            .get_opt(&object_name(name))
            .await
            .map_err(|e| api(GET_DEPLOYMENT, self.ns(), &e))?;
        Ok(found.filter(|d| labels::is_service_of(d.metadata.labels.as_ref(), &self.node_id, name)))
    }

    /// The status of the service behind `d`: its spec (from the annotation, with the
    /// Deployment's replica count), its pods, its endpoints.
    async fn status_of(&self, d: &Deployment) -> Result<ServiceStatus, ComputeError> {
        let name = d
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::SERVICE))
            .cloned()
            .unwrap_or_default();
        let mut spec: ServiceSpec = d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SPEC_ANNOTATION))
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| {
                ComputeError::internal(format!("service '{name}' has lost its spec annotation"))
            })?;
        // A scale changes the Deployment, not the annotation: the Deployment is right.
        if let Some(n) = d.spec.as_ref().and_then(|s| s.replicas) {
            spec.replicas = u32::try_from(n).unwrap_or(0);
        }
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), self.ns());
        let mut list = pods
            .list(&ListParams::default().labels(&labels::service_selector(&self.node_id, &spec.name)))
            .await
            .map_err(|e| api(LIST_PODS, self.ns(), &e))?
            .items;
        list.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let replicas: Vec<Replica> = list.iter().map(|p| replica(p, &spec)).collect();
        Ok(ServiceStatus {
            name: spec.name.clone(),
            runtime: RuntimeKind::K8s,
            replicas_desired: spec.replicas,
            replicas_running: replicas.iter().filter(|r| r.state == "running").count() as u32,
            endpoints: endpoints(&spec, self.ns()),
            replicas,
            spec,
        })
    }

    /// Deletes one object, `Background` propagation; absent is fine.
    async fn delete_object<K>(&self, call: Call, name: &str) -> Result<(), ComputeError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + k8s_openapi::serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let objects: Api<K> = Api::namespaced(self.client.clone(), self.ns());
        match objects.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api(call, self.ns(), &e)),
        }
    }

    /// Applies the Service and Ingress of `spec` (or deletes those it no longer has, on
    /// a redeploy).
    async fn apply_rest(
        &self,
        spec: &ServiceSpec,
        owner: OwnerReference,
        redeploy: bool,
    ) -> Result<(), ComputeError> {
        let name = object_name(&spec.name);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        match service(spec, &self.config, &self.node_id, Some(owner.clone()))? {
            Some(svc) => {
                let services: Api<Service> = Api::namespaced(self.client.clone(), self.ns());
                services
                    .patch(&name, &params, &Patch::Apply(&svc))
                    .await
                    .map_err(|e| api(APPLY_SERVICE, self.ns(), &e))?;
            }
            None if redeploy => self.delete_object::<Service>(DELETE_SERVICE, &name).await?,
            None => {}
        }
        match ingress(spec, &self.config, &self.node_id, Some(owner))? {
            Some(ing) => {
                let ingresses: Api<Ingress> = Api::namespaced(self.client.clone(), self.ns());
                ingresses
                    .patch(&name, &params, &Patch::Apply(&ing))
                    .await
                    .map_err(|e| api(APPLY_INGRESS, self.ns(), &e))?;
            }
            None if redeploy => self.delete_object::<Ingress>(DELETE_INGRESS, &name).await?,
            None => {}
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ServiceRuntime for KubernetesRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::K8s
    }

    /// Server-side applies the Deployment, then the Service and Ingress (owned by the
    /// Deployment), and returns at once: the status shows the pods as they are, the
    /// endpoints as they will answer. A redeploy applies over the same objects (a
    /// rolling update of the pods) and deletes a Service or Ingress the spec dropped.
    async fn deploy(&self, spec: &ServiceSpec) -> Result<ServiceStatus, ComputeError> {
        // Every manifest is built before the first request, so bad input touches nothing.
        let manifest = deployment(spec, &self.config, &self.node_id)?;
        let name = object_name(&spec.name);
        let existing = self
            .deployments()
            .get_opt(&name)
            .await
            .map_err(|e| api(GET_DEPLOYMENT, self.ns(), &e))?;
        if let Some(d) = &existing
            && !labels::is_service_of(d.metadata.labels.as_ref(), &self.node_id, &spec.name)
        {
            // Server-side apply with force would take it over: never touch what another
            // node (or a person) deployed.
            return Err(ComputeError::invalid(format!(
                "a Deployment {name} already exists in namespace {} and is not this node's service '{}'; \
                 choose another name",
                self.ns(),
                spec.name
            )));
        }
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = self
            .deployments()
            .patch(&name, &params, &Patch::Apply(&manifest))
            .await
            .map_err(|e| api(APPLY_DEPLOYMENT, self.ns(), &e))?;
        let uid = applied.metadata.uid.clone().unwrap_or_default();
        if let Err(e) = self
            .apply_rest(spec, owned_by(&name, &uid), existing.is_some())
            .await
        {
            // A new service that did not come up whole is removed again (its Service and
            // Ingress follow the Deployment); a redeploy keeps what runs.
            if existing.is_none() {
                let _ = self.delete_object::<Deployment>(DELETE_DEPLOYMENT, &name).await;
            }
            return Err(e);
        }
        self.status_of(&applied).await
    }

    async fn list(&self) -> Result<Vec<ServiceStatus>, ComputeError> {
        let mut found = self
            .deployments()
            .list(&ListParams::default().labels(&labels::services_selector(&self.node_id)))
            .await
            .map_err(|e| api(LIST_DEPLOYMENTS, self.ns(), &e))?
            .items;
        found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let mut out = Vec::new();
        for d in found.iter().filter(|d| {
            d.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(labels::SERVICE))
        }) {
            out.push(self.status_of(d).await?);
        }
        Ok(out)
    }

    async fn inspect(&self, name: &str) -> Result<ServiceStatus, ComputeError> {
        validate_name(name)?;
        match self.deployment_of(name).await? {
            Some(d) => self.status_of(&d).await,
            None => Err(no_service(name)),
        }
    }

    async fn scale(&self, name: &str, replicas: u32) -> Result<ServiceStatus, ComputeError> {
        validate_name(name)?;
        if replicas == 0 {
            return Err(ComputeError::invalid(
                "scale to at least 1 replica, or remove the service",
            ));
        }
        if replicas > MAX_REPLICAS {
            return Err(ComputeError::invalid(format!(
                "replicas {replicas} is above the limit of {MAX_REPLICAS}"
            )));
        }
        if self.deployment_of(name).await?.is_none() {
            return Err(no_service(name));
        }
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        let scaled = self
            .deployments()
            .patch(&object_name(name), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| match &e {
                kube::Error::Api(s) if s.code == 404 => no_service(name),
                e => errors::api(PATCH_DEPLOYMENT, self.ns(), e),
            })?;
        self.status_of(&scaled).await
    }

    /// Deletes the Ingress, the Service, then the Deployment (`Background`: the garbage
    /// collector removes its ReplicaSets and pods right after).
    async fn remove(&self, name: &str) -> Result<(), ComputeError> {
        validate_name(name)?;
        if self.deployment_of(name).await?.is_none() {
            return Err(no_service(name));
        }
        let object = object_name(name);
        self.delete_object::<Ingress>(DELETE_INGRESS, &object).await?;
        self.delete_object::<Service>(DELETE_SERVICE, &object).await?;
        self.delete_object::<Deployment>(DELETE_DEPLOYMENT, &object).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(tweak: impl FnOnce(&mut ServiceSpec)) -> ServiceSpec {
        let mut s = ServiceSpec::new("web", "busybox:1.36");
        s.ports = vec![8080];
        tweak(&mut s);
        s
    }

    #[test]
    fn what_a_deployment_cannot_do_is_refused() {
        let refused = |s: ServiceSpec| check(&s).unwrap_err().to_string();
        assert!(refused(spec(|s| s.restart = RestartPolicy::OnFailure)).contains("restart on-failure"));
        assert!(refused(spec(|s| s.restart = RestartPolicy::Never)).contains("restart never"));
        assert!(refused(spec(|s| s.network = Network::None)).contains("network none"));
        assert!(refused(spec(|s| s.replicas = 0)).contains("at least one replica"));
        assert!(refused(spec(|s| s.user = Some("0".into()))).contains("never as root"));
        for host in ["Web.example", "a..b", "http://x", "x:80", "-a.b", "1.2.3.4", ""] {
            assert!(
                refused(spec(|s| s.host = Some(host.into()))).contains("invalid host"),
                "{host}"
            );
        }
        assert!(
            refused(spec(|s| {
                s.ports.clear();
                s.host = Some("a.example".into())
            }))
            .contains("needs a port")
        );
        check(&spec(|s| s.host = Some("*.apps.example.com".into()))).unwrap();
    }

    #[test]
    fn probes_round_up_to_seconds() {
        let h = HealthCheck {
            command: vec!["true".into()],
            interval_ms: 1500,
            timeout_ms: 1,
            retries: 0,
        };
        let p = probe(&h);
        assert_eq!(
            (p.period_seconds, p.timeout_seconds, p.failure_threshold),
            (Some(2), Some(1), Some(1))
        );
    }

    #[test]
    fn endpoints_name_the_service_and_the_host() {
        let s = spec(|s| {
            s.ports = vec![80, 443];
            s.host = Some("app.example.com".into())
        });
        assert_eq!(
            endpoints(&s, "ns"),
            [
                "hanzo-svc-web.ns.svc:80",
                "hanzo-svc-web.ns.svc:443",
                "http://app.example.com/"
            ]
        );
    }
}
