//! The one task that owns the swarm.

use crate::advert::{Advert, Verdict, now_ms};
use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::client::{AdvertSource, Inbound, Metrics, PeerEvent};
use crate::codec::Decoded;
use crate::jobs::{Links, Shared};
use crate::peers::{Conduct, PeerInfo, PeerTable};
use crate::protocol::{ADVERT_TOPIC, ChunkRequest, ChunkResponse};
use crate::settings::Settings;
use crate::{NetworkError, identity};
use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{
    Multiaddr, PeerId, Swarm, TransportError, autonat, dcutr, gossipsub, identify, kad, mdns, ping, relay,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

type Reply<T> = oneshot::Sender<Result<T, NetworkError>>;

pub(crate) enum Command {
    ListenAddrs {
        reply: oneshot::Sender<Vec<String>>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    /// Dial the peer at the addresses it advertised unless it is connected (or being
    /// dialled): what a job stream to it needs first.
    Connect {
        peer: PeerId,
        reply: Reply<()>,
    },
    Chunk {
        peer: PeerId,
        request: ChunkRequest,
        reply: Reply<ChunkResponse>,
    },
    RespondChunk {
        channel: ResponseChannel<ChunkResponse>,
        response: ChunkResponse,
    },
    Report {
        peer: PeerId,
        conduct: Conduct,
    },
    AdvertiseNow,
    Dial {
        addr: Multiaddr,
        reply: Reply<()>,
    },
    IsConnected {
        peer: PeerId,
        reply: oneshot::Sender<bool>,
    },
    Metrics {
        reply: oneshot::Sender<Metrics>,
    },
    Nat {
        reply: oneshot::Sender<String>,
    },
}

/// Requests of one protocol on their way out: at most `per_peer` in flight to a peer,
/// the rest waiting in order (at most [`MAX_QUEUED_PER_PEER`]).
pub(crate) struct Outbound<Req, Resp> {
    per_peer: usize,
    pending: HashMap<OutboundRequestId, (PeerId, Reply<Resp>)>,
    in_flight: HashMap<PeerId, usize>,
    queued: HashMap<PeerId, VecDeque<(Req, Reply<Resp>)>>,
}

impl<Req, Resp> Outbound<Req, Resp> {
    fn new(per_peer: usize) -> Self {
        Outbound {
            per_peer,
            pending: HashMap::new(),
            in_flight: HashMap::new(),
            queued: HashMap::new(),
        }
    }
}

/// Requests waiting for a stream to one peer; past it a request fails at once.
const MAX_QUEUED_PER_PEER: usize = 4096;

/// How many kad-discovered peers a node connects to by itself. Adverts reach every
/// subscriber through the gossipsub mesh, so a node needs a handful of connections,
/// not one to every peer; jobs dial their peer directly.
const TARGET_CONNECTIONS: usize = 16;
/// Past this many connected peers, the idle ones are closed (see `trim`).
const MAX_KEPT_CONNECTIONS: usize = 2 * TARGET_CONNECTIONS;
/// A connection younger than this, or to a peer that made or answered a request this
/// recently, is not trimmed.
const KEEP_NEW_OR_USED: Duration = Duration::from_secs(60);
/// How often connections are trimmed.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);
/// How often unreachable bootstrap nodes are dialled again.
const REDIAL_INTERVAL: Duration = Duration::from_secs(5);
/// Relays a node behind NAT keeps a slot at.
const MAX_RELAYS: usize = 2;

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    settings: Settings,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<Inbound>,
    events: broadcast::Sender<PeerEvent>,
    advert: AdvertSource,
    peers: PeerTable,
    connected: HashSet<PeerId>,
    /// When each connected peer was first connected, and last sent or answered a
    /// request: what connection trimming keeps.
    connected_at: HashMap<PeerId, Instant>,
    used_at: HashMap<PeerId, Instant>,
    listen_addrs: Vec<Multiaddr>,
    chunks_out: Outbound<ChunkRequest, ChunkResponse>,
    /// The job streams' rate buckets, counters and use times.
    shared: Arc<Shared>,
    /// The job streams to peers (whether one has requests in flight).
    links: Arc<Links>,
    last_published: Option<Instant>,
    metrics: Metrics,
    /// What AutoNAT says of this node: `unknown`, `public` or `private`.
    nat: &'static str,
    /// Connected peers that serve as relays (they speak the relay hop protocol).
    relay_capable: HashSet<PeerId>,
    /// Relays this node asked for a slot (a `/p2p-circuit` listener each).
    relays: HashSet<PeerId>,
    /// The node's key, which seals its adverts.
    key: Keypair,
}

/// The OS's reason inside a transport error.
pub(crate) fn transport_error(e: &TransportError<std::io::Error>) -> String {
    match e {
        TransportError::MultiaddrNotSupported(a) => format!("unsupported address {a}"),
        TransportError::Other(e) => e.to_string(),
    }
}

impl EventLoop {
    // The loop's parts, each made by `launch`: a struct of them would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        settings: Settings,
        commands: mpsc::Receiver<Command>,
        inbound: mpsc::Sender<Inbound>,
        events: broadcast::Sender<PeerEvent>,
        advert: AdvertSource,
        key: Keypair,
        links: Arc<Links>,
    ) -> Self {
        EventLoop {
            key,
            swarm,
            settings,
            commands,
            inbound,
            events,
            advert,
            peers: PeerTable::default(),
            connected: HashSet::new(),
            connected_at: HashMap::new(),
            used_at: HashMap::new(),
            listen_addrs: Vec::new(),
            chunks_out: Outbound::new(crate::behaviour::CHUNK_STREAMS_OUT),
            shared: links.shared(),
            links,
            last_published: None,
            metrics: Metrics::default(),
            nat: "unknown",
            relay_capable: HashSet::new(),
            relays: HashSet::new(),
        }
    }

    /// Waits until every listener reported its address (or failed), at most 5 s.
    pub(crate) async fn await_listeners(&mut self) -> Result<(), NetworkError> {
        let want = self.settings.listen.len();
        let deadline = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(deadline);
        let mut seen = HashSet::new();
        while seen.len() < want {
            tokio::select! {
                _ = &mut deadline => break,
                event = self.swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { listener_id, address } => {
                        seen.insert(listener_id);
                        self.listen_addrs.push(address);
                    }
                    SwarmEvent::ListenerError { error, .. } => {
                        return Err(NetworkError::Listen { addr: "listener".into(), why: error.to_string() });
                    }
                    SwarmEvent::ListenerClosed { addresses, reason, .. } => {
                        return Err(NetworkError::Listen {
                            addr: format!("{addresses:?}"),
                            why: reason.err().map(|e| e.to_string()).unwrap_or_else(|| "closed".into()),
                        });
                    }
                    other => self.on_swarm_event(other),
                },
            }
        }
        Ok(())
    }

    pub(crate) async fn run(mut self) {
        self.dial_bootstrap();
        let mut advert_tick = tokio::time::interval(self.settings.advert_interval);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        let mut redial = tokio::time::interval(REDIAL_INTERVAL);
        let mut trim = tokio::time::interval(TRIM_INTERVAL);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(c) => self.on_command(c),
                    // Every client handle is gone: the node is shutting down.
                    None => return,
                },
                _ = advert_tick.tick() => self.publish_advert(self.settings.advert_interval / 2),
                _ = housekeeping.tick() => {
                    // Peers that made or answered job requests: heard from, and
                    // their connections in use.
                    // Only connected ones: a peer gone meanwhile would leave an entry
                    // behind for good.
                    for (peer, at) in self.shared.take_used() {
                        if self.connected.contains(&peer) {
                            self.peers.seen(peer);
                            self.used_at.insert(peer, at);
                        }
                    }
                    for peer in self.peers.expire(self.settings.peer_timeout) {
                        self.shared.forget(&peer);
                        tracing::debug!(%peer, "peer gone (not heard from within the peer timeout)");
                    }
                }
                _ = redial.tick() => self.dial_bootstrap(),
                _ = trim.tick() => self.trim(),
            }
        }
    }

    /// Closes idle connections past [`MAX_KEPT_CONNECTIONS`], least recently used
    /// first. Every connection between two nodes stays open while both are on the
    /// advert topic, and Kademlia lookups, AutoNAT dial-backs and jobs keep opening new
    /// ones: untrimmed, a node ends up connected to most of the network (65 of 99 peers
    /// in a 100-node simulation), paying pings and gossip on each, and past
    /// `max_connections` it refuses the peers it should take jobs from. Kept: bootstrap
    /// nodes, relays, the advert topic's mesh, peers with requests in flight, and
    /// connections new or used within [`KEEP_NEW_OR_USED`].
    fn trim(&mut self) {
        if self.connected.len() <= MAX_KEPT_CONNECTIONS {
            return;
        }
        let topic = gossipsub::IdentTopic::new(ADVERT_TOPIC).hash();
        let mesh: HashSet<PeerId> = self
            .swarm
            .behaviour()
            .gossipsub
            .mesh_peers(&topic)
            .copied()
            .collect();
        let busy = |p: &PeerId, el: &EventLoop| {
            el.links.busy(p)
                || el.chunks_out.in_flight.contains_key(p)
                || el.chunks_out.queued.contains_key(p)
        };
        let mut idle: Vec<(Instant, PeerId)> = self
            .connected
            .iter()
            .filter(|p| {
                !mesh.contains(p)
                    && !self.relays.contains(p)
                    && !self.settings.bootstrap.iter().any(|(b, _)| b == *p)
                    && !busy(p, self)
            })
            .filter_map(|p| {
                let last = self
                    .used_at
                    .get(p)
                    .copied()
                    .max(self.connected_at.get(p).copied())?;
                (last.elapsed() >= KEEP_NEW_OR_USED).then_some((last, *p))
            })
            .collect();
        idle.sort();
        let excess = self.connected.len() - MAX_KEPT_CONNECTIONS;
        for (_, peer) in idle.into_iter().take(excess) {
            tracing::debug!(%peer, "closing an idle connection (more than {MAX_KEPT_CONNECTIONS} peers connected)");
            let _ = self.swarm.disconnect_peer_id(peer);
            self.metrics.connections_trimmed += 1;
        }
    }

    fn dial_bootstrap(&mut self) {
        for (peer, addr) in self.settings.bootstrap.clone() {
            self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            if !self.connected.contains(&peer) && peer != *self.swarm.local_peer_id() {
                let _ = self
                    .swarm
                    .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
            }
        }
    }

    fn full_addrs(&self) -> Vec<String> {
        let me = *self.swarm.local_peer_id();
        self.listen_addrs
            .iter()
            .chain(self.swarm.external_addresses())
            .map(|a| a.clone().with(Protocol::P2p(me)).to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Publishes the advert unless one went out less than `min_gap` ago.
    fn publish_advert(&mut self, min_gap: Duration) {
        if self.last_published.is_some_and(|t| t.elapsed() < min_gap) {
            return;
        }
        let mut advert: Advert = (self.advert)();
        advert.node_id = identity::node_id(self.swarm.local_peer_id()).unwrap_or_default();
        advert.node_version = self.settings.node_version.clone();
        advert.addrs = self
            .listen_addrs
            .iter()
            .chain(self.swarm.external_addresses())
            .map(|a| a.to_string())
            .take(32)
            .collect();
        advert.issued_at_ms = now_ms();
        let topic = gossipsub::IdentTopic::new(ADVERT_TOPIC);
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, advert.seal(&self.key))
        {
            Ok(_) => {
                self.metrics.adverts_published += 1;
                self.last_published = Some(Instant::now());
            }
            // No peer to publish to yet: nothing to do until one connects.
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::debug!(error = %e, "advert not published"),
        }
    }

    /// Behind NAT, takes a slot at up to [`MAX_RELAYS`] connected relays: each becomes a
    /// `/p2p-circuit` listen address, advertised like any other, through which peers
    /// reach this node (and then try to punch a direct connection, DCUtR).
    fn reserve_relays(&mut self) {
        if self.nat != "private" {
            return;
        }
        let candidates: Vec<PeerId> = self
            .relay_capable
            .iter()
            .filter(|p| self.connected.contains(p) && !self.relays.contains(p))
            .copied()
            .collect();
        for relay in candidates {
            if self.relays.len() >= MAX_RELAYS {
                return;
            }
            let Some(addr) = self
                .peers
                .addrs(&relay)
                .into_iter()
                .find(|a| !a.iter().any(|p| p == Protocol::P2pCircuit))
            else {
                continue;
            };
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(_) => {
                    self.relays.insert(relay);
                    tracing::info!(%circuit, "behind NAT: asking a relay for a slot");
                }
                Err(e) => tracing::debug!(%circuit, error = %e, "cannot listen through the relay"),
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.full_addrs());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peers.live(self.settings.peer_timeout));
            }
            Command::Connect { peer, reply } => {
                if self.connected.contains(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                let opts = DialOpts::peer_id(peer)
                    .addresses(self.peers.addrs(&peer))
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let r = match self.swarm.dial(opts) {
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => Ok(()),
                    Err(e) => Err(NetworkError::Unreachable {
                        peer: peer.to_string(),
                        why: e.to_string(),
                    }),
                };
                let _ = reply.send(r);
            }
            Command::Chunk { peer, request, reply } => self.send_chunk(peer, request, reply),
            Command::RespondChunk { channel, response } => {
                if let ChunkResponse::Chunk { bytes, .. } = &response {
                    self.metrics.payload_bytes_out += bytes.len() as u64;
                }
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .modules
                    .send_response(channel, response);
            }
            Command::Report { peer, conduct } => self.peers.report(peer, conduct),
            Command::AdvertiseNow => self.publish_advert(self.settings.advert_interval / 2),
            Command::Dial { addr, reply } => {
                let r = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| NetworkError::Unreachable {
                        peer: addr.to_string(),
                        why: e.to_string(),
                    });
                let _ = reply.send(r);
            }
            Command::IsConnected { peer, reply } => {
                let _ = reply.send(self.connected.contains(&peer));
            }
            Command::Nat { reply } => {
                let _ = reply.send(self.nat.to_string());
            }
            Command::Metrics { reply } => {
                let mut m = self.metrics.clone();
                self.shared.add_to(&mut m);
                m.connected_peers = self.connected.len() as u64;
                m.known_peers = self.peers.live(self.settings.peer_timeout).len() as u64;
                let _ = reply.send(m);
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                if !self.listen_addrs.contains(&address) {
                    self.listen_addrs.push(address);
                }
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => self.listen_addrs.retain(|a| a != &address),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                self.peers.set_connected(peer_id, true);
                if endpoint.is_dialer() {
                    self.peers
                        .add_addr(peer_id, endpoint.get_remote_address().clone());
                }
                if num_established.get() == 1 && self.connected.insert(peer_id) {
                    self.connected_at.insert(peer_id, Instant::now());
                    let _ = self.events.send(PeerEvent::Connected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if num_established == 0 {
                    self.connected.remove(&peer_id);
                    self.connected_at.remove(&peer_id);
                    self.used_at.remove(&peer_id);
                    self.peers.set_connected(peer_id, false);
                    let _ = self.events.send(PeerEvent::Disconnected(peer_id));
                    // A relay gone is a slot gone: take one elsewhere (or there again
                    // once it is back).
                    if self.relays.remove(&peer_id) {
                        self.reserve_relays();
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for addr in info.listen_addrs.into_iter().take(16) {
                    // A relayed address is reached through its relay, not stored as the
                    // peer's own.
                    if addr.iter().any(|p| p == Protocol::P2pCircuit) {
                        continue;
                    }
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr.clone());
                    self.peers.add_addr(peer_id, addr);
                }
                if info.protocols.contains(&relay::HOP_PROTOCOL_NAME) {
                    self.relay_capable.insert(peer_id);
                    self.reserve_relays();
                }
            }
            BehaviourEvent::Autonat(autonat::Event::StatusChanged { new, .. }) => {
                self.nat = match new {
                    autonat::NatStatus::Public(_) => "public",
                    autonat::NatStatus::Private => "private",
                    autonat::NatStatus::Unknown => "unknown",
                };
                tracing::info!(nat = self.nat, "reachability changed");
                self.reserve_relays();
            }
            BehaviourEvent::RelayClient(relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            }) => {
                if !renewal {
                    tracing::info!(relay = %relay_peer_id, "reachable through a relay");
                }
            }
            BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            }) => match result {
                Ok(_) => {
                    self.metrics.hole_punches += 1;
                    tracing::info!(peer = %remote_peer_id, "direct connection through the NAT (hole punched)");
                }
                Err(e) => {
                    self.metrics.hole_punch_failures += 1;
                    tracing::debug!(peer = %remote_peer_id, error = %e, "hole punching failed; the relayed connection stays");
                }
            },
            BehaviourEvent::Ping(ping::Event { peer, result, .. }) => match result {
                Ok(rtt) => self.peers.set_rtt(peer, rtt),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "ping failed");
                    let _ = self.events.send(PeerEvent::Unresponsive(peer));
                }
            },
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, addresses, .. }) => {
                for a in addresses.iter() {
                    self.peers.add_addr(peer, a.clone());
                }
                if !self.connected.contains(&peer) && self.connected.len() < TARGET_CONNECTIONS {
                    let _ = self
                        .swarm
                        .dial(DialOpts::peer_id(peer).addresses(addresses.into_vec()).build());
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    self.peers.add_addr(peer, addr.clone());
                    if !self.connected.contains(&peer) {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_advert(propagation_source, message_id, message),
            // A node new to this one joined the advert topic: tell it what this node
            // offers without waiting for the next interval, but no more often than the
            // ticks do (at most one advert per half interval). A publication floods the
            // whole network, not just the newcomer: with one per second on each new
            // connection, 100 simulated nodes published 4.6 adverts per interval each
            // instead of 1; with one per half interval on any connection, 500 nodes
            // published 1.8, since connections come and go all the time (Kademlia's
            // lookups, jobs' dials, trimming; benches/network-bench, network-sim). A
            // peer this node holds an advert from is not new: it had this node's
            // adverts too, and the next one reaches it at the interval.
            BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed { peer_id, .. }) => {
                if self.peers.last_advert_ms(&peer_id).is_none() {
                    self.publish_advert(self.settings.advert_interval / 2);
                }
            }
            BehaviourEvent::Jobs(never) => match never {},
            BehaviourEvent::Modules(event) => self.on_chunks(event),
            _ => {}
        }
    }

    fn on_advert(&mut self, via: PeerId, id: gossipsub::MessageId, message: gossipsub::Message) {
        use gossipsub::MessageAcceptance as A;
        let peers = &self.peers;
        let verdict = Advert::check(
            &message.data,
            |source| peers.last_advert_ms(source),
            self.settings.advert_interval / 2,
            self.settings.peer_timeout,
            now_ms(),
        );
        let acceptance = match verdict {
            Verdict::Accept(advert, source) => {
                if source != *self.swarm.local_peer_id() {
                    self.metrics.adverts_accepted += 1;
                    self.peers.set_advert(source, *advert);
                }
                A::Accept
            }
            Verdict::Ignore(why) => {
                self.metrics.adverts_ignored += 1;
                tracing::trace!(%via, why, "advert ignored");
                A::Ignore
            }
            Verdict::Reject(why) => {
                self.metrics.adverts_rejected += 1;
                tracing::debug!(%via, why, "advert rejected");
                self.peers.report(via, Conduct::Bad);
                A::Reject
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &via, acceptance);
    }

    /// A request that did not decode: refused with the reason, and it costs the sender.
    fn malformed(&mut self, peer: PeerId, why: &str) {
        self.metrics.malformed_requests += 1;
        tracing::debug!(%peer, why, "malformed request");
        self.peers.report(peer, Conduct::Bad);
    }

    /// Sends a chunk request, or queues it behind the ones in flight to the same peer:
    /// the peer's connection handler takes a bounded number of streams, in and out
    /// together, and fails the request it has no room for ("max sub-streams reached")
    /// instead of waiting. A caller that gave up meanwhile (its reply dropped) is
    /// skipped when its turn comes.
    fn send_chunk(&mut self, peer: PeerId, request: ChunkRequest, reply: Reply<ChunkResponse>) {
        let out = &mut self.chunks_out;
        if out.in_flight.get(&peer).copied().unwrap_or(0) >= out.per_peer {
            let queue = out.queued.entry(peer).or_default();
            if queue.len() >= MAX_QUEUED_PER_PEER {
                let _ = reply.send(Err(NetworkError::Unreachable {
                    peer: peer.to_string(),
                    why: format!("{MAX_QUEUED_PER_PEER} requests are already waiting for it"),
                }));
            } else {
                queue.push_back((request, reply));
            }
            return;
        }
        let addrs = self.peers.addrs(&peer);
        let id = self.swarm.behaviour_mut().modules.send_request_with_addresses(
            &peer,
            Decoded::Ok(request),
            addrs,
        );
        self.metrics.requests_out += 1;
        self.used_at.insert(peer, Instant::now());
        let out = &mut self.chunks_out;
        *out.in_flight.entry(peer).or_default() += 1;
        out.pending.insert(id, (peer, reply));
    }

    /// The reply channel of an outbound request that has its answer (or failed), and
    /// the next queued request to the same peer sent in its place.
    fn answered(&mut self, id: OutboundRequestId) -> Option<Reply<ChunkResponse>> {
        let out = &mut self.chunks_out;
        let (peer, reply) = out.pending.remove(&id)?;
        if let Some(n) = out.in_flight.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                out.in_flight.remove(&peer);
            }
        }
        loop {
            let out = &mut self.chunks_out;
            let Some(queue) = out.queued.get_mut(&peer) else {
                break;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                out.queued.remove(&peer);
            }
            match next {
                Some((_, waiting)) if waiting.is_closed() => continue,
                Some((request, waiting)) => {
                    self.send_chunk(peer, request, waiting);
                    break;
                }
                None => break,
            }
        }
        Some(reply)
    }

    /// `/hanzo/modules/1`: requests are counted, refused when malformed, over the
    /// peer's rate or past the node's queue, and handed to the node otherwise; replies
    /// and failures go to whoever is waiting for them.
    fn on_chunks(&mut self, event: request_response::Event<Decoded<ChunkRequest>, ChunkResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, .. } => {
                    self.metrics.requests_in += 1;
                    self.used_at.insert(peer, Instant::now());
                    self.peers.seen(peer);
                    let refusal = match request {
                        Decoded::Malformed(why) => {
                            self.malformed(peer, &why);
                            Some((channel, format!("malformed: {why}")))
                        }
                        Decoded::Ok(_) if !self.shared.admit(peer) => {
                            self.metrics.requests_refused += 1;
                            Some((channel, "rate limited".to_string()))
                        }
                        Decoded::Ok(request) => match self.inbound.try_send(Inbound::Chunk {
                            peer,
                            request,
                            channel,
                        }) {
                            Err(mpsc::error::TrySendError::Full(Inbound::Chunk { channel, .. })) => {
                                self.metrics.requests_refused += 1;
                                Some((channel, "busy".to_string()))
                            }
                            _ => None,
                        },
                    };
                    if let Some((channel, reason)) = refusal {
                        let _ = self
                            .swarm
                            .behaviour_mut()
                            .modules
                            .send_response(channel, ChunkResponse::Refused { reason });
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    self.peers.seen(peer);
                    if let ChunkResponse::Chunk { bytes, .. } = &response {
                        self.metrics.payload_bytes_in += bytes.len() as u64;
                    }
                    if let Some(reply) = self.answered(request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.metrics.outbound_failures += 1;
                if let Some(reply) = self.answered(request_id) {
                    let _ = reply.send(Err(outbound_error(&peer, &error)));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                // Timed out or the connection went before the answer: a request that
                // does not decode never gets here (it is `Decoded::Malformed`).
                self.metrics.inbound_failures += 1;
                tracing::debug!(%peer, %error, protocol = "modules", "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

fn outbound_error(peer: &PeerId, error: &OutboundFailure) -> NetworkError {
    let peer = peer.to_string();
    match error {
        OutboundFailure::Timeout => NetworkError::Timeout { peer },
        OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => NetworkError::Malformed {
            peer,
            why: e.to_string(),
        },
        other => NetworkError::Unreachable {
            peer,
            why: other.to_string(),
        },
    }
}
