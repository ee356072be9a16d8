//! `hanzo-node serve`: the node as a long-running service behind the HTTP API.
//!
//! Startup order matters for "nothing acknowledged is lost": the job store is opened
//! (and recovers what a crash left running) before the scheduler exists, the recovered
//! queue is resumed before the listener accepts anything.

use crate::node::Node;
use clap::Args;
use hanzo_api::{Access, Api, ApiOptions, FollowLimits, ServiceRuntimes};
use hanzo_compute::ComputeError;
use hanzo_compute::service::ServiceRuntime;
use hanzo_jobstore::{Durability, JobStore, Options as StoreOptions, Retention};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long in-flight requests get to finish after SIGTERM / ctrl-c. Jobs still
/// running then are left `running` in the store; the next start recovers them
/// (retried if their spec allows, else failed as interrupted).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The address to serve the API on, HOST:PORT (default: node.api_listen,
    /// 127.0.0.1:3690). Port 0 picks a free port; the log line says which.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

pub async fn run(config: Option<&Path>, args: ServeArgs) -> anyhow::Result<u8> {
    // Fault injection (tests only): a build with fail points sets them from FAILPOINTS
    // and refuses a bad setting; any other build ignores the variable, and says so.
    let failpoints = std::env::var("FAILPOINTS").unwrap_or_default();
    if hanzo_compute::failpoints::ENABLED {
        let set = hanzo_compute::failpoints::configure(&failpoints).map_err(ComputeError::invalid)?;
        tracing::warn!(
            ?set,
            "this build has fail points: it may lie, drop results or stall on purpose"
        );
    } else if !failpoints.trim().is_empty() {
        tracing::warn!("FAILPOINTS is ignored: this build has no fail points");
    }
    let mut node = Node::build(config, None, true).await?;
    if let Some(listen) = args.listen {
        node.config.node.api_listen = listen;
    }
    // What API clients may ask for; a mount root that cannot be resolved is a startup
    // error naming compute.mount_roots.
    let policy = hanzo_compute::policy::ApiPolicy::from_config(&node.config)?;
    {
        // Caches left over the quota (by an earlier node, or a lowered cache_max_mb)
        // are pruned once at startup, off the serving path: a prune only removes
        // entries no job holds, so it may run alongside jobs.
        let cache = node.cache.clone();
        tokio::task::spawn_blocking(move || cache.prune_to_quota());
    }
    let cfg = node.config.clone();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(cfg.node.api_listen.as_str())
        .await
        .map_err(|e| {
            ComputeError::invalid(format!(
                "node.api_listen: cannot resolve '{}': {e}",
                cfg.node.api_listen
            ))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(ComputeError::invalid(format!(
            "node.api_listen: '{}' resolves to no address",
            cfg.node.api_listen
        ))
        .into());
    }
    let options = store_options(&cfg);
    let db = cfg.node.data_dir.join("jobs.db");
    let (store, recovery) = JobStore::open(&db, options).map_err(|e| match e {
        // Another node holds this data directory: an environment problem the operator
        // fixes (stop it, or choose another HANZO_HOME), not a fault of this node.
        hanzo_jobstore::Error::Locked(_) => crate::job_cmd::fail(4, e.to_string()),
        e => anyhow::Error::new(ComputeError::internal(e)),
    })?;
    let recovered =
        recovery.queued.len() + recovery.retried.len() + recovery.failed.len() + recovery.cancelled.len();
    // Said only when there is something to say (a first start recovers nothing).
    if recovered > 0 {
        tracing::info!(
            queued = recovery.queued.len(),
            retried = recovery.retried.len(),
            failed = recovery.failed.len(),
            cancelled = recovery.cancelled.len(),
            "recovered the jobs a previous run left in the store"
        );
    }
    // Every route but /healthz wants a token, loopback included: a web page the operator
    // visits can reach 127.0.0.1 too. Made after the store is open, whose lock keeps a
    // second node on this data directory from racing the creation.
    let (token, token_file) = if cfg.node.api_token.is_empty() {
        let (token, path) = crate::secure::ensure_token(&cfg.node.data_dir)?;
        (token, path.display().to_string())
    } else {
        (cfg.node.api_token.clone(), "(node.api_token)".to_string())
    };
    // Bound before the API is built (its Host check needs the port; clients wait in
    // the backlog), served only once the recovered queue is resumed.
    let listener = tokio::net::TcpListener::bind(&addrs[..]).await.map_err(|e| {
        let msg = format!("cannot listen on {}: {e}", cfg.node.api_listen);
        match e.kind() {
            // Another process has the port, or the address is not this machine's: the
            // node is fine, its environment is not (exit 4, not "internal").
            std::io::ErrorKind::AddrInUse
            | std::io::ErrorKind::AddrNotAvailable
            | std::io::ErrorKind::PermissionDenied => crate::job_cmd::fail(4, msg),
            _ => anyhow::Error::new(ComputeError::internal(msg)),
        }
    })?;
    let local = listener.local_addr()?;
    // Where this node really listens, for client commands on this data directory.
    let reach = match local {
        SocketAddr::V4(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        SocketAddr::V6(a) if a.ip().is_unspecified() => format!("[::1]:{}", a.port()),
        a => a.to_string(),
    };
    let endpoint = {
        let dir = cfg.node.data_dir.clone();
        let url = format!("http://{reach}");
        tokio::task::spawn_blocking(move || crate::secure::write_endpoint(&dir, &url))
            .await
            .map_err(ComputeError::internal)?
            .map_err(|e| ComputeError::internal(format!("cannot write the endpoint file: {e}")))?;
        cfg.node.data_dir.join(crate::secure::ENDPOINT_FILE)
    };
    let mut hosts = cfg.node.api_hosts.clone();
    if addrs.iter().all(|a| !a.ip().is_unspecified()) {
        // The name the operator wrote (`myhost:3690`) is one the node answers to.
        hosts.push(cfg.node.api_listen.to_ascii_lowercase());
    }
    let access = Access::for_listener(local, &hosts, &cfg.node.api_origins);
    let scheduler_options = crate::node::scheduler_options(&cfg);
    // Services run on the Docker runtime and on Kubernetes when they are enabled (and,
    // for Kubernetes, configured). Both connect lazily, so a node whose daemon or
    // cluster is down still serves, and `/v1/services` answers 503 with why.
    let mut services: Vec<Arc<dyn ServiceRuntime>> = Vec::new();
    if let Some(docker) = node.docker.clone() {
        services.push(docker);
    }
    if let Some(k8s) = node.k8s.clone() {
        services.push(k8s);
    }
    let seed = node.compute.key().secret_seed();
    let api = Api::new(
        Arc::new(node.compute),
        node.wasm.clone(),
        store,
        ApiOptions {
            token: Some(token),
            access,
            follow: FollowLimits {
                per_client: usize::try_from(cfg.node.api_log_followers_per_client).unwrap_or(usize::MAX),
                max_duration: Duration::from_secs(cfg.node.api_log_follow_max_secs),
            },
            resources: cfg.compute.resources.clone(),
            scheduler: scheduler_options,
            services: ServiceRuntimes::new(services),
            policy,
            agent: node.agent.clone(),
        },
    );
    if cfg.network.enabled {
        crate::network::join(&api, &cfg, seed).await?;
    }
    if !recovery.remote.is_empty() {
        tracing::info!(
            jobs = recovery.remote.len(),
            "re-attaching to jobs that were running on peers"
        );
    }
    let resumed = api.recover(recovery.queued, recovery.remote).await;
    if resumed.queued + resumed.failed > 0 {
        tracing::info!(
            resumed = resumed.queued,
            failed = resumed.failed,
            "resumed the queued jobs (those that can no longer run here were failed)"
        );
    }
    // The enabled runtimes (an unavailable one is named in a warning just after).
    let runtimes: Vec<&str> = hanzo_compute::RuntimeKind::ALL
        .into_iter()
        .filter(|k| api.scheduler().compute().runtime(*k).is_some())
        .map(|k| k.name())
        .collect();
    tracing::info!(
        listen = %format!("http://{local}"),
        node_id = %api.scheduler().compute().key().id(),
        data_dir = %cfg.node.data_dir.display(),
        token_file = %token_file,
        runtimes = %runtimes.join(","),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    // `runtimes` above are the enabled ones; which of them cannot run jobs now, and
    // why, follows (off the startup path: a cluster may take seconds to answer).
    {
        let compute = api.scheduler().compute().clone();
        tokio::spawn(async move {
            for kind in hanzo_compute::RuntimeKind::ALL {
                if let Some(rt) = compute.runtime(kind) {
                    let health = rt.health().await;
                    if !health.available {
                        tracing::warn!(
                            runtime = kind.name(),
                            reason = %health.detail.unwrap_or_default(),
                            "runtime unavailable"
                        );
                    }
                }
            }
        });
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stopped = stop_rx.clone();
    // With each connection's address: log followers are counted per client.
    let app = api.router().into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stopped.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    // Requests waiting for a long job must not hold the node up forever.
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Ok(()))) | Err(_) => {}
        Ok(Ok(Err(e))) => return Err(ComputeError::internal(e).into()),
        Ok(Err(e)) => return Err(ComputeError::internal(e).into()),
    }
    drop(stop_rx);
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(endpoint)).await;
    Ok(0)
}

/// The job store's options from the configuration.
pub(crate) fn store_options(cfg: &hanzo_compute::Config) -> StoreOptions {
    StoreOptions {
        durability: if cfg.node.jobs_durability == "full" {
            Durability::Full
        } else {
            Durability::Normal
        },
        retention: Retention {
            max_age: Some(Duration::from_secs(cfg.node.jobs_retention_hours * 3600)),
            max_finished: Some(cfg.node.jobs_max_finished),
            ..Retention::default()
        },
        ..StoreOptions::default()
    }
}

/// SIGTERM or ctrl-c (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
