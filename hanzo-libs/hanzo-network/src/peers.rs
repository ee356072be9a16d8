//! What this node knows of its peers: their adverts, latency, reputation and when
//! they were last heard from. A peer not heard from within the peer timeout is gone.

use crate::advert::{Advert, Capacity, Ceilings, Price};
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime};

/// A new peer's reputation: neither trusted nor suspect.
pub const INITIAL_REPUTATION: f64 = 0.5;
/// Addresses kept per peer.
const MAX_ADDRS_PER_PEER: usize = 16;
/// Peers kept in the table. Past it, a new peer replaces the one not connected that
/// was heard from longest ago (adverts from free identities cannot grow the table).
pub const MAX_PEERS: usize = 10_000;

/// How a peer behaved, for its reputation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conduct {
    /// Ran a job and returned a result that checked out.
    Good,
    /// Declined or failed in a way that is not a lie (full, the tool failed).
    Neutral,
    /// Lost a job, sent a malformed message or a result that did not check out.
    Bad,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The peer id and node id as text, made once: a submitter lists its peers for
    /// every job it places, and the peer id's base58 was a measurable part of that.
    pub names: (String, Option<String>),
    pub advert: Option<Advert>,
    pub addrs: BTreeSet<Multiaddr>,
    pub last_seen: Instant,
    pub last_seen_wall: SystemTime,
    pub rtt: Option<Duration>,
    pub reputation: f64,
    pub connected: bool,
}

/// One peer as `GET /v1/peers` and `hanzo-node peers` show it (CONTRACTS §7).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerInfo {
    /// The libp2p peer id.
    pub peer_id: String,
    /// The node id its receipts carry (hex ed25519 key).
    pub node_id: Option<String>,
    /// Addresses it is known by.
    pub addrs: Vec<String>,
    /// Runtimes it runs for peers (from its advert; empty until one arrives).
    pub runtimes: Vec<String>,
    /// Capacity, free capacity and queue depth from its advert.
    pub resources: Resources,
    /// The last measured round trip, in ms.
    pub latency_ms: Option<f64>,
    /// 0 to 1: 0.5 for a new peer, up with results that check out, down with lost
    /// jobs, malformed messages and results that do not.
    pub reputation: f64,
    /// When it was last heard from (RFC 3339, UTC).
    pub last_seen: String,
    /// Whether a connection is open now.
    pub connected: bool,
    /// Its software version.
    pub version: Option<String>,
    /// Its price table.
    pub price: Option<Price>,
    /// The largest limits it accepts.
    pub ceilings: Option<Ceilings>,
}

/// A peer's resources as advertised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Resources {
    /// What it hands out in all.
    pub capacity: Capacity,
    /// What is free.
    pub free: Capacity,
    /// Jobs waiting in its queue.
    pub queue_depth: u64,
}

/// The table the event loop keeps.
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    entries: HashMap<PeerId, Entry>,
}

impl PeerTable {
    fn entry(&mut self, peer: PeerId) -> &mut Entry {
        if !self.entries.contains_key(&peer) && self.entries.len() >= MAX_PEERS {
            let oldest = self
                .entries
                .iter()
                .filter(|(_, e)| !e.connected)
                .min_by_key(|(_, e)| e.last_seen)
                .map(|(p, _)| *p);
            if let Some(p) = oldest {
                self.entries.remove(&p);
            }
        }
        self.entries.entry(peer).or_insert_with(|| Entry {
            names: (peer.to_string(), crate::identity::node_id(&peer)),
            advert: None,
            addrs: BTreeSet::new(),
            last_seen: Instant::now(),
            last_seen_wall: SystemTime::now(),
            rtt: None,
            reputation: INITIAL_REPUTATION,
            connected: false,
        })
    }

    /// The peer was heard from (any message, a ping, a connection).
    pub fn seen(&mut self, peer: PeerId) {
        let e = self.entry(peer);
        e.last_seen = Instant::now();
        e.last_seen_wall = SystemTime::now();
    }

    pub fn add_addr(&mut self, peer: PeerId, addr: Multiaddr) {
        let e = self.entry(peer);
        if e.addrs.len() < MAX_ADDRS_PER_PEER {
            e.addrs.insert(addr);
        }
    }

