//! The node's receipt signer: one signature per receipt when receipts come one at a
//! time, one per batch under load.
//!
//! An ed25519 signature costs more than a short WASM job, so a node signing every
//! receipt alone spends most of its CPU on signatures once jobs pile up. There is no
//! signing thread: the receipts that are ready take turns holding the signer's token.
//! The holder takes every receipt waiting at that moment and signs them together
//! ([`batch::seal`]); the rest wait on a oneshot for their seal, and when the holder is
//! done it hands the token to the first receipt that arrived meanwhile. So:
//!
//! - a receipt that finds the signer idle (the token free) while no other job runs
//!   and none waits is signed alone at once, on the caller's task, exactly as before
//!   batching (no handoff, no wait);
//! - a receipt that finds the token free while other jobs run takes it and yields
//!   once, so that the jobs ready on its worker finish and join its batch; one that
//!   still finds itself alone is signed alone, in the single form;
//! - so does one that finds the token free just after its shard signed a batch of
//!   several. Under load, the tasks that batch released are ready on the worker, but
//!   none has started its next job yet, so `running` cannot show them: without this
//!   rule two signatures in three were of one receipt (`breakdown load`: 10 receipts
//!   per signature, 70% of signatures alone; with it, 29 and none). At rest it costs
//!   the first receipt after a burst one yield, with nothing else to run;
//! - a receipt that finds the token held waits for the holder's batch, or for the
//!   token;
//! - a receipt for a peer's job is always signed alone: a peer running an earlier
//!   version reads only that form, and would take a batch receipt for a lie;
//! - a batch holds at most [`MAX_BATCH`] receipts.
//!
//! A holder keeps the token across its one yield, so a `run_job` future polled once
//! must be polled to the end or dropped, never parked: a parked holder stalls its
//! thread's shard.
//!
//! **One token per thread.** A receipt waits for the holder of its own thread's
//! token (a tokio worker's, in the node), never for another worker's. A waiting job
//! is woken on the thread that wakes it, so one batch across two workers moved half
//! of its jobs to the holder's worker at every turn, and each then freed its memory
//! on a thread that had not allocated it: glibc's malloc takes the owning arena's
//! lock for that, and the two workers ended up queuing on each other's arenas, at a
//! cost above the signatures saved (BENCHMARKS.md, "batch signing"). Batches per
//! worker are half as large and share nothing.
//!
//! Only 32-byte leaves go to the holder and only seals come back: each receipt is
//! written, hashed and given its hex on its own task, and the holder's turn is the
//! tree and one signature.
//!
//! Cancellation: a caller dropped while it waits loses only its own receipt; a token
//! holder dropped mid-turn hands the token on from its `Drop`, so nobody waits for a
//! signer that is gone.

use super::Receipt;
use super::batch::{self, Hash, MAX_BATCH, Seal};
use crate::{ComputeError, NodeKey};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// Signs the node's receipts, batching them under load.
pub(crate) struct Signer {
    shared: Arc<Shared>,
    /// Whether several receipts may share a signature (`[compute] batch_receipts`).
    batching: bool,
}

struct Shared {
    key: Arc<NodeKey>,
    /// Jobs that will want a receipt signed and have not asked yet: while there are
    /// any, a token holder yields once so that they can join its batch.
    running: AtomicUsize,
    /// One token and queue per thread ([`thread_shard`]).
    shards: Box<[Mutex<State>]>,
}

/// Shards of a signer's state: more than the threads that sign (tokio's workers, one
/// per core in the node), so that two rarely share one. Two that do still sign
/// correctly, as one signer.
const SHARDS: usize = 64;

/// This thread's shard.
fn thread_shard() -> usize {
    thread_slot() % SHARDS
}

/// This thread's number. A thread takes a number given back by a thread that
/// exited, or the next one, when it first signs, and gives it back when it exits:
/// tokio's blocking pool comes and goes (a worker leaving for `block_in_place` is
/// replaced by a new thread), and numbering threads for ever would wrap and put
/// live workers on one shard.
fn thread_slot() -> usize {
    static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    struct Slot(usize);
    impl Drop for Slot {
        fn drop(&mut self) {
            FREE.lock().unwrap_or_else(|e| e.into_inner()).push(self.0);
        }
    }
    thread_local! {
        static SLOT: Slot = Slot(
            FREE.lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop()
                .unwrap_or_else(|| NEXT.fetch_add(1, Ordering::Relaxed)),
        );
    }
    // A thread signing while its thread-locals are torn down shares shard 0.
    SLOT.try_with(|s| s.0).unwrap_or(0)
}

