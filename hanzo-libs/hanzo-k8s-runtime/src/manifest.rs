//! The Job a tool runs as: the "restricted" Pod Security profile, requests equal to
//! limits from the job's `ResourceLimits`, deadlines, a TTL, and the `hanzo.*` labels.
//! Pure functions, so the tests can validate every manifest against the official
//! schemas.

use crate::labels;
use hanzo_compute::config::KubernetesConfig;
use hanzo_compute::{ComputeError, Job, ResourceLimits};
use k8s_openapi::api::batch::v1::{Job as K8sJob, JobSpec as K8sJobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The tool's container name (attach and logs name it).
pub const CONTAINER: &str = "tool";

/// The smallest CPU limit given, so a job asking for a sliver of CPU still runs.
const MIN_MILLICPU: u64 = 10;

/// Seconds the kubelet waits between SIGTERM and SIGKILL when the node stops a tool: a
/// tool has nothing to save, and a short grace frees the slot quickly.
const GRACE_SECONDS: i64 = 2;

/// The Job's name for a job id: `hanzo-tool-` and the id reduced to a DNS label.
pub fn job_name(job_id: &str) -> String {
    let id: String = job_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    let id = id.trim_matches('-');
    format!("hanzo-tool-{}", if id.is_empty() { "x" } else { id })
}

/// `UID[:GID]`, numeric and not root (the restricted profile forbids root).
pub fn parse_user(user: &str) -> Result<(i64, Option<i64>), ComputeError> {
    let bad = |why: &str| ComputeError::invalid(format!("invalid user '{user}' for Kubernetes: {why}"));
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid: i64 = uid.parse().map_err(|_| bad("expected a numeric UID[:GID]"))?;
    let gid = gid
        .map(|g| g.parse::<i64>().map_err(|_| bad("expected a numeric UID[:GID]")))
        .transpose()?;
    if uid <= 0 || gid.is_some_and(|g| g < 0) {
        return Err(bad(
            "tool pods run under the restricted Pod Security profile, never as root",
        ));
    }
    Ok((uid, gid))
}

/// `Always | IfNotPresent | Never`, or an error naming the key.
pub fn pull_policy(value: &str) -> Result<&str, ComputeError> {
    match value {
        "Always" | "IfNotPresent" | "Never" => Ok(value),
        other => Err(ComputeError::invalid(format!(
            "compute.kubernetes.image_pull_policy: invalid value '{other}' (expected Always, IfNotPresent or Never)"
        ))),
    }
}

/// CPU in millicores for `cpu_shares` (1024 = one core), as the Docker runtime's quota.
pub fn millicpu(limits: &ResourceLimits) -> u64 {
    (u64::from(limits.cpu_shares) * 1000 / 1024).max(MIN_MILLICPU)
}

/// `activeDeadlineSeconds`: the job's timeout rounded up, plus the time a pod may take
/// to be scheduled and pull its image (the node's own deadline counts from the start
/// of the container; this one, the cluster's backstop, from the Job's creation).
pub fn active_deadline_seconds(limits: &ResourceLimits, config: &KubernetesConfig) -> i64 {
    let timeout = limits.timeout_ms.div_ceil(1000);
    i64::try_from(timeout.saturating_add(config.pod_start_timeout_seconds)).unwrap_or(i64::MAX)
}

pub(crate) fn check_image(image: &str) -> Result<(), ComputeError> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ComputeError::invalid(format!(
            "invalid image reference '{image}'"
        )));
    }
    if image.starts_with("sha256:") {
        return Err(ComputeError::invalid(format!(
            "'{image}' is a stored module; the k8s runtime runs container images (name[:tag][@sha256:digest])"
        )));
    }
    Ok(())
}

/// Refuses limits no container can run under.
pub(crate) fn check_limits(limits: &ResourceLimits) -> Result<(), ComputeError> {
    if limits.memory_mb < 6 {
        return Err(ComputeError::invalid(
            "memory_mb must be at least 6 for containers",
        ));
    }
    if limits.disk_mb == 0 {
        return Err(ComputeError::invalid("disk_mb must be at least 1 for containers"));
    }
    Ok(())
}

/// `base` followed by the caller's variables, whose names are checked.
pub(crate) fn env_vars(
    mut base: Vec<EnvVar>,
    env: &BTreeMap<String, String>,
) -> Result<Vec<EnvVar>, ComputeError> {
    for (k, v) in env {
        if k.is_empty() || k.contains('=') || k.chars().any(|c| c.is_control()) {
            return Err(ComputeError::invalid(format!("invalid env name '{k}'")));
        }
        base.push(EnvVar {
            name: k.clone(),
            value: Some(v.clone()),
            ..Default::default()
        });
    }
    Ok(base)
}

/// Requests equal limits: the pod is Guaranteed QoS, scheduled only where the memory
/// really is, and the last to be evicted under node pressure.
pub(crate) fn resources(limits: &ResourceLimits) -> ResourceRequirements {
    let amounts = BTreeMap::from([
        ("cpu".to_string(), Quantity(format!("{}m", millicpu(limits)))),
        ("memory".to_string(), Quantity(format!("{}Mi", limits.memory_mb))),
        (
            "ephemeral-storage".to_string(),
            Quantity(format!("{}Mi", limits.disk_mb)),
        ),
    ]);
    ResourceRequirements {
        limits: Some(amounts.clone()),
        requests: Some(amounts),
        ..Default::default()
    }
}

