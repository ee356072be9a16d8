//! Verified jobs (CONTRACTS §8): one job run on several distinct nodes, their signed
//! results compared, and the job's result taken only when enough of them agree.
//!
//! The boundary this crosses is the one between this node and strangers: every
//! executor may lie, drop its result, stall, or run something else than it was sent.
//! What holds them:
//! - each attempt is a placement of its own (an execution id, fenced when lost), on a
//!   distinct node: a peer id is a key, and this node counts once, as itself;
//! - every attempt gets the same binding (the submitter's job id as `HANZO_JOB_ID`,
//!   a fresh random nonce) and must return a version 2 receipt naming that nonce and
//!   the execution context recomputed here from what was sent ([`check_attempt`]);
//!   an executor cannot answer with an old receipt or one of another context;
//! - results are compared only between receipts of the same context (the same
//!   runtime version, so the same engine and profile), by output hash and status,
//!   and in the deterministic profile by fuel as well ([`decide`]);
//! - no attempt sees another's result: each peer sees only its own offer, and the
//!   comparing is done here alone.
//!
//! What it does not hold: nodes that collude and return the same wrong output agree.
//! Redundancy makes that cost N identities (and their reputation), not one.

use crate::ledger::{Attempted, MIN_CREDIBILITY};
use crate::submit::{self, Code, End, Followed, Rejected};
use crate::{Inner, new_execution_id};
use hanzo_compute::receipt::ExecutionContext;
use hanzo_compute::{ComputeError, Job, JobOutcome, JobSpec, Receipt, Usage, Verification};
use hanzo_jobstore::{JobRecord, PlacementOutcome};
use hanzo_network::{AttemptBinding, Conduct, JobRequest, JobResponse, Offer, PeerId, Price};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an attempt may run past the job's own timeout before it counts as lost
/// (an executor answering "running" for ever, a stalled one): room for a queue wait
/// and the code's transfer, and the attempt is replaced well within the job's
/// deadline.
const ATTEMPT_SLACK: Duration = Duration::from_secs(10);

/// Pause before offering again to nodes that were only full (doubling).
const BUSY_PAUSE: Duration = Duration::from_millis(100);

/// Rounds of offers again to nodes that were only full, at most: a node answering
/// "busy" for ever cannot hold a job to its deadline.
const MAX_BUSY_ROUNDS: u32 = 8;

/// Offers per node of `max_peers` a verified job makes at most, declines and lost
/// attempts included: a network of strangers that accept and fail cannot make one job
/// try them all.
const MAX_OFFERS_PER_PEER: u32 = 4;

/// The verdict of a verified job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every comparable result is the same.
    Agreed,
    /// A strict majority of at least `min_peers/2 + 1` agree; the others dissent.
    Majority,
    /// No such majority, even with the attempts added to break a tie.
    Disagreed,
    /// Fewer nodes than `min_peers` could run it.
    InsufficientPeers,
}

impl Verdict {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Verdict::Agreed => "agreed",
            Verdict::Majority => "majority",
            Verdict::Disagreed => "disagreed",
            Verdict::InsufficientPeers => "insufficient_peers",
        }
    }
}

/// One attempt's checked result.
#[derive(Debug, Clone)]
pub(crate) struct Returned {
    /// The node that ran it: its peer id (this node's own for its own attempt).
    pub peer: PeerId,
    pub execution_id: String,
    /// What it accepted the job at; `None` for this node's own attempt.
    pub price: Option<Price>,
    pub outcome: JobOutcome,
}

impl Returned {
    fn receipt(&self) -> &Receipt {
        self.outcome
            .receipt
            .as_ref()
            .expect("a checked result has a receipt")
    }
}

/// What results are compared by: two results agree when their keys are equal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    /// The execution context (already checked against what was sent).
    context_hash: Option<String>,
    /// `succeeded` or the error's code (a receipt is one or the other: `verify`).
    status: String,
    output_hash: Option<String>,
    /// Fuel, in the deterministic profile only (elsewhere it varies honestly). Whether
    /// the profile was on is the job's flag, not the receipt's claim.
    fuel: Option<u64>,
}

pub(crate) fn key(r: &Receipt, deterministic: bool) -> Key {
    Key {
        context_hash: r.context_hash.clone(),
        status: match &r.error {
            None => "succeeded".into(),
            Some(e) => e.code.clone(),
        },
        output_hash: r.output_hash.clone(),
        fuel: if deterministic {
            r.usage.fuel_consumed
        } else {
            None
        },
    }
}

