//! Adverts: what a node tells the network it can do, published on gossipsub.
//!
//! An advert is sealed by its node: the message is a 64-byte ed25519 signature,
//! then the advert's JSON, which names the node's key (`node_id`). The signature
//! covers [`SIGNING_CONTEXT`] and the JSON, so it is valid for nothing else the
//! node's key signs (receipts), nor they for it.
//!
//! Gossipsub carries the sealed bytes anonymously (no source, sequence number or
//! signature of its own) and names each message by the sha256 of its bytes. That is
//! deliberate: in strict mode gossipsub checks its signature on every copy a node
//! receives, before it drops the duplicates, and a node receives each advert from
//! several mesh peers. The 100-node simulation spent 18% of its CPU in those checks
//! (benches/network-bench, network-sim). Here a copy costs a hash; the signature is
//! checked once per distinct message, in [`Advert::check`], before the advert is
//! taken or forwarded. A forgery has other bytes, so another message id: it cannot
//! shadow a genuine advert in gossipsub's duplicate cache.
//!
//! [`Advert::check`] checks the rest too: size and shape, the age, that the advert is
//! newer than the last one from that node (a replayed advert is ignored), and the
//! rate (one per half advert interval; more are ignored and not forwarded).

use crate::protocol::MAX_ADVERT_BYTES;
use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The advert format's version (2: sealed by the node, not signed by gossipsub).
pub const ADVERT_VERSION: u32 = 2;

/// What an advert's signature covers before its JSON.
pub const SIGNING_CONTEXT: &[u8] = b"hanzo-node advert\0";
/// The seal (an ed25519 signature): the first bytes of a published advert.
pub const SEAL_BYTES: usize = 64;

/// Job slots, memory (MiB) and CPU (thousandths of a core).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// Jobs at once.
    pub slots: u64,
    /// Memory in MiB.
    pub memory_mb: u64,
    /// CPU in thousandths of a core.
    pub cpu_millicores: u64,
}

/// The largest limits the node accepts on a job (its `[compute.limits]` and
/// `[compute] max_output_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ceilings {
    /// `max_memory_mb`.
    pub memory_mb: u64,
    /// `max_timeout_ms`.
    pub timeout_ms: u64,
    /// `max_fuel`.
    pub fuel: u64,
    /// `max_disk_mb`.
    pub disk_mb: u64,
    /// `max_output_bytes`.
    pub output_bytes: u64,
}

/// The node's price table (`[network.price]`), in micro-credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// Per job.
    pub per_job: u64,
    /// Per cpu-second (wall time x cores asked).
    pub per_cpu_second: u64,
    /// Per GiB-second of the memory limit.
    pub per_gib_second: u64,
}

/// One node's advert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advert {
    /// [`ADVERT_VERSION`].
    pub version: u32,
    /// The node's software version.
    pub node_version: String,
    /// The node id (hex ed25519 key); the key the advert's seal must verify with.
    pub node_id: String,
    /// Addresses the node can be dialled on (multiaddrs without `/p2p`).
    pub addrs: Vec<String>,
    /// Runtimes it runs for peers. Names this node does not know are kept as text
    /// and never match a job.
    pub runtimes: Vec<String>,
    /// What it hands out in all (its fingerprint, lowered by its config).
    pub capacity: Capacity,
    /// What is free now.
    pub free: Capacity,
    /// Jobs waiting in its queue.
    pub queue_depth: u64,
    /// Remote jobs it runs now.
    pub remote_jobs: u64,
    /// The largest limits it accepts.
    pub ceilings: Ceilings,
    /// What it charges.
    pub price: Price,
    /// Unix ms when issued; also the sequence number (later adverts are larger).
    pub issued_at_ms: u64,
}

/// Why an advert was not taken. `Reject` drops it without forwarding and lowers the
/// propagating peer's reputation in this node's peer table (gossipsub's own peer
/// scoring is not enabled); `Ignore` drops it without forwarding, at no cost.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Well formed, sealed by the node it names (the peer id of its key), fresh and
    /// in order.
    Accept(Box<Advert>, PeerId),
    /// Not forwarded, no penalty (too soon after the last one, a replay).
    Ignore(&'static str),
    /// Malformed or forged: not forwarded, the propagating peer is penalised.
    Reject(String),
}

