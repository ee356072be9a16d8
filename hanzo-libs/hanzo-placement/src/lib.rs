//! Where a job runs, and running peers' jobs (CONTRACTS §7).
//!
//! Two sides of one protocol ([`hanzo_network::protocol`]):
//! - **Submitter** ([`submit`]): a job whose `placement` is not `local` is ranked
//!   over this node and its peers ([`rank`]), offered to each candidate in turn
//!   until one accepts, followed with long polls that double as heartbeats, checked
//!   (signature, node id, code and input hashes) and recorded. A lost attempt is
//!   fenced by its execution id and the job re-placed within its retries.
//! - **Executor** ([`execute`]): an offer from a peer is checked against this node's
//!   rules (runtimes offered to peers, no mounts, no network unless allowed, limits
//!   clamped to the ceilings, per-peer caps), admitted by the same scheduler as local
//!   jobs, and stored as an ordinary job tagged with its origin.
//!
//! Code travels by hash ([`code`]): the executor fetches a module it lacks from the
//! submitter, chunk by chunk, and keeps it only if its sha256 matches.

pub mod code;
mod execute;
pub mod ledger;
pub mod rank;
mod settle;
mod submit;
mod verify;

use hanzo_compute::{Job, JobOutcome, JobSpec, RuntimeKind};
use hanzo_jobstore::JobStore;
use hanzo_network::{Client, Inbound, Price};
use hanzo_scheduler::{Hooks, Scheduler};
use hanzo_wasm_runtime::WasmRuntime;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub use rank::{Candidate, Chain, NodeView};

/// What the placement layer needs of the node it runs in (the API implements it).
pub trait Host: Send + Sync + 'static {
    /// The job store.
    fn store(&self) -> &JobStore;
    /// The scheduler: local admission, for this node's jobs and peers' alike.
    fn scheduler(&self) -> &Scheduler;
    /// The hooks that record a job's start and end and wake whoever waits on it.
    fn hooks(&self) -> Arc<dyn Hooks>;
    /// Fires once the job's end is committed (register before the job can end), with
    /// the outcome when the store recorded exactly it (else `None`: read the store).
    fn wait_for(&self, id: &str) -> oneshot::Receiver<Option<Arc<JobOutcome>>>;
    /// A job handle for `id` with its live log sink attached.
    fn job(&self, id: String, spec: JobSpec) -> Job;
    /// The WASM runtime and its module store, when enabled.
    fn wasm(&self) -> Option<Arc<WasmRuntime>>;
    /// Where scripts that travel (Deno, Python) are kept: this node's own, served to
    /// peers by hash, and peers', each in a directory of its own while its job lives.
    fn code_dir(&self) -> std::path::PathBuf;
}

/// How this node takes part, from `[network]` and the operator's ceilings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runtimes run for peers (`offer_runtimes`).
    pub offer_runtimes: Vec<RuntimeKind>,
    /// Whether peers' jobs may have network access (`peer_network`).
    pub peer_network: bool,
    /// Peers' jobs running here at once, per peer (`max_remote_jobs_per_peer`).
    pub max_remote_jobs_per_peer: u32,
    /// The largest limits accepted (`[compute.limits]`, `max_output_bytes`).
    pub ceilings: hanzo_compute::Ceilings,
    /// What this node charges (`[network.price]`).
    pub price: Price,
    /// What this node may advertise in all (fingerprint, lowered by config).
    pub advertised: hanzo_network::Capacity,
    /// The ranking chain.
    pub chain: Chain,
    /// How long an attempt may go unheard from before it is lost.
    pub lost_after: Duration,
    /// How long the executor holds an `Await` (the heartbeat period).
    pub heartbeat: Duration,
    /// The ledger ([`ledger::Ledger::load`] for one kept in the data directory).
    pub ledger: Arc<ledger::Ledger>,
}

