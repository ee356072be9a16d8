//! Long-running services (the seed's `deploy_service`): one spec shared by the Docker
//! and Kubernetes runtimes, so a service moves between them by changing one word.

use crate::{ComputeError, Network, ResourceLimits, RuntimeKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a service restarts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whenever a replica stops (the default).
    #[default]
    Always,
    /// Restart only after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

/// A command the runtime runs inside a replica to decide whether it is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The command and its arguments (exit 0 = healthy).
    pub command: Vec<String>,
    /// Time between checks.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// How long one check may take.
    #[serde(default = "default_check_timeout")]
    pub timeout_ms: u64,
    /// Failures in a row before the replica is unhealthy.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_interval() -> u64 {
    5_000
}
fn default_check_timeout() -> u64 {
    2_000
}
fn default_retries() -> u32 {
    3
}

/// A long-running service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// The service's name: lower-case letters, digits and '-', at most 40 characters.
    pub name: String,
    /// The image reference.
    pub image: String,
    /// How many replicas to run.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Container ports to publish (TCP).
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Limits per replica (the timeout does not apply to services).
    #[serde(default)]
    pub limits: ResourceLimits,
    /// A health check, if any.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
    /// The restart policy.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Network access; services answer on ports, so it defaults to `full`.
    #[serde(default = "full")]
    pub network: Network,
    /// Overrides the image's command.
    #[serde(default)]
    pub command: Option<Vec<String>>,
    /// The user to run as; `None` means an unprivileged one.
    #[serde(default)]
    pub user: Option<String>,
    /// A DNS name to route HTTP for (`app.example.com`): an Ingress to the first port on
    /// Kubernetes; the Docker runtime refuses it (it has no ingress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

fn one() -> u32 {
    1
}

fn full() -> Network {
    Network::Full
}

/// Most replicas a service may ask for on one node.
pub const MAX_REPLICAS: u32 = 64;

impl ServiceSpec {
    /// A one-replica service with defaults.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        ServiceSpec {
            name: name.into(),
            image: image.into(),
            replicas: 1,
            ports: Vec::new(),
            env: BTreeMap::new(),
            limits: ResourceLimits::default(),
            health_check: None,
            restart: RestartPolicy::Always,
            network: Network::Full,
            command: None,
            user: None,
            host: None,
        }
    }

    /// Rejects names and counts no runtime could honour.
    pub fn validate(&self) -> Result<(), ComputeError> {
        validate_name(&self.name)?;
        if self.replicas > MAX_REPLICAS {
            return Err(ComputeError::invalid(format!(
                "replicas {} is above the limit of {MAX_REPLICAS}",
                self.replicas
            )));
        }
        if self.ports.contains(&0) {
            return Err(ComputeError::invalid("port 0 is not a port"));
        }
        if self.ports.len() > MAX_PORTS {
            return Err(ComputeError::invalid(format!(
                "ports: {} ports is above the limit of {MAX_PORTS}",
                self.ports.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(p) = self.ports.iter().find(|p| !seen.insert(**p)) {
            return Err(ComputeError::invalid(format!("ports: {p} is listed twice")));
        }
        for key in self.env.keys() {
            // `KEY=VALUE` is how a container receives it: a key with '=' would smuggle
            // another variable in.
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(ComputeError::invalid(format!(
                    "env: invalid variable name '{key}'"
                )));
            }
        }
        if let Some(h) = &self.health_check {
            if h.command.is_empty() {
                return Err(ComputeError::invalid("health_check.command: empty"));
            }
            for (what, ms) in [("interval_ms", h.interval_ms), ("timeout_ms", h.timeout_ms)] {
                if !(1..=MAX_CHECK_MS).contains(&ms) {
                    return Err(ComputeError::invalid(format!(
                        "health_check.{what}: {ms} is not from 1 to {MAX_CHECK_MS}"
                    )));
                }
            }
            if h.retries > MAX_CHECK_RETRIES {
                return Err(ComputeError::invalid(format!(
                    "health_check.retries: {} is above the limit of {MAX_CHECK_RETRIES}",
                    h.retries
                )));
            }
        }
        self.limits.validate()
    }
}

/// Most ports one service may publish.
pub const MAX_PORTS: usize = 16;
/// Longest health-check interval or timeout, in milliseconds (an hour).
pub const MAX_CHECK_MS: u64 = 3_600_000;
/// Most failed health checks in a row before a replica is unhealthy.
pub const MAX_CHECK_RETRIES: u32 = 100;

/// A service name: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 40 characters (it becomes
/// part of container and Kubernetes object names).
pub fn validate_name(name: &str) -> Result<(), ComputeError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ComputeError::invalid(format!(
            "invalid service name '{name}' (lower-case letters, digits and '-', at most 40)"
        )))
    }
}

