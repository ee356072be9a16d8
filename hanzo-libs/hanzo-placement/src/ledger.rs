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

use hanzo_compute::Receipt;
use hanzo_network::Price;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One peer's account, in micro-credits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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

/// The ledger (in memory; see docs/network.md for what settles it).
#[derive(Default)]
pub struct Ledger {
    accounts: Mutex<BTreeMap<String, Account>>,
}

impl Ledger {
    fn with(&self, peer: &str, f: impl FnOnce(&mut Account)) {
        let mut a = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let acc = a.entry(peer.to_string()).or_insert_with(|| Account {
            peer_id: peer.to_string(),
            ..Account::default()
        });
        f(acc);
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
}
