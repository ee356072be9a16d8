//! Settlement, the submitter's side (CONTRACTS §8): a result this node takes is
//! counter-signed (its acceptance: the receipt's hash, the price, the amount, this
//! node's key), stored with the attempt, and sent to the executor, which earns only
//! then; a result not taken (a dissent) is reported as such and earns nothing.
//!
//! The message goes off the job's path: the job's end never waits for it. It is sent
//! again (every 2 s, for up to two minutes) until the executor answers, as a fence is.

use crate::Inner;
use hanzo_compute::Receipt;
use hanzo_compute::billing::Acceptance;
use hanzo_jobstore::Accepted;
use hanzo_network::{JobRequest, JobResponse, PeerId, Price};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a settlement is offered to an executor that does not answer.
const SETTLE_FOR: Duration = Duration::from_secs(120);

/// Settlements being sent to one executor at most: past it, a new one is stored but
/// not sent (an executor that stops answering cannot make this node hold a task per
/// job it ran; resending stored settlements later is not built).
const MAX_PENDING_PER_PEER: usize = 1024;

/// Settlements being sent, per executor.
#[derive(Default)]
pub(crate) struct Pending(std::sync::Mutex<std::collections::HashMap<PeerId, usize>>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<PeerId, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for one more settlement to `peer`; `false` when it has none left.
    fn take(&self, peer: PeerId) -> bool {
        let mut m = self.lock();
        let n = m.entry(peer).or_default();
        if *n >= MAX_PENDING_PER_PEER {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, peer: PeerId) {
        let mut m = self.lock();
        if let Some(n) = m.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                m.remove(&peer);
            }
        }
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
    let value = acceptance.to_value();
    let stored = inner
        .host
        .store()
        .set_acceptance(Accepted::Attempt(execution_id.to_string()), &value)
        .await;
    if !matches!(stored, Ok(true)) {
        // Accepted before (a repeated end), or the attempt is not recorded: owed once.
        return;
    }
    inner.ledger.owe(&peer.to_string(), acceptance.amount);
    send(
        inner.clone(),
        peer,
        JobRequest::Settle {
            execution_id: execution_id.to_string(),
            acceptance: Some(value.to_string()),
            reason: None,
        },
    );
}

/// Tells the executor of `execution_id` that its result was not taken, and why.
pub(crate) fn reject(inner: &Arc<Inner>, peer: PeerId, execution_id: &str, why: &str) {
    send(
        inner.clone(),
        peer,
        JobRequest::Settle {
            execution_id: execution_id.to_string(),
            acceptance: None,
            reason: Some(why.chars().take(512).collect()),
        },
    );
}

/// Sends a settlement until the executor answers it (or [`SETTLE_FOR`] passes), asking
/// again after 1 s, doubling to 16 s.
fn send(inner: Arc<Inner>, peer: PeerId, request: JobRequest) {
    if !inner.settling.take(peer) {
        tracing::warn!(%peer, "{MAX_PENDING_PER_PEER} settlements to this executor are unanswered; this one is stored, not sent");
        return;
    }
    tokio::spawn(async move {
        let until = Instant::now() + SETTLE_FOR;
        let mut pause = Duration::from_secs(1);
        while Instant::now() < until {
            let asked = crate::submit::ask(&inner, peer, request.clone());
            match tokio::time::timeout(Duration::from_secs(5), asked).await {
                Ok(Ok(JobResponse::Settled { .. })) => break,
                // Gone from the executor's memory and store: nothing to settle.
                Ok(Ok(JobResponse::Unknown { .. })) => break,
                Ok(Ok(JobResponse::Refused { reason })) if reason.starts_with("acceptance refused") => {
                    tracing::error!(%peer, reason = %crate::submit::peer_text(&reason), "an executor refused this node's acceptance");
                    break;
                }
                _ => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(16));
        }
        inner.settling.release(peer);
    });
}
