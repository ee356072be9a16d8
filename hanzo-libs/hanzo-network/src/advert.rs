//! Adverts: what a node tells the network it can do, published on gossipsub.
//!
//! Gossipsub signs every message with the publisher's key and checks the signature
//! (strict validation), so the source of an advert is authenticated; this module
//! checks the rest: size and shape, that the advert names the key that signed it, its
//! age, that it is newer than the last one from that node (a replayed advert is
//! ignored), and the rate (one per half advert interval; more are ignored and not
//! forwarded).

use crate::protocol::MAX_ADVERT_BYTES;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The advert format's version.
pub const ADVERT_VERSION: u32 = 1;

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
    /// The node id (hex ed25519 key); must be the key that signed the message.
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
    /// Well formed, from its signer, fresh and in order.
    Accept(Box<Advert>),
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

    /// Encodes for publishing.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an advert serialises")
    }

    /// Checks an advert received from `signer_node_id` (the node id of the key that
    /// signed the gossipsub message); `last_issued_ms` is the last accepted advert's
    /// issue time from that node; `max_age` the peer timeout.
    pub fn check(
        data: &[u8],
        signer_node_id: Option<&str>,
        last_issued_ms: Option<u64>,
        min_gap: Duration,
        max_age: Duration,
        now_ms: u64,
    ) -> Verdict {
        if data.len() > MAX_ADVERT_BYTES {
            return Verdict::Reject(format!("advert of {} bytes", data.len()));
        }
        let advert: Advert = match serde_json::from_slice(data) {
            Ok(a) => a,
            Err(e) => return Verdict::Reject(format!("malformed advert: {e}")),
        };
        if advert.version != ADVERT_VERSION {
            return Verdict::Ignore("advert of another version");
        }
        let Some(signer) = signer_node_id else {
            return Verdict::Reject("advert without an ed25519 signer".into());
        };
        if advert.node_id != signer {
            return Verdict::Reject("advert names another node than its signer".into());
        }
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
        if let Some(last) = last_issued_ms {
            if advert.issued_at_ms <= last {
                return Verdict::Ignore("replayed or reordered advert");
            }
            if advert.issued_at_ms < last + min_gap.as_millis() as u64 {
                return Verdict::Ignore("advert rate over the limit");
            }
        }
        Verdict::Accept(Box::new(advert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advert(node: &str, at: u64) -> Advert {
        Advert {
            version: ADVERT_VERSION,
            node_version: "0.1.0".into(),
            node_id: node.into(),
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

    #[test]
    fn an_advert_must_name_its_signer_be_fresh_and_in_order() {
        let now = 1_000_000;
        let a = advert("aa", now).encode();
        assert!(matches!(
            Advert::check(&a, Some("aa"), None, GAP, AGE, now),
            Verdict::Accept(_)
        ));
        assert!(matches!(
            Advert::check(&a, Some("bb"), None, GAP, AGE, now),
            Verdict::Reject(_)
        ));
        assert!(matches!(
            Advert::check(&a, None, None, GAP, AGE, now),
            Verdict::Reject(_)
        ));
        // The same advert again, or one too soon after the last.
        assert_eq!(
            Advert::check(&a, Some("aa"), Some(now), GAP, AGE, now),
            Verdict::Ignore("replayed or reordered advert")
        );
        let soon = advert("aa", now + 10).encode();
        assert_eq!(
            Advert::check(&soon, Some("aa"), Some(now), GAP, AGE, now + 10),
            Verdict::Ignore("advert rate over the limit")
        );
        let old = advert("aa", now - 30_000).encode();
        assert_eq!(
            Advert::check(&old, Some("aa"), None, GAP, AGE, now),
            Verdict::Ignore("stale advert")
        );
        let future = advert("aa", now + 120_000).encode();
        assert!(matches!(
            Advert::check(&future, Some("aa"), None, GAP, AGE, now),
            Verdict::Reject(_)
        ));
    }

    #[test]
    fn malformed_or_oversized_adverts_are_rejected() {
        let now = 1_000_000;
        for bad in [
            b"{".to_vec(),
            b"{\"version\":1}".to_vec(),
            vec![b' '; MAX_ADVERT_BYTES + 1],
        ] {
            assert!(matches!(
                Advert::check(&bad, Some("aa"), None, GAP, AGE, now),
                Verdict::Reject(_)
            ));
        }
        let mut a = advert("aa", now);
        a.addrs = vec!["/ip4/1.2.3.4/tcp/1".into(); MAX_ADDRS + 1];
        assert!(matches!(
            Advert::check(&a.encode(), Some("aa"), None, GAP, AGE, now),
            Verdict::Reject(_)
        ));
    }
}
