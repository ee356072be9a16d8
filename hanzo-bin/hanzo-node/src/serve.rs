//! `hanzo-node serve`: the node as a long-running service behind the HTTP API.
//!
//! Startup order matters for "nothing acknowledged is lost": the job store is opened
//! (and recovers what a crash left running) before the scheduler exists, the recovered
//! queue is resumed before the listener accepts anything.

use crate::node::Node;
use anyhow::Context;
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

pub async fn run(config: Option<&Path>) -> anyhow::Result<u8> {
    let node = Node::build(config, None).await?;
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
    let options = StoreOptions {
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
    };
    let db = cfg.node.data_dir.join("jobs.db");
    let (store, recovery) = JobStore::open(&db, options)?;
    eprintln!(
        "hanzo-node: job store {}: {} queued, {} retried, {} failed as interrupted, {} cancelled after the restart",
        db.display(),
        recovery.queued.len(),
        recovery.retried.len(),
        recovery.failed.len(),
        recovery.cancelled.len()
    );
    // Every route but /healthz wants a token, loopback included: a web page the operator
    // visits can reach 127.0.0.1 too. Made after the store is open, whose lock keeps a
    // second node on this data directory from racing the creation.
    let token = if cfg.node.api_token.is_empty() {
        let (token, path) = crate::secure::ensure_token(&cfg.node.data_dir)?;
        eprintln!("hanzo-node: API token in {} (mode 0600)", path.display());
        token
    } else {
        cfg.node.api_token.clone()
    };
    // Bound before the API is built (its Host check needs the port; clients wait in
    // the backlog), served only once the recovered queue is resumed.
    let listener = tokio::net::TcpListener::bind(&addrs[..])
        .await
        .with_context(|| format!("cannot listen on {}", cfg.node.api_listen))?;
    let local = listener.local_addr()?;
    let mut hosts = cfg.node.api_hosts.clone();
    if addrs.iter().all(|a| !a.ip().is_unspecified()) {
        // The name the operator wrote (`myhost:3690`) is one the node answers to.
        hosts.push(cfg.node.api_listen.to_ascii_lowercase());
    }
    let access = Access::for_listener(local, &hosts, &cfg.node.api_origins);
    let scheduler_options = hanzo_scheduler::Options {
        queue_capacity: cfg.compute.resources.queue_capacity as usize,
        ..hanzo_scheduler::Options::default()
    };
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
        },
    );
    let resumed = api.resume(recovery.queued).await;
    if resumed.queued + resumed.failed > 0 {
        eprintln!(
            "hanzo-node: resumed {} jobs ({} can no longer run here and were failed)",
            resumed.queued, resumed.failed
        );
    }
    eprintln!(
        "hanzo-node: listening on http://{local} (node {})",
        api.scheduler().compute().key().id()
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stopped = stop_rx.clone();
    // With each connection's address: log followers are counted per client.
    let app = api.router().into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stopped.wait_for(|s| *s).await;
    });
    let server = tokio::spawn(async move { server.await });
    shutdown_signal().await;
    eprintln!("hanzo-node: shutting down");
    let _ = stop_tx.send(true);
    // Requests waiting for a long job must not hold the node up forever.
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Ok(()))) | Err(_) => {}
        Ok(Ok(Err(e))) => return Err(ComputeError::internal(e).into()),
        Ok(Err(e)) => return Err(ComputeError::internal(e).into()),
    }
    drop(stop_rx);
    Ok(0)
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
