//! The HTTP API of hanzo-node, versioned under `/v1`.
//!
//! It joins the durable job store (`hanzo-jobstore`) and the scheduler
//! (`hanzo-scheduler`): a job is validated, given a queue place, committed to the store
//! and only then acknowledged; the scheduler's [`Hooks`] record its start and end in
//! the store. See README.md for the routes and the choices made.

#![warn(missing_docs)]

mod access_log;
mod agent;
mod error;
mod guard;
mod hooks;
mod logs;
mod mcp;
mod metrics;
mod network;
mod routes;
mod services;
mod tools;

pub use error::ApiError;
pub use guard::Access;
pub use hooks::StoreHooks;
pub use logs::FollowLimits;
pub use services::ServiceRuntimes;

use hanzo_compute::Compute;
use hanzo_compute::config::ResourcesConfig;
use hanzo_jobstore::{JobRecord, JobStore};
use hanzo_scheduler::{Resumed, Scheduler};
use hanzo_wasm_runtime::WasmRuntime;
use std::sync::Arc;

/// The largest job spec accepted (`POST /v1/jobs`), in bytes.
pub const MAX_JOB_BODY: usize = 1024 * 1024;
/// The largest tool definition (`POST /v1/tools`) or call's params
/// (`POST /v1/tools/{name}/call`) accepted, in bytes.
pub const MAX_TOOL_BODY: usize = MAX_JOB_BODY;
/// The largest WASM module accepted (`POST /v1/modules`), in bytes.
pub const MAX_MODULE_BODY: usize = 64 * 1024 * 1024;

/// How the API is set up.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// The bearer token every route but `/healthz` requires; `None` (or empty) means
    /// no authentication (`hanzo-node serve` always sets one).
    pub token: Option<String>,
    /// The `Host` and `Origin` values accepted (see [`Access`]).
    pub access: Access,
    /// Log followers per client address, and how long a stream may stay open.
    pub follow: FollowLimits,
    /// What the node offers in all (`[compute.resources]`).
    pub resources: ResourcesConfig,
    /// The scheduler's settings (queue capacity, ...).
    pub scheduler: hanzo_scheduler::Options,
    /// The runtimes `/v1/services` deploys on (none: those routes answer 503).
    pub services: ServiceRuntimes,
    /// What API clients' jobs, tools and services may ask for (ceilings, mount roots,
    /// root in containers); the default allows no mounts and no root.
    pub policy: hanzo_compute::policy::ApiPolicy,
    /// The agent runtime registered in the node's `Compute`, if any: it is given the
    /// node's named tools to call (each call a job of this API).
    pub agent: Option<Arc<hanzo_agent::AgentRuntime>>,
}

/// The API: the store, the scheduler over the node's runtimes, and the router.
#[derive(Clone)]
pub struct Api {
    state: Arc<State>,
}

pub(crate) struct State {
    pub store: JobStore,
    pub scheduler: Scheduler,
    pub hooks: Arc<StoreHooks>,
    pub wasm: Option<Arc<WasmRuntime>>,
    pub token: Option<String>,
    pub access: Access,
    pub follow: FollowLimits,
    pub services: ServiceRuntimes,
    pub policy: Arc<hanzo_compute::policy::ApiPolicy>,
    /// This node's libp2p peer id (derived from its key, network on or off).
    pub peer_id: String,
    /// The placement layer, once the network is started.
    pub placer: std::sync::OnceLock<hanzo_placement::Placer>,
}

impl State {
    /// What a job's view needs to know of this node.
    pub(crate) fn here(&self, id: &str) -> network::Here<'_> {
        network::Here {
            peer_id: &self.peer_id,
            node_id: self.scheduler.compute().key().id(),
            scheduled: self.scheduler.contains(id),
        }
    }
}

impl Api {
    /// Builds the scheduler over `compute` with hooks that record every job's start and
    /// end in `store`.
    ///
    /// # Panics
    /// When called outside a tokio runtime (the scheduler spawns jobs on it).
    pub fn new(
        compute: Arc<Compute>,
        wasm: Option<Arc<WasmRuntime>>,
        store: JobStore,
        options: ApiOptions,
    ) -> Api {
        let hooks = Arc::new(StoreHooks::new(store.clone()));
        let peer_id = network::peer_id_of(compute.key());
        let scheduler = Scheduler::new(compute, options.resources, options.scheduler, hooks.clone());
        let api = Api {
            state: Arc::new(State {
                store,
                scheduler,
                hooks,
                wasm,
                token: options.token.filter(|t| !t.is_empty()),
                access: options.access,
                follow: options.follow,
                services: options.services,
                policy: Arc::new(options.policy),
                peer_id,
                placer: std::sync::OnceLock::new(),
            }),
        };
        if let Some(agent) = &options.agent {
            agent.bind(Arc::new(agent::AgentHost {
                state: Arc::downgrade(&api.state),
            }));
        }
        api
    }