fn seccomp() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// The container half of the restricted Pod Security profile, plus a read-only root.
pub(crate) fn container_security(uid: i64, gid: Option<i64>) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: gid,
        read_only_root_filesystem: Some(true),
        seccomp_profile: Some(seccomp()),
        ..Default::default()
    }
}

/// The pod half of the restricted Pod Security profile.
pub(crate) fn pod_security(uid: i64, gid: Option<i64>) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: gid,
        seccomp_profile: Some(seccomp()),
        ..Default::default()
    }
}

/// The writable `/tmp` under the read-only root: an `emptyDir` of `disk_mb`.
pub(crate) fn tmp_volume(disk_mb: u64) -> Volume {
    Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: None,
            size_limit: Some(Quantity(format!("{disk_mb}Mi"))),
        }),
        ..Default::default()
    }
}

/// Where [`tmp_volume`] is mounted.
pub(crate) fn tmp_mount() -> VolumeMount {
    VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    }
}

/// The Job for one tool run.
pub fn tool_job(job: &Job, config: &KubernetesConfig, node_id: &str) -> Result<K8sJob, ComputeError> {
    let spec = &job.spec;
    let limits = &spec.limits;
    check_image(&spec.source)?;
    if !spec.mounts.is_empty() {
        return Err(ComputeError::invalid(
            "host mounts are not available on Kubernetes: the pod runs on another machine",
        ));
    }
    check_limits(limits)?;
    let policy = pull_policy(&config.image_pull_policy)?;
    let (uid, gid) = parse_user(spec.user.as_deref().unwrap_or(&config.default_user))?;

    let env = env_vars(
        vec![
            EnvVar {
                name: "HANZO_FUNCTION".into(),
                value: Some(spec.function_or_default().to_string()),
                ..Default::default()
            },
            EnvVar {
                name: "HANZO_JOB_ID".into(),
                value: Some(job.tool_job_id().to_string()),
                ..Default::default()
            },
        ],
        &spec.env,
    )?;
    let container = Container {
        name: CONTAINER.into(),
        image: Some(spec.source.clone()),
        image_pull_policy: Some(policy.to_string()),
        env: Some(env),
        // The stdio contract over attach: stdin stays open until the node has attached
        // and written the params, and closes for good when the node closes it.
        stdin: Some(true),
        stdin_once: Some(true),
        tty: Some(false),
        resources: Some(resources(limits)),
        security_context: Some(container_security(uid, gid)),
        volume_mounts: Some(vec![tmp_mount()]),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let labels = labels::tool(node_id, &job.id);
    let annotations = labels::tool_annotations(node_id, &job.id);
    let pod = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".into()),
        service_account_name: (!config.service_account.is_empty()).then(|| config.service_account.clone()),
        // A tool must not hold credentials to the cluster that runs it.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(GRACE_SECONDS),
        security_context: Some(pod_security(uid, gid)),
        volumes: Some(vec![tmp_volume(limits.disk_mb)]),
        ..Default::default()
    };
    Ok(K8sJob {
        metadata: ObjectMeta {
            name: Some(job_name(&job.id)),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels.clone()),
            annotations: Some(annotations.clone()),
            ..Default::default()
        },
        spec: Some(K8sJobSpec {
            backoff_limit: Some(config.backoff_limit.max(0)),
            active_deadline_seconds: Some(active_deadline_seconds(limits, config)),
            ttl_seconds_after_finished: Some(config.ttl_seconds_after_finished.max(0)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanzo_compute::{JobSpec, RuntimeKind};

    fn job(tweak: impl FnOnce(&mut JobSpec)) -> Result<K8sJob, ComputeError> {
        let mut spec = JobSpec::new(RuntimeKind::K8s, "busybox:1.36");
        tweak(&mut spec);
        tool_job(&Job::new(spec), &KubernetesConfig::default(), "node")
    }

    #[test]
    fn the_pod_is_restricted_and_sized() {
        let j = job(|s| s.limits.timeout_ms = 1500).unwrap();
        let spec = j.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(2 + 300));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(vec!["ALL".to_string()])
        );
        assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
        let r = c.resources.as_ref().unwrap();
        assert_eq!(r.limits, r.requests);
        assert_eq!(r.limits.as_ref().unwrap()["memory"], Quantity("256Mi".into()));
        assert_eq!(r.limits.as_ref().unwrap()["cpu"], Quantity("1000m".into()));
        assert_eq!(
            (c.stdin, c.stdin_once, c.tty),
            (Some(true), Some(true), Some(false))
        );
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(job(|s| s.user = Some("0".into())).is_err());
        assert!(job(|s| s.user = Some("nobody".into())).is_err());
        assert!(job(|s| s.source = "sha256:abc".into()).is_err());
        assert!(job(|s| s.source = "a b".into()).is_err());
        assert!(job(|s| s.mounts = vec!["/tmp:/x".parse().unwrap()]).is_err());
        assert!(job(|s| s.limits.memory_mb = 1).is_err());
    }

    #[test]
    fn names_are_dns_labels() {
        assert_eq!(job_name("ABC_def"), "hanzo-tool-abc-def");
        assert!(job_name(&"a".repeat(100)).len() <= 63);
    }
}