/// One replica of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Replica {
    /// The runtime's id for it (container id, pod name).
    pub id: String,
    /// `running`, `restarting`, `exited`, ...
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`, or `none` without a health check.
    pub health: String,
    /// Where its published ports answer (`127.0.0.1:49153`).
    pub endpoints: Vec<String>,
}

/// A service as the runtime sees it now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServiceStatus {
    /// The service's name.
    pub name: String,
    /// The runtime it runs on.
    pub runtime: RuntimeKind,
    /// The spec it was deployed with.
    pub spec: ServiceSpec,
    /// Replicas asked for.
    pub replicas_desired: u32,
    /// Replicas running now.
    pub replicas_running: u32,
    /// Every endpoint of every replica.
    pub endpoints: Vec<String>,
    /// Each replica.
    pub replicas: Vec<Replica>,
}

/// A runtime that can run long-running services.
#[async_trait::async_trait]
pub trait ServiceRuntime: Send + Sync {
    /// Which runtime this is.
    fn kind(&self) -> RuntimeKind;
    /// Deploys (or redeploys) a service and returns its status with its endpoints.
    async fn deploy(&self, spec: &ServiceSpec) -> Result<ServiceStatus, ComputeError>;
    /// Every service of this node.
    async fn list(&self) -> Result<Vec<ServiceStatus>, ComputeError>;
    /// One service; `InvalidInput` when there is none of that name.
    async fn inspect(&self, name: &str) -> Result<ServiceStatus, ComputeError>;
    /// Changes the replica count.
    async fn scale(&self, name: &str, replicas: u32) -> Result<ServiceStatus, ComputeError>;
    /// Removes the service and every replica.
    async fn remove(&self, name: &str) -> Result<(), ComputeError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_spec_parses_with_defaults() {
        let s: ServiceSpec =
            serde_json::from_str(r#"{"name":"web","image":"web:1","ports":[8080]}"#).unwrap();
        assert_eq!(s.replicas, 1);
        assert_eq!(s.restart, RestartPolicy::Always);
        assert_eq!(s.network, Network::Full);
        assert_eq!(s.host, None);
        s.validate().unwrap();
        // Absent stays absent, so specs stored by older nodes read the same.
        assert!(!serde_json::to_string(&s).unwrap().contains("host"));
    }

    #[test]
    fn ports_env_and_health_checks_are_bounded() {
        let ok = ServiceSpec::new("web", "web:1");
        let bad = |f: &dyn Fn(&mut ServiceSpec)| {
            let mut s = ok.clone();
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(bad(&|s| s.ports = (1..=17).collect()).contains("ports"));
        assert!(bad(&|s| s.ports = vec![80, 80]).contains("twice"));
        assert!(
            bad(&|s| {
                s.env.insert("A=B".into(), "C".into());
            })
            .contains("env")
        );
        let check = |interval_ms, retries| HealthCheck {
            command: vec!["true".into()],
            interval_ms,
            timeout_ms: 1000,
            retries,
        };
        assert!(bad(&|s| s.health_check = Some(check(10_000_000_000_000, 3))).contains("interval_ms"));
        assert!(bad(&|s| s.health_check = Some(check(0, 3))).contains("interval_ms"));
        assert!(bad(&|s| s.health_check = Some(check(1000, 1000))).contains("retries"));
        let mut fine = ok.clone();
        fine.ports = (1..=16).collect();
        fine.health_check = Some(check(MAX_CHECK_MS, MAX_CHECK_RETRIES));
        fine.validate().unwrap();
    }

    #[test]
    fn bad_names_and_counts_are_refused() {
        for n in ["", "Web", "-web", "web-", "a_b", &"x".repeat(41)] {
            assert!(validate_name(n).is_err(), "{n}");
        }
        let mut s = ServiceSpec::new("web", "web:1");
        s.replicas = 1000;
        assert!(s.validate().is_err());
    }
}
