//! `[network]` at `serve`: the libp2p node and the placement layer over it.

use hanzo_api::Api;
use hanzo_compute::{ComputeError, Config, RuntimeKind};
use hanzo_placement::{Options, Placer};
use std::sync::{Arc, OnceLock};

/// Starts the network and joins the API to it. A malformed `[network]` value is a
/// startup error naming the key (exit 2); an address that cannot be bound is exit 4.
pub async fn join(api: &Api, cfg: &Config, seed: [u8; 32]) -> anyhow::Result<Placer> {
    let settings = hanzo_network::Settings::from_config(&cfg.network)
        .map_err(|e| ComputeError::invalid(e.to_string()))?;
    // The advert is built by the placement layer, which needs the network's client
    // first: until it exists the node advertises nothing it could not honour.
    let cell: Arc<OnceLock<Placer>> = Arc::new(OnceLock::new());
    let source = {
        let cell = cell.clone();
        Arc::new(move || {
            cell.get()
                .map(|p| p.advert())
                .unwrap_or_else(hanzo_network::Advert::empty)
        })
    };
    let (client, channels) = hanzo_network::start(seed, settings, source)
        .await
        .map_err(|e| match e {
            hanzo_network::NetworkError::Listen { .. } => {
                crate::job_cmd::fail(4, format!("network.listen: {e}"))
            }
            e => anyhow::Error::new(ComputeError::invalid(e.to_string())),
        })?;
    let offer_runtimes = cfg
        .network
        .offer_runtimes
        .iter()
        .map(|r| r.parse::<RuntimeKind>())
        .collect::<Result<Vec<_>, _>>()?;
    let (cores, memory_gb) = cfg.compute.resources.advertised();
    let mut options = Options::new(
        offer_runtimes,
        hanzo_compute::Ceilings::from_config(&cfg.compute),
        hanzo_network::Capacity {
            slots: u64::from(cfg.compute.resources.max_concurrent_jobs),
            memory_mb: memory_gb.saturating_mul(1024),
            cpu_millicores: u64::from(cores) * 1000,
        },
    );
    options.peer_network = cfg.network.peer_network;
    options.max_remote_jobs_per_peer = cfg.network.max_remote_jobs_per_peer;
    let ledger_path = cfg.node.data_dir.join("ledger.json");
    let ledger = tokio::task::spawn_blocking(move || hanzo_placement::ledger::Ledger::load(&ledger_path))
        .await
        .map_err(ComputeError::internal)?
        .map_err(ComputeError::invalid)?;
    options.ledger = Arc::new(ledger);
    options.price = hanzo_network::Price {
        per_job: cfg.network.price.per_job,
        per_cpu_second: cfg.network.price.per_cpu_second,
        per_gib_second: cfg.network.price.per_gib_second,
    };
    let placer = api.join_network(client.clone(), channels.inbound, options);
    let _ = cell.set(placer.clone());
    let addrs = client.listen_addrs().await.unwrap_or_default();
    tracing::info!(
        peer_id = %client.peer_id(),
        listen = %addrs.join(","),
        bootstrap = cfg.network.bootstrap.len(),
        mdns = cfg.network.mdns,
        "network joined"
    );
    Ok(placer)
}
