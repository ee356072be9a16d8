//! The executor's side: peers' offers, awaits and cancels.
//!
//! Boundary: everything here comes from a peer, which is never trusted. A peer's job
//! runs under this node's rules, not the peer's: only the runtimes offered to peers,
//! no mounts, no user, no network unless `peer_network`, limits clamped to this
//! node's ceilings, priority 0, no retries (the submitter re-places), placement
//! `local` (a job is never forwarded on), at most `max_remote_jobs_per_peer` at once,
//! and only while this node has free capacity now (a full node declines rather than
//! queueing a stranger's job behind its own).

use crate::Inner;
use crate::code::{self, FetchError};
use hanzo_compute::{ComputeError, JobOutcome, JobSpec, Network, Placement, RuntimeKind, Usage};
use hanzo_jobstore::{JobRecord, JobStatus, Origin};
use hanzo_network::protocol::{MAX_AWAIT_MS, MAX_OFFER_HOLD_MS, MAX_REMOTE_LOG_BYTES, valid_id};
use hanzo_network::{Conduct, JobRequest, JobResponse, Offer, PeerId, RemoteResult};
use hanzo_scheduler::Resources;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The executions this node runs for peers: execution id → (origin peer, local job
/// id). The store has the same (`find_execution`), and is asked when this map does
/// not know an id (after a restart).
#[derive(Default)]
pub(crate) struct Executions {
    map: Mutex<HashMap<String, (PeerId, String)>>,
    running: Mutex<HashMap<PeerId, u32>>,
    /// What accepted peers' jobs will take once their code is here: counted as in use
    /// from the acceptance, so a node never accepts more than it can start.
    pending: Mutex<Resources>,
    /// Offers of each peer that failed here before running (code that never came or
    /// did not match), and since when: a peer failing many is declined for an hour.
    failures: Mutex<HashMap<PeerId, (u32, std::time::Instant)>>,
    /// `Await`s each peer has open: each can hold a result in memory.
    awaits: Mutex<HashMap<PeerId, u32>>,
}

/// The largest job spec a peer may offer (the HTTP API's cap on a job body).
const MAX_SPEC_BYTES: usize = 1024 * 1024;
/// Offers of one peer that may fail here in an hour before it is declined.
const MAX_FAILED_OFFERS: u32 = 20;
/// `Await`s one peer may have open at once beyond its running jobs (an honest
/// submitter has one per job it placed here, and one more while it collects a result).
const SPARE_AWAITS_PER_PEER: u32 = 8;
/// How long resolving a peer's image reference may take here (a look-up in the
/// daemon, or a pull the pull policy asks for): under the submitter's 15 s wait for
/// an answer to its offer.
const RESOLVE_IMAGE_FOR: Duration = Duration::from_secs(10);

impl Executions {
    fn lock_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (PeerId, String)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, u32>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Peers' jobs not yet ended here.
    pub fn running(&self) -> u64 {
        self.lock_running().values().map(|n| u64::from(*n)).sum()
    }

    /// Takes one of `peer`'s slots; false when it has `max` already.
    fn take(&self, peer: PeerId, max: u32) -> bool {
        let mut r = self.lock_running();
        let n = r.entry(peer).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// What accepted peers' jobs still fetching their code will take.
    pub fn pending(&self) -> Resources {
        *self.lock_pending()
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Resources> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `peer` failed too many offers in the last hour.
    fn failing(&self, peer: PeerId) -> bool {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.get(&peer)
            .is_some_and(|(n, since)| *n >= MAX_FAILED_OFFERS && since.elapsed() < Duration::from_secs(3600))
    }

    fn failed(&self, peer: PeerId) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let e = f.entry(peer).or_insert((0, std::time::Instant::now()));
        if e.1.elapsed() >= Duration::from_secs(3600) {
            *e = (0, std::time::Instant::now());
        }
        e.0 += 1;
    }

    /// Opens one of `peer`'s awaits; false when it has its share open.
    fn open_await(&self, peer: PeerId, max: u32) -> bool {
        let mut a = self.awaits.lock().unwrap_or_else(|e| e.into_inner());
        let n = a.entry(peer).or_default();
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn close_await(&self, peer: PeerId) {
        let mut a = self.awaits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = a.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                a.remove(&peer);
            }
        }
    }

    fn release(&self, peer: PeerId) {
        let mut r = self.lock_running();
        if let Some(n) = r.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                r.remove(&peer);
            }
        }
    }
}