impl Options {
    /// Defaults for the timings: heartbeat 2 s, lost after 3 s of failures.
    pub fn new(
        offer_runtimes: Vec<RuntimeKind>,
        ceilings: hanzo_compute::Ceilings,
        advertised: hanzo_network::Capacity,
    ) -> Options {
        Options {
            offer_runtimes,
            peer_network: false,
            max_remote_jobs_per_peer: 4,
            ceilings,
            price: Price::default(),
            advertised,
            chain: Chain::default(),
            lost_after: Duration::from_secs(3),
            heartbeat: Duration::from_secs(2),
            ledger: Arc::new(ledger::Ledger::in_memory()),
        }
    }
}

/// Why a job could not be handed to placement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The spec cannot leave this node as written (mounts, a malformed peer id).
    #[error("{0}")]
    Invalid(String),
}

/// Checks that `spec` may leave this node as its placement says (a well-formed peer
/// id, no mounts): call before storing it, network on or off.
pub fn check(spec: &JobSpec) -> Result<(), PlacementError> {
    submit::check(spec)
}

/// The placement layer: one per node, cloneable.
#[derive(Clone)]
pub struct Placer {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub net: Client,
    pub host: Arc<dyn Host>,
    pub options: Options,
    pub code: code::Shares,
    pub executions: execute::Executions,
    pub attempts: submit::Attempts,
    pub ledger: Arc<ledger::Ledger>,
    pub settling: settle::Pending,
}

impl Placer {
    /// The placement layer over `net`, serving the requests that arrive on `inbound`.
    pub fn start(
        net: Client,
        mut inbound: mpsc::Receiver<Inbound>,
        host: Arc<dyn Host>,
        options: Options,
    ) -> Placer {
        let ledger = options.ledger.clone();
        tokio::spawn(ledger.clone().persist());
        let inner = Arc::new(Inner {
            net,
            host,
            options,
            code: code::Shares::default(),
            executions: execute::Executions::default(),
            attempts: submit::Attempts::default(),
            ledger,
            settling: settle::Pending::default(),
        });
        let serving = inner.clone();
        tokio::spawn(async move {
            while let Some(request) = inbound.recv().await {
                let inner = serving.clone();
                // Each request in its own task: an `Await` is held for seconds.
                tokio::spawn(async move { inner.serve(request).await });
            }
        });
        Placer { inner }
    }

    /// The network client.
    pub fn network(&self) -> &Client {
        &self.inner.net
    }

    /// The live peers, each with its reputation as placement uses it: its conduct,
    /// bounded by its credibility in this node's verified jobs (CONTRACTS §8).
    pub async fn peers(&self) -> Result<Vec<hanzo_network::PeerInfo>, hanzo_network::NetworkError> {
        self.inner.peers().await
    }

    /// `peer`'s record in this node's verified jobs.
    pub fn verified(&self, peer: &str) -> ledger::Verified {
        self.inner.ledger.verified(peer)
    }

    /// Places a stored, queued job (its placement not `local`): runs until the job
    /// is recorded terminal, in a task of its own.
    pub fn place(&self, id: String, spec: JobSpec) {
        let inner = self.inner.clone();
        tokio::spawn(async move { submit::place(inner, id, spec, None).await });
    }

    /// Re-attaches to a job whose attempt was running on a peer when this node
    /// stopped (`Recovery::remote`).
    pub fn reattach(&self, record: hanzo_jobstore::JobRecord) {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let id = record.id.clone();
            let spec = record.spec.clone();
            submit::place(inner, id, spec, Some(record)).await
        });
    }

    /// Cancels a job this layer is placing; false when it is not one of them.
    pub fn cancel(&self, id: &str) -> bool {
        self.inner.attempts.cancel(id)
    }

    /// What this node earned from and owes to each peer.
    pub fn ledger(&self) -> Vec<ledger::Account> {
        self.inner.ledger.accounts()
    }

    /// The advert this node publishes now.
    pub fn advert(&self) -> hanzo_network::Advert {
        self.inner.advert()
    }

    /// Remote jobs running here for peers, and jobs of this node placed on peers.
    pub fn counts(&self) -> (u64, u64) {
        (self.inner.executions.running(), self.inner.attempts.len() as u64)
    }
}