    /// Queues the jobs the store recovered after a restart (`Recovery::queued`, in
    /// its order).
    pub async fn resume(&self, jobs: Vec<JobRecord>) -> Resumed {
        let live = &self.state.hooks.live;
        let jobs = jobs
            .into_iter()
            .map(|r| hanzo_compute::Job::with_id(r.id, r.spec))
            .map(|job| {
                let sink = live.open(&job.id);
                job.with_log_sink(sink)
            })
            .collect::<Vec<_>>();
        self.state.scheduler.resume(jobs).await
    }

    /// Joins the network: starts the placement layer over `net`, serving the peers'
    /// requests from `inbound`. Call once, before [`recover`](Self::recover).
    pub fn join_network(
        &self,
        net: hanzo_network::Client,
        inbound: tokio::sync::mpsc::Receiver<hanzo_network::Inbound>,
        options: hanzo_placement::Options,
    ) -> hanzo_placement::Placer {
        let host: Arc<dyn hanzo_placement::Host> = Arc::new(network::ApiHost(self.state.clone()));
        let placer = hanzo_placement::Placer::start(net, inbound, host, options);
        let _ = self.state.placer.set(placer.clone());
        placer
    }

    /// Hands the jobs the store recovered to whoever runs them: jobs whose attempt
    /// was running on a peer are re-attached (`Recovery::remote`), queued jobs with a
    /// placement other than `local` are placed again, and the rest are queued here
    /// ([`resume`](Self::resume)).
    pub async fn recover(&self, queued: Vec<JobRecord>, remote: Vec<JobRecord>) -> Resumed {
        let (placed, local): (Vec<_>, Vec<_>) =
            queued.into_iter().partition(|r| !r.spec.placement.is_local());
        for r in placed {
            match self.state.placer.get() {
                Some(p) => p.place(r.id, r.spec),
                None => {
                    let mut spec = r.spec;
                    let job = hanzo_compute::Job::with_id(r.id.clone(), spec.clone());
                    let outcome = hanzo_compute::JobOutcome {
                        job_id: r.id,
                        result: Err(hanzo_compute::ComputeError::Unschedulable(
                            "the network is off on this node ([network] enabled = false)".into(),
                        )),
                        usage: Default::default(),
                        logs: Vec::new(),
                        receipt: None,
                    };
                    spec.placement = hanzo_compute::Placement::Local;
                    hanzo_scheduler::Hooks::finished(self.state.hooks.as_ref(), &job, &outcome).await;
                }
            }
        }
        for r in remote {
            match self.state.placer.get() {
                Some(p) => p.reattach(r),
                None => {
                    let job = hanzo_compute::Job::with_id(r.id.clone(), r.spec);
                    let outcome = hanzo_compute::JobOutcome {
                        job_id: r.id,
                        result: Err(hanzo_compute::ComputeError::Unschedulable(
                            "its attempt was running on a peer, and the network is now off on this node"
                                .into(),
                        )),
                        usage: Default::default(),
                        logs: Vec::new(),
                        receipt: None,
                    };
                    hanzo_scheduler::Hooks::finished(self.state.hooks.as_ref(), &job, &outcome).await;
                }
            }
        }
        self.resume(local).await
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> &str {
        &self.state.peer_id
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.state.scheduler
    }

    /// The routes, ready for `axum::serve`; serve them with
    /// `into_make_service_with_connect_info::<SocketAddr>()` so that log followers are
    /// counted per client address (without it, all clients count as one).
    pub fn router(&self) -> axum::Router {
        routes::router(self.state.clone())
    }

    /// The node's MCP server (CONTRACTS §9) over this API's tools and jobs, for a
    /// transport other than `/mcp` (stdio: `hanzo-node mcp serve`).
    pub fn mcp_server(&self) -> hanzo_mcp::server::NodeServer {
        mcp::server(self.state.clone())
    }

    /// The OpenAPI document of the routes.
    pub fn openapi() -> serde_json::Value {
        routes::openapi()
    }
}
