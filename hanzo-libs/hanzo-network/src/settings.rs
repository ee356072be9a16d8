//! `[network]` turned into what the swarm needs, with every address and peer id
//! parsed (an error names the key, as every configuration error does).

use crate::NetworkError;
use crate::identity::parse_peer_id;
use hanzo_compute::config::NetworkConfig;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use std::time::Duration;

/// How the network runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub listen: Vec<Multiaddr>,
    /// Nodes to join through, each with its peer id.
    pub bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Addresses to announce besides those observed.
    pub external: Vec<Multiaddr>,
    /// LAN discovery (multicast on every interface).
    pub mdns: bool,
    /// When non-empty, the only peers a connection is kept with.
    pub allow: Vec<PeerId>,
    /// Peers never connected to.
    pub deny: Vec<PeerId>,
    /// Established connections in all.
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
    /// How often this node advertises.
    pub advert_interval: Duration,
    /// A peer not heard from in this long is gone.
    pub peer_timeout: Duration,
    /// Protocol requests one peer may make per second (a burst of as many).
    pub max_requests_per_peer_per_sec: u32,
    /// Act as a circuit relay (v2, bounded) for peers behind NAT.
    pub relay: bool,
    /// This node's software version, advertised.
    pub node_version: String,
}

impl Settings {
    /// Parses `[network]`.
    pub fn from_config(c: &NetworkConfig) -> Result<Settings, NetworkError> {
        let addr = |key: &str, s: &String| -> Result<Multiaddr, NetworkError> {
            s.parse::<Multiaddr>()
                .map_err(|e| NetworkError::bad(&format!("network.{key}"), s, &e.to_string()))
        };
        let listen = c
            .listen
            .iter()
            .map(|s| addr("listen", s))
            .collect::<Result<Vec<_>, _>>()?;
        let external = c
            .external_addrs
            .iter()
            .map(|s| addr("external_addrs", s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut bootstrap = Vec::new();
        for s in &c.bootstrap {
            let a = addr("bootstrap", s)?;
            let Some(Protocol::P2p(peer)) = a.iter().last() else {
                return Err(NetworkError::bad(
                    "network.bootstrap",
                    s,
                    "must end in /p2p/<peer id>",
                ));
            };
            bootstrap.push((peer, a));
        }
        let peers = |key: &str, list: &[String]| -> Result<Vec<PeerId>, NetworkError> {
            list.iter()
                .map(|s| parse_peer_id(&format!("network.{key}"), s))
                .collect()
        };
        Ok(Settings {
            listen,
            bootstrap,
            external,
            mdns: c.mdns,
            allow: peers("allow_peers", &c.allow_peers)?,
            deny: peers("deny_peers", &c.deny_peers)?,
            max_connections: c.max_connections,
            max_connections_per_peer: c.max_connections_per_peer,
            advert_interval: Duration::from_millis(c.advert_interval_ms),
            peer_timeout: Duration::from_millis(c.peer_timeout_ms),
            max_requests_per_peer_per_sec: c.max_requests_per_peer_per_sec,
            relay: c.relay,
            node_version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }
}
