//! The handle the rest of the node holds: commands in, oneshot replies out.

use crate::advert::Advert;
use crate::behaviour::WireBytes;
use crate::event_loop::{Command, EventLoop};
use crate::jobs::{JobReply, Links, Shared};
use crate::peers::{Conduct, PeerInfo};
use crate::protocol::{ChunkRequest, ChunkResponse, JobRequest, JobResponse};
use crate::settings::Settings;
use crate::{NetworkError, behaviour};
use libp2p::request_response::ResponseChannel;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

/// A request from a peer, for the node to answer through [`Client::respond_job`] or
/// [`Client::respond_chunk`] (dropping the channel answers nothing and the peer's
/// request fails).
#[derive(Debug)]
pub enum Inbound {
    /// On `/hanzo/jobs/3`.
    Job {
        /// Who asks (authenticated by the connection's noise handshake).
        peer: PeerId,
        /// What.
        request: JobRequest,
        /// Where the answer goes (dropped unanswered, it refuses the request).
        channel: JobReply,
    },
    /// On `/hanzo/modules/1`.
    Chunk {
        /// Who asks.
        peer: PeerId,
        /// What.
        request: ChunkRequest,
        /// Where the answer goes.
        channel: ResponseChannel<ChunkResponse>,
    },
}

/// A peer came or went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// A first connection to it opened.
    Connected(PeerId),
    /// Its last connection closed.
    Disconnected(PeerId),
    /// Pings to it failed: the connection is open but nothing comes back (a cut
    /// link, a frozen process).
    Unresponsive(PeerId),
}

/// Counters since start, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// Peers with an open connection.
    pub connected_peers: u64,
    /// Peers in the table (heard from within the peer timeout).
    pub known_peers: u64,
    /// Adverts this node published.
    pub adverts_published: u64,
    /// Adverts accepted from peers.
    pub adverts_accepted: u64,
    /// Adverts ignored (replays, too frequent, stale).
    pub adverts_ignored: u64,
    /// Adverts rejected (malformed, forged): their senders are penalised.
    pub adverts_rejected: u64,
    /// Requests received from peers.
    pub requests_in: u64,
    /// Requests refused without being looked at (rate, busy).
    pub requests_refused: u64,
    /// Requests that were not well-formed requests of the protocol, or over the size
    /// cap: refused, and their senders penalised.
    pub malformed_requests: u64,
    /// Inbound requests that failed (timed out, connection lost before the answer).
    pub inbound_failures: u64,
    /// Requests sent to peers.
    pub requests_out: u64,
    /// Requests to peers that failed (unreachable, timeout, malformed reply).
    pub outbound_failures: u64,
    /// Payload bytes received in job results and code chunks.
    pub payload_bytes_in: u64,
    /// Payload bytes sent in job results and code chunks.
    pub payload_bytes_out: u64,
    /// Direct connections made through a NAT (DCUtR).
    pub hole_punches: u64,
    /// Hole punches that failed (the relayed connection stays).
    pub hole_punch_failures: u64,
    /// Idle connections closed because too many peers were connected.
    pub connections_trimmed: u64,
}

/// The cloneable handle to the network.
#[derive(Clone)]
pub struct Client {
    sender: mpsc::Sender<Command>,
    peer_id: PeerId,
    events: broadcast::Sender<PeerEvent>,
    /// Bytes on the wire, counted on the memory transport only.
    wire: Option<Arc<WireBytes>>,
    /// The job streams to peers.
    links: Arc<Links>,
}

/// The network's channels, for the node to drain.
pub struct Channels {
    /// Requests from peers. Bounded: when the node falls behind, further requests
    /// are refused with "busy" rather than queued without end.
    pub inbound: mpsc::Receiver<Inbound>,
}

/// What builds the advert this node publishes, called at every advert interval
/// (the network fills in the node id, the addresses and the time).
pub type AdvertSource = Arc<dyn Fn() -> Advert + Send + Sync>;

/// Builds the swarm, binds the listen addresses, dials the bootstrap nodes and
/// spawns the event loop on the current tokio runtime.
///
/// `seed` is the node key's secret seed ([`hanzo_compute::NodeKey::secret_seed`]):
/// the peer id is derived from it.
pub async fn start(
    seed: [u8; 32],
    settings: Settings,
    advert: AdvertSource,
) -> Result<(Client, Channels), NetworkError> {
    let key = crate::identity::keypair(seed);
    let swarm = behaviour::build(key.clone(), &settings)?;
    launch(swarm, key, settings, advert, None).await
}

