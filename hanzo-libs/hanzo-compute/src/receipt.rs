//! Receipts: the node's signed statement of what it ran (CONTRACTS §4).
//!
//! A receipt binds the code (`code_hash`), the input (`input_hash`) and the output
//! (`output_hash`) of one execution to the node that ran it, with the limits applied
//! and the resources used. The signature is ed25519 over the canonical JSON of every
//! other field, so changing, adding or removing any field breaks it. Under load one
//! signature covers a batch of receipts through a Merkle root ([`batch`]); each such
//! receipt carries its proof and still verifies on its own.

pub mod batch;
mod signer;

pub use batch::Batch;
pub(crate) use signer::Signer;

use crate::keys::NodeKey;
use crate::runtime::Usage;
use crate::{ComputeError, ResourceLimits, RuntimeKind, canonical};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::time::SystemTime;

/// The receipt format version written by this node. Version 2 added `context_hash`,
/// `runtime_version` and, on an attempt of a verified job, `nonce`; a version 1
/// receipt has none of them and still verifies.
pub const RECEIPT_VERSION: u32 = 2;

/// sha256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`, as `hex::encode` writes it, by table: a batched
/// receipt writes eight or more of these, and both the `hex` crate's char-by-char
/// iterator and a push per digit cost more than the sha256 they encode.
pub fn to_hex(bytes: &[u8]) -> String {
    /// Every byte's two digits.
    static PAIRS: [[u8; 2]; 256] = {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = [DIGITS[b >> 4], DIGITS[b & 0xf]];
            b += 1;
        }
        t
    };
    let mut out = vec![0u8; bytes.len() * 2];
    // One load and one two-byte store per byte, into a buffer of the final size: no
    // capacity check, and a byte needs no bounds check in a 256-entry table.
    for (pair, &b) in out.as_chunks_mut::<2>().0.iter_mut().zip(bytes) {
        *pair = PAIRS[usize::from(b)];
    }
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// sha256 of the canonical JSON of `value`, lower-case hex.
pub fn hash_json(value: &Value) -> String {
    sha256_hex(&canonical::to_vec(value))
}

/// An RFC 3339 UTC timestamp with microseconds.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// How the execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The tool produced an output.
    Succeeded,
    /// The tool failed, or was stopped at a limit.
    Failed,
}

/// Why a receipted execution failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReceiptError {
    /// The stable code of the [`ComputeError`] (`tool_failed`, `limit_exceeded`, ...).
    pub code: String,
    /// The error message.
    pub message: String,
}

impl ReceiptError {
    /// Its fields in canonical order (see [`canonical::SortedObject::object`]).
    fn canonical_fields(&self, o: &mut canonical::SortedObject) -> Result<(), canonical::CanonicalError> {
        let ReceiptError { code, message } = self;
        o.field("code", code)?;
        o.field("message", message)
    }
}

/// A signed record of one execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Format version ([`RECEIPT_VERSION`]).
    pub version: u32,
    /// The job's id.
    pub job_id: String,
    /// The runtime that ran it.
    pub runtime: RuntimeKind,
    /// The function called.
    pub function: String,
    /// sha256 (hex) of the module or script bytes, or the image digest's hex.
    pub code_hash: String,
    /// sha256 (hex) of the canonical JSON of the params.
    pub input_hash: String,
    /// sha256 (hex) of the canonical JSON of the output; `null` when there is none.
    pub output_hash: Option<String>,
    /// How it ended.
    pub status: Outcome,
    /// Why it failed, when it did.
    pub error: Option<ReceiptError>,
    /// Resources used.
    pub usage: Usage,
    /// The limits applied.
    pub limits: ResourceLimits,
    /// Whether the deterministic profile was on.
    pub deterministic: bool,
    /// When execution started (RFC 3339, UTC).
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// sha256 (hex) of the canonical JSON of the execution context: everything
    /// besides the code and the input that shapes the output ([`ExecutionContext`]).
    /// Two receipts are comparable only when it is the same. Version 2 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_hash: Option<String>,
    /// The runtime's version as the context names it (`wasmtime 49.0.2; deterministic
    /// profile 1`, say). Version 2 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// The verification nonce (32 hex) of the job this execution was an attempt of
    /// (CONTRACTS §8): binds the receipt to that job, so it cannot be replayed as the
    /// answer to another. Only on attempts of verified jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The node's ed25519 public key, hex.
    pub node_id: String,
    /// ed25519 signature (hex): over the canonical JSON of every other field, or, when
    /// `batch` is present, over the batch's root ([`batch::BATCH_DOMAIN`]).
    pub signature: String,
    /// Where the receipt sits in the batch its signature covers; absent on a receipt
    /// signed alone. Version 2 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
}

/// The facts a receipt records, before signing.
#[derive(Debug, Clone)]
pub struct ReceiptBody {
    /// See [`Receipt::job_id`].
    pub job_id: String,
    /// See [`Receipt::runtime`].
    pub runtime: RuntimeKind,
    /// See [`Receipt::function`].
    pub function: String,
    /// See [`Receipt::code_hash`].
    pub code_hash: String,
    /// See [`Receipt::input_hash`].
    pub input_hash: String,
    /// The output, or the error that replaced it.
    pub result: Result<String, ReceiptError>,
    /// See [`Receipt::usage`].
    pub usage: Usage,
    /// See [`Receipt::limits`].
    pub limits: ResourceLimits,
    /// See [`Receipt::deterministic`].
    pub deterministic: bool,
    /// See [`Receipt::started_at`].
    pub started_at: SystemTime,
    /// See [`Receipt::finished_at`].
    pub finished_at: SystemTime,
    /// See [`Receipt::context_hash`] ([`ExecutionContext::hash`]).
    pub context_hash: String,
    /// See [`Receipt::runtime_version`].
    pub runtime_version: String,
    /// See [`Receipt::nonce`].
    pub nonce: Option<String>,
}

