//! The network of nodes in the API (CONTRACTS §7): `GET /v1/peers`, `GET /v1/ledger`,
//! the placement layer's view of this node ([`ApiHost`]), and each job's
//! `executed_by` and `placements`.

use crate::routes::{ApiResult, S};
use crate::{ApiError, State};
use axum::extract::State as AxState;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use hanzo_compute::{Job, JobOutcome, JobSpec};
use hanzo_jobstore::{JobRecord, JobStatus, JobStore, PlacementOutcome};
use hanzo_placement::Host;
use hanzo_scheduler::{Hooks, Scheduler};
use hanzo_wasm_runtime::WasmRuntime;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::oneshot;
use utoipa::{OpenApi, ToSchema};

/// The node as the placement layer sees it.
pub(crate) struct ApiHost(pub Arc<State>);

impl Host for ApiHost {
    fn store(&self) -> &JobStore {
        &self.0.store
    }

    fn scheduler(&self) -> &Scheduler {
        &self.0.scheduler
    }

    fn hooks(&self) -> Arc<dyn Hooks> {
        self.0.hooks.clone()
    }

    fn wait_for(&self, id: &str) -> oneshot::Receiver<Option<Arc<JobOutcome>>> {
        self.0.hooks.wait_for_outcome(id)
    }

    fn job(&self, id: String, spec: JobSpec) -> Job {
        let sink = self.0.hooks.live.open(&id);
        Job::with_id(id, spec).with_log_sink(sink)
    }

    fn wasm(&self) -> Option<Arc<WasmRuntime>> {
        self.0.wasm.clone()
    }

    fn code_dir(&self) -> std::path::PathBuf {
        // The data directory is the job store's.
        let store = self.0.store.path();
        store.parent().unwrap_or(store).join("code")
    }
}

pub(crate) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/v1/peers", get(peers))
        .route("/v1/ledger", get(ledger))
        .route("/v1/jobs/{id}/billing", get(billing))
}

#[derive(OpenApi)]
#[openapi(paths(peers, ledger, billing), components(schemas(Peer, Account, Placement)))]
pub(crate) struct NetworkDoc;

/// A peer of this node (CONTRACTS §7).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Peer {
    /// The libp2p peer id.
    peer_id: String,
    /// The node id its receipts carry (hex ed25519 key).
    #[schema(required = true)]
    node_id: Option<String>,
    /// Addresses it is known by (multiaddrs).
    addrs: Vec<String>,
    /// Runtimes it runs for peers.
    runtimes: Vec<String>,
    /// `{"capacity", "free", "queue_depth"}` from its advert; capacity and free are
    /// `{"slots", "memory_mb", "cpu_millicores"}`.
    resources: Object,
    /// The last measured round trip in ms.
    #[schema(required = true)]
    latency_ms: Option<f64>,
    /// 0 to 1: its conduct (results that checked out, losses, malformed messages),
    /// bounded by its credibility in this node's verified jobs.
    #[schema(minimum = 0, maximum = 1)]
    reputation: f64,
    /// Its record in this node's verified jobs: `{"agreements", "dissents", "lost",
    /// "declines"}`.
    verification: Object,
    /// When it was last heard from.
    #[schema(format = DateTime)]
    last_seen: String,
    /// Whether a connection is open.
    connected: bool,
    /// Its software version (from its advert).
    version: Option<String>,
    /// Its prices in micro-credits: `{"per_job", "per_cpu_second", "per_gib_second"}`.
    price: Option<Object>,
    /// The largest limits it accepts.
    ceilings: Option<Object>,
}

type Object = serde_json::Map<String, Value>;

/// What this node earned from and owes to one peer, in micro-credits.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Account {
    /// The peer id.
    peer_id: String,
    /// What this node charged the peer.
    earned: u64,
    /// What the peer charged this node.
    owed: u64,
    /// Executions this node ran for the peer.
    jobs_run: u64,
    /// Executions the peer ran for this node.
    jobs_placed: u64,
    /// Executions this node ran for the peer whose result the peer did not take.
    jobs_rejected: u64,
    /// Acceptances from the peer at another price than this node's.
    disputed: u64,
    /// Its record in this node's verified jobs: `{"agreements", "dissents", "lost",
    /// "declines"}`.
    verification: Object,
}

