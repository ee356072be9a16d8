//! Billing records (CONTRACTS §8): an executor's signed receipt and the submitter's
//! signed acceptance of it, together what the submitter owes for that execution,
//! verifiable by anyone with both public keys (`hanzo-node receipt verify`).
//!
//! The charge is computed from the receipt alone (`per_job + per_cpu_second ×
//! cpu-seconds + per_gib_second × GiB-seconds`, where cpu-seconds are the wall time
//! times the cores asked, `cpu_shares / 1024` and at least one, and GiB-seconds the wall
//! time times the memory limit): what the executor set aside, as clouds bill reserved
//! capacity. Both sides compute it from the same signed receipt, so an acceptance whose
//! `amount` is not the charge of its receipt at its `price` does not verify.

use crate::keys::NodeKey;
use crate::receipt::{
    Receipt, VerifyError, check_unique_keys, hex_field, sha256_hex, signed_bytes, timestamp,
};
use crate::{ComputeError, canonical};

// An acceptance is signed as a receipt is: ed25519 over the canonical JSON of every
// field but `signature` (`receipt::signed_bytes`).
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::SystemTime;

/// The acceptance format version written by this node.
pub const ACCEPTANCE_VERSION: u32 = 1;

/// An executor's prices, in micro-credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rates {
    /// Per execution.
    pub per_job: u64,
    /// Per second of wall time, per core asked.
    pub per_cpu_second: u64,
    /// Per second of wall time, per GiB of memory asked.
    pub per_gib_second: u64,
}

/// The charge for the execution `receipt` records, at `rates`.
pub fn charge(receipt: &Receipt, rates: &Rates) -> u64 {
    let wall_ms = receipt.usage.wall_time_ms.max(0.0);
    let cores = u64::from(receipt.limits.cpu_shares).div_ceil(1024).max(1) as f64;
    let gib = receipt.limits.memory_mb as f64 / 1024.0;
    let secs = wall_ms / 1000.0;
    let variable = rates.per_cpu_second as f64 * secs * cores + rates.per_gib_second as f64 * secs * gib;
    rates.per_job.saturating_add(variable.ceil() as u64)
}

/// The submitter's signed statement that it took an executor's result and owes its
/// charge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    /// Format version ([`ACCEPTANCE_VERSION`]).
    pub version: u32,
    /// sha256 (hex) of the canonical JSON of the receipt accepted, signature included.
    pub receipt_sha256: String,
    /// The execution's id on the network (the submitter's name for the attempt).
    pub execution_id: String,
    /// The prices the executor accepted the job at.
    pub price: Rates,
    /// The charge of the receipt at `price`, in micro-credits.
    pub amount: u64,
    /// The verdict of the verified job the result won (`agreed`, `majority`); `None`
    /// for a job without verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// The submitter's ed25519 public key, hex (its node id).
    pub submitter: String,
    /// When it accepted (RFC 3339, UTC).
    pub accepted_at: String,
    /// ed25519 signature (hex) over the canonical JSON of every other field.
    pub signature: String,
}

impl Acceptance {
    /// The acceptance of `receipt`, run as `execution_id` at `price`, signed by `key`.
    pub fn sign(
        receipt: &Receipt,
        execution_id: &str,
        price: Rates,
        verdict: Option<&str>,
        key: &NodeKey,
    ) -> Result<Acceptance, ComputeError> {
        let mut a = Acceptance {
            version: ACCEPTANCE_VERSION,
            receipt_sha256: receipt_sha256(receipt),
            execution_id: execution_id.to_string(),
            price,
            amount: charge(receipt, &price),
            verdict: verdict.map(str::to_string),
            submitter: key.id().to_string(),
            accepted_at: timestamp(SystemTime::now()),
            signature: String::new(),
        };
        let value = serde_json::to_value(&a).map_err(ComputeError::internal)?;
        a.signature = key.sign_hex(&signed_bytes(&value).map_err(ComputeError::internal)?);
        Ok(a)
    }

    /// This acceptance as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("an acceptance always serialises")
    }

    /// Checks the acceptance given as JSON against `receipt`: its signature (by the
    /// key it names), that it names this receipt, and that its amount is the
    /// receipt's charge at its price.
    pub fn verify(value: &Value, receipt: &Receipt) -> Result<Acceptance, VerifyError> {
        let a: Acceptance = serde_json::from_value(value.clone())
            .map_err(|e| VerifyError::Malformed(format!("acceptance: {e}")))?;
        if a.version != ACCEPTANCE_VERSION {
            return Err(VerifyError::Malformed(format!(
                "acceptance version {} is not one this node reads ({ACCEPTANCE_VERSION})",
                a.version
            )));
        }
        let key = hex_field::<32>(&a.submitter, "submitter", "a 32-byte ed25519 public key in hex")?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| VerifyError::BadHex {
            field: "submitter",
            expected: "a valid ed25519 public key",
        })?;
        let sig = hex_field::<64>(&a.signature, "signature", "a 64-byte ed25519 signature in hex")?;
        key.verify_strict(&signed_bytes(value)?, &Signature::from_bytes(&sig))
            .map_err(|_| VerifyError::BadSignature)?;
        let sha = receipt_sha256(receipt);
        if a.receipt_sha256 != sha {
            return Err(VerifyError::HashMismatch {
                field: "receipt_sha256",
                recorded: a.receipt_sha256,
                actual: sha,
            });
        }
        let owed = charge(receipt, &a.price);
        if a.amount != owed {
            return Err(VerifyError::HashMismatch {
                field: "amount",
                recorded: a.amount.to_string(),
                actual: owed.to_string(),
            });
        }
        Ok(a)
    }
}

