//! Code by hash: who may fetch which module from this node, and fetching one from a
//! peer.
//!
//! A node serves a module only to a peer it offered a job with that module (a share,
//! kept for an hour): a stranger cannot read this node's modules by guessing hashes.
//! The fetcher asks chunk by chunk (at most [`CHUNK_BYTES`] each, the total fixed by
//! the first reply and capped by the offer's size and the module quota), hashes as
//! it goes, and keeps the module only if the sha256 matches; a peer that sends other
//! bytes has lied and is reported.

use crate::Inner;
use hanzo_network::protocol::CHUNK_BYTES;
use hanzo_network::{ChunkRequest, ChunkResponse, NetworkError, PeerId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a peer may fetch the code of a job offered to it.
const SHARE_TTL: Duration = Duration::from_secs(3600);
/// How many times one fetch asks again after `NotFound` (a submitter that restarted
/// shares its jobs' code again once it re-attached): ten seconds.
const MAX_NOT_FOUND: u32 = 20;
/// How many times one fetch waits out a refusal (rate limit, busy) before giving up:
/// about a minute of waiting in all.
const MAX_REFUSALS: u32 = 240;
/// Modules kept in memory for serving chunks (the last few asked for).
const CACHED_MODULES: usize = 4;
/// How long a module's size is taken as known without asking the store again. A hash's
/// size never changes, but the module can be removed from the store (`hanzo-node
/// cache`): a size at most this old is what an offer may claim for a module gone since.
const SIZE_TTL: Duration = Duration::from_secs(1);
/// Module sizes remembered at most (past it, the stale ones go, or all).
const MAX_SIZES: usize = 1024;

/// What this node lets peers fetch.
#[derive(Default)]
pub struct Shares {
    shares: Mutex<HashMap<(PeerId, String), Instant>>,
    cache: Mutex<Vec<(String, Arc<Vec<u8>>)>>,
    /// Module sizes lately read from the store, so that placing job after job of one
    /// module does not take a trip to a blocking thread for each (see [`SIZE_TTL`]).
    sizes: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Shares {
    /// The size of the module `sha256` if the store was asked for it within
    /// [`SIZE_TTL`].
    pub(crate) fn known_size(&self, sha256: &str) -> Option<u64> {
        let sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        sizes
            .get(sha256)
            .filter(|(_, at)| at.elapsed() < SIZE_TTL)
            .map(|(n, _)| *n)
    }

    /// Remembers the size the store gave for the module `sha256`.
    pub(crate) fn note_size(&self, sha256: &str, bytes: u64) {
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        if sizes.len() >= MAX_SIZES {
            sizes.retain(|_, (_, at)| at.elapsed() < SIZE_TTL);
            if sizes.len() >= MAX_SIZES {
                sizes.clear();
            }
        }
        sizes.insert(sha256.to_string(), (bytes, Instant::now()));
    }

    /// Lets `peer` fetch the module `sha256`.
    pub fn share(&self, peer: PeerId, sha256: &str) {
        let mut s = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.retain(|_, at| now.duration_since(*at) < SHARE_TTL);
        s.insert((peer, sha256.to_string()), now);
    }

    fn shared(&self, peer: PeerId, sha256: &str) -> bool {
        let s = self.shares.lock().unwrap_or_else(|e| e.into_inner());
        s.get(&(peer, sha256.to_string()))
            .is_some_and(|at| at.elapsed() < SHARE_TTL)
    }

    pub(crate) async fn serve(&self, inner: &Inner, peer: PeerId, req: ChunkRequest) -> ChunkResponse {
        if !self.shared(peer, &req.sha256) {
            return ChunkResponse::NotFound;
        }
        let Some(bytes) = self.bytes(inner, &req.sha256).await else {
            return ChunkResponse::NotFound;
        };
        let total = bytes.len() as u64;
        let start = req.offset.min(total) as usize;
        let end = (req.offset.saturating_add(CHUNK_BYTES)).min(total) as usize;
        ChunkResponse::Chunk {
            total,
            bytes: bytes[start..end].to_vec(),
        }
    }

    async fn bytes(&self, inner: &Inner, sha: &str) -> Option<Arc<Vec<u8>>> {
        if let Some(b) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(s, _)| s == sha)
            .map(|(_, b)| b.clone())
        {
            return Some(b);
        }
        let wasm = inner.host.wasm();
        let script = script_path(&inner.host.code_dir(), sha);
        let s = sha.to_string();
        let bytes = tokio::task::spawn_blocking(move || -> Option<Vec<u8>> {
            if let Some(w) = wasm
                && let Ok(Some(b)) = w.module_store().read(&s)
            {
                return Some(b);
            }
            hanzo_compute::files::read_capped(&script?, SCRIPT_MAX_BYTES).ok()
        })
        .await
        .ok()??;
        let bytes = Arc::new(bytes);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|(s, _)| s != sha);
        cache.push((sha.to_string(), bytes.clone()));
        if cache.len() > CACHED_MODULES {
            cache.remove(0);
        }
        Some(bytes)
    }
}

