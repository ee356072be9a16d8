//! The behaviours a node composes, and the swarm built from them.

use crate::NetworkError;
use crate::codec::Cbor;
use crate::protocol::{
    ADVERT_TOPIC, ChunkRequest, ChunkResponse, IDENTIFY_PROTOCOL, JOBS_PROTOCOL, JobRequest, JobResponse,
    KAD_PROTOCOL, MAX_ADVERT_BYTES, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, MODULES_PROTOCOL,
};
use crate::settings::Settings;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair, kad, mdns, noise, ping, relay, tcp, yamux,
};
use std::time::Duration;

/// How long a request may wait for its reply: an `Await` is held up to
/// `MAX_AWAIT_MS` by design, so this is well above it.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often peers are pinged (the RTT that placement ranks by).
const PING_INTERVAL: Duration = Duration::from_secs(2);

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Connection caps, in all and per peer; checked before anything else.
    pub limits: connection_limits::Behaviour,
    /// `deny_peers`: connections refused.
    pub denied: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// `allow_peers` when set: every other peer refused.
    pub allowed: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: kad::Behaviour<kad::store::MemoryStore>,
    pub gossipsub: gossipsub::Behaviour,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
    pub jobs: request_response::Behaviour<Cbor<JobRequest, JobResponse>>,
    pub modules: request_response::Behaviour<Cbor<ChunkRequest, ChunkResponse>>,
    pub autonat: autonat::Behaviour,
    pub relay_server: Toggle<relay::Behaviour>,
    pub relay_client: relay::client::Behaviour,
    pub dcutr: dcutr::Behaviour,
}

fn request_response_config() -> request_response::Config {
    request_response::Config::default()
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_max_concurrent_streams(64)
}

fn codec<Req, Resp>() -> Cbor<Req, Resp> {
    Cbor::new(MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES)
}

/// Builds the swarm: TCP + noise + yamux (and relayed connections), DNS.
pub(crate) fn build(key: Keypair, s: &Settings) -> Result<Swarm<Behaviour>, NetworkError> {
    let build_err = |e: &dyn std::fmt::Display| NetworkError::Listen {
        addr: "swarm".into(),
        why: e.to_string(),
    };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| build_err(&e))?
        .with_dns()
        .map_err(|e| build_err(&e))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| build_err(&e))?
        .with_behaviour(|key, relay_client| behaviour(key, relay_client, s))
        .map_err(|e| build_err(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    Ok(swarm)
}

fn behaviour(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    s: &Settings,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let peer_id = key.public().to_peer_id();

    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(s.max_connections))
        .with_max_established_per_peer(Some(s.max_connections_per_peer))
        .with_max_pending_incoming(Some(s.max_connections.min(128)))
        .with_max_pending_outgoing(Some(s.max_connections.min(128)));

    let mut denied = allow_block_list::Behaviour::<allow_block_list::BlockedPeers>::default();
    for p in &s.deny {
        denied.block_peer(*p);
    }
    let allowed = (!s.allow.is_empty()).then(|| {
        let mut a = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for p in &s.allow {
            a.allow_peer(*p);
        }
        a
    });

    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_query_timeout(Duration::from_secs(30));
    let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Every node serves the DHT: nodes are servers by nature (they take jobs).
    kad.set_mode(Some(kad::Mode::Server));

    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_secs(1))
        // Strict: every message carries its author's signature and sequence number,
        // and both are checked before this node sees it.
        .validation_mode(gossipsub::ValidationMode::Strict)
        // Each advert is checked by the node (advert.rs) before it is forwarded.
        .validate_messages()
        .max_transmit_size(MAX_ADVERT_BYTES + 1024)
        .build()?;
    let mut gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_config)?;
    gossipsub.subscribe(&gossipsub::IdentTopic::new(ADVERT_TOPIC))?;

    let mdns = if s.mdns {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)?)
    } else {
        None
    };

    let relay_server = s.relay.then(|| {
        // Bounded: a relay is a favour to peers behind NAT, not a free proxy.
        let config = relay::Config {
            max_reservations: 32,
            max_reservations_per_peer: 2,
            max_circuits: 16,
            max_circuits_per_peer: 2,
            max_circuit_duration: Duration::from_secs(10 * 60),
            max_circuit_bytes: 64 * 1024 * 1024,
            ..relay::Config::default()
        };
        relay::Behaviour::new(peer_id, config)
    });

    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        denied,
        allowed: allowed.into(),
        identify: identify::Behaviour::new(
            identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
                .with_agent_version(format!("hanzo-node/{}", s.node_version)),
        ),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL)),
        kad,
        gossipsub,
        mdns: mdns.into(),
        jobs: request_response::Behaviour::with_codec(
            codec(),
            [(StreamProtocol::new(JOBS_PROTOCOL), ProtocolSupport::Full)],
            request_response_config(),
        ),
        modules: request_response::Behaviour::with_codec(
            codec(),
            [(StreamProtocol::new(MODULES_PROTOCOL), ProtocolSupport::Full)],
            request_response_config(),
        ),
        autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
        relay_server: relay_server.into(),
        relay_client,
        dcutr: dcutr::Behaviour::new(peer_id),
    })
}
