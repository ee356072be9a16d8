//! What this node earned from and owes to each peer, priced by the executor's table
//! as it stood when the executor accepted the job (the price it returned with its
//! acceptance).
//!
//! The charge for one execution is `per_job + per_cpu_second x cpu-seconds +
//! per_gib_second x GiB-seconds`, where cpu-seconds are the receipt's wall time times
//! the cores asked (`cpu_shares / 1024`, at least one) and GiB-seconds the wall time
//! times the memory limit: what the executor set aside, as cloud providers bill
//! reserved capacity. Both sides compute it from the same signed receipt, so they
//! agree without trusting each other's arithmetic.
//!
//! The ledger lives in `<data_dir>/ledger.json` (mode 0600), rewritten whole (a
//! temporary file renamed over it) shortly after each change by a task of its own, off
//! the async workers; a node killed in between loses at most the last fraction of a
//! second of charges, never the file.

use hanzo_compute::Receipt;
use hanzo_network::Price;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// One peer's account, in micro-credits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The peer id.
    pub peer_id: String,
    /// What this node charged the peer for running its jobs.
    pub earned: u64,
    /// What the peer charged this node for running this node's jobs.
    pub owed: u64,
    /// Executions this node ran for the peer.
    pub jobs_run: u64,
    /// Executions the peer ran for this node.
    pub jobs_placed: u64,
}

/// The charge for the execution `receipt` records, at `price`.
pub fn charge(receipt: &Receipt, price: &Price) -> u64 {
    let wall_ms = receipt.usage.wall_time_ms.max(0.0);
    let cores = u64::from(receipt.limits.cpu_shares).div_ceil(1024).max(1) as f64;
    let gib = receipt.limits.memory_mb as f64 / 1024.0;
    let secs = wall_ms / 1000.0;
    let variable = price.per_cpu_second as f64 * secs * cores + price.per_gib_second as f64 * secs * gib;
    price.per_job.saturating_add(variable.ceil() as u64)
}

/// The ledger.
#[derive(Debug, Default)]
pub struct Ledger {
    accounts: Mutex<BTreeMap<String, Account>>,
    path: Option<PathBuf>,
    changed: Notify,
}

/// The file's form.
#[derive(Serialize, Deserialize)]
struct File {
    accounts: Vec<Account>,
}

impl Ledger {
    /// A ledger kept in memory only.
    pub fn in_memory() -> Ledger {
        Ledger::default()
    }

    /// The ledger in `path`, empty when the file does not exist yet. Blocking.
    pub fn load(path: &Path) -> Result<Ledger, String> {
        let accounts = match std::fs::read(path) {
            Ok(bytes) => {
                let f: File = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("the ledger {} is not valid: {e}", path.display()))?;
                f.accounts.into_iter().map(|a| (a.peer_id.clone(), a)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read the ledger {}: {e}", path.display())),
        };
        Ok(Ledger {
            accounts: Mutex::new(accounts),
            path: Some(path.to_path_buf()),
            changed: Notify::new(),
        })
    }

    fn with(&self, peer: &str, f: impl FnOnce(&mut Account)) {
        {
            let mut a = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
            let acc = a.entry(peer.to_string()).or_insert_with(|| Account {
                peer_id: peer.to_string(),
                ..Account::default()
            });
            f(acc);
        }
        self.changed.notify_one();
    }

    /// `peer` ran a job of this node's for `amount`.
    pub fn owe(&self, peer: &str, amount: u64) {
        self.with(peer, |a| {
            a.owed = a.owed.saturating_add(amount);
            a.jobs_placed += 1;
        });
    }

    /// This node ran a job of `peer`'s for `amount`.
    pub fn earn(&self, peer: &str, amount: u64) {
        self.with(peer, |a| {
            a.earned = a.earned.saturating_add(amount);
            a.jobs_run += 1;
        });
    }

    /// Every account, by peer id.
    pub fn accounts(&self) -> Vec<Account> {
        self.accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Writes the ledger after each change (coalescing those 200 ms apart); runs until
    /// the ledger is dropped. Does nothing for a ledger in memory.
    pub async fn persist(self: Arc<Self>) {
        let Some(path) = self.path.clone() else { return };
        loop {
            self.changed.notified().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let file = File {
                accounts: self.accounts(),
            };
            let path = path.clone();
            let written = tokio::task::spawn_blocking(move || write(&path, &file)).await;
            if let Ok(Err(e)) = written {
                tracing::error!(error = %e, "cannot write the ledger");
            }
        }
    }
}

/// Writes `file` to `path` through a private temporary file renamed over it.
fn write(path: &Path, file: &File) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    crate::code::write_file(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_ledger_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        let ledger = Arc::new(Ledger::load(&path).unwrap());
        tokio::spawn(ledger.clone().persist());
        ledger.owe("peerA", 211);
        ledger.earn("peerB", 5);
        ledger.earn("peerB", 7);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Ok(again) = Ledger::load(&path)
                && again.accounts() == ledger.accounts()
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "never written");
        }
        let again = Ledger::load(&path).unwrap().accounts();
        assert_eq!(
            again[0],
            Account {
                peer_id: "peerA".into(),
                earned: 0,
                owed: 211,
                jobs_run: 0,
                jobs_placed: 1
            }
        );
        assert_eq!(again[1].earned, 12);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, b"{").unwrap();
        assert!(Ledger::load(&path).unwrap_err().contains("not valid"));
    }
}