#[derive(Default)]
struct State {
    /// Whether some caller holds the token.
    held: bool,
    /// Receipts waiting for the token's holder, oldest first.
    waiting: VecDeque<Waiter>,
    /// How many receipts the last signature of this shard covered.
    last_batch: usize,
}

struct Waiter {
    leaf: Hash,
    reply: oneshot::Sender<Turn>,
}

/// What a waiting receipt's caller is told.
enum Turn {
    /// The holder signed it in a batch.
    Sealed(Seal),
    /// The token is the caller's now. Should the caller be gone before it reads
    /// this, dropping the message drops the token, which passes it on.
    Yours(Token),
}

/// A job that will want a receipt: counted from the start of its execution until it
/// asks for the signature, or is dropped.
pub(crate) struct Running<'a>(&'a Shared);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A shard's token: dropped, it passes to the first waiter still listening.
struct Token(Option<(Arc<Shared>, usize)>);

impl Drop for Token {
    fn drop(&mut self) {
        let Some((shared, shard)) = self.0.take() else {
            return;
        };
        loop {
            let next = {
                let mut st = shared.lock(shard);
                match st.waiting.pop_front() {
                    Some(w) => w,
                    None => {
                        st.held = false;
                        return;
                    }
                }
            };
            // Sent outside the lock: a refused token comes back here and must not
            // run this drop again while the lock is held.
            match next.reply.send(Turn::Yours(Token(Some((shared.clone(), shard))))) {
                Ok(()) => return,
                // That caller is gone, and its receipt with it: nobody wants it.
                Err(Turn::Yours(mut t)) => t.0 = None,
                Err(Turn::Sealed(_)) => unreachable!("a token was sent"),
            }
        }
    }
}

impl Shared {
    fn lock(&self, shard: usize) -> MutexGuard<'_, State> {
        // The state is a flag and a queue, consistent at every unlock: a panic
        // elsewhere while it was held leaves nothing half-done.
        self.shards[shard].lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Signer {
    pub(crate) fn new(key: Arc<NodeKey>, batching: bool) -> Self {
        Signer {
            shared: Arc::new(Shared {
                key,
                running: AtomicUsize::new(0),
                shards: (0..SHARDS).map(|_| Mutex::new(State::default())).collect(),
            }),
            batching,
        }
    }

    pub(crate) fn key(&self) -> &NodeKey {
        &self.shared.key
    }

    pub(crate) fn set_batching(&mut self, on: bool) {
        self.batching = on;
    }

    /// Counts a job that will want a receipt signed, until the guard is dropped.
    pub(crate) fn running(&self) -> Running<'_> {
        self.shared.running.fetch_add(1, Ordering::AcqRel);
        Running(&self.shared)
    }