/// Everything besides the code and the input that shapes an execution's output, as
/// hashed into a receipt's `context_hash`. A submitter comparing the receipts of a
/// verified job recomputes it from the spec it sent, so an executor that ran with
/// other limits, another environment or another runtime version is caught.
///
/// `env` is in it by value: the hash of a low-entropy secret (`DEBUG=1`) can be
/// guessed from a receipt, which is one more reason secrets belong in mounts or in
/// the node's config, not in a job's `env` (docs/security.md).
#[derive(Debug, Clone, Serialize)]
pub struct ExecutionContext<'a> {
    /// The runtime.
    pub runtime: RuntimeKind,
    /// [`Receipt::runtime_version`].
    pub runtime_version: &'a str,
    /// The function called (`HANZO_FUNCTION`).
    pub function: &'a str,
    /// The id the tool saw as `HANZO_JOB_ID`: on an attempt of a verified job the
    /// submitter's, the same on every node.
    pub tool_job_id: &'a str,
    /// The granted environment.
    pub env: &'a std::collections::BTreeMap<String, String>,
    /// The network grant.
    pub network: crate::Network,
    /// Where mounts appear in the guest and whether they are writable (the host side
    /// is the node's business and cannot shape the output beyond the files' bytes).
    pub mounts: Vec<(&'a str, bool)>,
    /// The limits applied.
    pub limits: &'a ResourceLimits,
    /// Whether the deterministic profile was on.
    pub deterministic: bool,
}

impl<'a> ExecutionContext<'a> {
    /// The context of running `spec`'s `function` as `tool_job_id` on `runtime_version`.
    pub fn of(
        spec: &'a crate::JobSpec,
        function: &'a str,
        tool_job_id: &'a str,
        runtime_version: &'a str,
    ) -> Self {
        let mut mounts: Vec<_> = spec
            .mounts
            .iter()
            .map(|m| (m.guest.as_str(), m.writable))
            .collect();
        mounts.sort();
        ExecutionContext {
            runtime: spec.runtime,
            runtime_version,
            function,
            tool_job_id,
            env: &spec.env,
            network: spec.network,
            mounts,
            limits: &spec.limits,
            deterministic: spec.deterministic,
        }
    }

    /// sha256 (hex) of its canonical JSON.
    ///
    /// `tool_job_id` is the last field in canonical order and the only one that
    /// differs between the jobs of one spec, so the hash state after everything
    /// before it is kept, per thread, for the last context seen: a job like the one
    /// before hashes only its id. The cache is keyed on every other field's value,
    /// compared in full (not on a hash of them), so a hit is exactly the bytes a miss
    /// would have written.
    pub fn hash(&self) -> String {
        thread_local! {
            static LAST: RefCell<Option<(FixedPart, Sha256)>> = const { RefCell::new(None) };
        }
        let state = LAST
            .try_with(|last| {
                let mut last = last.borrow_mut();
                match &*last {
                    Some((fixed, state)) if fixed.is(self) => state.clone(),
                    _ => {
                        let (state, len) = self.fixed_state();
                        // A large context (a long env, or a peer's long strings in
                        // a receipt being checked) is hashed but not kept: the entry
                        // lives as long as the thread.
                        *last = (len <= MAX_CACHED_CONTEXT).then(|| (FixedPart::of(self), state.clone()));
                        state
                    }
                }
            })
            // A thread tearing down its thread-locals hashes without the cache.
            .unwrap_or_else(|_| self.fixed_state().0);
        let mut tail = Vec::with_capacity(self.tool_job_id.len() + 3);
        canonical::write_string(self.tool_job_id, &mut tail);
        tail.push(b'}');
        to_hex(&state.chain_update(&tail).finalize())
    }

    /// The hash state after every byte of the canonical JSON before `tool_job_id`'s
    /// value, and how many bytes that was.
    fn fixed_state(&self) -> (Sha256, usize) {
        let mut out = Vec::with_capacity(512);
        let mut o = canonical::SortedObject::new(&mut out);
        self.fixed_fields(&mut o).expect("a context always serialises");
        o.key("tool_job_id");
        (Sha256::new_with_prefix(&out), out.len())
    }

    /// Its canonical JSON, written field by field in canonical order: what
    /// [`ExecutionContext::hash`] hashes, in one piece
    /// (`the_bytes_signed_are_the_canonical_json_verify_checks` holds it to the
    /// generic form; `the_cached_context_hash_is_the_hash_of_the_whole_context` holds
    /// the hash, from the cache or not, to the generic form's).
    #[cfg(test)]
    fn canonical(&self) -> Result<Vec<u8>, canonical::CanonicalError> {
        let mut out = Vec::with_capacity(512);
        let mut o = canonical::SortedObject::new(&mut out);
        self.fixed_fields(&mut o)?;
        o.field("tool_job_id", self.tool_job_id)?;
        o.finish();
        Ok(out)
    }

    /// Every field but `tool_job_id`, which sorts last.
    fn fixed_fields(&self, o: &mut canonical::SortedObject) -> Result<(), canonical::CanonicalError> {
        // Every field by name, so a new one cannot be left out unnoticed (nor out of
        // `FixedPart`).
        let ExecutionContext {
            runtime,
            runtime_version,
            function,
            tool_job_id: _,
            env,
            network,
            mounts,
            limits,
            deterministic,
        } = self;
        o.field("deterministic", deterministic)?;
        o.field("env", env)?;
        o.field("function", function)?;
        o.object("limits", |o| limits.canonical_fields(o))?;
        o.field("mounts", mounts)?;
        o.field("network", network)?;
        o.field("runtime", runtime)?;
        o.field("runtime_version", runtime_version)?;
        Ok(())
    }
}

