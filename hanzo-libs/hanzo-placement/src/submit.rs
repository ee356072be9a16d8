//! The submitter's side: rank, offer, follow, check, record, fail over.
//!
//! Boundary: every reply comes from a peer, which is never trusted. A result is
//! accepted only with a receipt whose signature verifies, whose `node_id` is the key
//! of the peer the attempt went to, whose `code_hash` and `input_hash` are those of
//! the code and params sent, and whose `output_hash` is that of the output returned.
//! Each attempt has its own execution id; once an attempt is marked `lost` nothing
//! it sends is read again, and it is told to cancel (a surviving duplicate stops).

use crate::rank::{Candidate, NodeView};
use crate::{Inner, PlacementError, new_execution_id};
use hanzo_compute::receipt::{Outcome, hash_json};
use hanzo_compute::{ComputeError, Job, JobOutcome, JobSpec, Placement, Receipt, RuntimeKind, Usage};
use hanzo_jobstore::{JobRecord, PlacementOutcome};
use hanzo_network::identity::{node_id, parse_peer_id};
use hanzo_network::{Conduct, JobRequest, JobResponse, Offer, PeerId, Price, RemoteResult};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a peer may take to answer an offer.
pub(crate) const OFFER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an executor may hold its answer to an offer for the job's result: a job
/// that ends within it costs one round trip, not two. A longer one is accepted this
/// much later, and followed with `Await`s from then.
pub(crate) const OFFER_HOLD: Duration = Duration::from_millis(200);
/// Time allowed on top of the job's own timeout for queueing, code transfer and
/// failover before the job is given up.
/// How far past its timeout a run may last in a receipt: the time to stop a job that
/// hit it (a container's, a process tree's).
const RUN_GRACE_MS: f64 = 30_000.0;

pub(crate) const PLACEMENT_SLACK: Duration = Duration::from_secs(60);
/// Candidates offered the job per ranking round.
const MAX_OFFERS_PER_ROUND: usize = 8;
/// Offers made again to peers that refused them (rate, queue) before the job gives up
/// on them, and the first pause before one.
const MAX_REFUSALS: u32 = 30;
const REFUSAL_PAUSE: Duration = Duration::from_millis(50);
/// The longest peer-supplied text kept (a reason, an error message).
const MAX_PEER_TEXT: usize = 512;

/// Whether `asked` is above `advertised` in any of its prices.
pub(crate) fn dearer(asked: &Price, advertised: &Price) -> bool {
    asked.per_job > advertised.per_job
        || asked.per_cpu_second > advertised.per_cpu_second
        || asked.per_gib_second > advertised.per_gib_second
}

