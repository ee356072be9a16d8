//! Long-running services on Docker: each replica is a hardened container named
//! `hanzo-svc-<name>-<index>`, labelled with the service and carrying its spec, so
//! the daemon itself is the record of what is deployed (no state file to lose).

use crate::image::ImageRef;
use crate::{DockerRuntime, containers, describe, hardening, labels};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, HealthConfig, PortBinding, RestartPolicy as DockerRestart,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use hanzo_compute::service::{Replica, RestartPolicy, ServiceRuntime, ServiceSpec, ServiceStatus};
use hanzo_compute::{ComputeError, Network, RuntimeKind};
use std::collections::{BTreeMap, HashMap};

/// Label holding the service's spec as JSON.
const SPEC_LABEL: &str = "hanzo.spec";
/// Label holding the replica's index.
const INDEX_LABEL: &str = "hanzo.replica";

fn container_name(service: &str, index: u32) -> String {
    format!("hanzo-svc-{service}-{index}")
}

impl DockerRuntime {
    /// The service's replica containers, by index.
    async fn replicas_of(
        &self,
        docker: &Docker,
        name: &str,
    ) -> Result<BTreeMap<u32, ContainerSummary>, ComputeError> {
        let list = containers::labelled(
            docker,
            vec![
                format!("{}=service", labels::KIND),
                format!("{}={name}", labels::SERVICE),
                format!("{}={}", labels::NODE, self.options.node_id),
            ],
        )
        .await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let index = c.labels.as_ref()?.get(INDEX_LABEL)?.parse().ok()?;
                Some((index, c))
            })
            .collect())
    }

    fn replica_body(
        &self,
        spec: &ServiceSpec,
        image: &ImageRef,
        index: u32,
    ) -> Result<ContainerCreateBody, ComputeError> {
        let config = &self.options.config;
        let mut host = hardening::host_config(&spec.limits, spec.network, config.pids_limit)?;
        // Docker restarts a crashed replica itself; `inspect` also revives one that a
        // daemon restart or a manual kill left stopped.
        host.restart_policy = Some(DockerRestart {
            name: Some(match spec.restart {
                RestartPolicy::Always => RestartPolicyNameEnum::UNLESS_STOPPED,
                RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
                RestartPolicy::Never => RestartPolicyNameEnum::NO,
            }),
            maximum_retry_count: None,
        });
        if !spec.ports.is_empty() {
            if spec.network == Network::None {
                return Err(ComputeError::invalid(
                    "a service that publishes ports needs network full",
                ));
            }
            // Each replica gets its own host port on the publish address, chosen once at
            // creation, so replicas never collide and an endpoint survives a restart.
            // The probing listeners stay bound until every port is chosen, so that two
            // ports of one replica cannot be given the same free port.
            let mut bindings = HashMap::new();
            let mut held = Vec::new();
            for p in &spec.ports {
                let (listener, port) = free_port(&config.publish_address)?;
                held.push(listener);
                let binding = PortBinding {
                    host_ip: Some(config.publish_address.clone()),
                    host_port: Some(port.to_string()),
                };
                bindings.insert(format!("{p}/tcp"), Some(vec![binding]));
            }
            drop(held);
            host.port_bindings = Some(bindings);
        }
        let spec_json = serde_json::to_string(spec).map_err(ComputeError::internal)?;
        let labels = HashMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::NODE.to_string(), self.options.node_id.clone()),
            (labels::KIND.to_string(), "service".to_string()),
            (labels::SERVICE.to_string(), spec.name.clone()),
            (INDEX_LABEL.to_string(), index.to_string()),
            (SPEC_LABEL.to_string(), spec_json),
        ]);
        let healthcheck = spec.health_check.as_ref().map(|h| {
            let mut test = vec!["CMD".to_string()];
            test.extend(h.command.iter().cloned());
            HealthConfig {
                test: Some(test),
                // Nanoseconds, saturating: a huge interval must not wrap negative.
                interval: Some(i64::try_from(h.interval_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
                timeout: Some(i64::try_from(h.timeout_ms.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
                retries: Some(h.retries as i64),
                ..Default::default()
            }
        });
        Ok(ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: spec.command.clone(),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            user: Some(spec.user.clone().unwrap_or_else(|| config.default_user.clone())),
            labels: Some(labels),
            exposed_ports: (!spec.ports.is_empty())
                .then(|| spec.ports.iter().map(|p| format!("{p}/tcp")).collect()),
            healthcheck,
            host_config: Some(host),
            ..Default::default()
        })
    }

    async fn start_replica(
        &self,
        docker: &Docker,
        spec: &ServiceSpec,
        image: &ImageRef,
        index: u32,
    ) -> Result<(), ComputeError> {
        let body = self.replica_body(spec, image, index)?;
        let name = container_name(&spec.name, index);
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                body,
            )
            .await
            .map_err(|e| crate::create_error(&format!("replica {name}"), &e))?;
        if let Err(e) = docker
            .start_container(
                &created.id,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
        {
            let _ = containers::remove(docker, &created.id).await;
            return Err(ComputeError::ToolFailed(format!(
                "replica {name} did not start: {}",
                describe(&e)
            )));
        }
        Ok(())
    }

    async fn status(&self, docker: &Docker, name: &str) -> Result<ServiceStatus, ComputeError> {
        let replicas = self.replicas_of(docker, name).await?;
        let Some(first) = replicas.values().next() else {
            return Err(ComputeError::invalid(format!("no service named '{name}'")));
        };
        let mut spec: ServiceSpec = first
            .labels
            .as_ref()
            .and_then(|l| l.get(SPEC_LABEL))
            .and_then(|s| serde_json::from_str(s).ok())
            .ok_or_else(|| ComputeError::internal(format!("service '{name}' has lost its spec label")))?;
        // One container exists per desired replica (running or not), so their count is
        // the desired count, also after a scale that left older labels behind.
        spec.replicas = replicas.len() as u32;
        let mut out = Vec::new();
        for c in replicas.values() {
            let id = c.id.clone().unwrap_or_default();
            let mut info = docker.inspect_container(&id, None).await.ok();
            let stopped = info
                .as_ref()
                .and_then(|i| i.state.as_ref())
                .is_some_and(|s| s.running != Some(true) && s.restarting != Some(true));
            let failed = info
                .as_ref()
                .and_then(|i| i.state.as_ref())
                .is_some_and(|s| s.exit_code.unwrap_or(0) != 0);
            let revive = match spec.restart {
                RestartPolicy::Always => stopped,
                RestartPolicy::OnFailure => stopped && failed,
                RestartPolicy::Never => false,
            };
            if revive {
                let _ = docker
                    .start_container(&id, None::<bollard::query_parameters::StartContainerOptions>)
                    .await;
                info = docker.inspect_container(&id, None).await.ok();
            }
            let state = info.as_ref().and_then(|i| i.state.as_ref());
            let endpoints = info
                .as_ref()
                .and_then(|i| i.network_settings.as_ref())
                .and_then(|n| n.ports.as_ref())
                .map(|ports| {
                    let mut eps: Vec<String> = ports
                        .values()
                        .flatten()
                        .flatten()
                        .filter_map(|b| Some(format!("{}:{}", b.host_ip.clone()?, b.host_port.clone()?)))
                        .collect();
                    eps.sort();
                    eps.dedup();
                    eps
                })
                .unwrap_or_default();
            out.push(Replica {
                id,
                state: state
                    .and_then(|s| s.status)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                health: state
                    .and_then(|s| s.health.as_ref())
                    .and_then(|h| h.status)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "none".into()),
                endpoints,
            });
        }
        Ok(ServiceStatus {
            name: name.to_string(),
            runtime: RuntimeKind::Docker,
            replicas_desired: spec.replicas,
            replicas_running: out.iter().filter(|r| r.state == "running").count() as u32,
            endpoints: out.iter().flat_map(|r| r.endpoints.clone()).collect(),
            replicas: out,
            spec,
        })
    }
}