/// A billing record: `{"receipt": <executor's receipt>, "acceptance": <submitter's
/// acceptance of it>}`.
#[derive(Debug, Clone, PartialEq)]
pub struct BillingRecord {
    /// The executor's receipt.
    pub receipt: Receipt,
    /// The submitter's acceptance of it.
    pub acceptance: Acceptance,
}

impl BillingRecord {
    /// The record as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::json!({"receipt": self.receipt.to_value(), "acceptance": self.acceptance.to_value()})
    }

    /// Whether `value` has the shape of a billing record (an object with exactly
    /// `receipt` and `acceptance`).
    pub fn is_one(value: &Value) -> bool {
        value
            .as_object()
            .is_some_and(|o| o.len() == 2 && o.contains_key("receipt") && o.contains_key("acceptance"))
    }

    /// Verifies a billing record given as JSON text: the receipt (its signature and
    /// shape), the acceptance against it, and no key twice anywhere.
    pub fn verify_text(text: &str) -> Result<BillingRecord, VerifyError> {
        let value: Value = serde_json::from_str(text).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        check_unique_keys(text)?;
        Self::verify(&value)
    }

    /// Verifies a billing record given as JSON.
    pub fn verify(value: &Value) -> Result<BillingRecord, VerifyError> {
        if !Self::is_one(value) {
            return Err(VerifyError::Malformed(
                "a billing record is {\"receipt\": …, \"acceptance\": …}".into(),
            ));
        }
        let receipt = Receipt::verify(&value["receipt"])?;
        // Exactly as signed (no field given as null that the signer left out, or the
        // reverse): `receipt_sha256` then names one text.
        if receipt.to_value() != value["receipt"] {
            return Err(VerifyError::Malformed(
                "the receipt is not in the form its signer wrote (a field added as null, or left out)".into(),
            ));
        }
        let acceptance = Acceptance::verify(&value["acceptance"], &receipt)?;
        Ok(BillingRecord { receipt, acceptance })
    }
}

/// sha256 (hex) of the canonical JSON of `receipt`, signature included.
pub fn receipt_sha256(receipt: &Receipt) -> String {
    sha256_hex(&canonical::to_vec(&receipt.to_value()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receipt::{ReceiptBody, hash_json};
    use crate::{ResourceLimits, RuntimeKind, Usage};
    use serde_json::json;

    fn receipt(key: &NodeKey) -> Receipt {
        Receipt::sign(
            ReceiptBody {
                job_id: "j".into(),
                runtime: RuntimeKind::Wasm,
                function: "run".into(),
                code_hash: "00".repeat(32),
                input_hash: hash_json(&json!({})),
                result: Ok(hash_json(&json!({"ok": 1}))),
                usage: Usage {
                    wall_time_ms: 1500.0,
                    ..Default::default()
                },
                limits: ResourceLimits::default(),
                deterministic: true,
                started_at: SystemTime::now(),
                finished_at: SystemTime::now(),
                context_hash: "11".repeat(32),
                runtime_version: "v".into(),
                nonce: None,
            },
            key,
        )
        .unwrap()
    }

    #[test]
    fn a_record_verifies_and_any_change_to_it_does_not() {
        let executor = NodeKey::from_seed([1; 32]);
        let submitter = NodeKey::from_seed([2; 32]);
        let r = receipt(&executor);
        let rates = Rates {
            per_job: 10,
            per_cpu_second: 100,
            per_gib_second: 4,
        };
        let a = Acceptance::sign(&r, "e1", rates, Some("agreed"), &submitter).unwrap();
        // 10 + 100 × 1.5 s × 1 core + 4 × 1.5 s × 0.25 GiB, rounded up.
        assert_eq!(a.amount, 10 + 150 + 2);
        let record = BillingRecord {
            receipt: r.clone(),
            acceptance: a.clone(),
        };
        let v = record.to_value();
        assert_eq!(BillingRecord::verify_text(&v.to_string()).unwrap(), record);
        // Tampering with the amount, the price, the receipt or the signer.
        let mut t = v.clone();
        t["acceptance"]["amount"] = json!(a.amount - 1);
        assert_eq!(BillingRecord::verify(&t).unwrap_err(), VerifyError::BadSignature);
        let mut cheap = a.clone();
        cheap.price.per_cpu_second = 1;
        let mut resigned = cheap.to_value();
        resigned["signature"] = json!(submitter.sign_hex(&signed_bytes(&resigned).unwrap()));
        let e = Acceptance::verify(&resigned, &r).unwrap_err();
        assert!(e.to_string().contains("amount"), "{e}");
        let mut t = v.clone();
        t["receipt"]["usage"]["wall_time_ms"] = json!(1.0);
        assert!(BillingRecord::verify(&t).is_err());
        let other = receipt(&executor);
        let e = Acceptance::verify(&a.to_value(), &other).unwrap_err();
        assert!(e.to_string().contains("receipt_sha256"), "{e}");
        let mut t = v.clone();
        t["acceptance"]["submitter"] = json!(NodeKey::from_seed([3; 32]).id());
        assert_eq!(BillingRecord::verify(&t).unwrap_err(), VerifyError::BadSignature);
        assert!(BillingRecord::verify(&json!({"receipt": v["receipt"]})).is_err());
    }
}
