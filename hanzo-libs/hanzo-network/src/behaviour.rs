//! The behaviours a node composes, and the swarm built from them.

use crate::NetworkError;
use crate::codec::Cbor;
use crate::protocol::{
    ADVERT_TOPIC, CHUNK_BYTES, ChunkRequest, ChunkResponse, IDENTIFY_PROTOCOL, KAD_PROTOCOL,
    MAX_ADVERT_BYTES, MAX_CHUNK_REQUEST_BYTES, MODULES_PROTOCOL,
};
use crate::settings::Settings;
use futures::{AsyncRead, AsyncWrite};
use libp2p::core::transport::{MemoryTransport, Transport as _};
use libp2p::core::upgrade;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, allow_block_list, autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair, kad, mdns, noise, ping, relay, tcp, yamux,
};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// How long a request may wait for its reply: an `Await` is held up to
/// `MAX_AWAIT_MS` by design, so this is well above it. Also how long a job stream
/// waits for the rest of a frame, or for the peer to take an answer.
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
    /// `/hanzo/jobs/3`: one long-lived stream per peer (see jobs.rs, streams.rs).
    pub jobs: crate::streams::Behaviour,
    pub modules: request_response::Behaviour<Cbor<ChunkRequest, ChunkResponse>>,
    pub autonat: autonat::Behaviour,
    pub relay_server: Toggle<relay::Behaviour>,
    pub relay_client: relay::client::Behaviour,
    pub dcutr: dcutr::Behaviour,
}

/// AutoNAT (v1): peers dial this node back on the addresses it was seen at, and it
/// learns whether it is reachable or behind NAT (then it takes a relay slot, see the
/// event loop). Probes start after 2 s and repeat every 10 s until confident, then
/// every minute. Private addresses count: nodes on one LAN, or the test's own
/// network namespaces, are as real as any; a node on a LAN is reachable from it.
fn autonat_config() -> autonat::Config {
    autonat::Config {
        boot_delay: Duration::from_secs(2),
        retry_interval: Duration::from_secs(10),
        refresh_interval: Duration::from_secs(60),
        only_global_ips: false,
        ..autonat::Config::default()
    }
}

/// Streams one connection handler of `/hanzo/modules/1` serves at once, in and out
/// together (chunk requests are short), and of those what this node uses for its own
/// requests to one peer (the rest wait in the event loop's queue).
pub(crate) const CHUNK_STREAMS: usize = 32;
pub(crate) const CHUNK_STREAMS_OUT: usize = 16;

fn request_response_config(streams: usize) -> request_response::Config {
    request_response::Config::default()
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_max_concurrent_streams(streams)
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

/// Bytes a node's connections carried, both ways, counted below noise: what a real
/// link would carry (without TCP/IP headers).
#[derive(Debug, Default)]
pub struct WireBytes {
    sent: AtomicU64,
    received: AtomicU64,
}

impl WireBytes {
    /// (sent, received) since start.
    pub fn get(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}

/// A connection that adds what it reads and writes to its node's [`WireBytes`].
struct Counted<S> {
    inner: S,
    wire: Arc<WireBytes>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.wire.received.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.wire.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Builds the same swarm (every behaviour, the same settings) on libp2p's in-process
/// memory transport (`/memory/<port>` addresses) with the same noise + yamux
/// upgrades: for simulating many nodes in one process. No TCP, no DNS; the bytes its
/// connections carry are added to `wire`.
pub(crate) fn build_memory(
    key: Keypair,
    s: &Settings,
    wire: Arc<WireBytes>,
) -> Result<Swarm<Behaviour>, NetworkError> {
    let build_err = |e: &dyn std::fmt::Display| NetworkError::Listen {
        addr: "swarm".into(),
        why: e.to_string(),
    };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
            Ok(MemoryTransport::default()
                .map(move |inner, _| Counted { inner, wire })
                .upgrade(upgrade::Version::V1)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })
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
    // The node keeps no records in the DHT (it is for finding peers): records peers
    // ask it to store are not kept.
    kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
    let mut kad = kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    // Every node serves the DHT: nodes are servers by nature (they take jobs).
    kad.set_mode(Some(kad::Mode::Server));

    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_secs(1))
        // Anonymous: gossipsub adds no source, sequence number or signature, and
        // accepts no message that has one. Adverts are sealed by their node and
        // checked once per distinct message (advert.rs says why: strict mode checks a
        // signature on every duplicate copy).
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        // A message is named by its bytes, so a forgery cannot take a genuine
        // advert's id (and have it dropped as a duplicate).
        .message_id_fn(|m: &gossipsub::Message| {
            use sha2::Digest as _;
            gossipsub::MessageId::from(sha2::Sha256::digest(&m.data).to_vec())
        })
        // Each advert is checked by the node (advert.rs) before it is forwarded.
        .validate_messages()
        .max_transmit_size(MAX_ADVERT_BYTES + 1024)
        .build()?;
    let mut gossipsub = gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Anonymous, gossip_config)?;
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
        jobs: crate::streams::Behaviour::new(crate::jobs::PROTOCOL),
        // A chunk request is a hash and an offset; a reply one chunk.
        modules: request_response::Behaviour::with_codec(
            Cbor::new(MAX_CHUNK_REQUEST_BYTES, CHUNK_BYTES + 64 * 1024),
            [(StreamProtocol::new(MODULES_PROTOCOL), ProtocolSupport::Full)],
            request_response_config(CHUNK_STREAMS),
        ),
        autonat: autonat::Behaviour::new(peer_id, autonat_config()),
        relay_server: relay_server.into(),
        relay_client,
        dcutr: dcutr::Behaviour::new(peer_id),
    })
}