    /// Signs `receipt` (built by [`Receipt::unsigned`]), alone when `alone` or
    /// batching is off, else alone or in a batch.
    pub(crate) async fn sign(
        &self,
        mut receipt: Receipt,
        running: Running<'_>,
        alone: bool,
    ) -> Result<Receipt, ComputeError> {
        drop(running);
        let shared = &self.shared;
        let bytes = receipt.prepare(&shared.key)?;
        if !self.batching || alone {
            receipt.seal_alone(&bytes, &shared.key);
            return Ok(receipt);
        }
        let shard = thread_shard();
        // The leaf is hashed only to wait: outside the lock, then looked at again.
        let mut leaf = None;
        let rx = loop {
            let mut st = shared.lock(shard);
            if !st.held {
                st.held = true;
                break None;
            }
            match leaf {
                Some(leaf) => {
                    let (reply, rx) = oneshot::channel();
                    st.waiting.push_back(Waiter { leaf, reply });
                    break Some(rx);
                }
                None => {
                    drop(st);
                    leaf = Some(batch::leaf_hash(&bytes));
                }
            }
        };
        let _token = match rx {
            None => Token(Some((shared.clone(), shard))),
            Some(rx) => match rx.await {
                Ok(Turn::Sealed(seal)) => {
                    receipt.seal_in(&seal);
                    return Ok(receipt);
                }
                Ok(Turn::Yours(token)) => token,
                // Every waiter is answered or handed the token before its sender
                // is dropped; this would be a broken invariant, not a state.
                Err(_) => return Err(ComputeError::internal("the receipt signer dropped a receipt")),
            },
        };
        // `shard` stays the one this receipt queued in (and its token's), wherever
        // this task runs by now.
        let busy = shared.running.load(Ordering::Acquire) > 0 || {
            let st = shared.lock(shard);
            !st.waiting.is_empty() || st.last_batch > 1
        };
        if busy {
            // Others are about to want a signature: let the jobs ready on this worker
            // finish first, so one signature covers them all.
            tokio::task::yield_now().await;
        }
        let others: Vec<Waiter> = {
            let mut st = shared.lock(shard);
            let n = st.waiting.len().min(MAX_BATCH - 1);
            st.last_batch = n + 1;
            st.waiting.drain(..n).collect()
        };
        if others.is_empty() {
            receipt.seal_alone(&bytes, &shared.key);
            return Ok(receipt);
        }
        let leaves: Vec<Hash> = std::iter::once(leaf.unwrap_or_else(|| batch::leaf_hash(&bytes)))
            .chain(others.iter().map(|w| w.leaf))
            .collect();
        let mut seals = batch::seal(&leaves, &shared.key).into_iter();
        receipt.seal_in(&seals.next().expect("one seal per leaf"));
        for (w, seal) in others.into_iter().zip(seals) {
            // A caller gone meanwhile no longer wants its receipt.
            let _ = w.reply.send(Turn::Sealed(seal));
        }
        Ok(receipt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::{ReceiptBody, sha256_hex};
    use std::future::Future;
    use std::pin::{Pin, pin};
    use std::task::{Context, Poll, Waker};

    fn unsigned(job: usize) -> Receipt {
        Receipt::unsigned(ReceiptBody {
            input_hash: sha256_hex(job.to_string().as_bytes()),
            ..crate::receipt::tests::body(&format!("job-{job}"))
        })
    }

    fn signer(batching: bool) -> Arc<Signer> {
        Arc::new(Signer::new(Arc::new(NodeKey::generate().unwrap()), batching))
    }

    fn verified(r: Result<Receipt, ComputeError>) -> Receipt {
        let r = r.expect("signed");
        assert_eq!(Receipt::verify(&r.to_value()).expect("verifies"), r);
        r
    }

    /// `n` jobs that all finish before any asks for its signature, on one thread:
    /// returns what each got.
    async fn together(s: &Arc<Signer>, n: usize) -> Vec<Receipt> {
        together_for(s, n, false).await
    }

    /// [`together`], for peers' jobs when `peers`.
    async fn together_for(s: &Arc<Signer>, n: usize, peers: bool) -> Vec<Receipt> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let running = s.running();
                    // Every job starts before the first one is done.
                    tokio::task::yield_now().await;
                    s.sign(unsigned(i), running, peers).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(verified(t.await.unwrap()));
        }
        out
    }

    #[tokio::test]
    async fn a_receipt_alone_is_signed_alone() {
        let s = signer(true);
        let r = verified(s.sign(unsigned(0), s.running(), false).await);
        assert_eq!(r.batch, None);
        assert_eq!(r.node_id, s.key().id());
        assert_eq!(together(&s, 1).await[0].batch, None);
    }

    #[tokio::test]
    async fn receipts_finished_together_share_one_signature() {
        let s = signer(true);
        let out = together(&s, 20).await;
        let mut places = std::collections::BTreeSet::new();
        for (i, r) in out.iter().enumerate() {
            let b = r.batch.as_ref().expect("a batch receipt");
            assert_eq!(b.size, 20, "{}", r.job_id);
            places.insert(b.index);
            assert_eq!(r.signature, out[0].signature);
            assert_eq!(b.root, out[0].batch.as_ref().unwrap().root);
            assert_eq!(r.job_id, format!("job-{i}"), "each caller gets its own receipt");
        }
        assert_eq!(places, (0..20).collect(), "one place each");
        // With batching off, each alone; and peers' jobs always alone.
        let s = signer(false);
        let out = together(&s, 5).await;
        assert!(out.iter().all(|r| r.batch.is_none()));
        let s = signer(true);
        let out = together_for(&s, 5, true).await;
        assert!(out.iter().all(|r| r.batch.is_none()));
    }