/// A TCP port free on `address` right now (the kernel's pick), with the listener that
/// holds it until the caller lets go.
fn free_port(address: &str) -> Result<(std::net::TcpListener, u16), ComputeError> {
    std::net::TcpListener::bind((address, 0))
        .and_then(|l| {
            let port = l.local_addr()?.port();
            Ok((l, port))
        })
        .map_err(|e| ComputeError::invalid(format!("cannot find a free port on {address}: {e}")))
}

/// Most published ports of one service, all replicas together. Each is a host port
/// and, with Docker's userland proxy, a `docker-proxy` process on the host, outside
/// the replica's own limits: bounded so that a spec cannot fill the host's process table.
pub const MAX_PUBLISHED_PORTS: usize = 64;

/// Refuses a spec whose replicas would publish more than [`MAX_PUBLISHED_PORTS`].
fn check_published(spec: &ServiceSpec) -> Result<(), ComputeError> {
    let total = spec.ports.len().saturating_mul(spec.replicas as usize);
    if total > MAX_PUBLISHED_PORTS {
        return Err(ComputeError::invalid(format!(
            "{} replicas x {} ports would publish {total} host ports, above the Docker runtime's \
             limit of {MAX_PUBLISHED_PORTS}",
            spec.replicas,
            spec.ports.len()
        )));
    }
    Ok(())
}