    pub fn set_connected(&mut self, peer: PeerId, connected: bool) {
        if connected {
            self.seen(peer);
        }
        if let Some(e) = self.entries.get_mut(&peer) {
            e.connected = connected;
        }
    }

    pub fn set_rtt(&mut self, peer: PeerId, rtt: Duration) {
        self.seen(peer);
        self.entry(peer).rtt = Some(rtt);
    }

    pub fn set_advert(&mut self, peer: PeerId, advert: Advert) {
        self.seen(peer);
        let e = self.entry(peer);
        for a in advert.addrs.iter().filter_map(|a| a.parse::<Multiaddr>().ok()) {
            if e.addrs.len() < MAX_ADDRS_PER_PEER {
                e.addrs.insert(a);
            }
        }
        e.advert = Some(advert);
    }

    pub fn last_advert_ms(&self, peer: &PeerId) -> Option<u64> {
        self.entries.get(peer)?.advert.as_ref().map(|a| a.issued_at_ms)
    }

    pub fn report(&mut self, peer: PeerId, conduct: Conduct) {
        let e = self.entry(peer);
        // An exponentially weighted average of outcomes (1 good, 0 bad): recent
        // behaviour counts most, and no single event moves it by more than a tenth.
        let target = match conduct {
            Conduct::Good => 1.0,
            Conduct::Neutral => return,
            Conduct::Bad => 0.0,
        };
        e.reputation = (e.reputation * 0.9 + target * 0.1).clamp(0.0, 1.0);
    }

    pub fn addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.entries
            .get(peer)
            .map(|e| e.addrs.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Drops peers not heard from within `timeout` and not connected; returns them.
    pub fn expire(&mut self, timeout: Duration) -> Vec<PeerId> {
        let now = Instant::now();
        let gone: Vec<PeerId> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.connected && now.duration_since(e.last_seen) > timeout)
            .map(|(p, _)| *p)
            .collect();
        for p in &gone {
            self.entries.remove(p);
        }
        gone
    }

    /// Every peer heard from within `timeout` (connected or with a fresh advert).
    pub fn live(&self, timeout: Duration) -> Vec<PeerInfo> {
        let now = Instant::now();
        let mut out: Vec<PeerInfo> = self
            .entries
            .iter()
            .filter(|(_, e)| e.connected || now.duration_since(e.last_seen) <= timeout)
            .filter(|(_, e)| e.connected || e.advert.is_some())
            .map(|(_, e)| info(e))
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

fn info(e: &Entry) -> PeerInfo {
    let advert = e.advert.as_ref();
    PeerInfo {
        peer_id: e.names.0.clone(),
        node_id: e.names.1.clone(),
        addrs: e.addrs.iter().map(|a| a.to_string()).collect(),
        runtimes: advert.map(|a| a.runtimes.clone()).unwrap_or_default(),
        resources: advert
            .map(|a| Resources {
                capacity: a.capacity,
                free: a.free,
                queue_depth: a.queue_depth,
            })
            .unwrap_or_default(),
        latency_ms: e.rtt.map(|d| d.as_secs_f64() * 1000.0),
        reputation: e.reputation,
        last_seen: hanzo_compute::receipt::timestamp(e.last_seen_wall),
        connected: e.connected,
        version: advert.map(|a| a.node_version.clone()),
        price: advert.map(|a| a.price),
        ceilings: advert.map(|a| a.ceilings),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reputation_moves_by_conduct_and_stays_in_range() {
        let mut t = PeerTable::default();
        let p = PeerId::random();
        t.seen(p);
        t.set_connected(p, true);
        for _ in 0..100 {
            t.report(p, Conduct::Good);
        }
        let r = t.live(Duration::from_secs(1))[0].reputation;
        assert!(r > 0.99 && r <= 1.0, "{r}");
        for _ in 0..100 {
            t.report(p, Conduct::Bad);
        }
        let r = t.live(Duration::from_secs(1))[0].reputation;
        assert!((0.0..0.01).contains(&r), "{r}");
    }

    #[test]
    fn a_peer_not_heard_from_is_gone_unless_connected() {
        let mut t = PeerTable::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        t.seen(a);
        t.seen(b);
        t.set_connected(b, true);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(t.expire(Duration::from_millis(10)), vec![a]);
        assert_eq!(t.len(), 1);
    }
}
