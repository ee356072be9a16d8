//! Settlement, the submitter's side (CONTRACTS §8): a result this node takes is
//! counter-signed (its acceptance: the receipt's hash, the price, the amount, this
//! node's key), stored with the attempt, and sent to the executor, which earns only
//! then; a result not taken (a dissent) is reported as such and earns nothing.
//!
//! Settlements go off the job's path: the job's end never waits for them. They are
//! batched per executor (what comes within 50 ms goes in one message of up to 256),
//! and a batch is sent again (after 1 s, doubling to 16 s, for up to two minutes) until
//! the executor answers.

use crate::Inner;
use hanzo_compute::Receipt;
use hanzo_compute::billing::Acceptance;
use hanzo_jobstore::Accepted;
use hanzo_network::{JobRequest, JobResponse, PeerId, Price, Settlement};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a batch of settlements is offered to an executor that does not answer.
const SETTLE_FOR: Duration = Duration::from_secs(120);

/// How long settlements gather before they go, in one message per executor.
const BATCH_WINDOW: Duration = Duration::from_millis(50);

/// Settlements waiting for one executor at most: past it, a new one is stored but not
/// sent (an executor that stops answering cannot make this node hold one per job it
/// ran; resending stored settlements later is not built).
const MAX_QUEUED_PER_PEER: usize = 4096;

/// A settlement waiting to go, with, for an acceptance, what to store and owe.
struct Queued {
    settlement: Settlement,
    /// The acceptance as JSON and its amount.
    owed: Option<(serde_json::Value, u64)>,
}

type Queues = std::collections::HashMap<PeerId, (Vec<Queued>, bool)>;

/// Settlements waiting to be sent, per executor, and whether a task is sending them.
#[derive(Default)]
pub(crate) struct Pending(std::sync::Mutex<Queues>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next batch for `peer`; `None` (and the sender's place given up) when there
    /// is none.
    fn next(&self, peer: PeerId) -> Option<Vec<Queued>> {
        let mut m = self.lock();
        let (items, _) = m.get_mut(&peer)?;
        if items.is_empty() {
            m.remove(&peer);
            return None;
        }
        let n = items.len().min(hanzo_network::protocol::MAX_SETTLEMENTS);
        Some(items.drain(..n).collect())
    }
}

/// Takes `receipt`, the result of the attempt `execution_id` on `peer` (not this
/// node) at `price`: signs the acceptance, stores it with the attempt, records what is
/// owed, and tells the executor. `verdict` is the verified job's, if it was one.
pub(crate) async fn accept(
    inner: &Arc<Inner>,
    peer: PeerId,
    execution_id: &str,
    receipt: &Receipt,
    price: &Price,
    verdict: Option<&str>,
) {
    let scheduler = inner.host.scheduler();
    let signed = Acceptance::sign(
        receipt,
        execution_id,
        crate::ledger::rates(price),
        verdict,
        scheduler.compute().key(),
    );
    let acceptance = match signed {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(%peer, execution = %execution_id, error = %e, "cannot sign an acceptance");
            return;
        }
    };
    // Stored with the attempt and owed when its batch goes (one commit for the batch).
    let value = acceptance.to_value();
    queue(
        inner,
        peer,
        Queued {
            settlement: Settlement {
                execution_id: execution_id.to_string(),
                acceptance: Some(value.to_string()),
                reason: None,
            },
            owed: Some((value, acceptance.amount)),
        },
    );
}

/// Tells the executor of `execution_id` that its result was not taken, and why.
pub(crate) fn reject(inner: &Arc<Inner>, peer: PeerId, execution_id: &str, why: &str) {
    queue(
        inner,
        peer,
        Queued {
            settlement: Settlement {
                execution_id: execution_id.to_string(),
                acceptance: None,
                reason: Some(why.chars().take(512).collect()),
            },
            owed: None,
        },
    );
}

/// Queues a settlement for `peer`, starting its sender when none runs.
fn queue(inner: &Arc<Inner>, peer: PeerId, q: Queued) {
    let (start, full) = {
        let mut m = inner.settling.lock();
        let (items, sending) = m.entry(peer).or_default();
        if items.len() >= MAX_QUEUED_PER_PEER {
            (false, Some(q))
        } else {
            items.push(q);
            (!std::mem::replace(sending, true), None)
        }
    };
    if let Some(q) = full {
        tracing::warn!(%peer, "{MAX_QUEUED_PER_PEER} settlements to this executor are waiting; this one is stored, not sent");
        let inner = inner.clone();
        tokio::spawn(async move {
            store_and_owe(&inner, peer, vec![q]).await;
        });
        return;
    }
    if start {
        tokio::spawn(send(inner.clone(), peer));
    }
}

/// Stores the batch's acceptances with their attempts (queued together: one commit)
/// and owes each one stored now; returns the settlements to send (an acceptance
/// stored before, by a repeated end, is not owed or sent again).
async fn store_and_owe(inner: &Arc<Inner>, peer: PeerId, batch: Vec<Queued>) -> Vec<Settlement> {
    let mut writes = tokio::task::JoinSet::new();
    for (i, q) in batch.iter().enumerate() {
        if let Some((value, _)) = &q.owed {
            let store = inner.host.store().clone();
            let (value, exec) = (value.clone(), q.settlement.execution_id.clone());
            writes.spawn(async move {
                (
                    i,
                    matches!(
                        store.set_acceptance(Accepted::Attempt(exec), &value).await,
                        Ok(true)
                    ),
                )
            });
        }
    }
    let mut stored = vec![false; batch.len()];
    while let Some(Ok((i, ok))) = writes.join_next().await {
        stored[i] = ok;
    }
    let mut out = Vec::with_capacity(batch.len());
    for (q, stored) in batch.into_iter().zip(stored) {
        match q.owed {
            Some((_, amount)) if stored => {
                inner.ledger.owe(&peer.to_string(), amount);
                out.push(q.settlement);
            }
            Some(_) => {}
            None => out.push(q.settlement),
        }
    }
    out
}

/// Sends `peer`'s settlements in batches until none is left.
async fn send(inner: Arc<Inner>, peer: PeerId) {
    loop {
        tokio::time::sleep(BATCH_WINDOW).await;
        let Some(batch) = inner.settling.next(peer) else {
            return;
        };
        let batch = store_and_owe(&inner, peer, batch).await;
        if batch.is_empty() {
            continue;
        }
        let request = JobRequest::Settle(batch);
        let until = Instant::now() + SETTLE_FOR;
        let mut pause = Duration::from_secs(1);
        loop {
            let asked = crate::submit::ask(&inner, peer, request.clone());
            match tokio::time::timeout(Duration::from_secs(5), asked).await {
                Ok(Ok(JobResponse::Settled { .. })) => break,
                Ok(Ok(JobResponse::Refused { reason })) if reason.starts_with("malformed") => {
                    tracing::error!(%peer, reason = %crate::submit::peer_text(&reason), "an executor refused this node's settlements");
                    break;
                }
                _ => {}
            }
            if Instant::now() >= until {
                tracing::warn!(%peer, "an executor did not take this node's settlements for two minutes; they stay stored");
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(16));
        }
    }
}