pub(crate) async fn handle(inner: &std::sync::Arc<Inner>, peer: PeerId, request: JobRequest) -> JobResponse {
    match request {
        JobRequest::Offer(offer) => offer_job(inner, peer, offer).await,
        JobRequest::Await { execution_id, .. } | JobRequest::Cancel { execution_id }
            if !valid_id(&execution_id) =>
        {
            inner.net.report(peer, Conduct::Bad).await;
            JobResponse::Refused {
                reason: "malformed execution id".into(),
            }
        }
        JobRequest::Await {
            execution_id,
            wait_ms,
        } => {
            let max = inner
                .options
                .max_remote_jobs_per_peer
                .saturating_add(SPARE_AWAITS_PER_PEER);
            if !inner.executions.open_await(peer, max) {
                return JobResponse::Refused {
                    reason: format!("{max} awaits of yours are open here already"),
                };
            }
            let r = await_job(inner, peer, execution_id, wait_ms).await;
            inner.executions.close_await(peer);
            r
        }
        JobRequest::Cancel { execution_id } => cancel_job(inner, peer, execution_id).await,
        JobRequest::Settle(settlements) => settle_jobs(inner, peer, settlements).await,
    }
}

/// An acceptance is a few hundred bytes; a settlement's text is read no further.
const MAX_ACCEPTANCE_BYTES: usize = 4096;

/// The submitter's decisions on results of this node's (CONTRACTS §8), a batch of
/// them. An acceptance must be signed by that submitter's key, name this node's stored
/// receipt of an execution that peer placed, and charge exactly its price; it is
/// stored once with the job and earned. A rejection is stored once too, and earns
/// nothing. A repeated settlement changes nothing. The whole batch is read and checked
/// in one trip off the async workers, and its writes share a commit.
async fn settle_jobs(
    inner: &Inner,
    peer: PeerId,
    settlements: Vec<hanzo_network::Settlement>,
) -> JobResponse {
    let malformed = settlements.len() > hanzo_network::protocol::MAX_SETTLEMENTS
        || settlements.iter().any(|s| {
            !valid_id(&s.execution_id)
                || s.acceptance
                    .as_ref()
                    .is_some_and(|a| a.len() > MAX_ACCEPTANCE_BYTES)
                || s.reason.as_ref().is_some_and(|r| r.len() > MAX_ACCEPTANCE_BYTES)
        });
    if malformed {
        inner.net.report(peer, Conduct::Bad).await;
        return JobResponse::Refused {
            reason: format!(
                "malformed settlements (at most {} of at most {MAX_ACCEPTANCE_BYTES} bytes each, valid execution ids)",
                hanzo_network::protocol::MAX_SETTLEMENTS
            ),
        };
    }
    let store = inner.host.store().clone();
    let submitter = hanzo_network::identity::node_id(&peer).unwrap_or_default();
    let origin = peer.to_string();
    let from = origin.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut refused = 0u32;
        for s in settlements {
            // The job this node ran for that peer under that execution id, ended and
            // not settled yet; anything else is skipped.
            let Ok(Some(record)) = store.find_execution(&s.execution_id) else {
                continue;
            };
            if record.origin.as_ref().is_none_or(|o| o.peer_id != from)
                || !record.status.is_terminal()
                || record.acceptance.is_some()
            {
                continue;
            }
            let Some(text) = s.acceptance else {
                let why = s
                    .reason
                    .as_deref()
                    .map(crate::submit::peer_text)
                    .unwrap_or_default();
                out.push((record.id, Checked::Rejected(serde_json::json!({"rejected": why}))));
                continue;
            };
            // This node's own receipt, as stored: read, not verified again.
            let receipt = record
                .receipt
                .and_then(|v| serde_json::from_value::<hanzo_compute::Receipt>(v).ok());
            let accepted = receipt.and_then(|receipt| {
                let value: serde_json::Value = serde_json::from_str(&text).ok()?;
                let a = hanzo_compute::billing::Acceptance::verify(&value, &receipt).ok()?;
                (a.submitter == submitter && a.execution_id == s.execution_id).then_some((a, value))
            });
            match accepted {
                Some((a, value)) => out.push((record.id, Checked::Accepted(Box::new(a), value))),
                None => refused += 1,
            }
        }
        (out, refused)
    })
    .await;
    let Ok((checked, refused)) = checked else {
        return JobResponse::Refused {
            reason: "this node could not read its store".into(),
        };
    };
    if refused > 0 {
        // Signed by another key, for another receipt or at a wrong amount.
        inner.net.report(peer, Conduct::Bad).await;
    }
    // Queued together, so that the writer commits them as one.
    let mut writes = tokio::task::JoinSet::new();
    for (i, (id, c)) in checked.iter().enumerate() {
        let stored = match c {
            Checked::Accepted(_, v) | Checked::Rejected(v) => v.clone(),
        };
        let store = inner.host.store().clone();
        let id = id.clone();
        writes.spawn(async move {
            let r = store
                .set_acceptance(hanzo_jobstore::Accepted::Job(id), &stored)
                .await;
            (i, matches!(r, Ok(true)))
        });
    }
    let mut stored = vec![false; checked.len()];
    while let Some(Ok((i, ok))) = writes.join_next().await {
        stored[i] = ok;
    }
    let mut recorded = 0;
    for ((_, c), stored) in checked.into_iter().zip(stored) {
        if !stored {
            continue;
        }
        recorded += 1;
        match c {
            Checked::Accepted(a, _) => {
                let disputed = a.price != crate::ledger::rates(&inner.options.price);
                if disputed {
                    tracing::warn!(%peer, execution = %a.execution_id, "a peer accepted this node's result at another price than this node's");
                }
                inner.ledger.earn(&origin, a.amount, disputed);
            }
            Checked::Rejected(_) => inner.ledger.rejected(&origin),
        }
    }
    JobResponse::Settled { recorded }
}