/// Limits on an advert's lists, so one cannot make every node keep megabytes.
const MAX_ADDRS: usize = 32;
const MAX_ADDR_LEN: usize = 256;
const MAX_RUNTIMES: usize = 32;
const MAX_NAME_LEN: usize = 64;
/// How far in the future an advert's clock may be (clock skew between machines).
const MAX_SKEW: Duration = Duration::from_secs(60);

/// Unix time in ms.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Advert {
    /// An advert offering nothing (what a node publishes before it can run jobs).
    pub fn empty() -> Advert {
        Advert {
            version: ADVERT_VERSION,
            node_version: String::new(),
            node_id: String::new(),
            addrs: Vec::new(),
            runtimes: Vec::new(),
            capacity: Capacity::default(),
            free: Capacity::default(),
            queue_depth: 0,
            remote_jobs: 0,
            ceilings: Ceilings::default(),
            price: Price::default(),
            issued_at_ms: 0,
        }
    }

    /// The advert's JSON (what [`Advert::seal`] signs).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an advert serialises")
    }

    /// The message published: the ed25519 signature of `key` over
    /// [`SIGNING_CONTEXT`] and the JSON, then the JSON. `node_id` must be `key`'s.
    pub fn seal(&self, key: &Keypair) -> Vec<u8> {
        let json = self.encode();
        // Signing only fails for key types that cannot sign; a node's is ed25519.
        let signature = key.sign(&signed_bytes(&json)).expect("an ed25519 key signs");
        let mut out = Vec::with_capacity(SEAL_BYTES + json.len());
        out.extend_from_slice(&signature);
        out.extend_from_slice(&json);
        out
    }

    /// Checks a sealed advert as received; `last_issued_ms` gives the last accepted
    /// advert's issue time from a node; `max_age` is the peer timeout.
    ///
    /// The cheap checks come first, the signature last: a stale, replayed or too
    /// frequent advert is ignored without a signature check (nothing is recorded
    /// from it), and only an advert that would be taken costs one.
    pub fn check(
        data: &[u8],
        last_issued_ms: impl FnOnce(&PeerId) -> Option<u64>,
        min_gap: Duration,
        max_age: Duration,
        now_ms: u64,
    ) -> Verdict {
        if data.len() > MAX_ADVERT_BYTES {
            return Verdict::Reject(format!("advert of {} bytes", data.len()));
        }
        if data.len() <= SEAL_BYTES {
            return Verdict::Reject("advert without a seal".into());
        }
        let (signature, json) = data.split_at(SEAL_BYTES);
        let advert: Advert = match serde_json::from_slice(json) {
            Ok(a) => a,
            Err(e) => return Verdict::Reject(format!("malformed advert: {e}")),
        };
        if advert.version != ADVERT_VERSION {
            return Verdict::Ignore("advert of another version");
        }
        let Ok(key) = crate::identity::key_of_node(&advert.node_id) else {
            return Verdict::Reject("advert naming no ed25519 key".into());
        };
        if advert.addrs.len() > MAX_ADDRS
            || advert.addrs.iter().any(|a| a.len() > MAX_ADDR_LEN)
            || advert.runtimes.len() > MAX_RUNTIMES
            || advert.runtimes.iter().any(|r| r.len() > MAX_NAME_LEN)
            || advert.node_version.len() > MAX_NAME_LEN
        {
            return Verdict::Reject("advert lists over their limits".into());
        }
        if advert.issued_at_ms > now_ms + MAX_SKEW.as_millis() as u64 {
            return Verdict::Reject("advert issued in the future".into());
        }
        if advert.issued_at_ms + (max_age.as_millis() as u64) < now_ms {
            return Verdict::Ignore("stale advert");
        }
        let from = PublicKey::from(key.clone()).to_peer_id();
        if let Some(last) = last_issued_ms(&from) {
            if advert.issued_at_ms <= last {
                return Verdict::Ignore("replayed or reordered advert");
            }
            if advert.issued_at_ms < last + min_gap.as_millis() as u64 {
                return Verdict::Ignore("advert rate over the limit");
            }
        }
        if !key.verify(&signed_bytes(json), signature) {
            return Verdict::Reject("advert not sealed by the node it names".into());
        }
        Verdict::Accept(Box::new(advert), from)
    }
}

