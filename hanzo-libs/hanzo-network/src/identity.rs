//! One key, two names: the node id (hex ed25519 public key, what receipts carry) and
//! the libp2p peer id derived from the same key.

use crate::NetworkError;
use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey, ed25519};

/// The libp2p identity of a node whose signing key has this seed
/// ([`hanzo_compute::NodeKey::secret_seed`]).
pub fn keypair(seed: [u8; 32]) -> Keypair {
    // `ed25519_from_bytes` only fails on a wrong length, which an array rules out.
    let mut bytes = seed;
    Keypair::ed25519_from_bytes(&mut bytes).expect("a 32-byte ed25519 seed")
}

/// The node id (hex of the ed25519 public key) a peer id names, when it names an
/// ed25519 key inline (every hanzo node's does). `None` for any other kind of peer id:
/// such a peer cannot have signed a receipt.
///
/// The key's bytes are read as the peer id carries them, not decompressed into a
/// curve point (a submitter asks this for every result it checks): whether they are
/// a valid key is for the receipt's signature check to find, and
/// [`parse_peer_id`] checks it for a peer id written by hand.
pub fn node_id(peer: &PeerId) -> Option<String> {
    let mh = peer.as_ref();
    // Identity multihash (code 0): the digest is the protobuf-encoded public key, as
    // libp2p writes it: field 1 (the key type) = 1 (Ed25519), field 2 (the key) = 32
    // bytes. A connection's peer id is made from that encoding by the handshake.
    if mh.code() != 0 {
        return None;
    }
    match mh.digest() {
        [0x08, 0x01, 0x12, 0x20, key @ ..] if key.len() == 32 => Some(hex::encode(key)),
        _ => None,
    }
}

/// The ed25519 public key a node id (hex) names.
pub fn key_of_node(node_id: &str) -> Result<ed25519::PublicKey, NetworkError> {
    let bytes = hex::decode(node_id).map_err(|_| NetworkError::bad("node id", node_id, "not hex"))?;
    ed25519::PublicKey::try_from_bytes(&bytes)
        .map_err(|_| NetworkError::bad("node id", node_id, "not an ed25519 public key"))
}

/// The peer id of the node whose receipts carry `node_id`.
pub fn peer_id_of_node(node_id: &str) -> Result<PeerId, NetworkError> {
    Ok(PublicKey::from(key_of_node(node_id)?).to_peer_id())
}

/// Parses a node's peer id as written in config, job specs and URLs. Every hanzo
/// node's peer id carries its ed25519 key inline (`12D3KooW...`); anything else
/// cannot name a node, so it is refused here rather than never matching later.
pub fn parse_peer_id(what: &str, s: &str) -> Result<PeerId, NetworkError> {
    let peer = s
        .parse::<PeerId>()
        .map_err(|e| NetworkError::bad(what, s, &e.to_string()))?;
    // node_id reads the key's bytes; here they must also be a curve point.
    let point =
        || PublicKey::try_decode_protobuf(peer.as_ref().digest()).is_ok_and(|k| k.try_into_ed25519().is_ok());
    if node_id(&peer).is_none() || !point() {
        return Err(NetworkError::bad(what, s, "not the peer id of an ed25519 key"));
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hanzo_compute::NodeKey;

    #[test]
    fn the_peer_id_names_the_node_key() {
        let key = NodeKey::from_seed([7; 32]);
        let peer = keypair(key.secret_seed()).public().to_peer_id();
        assert_eq!(node_id(&peer).as_deref(), Some(key.id()));
        assert_eq!(peer_id_of_node(key.id()).unwrap(), peer);
        assert!(peer.to_string().starts_with("12D3KooW"), "{peer}");
        assert!(hanzo_compute::looks_like_peer_id(&peer.to_string()));
    }

    #[test]
    fn a_peer_id_whose_key_is_no_curve_point_is_refused_where_written_by_hand() {
        // 32 bytes that do not decompress to a point: node_id reads them (a receipt
        // can never verify against them), parse_peer_id refuses them.
        let bad = (0u8..=255)
            .map(|i| [i; 32])
            .find(|b| ed25519::PublicKey::try_from_bytes(b).is_err())
            .expect("some byte pattern is not a point");
        let mut digest = vec![0x08, 0x01, 0x12, 0x20];
        digest.extend_from_slice(&bad);
        let mh = libp2p::multihash::Multihash::<64>::wrap(0, &digest).unwrap();
        let peer = PeerId::from_multihash(mh).unwrap();
        assert_eq!(node_id(&peer), Some(hex::encode(bad)));
        assert!(parse_peer_id("placement", &peer.to_string()).is_err());
    }

    #[test]
    fn a_peer_id_without_an_inline_key_has_no_node_id() {
        // A sha256-multihash peer id (what RSA keys get) carries no key to check.
        let p: PeerId = "QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN".parse().unwrap();
        assert_eq!(node_id(&p), None);
        assert!(peer_id_of_node("zz").is_err());
        assert!(parse_peer_id("placement", "12D3KooWnope").is_err());
    }
}