/// How a set of results stands.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    /// Decided: the verdict, the indices of the agreeing results (empty unless agreed
    /// or majority), of the dissenting ones, and of those not comparable with them.
    Decided {
        verdict: Verdict,
        winners: Vec<usize>,
        dissenters: Vec<usize>,
        incomparable: Vec<usize>,
    },
    /// More results are needed: `min_peers` comparable ones have not come in, or a tie
    /// may still be broken by another attempt.
    More,
}

/// Decides on `receipts` (every attempt that returned a checked result, none still
/// running) for `min_peers`, when `can_add` more attempts may still be made.
///
/// Receipts are compared only within one runtime version: `pinned`, this node's own
/// for the job's runtime, when it has the runtime (a peer cannot choose which group it
/// is judged in by claiming a version), else the version most results name (on a tie
/// in size, the one holding the earliest result). The rest are incomparable: neither
/// agreeing nor dissenting, and not paid.
pub(crate) fn decide(
    receipts: &[&Receipt],
    min_peers: u32,
    can_add: bool,
    pinned: Option<&str>,
    deterministic: bool,
) -> Standing {
    let version = |r: &Receipt| r.runtime_version.clone().unwrap_or_default();
    let chosen = match pinned {
        Some(v) => v.to_string(),
        None => {
            let mut versions: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for (i, r) in receipts.iter().enumerate() {
                versions.entry(version(r)).or_default().push(i);
            }
            versions
                .into_iter()
                .max_by(|(_, a), (_, b)| a.len().cmp(&b.len()).then(b[0].cmp(&a[0])))
                .map(|(v, _)| v)
                .unwrap_or_default()
        }
    };
    let comparable: Vec<usize> = (0..receipts.len())
        .filter(|&i| version(receipts[i]) == chosen)
        .collect();
    let incomparable: Vec<usize> = (0..receipts.len()).filter(|i| !comparable.contains(i)).collect();
    let k = comparable.len() as u32;
    if k < min_peers {
        return if can_add {
            Standing::More
        } else {
            Standing::Decided {
                verdict: Verdict::InsufficientPeers,
                winners: Vec::new(),
                dissenters: Vec::new(),
                incomparable,
            }
        };
    }
    let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    for &i in &comparable {
        groups.entry(key(receipts[i], deterministic)).or_default().push(i);
    }
    let largest = groups
        .values()
        .max_by(|a, b| a.len().cmp(&b.len()).then(b[0].cmp(&a[0])))
        .cloned()
        .unwrap_or_default();
    let g = largest.len() as u32;
    let dissenters: Vec<usize> = comparable
        .iter()
        .copied()
        .filter(|i| !largest.contains(i))
        .collect();
    if g == k {
        return Standing::Decided {
            verdict: Verdict::Agreed,
            winners: largest,
            dissenters,
            incomparable,
        };
    }
    if g > min_peers / 2 && 2 * g > k {
        return Standing::Decided {
            verdict: Verdict::Majority,
            winners: largest,
            dissenters,
            incomparable,
        };
    }
    if can_add {
        return Standing::More;
    }
    Standing::Decided {
        verdict: Verdict::Disagreed,
        winners: Vec::new(),
        dissenters: Vec::new(),
        incomparable,
    }
}

/// Checks what only an attempt of a verified job must show, beyond what every remote
/// result is checked for (`check_result`): a version 2 receipt with this job's nonce,
/// the function asked for, and the execution context recomputed from what was sent
/// (so an executor that lowered the limits, changed the environment or gave the tool
/// another job id is caught, not compared).
pub(crate) fn check_attempt(job: &Job, sent: &JobSpec, nonce: &str, r: &Receipt) -> Result<(), Rejected> {
    let lie = |why: String| Rejected { why, lie: true };
    // Short, plain fields only: they are stored, listed and quoted in messages.
    let short = |s: &str| s.len() <= MAX_FIELD && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if !short(&r.function) || !r.runtime_version.as_deref().is_some_and(short) {
        return Err(lie(format!(
            "a receipt whose function or runtime_version is not {MAX_FIELD} printable characters at most"
        )));
    }
    if let Some(e) = &r.error
        && !RUN_ERRORS.contains(&e.code.as_str())
    {
        return Err(lie("a receipt with an error code no run can end in".into()));
    }
    if r.nonce.as_deref() != Some(nonce) {
        return Err(lie("a receipt without this job's nonce".into()));
    }
    if let Some(f) = &sent.function
        && *f != r.function
    {
        return Err(lie(format!("a receipt for function {}, not {f}", r.function)));
    }
    // The plain fields must say what the context hash covers.
    if r.limits != sent.limits || r.deterministic != sent.deterministic {
        return Err(lie("a receipt with other limits or profile than were sent".into()));
    }
    let version = r.runtime_version.as_deref().unwrap_or_default();
    let expected = ExecutionContext::of(sent, &r.function, &job.id, version).hash();
    if r.context_hash.as_deref() != Some(expected.as_str()) {
        return Err(lie(
            "a receipt for another execution context (other limits, environment, job id or profile than were sent)"
                .into(),
        ));
    }
    Ok(())
}