/// Binds, dials the bootstrap nodes and spawns the event loop of a built swarm.
async fn launch(
    mut swarm: libp2p::Swarm<behaviour::Behaviour>,
    key: libp2p::identity::Keypair,
    settings: Settings,
    advert: AdvertSource,
    wire: Option<Arc<WireBytes>>,
) -> Result<(Client, Channels), NetworkError> {
    let peer_id = *swarm.local_peer_id();
    for addr in &settings.listen {
        swarm.listen_on(addr.clone()).map_err(|e| NetworkError::Listen {
            addr: addr.to_string(),
            why: crate::event_loop::transport_error(&e),
        })?;
    }
    for addr in &settings.external {
        swarm.add_external_address(addr.clone());
    }
    let (sender, commands) = mpsc::channel(256);
    let (inbound_tx, inbound) = mpsc::channel(256);
    let (events, _) = broadcast::channel(1024);
    let shared = Arc::new(Shared::new(settings.max_requests_per_peer_per_sec));
    let opener = swarm.behaviour().jobs.opener();
    let incoming = swarm
        .behaviour_mut()
        .jobs
        .take_incoming()
        .ok_or_else(|| NetworkError::Listen {
            addr: crate::protocol::JOBS_PROTOCOL.into(),
            why: "the job streams are taken already".into(),
        })?;
    // The links and the stream tasks hold the command channel weakly: the event loop
    // ends when the last client handle goes.
    let links = Arc::new(Links::new(opener, sender.downgrade(), shared.clone()));
    tokio::spawn(crate::jobs::accept(
        incoming,
        inbound_tx.clone(),
        sender.downgrade(),
        shared,
    ));
    let mut event_loop = EventLoop::new(
        swarm,
        settings,
        commands,
        inbound_tx,
        events.clone(),
        advert,
        key,
        links.clone(),
    );
    // Bind before returning, so that `listen_addrs` is complete at once.
    event_loop.await_listeners().await?;
    tokio::spawn(event_loop.run());
    Ok((
        Client {
            sender,
            peer_id,
            events,
            wire,
            links,
        },
        Channels { inbound },
    ))
}

impl Client {
    /// [`start`] on libp2p's in-process memory transport instead of TCP: the same
    /// behaviours, settings, event loop and protocols, with noise and yamux over
    /// in-memory channels. `settings.listen` and the bootstrap addresses are
    /// `/memory/<port>` multiaddrs (ports are process-wide). For simulations of many
    /// nodes in one process (`benches/network-bench`); [`Client::wire_bytes`] counts
    /// what its connections carry.
    pub async fn start_memory(
        seed: [u8; 32],
        settings: Settings,
        advert: AdvertSource,
    ) -> Result<(Client, Channels), NetworkError> {
        let wire = Arc::new(WireBytes::default());
        let key = crate::identity::keypair(seed);
        let swarm = behaviour::build_memory(key.clone(), &settings, wire.clone())?;
        launch(swarm, key, settings, advert, Some(wire)).await
    }

    /// Bytes (sent, received) on this node's connections since start, below noise;
    /// `None` on TCP (counted only by [`Client::start_memory`]'s transport).
    pub fn wire_bytes(&self) -> Option<(u64, u64)> {
        self.wire.as_ref().map(|w| w.get())
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NetworkError> {
        let (tx, rx) = oneshot::channel();
        self.sender
            .send(make(tx))
            .await
            .map_err(|_| NetworkError::Stopped)?;
        rx.await.map_err(|_| NetworkError::Stopped)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// Peer comings and goings, from now on.
    pub fn events(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    /// The bound addresses as full multiaddrs ending in `/p2p/<peer id>`.
    pub async fn listen_addrs(&self) -> Result<Vec<String>, NetworkError> {
        self.ask(|reply| Command::ListenAddrs { reply }).await
    }

    /// Every live peer (heard from within the peer timeout).
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetworkError> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Sends a job request and waits for the reply (dialling the peer at the
    /// addresses it advertised when not connected).
    pub async fn job(&self, peer: PeerId, request: JobRequest) -> Result<JobResponse, NetworkError> {
        self.links.call(peer, request).await
    }

    /// Fetches one chunk of code.
    pub async fn chunk(&self, peer: PeerId, request: ChunkRequest) -> Result<ChunkResponse, NetworkError> {
        self.ask(|reply| Command::Chunk { peer, request, reply }).await?
    }

    /// Answers a peer's job request.
    pub async fn respond_job(&self, channel: JobReply, response: JobResponse) {
        channel.send(response).await;
    }

    /// Answers a peer's chunk request.
    pub async fn respond_chunk(&self, channel: ResponseChannel<ChunkResponse>, response: ChunkResponse) {
        let _ = self
            .sender
            .send(Command::RespondChunk { channel, response })
            .await;
    }

    /// Records how a peer behaved (its reputation).
    pub async fn report(&self, peer: PeerId, conduct: Conduct) {
        let _ = self.sender.send(Command::Report { peer, conduct }).await;
    }

    /// Publishes the advert now rather than at the next interval (rate-limited to one
    /// per half interval, as peers would ignore more).
    pub async fn advertise_now(&self) {
        let _ = self.sender.send(Command::AdvertiseNow).await;
    }

    /// Dials an address (a multiaddr, with `/p2p/<id>` or without).
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetworkError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Whether a connection to `peer` is open.
    pub async fn is_connected(&self, peer: PeerId) -> bool {
        self.ask(|reply| Command::IsConnected { peer, reply })
            .await
            .unwrap_or(false)
    }

    /// Whether this node is reachable, as AutoNAT found: `unknown`, `public` or
    /// `private` (behind NAT: reachable through relays).
    pub async fn nat_status(&self) -> Result<String, NetworkError> {
        self.ask(|reply| Command::Nat { reply }).await
    }

    /// Counters.
    pub async fn metrics(&self) -> Result<Metrics, NetworkError> {
        self.ask(|reply| Command::Metrics { reply }).await
    }
}