/// The longest canonical prefix (bytes) whose hash state a thread keeps: a spec's
/// usual context is ~300 bytes.
const MAX_CACHED_CONTEXT: usize = 4096;

/// An [`ExecutionContext`]'s fields but `tool_job_id`, owned: the key of the cached
/// hash state in [`ExecutionContext::hash`].
struct FixedPart {
    runtime: RuntimeKind,
    runtime_version: String,
    function: String,
    env: std::collections::BTreeMap<String, String>,
    network: crate::Network,
    mounts: Vec<(String, bool)>,
    limits: ResourceLimits,
    deterministic: bool,
}

impl FixedPart {
    fn of(c: &ExecutionContext) -> FixedPart {
        FixedPart {
            runtime: c.runtime,
            runtime_version: c.runtime_version.to_string(),
            function: c.function.to_string(),
            env: c.env.clone(),
            network: c.network,
            mounts: c.mounts.iter().map(|&(g, w)| (g.to_string(), w)).collect(),
            limits: c.limits.clone(),
            deterministic: c.deterministic,
        }
    }

    /// Whether `c`'s fields but `tool_job_id` are these, value for value: then they
    /// write the same canonical bytes.
    fn is(&self, c: &ExecutionContext) -> bool {
        let ExecutionContext {
            runtime,
            runtime_version,
            function,
            tool_job_id: _,
            env,
            network,
            mounts,
            limits,
            deterministic,
        } = c;
        self.runtime == *runtime
            && self.runtime_version == *runtime_version
            && self.function == *function
            && self.env == **env
            && self.network == *network
            && self
                .mounts
                .iter()
                .map(|(g, w)| (g.as_str(), *w))
                .eq(mounts.iter().copied())
            && self.limits == **limits
            && self.deterministic == *deterministic
    }
}

impl Receipt {
    /// Signs `body` with the node's key.
    pub fn sign(body: ReceiptBody, key: &NodeKey) -> Result<Receipt, ComputeError> {
        let mut receipt = Receipt::unsigned(body);
        receipt.sign_with(key)?;
        Ok(receipt)
    }

    /// The receipt of `body`, with no `node_id` and no signature yet (see
    /// [`Receipt::sign_all`]).
    pub fn unsigned(body: ReceiptBody) -> Receipt {
        let (output_hash, status, error) = match body.result {
            Ok(h) => (Some(h), Outcome::Succeeded, None),
            Err(e) => (None, Outcome::Failed, Some(e)),
        };
        Receipt {
            version: RECEIPT_VERSION,
            job_id: body.job_id,
            runtime: body.runtime,
            function: body.function,
            code_hash: body.code_hash,
            input_hash: body.input_hash,
            output_hash,
            status,
            error,
            usage: body.usage,
            limits: body.limits,
            deterministic: body.deterministic,
            started_at: timestamp(body.started_at),
            finished_at: timestamp(body.finished_at),
            context_hash: Some(body.context_hash),
            runtime_version: Some(body.runtime_version),
            nonce: body.nonce,
            node_id: String::new(),
            signature: String::new(),
            batch: None,
        }
    }

    /// Signs `receipts` with `key` and one signature between them: a lone receipt is
    /// signed alone, as [`Receipt::sign_with`] signs it; several are signed as a batch,
    /// each given the batch's root and its proof. The results are in the order given;
    /// a receipt whose bytes cannot be written gets the error and is left out of the
    /// batch.
    pub fn sign_all(receipts: Vec<Receipt>, key: &NodeKey) -> Vec<Result<Receipt, ComputeError>> {
        let mut prepared: Vec<Result<(Receipt, Vec<u8>), ComputeError>> = receipts
            .into_iter()
            .map(|mut r| {
                let bytes = r.prepare(key)?;
                Ok((r, bytes))
            })
            .collect();
        let good: Vec<usize> = (0..prepared.len()).filter(|&i| prepared[i].is_ok()).collect();
        if let [only] = good[..]
            && let Ok((r, bytes)) = &mut prepared[only]
        {
            r.seal_alone(bytes, key);
        } else if !good.is_empty() {
            let leaves: Vec<_> = good
                .iter()
                .map(|&i| match &prepared[i] {
                    Ok((_, bytes)) => batch::leaf_hash(bytes),
                    Err(_) => unreachable!("only the good ones"),
                })
                .collect();
            for (&i, seal) in good.iter().zip(batch::seal(&leaves, key)) {
                if let Ok((r, _)) = &mut prepared[i] {
                    r.seal_in(&seal);
                }
            }
        }
        prepared.into_iter().map(|r| r.map(|(r, _)| r)).collect()
    }

    /// Readies the receipt for `key`'s signature: sets `node_id`, clears `signature`
    /// and `batch`, and returns the bytes a lone signature covers (and a batch's leaf
    /// hashes).
    pub(crate) fn prepare(&mut self, key: &NodeKey) -> Result<Vec<u8>, ComputeError> {
        self.node_id = key.id().to_string();
        self.signature = String::new();
        self.batch = None;
        self.signed_bytes().map_err(ComputeError::internal)
    }

    /// Signs the prepared receipt alone, over its `bytes`.
    pub(crate) fn seal_alone(&mut self, bytes: &[u8], key: &NodeKey) {
        self.signature = key.sign_hex(bytes);
    }