/// The longest `function` or `runtime_version` a verified attempt's receipt may carry.
const MAX_FIELD: usize = 128;

/// The error codes a run can end in (what `check_result` lets a peer report).
const RUN_ERRORS: [&str; 4] = ["tool_failed", "limit_exceeded", "invalid_input", "cancelled"];

/// 16 random bytes, hex.
fn new_nonce() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source works");
    hex::encode(b)
}

/// How one attempt ended.
enum Ended {
    /// Not taken: declined (`busy` when only full), or it could not be offered.
    Declined {
        peer: PeerId,
        /// Its advertised price, to offer it again at.
        price: Price,
        why: String,
        busy: bool,
    },
    /// Taken and ended without a result to compare: lost (`how` is `Lost`), or a
    /// result refused as a lie (`Dissented`) or for another reason (`None`).
    Failed {
        peer: PeerId,
        why: String,
        how: Option<Attempted>,
    },
    /// A checked result.
    Returned(Box<Returned>),
    /// The job was cancelled while it ran.
    Cancelled,
}

/// What every attempt of one job shares.
struct Shared {
    inner: Arc<Inner>,
    job: Job,
    sent: JobSpec,
    code: Code,
    nonce: String,
    deadline: Instant,
}

/// Runs the verified job `job` to its verdict and records it.
pub(crate) async fn run(inner: &Arc<Inner>, job: &Job, resume: Option<JobRecord>) -> End {
    let spec = &job.spec;
    let Verification::Redundant { .. } = spec.verification else {
        unreachable!("verify::run is called for verified jobs only");
    };
    let min = spec.verification.min_peers();
    let max = spec.verification.max_peers();
    let store = inner.host.store();
    let resumed = resume.is_some();
    if let Some(record) = resume {
        if record.cancel_requested {
            job.cancel.cancel();
        }
        // Its attempts ran under a nonce whose results this node has forgotten: they
        // are told to stop, and the job starts over under a new one.
        for p in record
            .placements
            .iter()
            .filter(|p| p.outcome == PlacementOutcome::Running)
        {
            let _ = store
                .end_placement(
                    &p.execution_id,
                    PlacementOutcome::Lost,
                    Some("the submitter restarted"),
                )
                .await;
            if let Ok(peer) = p.peer_id.parse::<PeerId>() {
                submit::fence(inner.clone(), peer, p.execution_id.clone());
            }
        }
    }
    if !submit::travels(spec.runtime) {
        // Only this node could run it: nothing to compare with.
        return no_one(
            inner,
            job,
            format!(
                "insufficient_peers: {} code does not travel between nodes, so only this node could run it and {min} must",
                spec.runtime
            ),
        )
        .await;
    }
    let deadline = Instant::now()
        .checked_add(Duration::from_millis(spec.limits.timeout_ms) + submit::PLACEMENT_SLACK)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
    let (sent, code) = match submit::prepare_code(inner, spec).await {
        Ok(c) => c,
        Err(e) => return submit::failed(job, e),
    };
    let nonce = new_nonce();
    let me = inner.net.peer_id();
    let mut block = json!({
        "strategy": spec.verification.strategy(),
        "min_peers": min,
        "max_peers": max,
        "nonce": nonce,
        "verdict": null,
        "receipts": [],
        "dissenters": [],
    });
    let _ = store.set_verification(&job.id, &block).await;
    // A resumed job is running already (the store kept it so).
    if !resumed && !inner.host.hooks().starting(job).await {
        // Cancelled before it started: the hooks recorded it.
        return End::Recorded;
    }
    // What results are compared within: this node's own version of the runtime.
    let pinned = inner
        .host
        .scheduler()
        .compute()
        .runtime(spec.runtime)
        .map(|r| r.context_version());

    // Every node that may run it, best first, with the price it advertises; each is
    // offered at most one attempt.
    let (ranked, mut reasons) = submit::candidates(inner, spec, &HashSet::new()).await;
    let mut pool = std::collections::VecDeque::new();
    for c in ranked {
        let peer = c.node.peer.unwrap_or(me);
        let record = inner.ledger.verified(&peer.to_string());
        if peer != me && record.credibility() < MIN_CREDIBILITY {
            // Proven wrong too often here: not asked to vouch for a result again.
            reasons.push((
                peer.to_string(),
                format!(
                    "its credibility {:.2} is under {MIN_CREDIBILITY} ({} proven dissents in this node's verified jobs)",
                    record.credibility(),
                    record.dissents
                ),
            ));
            continue;
        }
        pool.push_back((peer, c.node.price));
    }
    let shared = Arc::new(Shared {
        inner: inner.clone(),
        job: job.clone(),
        sent,
        code,
        nonce,
        deadline,
    });
    let mut running = tokio::task::JoinSet::new();
    let mut returned: Vec<Returned> = Vec::new();
    // Nodes that declined only for want of a free slot now (or refused under load):
    // asked again after a pause, a bounded number of times each.
    let mut busy: Vec<(PeerId, Price)> = Vec::new();
    let mut busy_rounds = 0u32;
    // Offers made in all: each node gets one attempt, and at most MAX_OFFERS_PER_PEER
    // offers per node of `max_peers`, however many strangers there are.
    let mut offers = 0u32;
    let max_offers = max.saturating_mul(MAX_OFFERS_PER_PEER);
    // Results wanted: `min_peers`, plus one per tie to break, up to `max_peers`. An
    // attempt lost or refused is replaced by the next node.
    let mut target = min;
    if (pool.len() as u32) < min {
        // Too few nodes to begin with: nothing runs.
        let who = if pool.iter().any(|(p, _)| *p == me) {
            format!("this node and {} peers", pool.len() - 1)
        } else {
            format!("{} peers", pool.len())
        };
        reasons.insert(
            0,
            (
                "eligible".into(),
                format!("{} nodes can run it ({who}), {min} must", pool.len()),
            ),
        );
        pool.clear();
    }
    let standing = loop {
        if job.cancel.is_cancelled() {
            // Each attempt tells its node to stop as it sees the cancel.
            while running.join_next().await.is_some() {}
            return cancelled(job, &shared, &returned, block.take()).await;
        }
        while (running.len() as u32 + returned.len() as u32) < target
            && Instant::now() < deadline
            && offers < max_offers
            && let Some((peer, price)) = pool.pop_front()
        {
            offers += 1;
            let s = shared.clone();
            running.spawn(async move { attempt(&s, peer, price).await });
        }
        if running.is_empty() {
            let can_add = (returned.len() as u32) < max
                && (!pool.is_empty() || !busy.is_empty())
                && offers < max_offers
                && Instant::now() < deadline;
            let receipts: Vec<&Receipt> = returned.iter().map(Returned::receipt).collect();
            match decide(&receipts, min, can_add, pinned.as_deref(), spec.deterministic) {
                Standing::More => {
                    if (returned.len() as u32) >= target {
                        // A tie, or results of another runtime version: one more node.
                        target += 1;
                    }
                    if pool.is_empty() {
                        // Only full nodes are left: ask them again after a pause
                        // (doubling from 200 ms to 2 s), a few times at most.
                        busy_rounds += 1;
                        let pause = BUSY_PAUSE * 2u32.pow(busy_rounds.min(4));
                        tokio::select! {
                            _ = tokio::time::sleep(pause.min(Duration::from_secs(2))) => {}
                            _ = job.cancel.cancelled() => {}
                        }
                        if busy_rounds <= MAX_BUSY_ROUNDS {
                            pool.extend(busy.drain(..));
                        } else {
                            busy.clear();
                        }
                    }
                    continue;
                }
                decided => break decided,
            }
        }
        let Some(joined) = running.join_next().await else {
            continue;
        };
        match joined {
            Ok(Ended::Declined {
                peer,
                price,
                why,
                busy: full,
            }) => {
                submit::note(&mut reasons, peer, format!("declined: {why}"));
                if peer != me {
                    inner.ledger.attempted(&peer.to_string(), Attempted::Declined);
                }
                if full {
                    busy.push((peer, price));
                }
            }
            Ok(Ended::Failed { peer, why, how }) => {
                submit::note(&mut reasons, peer, why);
                if let Some(how) = how
                    && peer != me
                {
                    inner.ledger.attempted(&peer.to_string(), how);
                }
            }
            Ok(Ended::Returned(r)) => returned.push(*r),
            Ok(Ended::Cancelled) | Err(_) => {}
        }
    };
    finish(&shared, standing, returned, &reasons, block.take()).await
}

