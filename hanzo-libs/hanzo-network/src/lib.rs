//! The network of nodes (CONTRACTS §7): libp2p transport, discovery and the
//! messages nodes trade work with.
//!
//! Shaped like rust-libp2p's file-sharing example: [`start`] builds the swarm and
//! spawns one event loop that owns it; everything else talks to it through a
//! cloneable [`Client`] whose methods send a command and await a oneshot reply.
//! Requests from peers arrive on the [`Inbound`] channel, peer comings and goings on
//! a broadcast of [`PeerEvent`]s.
//!
//! What a peer can make this node do here is bounded: messages are size-capped
//! before decoding, requests are rate-limited per peer, adverts are
//! checked ([`advert`]), connections are limited in all and per peer, and the allow
//! and deny lists are enforced on every connection. What a peer's *job* may do is
//! decided by the placement layer under the executing node's own rules.

pub mod advert;
mod behaviour;
mod client;
pub mod codec;
mod event_loop;
pub mod identity;
mod jobs;
pub mod peers;
pub mod protocol;
mod settings;
mod streams;

pub use advert::{Advert, Capacity, Ceilings, Price};
pub use client::{Channels, Client, Inbound, Metrics, PeerEvent, start};
pub use jobs::JobReply;
pub use libp2p::request_response::ResponseChannel;
pub use libp2p::{Multiaddr, PeerId};
pub use peers::{Conduct, PeerInfo};
pub use protocol::{
    AttemptBinding, ChunkRequest, ChunkResponse, JobRequest, JobResponse, Offer, RemoteResult, Settlement,
};
pub use settings::Settings;

/// What can go wrong in the network layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// A setting or argument is malformed (a multiaddr, a peer id).
    #[error("invalid {what} '{value}': {why}")]
    Invalid {
        /// Which setting or argument.
        what: String,
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// A listen address could not be bound (in use, not local).
    #[error("cannot listen on {addr}: {why}")]
    Listen {
        /// The address.
        addr: String,
        /// The OS's reason.
        why: String,
    },
    /// The peer could not be reached, or the connection broke mid-request.
    #[error("peer {peer} unreachable: {why}")]
    Unreachable {
        /// The peer id.
        peer: String,
        /// The transport's reason.
        why: String,
    },
    /// The peer did not answer in time.
    #[error("peer {peer} did not answer in time")]
    Timeout {
        /// The peer id.
        peer: String,
    },
    /// The peer answered with something this node refuses to read (too large,
    /// malformed).
    #[error("peer {peer} sent a malformed or oversized reply: {why}")]
    Malformed {
        /// The peer id.
        peer: String,
        /// What was wrong.
        why: String,
    },
    /// The network's event loop has stopped (the node is shutting down).
    #[error("the network is not running")]
    Stopped,
}

impl NetworkError {
    pub(crate) fn bad(what: &str, value: &str, why: &str) -> Self {
        NetworkError::Invalid {
            what: what.to_string(),
            value: value.to_string(),
            why: why.to_string(),
        }
    }
}