    /// Gives the prepared receipt its place in a signed batch.
    pub(crate) fn seal_in(&mut self, seal: &batch::Seal) {
        self.signature = to_hex(&seal.signature);
        self.batch = Some(Batch {
            root: to_hex(&seal.root),
            index: seal.index,
            size: seal.size,
            proof: seal.path.iter().map(|h| to_hex(h)).collect(),
        });
    }

    /// Signs the receipt as it stands with `key`, replacing its `node_id` and
    /// `signature`: for a node that alters what it ran and signs the lie (the
    /// `corrupt_output` fail point), and for tests that need a receipt no honest
    /// execution would give.
    pub fn sign_with(&mut self, key: &NodeKey) -> Result<(), ComputeError> {
        let bytes = self.prepare(key)?;
        self.seal_alone(&bytes, key);
        Ok(())
    }

    /// The bytes signed: the same as `signed_bytes(&self.to_value())`, which `verify`
    /// checks, written field by field in canonical order without building the JSON
    /// tree (that tree and its sorting were most of a receipt's cost besides the
    /// signature itself).
    fn signed_bytes(&self) -> Result<Vec<u8>, canonical::CanonicalError> {
        // Every field by name, so a new one cannot be left out unnoticed.
        let Receipt {
            version,
            job_id,
            runtime,
            function,
            code_hash,
            input_hash,
            output_hash,
            status,
            error,
            usage,
            limits,
            deterministic,
            started_at,
            finished_at,
            context_hash,
            runtime_version,
            nonce,
            node_id,
            signature: _,
            batch: _,
        } = self;
        let mut out = Vec::with_capacity(1024);
        let mut o = canonical::SortedObject::new(&mut out);
        o.field("code_hash", code_hash)?;
        // The three version 2 fields are left out when absent (serde's
        // `skip_serializing_if`), as `to_value` leaves them out.
        if let Some(c) = context_hash {
            o.field("context_hash", c)?;
        }
        o.field("deterministic", deterministic)?;
        match error {
            Some(e) => o.object("error", |o| e.canonical_fields(o))?,
            None => o.field("error", &())?,
        }
        o.field("finished_at", finished_at)?;
        o.field("function", function)?;
        o.field("input_hash", input_hash)?;
        o.field("job_id", job_id)?;
        o.object("limits", |o| limits.canonical_fields(o))?;
        o.field("node_id", node_id)?;
        if let Some(n) = nonce {
            o.field("nonce", n)?;
        }
        o.field("output_hash", output_hash)?;
        o.field("runtime", runtime)?;
        if let Some(v) = runtime_version {
            o.field("runtime_version", v)?;
        }
        o.field("started_at", started_at)?;
        o.field("status", status)?;
        o.object("usage", |o| usage.canonical_fields(o))?;
        o.field("version", version)?;
        o.finish();
        Ok(out)
    }

    /// This receipt as JSON.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a receipt always serialises")
    }

    /// Verifies the signature and the shape of a receipt given as JSON.
    pub fn verify(value: &Value) -> Result<Receipt, VerifyError> {
        verify(value)
    }
}

/// The canonical bytes that are signed: the document without its `signature` field
/// (a receipt signed alone, an acceptance).
pub(crate) fn signed_bytes(value: &Value) -> Result<Vec<u8>, VerifyError> {
    without(value, &["signature"])
}

/// `value`'s canonical JSON without the `fields`.
fn without(value: &Value, fields: &[&str]) -> Result<Vec<u8>, VerifyError> {
    let mut obj = value.as_object().cloned().ok_or(VerifyError::NotAnObject)?;
    for f in fields {
        obj.remove(*f);
    }
    Ok(canonical::to_vec(&Value::Object(obj)))
}

/// Why a receipt did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The document is not a JSON object.
    #[error("a receipt must be a JSON object")]
    NotAnObject,
    /// A required field is missing or has the wrong type.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// A field that must be hex is not, or has the wrong length.
    #[error("field '{field}' is not {expected}")]
    BadHex {
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// The signature does not match the contents: something was altered.
    #[error("signature does not match the receipt's contents (it was altered or signed by another key)")]
    BadSignature,
    /// A batch receipt's contents and proof do not lead to the root it names: the
    /// receipt was altered, or the proof is not its own.
    #[error("the receipt is not in the batch it names (its contents or its batch proof were altered)")]
    NotInBatch,
    /// The receipt's text has a key twice in one object. JSON parsers disagree on
    /// which one counts (serde_json keeps the last, others the first), so a verifier
    /// and a reader could see different values under one signature: refused.
    #[error("duplicate key \"{0}\" in the receipt (a receipt's keys are unique)")]
    DuplicateKey(String),
    /// A recomputed hash differs from the recorded one.
    #[error("{field} does not match: receipt has {recorded}, recomputed {actual}")]
    HashMismatch {
        /// The field.
        field: &'static str,
        /// What the receipt says.
        recorded: String,
        /// What the given data hashes to.
        actual: String,
    },
}

/// Checks that no object in the JSON `text` has a key twice (at any depth), so that
/// every reader sees the values that were verified. `text` must be valid JSON (parse
/// it first); invalid JSON is reported as [`VerifyError::Malformed`].
pub fn check_unique_keys(text: &str) -> Result<(), VerifyError> {
    use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

    const DUPLICATE: &str = "\u{0}duplicate:";

    struct Unique;
    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UniqueVisitor)
        }
    }
    struct UniqueVisitor;
    impl<'de> Visitor<'de> for UniqueVisitor {
        type Value = Unique;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut seen = std::collections::HashSet::new();
            // Keys are compared unescaped: "output\u005fhash" is "output_hash".
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(de::Error::custom(format!("{DUPLICATE}{key}")));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }
    }

    match serde_json::from_str::<Unique>(text) {
        Ok(Unique) => Ok(()),
        Err(e) => {
            let msg = e.to_string();
            match msg.strip_prefix(DUPLICATE) {
                // serde_json appends " at line L column C".
                Some(rest) => Err(VerifyError::DuplicateKey(
                    rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k).to_string(),
                )),
                None => Err(VerifyError::Malformed(msg)),
            }
        }
    }
}