impl Inner {
    async fn serve(self: Arc<Self>, request: Inbound) {
        match request {
            Inbound::Job {
                peer,
                request,
                channel,
            } => {
                let response = execute::handle(&self, peer, request).await;
                self.net.respond_job(channel, response).await;
            }
            Inbound::Chunk {
                peer,
                request,
                channel,
            } => {
                let response = self.code.serve(&self, peer, request).await;
                self.net.respond_chunk(channel, response).await;
            }
        }
    }

    /// The live peers, their reputation bounded by their credibility.
    pub(crate) async fn peers(&self) -> Result<Vec<hanzo_network::PeerInfo>, hanzo_network::NetworkError> {
        let mut peers = self.net.peers().await?;
        for p in &mut peers {
            p.reputation = p.reputation.min(self.ledger.verified(&p.peer_id).credibility());
        }
        Ok(peers)
    }

    /// This node as the ranking sees it.
    pub(crate) fn local_view(&self) -> NodeView {
        let snap = self.host.scheduler().snapshot();
        let compute = self.host.scheduler().compute();
        let runtimes = RuntimeKind::ALL
            .into_iter()
            .filter(|k| compute.runtime(*k).is_some())
            .map(|k| k.name().to_string())
            .collect();
        let c = &self.options.ceilings;
        NodeView {
            peer: None,
            runtimes,
            ceilings: hanzo_network::Ceilings {
                memory_mb: c.memory_mb,
                timeout_ms: c.timeout_ms,
                fuel: c.fuel,
                disk_mb: c.disk_mb,
                output_bytes: c.max_output_bytes,
            },
            capacity: hanzo_network::Capacity {
                slots: snap.capacity.jobs,
                memory_mb: snap.capacity.memory_mb,
                cpu_millicores: snap.capacity.cpu_millicores,
            },
            free: hanzo_network::Capacity {
                slots: snap.capacity.jobs.saturating_sub(snap.in_use.jobs),
                memory_mb: snap.capacity.memory_mb.saturating_sub(snap.in_use.memory_mb),
                cpu_millicores: snap
                    .capacity
                    .cpu_millicores
                    .saturating_sub(snap.in_use.cpu_millicores),
            },
            queue_depth: snap.queued as u64,
            latency_ms: Some(0.0),
            reputation: 1.0,
            price: Price::default(),
        }
    }

    /// The advert: what this node offers peers, its free capacity (never more than
    /// the machine has) and its prices.
    pub(crate) fn advert(&self) -> hanzo_network::Advert {
        let local = self.local_view();
        let adv = self.options.advertised;
        let cap = hanzo_network::Capacity {
            slots: local.capacity.slots,
            memory_mb: local.capacity.memory_mb.min(adv.memory_mb),
            cpu_millicores: local.capacity.cpu_millicores.min(adv.cpu_millicores),
        };
        // Peers' jobs accepted and still fetching their code are as good as running.
        let pending = self.executions.pending();
        let free = hanzo_network::Capacity {
            slots: local.free.slots.saturating_sub(pending.jobs),
            memory_mb: local
                .free
                .memory_mb
                .min(cap.memory_mb)
                .saturating_sub(pending.memory_mb),
            cpu_millicores: local
                .free
                .cpu_millicores
                .min(cap.cpu_millicores)
                .saturating_sub(pending.cpu_millicores),
        };
        let compute = self.host.scheduler().compute();
        hanzo_network::Advert {
            version: hanzo_network::advert::ADVERT_VERSION,
            node_version: String::new(),
            node_id: String::new(),
            addrs: Vec::new(),
            runtimes: self
                .options
                .offer_runtimes
                .iter()
                .filter(|k| compute.runtime(**k).is_some())
                .map(|k| k.name().to_string())
                .collect(),
            capacity: cap,
            free,
            queue_depth: local.queue_depth,
            remote_jobs: self.executions.running(),
            ceilings: local.ceilings,
            price: self.options.price,
            issued_at_ms: 0,
        }
    }
}

/// A fresh execution id: `x` and a time-ordered id ([`hanzo_compute::new_job_id`]), so
/// that the indexes on execution ids (this node's attempts, and the executor's jobs)
/// grow at their right edge.
pub(crate) fn new_execution_id() -> String {
    format!("x{}", hanzo_compute::new_job_id())
}
