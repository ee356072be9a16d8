//! Streams of one protocol, in and out: the behaviour under `/hanzo/jobs/3`.
//!
//! What libp2p-stream does, in the part the node needs, without what a stranger
//! could abuse: libp2p-stream 0.5.0-alpha keeps an entry for every connection it ever
//! saw (its `Shared::senders`, never removed), so a peer that connects and disconnects
//! in a loop grows the node's memory for good. Here a connection's entry goes with the
//! connection, and nothing else is kept per connection or per peer beyond the opens
//! waiting for one.
//!
//! - Inbound: every connection handler takes streams of the protocol and hands each,
//!   with its peer, to one bounded channel (`try_send`: a stream the node has no room
//!   for is dropped, which the peer sees as a reset).
//! - Outbound: [`Opener::open`] asks the behaviour, which hands the request to a handler
//!   of a connection to the peer, or dials the peer by id first and waits for the
//!   connection (a failed dial fails the open).

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, DialError, FromSwarm,
    NetworkBehaviour, NotifyHandler, Stream, StreamProtocol, StreamUpgradeError, SubstreamProtocol, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// Where an opened stream (or why it could not be opened) goes.
type Opened = oneshot::Sender<Result<Stream, String>>;

/// Inbound streams waiting for the node to take them; past it they are dropped.
const INBOUND_QUEUE: usize = 64;
/// Open requests waiting for the behaviour.
const OPEN_QUEUE: usize = 256;

/// Opens streams of the behaviour's protocol (cloneable).
#[derive(Clone)]
pub(crate) struct Opener {
    requests: mpsc::Sender<(PeerId, Opened)>,
}

impl Opener {
    /// A stream to `peer`, dialling it by id when not connected.
    pub(crate) async fn open(&self, peer: PeerId) -> Result<Stream, String> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((peer, tx))
            .await
            .map_err(|_| "the network is not running".to_string())?;
        rx.await.map_err(|_| "the connection closed".to_string())?
    }
}

pub(crate) struct Behaviour {
    protocol: StreamProtocol,
    inbound: mpsc::Sender<(PeerId, Stream)>,
    incoming: Option<mpsc::Receiver<(PeerId, Stream)>>,
    opener: Opener,
    requests: mpsc::Receiver<(PeerId, Opened)>,
    /// Open connections per peer (an entry goes with its last connection).
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    /// Opens waiting for a connection to their peer (dialled).
    waiting: HashMap<PeerId, Vec<Opened>>,
    events: VecDeque<ToSwarm<Infallible, Opened>>,
}

impl Behaviour {
    pub(crate) fn new(protocol: StreamProtocol) -> Self {
        let (inbound, incoming) = mpsc::channel(INBOUND_QUEUE);
        let (tx, requests) = mpsc::channel(OPEN_QUEUE);
        Behaviour {
            protocol,
            inbound,
            incoming: Some(incoming),
            opener: Opener { requests: tx },
            requests,
            connections: HashMap::new(),
            waiting: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// The streams peers open (once: there is one taker).
    pub(crate) fn take_incoming(&mut self) -> Option<mpsc::Receiver<(PeerId, Stream)>> {
        self.incoming.take()
    }

    pub(crate) fn opener(&self) -> Opener {
        self.opener.clone()
    }

    fn handler(&self, peer: PeerId) -> Handler {
        Handler {
            protocol: self.protocol.clone(),
            inbound: self.inbound.clone(),
            peer,
            opens: VecDeque::new(),
        }
    }

    fn open_on(&mut self, peer: PeerId, connection: ConnectionId, opened: Opened) {
        self.events.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection),
            event: opened,
        });
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(e) => {
                self.connections
                    .entry(e.peer_id)
                    .or_default()
                    .push(e.connection_id);
                for opened in self.waiting.remove(&e.peer_id).unwrap_or_default() {
                    self.open_on(e.peer_id, e.connection_id, opened);
                }
            }
            FromSwarm::ConnectionClosed(e) => {
                if let Some(list) = self.connections.get_mut(&e.peer_id) {
                    list.retain(|c| *c != e.connection_id);
                    if list.is_empty() {
                        self.connections.remove(&e.peer_id);
                    }
                }
            }
            // A dial that was not made because one is under way (or the peer is
            // connected) is no failure: that connection serves the waiting opens.
            FromSwarm::DialFailure(e) => {
                if let (Some(peer), false) = (
                    e.peer_id,
                    matches!(e.error, DialError::DialPeerConditionFalse(_) | DialError::Aborted),
                ) {
                    let why = e.error.to_string();
                    for opened in self.waiting.remove(&peer).unwrap_or_default() {
                        let _ = opened.send(Err(why.clone()));
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
        match event {}
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Poll::Ready(e);
            }
            let Poll::Ready(Some((peer, opened))) = self.requests.poll_recv(cx) else {
                return Poll::Pending;
            };
            if let Some(&connection) = self.connections.get(&peer).and_then(|l| l.last()) {
                self.open_on(peer, connection, opened);
                continue;
            }
            let first = !self.waiting.contains_key(&peer);
            self.waiting.entry(peer).or_default().push(opened);
            if first {
                return Poll::Ready(ToSwarm::Dial {
                    opts: DialOpts::peer_id(peer)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build(),
                });
            }
        }
    }
}