pub(crate) fn hex_field<const N: usize>(
    s: &str,
    field: &'static str,
    expected: &'static str,
) -> Result<[u8; N], VerifyError> {
    hex::decode(s)
        .ok()
        .filter(|_| s.bytes().all(|b| !b.is_ascii_uppercase()))
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or(VerifyError::BadHex { field, expected })
}

fn verify(value: &Value) -> Result<Receipt, VerifyError> {
    if !value.is_object() {
        return Err(VerifyError::NotAnObject);
    }
    let receipt: Receipt =
        serde_json::from_value(value.clone()).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    let key_bytes = hex_field::<32>(&receipt.node_id, "node_id", "a 32-byte ed25519 public key in hex")?;
    let sig_bytes = hex_field::<64>(
        &receipt.signature,
        "signature",
        "a 64-byte ed25519 signature in hex",
    )?;
    match receipt.version {
        1 => {
            for (field, present) in [
                ("context_hash", receipt.context_hash.is_some()),
                ("runtime_version", receipt.runtime_version.is_some()),
                ("nonce", receipt.nonce.is_some()),
                ("batch", receipt.batch.is_some()),
            ] {
                if present {
                    return Err(VerifyError::Malformed(format!(
                        "a version 1 receipt has no field '{field}'"
                    )));
                }
            }
        }
        2 => {
            let Some(h) = &receipt.context_hash else {
                return Err(VerifyError::Malformed("missing field `context_hash`".into()));
            };
            hex_field::<32>(h, "context_hash", "a sha256 in hex")?;
            if receipt.runtime_version.is_none() {
                return Err(VerifyError::Malformed("missing field `runtime_version`".into()));
            }
            if let Some(n) = &receipt.nonce {
                hex_field::<16>(n, "nonce", "16 bytes in hex")?;
            }
        }
        v => {
            return Err(VerifyError::Malformed(format!(
                "receipt version {v} is not one this node reads (1 or {RECEIPT_VERSION})"
            )));
        }
    }
    // One thing or the other: a success with an output and no error, or a failure
    // with an error and no output. A receipt claiming both could be counted as
    // agreeing with a success while it reports a failure.
    match (receipt.status, &receipt.output_hash, &receipt.error) {
        (Outcome::Succeeded, Some(_), None) | (Outcome::Failed, None, Some(_)) => {}
        _ => {
            return Err(VerifyError::Malformed(
                "status, output_hash and error disagree (a success has an output_hash and no error, a failure an error and no output_hash)"
                    .into(),
            ));
        }
    }
    hex_field::<32>(&receipt.code_hash, "code_hash", "a sha256 in hex")?;
    hex_field::<32>(&receipt.input_hash, "input_hash", "a sha256 in hex")?;
    if let Some(h) = &receipt.output_hash {
        hex_field::<32>(h, "output_hash", "a sha256 in hex")?;
    }
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| VerifyError::BadHex {
        field: "node_id",
        expected: "a valid ed25519 public key",
    })?;
    let sig = Signature::from_bytes(&sig_bytes);
    // The signature covers the document as given (not as re-serialised from the
    // struct), so a field this version does not know would still be covered.
    let Some(b) = &receipt.batch else {
        key.verify_strict(&signed_bytes(value)?, &sig)
            .map_err(|_| VerifyError::BadSignature)?;
        return Ok(receipt);
    };
    // A batch receipt: its bytes (the same as a lone receipt's signed bytes) lead
    // through the proof to the root, and the root is what was signed.
    let root = hex_field::<32>(&b.root, "batch.root", "a sha256 in hex")?;
    if b.proof.len() > batch::MAX_PROOF {
        return Err(VerifyError::Malformed(format!(
            "a batch proof has at most {} hashes",
            batch::MAX_PROOF
        )));
    }
    let proof = b
        .proof
        .iter()
        .map(|h| hex_field::<32>(h, "batch.proof", "a list of sha256 hashes in hex"))
        .collect::<Result<Vec<_>, _>>()?;
    let leaf = batch::leaf_hash(&without(value, &["signature", "batch"])?);
    if batch::root_from_proof(leaf, b.index, b.size, &proof) != Some(root) {
        return Err(VerifyError::NotInBatch);
    }
    key.verify_strict(&batch::message(b.size, &root), &sig)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(receipt)
}

impl Receipt {
    /// Checks `code_hash` against the code's bytes.
    pub fn check_code(&self, code: &[u8]) -> Result<(), VerifyError> {
        compare("code_hash", &self.code_hash, sha256_hex(code))
    }

    /// Checks `input_hash` against the params.
    pub fn check_input(&self, params: &Value) -> Result<(), VerifyError> {
        compare("input_hash", &self.input_hash, hash_json(params))
    }

    /// Checks `output_hash` against an output.
    pub fn check_output(&self, output: &Value) -> Result<(), VerifyError> {
        compare(
            "output_hash",
            self.output_hash.as_deref().unwrap_or("null"),
            hash_json(output),
        )
    }
}

