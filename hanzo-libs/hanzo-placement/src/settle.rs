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

/// Sends a settlement until the executor answers it (or [`SETTLE_FOR`] passes).
fn send(inner: Arc<Inner>, peer: PeerId, request: JobRequest) {
    tokio::spawn(async move {
        let until = Instant::now() + SETTLE_FOR;
        while Instant::now() < until {
            match tokio::time::timeout(
                Duration::from_secs(5),
                crate::submit::ask(&inner, peer, request.clone()),
            )
            .await
            {
                Ok(Ok(JobResponse::Settled { .. })) => return,
                // Gone from the executor's memory and store: nothing to settle.
                Ok(Ok(JobResponse::Unknown { .. })) => return,
                Ok(Ok(JobResponse::Refused { reason })) if reason.starts_with("acceptance refused") => {
                    tracing::error!(%peer, reason = %crate::submit::peer_text(&reason), "an executor refused this node's acceptance");
                    return;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    });
}