/// One connection's side: takes inbound streams of the protocol, opens outbound ones.
pub(crate) struct Handler {
    protocol: StreamProtocol,
    inbound: mpsc::Sender<(PeerId, Stream)>,
    peer: PeerId,
    opens: VecDeque<Opened>,
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Opened;
    type ToBehaviour = Infallible;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = Opened;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, ()> {
        SubstreamProtocol::new(ReadyUpgrade::new(self.protocol.clone()), ())
    }

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, Opened, Self::ToBehaviour>> {
        match self.opens.pop_front() {
            Some(opened) => Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                protocol: SubstreamProtocol::new(ReadyUpgrade::new(self.protocol.clone()), opened),
            }),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, opened: Opened) {
        self.opens.push_back(opened);
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol, (), Opened>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol: stream, .. }) => {
                if self.inbound.try_send((self.peer, stream)).is_err() {
                    tracing::debug!(peer = %self.peer, "inbound stream dropped: the node is not taking them");
                }
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: stream,
                info: opened,
            }) => {
                let _ = opened.send(Ok(stream));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info: opened, error }) => {
                let why = match error {
                    StreamUpgradeError::Timeout => "the stream was not negotiated in time".to_string(),
                    StreamUpgradeError::NegotiationFailed => {
                        format!("the peer does not speak {}", self.protocol)
                    }
                    StreamUpgradeError::Io(e) => e.to_string(),
                    StreamUpgradeError::Apply(never) => match never {},
                };
                let _ = opened.send(Err(why));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::core::ConnectedPoint;
    use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished};

    /// A peer that connects and disconnects in a loop leaves nothing behind.
    #[test]
    fn closed_connections_leave_no_state() {
        let mut b = Behaviour::new(StreamProtocol::new("/t/1"));
        let endpoint = ConnectedPoint::Dialer {
            address: "/memory/1".parse().unwrap(),
            role_override: Endpoint::Dialer,
            port_use: PortUse::Reuse,
        };
        for i in 0..10_000 {
            let peer = PeerId::random();
            let connection_id = ConnectionId::new_unchecked(i);
            b.on_swarm_event(FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id: peer,
                connection_id,
                endpoint: &endpoint,
                failed_addresses: &[],
                other_established: 0,
            }));
            assert_eq!(b.connections.len(), 1);
            b.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id: peer,
                connection_id,
                endpoint: &endpoint,
                cause: None,
                remaining_established: 0,
            }));
        }
        assert!(b.connections.is_empty());
        assert!(b.waiting.is_empty());
    }
}
