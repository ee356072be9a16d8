//! `hanzo-node service deploy | ls | inspect | scale | rm`: long-running services.

use crate::node::Node;
use clap::{Args, Subcommand};
use hanzo_compute::service::{HealthCheck, RestartPolicy, ServiceRuntime, ServiceSpec, ServiceStatus};
use hanzo_compute::{ComputeError, Network, RuntimeKind, parse_env_pair};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand, Debug)]
pub enum ServiceCmd {
    /// Deploy (or redeploy) a service and print its endpoints.
    Deploy(Box<DeployArgs>),
    /// List this node's services.
    Ls(Common),
    /// Show one service, its replicas and endpoints.
    Inspect {
        /// The service's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Change a service's replica count.
    Scale {
        /// The service's name.
        name: String,
        /// The new replica count.
        replicas: u32,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a service and all its replicas.
    Rm {
        /// The service's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
pub struct Common {
    /// The runtime the service runs on (docker | k8s).
    #[arg(long, default_value = "docker")]
    pub runtime: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// A JSON service spec file; the flags below override its fields.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The service's name.
    #[arg(long)]
    pub name: Option<String>,
    /// The image reference.
    #[arg(long)]
    pub image: Option<String>,
    /// Replica count.
    #[arg(long)]
    pub replicas: Option<u32>,
    /// A container port to publish (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// An environment variable (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Memory per replica, MiB.
    #[arg(long)]
    pub memory_mb: Option<u64>,
    /// CPU shares per replica.
    #[arg(long)]
    pub cpu_shares: Option<u32>,
    /// Health-check command, split on spaces (exit 0 = healthy).
    #[arg(long, value_name = "COMMAND")]
    pub health_cmd: Option<String>,
    /// always | on-failure | never.
    #[arg(long)]
    pub restart: Option<String>,
    /// none | full (default full).
    #[arg(long)]
    pub network: Option<String>,
    /// The user to run as.
    #[arg(long)]
    pub user: Option<String>,
    /// A host name to route to the service's first port (k8s: an Ingress).
    #[arg(long)]
    pub host: Option<String>,
    #[command(flatten)]
    pub common: Common,
    /// Overrides the image's command.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

impl DeployArgs {
    fn to_spec(&self) -> Result<ServiceSpec, ComputeError> {
        let mut spec = match &self.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ComputeError::invalid(format!("cannot read {}: {e}", path.display())))?;
                serde_json::from_str(&text).map_err(|e| {
                    ComputeError::invalid(format!("{} is not a valid service spec: {e}", path.display()))
                })?
            }
            None => {
                let name = self
                    .name
                    .clone()
                    .ok_or_else(|| ComputeError::invalid("--name is required"))?;
                let image = self
                    .image
                    .clone()
                    .ok_or_else(|| ComputeError::invalid("--image is required"))?;
                ServiceSpec::new(name, image)
            }
        };
        if let Some(n) = &self.name {
            spec.name = n.clone();
        }
        if let Some(i) = &self.image {
            spec.image = i.clone();
        }
        if let Some(r) = self.replicas {
            spec.replicas = r;
        }
        spec.ports.extend(&self.ports);
        for e in &self.env {
            let (k, v) = parse_env_pair(e)?;
            spec.env.insert(k, v);
        }
        if let Some(m) = self.memory_mb {
            spec.limits.memory_mb = m;
        }
        if let Some(c) = self.cpu_shares {
            spec.limits.cpu_shares = c;
        }
        if let Some(cmd) = &self.health_cmd {
            spec.health_check = Some(HealthCheck {
                command: cmd.split_whitespace().map(String::from).collect(),
                interval_ms: 2_000,
                timeout_ms: 2_000,
                retries: 3,
            });
        }
        if let Some(r) = &self.restart {
            spec.restart = serde_json::from_value::<RestartPolicy>(serde_json::Value::String(r.clone()))
                .map_err(|_| {
                    ComputeError::invalid(format!("invalid --restart '{r}' (always, on-failure or never)"))
                })?;
        }
        if let Some(n) = &self.network {
            spec.network = n.parse::<Network>()?;
        }
        if let Some(u) = &self.user {
            spec.user = Some(u.clone());
        }
        if let Some(h) = &self.host {
            spec.host = Some(h.clone());
        }
        if !self.command.is_empty() {
            spec.command = Some(self.command.clone());
        }
        spec.validate()?;
        Ok(spec)
    }
}

fn runtime(node: &Node, name: &str) -> Result<Arc<dyn ServiceRuntime>, ComputeError> {
    match name.parse::<RuntimeKind>()? {
        RuntimeKind::Docker => node
            .docker
            .clone()
            .map(|d| d as Arc<dyn ServiceRuntime>)
            .ok_or_else(|| ComputeError::Unavailable(node.unavailable_reason(RuntimeKind::Docker))),
        RuntimeKind::K8s => node
            .k8s
            .clone()
            .map(|k| k as Arc<dyn ServiceRuntime>)
            .ok_or_else(|| ComputeError::Unavailable(node.unavailable_reason(RuntimeKind::K8s))),
        other => Err(ComputeError::Unavailable(format!(
            "services on the {other} runtime are not built into this version of hanzo-node"
        ))),
    }
}

fn print(status: &ServiceStatus, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(status)?);
        return Ok(());
    }
    println!(
        "{}  {}  {}/{} running  image {}",
        status.name, status.runtime, status.replicas_running, status.replicas_desired, status.spec.image
    );
    for r in &status.replicas {
        println!(
            "  {}  {}  health {}  {}",
            &r.id[..r.id.len().min(12)],
            r.state,
            r.health,
            r.endpoints.join(" ")
        );
    }
    Ok(())
}

pub async fn run(config: Option<&Path>, cmd: ServiceCmd) -> anyhow::Result<u8> {
    let common = match &cmd {
        ServiceCmd::Deploy(args) => &args.common,
        ServiceCmd::Ls(common)
        | ServiceCmd::Inspect { common, .. }
        | ServiceCmd::Scale { common, .. }
        | ServiceCmd::Rm { common, .. } => common,
    };
    // Only the runtime asked for is started (a Docker service needs no kubeconfig).
    let kind: RuntimeKind = common.runtime.parse()?;
    let node = Node::build(config, Some(kind), false).await?;
    match cmd {
        ServiceCmd::Deploy(args) => {
            let spec = args.to_spec()?;
            let status = runtime(&node, &args.common.runtime)?.deploy(&spec).await?;
            print(&status, args.common.json)?;
        }
        ServiceCmd::Ls(common) => {
            let all = runtime(&node, &common.runtime)?.list().await?;
            if common.json {
                println!("{}", serde_json::json!({ "services": all }));
            } else {
                for s in &all {
                    print(s, false)?;
                }
            }
        }
        ServiceCmd::Inspect { name, common } => {
            print(
                &runtime(&node, &common.runtime)?.inspect(&name).await?,
                common.json,
            )?;
        }
        ServiceCmd::Scale {
            name,
            replicas,
            common,
        } => {
            print(
                &runtime(&node, &common.runtime)?.scale(&name, replicas).await?,
                common.json,
            )?;
        }
        ServiceCmd::Rm { name, common } => {
            runtime(&node, &common.runtime)?.remove(&name).await?;
            if common.json {
                println!("{}", serde_json::json!({"name": name, "removed": true}));
            } else {
                println!("removed {name}");
            }
        }
    }
    Ok(0)
}
