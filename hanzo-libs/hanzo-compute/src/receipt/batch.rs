//! The batch form of a receipt (CONTRACTS §4): under load, one signature covers many
//! receipts through a Merkle tree, and each receipt carries its path to the signed
//! root, so it still verifies on its own.
//!
//! The tree is RFC 9162's (Certificate Transparency 2.0, §2.1): a leaf is
//! `sha256(0x00 || bytes)`, an inner node `sha256(0x01 || left || right)`, and a tree
//! of `n > 1` leaves splits at the largest power of two below `n`. The two prefixes
//! keep a leaf from passing for an inner node (and so one receipt's proof from
//! proving a forged one); the split needs no padding leaf, so no receipt appears in a
//! tree twice. The leaf's bytes are the receipt's canonical JSON without `signature`
//! and `batch`: the same bytes a single receipt's signature covers.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the batch signature signs: this prefix, the batch's size (8 bytes, big
/// endian), then the 32 bytes of the root. A single receipt's signed bytes begin with
/// `{`, so neither form's signature can be passed off as the other's. The size is
/// signed because an audit path does not fix it: the path of leaf 0 of a 3-leaf tree
/// also leads to the same root as leaf 0 of a 4-leaf tree.
pub const BATCH_DOMAIN: &[u8] = b"hanzo-receipt-batch-v1";

/// The most receipts one signature covers: proofs stay at 10 hashes at most, and a
/// burst larger than this is signed as several batches.
pub const MAX_BATCH: usize = 1024;

/// The longest proof a verifier reads. A tree of `size` leaves has a path of at most
/// 64 hashes for any `u64` size; anything longer is malformed before a hash is taken.
pub const MAX_PROOF: usize = 64;

/// A receipt's place in the batch its signature covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// The Merkle root (sha256, hex) the signature covers.
    pub root: String,
    /// This receipt's leaf index, from 0.
    pub index: u64,
    /// How many receipts the batch holds.
    pub size: u64,
    /// The audit path (sha256 hashes, hex), from the leaf's sibling up to the root's
    /// child.
    pub proof: Vec<String>,
}

/// A Merkle tree hash.
pub(crate) type Hash = [u8; 32];

/// The leaf hash of a receipt's signed bytes.
pub(crate) fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(bytes);
    h.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The bytes the batch signature covers.
pub(crate) fn message(size: u64, root: &Hash) -> Vec<u8> {
    let mut m = Vec::with_capacity(BATCH_DOMAIN.len() + 8 + 32);
    m.extend_from_slice(BATCH_DOMAIN);
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(root);
    m
}

/// What signing a batch gives each of its receipts.
pub(crate) struct Seal {
    /// The ed25519 signature over [`message`].
    pub signature: [u8; 64],
    /// The root.
    pub root: Hash,
    /// The receipt's leaf index.
    pub index: u64,
    /// The batch's size.
    pub size: u64,
    /// The receipt's audit path.
    pub path: Vec<Hash>,
}

/// Signs the batch of `leaves` (at least one) with `key`: one seal per leaf, in order.
pub(crate) fn seal(leaves: &[Hash], key: &crate::NodeKey) -> Vec<Seal> {
    let (root, paths) = tree(leaves);
    let size = leaves.len() as u64;
    let signature = key.sign_bytes(&message(size, &root));
    paths
        .into_iter()
        .enumerate()
        .map(|(index, path)| Seal {
            signature,
            root,
            index: index as u64,
            size,
            path,
        })
        .collect()
}

/// The root of `leaves` (at least one) and every leaf's audit path, leaf-side first.
pub(crate) fn tree(leaves: &[Hash]) -> (Hash, Vec<Vec<Hash>>) {
    assert!(!leaves.is_empty(), "a Merkle tree has at least one leaf");
    let mut paths = vec![Vec::new(); leaves.len()];
    let root = subtree(leaves, &mut paths);
    (root, paths)
}

/// The root of `leaves`, appending each leaf's path within it to `paths` (one per
/// leaf, same order).
fn subtree(leaves: &[Hash], paths: &mut [Vec<Hash>]) -> Hash {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let k = split(leaves.len() as u64) as usize;
    let (lp, rp) = paths.split_at_mut(k);
    let left = subtree(&leaves[..k], lp);
    let right = subtree(&leaves[k..], rp);
    for p in lp {
        p.push(right);
    }
    for p in rp {
        p.push(left);
    }
    node_hash(&left, &right)
}

/// The largest power of two below `n` (n > 1).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The root that `leaf` at `index` of a `size`-leaf tree leads to along `proof`, or
/// `None` when the proof cannot belong to such a tree (RFC 9162 §2.1.3.2).
pub(crate) fn root_from_proof(leaf: Hash, index: u64, size: u64, proof: &[Hash]) -> Option<Hash> {
    if index >= size || proof.len() > MAX_PROOF {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in proof {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("receipt {i}").as_bytes()))
            .collect()
    }

    /// RFC 9162's definition, written as it reads, to hold `tree` to.
    fn mth(d: &[Hash]) -> Hash {
        if d.len() == 1 {
            return d[0];
        }
        let k = split(d.len() as u64) as usize;
        node_hash(&mth(&d[..k]), &mth(&d[k..]))
    }

    #[test]
    fn every_leaf_of_every_size_proves_its_root() {
        for n in 1..=70 {
            let l = leaves(n);
            let (root, paths) = tree(&l);
            assert_eq!(root, mth(&l), "size {n}");
            for (i, p) in paths.iter().enumerate() {
                assert!(p.len() <= 7, "size {n}: path of {}", p.len());
                assert_eq!(
                    root_from_proof(l[i], i as u64, n as u64, p),
                    Some(root),
                    "leaf {i} of {n}"
                );
            }
        }
    }

    #[test]
    fn a_proof_for_another_place_or_leaf_does_not_lead_to_the_root() {
        for n in 2..=33u64 {
            let l = leaves(n as usize);
            let (root, paths) = tree(&l);
            for i in 0..n {
                let p = &paths[i as usize];
                let other = leaf_hash(b"a forged receipt");
                assert_ne!(root_from_proof(other, i, n, p), Some(root));
                for j in (0..n).filter(|&j| j != i) {
                    assert_ne!(
                        root_from_proof(l[i as usize], j, n, p),
                        Some(root),
                        "leaf {i} as {j} of {n}"
                    );
                }
                // Another size can lead to the same root (leaf 0 of 3 and of 4 share
                // a path): that is why the size is signed with the root (`message`).
                let mut short = p.clone();
                short.pop();
                assert_ne!(root_from_proof(l[i as usize], i, n, &short), Some(root));
                let mut long = p.clone();
                long.push(root);
                assert_ne!(root_from_proof(l[i as usize], i, n, &long), Some(root));
            }
            // An inner node is not a leaf: the left half's root with the right
            // half's root as its proof does not pass as leaf 0 of a 2-leaf tree.
            let k = split(n) as usize;
            let (lr, rr) = (mth(&l[..k]), mth(&l[k..]));
            assert_ne!(node_hash(&lr, &rr), leaf_hash(&[lr, rr].concat()));
        }
    }

    #[test]
    fn out_of_range_places_and_overlong_proofs_are_refused() {
        let l = leaves(1);
        assert_eq!(root_from_proof(l[0], 0, 1, &[]), Some(l[0]));
        assert_eq!(root_from_proof(l[0], 1, 1, &[]), None);
        assert_eq!(root_from_proof(l[0], 0, 0, &[]), None);
        assert_eq!(root_from_proof(l[0], 0, u64::MAX, &[l[0]; MAX_PROOF + 1]), None);
    }
}