#[async_trait::async_trait]
impl ServiceRuntime for DockerRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Docker
    }

    async fn deploy(&self, spec: &ServiceSpec) -> Result<ServiceStatus, ComputeError> {
        spec.validate()?;
        check_published(spec)?;
        if spec.replicas == 0 {
            return Err(ComputeError::invalid("a service needs at least one replica"));
        }
        // Refused rather than ignored: a spec that asks for a host expects HTTP routed to
        // it, and silently publishing only ports would look deployed but not be reachable.
        if let Some(host) = &spec.host {
            return Err(ComputeError::invalid(format!(
                "host '{host}' needs an ingress, which the Docker runtime has not: deploy with runtime k8s, \
                 or without host (ports are published on publish_address)"
            )));
        }
        let docker = self.client().await?;
        let image = self.resolve_image(&spec.image).await?.0;
        // Redeploying replaces every replica with the new spec.
        for c in self.replicas_of(docker, &spec.name).await?.values() {
            if let Some(id) = &c.id {
                let _ = containers::remove(docker, id).await;
            }
        }
        for index in 0..spec.replicas {
            if let Err(e) = self.start_replica(docker, spec, &image, index).await {
                let _ = self.remove(&spec.name).await;
                return Err(e);
            }
        }
        self.status(docker, &spec.name).await
    }

    async fn list(&self) -> Result<Vec<ServiceStatus>, ComputeError> {
        let docker = self.client().await?;
        let list = containers::labelled(
            docker,
            vec![
                format!("{}=service", labels::KIND),
                format!("{}={}", labels::NODE, self.options.node_id),
            ],
        )
        .await?;
        let mut names: Vec<String> = list
            .iter()
            .filter_map(|c| c.labels.as_ref()?.get(labels::SERVICE).cloned())
            .collect();
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for n in names {
            out.push(self.status(docker, &n).await?);
        }
        Ok(out)
    }

    async fn inspect(&self, name: &str) -> Result<ServiceStatus, ComputeError> {
        hanzo_compute::service::validate_name(name)?;
        self.status(self.client().await?, name).await
    }

    async fn scale(&self, name: &str, replicas: u32) -> Result<ServiceStatus, ComputeError> {
        let docker = self.client().await?;
        let current = self.status(docker, name).await?;
        let mut spec = current.spec.clone();
        spec.replicas = replicas;
        spec.validate()?;
        check_published(&spec)?;
        if replicas == 0 {
            return Err(ComputeError::invalid(
                "scale to at least 1 replica, or remove the service",
            ));
        }
        let existing = self.replicas_of(docker, name).await?;
        // Add or drop replicas from the top; the ones that stay keep running.
        for (index, c) in existing.iter().filter(|(i, _)| **i >= replicas) {
            if let Some(id) = &c.id {
                containers::remove(docker, id).await.map_err(|e| {
                    ComputeError::internal(format!("cannot remove replica {index}: {}", describe(&e)))
                })?;
            }
        }
        let image = self.resolve_image(&spec.image).await?.0;
        for index in 0..replicas {
            if !existing.contains_key(&index) {
                self.start_replica(docker, &spec, &image, index).await?;
            }
        }
        self.status(docker, name).await
    }

    async fn remove(&self, name: &str) -> Result<(), ComputeError> {
        hanzo_compute::service::validate_name(name)?;
        let docker = self.client().await?;
        let replicas = self.replicas_of(docker, name).await?;
        if replicas.is_empty() {
            return Err(ComputeError::invalid(format!("no service named '{name}'")));
        }
        for c in replicas.values() {
            if let Some(id) = &c.id {
                containers::remove(docker, id)
                    .await
                    .map_err(|e| ComputeError::internal(format!("cannot remove {id}: {}", describe(&e))))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_ports_are_bounded_across_replicas() {
        let mut s = ServiceSpec::new("web", "web:1");
        s.ports = vec![80, 443];
        s.replicas = 32;
        check_published(&s).unwrap();
        s.replicas = 33;
        let e = check_published(&s).unwrap_err().to_string();
        assert!(e.contains("66 host ports"), "{e}");
    }

    #[test]
    fn ports_chosen_together_are_distinct() {
        let held: Vec<_> = (0..50).map(|_| free_port("127.0.0.1").unwrap()).collect();
        let mut ports: Vec<u16> = held.iter().map(|(_, p)| *p).collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 50);
    }
}