/// One attempt of a job on a node (CONTRACTS §7).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct Placement {
    /// The node that ran (or runs) it.
    peer_id: String,
    /// `running | succeeded | failed | lost | cancelled`.
    outcome: String,
    /// The attempt's execution id (absent for a run on this node).
    execution_id: Option<String>,
    /// Why it failed or was lost.
    reason: Option<String>,
    /// When it was placed.
    #[schema(format = DateTime)]
    started_at: Option<String>,
    /// When it ended.
    #[schema(format = DateTime)]
    ended_at: Option<String>,
}

/// The peers this node has heard from within the peer timeout, as a JSON array
/// (CONTRACTS §7; the one list of the API that is not wrapped in an object, as the
/// contract fixes it). Empty when the network is off.
#[utoipa::path(get, path = "/v1/peers",
    responses((status = 200, description = "Every live peer", body = [Peer])))]
async fn peers(AxState(state): S) -> ApiResult {
    let Some(placer) = state.placer.get() else {
        return Ok(Json(json!([])).into_response());
    };
    let peers = placer.peers().await.map_err(ApiError::internal)?;
    let rows: Vec<Value> = peers
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or_else(|_| json!({"peer_id": p.peer_id}));
            // Its record in this node's verified jobs, behind its reputation.
            v["verification"] = json!(placer.verified(&p.peer_id));
            v
        })
        .collect();
    Ok(Json(rows).into_response())
}

/// This node's ledger: per peer, what it earned running the peer's jobs and owes for
/// the jobs the peer ran, priced by the executor's table at acceptance.
#[utoipa::path(get, path = "/v1/ledger",
    responses((status = 200, description = "`{\"accounts\": [...]}`", body = Object)))]
async fn ledger(AxState(state): S) -> ApiResult {
    let accounts = state.placer.get().map(|p| p.ledger()).unwrap_or_default();
    Ok(Json(json!({"accounts": accounts})).into_response())
}

/// A job's billing records (CONTRACTS §8): for each result this node took from a peer,
/// `{"receipt": <the peer's receipt>, "acceptance": <this node's signed acceptance>}`;
/// for a job this node ran for a peer, its own receipt and the peer's acceptance, once
/// the peer settled. Each verifies with `hanzo-node receipt verify`.
#[utoipa::path(get, path = "/v1/jobs/{id}/billing",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, description = "`{\"records\": [{\"receipt\", \"acceptance\"}]}`", body = Object),
        (status = 404, description = "not_found", body = crate::routes::schemas::ErrorReply)))]
async fn billing(AxState(state): S, crate::routes::Segment(id): crate::routes::Segment) -> ApiResult {
    let key = id.clone();
    let record = crate::routes::read_store(&state, move |s| s.get_summary(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("id: no job {id}")))?;
    Ok(Json(json!({"records": billing_records(&record)})).into_response())
}

/// The billing records of `r`: each stored acceptance with the receipt it names.
pub(crate) fn billing_records(r: &JobRecord) -> Vec<Value> {
    let mut receipts: Vec<&Value> = r.receipt.iter().collect();
    if let Some(v) = &r.verification {
        receipts.extend(v["receipts"].as_array().into_iter().flatten());
    }
    // Each stored receipt hashed once (they were verified when they came in).
    let hashed: Vec<(String, &Value)> = receipts
        .into_iter()
        .filter_map(|rc| {
            let r: hanzo_compute::Receipt = serde_json::from_value(rc.clone()).ok()?;
            Some((hanzo_compute::billing::receipt_sha256(&r), rc))
        })
        .collect();
    let named = |a: &Value| {
        let sha = a["receipt_sha256"].as_str()?;
        hashed.iter().find(|(h, _)| h == sha).map(|(_, rc)| *rc)
    };
    let mut out = Vec::new();
    for a in r
        .placements
        .iter()
        .filter_map(|p| p.acceptance.as_ref())
        .chain(r.acceptance.as_ref())
    {
        if let Some(receipt) = named(a) {
            out.push(json!({"receipt": receipt, "acceptance": a}));
        }
    }
    out
}