/// The largest script that travels (Deno's cap on a source; Python's is lower).
pub const SCRIPT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Where this node keeps a script of its own that peers may fetch: `<code_dir>/<sha>`.
/// `None` for a malformed hash (never a path from a peer's string).
pub(crate) fn script_path(code_dir: &std::path::Path, sha: &str) -> Option<std::path::PathBuf> {
    (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| code_dir.join(sha))
}

/// Writes `bytes` to `path` (0600) through a temporary file renamed over it.
pub(crate) fn write_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The peer could not be reached or did not answer.
    #[error("{0}")]
    Network(#[from] NetworkError),
    /// The peer does not serve that code to this node.
    #[error("the submitter does not serve module {0}")]
    NotFound(String),
    /// The peer refused (rate, busy).
    #[error("the submitter refused: {0}")]
    Refused(String),
    /// The peer's bytes are not what it promised: a size over the offer's, a chunk
    /// out of bounds, or a sha256 that does not match.
    #[error("{0}")]
    Lied(String),
}

/// Fetches the module `sha256` (at most `max_bytes`) from `peer`, verified.
pub(crate) async fn fetch(
    inner: &Inner,
    peer: PeerId,
    sha256: &str,
    max_bytes: u64,
) -> Result<Vec<u8>, FetchError> {
    if peer == inner.net.peer_id() {
        // This node's own attempt of a verified job: the script it is to run is the
        // one it keeps for peers, in its code directory.
        let path = script_path(&inner.host.code_dir(), sha256)
            .ok_or_else(|| FetchError::Refused(format!("not a sha256: {sha256}")))?;
        return tokio::task::spawn_blocking(move || hanzo_compute::files::read_capped(&path, max_bytes))
            .await
            .map_err(|e| FetchError::Refused(e.to_string()))?
            .map_err(|e| FetchError::Refused(format!("cannot read the script kept for peers: {e}")));
    }
    let mut out: Vec<u8> = Vec::new();
    let mut hasher = Sha256::new();
    let mut total: Option<u64> = None;
    let mut refusals = 0;
    let mut not_found = 0;
    loop {
        let req = ChunkRequest {
            sha256: sha256.to_string(),
            offset: out.len() as u64,
        };
        // A submitter that restarts mid-fetch is back (and shares the code again)
        // within seconds: the caller bounds the whole fetch by a deadline, and
        // transient failures are waited out inside it.
        let reply = match inner.net.chunk(peer, req).await {
            Ok(r) => r,
            Err(NetworkError::Stopped) => return Err(FetchError::Network(NetworkError::Stopped)),
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let (t, bytes) = match reply {
            ChunkResponse::Chunk { total, bytes } => (total, bytes),
            ChunkResponse::NotFound if not_found < MAX_NOT_FOUND => {
                not_found += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            ChunkResponse::NotFound => return Err(FetchError::NotFound(sha256.to_string())),
            // The submitter's per-peer rate limit also counts chunks: a large module
            // is fetched at its pace, not refused.
            ChunkResponse::Refused { .. } if refusals < MAX_REFUSALS => {
                refusals += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            ChunkResponse::Refused { reason } => return Err(FetchError::Refused(reason)),
        };
        match total {
            None if t > max_bytes => {
                return Err(FetchError::Lied(format!(
                    "the module is {t} bytes, over the {max_bytes} this node takes"
                )));
            }
            None => total = Some(t),
            Some(first) if first != t => {
                return Err(FetchError::Lied("the module's size changed mid-fetch".into()));
            }
            Some(_) => {}
        }
        let total = total.unwrap_or(t);
        // Every chunk is whole (a full chunk, or the rest): a trickle of one byte per
        // request cannot stretch a fetch out.
        let expected = CHUNK_BYTES.min(total - out.len() as u64);
        if bytes.len() as u64 != expected {
            return Err(FetchError::Lied(format!(
                "a chunk of {} bytes where {expected} were due",
                bytes.len()
            )));
        }
        hasher.update(&bytes);
        out.extend_from_slice(&bytes);
        if out.len() as u64 == total {
            break;
        }
    }
    let got = hex::encode(hasher.finalize());
    if got != sha256 {
        return Err(FetchError::Lied(format!(
            "the module's bytes hash to sha256:{got}, not the sha256:{sha256} offered"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_size_is_remembered_for_a_second_and_the_memory_is_bounded() {
        let shares = Shares::default();
        assert_eq!(shares.known_size("aa"), None);
        shares.note_size("aa", 7);
        assert_eq!(shares.known_size("aa"), Some(7));
        std::thread::sleep(SIZE_TTL + Duration::from_millis(50));
        // Stale: the store is asked again (the module may have been removed).
        assert_eq!(shares.known_size("aa"), None);
        for i in 0..MAX_SIZES + 10 {
            shares.note_size(&format!("{i:064x}"), i as u64);
        }
        let n = shares.sizes.lock().unwrap().len();
        assert!(n <= MAX_SIZES, "{n} sizes kept");
        assert_eq!(
            shares.known_size(&format!("{:064x}", MAX_SIZES + 9)),
            Some(MAX_SIZES as u64 + 9)
        );
    }
}