/// A verified job no node could run: recorded with verdict `insufficient_peers`.
async fn no_one(inner: &Arc<Inner>, job: &Job, why: String) -> End {
    let v = &job.spec.verification;
    let block = json!({
        "strategy": v.strategy(), "min_peers": v.min_peers(), "max_peers": v.max_peers(),
        "nonce": null, "verdict": Verdict::InsufficientPeers.name(), "receipts": [], "dissenters": [],
    });
    let _ = inner.host.store().set_verification(&job.id, &block).await;
    submit::failed(job, ComputeError::VerificationFailed(why))
}

/// Offers one attempt to `peer` and follows it to a checked result.
async fn attempt(s: &Shared, peer: PeerId, advertised: Price) -> Ended {
    let inner = &s.inner;
    let job = &s.job;
    if job.cancel.is_cancelled() {
        return Ended::Cancelled;
    }
    let execution_id = new_execution_id();
    inner.code.share(peer, &s.code.sha256);
    let offer = Offer {
        execution_id: execution_id.clone(),
        spec: serde_json::to_string(&s.sent).unwrap_or_default(),
        code_bytes: s.code.bytes,
        deadline_ms: s.deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
        file_ext: s.code.ext.clone(),
        image_id: s.code.image_id.clone(),
        wait_ms: submit::OFFER_HOLD.as_millis() as u64,
        attempt: Some(AttemptBinding {
            job_id: job.id.clone(),
            nonce: s.nonce.clone(),
        }),
    };
    let me = peer == inner.net.peer_id();
    let reply = tokio::time::timeout(
        submit::OFFER_TIMEOUT,
        submit::ask(inner, peer, JobRequest::Offer(offer)),
    )
    .await;
    let (price, early) = match reply {
        // The price it asks must be the one it advertised, or less: a peer ranking
        // first on a low price and then charging more is refused, as for any job.
        Ok(Ok(JobResponse::Accepted {
            execution_id: e,
            price,
            result,
        })) if e == execution_id && (me || !submit::dearer(&price, &advertised)) => (price, result),
        Ok(Ok(JobResponse::Accepted { .. })) => {
            inner.net.report(peer, Conduct::Bad).await;
            submit::fence(inner.clone(), peer, execution_id);
            return Ended::Failed {
                peer,
                why: "accepted at a price above its advert".into(),
                how: None,
            };
        }
        Ok(Ok(JobResponse::Declined { reason, busy })) => {
            return Ended::Declined {
                peer,
                price: advertised,
                why: submit::peer_text(&reason),
                busy,
            };
        }
        Ok(Ok(JobResponse::Refused { reason })) => {
            return Ended::Declined {
                peer,
                price: advertised,
                why: format!("refused: {}", submit::peer_text(&reason)),
                busy: true,
            };
        }
        Ok(Ok(other)) => {
            inner.net.report(peer, Conduct::Bad).await;
            submit::fence(inner.clone(), peer, execution_id);
            return Ended::Declined {
                peer,
                price: advertised,
                why: format!("answered an offer with {}", submit::name(&other)),
                busy: false,
            };
        }
        Ok(Err(e)) => {
            submit::fence(inner.clone(), peer, execution_id);
            return Ended::Declined {
                peer,
                price: advertised,
                why: e.to_string(),
                busy: false,
            };
        }
        Err(_) => {
            submit::fence(inner.clone(), peer, execution_id);
            return Ended::Declined {
                peer,
                price: advertised,
                why: "no answer to the offer".into(),
                busy: false,
            };
        }
    };
    let store = inner.host.store();
    if let Err(e) = store
        .add_placement(&job.id, &peer.to_string(), &execution_id)
        .await
    {
        tracing::error!(job = %job.id, error = %e, "cannot record an attempt; cancelling it");
        submit::fence(inner.clone(), peer, execution_id);
        return Ended::Failed {
            peer,
            why: format!("this node could not record the attempt: {e}"),
            how: None,
        };
    }
    // An attempt may run the job's timeout and a margin, counted from its acceptance,
    // and a second per MiB of code to fetch: one that says "running" for longer is
    // lost and replaced while the job's deadline still leaves room.
    let attempt_deadline = (Instant::now()
        + Duration::from_millis(job.spec.limits.timeout_ms)
        + ATTEMPT_SLACK
        + Duration::from_secs(s.code.bytes.div_ceil(1024 * 1024)))
    .min(s.deadline);
    let followed = match early {
        Some(r) if r.execution_id == execution_id => Followed::Result(*r),
        _ => {
            submit::follow(
                inner,
                job,
                peer,
                &execution_id,
                inner.options.lost_after,
                attempt_deadline,
            )
            .await
        }
    };
    let checked = match followed {
        Followed::Result(r) => submit::check_result(job, &s.sent, &s.code, peer, r).and_then(|outcome| {
            let receipt = outcome.receipt.as_ref().ok_or_else(|| Rejected {
                why: "a result without a receipt".into(),
                lie: true,
            })?;
            check_attempt(job, &s.sent, &s.nonce, receipt)?;
            Ok(outcome)
        }),
        Followed::Rejected(r) => Err(r),
        Followed::Lost(why) => {
            let _ = store
                .end_placement(&execution_id, PlacementOutcome::Lost, Some(&why))
                .await;
            if !me {
                inner.net.report(peer, Conduct::Bad).await;
            }
            tracing::warn!(job = %job.id, %peer, why = %why, "verified attempt lost; replacing it");
            submit::fence(inner.clone(), peer, execution_id);
            return Ended::Failed {
                peer,
                why: format!("lost: {why}"),
                how: Some(Attempted::Lost),
            };
        }
        Followed::Cancelled(_) => {
            let _ = store
                .end_placement(&execution_id, PlacementOutcome::Cancelled, None)
                .await;
            return Ended::Cancelled;
        }
    };
    match checked {
        Ok(outcome) => Ended::Returned(Box::new(Returned {
            peer,
            execution_id,
            price: (!me).then_some(price),
            outcome,
        })),
        Err(Rejected { why, lie }) => {
            let _ = store
                .end_placement(&execution_id, PlacementOutcome::Failed, Some(&why))
                .await;
            if !me {
                inner
                    .net
                    .report(peer, if lie { Conduct::Bad } else { Conduct::Neutral })
                    .await;
            }
            tracing::warn!(job = %job.id, %peer, why = %why, "verified attempt refused; replacing it");
            if !me && lie {
                crate::settle::reject(inner, peer, &execution_id, &why);
            }
            Ended::Failed {
                peer,
                why,
                how: lie.then_some(Attempted::Dissented),
            }
        }
    }
}