/// Who ran a job and where, for its `executed_by` and `placements`.
pub(crate) struct Here<'a> {
    /// This node's peer id.
    pub peer_id: &'a str,
    /// This node's node id (the key its receipts carry).
    pub node_id: &'a str,
    /// Whether this node's scheduler holds the job now (queued or running here).
    pub scheduled: bool,
}

/// A job's `executed_by` and `placements`: the attempts on peers from the store, and
/// a run on this node (a local job, or a placed job this node took itself) as one
/// more attempt whose outcome follows the job's status. A run here is known by the
/// scheduler holding the job, or by a receipt this node signed; a job that only ever
/// went to peers never shows this node.
pub(crate) fn placements(r: &JobRecord, here: &Here<'_>) -> (Value, Value) {
    let me = here.peer_id;
    let mut rows: Vec<Value> = r
        .placements
        .iter()
        .map(|p| {
            json!({
                "peer_id": p.peer_id,
                "outcome": p.outcome,
                "execution_id": p.execution_id,
                "reason": p.reason,
                "started_at": hanzo_compute::receipt::timestamp(p.started_at),
                "ended_at": p.ended_at.map(hanzo_compute::receipt::timestamp),
            })
        })
        .collect();
    let signed_here = r
        .receipt
        .as_ref()
        .and_then(|v| v["node_id"].as_str())
        .is_some_and(|id| id == here.node_id);
    let started = r.status != JobStatus::Queued && r.started_at.is_some();
    // A verified job's own attempt here has a placement row of its own.
    // A verified job never runs here but as one of its attempts, which has a row of
    // its own.
    let ran_here =
        started && r.verification.is_none() && (r.placements.is_empty() || signed_here || here.scheduled);
    if ran_here {
        let outcome = match r.status {
            JobStatus::Running | JobStatus::Queued => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        };
        rows.push(json!({
            "peer_id": me,
            "outcome": outcome,
            "execution_id": null,
            "reason": null,
            "started_at": r.started_at.map(hanzo_compute::receipt::timestamp),
            "ended_at": r.finished_at.map(hanzo_compute::receipt::timestamp),
        }));
    }
    // The node running it, or the last that ran it; a lost attempt ran nothing that
    // counts, so a job lost everywhere has no executor.
    let executed_by = if ran_here {
        json!(me)
    } else if r.verification.is_some() {
        // The node whose result the job took: the signer of its receipt.
        let signer = r.receipt.as_ref().and_then(|v| v["node_id"].as_str());
        r.placements
            .iter()
            .find(|p| {
                signer.is_some()
                    && p.peer_id
                        .parse::<hanzo_network::PeerId>()
                        .ok()
                        .and_then(|peer| hanzo_network::identity::node_id(&peer))
                        .as_deref()
                        == signer
            })
            .map_or(Value::Null, |p| json!(p.peer_id))
    } else {
        r.placements
            .iter()
            .rev()
            .find(|p| p.outcome != PlacementOutcome::Lost)
            .map_or(Value::Null, |p| json!(p.peer_id))
    };
    (executed_by, Value::Array(rows))
}

/// The peer id of a node key.
pub(crate) fn peer_id_of(key: &hanzo_compute::NodeKey) -> String {
    hanzo_network::identity::keypair(key.secret_seed())
        .public()
        .to_peer_id()
        .to_string()
}