/// A settlement, checked.
enum Checked {
    /// Taken: the acceptance and its JSON.
    Accepted(Box<hanzo_compute::billing::Acceptance>, serde_json::Value),
    /// Not taken: `{"rejected": reason}`, stored in the acceptance's place.
    Rejected(serde_json::Value),
}

/// 32 lower-case hex digits (a job id, a nonce).
fn is_hex32(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn declined(reason: impl Into<String>) -> JobResponse {
    JobResponse::Declined {
        reason: reason.into(),
        busy: false,
    }
}

/// Declined for want of capacity now: the submitter may offer it again later.
fn busy(reason: String) -> JobResponse {
    JobResponse::Declined { reason, busy: true }
}

/// Makes a peer's spec one this node will run, or says why not.
pub(crate) fn sanitize(inner: &Inner, mut spec: JobSpec, verified: bool) -> Result<JobSpec, String> {
    let o = &inner.options;
    if !o.offer_runtimes.contains(&spec.runtime) {
        return Err(format!("the {} runtime is not offered to peers", spec.runtime));
    }
    if !spec.mounts.is_empty() {
        return Err("mounts are never granted to peers' jobs".into());
    }
    if spec.network == Network::Full && !o.peer_network {
        return Err("network access is not offered to peers ([network] peer_network = false)".into());
    }
    // A container image travels by reference, pinned by the offer's image id; any
    // other code by hash.
    if spec.runtime != RuntimeKind::Docker
        && hanzo_compute::parse_digest_source(&spec.source)
            .ok()
            .flatten()
            .is_none()
    {
        return Err("the source must travel by hash (sha256:<hex>)".into());
    }
    spec.validate().map_err(|e| e.to_string())?;
    spec.user = None;
    spec.native = false;
    spec.priority = 0;
    spec.retries = 0;
    spec.placement = Placement::Local;
    // An attempt of a verified job is one execution here; the comparing is the
    // submitter's. A peer's spec never makes this node place work elsewhere.
    spec.verification = hanzo_compute::Verification::None;
    let c = &o.ceilings;
    if verified {
        // An attempt of a verified job runs exactly as sent, or its receipt's context
        // would not match the others': over a ceiling, it is declined, not lowered.
        let l = &spec.limits;
        let over = [
            ("memory_mb", l.memory_mb > c.memory_mb),
            ("timeout_ms", l.timeout_ms > c.timeout_ms),
            ("disk_mb", l.disk_mb > c.disk_mb),
            ("cpu_shares", l.cpu_shares > c.cpu_shares),
            ("max_output_bytes", l.max_output_bytes > c.max_output_bytes),
            ("fuel", l.fuel.is_some_and(|f| f > c.fuel)),
            (
                "network_bandwidth_mbps",
                l.network_bandwidth_mbps
                    .is_some_and(|b| b > c.network_bandwidth_mbps),
            ),
        ];
        if let Some((name, _)) = over.iter().find(|(_, over)| *over) {
            return Err(format!(
                "a verified job runs with the limits it was sent, and its {name} is over this node's ceiling"
            ));
        }
        return Ok(spec);
    }
    let l = &mut spec.limits;
    l.memory_mb = l.memory_mb.min(c.memory_mb);
    l.timeout_ms = l.timeout_ms.min(c.timeout_ms);
    l.disk_mb = l.disk_mb.min(c.disk_mb);
    l.cpu_shares = l.cpu_shares.min(c.cpu_shares);
    l.max_output_bytes = l.max_output_bytes.min(c.max_output_bytes);
    l.fuel = l.fuel.map(|f| f.min(c.fuel));
    l.network_bandwidth_mbps = l.network_bandwidth_mbps.map(|b| b.min(c.network_bandwidth_mbps));
    Ok(spec)
}

async fn offer_job(inner: &std::sync::Arc<Inner>, peer: PeerId, offer: Offer) -> JobResponse {
    if !valid_id(&offer.execution_id) {
        inner.net.report(peer, Conduct::Bad).await;
        return JobResponse::Refused {
            reason: "malformed execution id".into(),
        };
    }
    // An offer repeated after a lost reply: the same answer, never a second run. Only
    // to the peer that made it: an id is no secret, and another peer naming it must
    // not be told its offer was taken (nor block the owner's).
    let owner = inner
        .executions
        .lock_map()
        .get(&offer.execution_id)
        .map(|(owner, _)| *owner);
    match owner {
        Some(owner) if owner == peer => {
            return JobResponse::Accepted {
                execution_id: offer.execution_id,
                price: inner.options.price,
                result: None,
            };
        }
        Some(_) => {
            inner.net.report(peer, Conduct::Bad).await;
            return declined("this execution id is another peer's");
        }
        None => {}
    }
    if offer.spec.len() > MAX_SPEC_BYTES {
        inner.net.report(peer, Conduct::Bad).await;
        return declined(format!("a job spec over {MAX_SPEC_BYTES} bytes"));
    }
    if inner.executions.failing(peer) {
        return declined(format!(
            "{MAX_FAILED_OFFERS} of this peer's offers failed here in the last hour (code that never came or did not match)"
        ));
    }
    let spec: JobSpec = match serde_json::from_str(&offer.spec) {
        Ok(s) => s,
        Err(e) => {
            inner.net.report(peer, Conduct::Bad).await;
            return declined(format!("malformed job spec: {e}"));
        }
    };
    // An attempt of a verified job: its binding must be well formed (both 32 hex).
    let attempt = match &offer.attempt {
        None => None,
        Some(b) if is_hex32(&b.job_id) && is_hex32(&b.nonce) => Some(hanzo_compute::Attempt {
            job_id: b.job_id.clone(),
            nonce: b.nonce.clone(),
        }),
        Some(_) => {
            inner.net.report(peer, Conduct::Bad).await;
            return declined("a malformed verification binding (job id and nonce are 32 hex digits)");
        }
    };
    let mut spec = match sanitize(inner, spec, attempt.is_some()) {
        Ok(s) => s,
        Err(why) => return declined(why),
    };
    let sha = if spec.runtime == RuntimeKind::Docker {
        String::new()
    } else {
        hanzo_compute::parse_digest_source(&spec.source)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    // Where the code goes: a module into the module store (under its quota); a script
    // into a directory of its own for this job's life, its path the job's source.
    let target = match spec.runtime {
        RuntimeKind::Wasm => {
            let Some(wasm) = inner.host.wasm() else {
                return declined("the wasm runtime is not enabled here");
            };
            let quota = wasm.module_store().quota();
            if quota > 0 && offer.code_bytes > quota {
                return declined(format!(
                    "the module ({} bytes) is over this node's module quota",
                    offer.code_bytes
                ));
            }
            Target::Module(wasm)
        }
        RuntimeKind::Deno | RuntimeKind::Python => {
            let allowed: &[&str] = if spec.runtime == RuntimeKind::Python {
                &["py"]
            } else {
                &["ts", "js", "mts", "mjs", "tsx"]
            };
            let Some(ext) = offer.file_ext.as_deref().filter(|e| allowed.contains(e)) else {
                return declined(format!(
                    "a {} script needs one of the extensions .{}",
                    spec.runtime,
                    allowed.join(", .")
                ));
            };
            if offer.code_bytes > code::SCRIPT_MAX_BYTES {
                return declined(format!("a script of {} bytes", offer.code_bytes));
            }
            let dir = inner
                .host
                .code_dir()
                .join("from-peers")
                .join(format!("{sha}-{}", &hanzo_compute::new_job_id()[16..]));
            let path = dir.join(format!("tool.{ext}"));
            spec.source = path.display().to_string();
            Target::Script { dir, path }
        }
        RuntimeKind::Docker => match pin_image(inner, &spec, offer.image_id.as_deref()).await {
            Ok(id) => {
                // Run by the id checked, not by the reference: a tag moved between
                // this check and the run cannot swap the image, and the receipt's
                // `code_hash` is the pinned id.
                spec.source = format!("sha256:{id}");
                Target::Image
            }
            Err(why) => return declined(why),
        },
        other => return declined(format!("{other} code does not travel between nodes")),
    };
    // Free capacity now, not a queue place: a full node says so and the submitter
    // tries its next candidate.
    let scheduler = inner.host.scheduler();
    let snap = scheduler.snapshot();
    let demand = Resources::demand(&spec.limits);
    let pending = *inner.executions.lock_pending();
    let free = snap.capacity.minus(&snap.in_use).minus(&pending);
    if snap.queued > 0 || !demand.fits_in(&free) {
        return busy(format!(
            "no free capacity ({} of {} slots in use, {} queued)",
            snap.in_use.jobs, snap.capacity.jobs, snap.queued
        ));
    }
    if !inner
        .executions
        .take(peer, inner.options.max_remote_jobs_per_peer)
    {
        return busy(format!(
            "{} of this peer's jobs are running here already ([network] max_remote_jobs_per_peer)",
            inner.options.max_remote_jobs_per_peer
        ));
    }
    let permit = match scheduler.reserve(&spec).await {
        Ok(p) => p,
        Err(rejection) => {
            inner.executions.release(peer);
            return declined(rejection.to_string());
        }
    };
    let origin = Origin {
        peer_id: peer.to_string(),
        execution_id: offer.execution_id.clone(),
    };
    let (record, created) = match inner.host.store().submit_for_peer(spec.clone(), origin).await {
        Ok(r) => r,
        Err(e) => {
            inner.executions.release(peer);
            return declined(format!("this node cannot store the job: {e}"));
        }
    };
    inner
        .executions
        .lock_map()
        .insert(offer.execution_id.clone(), (peer, record.id.clone()));
    if !created {
        inner.executions.release(peer);
        return JobResponse::Accepted {
            execution_id: offer.execution_id,
            price: inner.options.price,
            result: None,
        };
    }
    {
        let mut p = inner.executions.lock_pending();
        *p = p.plus(&demand);
    }
    let done = inner.host.wait_for(&record.id);
    // A second waiter for the offer's hold (below), registered before the job can end.
    let held = (offer.wait_ms > 0).then(|| inner.host.wait_for(&record.id));
    let held_id = record.id.clone();
    let task_inner = inner.clone();
    let code_bytes = offer.code_bytes;
    let execution_id = offer.execution_id.clone();
    // The code must arrive within the submitter's deadline, and at a pace: a minute
    // plus a second per MiB at most.
    let fetch_for = Duration::from_millis(offer.deadline_ms)
        .min(Duration::from_secs(60 + code_bytes.div_ceil(1024 * 1024)));
    tokio::spawn(async move {
        let id = record.id.clone();
        let mut job = task_inner.host.job(id.clone(), spec);
        job.origin = Some(peer.to_string());
        job.attempt = attempt;
        let fetched = tokio::time::timeout(
            fetch_for,
            ensure_code(&task_inner, &target, peer, &sha, code_bytes),
        )
        .await
        .unwrap_or_else(|_| Err(FetchError::Refused("the module did not arrive in time".into())));
        {
            let mut p = task_inner.executions.lock_pending();
            *p = p.minus(&demand);
        }
        // A stalling node (tests only): it holds the job and its slot and answers
        // "running" to every await, for the job's whole timeout and a minute more
        // (bounded: the fail point must not leak the task), then runs it late.
        if fetched.is_ok() && hanzo_compute::failpoints::hit(hanzo_compute::failpoints::STALL) {
            let stall = Duration::from_millis(job.spec.limits.timeout_ms) + Duration::from_secs(60);
            tokio::select! {
                _ = job.cancel.cancelled() => {}
                _ = tokio::time::sleep(stall) => {}
            }
        }
        match fetched {
            Ok(()) => {
                if let Err(rejection) = permit.submit(job.clone()) {
                    fail(&task_inner, &job, rejection.to_compute_error()).await;
                }
            }
            Err(e) => {
                drop(permit);
                task_inner.executions.failed(peer);
                if matches!(e, FetchError::Lied(_)) {
                    task_inner.net.report(peer, Conduct::Bad).await;
                }
                fail(
                    &task_inner,
                    &job,
                    ComputeError::invalid(format!("module fetch from the submitter: {e}")),
                )
                .await;
            }
        }
        // Peers rank by free capacity: say at once that a slot is taken, and again
        // when it is free (rate-limited by the network to one per half interval).
        task_inner.net.advertise_now().await;
        let ended = done.await.ok().flatten();
        task_inner.executions.release(peer);
        if let Target::Script { dir, .. } = &target {
            let dir = dir.clone();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
        // Later lookups of this execution go to the store (find_execution).
        task_inner.executions.lock_map().remove(&execution_id);
        task_inner.net.advertise_now().await;
        // What the peer owes is earned when it settles (`settle_job`): its signed
        // acceptance of this node's receipt, or nothing for a result it did not take.
        let _ = (ended, id);
    });
    // A short job's result goes back with its acceptance. The job is this node's from
    // here whatever happens to the answer: a submitter that never gets it fences the
    // execution id (cancels it) as for any lost reply.
    let mut result = None;
    // A node that drops results (tests only) never sends one back: below, nor to an
    // await.
    let held = held.filter(|_| !hanzo_compute::failpoints::hit(hanzo_compute::failpoints::DROP_RESULT));
    if let Some(held) = held {
        let hold = Duration::from_millis(offer.wait_ms.min(MAX_OFFER_HOLD_MS));
        match tokio::time::timeout(hold, held).await {
            // The outcome as stored, in hand: no read of the store.
            Ok(Ok(Some(outcome))) => result = Some(Box::new(result_of(&offer.execution_id, &outcome))),
            Ok(_) => {
                if let Some(JobResponse::Finished(r)) = finished(inner, &offer.execution_id, &held_id).await {
                    result = Some(r);
                }
            }
            Err(_) => {}
        }
    }
    JobResponse::Accepted {
        execution_id: offer.execution_id,
        price: inner.options.price,
        result,
    }
}

async fn fail(inner: &Inner, job: &hanzo_compute::Job, error: ComputeError) {
    let outcome = JobOutcome {
        job_id: job.id.clone(),
        result: Err(error),
        usage: Usage::default(),
        logs: Vec::new(),
        receipt: None,
    };
    // `finished` without `starting`: the hooks record the end of a queued job.
    inner.host.hooks().finished(job, &outcome).await;
}

/// The image id a peer's Docker job pins, once this node's own Docker runtime has
/// resolved the job's reference to that same id (under this node's pull policy and
/// registry, bounded by [`RESOLVE_IMAGE_FOR`]); otherwise why it is declined.
async fn pin_image(inner: &Inner, spec: &JobSpec, pinned: Option<&str>) -> Result<String, String> {
    let Some(pinned) = pinned else {
        return Err("a docker job must pin its image id (the offer has no image_id)".into());
    };
    let pinned = pinned.strip_prefix("sha256:").unwrap_or(pinned);
    if pinned.len() != 64 || !pinned.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("the offer's image_id is not a sha256 (64 lower-case hex digits)".into());
    }
    let Some(runtime) = inner
        .host
        .scheduler()
        .compute()
        .runtime(RuntimeKind::Docker)
        .cloned()
    else {
        return Err("the docker runtime is not enabled here".into());
    };
    let reference = crate::submit::peer_text(&spec.source);
    // Its own task, so that the offer's handler holds nothing while the daemon answers.
    let looked_up = spec.clone();
    let resolving = tokio::spawn(async move { runtime.resolve_code(&looked_up).await });
    let abort = resolving.abort_handle();
    match tokio::time::timeout(RESOLVE_IMAGE_FOR, resolving).await {
        Ok(Ok(Ok(Some(id)))) if id == pinned => Ok(id),
        Ok(Ok(Ok(Some(id)))) => Err(format!(
            "image {reference} is sha256:{id} here; the job pins sha256:{pinned}"
        )),
        Ok(Ok(Ok(None))) => Err("the docker runtime here cannot resolve images".into()),
        Ok(Ok(Err(e))) => Err(format!("image {reference}: {e}")),
        Ok(Err(e)) => Err(format!("image {reference}: {e}")),
        Err(_) => {
            abort.abort();
            Err(format!(
                "image {reference} could not be resolved here within {} s",
                RESOLVE_IMAGE_FOR.as_secs()
            ))
        }
    }
}

/// Where a peer's code is put.
enum Target {
    /// A container image, already here: nothing to fetch.
    Image,
    /// A WASM module, into the module store.
    Module(std::sync::Arc<hanzo_wasm_runtime::WasmRuntime>),
    /// A script, into a file of this job's own.
    Script {
        dir: std::path::PathBuf,
        path: std::path::PathBuf,
    },
}

/// Fetches the job's code from the submitter (unless a module is here already) and
/// puts it where the job's source says.
async fn ensure_code(
    inner: &Inner,
    target: &Target,
    peer: PeerId,
    sha: &str,
    max_bytes: u64,
) -> Result<(), FetchError> {
    match target {
        Target::Image => Ok(()),
        Target::Module(wasm) => ensure_module(inner, wasm, peer, sha, max_bytes).await,
        Target::Script { path, .. } => {
            let bytes = code::fetch(inner, peer, sha, max_bytes.min(code::SCRIPT_MAX_BYTES)).await?;
            let path = path.clone();
            tokio::task::spawn_blocking(move || code::write_file(&path, &bytes))
                .await
                .map_err(|e| FetchError::Refused(e.to_string()))?
                .map_err(|e| FetchError::Refused(format!("cannot keep the script: {e}")))
        }
    }
}

/// Makes sure the module is in this node's store, fetching it from the submitter.
async fn ensure_module(
    inner: &Inner,
    wasm: &std::sync::Arc<hanzo_wasm_runtime::WasmRuntime>,
    peer: PeerId,
    sha: &str,
    max_bytes: u64,
) -> Result<(), FetchError> {
    if wasm.module_store().contains(sha) {
        return Ok(());
    }
    // No larger than a module the store would take.
    let limit = max_bytes.min(hanzo_wasm_runtime::MAX_MODULE_BYTES);
    let bytes = code::fetch(inner, peer, sha, limit).await?;
    let wasm = wasm.clone();
    let stored = tokio::task::spawn_blocking(move || wasm.add_module(&bytes))
        .await
        .map_err(|e| FetchError::Refused(e.to_string()))?
        .map_err(|e| FetchError::Lied(format!("the module is not one this node runs: {e}")))?;
    if stored != sha {
        return Err(FetchError::Lied(format!(
            "the module stored as {stored}, not {sha}"
        )));
    }
    Ok(())
}

/// The local job behind an execution id, when `peer` is the one that placed it.
async fn lookup(inner: &Inner, peer: PeerId, execution_id: &str) -> Option<String> {
    if let Some((owner, id)) = inner.executions.lock_map().get(execution_id).cloned() {
        return (owner == peer).then_some(id);
    }
    let store = inner.host.store().clone();
    let exec = execution_id.to_string();
    let record = tokio::task::spawn_blocking(move || store.find_execution(&exec))
        .await
        .ok()?
        .ok()??;
    let origin = record.origin.as_ref()?;
    (origin.peer_id == peer.to_string()).then(|| {
        // Remembered while it runs (the map is emptied as each job ends); an ended
        // one is looked up in the store each time, or the map would keep every
        // settled execution for good.
        if !record.status.is_terminal() {
            inner
                .executions
                .lock_map()
                .insert(execution_id.to_string(), (peer, record.id.clone()));
        }
        record.id.clone()
    })
}

async fn await_job(inner: &Inner, peer: PeerId, execution_id: String, wait_ms: u64) -> JobResponse {
    let Some(id) = lookup(inner, peer, &execution_id).await else {
        return JobResponse::Unknown { execution_id };
    };
    if hanzo_compute::failpoints::hit(hanzo_compute::failpoints::DROP_RESULT) {
        return JobResponse::Unknown { execution_id };
    }
    if let Some(r) = finished(inner, &execution_id, &id).await {
        return r;
    }
    // Register, then look again, so an end between the two is not missed (and no
    // waiter is left behind for a job that had already ended).
    let done = inner.host.wait_for(&id);
    if let Some(r) = finished(inner, &execution_id, &id).await {
        return r;
    }
    let wait = Duration::from_millis(wait_ms.min(MAX_AWAIT_MS));
    let _ = tokio::time::timeout(wait, done).await;
    finished(inner, &execution_id, &id)
        .await
        .unwrap_or(JobResponse::Running { execution_id })
}

/// The execution's result when its job has ended.
async fn finished(inner: &Inner, execution_id: &str, id: &str) -> Option<JobResponse> {
    let store = inner.host.store().clone();
    let key = id.to_string();
    let (raw, logs) = tokio::task::spawn_blocking(move || -> Option<_> {
        let raw = store.get_raw(&key).ok()??;
        if !raw.record.status.is_terminal() {
            return Some((raw, None));
        }
        let logs = store.logs(&key).ok().flatten().unwrap_or_default();
        Some((raw, Some(logs)))
    })
    .await
    .ok()??;
    let mut logs = logs?;
    logs.truncate(MAX_REMOTE_LOG_BYTES);
    Some(JobResponse::Finished(Box::new(result(
        execution_id,
        &raw.record,
        raw.output,
        logs,
    ))))
}

/// The result of an execution from its outcome as the store recorded it: the same
/// as [`result`] makes from the stored record.
fn result_of(execution_id: &str, o: &JobOutcome) -> RemoteResult {
    let (status, output, error) = match &o.result {
        Ok(v) => ("succeeded", Some(v.to_string()), None),
        Err(e) => {
            let status = if matches!(e, ComputeError::Cancelled) {
                "cancelled"
            } else {
                "failed"
            };
            // As the store records it (`JobError`), so that both paths agree.
            let e = hanzo_jobstore::JobError::from(e);
            (status, None, Some((e.code, e.message)))
        }
    };
    let logs = o.logs[..o.logs.len().min(MAX_REMOTE_LOG_BYTES)].to_vec();
    RemoteResult {
        execution_id: execution_id.to_string(),
        status: status.to_string(),
        output,
        error,
        usage: serde_json::to_string(&o.usage).ok(),
        logs,
        receipt: o.receipt.as_ref().map(|r| r.to_value().to_string()),
    }
}

fn result(execution_id: &str, r: &JobRecord, output: Option<Vec<u8>>, logs: Vec<u8>) -> RemoteResult {
    RemoteResult {
        execution_id: execution_id.to_string(),
        status: match r.status {
            JobStatus::Succeeded => "succeeded",
            JobStatus::Cancelled => "cancelled",
            _ => "failed",
        }
        .to_string(),
        output: output.map(|o| String::from_utf8_lossy(&o).into_owned()),
        error: r.error.as_ref().map(|e| (e.code.clone(), e.message.clone())),
        usage: r.usage.as_ref().and_then(|u| serde_json::to_string(u).ok()),
        logs,
        receipt: r.receipt.as_ref().map(|v| v.to_string()),
    }
}

async fn cancel_job(inner: &Inner, peer: PeerId, execution_id: String) -> JobResponse {
    let Some(id) = lookup(inner, peer, &execution_id).await else {
        return JobResponse::Unknown { execution_id };
    };
    match inner.host.store().cancel(&id).await {
        Ok(hanzo_jobstore::CancelOutcome::Cancelled) | Ok(hanzo_jobstore::CancelOutcome::Requested) => {
            inner.host.scheduler().cancel(&id).await;
        }
        _ => {}
    }
    finished(inner, &execution_id, &id)
        .await
        .unwrap_or(JobResponse::Running { execution_id })
}