/// The job was cancelled: every attempt still running is told to stop (their
/// placements end as the hooks record the job's cancel).
async fn cancelled(job: &Job, s: &Shared, returned: &[Returned], mut block: Value) -> End {
    let store = s.inner.host.store();
    // No verdict, but the receipts of what ran are kept.
    block["receipts"] = Value::Array(returned.iter().map(|r| r.receipt().to_value()).collect());
    let _ = store.set_verification(&job.id, &block).await;
    for r in returned {
        let _ = store
            .end_placement(&r.execution_id, PlacementOutcome::Cancelled, None)
            .await;
    }
    submit::failed(job, ComputeError::Cancelled)
}

/// Records the verdict: every attempt's end, the verification block with every
/// receipt, what is owed, and the job's end.
async fn finish(
    s: &Shared,
    standing: Standing,
    returned: Vec<Returned>,
    reasons: &[(String, String)],
    mut block: Value,
) -> End {
    let Standing::Decided {
        verdict,
        winners,
        dissenters,
        incomparable,
    } = standing
    else {
        unreachable!("finish is called with a decision");
    };
    let inner = &s.inner;
    let job = &s.job;
    let store = inner.host.store();
    let me = inner.net.peer_id();
    let majority = winners.first().map(|&i| returned[i].receipt().clone());
    // The block first, with every receipt: a crash after it leaves the proof stored
    // even if the job's end is not.
    let peer_of = |i: &usize| returned[*i].peer.to_string();
    block["verdict"] = json!(verdict.name());
    block["receipts"] = Value::Array(returned.iter().map(|r| r.receipt().to_value()).collect());
    block["dissenters"] = json!(dissenters.iter().map(peer_of).collect::<Vec<_>>());
    if let Err(e) = store.set_verification(&job.id, &block).await {
        tracing::error!(job = %job.id, error = %e, "cannot store the verification block");
    }
    let describe = |r: &Receipt| match (&r.output_hash, &r.error) {
        (Some(h), _) => format!("output {}", &h[..h.len().min(16)]),
        (None, Some(e)) => format!("error {}", e.code),
        (None, None) => "nothing".into(),
    };
    for (i, r) in returned.iter().enumerate() {
        let receipt = r.receipt();
        let (outcome, reason) = if winners.contains(&i) {
            (PlacementOutcome::Succeeded, None)
        } else if dissenters.contains(&i) {
            let m = majority.as_ref().map(describe).unwrap_or_default();
            (
                PlacementOutcome::Failed,
                Some(format!(
                    "dissented: {} where the majority has {m}",
                    describe(receipt)
                )),
            )
        } else if incomparable.contains(&i) {
            (
                PlacementOutcome::Failed,
                Some(format!(
                    "not comparable: ran on {}",
                    receipt.runtime_version.as_deref().unwrap_or("another runtime")
                )),
            )
        } else {
            (
                PlacementOutcome::Failed,
                Some(format!("verdict {}", verdict.name())),
            )
        };
        let _ = store
            .end_placement(&r.execution_id, outcome, reason.as_deref())
            .await;
        if r.peer == me {
            continue;
        }
        if winners.contains(&i) {
            inner.ledger.attempted(&r.peer.to_string(), Attempted::Agreed);
            // Taken: counter-signed, owed at the price it accepted, and a good mark.
            if let Some(price) = r.price {
                // Off the job's path, as for any result taken.
                let (inner, peer, execution_id, receipt) =
                    (inner.clone(), r.peer, r.execution_id.clone(), receipt.clone());
                let verdict = verdict.name();
                tokio::spawn(async move {
                    crate::settle::accept(&inner, peer, &execution_id, &receipt, &price, Some(verdict)).await;
                });
            }
            inner.net.report(r.peer, Conduct::Good).await;
        } else {
            if dissenters.contains(&i) {
                // A signed result the majority contradicts: proof, kept in the block.
                inner.ledger.attempted(&r.peer.to_string(), Attempted::Dissented);
                inner.net.report(r.peer, Conduct::Bad).await;
            }
            // Not taken: the executor earns nothing, and is told so.
            if let Some(why) = &reason {
                crate::settle::reject(inner, r.peer, &r.execution_id, why);
            }
        }
    }
    tracing::info!(job = %job.id, verdict = verdict.name(), results = returned.len(), dissenters = dissenters.len(), "verified job decided");
    let outcome = match (verdict, winners.first()) {
        (Verdict::Agreed | Verdict::Majority, Some(&w)) => returned[w].outcome.clone(),
        _ => {
            let why = match verdict {
                Verdict::InsufficientPeers => {
                    let detail = submit::describe(reasons);
                    format!(
                        "insufficient_peers: {} of the {} nodes needed returned a comparable result; {detail}",
                        returned.len() - incomparable.len(),
                        job.spec.verification.min_peers()
                    )
                }
                _ => {
                    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                    for r in &returned {
                        *counts.entry(describe(r.receipt())).or_default() += 1;
                    }
                    let split = counts
                        .iter()
                        .map(|(k, n)| format!("{n} × {k}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!(
                        "disagreed: no majority among {} results ({split})",
                        returned.len()
                    )
                }
            };
            JobOutcome {
                job_id: job.id.clone(),
                result: Err(ComputeError::VerificationFailed(why)),
                usage: Usage::default(),
                logs: Vec::new(),
                receipt: None,
            }
        }
    };
    End::Done(Box::new(outcome), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanzo_compute::receipt::{ReceiptBody, ReceiptError};
    use hanzo_compute::{NodeKey, ResourceLimits, RuntimeKind};
    use std::time::SystemTime;

    fn receipt(output: Result<&str, &str>, fuel: u64, context: &str) -> Receipt {
        let usage = Usage {
            fuel_consumed: Some(fuel),
            ..Default::default()
        };
        Receipt::sign(
            ReceiptBody {
                job_id: "j".into(),
                runtime: RuntimeKind::Wasm,
                function: "run".into(),
                code_hash: "00".repeat(32),
                input_hash: "00".repeat(32),
                result: output.map(|o| o.repeat(64)).map_err(|code| ReceiptError {
                    code: code.into(),
                    message: "x".into(),
                }),
                usage,
                limits: ResourceLimits::default(),
                deterministic: true,
                started_at: SystemTime::now(),
                finished_at: SystemTime::now(),
                context_hash: context.repeat(64),
                runtime_version: context.into(),
                nonce: Some("00".repeat(16)),
            },
            &NodeKey::from_seed([1; 32]),
        )
        .unwrap()
    }

    fn verdict(rs: &[Receipt], min: u32, can_add: bool) -> Standing {
        decide(&rs.iter().collect::<Vec<_>>(), min, can_add, None, true)
    }

    fn decided(v: Verdict, winners: &[usize], dissenters: &[usize], incomparable: &[usize]) -> Standing {
        Standing::Decided {
            verdict: v,
            winners: winners.to_vec(),
            dissenters: dissenters.to_vec(),
            incomparable: incomparable.to_vec(),
        }
    }

    #[test]
    fn all_agreeing_is_agreed_and_one_liar_among_three_is_outvoted() {
        let a = receipt(Ok("a"), 10, "c");
        let b = receipt(Ok("b"), 10, "c");
        assert_eq!(
            verdict(&[a.clone(), a.clone(), a.clone()], 3, true),
            decided(Verdict::Agreed, &[0, 1, 2], &[], &[])
        );
        assert_eq!(
            verdict(&[a.clone(), b.clone(), a.clone()], 3, true),
            decided(Verdict::Majority, &[0, 2], &[1], &[])
        );
        // Four asked, one lies: 3 of 4 is a majority of at least 4/2 + 1.
        assert_eq!(
            verdict(&[a.clone(), a.clone(), b.clone(), a.clone()], 4, true),
            decided(Verdict::Majority, &[0, 1, 3], &[2], &[])
        );
    }

    #[test]
    fn a_tie_asks_for_more_until_it_cannot_then_disagrees() {
        let a = receipt(Ok("a"), 10, "c");
        let b = receipt(Ok("b"), 10, "c");
        assert_eq!(verdict(&[a.clone(), b.clone()], 2, true), Standing::More);
        assert_eq!(
            verdict(&[a.clone(), b.clone()], 2, false),
            decided(Verdict::Disagreed, &[], &[], &[])
        );
        // The tie broken by a third node.
        assert_eq!(
            verdict(&[a.clone(), b.clone(), a.clone()], 2, true),
            decided(Verdict::Majority, &[0, 2], &[1], &[])
        );
        // Three different answers out of three: no majority.
        let c = receipt(Ok("c"), 10, "c");
        assert_eq!(
            verdict(&[a, b, c], 3, false),
            decided(Verdict::Disagreed, &[], &[], &[])
        );
    }

    #[test]
    fn fuel_counts_in_the_deterministic_profile_and_failures_compare_by_code() {
        let a = receipt(Ok("a"), 10, "c");
        let a_more_fuel = receipt(Ok("a"), 11, "c");
        assert_eq!(
            verdict(&[a.clone(), a_more_fuel.clone(), a.clone()], 3, false),
            decided(Verdict::Majority, &[0, 2], &[1], &[])
        );
        // Outside the profile fuel varies honestly: not compared.
        let loose = decide(&[&a, &a_more_fuel], 2, false, None, false);
        assert_eq!(loose, decided(Verdict::Agreed, &[0, 1], &[], &[]));
        let t = receipt(Err("limit_exceeded"), 10, "c");
        assert_eq!(
            verdict(&[t.clone(), t.clone()], 2, false),
            decided(Verdict::Agreed, &[0, 1], &[], &[])
        );
    }

    #[test]
    fn receipts_of_another_context_are_neither_agreeing_nor_dissenting() {
        let a = receipt(Ok("a"), 10, "c");
        let other = receipt(Ok("b"), 10, "d");
        assert_eq!(
            verdict(&[a.clone(), other.clone(), a.clone()], 2, false),
            decided(Verdict::Agreed, &[0, 2], &[], &[1])
        );
        // Two comparable results are too few for three.
        assert_eq!(
            verdict(&[a.clone(), other.clone(), a.clone()], 3, true),
            Standing::More
        );
        assert_eq!(
            verdict(&[a.clone(), other.clone(), a.clone()], 3, false),
            decided(Verdict::InsufficientPeers, &[], &[], &[1])
        );
        // Pinned to this node's version, the majority of another version counts for
        // nothing: a peer cannot choose the group it is judged in.
        assert_eq!(
            decide(&[&other, &a, &other], 2, false, Some("c"), true),
            decided(Verdict::InsufficientPeers, &[], &[], &[0, 2])
        );
        assert_eq!(
            verdict(&[], 2, false),
            decided(Verdict::InsufficientPeers, &[], &[], &[])
        );
    }

    #[test]
    fn an_attempt_must_carry_this_jobs_nonce_and_the_context_sent() {
        let key = NodeKey::from_seed([2; 32]);
        let job = Job::with_id("a".repeat(32), JobSpec::new(RuntimeKind::Wasm, "sha256:00"));
        let sent = job.spec.clone();
        let nonce = "11".repeat(16);
        let honest = |spec: &JobSpec, nonce: &str, tool_job_id: &str| {
            let mut r = receipt(Ok("a"), 1, "c");
            r.nonce = Some(nonce.to_string());
            r.deterministic = spec.deterministic;
            r.context_hash = Some(ExecutionContext::of(spec, "run", tool_job_id, "c").hash());
            r.sign_with(&key).unwrap();
            r
        };
        check_attempt(&job, &sent, &nonce, &honest(&sent, &nonce, &job.id)).unwrap();
        let refused = |r: Receipt, says: &str| {
            let e = check_attempt(&job, &sent, &nonce, &r).unwrap_err();
            assert!(e.lie && e.why.contains(says), "{}", e.why);
        };
        refused(honest(&sent, &"22".repeat(16), &job.id), "nonce");
        let mut claims = honest(&sent, &nonce, &job.id);
        claims.limits.memory_mb *= 2;
        claims.sign_with(&key).unwrap();
        refused(claims, "other limits or profile");
        let mut long = honest(&sent, &nonce, &job.id);
        long.runtime_version = Some("v".repeat(200));
        long.sign_with(&key).unwrap();
        refused(long, "printable");
        refused(honest(&sent, &nonce, "another-job"), "another execution context");
        let mut clamped = sent.clone();
        clamped.limits.memory_mb /= 2;
        refused(honest(&clamped, &nonce, &job.id), "another execution context");
        let mut named = sent.clone();
        named.function = Some("main".into());
        let e = check_attempt(&job, &named, &nonce, &honest(&sent, &nonce, &job.id)).unwrap_err();
        assert!(e.why.contains("function"), "{}", e.why);
    }
}