fn compare(field: &'static str, recorded: &str, actual: String) -> Result<(), VerifyError> {
    if recorded == actual {
        Ok(())
    } else {
        Err(VerifyError::HashMismatch {
            field,
            recorded: recorded.to_string(),
            actual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_found_at_any_depth_and_through_escapes() {
        assert_eq!(
            check_unique_keys(r#"{"a": 1, "b": {"c": [1, {"d": 2}]}}"#),
            Ok(())
        );
        assert_eq!(
            check_unique_keys(r#"{"output_hash": "x", "output_hash": "y"}"#),
            Err(VerifyError::DuplicateKey("output_hash".into()))
        );
        assert_eq!(
            check_unique_keys(r#"{"usage": {"fuel": 1, "fu\u0065l": 2}}"#),
            Err(VerifyError::DuplicateKey("fuel".into()))
        );
        assert_eq!(
            check_unique_keys(r#"[{"a": 1}, {"a": 2}, {"k": {"z": 1, "z": 1}}]"#),
            Err(VerifyError::DuplicateKey("z".into()))
        );
        assert!(matches!(check_unique_keys("{"), Err(VerifyError::Malformed(_))));
    }

    /// A receipt body with every field set, for tests here and in `signer`.
    pub(crate) fn body(job_id: &str) -> ReceiptBody {
        let now = SystemTime::now();
        ReceiptBody {
            job_id: job_id.into(),
            runtime: RuntimeKind::Wasm,
            function: "run".into(),
            code_hash: sha256_hex(b"module"),
            input_hash: hash_json(&json!({"a": 1})),
            result: Ok(hash_json(&json!({"b": 2.5}))),
            usage: Usage {
                wall_time_ms: 0.25,
                fuel_consumed: Some(1234),
                peak_memory_bytes: Some(65536),
            },
            limits: ResourceLimits::default(),
            deterministic: false,
            started_at: now,
            finished_at: now,
            context_hash: "11".repeat(32),
            runtime_version: "wasm test".into(),
            nonce: Some("22".repeat(16)),
        }
    }

    /// `t` fails verification with an error whose text contains `text`.
    fn refused_naming(t: &Value, text: &str) {
        let e = Receipt::verify(t).unwrap_err().to_string();
        assert!(e.contains(text), "{e}");
    }

    fn sample(key: &NodeKey) -> Receipt {
        Receipt::sign(body("job-1"), key).unwrap()
    }

    #[test]
    fn hex_is_the_hex_crates() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(to_hex(&bytes), hex::encode(&bytes));
        assert_eq!(to_hex(&[]), "");
    }

    #[test]
    fn the_bytes_signed_are_the_canonical_json_verify_checks() {
        let key = NodeKey::generate().unwrap();
        let mut failed = sample(&key);
        failed.output_hash = None;
        failed.status = Outcome::Failed;
        failed.error = Some(ReceiptError {
            code: "tool_failed".into(),
            message: "a \"quoted\"\n\u{1}message é \u{1f600}".into(),
        });
        failed.nonce = None;
        failed.usage.fuel_consumed = None;
        failed.usage.peak_memory_bytes = None;
        failed.usage.wall_time_ms = 1e21 + 0.5;
        failed.limits.fuel = Some(u64::MAX);
        failed.limits.network_bandwidth_mbps = Some(7);
        let mut v1 = sample(&key);
        (v1.context_hash, v1.runtime_version) = (None, None);
        for r in [sample(&key), failed, v1] {
            let generic = signed_bytes(&r.to_value()).unwrap();
            assert_eq!(r.signed_bytes().unwrap(), generic);
        }
        let mut spec = crate::JobSpec::new(RuntimeKind::Wasm, "m.wasm");
        spec.limits.fuel = Some(9);
        for (k, v) in [("Z", "1"), ("\u{fb01}", "x"), ("\u{1f600}", "y")] {
            spec.env.insert(k.into(), v.into());
        }
        for (guest, writable) in [("/out", true), ("/in", false)] {
            spec.mounts.push(crate::Mount {
                host: "/srv".into(),
                guest: guest.into(),
                writable,
            });
        }
        let ctx = ExecutionContext::of(&spec, "run", "job", "v1");
        assert_eq!(
            ctx.hash(),
            hash_json(&serde_json::to_value(&ctx).unwrap()),
            "the context's direct canonical form"
        );
        assert_eq!(ctx.canonical().unwrap(), canonical::to_vec_of(&ctx).unwrap());
    }

    #[test]
    fn a_signed_receipt_verifies_and_its_hashes_check() {
        let key = NodeKey::generate().unwrap();
        let r = sample(&key);
        let back = Receipt::verify(&r.to_value()).unwrap();
        assert_eq!(back, r);
        r.check_code(b"module").unwrap();
        r.check_input(&json!({"a": 1})).unwrap();
        r.check_output(&json!({"b": 2.5})).unwrap();
        assert!(r.check_output(&json!({"b": 2.6})).is_err());
    }

    #[test]
    fn altering_any_field_breaks_the_signature() {
        let key = NodeKey::generate().unwrap();
        let v = sample(&key).to_value();
        for field in v.as_object().unwrap().keys() {
            if field == "signature" {
                continue;
            }
            let t = altered(&v, &format!("/{field}"));
            assert!(Receipt::verify(&t).is_err(), "altering {field} went unnoticed");
        }
        // Adding a field is an alteration too.
        let mut t = v.clone();
        t.as_object_mut().unwrap().insert("bonus".into(), json!(1));
        assert!(Receipt::verify(&t).is_err());
    }

    /// `n` receipts signed as one batch, as JSON.
    fn batch_of(key: &NodeKey, n: usize) -> Vec<Value> {
        let receipts = (0..n)
            .map(|i| {
                let mut r = sample(key);
                r.job_id = format!("job-{i}");
                r
            })
            .collect();
        Receipt::sign_all(receipts, key)
            .into_iter()
            .map(|r| r.unwrap().to_value())
            .collect()
    }

    /// `value` with what is at `path` changed.
    fn altered(value: &Value, path: &str) -> Value {
        let mut t = value.clone();
        let slot = t.pointer_mut(path).unwrap();
        *slot = match slot.clone() {
            // Another hex digit at the end: still a well-formed hash or key (the old
            // "make it end in 0" left a random key that already did unchanged).
            Value::String(s) if s.len() == 64 => {
                let last = if s.ends_with('0') { '1' } else { '0' };
                Value::String(format!("{}{last}", &s[..63]))
            }
            Value::String(s) => Value::String(format!("{s}x")),
            Value::Number(n) => json!(n.as_u64().unwrap_or(0) + 1),
            Value::Bool(b) => json!(!b),
            Value::Null => json!("x"),
            Value::Object(mut m) => {
                m.insert("extra".into(), json!(1));
                Value::Object(m)
            }
            Value::Array(mut a) => {
                a.pop();
                Value::Array(a)
            }
        };
        t
    }

    #[test]
    fn a_lone_receipt_is_signed_alone_and_a_batch_verifies_receipt_by_receipt() {
        let key = NodeKey::generate().unwrap();
        let mut alone = sample(&key);
        let one = Receipt::sign_all(vec![alone.clone()], &key).remove(0).unwrap();
        assert_eq!(one.batch, None);
        alone.sign_with(&key).unwrap();
        assert_eq!(one, alone, "signed as sign_with signs");
        for n in [2, 3, 7, 64] {
            let batch = batch_of(&key, n);
            for (i, v) in batch.iter().enumerate() {
                let r = Receipt::verify(v).unwrap_or_else(|e| panic!("{i} of {n}: {e}"));
                let b = r.batch.unwrap();
                assert_eq!((b.index, b.size), (i as u64, n as u64));
                assert_eq!(v["signature"], batch[0]["signature"]);
                assert_eq!(r.node_id, key.id());
            }
        }
    }

    #[test]
    fn altering_a_batch_receipt_or_its_proof_breaks_it() {
        let key = NodeKey::generate().unwrap();
        let batch = batch_of(&key, 5);
        let v = &batch[2];
        let mut paths: Vec<String> = v
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "signature" && *k != "batch")
            .map(|k| format!("/{k}"))
            .collect();
        paths.extend(
            [
                "/batch/root",
                "/batch/index",
                "/batch/size",
                "/batch/proof",
                "/batch/proof/0",
                "/batch/proof/2",
            ]
            .map(String::from),
        );
        paths.push("/batch".into());
        for path in paths {
            assert!(
                Receipt::verify(&altered(v, &path)).is_err(),
                "altering {path} went unnoticed"
            );
        }
        // Another receipt's proof, or its place, is not this one's.
        let mut t = v.clone();
        t["batch"] = batch[3]["batch"].clone();
        assert_eq!(Receipt::verify(&t).unwrap_err(), VerifyError::NotInBatch);
        // A bigger batch's size with this batch's root and proof: signed, so refused.
        let mut t = batch_of(&key, 3)[0].clone();
        t["batch"]["size"] = json!(4);
        assert_eq!(Receipt::verify(&t).unwrap_err(), VerifyError::BadSignature);
        // Another batch's signature.
        let mut t = v.clone();
        t["signature"] = batch_of(&key, 5)[2]["signature"].clone();
        assert_eq!(Receipt::verify(&t).unwrap_err(), VerifyError::BadSignature);
        // A batch receipt without its batch is a lone receipt with the wrong signature.
        let mut t = v.clone();
        t.as_object_mut().unwrap().remove("batch");
        assert_eq!(Receipt::verify(&t).unwrap_err(), VerifyError::BadSignature);
        // A lone receipt with `"batch": null` is not the document that was signed.
        let mut t = sample(&key).to_value();
        t["batch"] = Value::Null;
        assert_eq!(Receipt::verify(&t).unwrap_err(), VerifyError::BadSignature);
        // Proofs longer than any tree's are refused before hashing.
        let mut t = v.clone();
        t["batch"]["proof"] = json!(vec!["00".repeat(32); batch::MAX_PROOF + 1]);
        refused_naming(&t, "at most 64");
        let mut t = v.clone();
        t["batch"]["proof"][0] = json!("zz");
        refused_naming(&t, "batch.proof");
        // Version 1 receipts were never batched.
        let mut t = v.clone();
        t["version"] = json!(1);
        for f in ["context_hash", "runtime_version", "nonce"] {
            t.as_object_mut().unwrap().remove(f);
        }
        refused_naming(&t, "no field 'batch'");
    }

    #[test]
    fn another_nodes_key_does_not_verify() {
        let a = NodeKey::generate().unwrap();
        let b = NodeKey::generate().unwrap();
        let mut v = sample(&a).to_value();
        v["node_id"] = json!(b.id());
        assert_eq!(Receipt::verify(&v).unwrap_err(), VerifyError::BadSignature);
    }

    #[test]
    fn versions_carry_exactly_their_fields() {
        let key = NodeKey::generate().unwrap();
        let r = sample(&key);
        assert_eq!(r.version, 2);
        // A version 1 receipt: the same without the three fields, re-signed.
        let mut v1 = r.clone();
        v1.version = 1;
        (v1.context_hash, v1.runtime_version, v1.nonce) = (None, None, None);
        v1.sign_with(&key).unwrap();
        let text = v1.to_value();
        assert!(text.get("context_hash").is_none() && text.get("nonce").is_none());
        assert_eq!(Receipt::verify(&text).unwrap(), v1);
        // Signed, but not what its version says.
        let refused = |mut t: Receipt, says: &str| {
            t.sign_with(&key).unwrap();
            let e = Receipt::verify(&t.to_value()).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        };
        let mut t = v1.clone();
        t.nonce = Some("00".repeat(16));
        refused(t, "version 1 receipt has no field 'nonce'");
        let mut t = r.clone();
        t.context_hash = None;
        refused(t, "context_hash");
        let mut t = r.clone();
        t.runtime_version = None;
        refused(t, "runtime_version");
        let mut t = r.clone();
        t.nonce = Some("abc".into());
        refused(t, "nonce");
        let mut t = r.clone();
        t.version = 3;
        refused(t, "receipt version 3 is not one this node reads");
    }

    #[test]
    fn the_context_hash_changes_with_everything_that_shapes_the_output() {
        let mut spec = crate::JobSpec::new(RuntimeKind::Wasm, "sha256:ab");
        spec.mounts.push("/a:/in".parse().unwrap());
        spec.mounts.push("/b:/out:rw".parse().unwrap());
        let base = ExecutionContext::of(&spec, "run", "job-1", "v1").hash();
        // The host side of a mount and the order of mounts do not shape the output.
        let mut same = spec.clone();
        same.mounts.reverse();
        same.mounts[0].host = "/elsewhere".into();
        assert_eq!(ExecutionContext::of(&same, "run", "job-1", "v1").hash(), base);
        let mut other = Vec::new();
        other.push(ExecutionContext::of(&spec, "main", "job-1", "v1").hash());
        other.push(ExecutionContext::of(&spec, "run", "job-2", "v1").hash());
        other.push(ExecutionContext::of(&spec, "run", "job-1", "v2").hash());
        let variants: [fn(&mut crate::JobSpec); 6] = [
            |s| {
                s.env.insert("K".into(), "v".into());
            },
            |s| s.network = crate::Network::Full,
            |s| s.mounts[1].writable = false,
            |s| s.limits.memory_mb += 1,
            |s| s.limits.fuel = Some(1),
            |s| s.deterministic = true,
        ];
        for change in variants {
            let mut s = spec.clone();
            change(&mut s);
            other.push(ExecutionContext::of(&s, "run", "job-1", "v1").hash());
        }
        for (i, h) in other.iter().enumerate() {
            assert_ne!(h, &base, "variant {i} left the context hash unchanged");
        }
    }

    #[test]
    fn the_cached_context_hash_is_the_hash_of_the_whole_context() {
        let mut spec = crate::JobSpec::new(RuntimeKind::Wasm, "sha256:ab");
        spec.mounts.push("/a:/in".parse().unwrap());
        spec.env.insert("K".into(), "v".into());
        // Every field but the id changed alone, and two at once: each one a cache
        // miss after the one before, a hit when repeated.
        let variants: [fn(&mut crate::JobSpec); 8] = [
            |_| {},
            |s| s.runtime = RuntimeKind::Python,
            |s| {
                s.env.insert("K".into(), "w".into());
            },
            |s| s.network = crate::Network::Full,
            |s| s.mounts[0].guest = "/in2".into(),
            |s| s.mounts[0].writable = true,
            |s| s.limits.timeout_ms += 1,
            |s| {
                s.deterministic = true;
                s.env.clear();
            },
        ];
        let specs: Vec<_> = variants
            .iter()
            .map(|change| {
                let mut s = spec.clone();
                change(&mut s);
                s
            })
            .collect();
        let mut no_mounts = spec.clone();
        no_mounts.mounts.clear();
        let mut two = spec.clone();
        two.mounts.push("/a:/in:rw".parse().unwrap());
        // Past the size a thread keeps: hashed, never cached.
        let mut large = spec.clone();
        large.env.insert("BIG".into(), "x".repeat(MAX_CACHED_CONTEXT));
        let specs: Vec<_> = specs.into_iter().chain([no_mounts, two, large]).collect();
        let mut contexts = Vec::new();
        for s in &specs {
            for (function, version) in [("run", "v1"), ("main", "v1"), ("run", "v2")] {
                for id in ["job-1", "job-2", "a \"quoted\" id \u{1f600}", "\u{0}\n\\"] {
                    contexts.push(ExecutionContext::of(s, function, id, version));
                }
            }
        }
        // The generic form, as a verifier writes it from the JSON.
        let whole = |c: &ExecutionContext| hash_json(&serde_json::to_value(c).unwrap());
        for c in contexts.iter().chain(contexts.iter().rev()) {
            assert_eq!(c.hash(), whole(c), "{c:?}");
            assert_eq!(c.hash(), whole(c), "{c:?}, hashed again");
        }
        let all: std::collections::HashSet<_> = contexts.iter().map(|c| c.hash()).collect();
        assert_eq!(all.len(), contexts.len(), "every context hashes apart");
        // Another thread has its own cache.
        let c = &contexts[5];
        let there = std::thread::scope(|t| t.spawn(|| c.hash()).join().unwrap());
        assert_eq!(there, whole(c));
    }

    #[test]
    fn a_receipt_whose_status_output_and_error_disagree_is_malformed() {
        let key = NodeKey::generate().unwrap();
        let ok = sample(&key);
        for change in [
            |r: &mut Receipt| r.status = Outcome::Failed,
            |r: &mut Receipt| {
                r.error = Some(ReceiptError {
                    code: "tool_failed".into(),
                    message: "x".into(),
                })
            },
            |r: &mut Receipt| r.output_hash = None,
        ] {
            let mut r = ok.clone();
            change(&mut r);
            r.sign_with(&key).unwrap();
            let e = Receipt::verify(&r.to_value()).unwrap_err().to_string();
            assert!(e.contains("disagree"), "{e}");
        }
    }
}