/// What a seal signs: [`SIGNING_CONTEXT`], then the advert's JSON.
fn signed_bytes(json: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(SIGNING_CONTEXT.len() + json.len());
    signed.extend_from_slice(SIGNING_CONTEXT);
    signed.extend_from_slice(json);
    signed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Keypair {
        crate::identity::keypair([n; 32])
    }

    fn advert(key: &Keypair, at: u64) -> Advert {
        Advert {
            version: ADVERT_VERSION,
            node_version: "0.1.0".into(),
            node_id: crate::identity::node_id(&key.public().to_peer_id()).unwrap(),
            addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            runtimes: vec!["wasm".into()],
            capacity: Capacity::default(),
            free: Capacity::default(),
            queue_depth: 0,
            remote_jobs: 0,
            ceilings: Ceilings::default(),
            price: Price::default(),
            issued_at_ms: at,
        }
    }

    const GAP: Duration = Duration::from_millis(500);
    const AGE: Duration = Duration::from_secs(20);

    fn check(data: &[u8], last: Option<u64>, now: u64) -> Verdict {
        Advert::check(data, |_| last, GAP, AGE, now)
    }

    #[test]
    fn an_advert_must_be_sealed_by_the_node_it_names_be_fresh_and_in_order() {
        let now = 1_000_000;
        let (a, b) = (key(1), key(2));
        let sealed = advert(&a, now).seal(&a);
        match check(&sealed, None, now) {
            Verdict::Accept(got, from) => {
                assert_eq!(from, a.public().to_peer_id());
                assert_eq!(*got, advert(&a, now));
            }
            other => panic!("{other:?}"),
        }
        // Sealed by another key than the one it names.
        assert_eq!(
            check(&advert(&a, now).seal(&b), None, now),
            Verdict::Reject("advert not sealed by the node it names".into())
        );
        // One byte of the advert changed after sealing.
        let mut changed = sealed.clone();
        let at = changed.len() - 3;
        changed[at] ^= 1;
        assert!(matches!(check(&changed, None, now), Verdict::Reject(_)));
        // The JSON alone (no seal), and a seal made without the context: the key's
        // signature over anything else (a receipt, say) does not pass for an advert.
        assert!(matches!(
            check(&advert(&a, now).encode(), None, now),
            Verdict::Reject(_)
        ));
        let json = advert(&a, now).encode();
        let mut bare = a.sign(&json).unwrap();
        bare.extend_from_slice(&json);
        assert!(matches!(check(&bare, None, now), Verdict::Reject(_)));
        // The same advert again, or one too soon after the last.
        assert_eq!(
            check(&sealed, Some(now), now),
            Verdict::Ignore("replayed or reordered advert")
        );
        let soon = advert(&a, now + 10).seal(&a);
        assert_eq!(
            check(&soon, Some(now), now + 10),
            Verdict::Ignore("advert rate over the limit")
        );
        let old = advert(&a, now - 30_000).seal(&a);
        assert_eq!(check(&old, None, now), Verdict::Ignore("stale advert"));
        let future = advert(&a, now + 120_000).seal(&a);
        assert!(matches!(check(&future, None, now), Verdict::Reject(_)));
    }

    #[test]
    fn malformed_or_oversized_adverts_are_rejected() {
        let now = 1_000_000;
        let a = key(1);
        let seal = |json: &[u8]| {
            let mut out = vec![0u8; SEAL_BYTES];
            out.extend_from_slice(json);
            out
        };
        for bad in [
            Vec::new(),
            vec![0u8; SEAL_BYTES],
            seal(b"{"),
            seal(b"{\"version\":2}"),
            vec![b' '; MAX_ADVERT_BYTES + 1],
        ] {
            assert!(matches!(check(&bad, None, now), Verdict::Reject(_)), "{bad:?}");
        }
        let mut long = advert(&a, now);
        long.addrs = vec!["/ip4/1.2.3.4/tcp/1".into(); MAX_ADDRS + 1];
        assert!(matches!(check(&long.seal(&a), None, now), Verdict::Reject(_)));
        let mut keyless = advert(&a, now);
        keyless.node_id = "ab".repeat(31);
        assert_eq!(
            check(&keyless.seal(&a), None, now),
            Verdict::Reject("advert naming no ed25519 key".into())
        );
    }
}