/// Text from a peer, made safe to store, log and print: at most [`MAX_PEER_TEXT`]
/// bytes, control characters escaped.
pub(crate) fn peer_text(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if out.len() >= MAX_PEER_TEXT {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// How long a lost attempt keeps being told to cancel (until its peer is back).
const FENCE_FOR: Duration = Duration::from_secs(120);
/// How long a node that restarted gives the peer of an attempt in flight to be
/// reachable again before the attempt is lost: its peers learn its address anew only
/// when they redial it or it finds them through bootstrap and the DHT.
const REATTACH_GRACE: Duration = Duration::from_secs(20);

/// The jobs this node is placing, by id, with the token that cancels each.
#[derive(Default)]
pub(crate) struct Attempts {
    map: Mutex<HashMap<String, hanzo_compute::CancelToken>>,
}

impl Attempts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, hanzo_compute::CancelToken>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cancel(&self, id: &str) -> bool {
        match self.lock().get(id) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

/// What may not leave this node: checked before the job is stored.
pub(crate) fn check(spec: &JobSpec) -> Result<(), PlacementError> {
    if let Placement::Peer(p) = &spec.placement {
        parse_peer_id("placement.peer", p).map_err(|e| PlacementError::Invalid(e.to_string()))?;
        if !spec.verification.is_none() {
            return Err(PlacementError::Invalid(format!(
                "a verified job runs on {} distinct nodes, so it cannot be pinned to one peer \
                 (use \"any\" or \"remote\")",
                spec.verification.min_peers()
            )));
        }
    }
    if !spec.mounts.is_empty() && !spec.verification.is_none() {
        return Err(PlacementError::Invalid(
            "mounts never travel to peers, and a verified job runs on several nodes: it cannot have mounts"
                .into(),
        ));
    }
    if !spec.mounts.is_empty() {
        return Err(PlacementError::Invalid(format!(
            "mounts never travel to peers: a job with mounts must have placement \"local\" (it has {})",
            spec.placement.describe()
        )));
    }
    Ok(())
}

/// The code of a job as it travels: its sha256 and size.
pub(crate) struct Code {
    /// What the executor's receipt must name as `code_hash`: the bytes' sha256, or a
    /// container image's id.
    pub sha256: String,
    pub bytes: u64,
    /// A script's extension (Deno, Python); `None` for a WASM module.
    pub ext: Option<String>,
    /// A container image's id (hex), pinned in the offer; `None` for code that
    /// travels by hash.
    pub image_id: Option<String>,
}

/// What travels: WASM modules and single-file Deno and Python scripts by hash (the
/// file's bytes; a script importing local files does not travel whole), Docker images
/// by reference with their id pinned. Kubernetes images do not: the executor could not
/// check the image before its cluster runs it, and the receipt's `code_hash` is
/// whatever digest the cluster's container runtime reports, which the submitter cannot
/// know in advance. Go packages and native executables run where they are.
pub(crate) fn travels(runtime: RuntimeKind) -> bool {
    matches!(
        runtime,
        RuntimeKind::Wasm | RuntimeKind::Deno | RuntimeKind::Python | RuntimeKind::Docker
    )
}

/// A container image: its reference travels as written, pinned to the image id this
/// node's Docker runtime resolves it to (under this node's pull policy), which the
/// executor must resolve the reference to as well and whose receipt must name it.
async fn prepare_image(inner: &Inner, spec: &JobSpec) -> Result<(JobSpec, Code), ComputeError> {
    let runtime = inner
        .host
        .scheduler()
        .compute()
        .runtime(spec.runtime)
        .cloned()
        .ok_or_else(|| {
            ComputeError::Unavailable(format!(
                "the {} runtime is not enabled on this node",
                spec.runtime
            ))
        })?;
    let id = runtime.resolve_code(spec).await?.ok_or_else(|| {
        ComputeError::Unavailable(format!(
            "the {} runtime of this node cannot say which image {} is",
            spec.runtime, spec.source
        ))
    })?;
    Ok((
        spec.clone(),
        Code {
            sha256: id.clone(),
            bytes: 0,
            ext: None,
            image_id: Some(id),
        },
    ))
}

/// A single-file script: read once (what is hashed is what is sent), kept in this
/// node's code directory under its sha256 so that peers can fetch it.
async fn prepare_script(inner: &Inner, spec: &JobSpec) -> Result<(JobSpec, Code), ComputeError> {
    let source = spec.source.clone();
    let ext = std::path::Path::new(&source)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_string)
        .ok_or_else(|| {
            ComputeError::invalid(format!(
                "{source}: a script to place on peers needs its extension"
            ))
        })?;
    let allowed: &[&str] = match spec.runtime {
        RuntimeKind::Python => &["py"],
        _ => &["ts", "js", "mts", "mjs", "tsx"],
    };
    if !allowed.contains(&ext.as_str()) {
        return Err(ComputeError::invalid(format!(
            "{source}: not a {} script (expected .{})",
            spec.runtime,
            allowed.join(", .")
        )));
    }
    let dir = inner.host.code_dir();
    let (sha, bytes) = tokio::task::spawn_blocking(move || -> Result<(String, u64), ComputeError> {
        let bytes =
            hanzo_compute::files::read_capped(std::path::Path::new(&source), crate::code::SCRIPT_MAX_BYTES)
                .map_err(|e| ComputeError::invalid(format!("cannot read script {source}: {e}")))?;
        let sha = hanzo_compute::receipt::sha256_hex(&bytes);
        let path = crate::code::script_path(&dir, &sha).expect("a sha256 is a valid name");
        if !path.is_file() {
            crate::code::write_file(&path, &bytes)
                .map_err(|e| ComputeError::internal(format!("cannot keep the script for peers: {e}")))?;
        }
        Ok((sha, bytes.len() as u64))
    })
    .await
    .map_err(ComputeError::internal)??;
    Ok(by_hash(spec, sha, bytes, Some(ext)))
}

/// The spec to send for code that travels by hash (its source `sha256:<hex>`), and
/// what the submitter knows of that code.
fn by_hash(spec: &JobSpec, sha: String, bytes: u64, ext: Option<String>) -> (JobSpec, Code) {
    let mut out = spec.clone();
    out.source = format!("sha256:{sha}");
    let code = Code {
        sha256: sha,
        bytes,
        ext,
        image_id: None,
    };
    (out, code)
}

/// Puts the job's module in this node's store (a path becomes `sha256:`), so that
/// peers can fetch it, and returns the spec to send.
pub(crate) async fn prepare_code(inner: &Inner, spec: &JobSpec) -> Result<(JobSpec, Code), ComputeError> {
    match spec.runtime {
        RuntimeKind::Wasm => {}
        RuntimeKind::Docker => return prepare_image(inner, spec).await,
        _ => return prepare_script(inner, spec).await,
    }
    let wasm = inner
        .host
        .wasm()
        .ok_or_else(|| ComputeError::Unavailable("the wasm runtime is not enabled on this node".into()))?;
    // A module by hash whose size the store gave within the last second: no trip to
    // a blocking thread (a busy submitter places job after job of one module).
    if let Ok(Some(sha)) = hanzo_compute::parse_digest_source(&spec.source)
        && let Some(bytes) = inner.code.known_size(&sha)
    {
        return Ok(by_hash(spec, sha, bytes, None));
    }
    let source = spec.source.clone();
    let w = wasm;
    // One trip off the async threads: the module's hash and size (not its bytes,
    // which may be megabytes, read for every job).
    let (sha, bytes) = tokio::task::spawn_blocking(move || -> Result<(String, u64), ComputeError> {
        let sha = match hanzo_compute::parse_digest_source(&source)? {
            Some(sha) => sha,
            None => {
                let bytes = hanzo_compute::files::read_capped(
                    std::path::Path::new(&source),
                    hanzo_wasm_runtime::MAX_SOURCE_BYTES,
                )
                .map_err(|e| ComputeError::invalid(format!("cannot read module {source}: {e}")))?;
                w.add_module(&bytes)?
            }
        };
        match w.module_store().size(&sha) {
            Some(n) => Ok((sha, n)),
            None => Err(ComputeError::invalid(format!("unknown module sha256:{sha}"))),
        }
    })
    .await
    .map_err(ComputeError::internal)??;
    inner.code.note_size(&sha, bytes);
    Ok(by_hash(spec, sha, bytes, None))
}

/// Ranks this node (when the placement allows) and every live peer.
pub(crate) async fn candidates(
    inner: &Inner,
    spec: &JobSpec,
    excluded: &HashSet<Option<PeerId>>,
) -> (Vec<Candidate>, Vec<(String, String)>) {
    let mut nodes = Vec::new();
    let mut reasons = Vec::new();
    if matches!(spec.placement, Placement::Any) && !excluded.contains(&None) {
        nodes.push(inner.local_view());
    }
    let wanted = match &spec.placement {
        Placement::Peer(p) => p.parse::<PeerId>().ok(),
        _ => None,
    };
    let peers = inner.peers().await.unwrap_or_default();
    for p in peers {
        let Ok(peer) = p.peer_id.parse::<PeerId>() else {
            continue;
        };
        if excluded.contains(&Some(peer)) || wanted.is_some_and(|w| w != peer) {
            continue;
        }
        if p.version.is_none() {
            // Connected, but no advert yet: nothing is known of what it offers.
            continue;
        }
        if !travels(spec.runtime) {
            reasons.push((
                p.peer_id.clone(),
                format!("{} code does not travel between nodes", spec.runtime),
            ));
            continue;
        }
        nodes.push(NodeView::of_peer(peer, &p));
    }
    if let Some(w) = wanted
        && !excluded.contains(&Some(w))
        && !nodes.iter().any(|n| n.peer == Some(w))
        && !reasons.iter().any(|(p, _)| *p == w.to_string())
    {
        reasons.push((
            w.to_string(),
            "not a live peer of this node (no advert within the peer timeout)".into(),
        ));
    }
    let (ranked, filtered) = inner.options.chain.rank(spec, nodes);
    reasons.extend(filtered);
    (ranked, reasons)
}

/// The price table `peer` advertises now, if it is a live peer.
async fn advertised_price(inner: &Inner, peer: PeerId) -> Option<Price> {
    let peers = inner.net.peers().await.ok()?;
    let id = peer.to_string();
    peers.into_iter().find(|p| p.peer_id == id)?.price
}

/// Records why `peer` did not take the job, in place of what it said before.
pub(crate) fn note(reasons: &mut Vec<(String, String)>, peer: PeerId, why: String) {
    let peer = peer.to_string();
    match reasons.iter_mut().find(|(p, _)| *p == peer) {
        Some(r) => r.1 = why,
        None => reasons.push((peer, why)),
    }
}

/// How following an attempt ended.
pub(crate) enum Followed {
    Result(RemoteResult),
    /// A result that came with the acceptance and was checked then (see `run`).
    Rejected(Rejected),
    Lost(String),
    Cancelled(Option<RemoteResult>),
}

/// Where a placement ended.
pub(crate) enum End {
    /// Handed to this node's scheduler, whose hooks record the rest.
    Local,
    /// Recorded by the hooks with this outcome; with the attempt that gave it and how
    /// that attempt ended, when one did (written together, see `place`).
    Done(Box<JobOutcome>, Option<(String, PlacementOutcome)>),
    /// Already recorded (cancelled before it started).
    Recorded,
}

pub(crate) async fn place(inner: Arc<Inner>, id: String, spec: JobSpec, resume: Option<JobRecord>) {
    let job = inner.host.job(id.clone(), spec);
    inner.attempts.lock().insert(id.clone(), job.cancel.clone());
    let end = if job.spec.verification.is_none() {
        run(&inner, &job, resume).await
    } else {
        crate::verify::run(&inner, &job, resume).await
    };
    inner.attempts.lock().remove(&id);
    match end {
        End::Done(outcome, None) => inner.host.hooks().finished(&job, outcome.as_ref()).await,
        End::Done(outcome, Some((execution_id, placement))) => {
            // The attempt's end is queued first, the job's right behind it: they
            // usually share one commit, and the job never ends before its attempt.
            let store = inner.host.store();
            let hooks = inner.host.hooks();
            let _ = tokio::join!(
                store.end_placement(&execution_id, placement, None),
                hooks.finished(&job, outcome.as_ref())
            );
        }
        End::Local | End::Recorded => {}
    }
}

pub(crate) fn failed(job: &Job, e: ComputeError) -> End {
    End::Done(
        Box::new(JobOutcome {
            job_id: job.id.clone(),
            result: Err(e),
            usage: Usage::default(),
            logs: Vec::new(),
            receipt: None,
        }),
        None,
    )
}

/// Why each node did not take a job, as one line: `peer: reason; …`.
pub(crate) fn describe(reasons: &[(String, String)]) -> String {
    if reasons.is_empty() {
        "no peer is known to this node".to_string()
    } else {
        reasons
            .iter()
            .map(|(p, r)| format!("{p}: {r}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn unschedulable(job: &Job, reasons: &[(String, String)]) -> End {
    let why = describe(reasons);
    failed(
        job,
        ComputeError::Unschedulable(format!(
            "no node can take the job ({}): {why}",
            job.spec.placement.describe()
        )),
    )
}

async fn run(inner: &Arc<Inner>, job: &Job, resume: Option<JobRecord>) -> End {
    let spec = &job.spec;
    let deadline = Instant::now()
        .checked_add(Duration::from_millis(spec.limits.timeout_ms) + PLACEMENT_SLACK)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    let mut budget = spec.retries.saturating_add(1);
    let mut started = false;
    let mut excluded: HashSet<Option<PeerId>> = HashSet::new();
    let mut reasons: Vec<(String, String)> = Vec::new();
    let mut refusals = 0u32;
    let mut waits = 0u32;

    // Peers are only offered code that travels; a job this node runs keeps its spec.
    let travelling = if travels(spec.runtime) {
        match prepare_code(inner, spec).await {
            Ok(c) => Some(c),
            Err(e) if matches!(spec.placement, Placement::Any) => {
                reasons.push(("peers".into(), format!("the code cannot be sent: {e}")));
                None
            }
            Err(e) => return failed(job, e),
        }
    } else {
        None
    };

    if let Some(record) = resume {
        started = true;
        if record.cancel_requested {
            // Asked before the node stopped: the attempt is told to stop, not followed.
            job.cancel.cancel();
        }
        budget = budget.saturating_sub(record.placements.len() as u32);
        let last = record
            .placements
            .iter()
            .rev()
            .find(|p| p.outcome == PlacementOutcome::Running)
            .cloned();
        if let (Some(p), Some((sent, code))) = (last, travelling.as_ref())
            && let Ok(peer) = p.peer_id.parse::<PeerId>()
        {
            {
                // The peer may still be fetching the code: serve it again.
                inner.code.share(peer, &code.sha256);
                tracing::info!(job = %job.id, %peer, execution = %p.execution_id, "re-attaching to a job running on a peer");
                let attempt = Attempt {
                    peer,
                    execution_id: &p.execution_id,
                    // Not stored with the attempt: read from the peer's advert when
                    // the result is in (see `settle`).
                    price: None,
                    lost_after: REATTACH_GRACE,
                    deadline,
                    early: Early::None,
                };
                match settle(inner, job, sent, code, attempt).await {
                    Settled::Final(end) => return end,
                    Settled::Retry(why) => {
                        excluded.insert(Some(peer));
                        reasons.push((peer.to_string(), why));
                    }
                }
            }
        }
    }

    loop {
        if job.cancel.is_cancelled() {
            return failed(job, ComputeError::Cancelled);
        }
        if budget == 0 || Instant::now() > deadline {
            return unschedulable(job, &reasons);
        }
        let (ranked, filtered) = candidates(inner, spec, &excluded).await;
        for (p, r) in filtered {
            if !reasons.iter().any(|(q, _)| *q == p) {
                reasons.push((p, r));
            }
        }
        if ranked.is_empty() {
            return unschedulable(job, &reasons);
        }
        let mut retry = false;
        // Candidates that declined only for want of free capacity now.
        let mut full: Vec<PeerId> = Vec::new();
        // At most a few offers per round, within the deadline: a network full of
        // adverts that promise much cannot make one job try them all.
        for c in ranked.into_iter().take(MAX_OFFERS_PER_ROUND) {
            if Instant::now() > deadline {
                break;
            }
            let Some(peer) = c.node.peer else {
                excluded.insert(None);
                match inner.host.scheduler().reserve(spec).await {
                    Ok(permit) => {
                        if started {
                            // A failed-over job continuing here: the scheduler's
                            // `starting` hook records the new attempt.
                            let _ = inner.host.store().restart_attempt(&job.id).await;
                        }
                        return match permit.submit(job.clone()) {
                            Ok(()) => End::Local,
                            Err(r) => failed(job, r.to_compute_error()),
                        };
                    }
                    Err(r) => {
                        reasons.push(("this node".into(), r.to_string()));
                        continue;
                    }
                }
            };
            let Some((sent, code)) = travelling.as_ref() else {
                continue;
            };
            excluded.insert(Some(peer));
            let execution_id = new_execution_id();
            inner.code.share(peer, &code.sha256);
            let offer = Offer {
                execution_id: execution_id.clone(),
                spec: serde_json::to_string(sent).unwrap_or_default(),
                code_bytes: code.bytes,
                deadline_ms: deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
                file_ext: code.ext.clone(),
                image_id: code.image_id.clone(),
                wait_ms: OFFER_HOLD.as_millis() as u64,
                attempt: None,
            };
            let reply = tokio::time::timeout(OFFER_TIMEOUT, ask(inner, peer, JobRequest::Offer(offer))).await;
            let (price, early) = match reply {
                // The price it asks must be the one it advertised, or less: a peer that
                // ranks first on a low price and then charges more is refused.
                Ok(Ok(JobResponse::Accepted {
                    execution_id: e,
                    price,
                    result,
                })) if e == execution_id && !dearer(&price, &c.node.price) => (price, result),
                Ok(Ok(JobResponse::Accepted { .. })) => {
                    inner.net.report(peer, Conduct::Bad).await;
                    fence(inner.clone(), peer, execution_id.clone());
                    reasons.push((peer.to_string(), "accepted at a price above its advert".into()));
                    continue;
                }
                Ok(Ok(JobResponse::Declined { reason, busy })) => {
                    let reason = peer_text(&reason);
                    if waits == 0 {
                        tracing::info!(job = %job.id, %peer, reason = %reason, busy, "offer declined; trying the next candidate");
                    }
                    note(&mut reasons, peer, format!("declined: {reason}"));
                    if busy {
                        full.push(peer);
                    }
                    continue;
                }
                Ok(Ok(JobResponse::Refused { reason })) => {
                    // Over its request rate or its queue: the peer is congested, not
                    // unwilling. The offer is made again after a pause (doubling, up to a
                    // second), as a client does after a 429, within the job's deadline.
                    note(&mut reasons, peer, format!("refused: {}", peer_text(&reason)));
                    if refusals < MAX_REFUSALS {
                        refusals += 1;
                        excluded.remove(&Some(peer));
                        let pause = REFUSAL_PAUSE * 2u32.saturating_pow(refusals.min(5) - 1);
                        tokio::time::sleep(pause.min(Duration::from_secs(1))).await;
                        retry = true;
                        break;
                    }
                    continue;
                }
                Ok(Ok(other)) => {
                    inner.net.report(peer, Conduct::Bad).await;
                    reasons.push((
                        peer.to_string(),
                        format!("answered an offer with {}", name(&other)),
                    ));
                    continue;
                }
                Ok(Err(e)) => {
                    // It may have taken the offer before the answer was lost: fenced.
                    inner.net.report(peer, Conduct::Bad).await;
                    fence(inner.clone(), peer, execution_id.clone());
                    reasons.push((peer.to_string(), e.to_string()));
                    continue;
                }
                Err(_) => {
                    inner.net.report(peer, Conduct::Bad).await;
                    fence(inner.clone(), peer, execution_id.clone());
                    reasons.push((peer.to_string(), "no answer to the offer".into()));
                    continue;
                }
            };
            // At debug: the access log and `job finished` already give a line per job.
            tracing::debug!(job = %job.id, %peer, execution = %execution_id, "placed on a peer");
            // A short job's result came with the acceptance. On a first attempt it is
            // checked now, and a good one is recorded with its attempt in one go
            // (`record_early`); a bad one goes the common way below, its rejection in
            // hand.
            let early = match early {
                Some(r) if !started && r.execution_id == execution_id => {
                    match check_result(job, sent, code, peer, *r) {
                        Ok(outcome) => {
                            return record_early(inner, job, peer, &execution_id, price, outcome).await;
                        }
                        Err(rejected) => Early::Rejected(rejected),
                    }
                }
                Some(r) => Early::Result(r),
                None => Early::None,
            };
            // Accepted: record the attempt before anything else, so that a crash from
            // here on re-attaches to it rather than running the job twice. The job's
            // start (or next attempt) is queued right behind it: the store's writer
            // applies writes in order, so the start is never committed without the
            // attempt, and the two usually share one commit.
            let store = inner.host.store();
            let peer_id = peer.to_string();
            let placing = store.add_placement(&job.id, &peer_id, &execution_id);
            let (placed, running) = if started {
                let (placed, _) = tokio::join!(placing, store.restart_attempt(&job.id));
                (placed, true)
            } else {
                let hooks = inner.host.hooks();
                tokio::join!(placing, hooks.starting(job))
            };
            if let Err(e) = placed {
                tracing::error!(job = %job.id, error = %e, "cannot record the placement; cancelling it");
                fence(inner.clone(), peer, execution_id);
                if !running {
                    // Cancelled meanwhile: the hooks recorded it.
                    return End::Recorded;
                }
                return failed(
                    job,
                    ComputeError::internal(format!("the job store could not record the placement: {e}")),
                );
            }
            budget -= 1;
            if !running {
                // Cancelled meanwhile: the hooks recorded it.
                let _ = store
                    .end_placement(&execution_id, PlacementOutcome::Cancelled, None)
                    .await;
                fence(inner.clone(), peer, execution_id);
                return End::Recorded;
            }
            started = true;
            let attempt = Attempt {
                peer,
                execution_id: &execution_id,
                price: Some(price),
                lost_after: inner.options.lost_after,
                deadline,
                early,
            };
            match settle(inner, job, sent, code, attempt).await {
                Settled::Final(end) => return end,
                Settled::Retry(why) => {
                    reasons.push((peer.to_string(), why));
                    retry = true;
                    break;
                }
            }
        }
        if !retry {
            if full.is_empty() {
                // Every candidate declined for good (or failed): nothing will change.
                return unschedulable(job, &reasons);
            }
            // Some were only full: the job waits for a slot, as it would in this
            // node's own queue, and the round starts over after a pause (50 ms
            // doubling up to 1 s), until the job's deadline or its cancel.
            waits += 1;
            let pause = (REFUSAL_PAUSE * 2u32.saturating_pow(waits.min(5) - 1)).min(Duration::from_secs(1));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = job.cancel.cancelled() => {}
            }
            for p in full {
                excluded.remove(&Some(p));
            }
            // This node, when it may run the job, is asked again too.
            excluded.remove(&None);
        }
    }
}

enum Settled {
    Final(End),
    Retry(String),
}

/// What came with an acceptance.
enum Early {
    /// Nothing: the job was still running.
    None,
    /// The result, unchecked (an attempt after the first: see `run`).
    Result(Box<RemoteResult>),
    /// The result, checked and not taken.
    Rejected(Rejected),
}

/// One accepted attempt: where it runs, under which id and price, and how long it may
/// go unheard from and run in all.
struct Attempt<'a> {
    peer: PeerId,
    execution_id: &'a str,
    /// The price it accepted the job at; `None` for an attempt re-attached after this
    /// node restarted.
    price: Option<Price>,
    lost_after: Duration,
    deadline: Instant,
    /// The result that came with the acceptance (a short job), if it did.
    early: Early,
}

/// Follows an accepted attempt to its end and records it.
async fn settle(inner: &Arc<Inner>, job: &Job, sent: &JobSpec, code: &Code, attempt: Attempt<'_>) -> Settled {
    let Attempt {
        peer,
        execution_id,
        price,
        lost_after,
        deadline,
        early,
    } = attempt;
    let store = inner.host.store();
    let followed = match early {
        Early::Result(r) if r.execution_id == execution_id => Followed::Result(*r),
        Early::Rejected(r) => Followed::Rejected(r),
        _ => follow(inner, job, peer, execution_id, lost_after, deadline).await,
    };
    let checked = match followed {
        Followed::Result(r) => check_result(job, sent, code, peer, r),
        Followed::Rejected(r) => Err(r),
        Followed::Lost(why) => {
            let _ = store
                .end_placement(execution_id, PlacementOutcome::Lost, Some(&why))
                .await;
            inner.net.report(peer, Conduct::Bad).await;
            tracing::warn!(job = %job.id, %peer, why = %why, "attempt lost; placing the job again");
            fence(inner.clone(), peer, execution_id.to_string());
            return Settled::Retry(format!("lost: {why}"));
        }
        Followed::Cancelled(r) => {
            let mut outcome = JobOutcome {
                job_id: job.id.clone(),
                result: Err(ComputeError::Cancelled),
                usage: Usage::default(),
                logs: Vec::new(),
                receipt: None,
            };
            if let Some(r) = r {
                outcome.logs = r.logs;
            }
            // The attempt's end is written with the job's (see `place`).
            return Settled::Final(End::Done(
                Box::new(outcome),
                Some((execution_id.to_string(), PlacementOutcome::Cancelled)),
            ));
        }
    };
    match checked {
        Ok(outcome) => {
            let placement = placement_of(&outcome);
            taken(inner, peer, execution_id, &outcome, price).await;
            // The attempt's end is written with the job's (see `place`).
            Settled::Final(End::Done(
                Box::new(outcome),
                Some((execution_id.to_string(), placement)),
            ))
        }
        Err(Rejected { why, lie }) => {
            let _ = store
                .end_placement(execution_id, PlacementOutcome::Failed, Some(&why))
                .await;
            inner
                .net
                .report(peer, if lie { Conduct::Bad } else { Conduct::Neutral })
                .await;
            tracing::warn!(job = %job.id, %peer, why = %why, "attempt failed; placing the job again");
            if lie {
                // A result came back and was refused: the executor earns nothing.
                crate::settle::reject(inner, peer, execution_id, &why);
            }
            Settled::Retry(why)
        }
    }
}

/// How an attempt whose result was taken ended.
fn placement_of(outcome: &JobOutcome) -> PlacementOutcome {
    match &outcome.result {
        Ok(_) => PlacementOutcome::Succeeded,
        Err(ComputeError::Cancelled) => PlacementOutcome::Cancelled,
        Err(_) => PlacementOutcome::Failed,
    }
}

/// A peer's result was taken: what it ran is owed at the price it accepted, and it
/// gains reputation. A re-attached attempt's price (`None`) was not stored: the one the
/// peer advertises now stands in (the same unless it changed its prices meanwhile; none
/// when it is not heard from).
async fn taken(
    inner: &Arc<Inner>,
    peer: PeerId,
    execution_id: &str,
    outcome: &JobOutcome,
    price: Option<Price>,
) {
    if let Some(receipt) = &outcome.receipt {
        let price = match price {
            Some(p) => p,
            None => advertised_price(inner, peer).await.unwrap_or_default(),
        };
        // Counter-signed, owed, and the executor told (CONTRACTS §8): off the job's
        // path, which does not wait for the signature or the store write.
        let (inner, execution_id, receipt) = (inner.clone(), execution_id.to_string(), receipt.clone());
        tokio::spawn(async move {
            crate::settle::accept(&inner, peer, &execution_id, &receipt, &price, None).await;
        });
    }
    inner.net.report(peer, Conduct::Good).await;
}

/// Records a first attempt whose result came with its acceptance and was taken: the
/// attempt, the job's start, the attempt's end and the job's end, queued in that order
/// with no wait between them, so that they usually share one commit (they took two: the
/// attempt and the start, then both ends after the check). The store's writer applies
/// them in order, so a crash leaves a prefix of them: an attempt without its end is
/// re-attached after a restart as before, and no end is stored without its attempt.
/// A job cancelled meanwhile keeps its cancel (the store ends a job once); its attempt
/// is recorded as what it was, a run that ended on the peer.
async fn record_early(
    inner: &Arc<Inner>,
    job: &Job,
    peer: PeerId,
    execution_id: &str,
    price: Price,
    outcome: JobOutcome,
) -> End {
    let store = inner.host.store();
    let hooks = inner.host.hooks();
    let peer_id = peer.to_string();
    let (placed, _, _, ()) = tokio::join!(
        store.add_placement(&job.id, &peer_id, execution_id),
        hooks.starting(job),
        store.end_placement(execution_id, placement_of(&outcome), None),
        hooks.finished(job, &outcome),
    );
    if let Err(e) = placed {
        // The job's end is recorded (or the hooks said why not); only the row naming
        // the peer is missing.
        tracing::error!(job = %job.id, %peer, error = %e, "cannot record the placement of a job that ended on a peer");
    }
    taken(inner, peer, execution_id, &outcome, Some(price)).await;
    End::Recorded
}

/// Long-polls the executor until the attempt ends, is lost or is cancelled.
pub(crate) async fn follow(
    inner: &Arc<Inner>,
    job: &Job,
    peer: PeerId,
    execution_id: &str,
    lost_after: Duration,
    deadline: Instant,
) -> Followed {
    let heartbeat = inner.options.heartbeat;
    let mut failing_since: Option<Instant> = None;
    let mut last_error = String::new();
    loop {
        if Instant::now() > deadline {
            // An executor that says "running" forever does not hold the job forever.
            return Followed::Lost("no result within the job's deadline".into());
        }
        if job.cancel.is_cancelled() {
            let req = JobRequest::Cancel {
                execution_id: execution_id.to_string(),
            };
            let r = tokio::time::timeout(Duration::from_secs(5), ask(inner, peer, req)).await;
            return Followed::Cancelled(match r {
                Ok(Ok(JobResponse::Finished(f))) => Some(*f),
                _ => None,
            });
        }
        // While failing, ask for an answer at once and wait a second for it; else let
        // the executor hold the reply for a heartbeat, and wait for it a little longer.
        let (wait, per_try) = if failing_since.is_some() {
            (Duration::ZERO, Duration::from_secs(1))
        } else {
            (heartbeat, heartbeat + Duration::from_secs(3))
        };
        let req = JobRequest::Await {
            execution_id: execution_id.to_string(),
            wait_ms: wait.as_millis() as u64,
        };
        let asked = Instant::now();
        let reply = tokio::select! {
            r = tokio::time::timeout(per_try, ask(inner, peer, req)) => r,
            _ = job.cancel.cancelled() => continue,
        };
        match reply {
            Ok(Ok(JobResponse::Finished(r))) if r.execution_id == execution_id => {
                return Followed::Result(*r);
            }
            Ok(Ok(JobResponse::Running { .. })) => {
                failing_since = None;
                // An executor answering at once instead of holding the reply is paced:
                // at most one await per half heartbeat.
                let early = (heartbeat / 2).saturating_sub(asked.elapsed());
                if !early.is_zero() {
                    tokio::time::sleep(early).await;
                }
            }
            Ok(Ok(JobResponse::Unknown { .. })) => {
                return Followed::Lost("the peer no longer knows the execution".into());
            }
            Ok(Ok(JobResponse::Refused { reason })) => {
                last_error = format!("refused: {}", peer_text(&reason));
                failing_since.get_or_insert_with(Instant::now);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Ok(other)) => return Followed::Lost(format!("answered an await with {}", name(&other))),
            Ok(Err(e)) => {
                last_error = e.to_string();
                failing_since.get_or_insert_with(Instant::now);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(_) => {
                last_error = format!("no heartbeat within {} ms", per_try.as_millis());
                failing_since.get_or_insert_with(Instant::now);
            }
        }
        if let Some(t) = failing_since
            && t.elapsed() >= lost_after
        {
            return Followed::Lost(format!(
                "no answer for {} ms ({last_error})",
                lost_after.as_millis()
            ));
        }
    }
}

/// Sends a job request to `peer`, or, when `peer` is this node (its own attempt of a
/// verified job), hands it to this node's executor in process: the same offer, checks
/// and record as a peer's attempt gets, under the same rules, without the network.
pub(crate) async fn ask(
    inner: &Arc<Inner>,
    peer: PeerId,
    request: JobRequest,
) -> Result<JobResponse, hanzo_network::NetworkError> {
    if peer == inner.net.peer_id() {
        return Ok(crate::execute::handle(inner, peer, request).await);
    }
    inner.net.job(peer, request).await
}

/// Tells a lost attempt's peer to stop, until it answers or [`FENCE_FOR`] passes.
pub(crate) fn fence(inner: Arc<Inner>, peer: PeerId, execution_id: String) {
    tokio::spawn(async move {
        let until = Instant::now() + FENCE_FOR;
        while Instant::now() < until {
            let req = JobRequest::Cancel {
                execution_id: execution_id.clone(),
            };
            match tokio::time::timeout(Duration::from_secs(5), ask(&inner, peer, req)).await {
                // Refused (rate, busy) is not heard: ask again.
                Ok(Ok(JobResponse::Refused { .. })) => {}
                Ok(Ok(_)) => {
                    tracing::info!(%peer, execution = %execution_id, "a lost attempt was told to cancel");
                    return;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}

pub(crate) fn name(r: &JobResponse) -> &'static str {
    match r {
        JobResponse::Accepted { .. } => "accepted",
        JobResponse::Declined { .. } => "declined",
        JobResponse::Running { .. } => "running",
        JobResponse::Finished(_) => "finished",
        JobResponse::Unknown { .. } => "unknown",
        JobResponse::Refused { .. } => "refused",
        JobResponse::Settled { .. } => "settled",
    }
}

/// Why a remote result was not taken: `lie` when it cannot be honest.
#[derive(Debug)]
pub(crate) struct Rejected {
    pub why: String,
    pub lie: bool,
}

fn lie(why: impl Into<String>) -> Rejected {
    Rejected {
        why: why.into(),
        lie: true,
    }
}

/// Checks a result against what was sent and turns it into the job's outcome.
pub(crate) fn check_result(
    job: &Job,
    sent: &JobSpec,
    code: &Code,
    peer: PeerId,
    r: RemoteResult,
) -> Result<JobOutcome, Rejected> {
    let Some(receipt_text) = r.receipt.as_deref() else {
        // Nothing ran there (it could not fetch the code, its store failed, it
        // restarted): an attempt failed, not the job.
        let (code, message) = r
            .error
            .clone()
            .unwrap_or_else(|| ("internal".into(), "no receipt".into()));
        if r.status == "succeeded" {
            return Err(lie("a success without a receipt"));
        }
        return Err(Rejected {
            why: peer_text(&format!("{code}: {message}")),
            lie: false,
        });
    };
    let value: serde_json::Value =
        serde_json::from_str(receipt_text).map_err(|e| lie(format!("a receipt that is not JSON: {e}")))?;
    let receipt = Receipt::verify(&value).map_err(|e| lie(format!("a receipt that does not verify: {e}")))?;
    // Stored as re-encoded: it must be exactly what was signed, or the copy this node
    // keeps would not verify.
    if receipt.to_value() != value {
        return Err(lie("a receipt with fields left out or added"));
    }
    let expected = node_id(&peer).unwrap_or_default();
    if receipt.node_id != expected {
        return Err(lie(format!(
            "a receipt signed by node {}, not by the peer it was sent to ({expected})",
            receipt.node_id
        )));
    }
    if receipt.code_hash != code.sha256 {
        return Err(lie(format!(
            "a receipt for code {}, not {}",
            receipt.code_hash, code.sha256
        )));
    }
    if receipt.input_hash != hash_json(&sent.params) {
        return Err(lie("a receipt for other params"));
    }
    // What the receipt says was set aside and used is what is charged: no more than
    // was asked (an executor may lower a limit to its ceiling, never raise one), and a
    // run no longer than its timeout and the time it takes to stop a job.
    let (got, asked) = (&receipt.limits, &sent.limits);
    let over = got.memory_mb > asked.memory_mb
        || got.cpu_shares > asked.cpu_shares
        || got.timeout_ms > asked.timeout_ms
        || got.disk_mb > asked.disk_mb
        || got.max_output_bytes > asked.max_output_bytes;
    if over {
        return Err(lie("a receipt with limits above those sent"));
    }
    let longest = got.timeout_ms as f64 + RUN_GRACE_MS;
    if !(0.0..=longest).contains(&receipt.usage.wall_time_ms) {
        return Err(lie(format!(
            "a receipt claiming a run of {} ms, longer than its timeout allows",
            receipt.usage.wall_time_ms
        )));
    }
    let result = match r.status.as_str() {
        "succeeded" => {
            let text = r
                .output
                .as_deref()
                .ok_or_else(|| lie("a success without an output"))?;
            let output: serde_json::Value =
                serde_json::from_str(text).map_err(|e| lie(format!("an output that is not JSON: {e}")))?;
            receipt
                .check_output(&output)
                .map_err(|e| lie(format!("an output its receipt does not match: {e}")))?;
            if receipt.status != Outcome::Succeeded {
                return Err(lie("a success whose receipt says it failed"));
            }
            Ok(output)
        }
        "failed" | "cancelled" => {
            if receipt.status != Outcome::Failed {
                return Err(lie("a failure whose receipt says it succeeded"));
            }
            let (code, message) = r
                .error
                .clone()
                .unwrap_or_else(|| ("tool_failed".into(), "failed".into()));
            // The code this node acts on is the one the peer signed.
            if receipt.error.as_ref().is_some_and(|e| e.code != code) {
                return Err(lie("a failure whose code is not its receipt's"));
            }
            let message = peer_text(&message);
            let cancelled = r.status == "cancelled" || code == "cancelled";
            if cancelled && !job.cancel.is_cancelled() {
                return Err(Rejected {
                    why: "cancelled by the peer".into(),
                    lie: false,
                });
            }
            // Only what a run can end in: the peer does not get to make the job
            // `unschedulable`, `internal` or anything else this node would act on.
            match code.as_str() {
                "tool_failed" | "limit_exceeded" | "invalid_input" | "cancelled" => {
                    Err(ComputeError::from_parts(&code, &message))
                }
                _ => Err(ComputeError::ToolFailed(message)),
            }
        }
        other => return Err(lie(format!("an unknown status '{other}'"))),
    };
    // The usage recorded is the signed one, not the reply's own copy.
    Ok(JobOutcome {
        job_id: job.id.clone(),
        result,
        usage: receipt.usage.clone(),
        logs: r.logs,
        receipt: Some(receipt),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanzo_compute::receipt::ReceiptBody;
    use hanzo_compute::{NodeKey, ResourceLimits};
    use serde_json::json;
    use std::time::SystemTime;

    /// A result of `key`'s node for `sent`, its receipt claiming `limits` and a run of
    /// `wall_ms`.
    fn result(key: &NodeKey, sent: &JobSpec, limits: ResourceLimits, wall_ms: f64) -> RemoteResult {
        let output = json!({"ok": 1});
        let receipt = Receipt::sign(
            ReceiptBody {
                job_id: "j".into(),
                runtime: RuntimeKind::Wasm,
                function: "run".into(),
                code_hash: "ab".repeat(32),
                input_hash: hash_json(&sent.params),
                result: Ok(hash_json(&output)),
                usage: Usage {
                    wall_time_ms: wall_ms,
                    ..Default::default()
                },
                limits,
                deterministic: false,
                started_at: SystemTime::now(),
                finished_at: SystemTime::now(),
                context_hash: "11".repeat(32),
                runtime_version: "v".into(),
                nonce: None,
            },
            key,
        )
        .unwrap();
        RemoteResult {
            execution_id: "e".into(),
            status: "succeeded".into(),
            output: Some(output.to_string()),
            error: None,
            usage: None,
            logs: Vec::new(),
            receipt: Some(receipt.to_value().to_string()),
        }
    }

    /// A peer's key and id, a job, what was sent of it, and its code.
    fn setup() -> (NodeKey, PeerId, Job, JobSpec, Code) {
        let key = NodeKey::from_seed([9; 32]);
        let peer = hanzo_network::identity::peer_id_of_node(key.id()).unwrap();
        let job = Job::new(JobSpec::new(RuntimeKind::Wasm, "sha256:00"));
        let sent = job.spec.clone();
        let code = Code {
            sha256: "ab".repeat(32),
            bytes: 1,
            ext: None,
            image_id: None,
        };
        (key, peer, job, sent, code)
    }

    #[test]
    fn a_receipt_charging_more_than_was_sent_is_a_lie() {
        let (key, peer, job, sent, code) = setup();
        let check = |limits: ResourceLimits, wall: f64| {
            check_result(&job, &sent, &code, peer, result(&key, &sent, limits, wall))
        };
        check(sent.limits.clone(), 12.5).unwrap();
        // Lowered to a ceiling: fine, and charged less.
        let mut lower = sent.limits.clone();
        lower.memory_mb /= 2;
        check(lower, 12.5).unwrap();
        let mut more = sent.limits.clone();
        more.cpu_shares = u32::MAX;
        let e = check(more, 12.5).unwrap_err();
        assert!(e.lie && e.why.contains("limits above"), "{}", e.why);
        let e = check(sent.limits.clone(), 1e18).unwrap_err();
        assert!(e.lie && e.why.contains("longer than its timeout"), "{}", e.why);
    }

    #[test]
    fn a_peers_receipt_signed_in_a_batch_is_checked_like_one_signed_alone() {
        let (key, peer, job, sent, code) = setup();
        // The peer's receipt and two others of its, signed together.
        let batched = |r: RemoteResult| {
            let alone: Receipt = serde_json::from_str(r.receipt.as_deref().unwrap()).unwrap();
            let mut others = vec![alone.clone(), alone.clone()];
            others[0].job_id = "other-1".into();
            others[1].job_id = "other-2".into();
            let mut all = Receipt::sign_all([others, vec![alone]].concat(), &key);
            let mine = all.pop().unwrap().unwrap();
            assert_eq!(mine.batch.as_ref().map(|b| (b.index, b.size)), Some((2, 3)));
            RemoteResult {
                receipt: Some(mine.to_value().to_string()),
                ..r
            }
        };
        let r = batched(result(&key, &sent, sent.limits.clone(), 12.5));
        let outcome = check_result(&job, &sent, &code, peer, r.clone()).unwrap();
        assert!(outcome.receipt.unwrap().batch.is_some(), "kept as signed");
        // Its claims are checked as any receipt's: here, limits above what was sent.
        let mut more = sent.limits.clone();
        more.memory_mb *= 2;
        let e = check_result(&job, &sent, &code, peer, batched(result(&key, &sent, more, 12.5))).unwrap_err();
        assert!(e.lie && e.why.contains("limits above"), "{}", e.why);
        // Another receipt's place in the batch is a lie.
        let mut v: serde_json::Value = serde_json::from_str(r.receipt.as_deref().unwrap()).unwrap();
        v["batch"]["index"] = json!(0);
        let e = check_result(
            &job,
            &sent,
            &code,
            peer,
            RemoteResult {
                receipt: Some(v.to_string()),
                ..r
            },
        )
        .unwrap_err();
        assert!(e.lie && e.why.contains("not in the batch"), "{}", e.why);
    }
}
