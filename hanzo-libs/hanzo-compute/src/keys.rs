//! The node's ed25519 identity, kept in its data directory.

use crate::ComputeError;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// File name of the node key inside the data directory.
pub const KEY_FILE: &str = "node.key";

/// The node's signing key. Its public half, in hex, is the node id.
///
/// The key pair is derived from the seed when first used: the derivation (a scalar
/// multiplication, ~170k instructions, and the pages of its tables) is a tenth of what
/// `run wasm` adds to `--version`'s process, and a run that makes no receipt never
/// uses the key.
pub struct NodeKey {
    seed: Zeroizing<[u8; 32]>,
    derived: OnceLock<Derived>,
}

struct Derived {
    signing: SigningKey,
    id: String,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret half.
        f.debug_struct("NodeKey").field("id", &self.id()).finish()
    }
}

impl NodeKey {
    /// A key from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        NodeKey {
            seed: Zeroizing::new(seed),
            derived: OnceLock::new(),
        }
    }

    fn derived(&self) -> &Derived {
        self.derived.get_or_init(|| {
            let signing = SigningKey::from_bytes(&self.seed);
            let id = hex::encode(signing.verifying_key().as_bytes());
            Derived { signing, id }
        })
    }

    /// The 32-byte secret seed: what the node's libp2p identity is derived from, so
    /// that its peer id and its receipts' `node_id` name the same key. Never log it.
    pub fn secret_seed(&self) -> [u8; 32] {
        *self.seed
    }

    /// A fresh random key, not saved anywhere.
    pub fn generate() -> Result<Self, ComputeError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| ComputeError::internal(format!("no OS randomness: {e}")))?;
        Ok(Self::from_seed(seed))
    }

    /// Loads the key from `data_dir/node.key`, creating the directory and the key on
    /// first use.
    ///
    /// Creation is race-free: the key is written to a private temporary file and then
    /// hard-linked into place, which fails if another process got there first, in
    /// which case that process's key is used. The file is readable by its owner only.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, ComputeError> {
        let path = data_dir.join(KEY_FILE);
        if let Some(key) = Self::load(&path)? {
            return Ok(key);
        }
        std::fs::create_dir_all(data_dir).map_err(|e| {
            ComputeError::internal(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let key = Self::generate()?;
        // Unique per attempt, so concurrent creators (processes or threads) never share it.
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| ComputeError::internal(format!("no OS randomness: {e}")))?;
        let tmp = data_dir.join(format!(".{KEY_FILE}.{}.tmp", hex::encode(nonce)));
        let write = || -> std::io::Result<()> {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp)?;
            writeln!(f, "{}", hex::encode(*key.seed))?;
            f.sync_all()
        };
        let linked = write().and_then(|()| std::fs::hard_link(&tmp, &path));
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(&path)?
                .ok_or_else(|| ComputeError::internal("node key vanished while being created")),
            Err(e) => Err(ComputeError::internal(format!(
                "cannot write {}: {e}",
                path.display()
            ))),
        }
    }

    fn load(path: &PathBuf) -> Result<Option<Self>, ComputeError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ComputeError::internal(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| ComputeError::internal(format!("{} is not a hex ed25519 seed", path.display())))?;
        Ok(Some(Self::from_seed(bytes)))
    }

    /// The node id: the public key in lower-case hex.
    pub fn id(&self) -> &str {
        &self.derived().id
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.derived().signing.verifying_key()
    }

    /// Signs `message`, returning the signature in hex.
    pub fn sign_hex(&self, message: &[u8]) -> String {
        crate::receipt::to_hex(&self.sign_bytes(message))
    }

    /// Signs `message`, returning the signature's 64 bytes.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.derived().signing.sign(message).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = NodeKey::load_or_create(&dir.path().join("home")).unwrap();
        let b = NodeKey::load_or_create(&dir.path().join("home")).unwrap();
        assert_eq!(a.id(), b.id());
        assert_eq!(a.id().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("home").join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn concurrent_first_use_agrees_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| NodeKey::load_or_create(dir.path()).unwrap().id().to_string()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn the_pair_is_derived_on_first_use_and_is_the_seeds() {
        let seed = [7u8; 32];
        let key = NodeKey::from_seed(seed);
        assert_eq!(key.secret_seed(), seed);
        assert!(key.derived.get().is_none(), "derived before any use");
        let pair = SigningKey::from_bytes(&seed);
        assert_eq!(key.id(), hex::encode(pair.verifying_key().as_bytes()));
        assert_eq!(key.verifying_key(), pair.verifying_key());
        let sig = ed25519_dalek::Signature::from_bytes(&key.sign_bytes(b"m"));
        assert!(pair.verifying_key().verify_strict(b"m", &sig).is_ok());
        // Written and read back, the same key.
        let dir = tempfile::tempdir().unwrap();
        let created = NodeKey::load_or_create(dir.path()).unwrap();
        let loaded = NodeKey::load_or_create(dir.path()).unwrap();
        assert_eq!(created.secret_seed(), loaded.secret_seed());
        assert_eq!(created.id(), loaded.id());
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "zz").unwrap();
        assert!(NodeKey::load_or_create(dir.path()).is_err());
    }
}
