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
    /// Executions this node ran for the peer whose result it did not take (a dissent,
    /// a result that did not check out): earned nothing.
    #[serde(default)]
    pub jobs_rejected: u64,
    /// Acceptances from the peer at another price than this node's: recorded at the
    /// peer's (signed) amount, and counted here for the operator to see.
    #[serde(default)]
    pub disputed: u64,
    /// How its attempts of this node's verified jobs went: its reputation's record.
    #[serde(default)]
    pub verification: Verified,
}

/// A credibility under which a peer is no longer offered attempts of verified jobs:
/// a fresh peer (0.5) falls under it with its second proven dissent.
pub const MIN_CREDIBILITY: f64 = 0.2;

/// One peer's record in this node's verified jobs (CONTRACTS §8).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Results that agreed with the verdict.
    pub agreements: u64,
    /// Results the majority contradicted, and signed results that did not check out
    /// (another nonce, another context): proven, each kept with its receipt.
    pub dissents: u64,
    /// Attempts it accepted and never returned a result for (lost, stalled).
    pub lost: u64,
    /// Attempts it declined (full, or over its ceilings): recorded, never held against it.
    pub declines: u64,
}

impl Verified {
    /// Its credibility, in the spirit of Sarmenta's (and iExec's) model: a fresh peer
    /// is at 0.5; each agreement moves it a little closer to 1 (`1 - 0.5/(1+a)`, with
    /// `a` its agreements less its lost attempts), and each proven dissent halves it.
    /// A lost attempt cancels an agreement, a decline costs nothing.
    pub fn credibility(&self) -> f64 {
        let a = self.agreements.saturating_sub(self.lost) as f64;
        let d = self.dissents.min(64) as i32;
        (1.0 - 0.5 / (1.0 + a)) * 0.5f64.powi(d)
    }
}

/// How one attempt of a verified job went, for its node's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempted {
    /// Its result agreed with the verdict.
    Agreed,
    /// Its result dissented, or did not check out.
    Dissented,
    /// It accepted and returned nothing.
    Lost,
    /// It declined.
    Declined,
}

/// The charge for the execution `receipt` records, at `price`
/// ([`hanzo_compute::billing::charge`]).
pub fn charge(receipt: &Receipt, price: &Price) -> u64 {
    hanzo_compute::billing::charge(receipt, &rates(price))
}

/// A price table as the billing records write it.
pub fn rates(price: &Price) -> hanzo_compute::billing::Rates {
    hanzo_compute::billing::Rates {
        per_job: price.per_job,
        per_cpu_second: price.per_cpu_second,
        per_gib_second: price.per_gib_second,
    }
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

    /// This node ran a job of `peer`'s for `amount`, and the peer accepted the result
    /// (`disputed`: at another price than this node's).
    pub fn earn(&self, peer: &str, amount: u64, disputed: bool) {
        self.with(peer, |a| {
            a.earned = a.earned.saturating_add(amount);
            a.jobs_run += 1;
            a.disputed += u64::from(disputed);
        });
    }

    /// This node ran a job of `peer`'s and the peer did not take the result.
    pub fn rejected(&self, peer: &str) {
        self.with(peer, |a| a.jobs_rejected += 1);
    }

    /// Records how `peer`'s attempt of a verified job went.
    pub fn attempted(&self, peer: &str, how: Attempted) {
        self.with(peer, |a| {
            let v = &mut a.verification;
            match how {
                Attempted::Agreed => v.agreements += 1,
                Attempted::Dissented => v.dissents += 1,
                Attempted::Lost => v.lost += 1,
                Attempted::Declined => v.declines += 1,
            }
        });
    }

    /// `peer`'s record in verified jobs (zero when it has none).
    pub fn verified(&self, peer: &str) -> Verified {
        self.accounts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(peer)
            .map(|a| a.verification)
            .unwrap_or_default()
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
        ledger.earn("peerB", 5, false);
        ledger.earn("peerB", 7, true);
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
                jobs_placed: 1,
                jobs_rejected: 0,
                disputed: 0,
                verification: Verified::default(),
            }
        );
        assert_eq!((again[1].earned, again[1].disputed), (12, 1));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, b"{").unwrap();
        assert!(Ledger::load(&path).unwrap_err().contains("not valid"));
    }

    #[test]
    fn agreements_raise_credibility_a_little_and_a_dissent_halves_it() {
        let fresh = Verified::default();
        assert_eq!(fresh.credibility(), 0.5);
        let v = |agreements, dissents, lost| Verified {
            agreements,
            dissents,
            lost,
            declines: 7,
        };
        assert_eq!(v(1, 0, 0).credibility(), 0.75);
        assert!(v(9, 0, 0).credibility() > 0.9);
        assert_eq!(v(0, 1, 0).credibility(), 0.25);
        // A fresh liar falls under the line with its second dissent; a long honest
        // record buys one more, not a free pass.
        assert!(v(0, 1, 0).credibility() >= MIN_CREDIBILITY);
        assert!(v(0, 2, 0).credibility() < MIN_CREDIBILITY);
        assert!(v(20, 2, 0).credibility() < 0.25);
        assert!(v(20, 3, 0).credibility() < MIN_CREDIBILITY);
        // Lost attempts cancel agreements; declines cost nothing.
        assert_eq!(v(3, 0, 3).credibility(), 0.5);
        assert_eq!(v(3, 0, 9).credibility(), 0.5);
    }
}