    #[test]
    fn threads_give_their_number_back_when_they_exit() {
        // Numbered for ever, 200 threads in turn would take 200 numbers; given back,
        // they share the few that the tests running alongside leave free.
        for _ in 0..200 {
            let n = std::thread::spawn(thread_slot).join().unwrap();
            assert!(n < SHARDS / 2, "thread number {n}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_larger_than_a_batch_is_signed_in_several() {
        let s = signer(true);
        let out = together(&s, MAX_BATCH + 300).await;
        let mut roots = std::collections::BTreeMap::new();
        for r in &out {
            let size = r.batch.as_ref().map_or(1, |b| b.size);
            assert!(size as usize <= MAX_BATCH);
            *roots.entry(r.signature.clone()).or_insert(0u64) += 1;
        }
        assert!(
            roots.len() >= 2,
            "{} receipts under {} signatures",
            out.len(),
            roots.len()
        );
        assert!(
            roots.len() < out.len() / 10,
            "{} signatures for {}",
            roots.len(),
            out.len()
        );
    }

    fn poll<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// A signing in progress.
    type Pending<'a> = Pin<Box<dyn Future<Output = Result<Receipt, ComputeError>> + 'a>>;

    /// On this thread: a job still running (the guard), a receipt holding the token
    /// and yielding for it (job 1), and one waiting for that holder (job 2).
    fn holder_and_waiter(s: &Signer) -> (Running<'_>, [Pending<'_>; 2]) {
        let busy = s.running();
        let mut a: Pending = Box::pin(s.sign(unsigned(1), s.running(), false));
        assert!(poll(a.as_mut()).is_pending(), "the holder yields");
        let mut b: Pending = Box::pin(s.sign(unsigned(2), s.running(), false));
        assert!(poll(b.as_mut()).is_pending(), "b waits");
        (busy, [a, b])
    }

    #[test]
    fn after_a_batch_the_next_holder_yields_once_and_after_a_lone_one_not() {
        let s = signer(true);
        // A batch of two on this thread.
        let (busy, [mut a, mut b]) = holder_and_waiter(&s);
        drop(busy);
        for f in [a.as_mut(), b.as_mut()] {
            let Poll::Ready(r) = poll(f) else {
                panic!("signed in the holder's turn");
            };
            assert_eq!(verified(r).batch.map(|b| b.size), Some(2));
        }
        // Nothing runs now, but the tasks a batch released may be about to: the next
        // holder yields once, then signs alone.
        let mut c = pin!(s.sign(unsigned(3), s.running(), false));
        assert!(poll(c.as_mut()).is_pending(), "yields once after a batch");
        let Poll::Ready(r) = poll(c.as_mut()) else {
            panic!("signed on its second poll");
        };
        assert_eq!(verified(r).batch, None);
        // After a signature of one, a receipt alone is signed at once.
        let Poll::Ready(r) = poll(pin!(s.sign(unsigned(4), s.running(), false))) else {
            panic!("a receipt alone after a lone signature waited");
        };
        assert_eq!(verified(r).batch, None);
    }

    #[test]
    fn a_cancelled_holder_or_waiter_passes_the_token_on() {
        let s = signer(true);
        let (busy, [a, b]) = holder_and_waiter(&s);
        let mut c = pin!(s.sign(unsigned(3), s.running(), false));
        assert!(poll(c.as_mut()).is_pending(), "c waits");
        // The holder is cancelled mid-turn: the token goes to b, whose caller is
        // cancelled before it reads it; c gets it.
        drop(a);
        drop(b);
        assert!(poll(c.as_mut()).is_pending(), "c holds the token and yields");
        let Poll::Ready(r) = poll(c.as_mut()) else {
            panic!("c signs on its second poll");
        };
        assert_eq!(verified(r).job_id, "job-3");
        drop(busy);
        // Nobody holds the token now: a new receipt is signed at once.
        let Poll::Ready(r) = poll(pin!(s.sign(unsigned(4), s.running(), false))) else {
            panic!("the token was lost");
        };
        assert_eq!(verified(r).batch, None);
    }
}