/// Network figures for `/metrics`.
pub(crate) async fn metrics_text(state: &State) -> String {
    let Some(placer) = state.placer.get() else {
        return String::new();
    };
    let Ok(m) = placer.network().metrics().await else {
        return String::new();
    };
    let peers = placer.peers().await.unwrap_or_default();
    let (remote_in, remote_out) = placer.counts();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    gauge(
        "hanzo_network_peers",
        "Peers heard from within the peer timeout.",
        "gauge",
        m.known_peers.to_string(),
    );
    gauge(
        "hanzo_network_connected_peers",
        "Peers with an open connection.",
        "gauge",
        m.connected_peers.to_string(),
    );
    gauge(
        "hanzo_network_adverts_published_total",
        "Adverts this node published.",
        "counter",
        m.adverts_published.to_string(),
    );
    gauge(
        "hanzo_network_remote_jobs_in",
        "Peers' jobs running on this node.",
        "gauge",
        remote_in.to_string(),
    );
    gauge(
        "hanzo_network_remote_jobs_out",
        "This node's jobs being placed or running on peers.",
        "gauge",
        remote_out.to_string(),
    );
    gauge(
        "hanzo_network_requests_out_total",
        "Requests sent to peers.",
        "counter",
        m.requests_out.to_string(),
    );
    gauge(
        "hanzo_network_outbound_failures_total",
        "Requests to peers that failed.",
        "counter",
        m.outbound_failures.to_string(),
    );
    gauge(
        "hanzo_network_requests_in_total",
        "Requests received from peers.",
        "counter",
        m.requests_in.to_string(),
    );
    gauge(
        "hanzo_network_requests_refused_total",
        "Peers' requests refused unread (rate, busy).",
        "counter",
        m.requests_refused.to_string(),
    );
    gauge(
        "hanzo_network_inbound_failures_total",
        "Peers' requests that failed (timed out, connection lost before the answer).",
        "counter",
        m.inbound_failures.to_string(),
    );
    gauge(
        "hanzo_network_hole_punches_total",
        "Direct connections made through a NAT (DCUtR).",
        "counter",
        m.hole_punches.to_string(),
    );
    gauge(
        "hanzo_network_hole_punch_failures_total",
        "Hole punches that failed (the relayed connection stays).",
        "counter",
        m.hole_punch_failures.to_string(),
    );
    gauge(
        "hanzo_network_connections_trimmed_total",
        "Idle peer connections closed because more than 32 peers were connected.",
        "counter",
        m.connections_trimmed.to_string(),
    );
    gauge(
        "hanzo_network_malformed_requests_total",
        "Peers' requests that did not decode or were over the size cap (refused; the sender penalised).",
        "counter",
        m.malformed_requests.to_string(),
    );
    out.push_str("# HELP hanzo_network_adverts_total Adverts received from peers, by verdict.\n# TYPE hanzo_network_adverts_total counter\n");
    for (verdict, n) in [
        ("accepted", m.adverts_accepted),
        ("ignored", m.adverts_ignored),
        ("rejected", m.adverts_rejected),
    ] {
        out.push_str(&format!(
            "hanzo_network_adverts_total{{verdict=\"{verdict}\"}} {n}\n"
        ));
    }
    out.push_str("# HELP hanzo_network_payload_bytes_total Bytes of job results and code chunks, by direction.\n# TYPE hanzo_network_payload_bytes_total counter\n");
    out.push_str(&format!(
        "hanzo_network_payload_bytes_total{{direction=\"in\"}} {}\n",
        m.payload_bytes_in
    ));
    out.push_str(&format!(
        "hanzo_network_payload_bytes_total{{direction=\"out\"}} {}\n",
        m.payload_bytes_out
    ));
    out.push_str("# HELP hanzo_network_peer_rtt_seconds The last measured round trip to each peer.\n# TYPE hanzo_network_peer_rtt_seconds gauge\n");
    for p in &peers {
        if let Some(ms) = p.latency_ms {
            out.push_str(&format!(
                "hanzo_network_peer_rtt_seconds{{peer=\"{}\"}} {}\n",
                p.peer_id,
                ms / 1000.0
            ));
        }
    }
    out.push_str("# HELP hanzo_network_peer_reputation Each peer's reputation (0 to 1).\n# TYPE hanzo_network_peer_reputation gauge\n");
    for p in &peers {
        out.push_str(&format!(
            "hanzo_network_peer_reputation{{peer=\"{}\"}} {}\n",
            p.peer_id, p.reputation
        ));
    }
    out
}
