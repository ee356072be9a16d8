//! The job spec: what to run, with what, under which limits (CONTRACTS §6).

use crate::{ComputeError, ResourceLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Which runtime a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// WebAssembly modules on wasmtime.
    Wasm,
    /// Containers on a Docker engine.
    Docker,
    /// TypeScript/JavaScript on Deno.
    Deno,
    /// Python through uv.
    Python,
    /// Go packages, built to wasip1 or natively.
    Go,
    /// Native executables and built-in tools.
    Native,
    /// Kubernetes jobs.
    K8s,
    /// Tools of MCP servers (Model Context Protocol): a stdio server in the process
    /// sandbox, or a streamable-HTTP server the node calls.
    Mcp,
    /// Agents: a model behind an OpenAI-compatible endpoint, looping over the node's
    /// named tools, each call a job of its own (CONTRACTS §10).
    Agent,
}

impl RuntimeKind {
    /// Every runtime kind, in display order.
    pub const ALL: [RuntimeKind; 9] = [
        RuntimeKind::Wasm,
        RuntimeKind::Docker,
        RuntimeKind::Deno,
        RuntimeKind::Python,
        RuntimeKind::Go,
        RuntimeKind::Native,
        RuntimeKind::K8s,
        RuntimeKind::Mcp,
        RuntimeKind::Agent,
    ];

    /// Whether the runtime has a deterministic profile (`deterministic: true`): WASM,
    /// and Go built to WASM. The others run on a host whose clock, randomness and
    /// scheduling nobody controls.
    pub fn has_deterministic_profile(self) -> bool {
        matches!(self, RuntimeKind::Wasm | RuntimeKind::Go)
    }

    /// The name used on the command line and in job specs.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Wasm => "wasm",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Deno => "deno",
            RuntimeKind::Python => "python",
            RuntimeKind::Go => "go",
            RuntimeKind::Native => "native",
            RuntimeKind::K8s => "k8s",
            RuntimeKind::Mcp => "mcp",
            RuntimeKind::Agent => "agent",
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RuntimeKind {
    type Err = ComputeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuntimeKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = RuntimeKind::ALL.iter().map(|k| k.name()).collect();
                ComputeError::invalid(format!(
                    "unknown runtime '{s}' (expected one of: {})",
                    names.join(", ")
                ))
            })
    }
}

/// Whether a job may use the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// No network at all (the default).
    #[default]
    None,
    /// Whatever network the runtime can give.
    Full,
}

impl FromStr for Network {
    type Err = ComputeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Network::None),
            "full" => Ok(Network::Full),
            _ => Err(ComputeError::invalid(format!(
                "invalid network '{s}' (expected none or full)"
            ))),
        }
    }
}

/// A host directory made visible to the job.
///
/// Written `HOST:GUEST[:ro|rw]`; read-only unless `rw` is given, so that granting
/// write access is always a deliberate act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MountRepr", into = "String")]
pub struct Mount {
    /// The directory on the host.
    pub host: PathBuf,
    /// Where the job sees it (an absolute path).
    pub guest: String,
    /// Whether the job may write to it.
    pub writable: bool,
}

impl FromStr for Mount {
    type Err = ComputeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ComputeError::invalid(format!("invalid mount '{s}' (expected HOST:GUEST[:ro|rw])"));
        let parts: Vec<&str> = s.split(':').collect();
        let (host, guest, writable) = match parts.as_slice() {
            [h, g] => (*h, *g, false),
            [h, g, "ro"] => (*h, *g, false),
            [h, g, "rw"] => (*h, *g, true),
            _ => return Err(bad()),
        };
        if host.is_empty() || !guest.starts_with('/') {
            return Err(bad());
        }
        Ok(Mount {
            host: PathBuf::from(host),
            guest: guest.to_string(),
            writable,
        })
    }
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.writable { "rw" } else { "ro" };
        write!(f, "{}:{}:{mode}", self.host.display(), self.guest)
    }
}

impl From<Mount> for String {
    fn from(m: Mount) -> String {
        m.to_string()
    }
}

/// A mount is written as the string `HOST:GUEST[:ro|rw]` (serde's `into = "String"`);
/// the derive cannot see through `try_from`/`into`, so the schema is given by hand. The
/// object form `{host, guest, writable}` is still accepted on input, but documenting
/// only the string keeps one shape for generated clients.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Mount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A host directory made visible to the job, HOST:GUEST[:ro|rw] \
                 (read-only unless rw; GUEST is absolute)",
            ))
            .pattern(Some("^[^:]+:/[^:]*(:(ro|rw))?$"))
            .examples([serde_json::json!("/srv/data:/data:ro")])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Mount {}

/// A mount in JSON: either the CLI's string form or an object.
#[derive(Deserialize)]
#[serde(untagged)]
enum MountRepr {
    Text(String),
    Object {
        host: PathBuf,
        guest: String,
        #[serde(default)]
        writable: bool,
    },
}

impl TryFrom<MountRepr> for Mount {
    type Error = ComputeError;
    fn try_from(r: MountRepr) -> Result<Self, Self::Error> {
        match r {
            MountRepr::Text(s) => s.parse(),
            MountRepr::Object {
                host,
                guest,
                writable,
            } => {
                if !guest.starts_with('/') {
                    return Err(ComputeError::invalid(format!(
                        "mount guest path '{guest}' must be absolute"
                    )));
                }
                // As in the string form: a ':' would let the host path smuggle a target
                // or options into the `HOST:GUEST:MODE` bind the Docker daemon parses.
                if host.as_os_str().as_encoded_bytes().contains(&b':') || guest.contains(':') {
                    return Err(ComputeError::invalid(format!(
                        "mount paths must not contain ':' ({}, {guest})",
                        host.display()
                    )));
                }
                Ok(Mount {
                    host,
                    guest,
                    writable,
                })
            }
        }
    }
}

/// Parses `KEY=VALUE` (the CLI's `--env`).
pub fn parse_env_pair(s: &str) -> Result<(String, String), ComputeError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(ComputeError::invalid(format!(
            "invalid env '{s}' (expected KEY=VALUE)"
        ))),
    }
}

/// Environment variables only the node sets (CONTRACTS §1a).
pub const RESERVED_ENV: [&str; 2] = ["HANZO_FUNCTION", "HANZO_JOB_ID"];

/// The default function name (CONTRACTS §1a: `HANZO_FUNCTION` defaults to `run`).
pub const DEFAULT_FUNCTION: &str = "run";

/// One job: the unit every runtime executes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Which runtime runs it.
    pub runtime: RuntimeKind,
    /// A path, an image reference or `sha256:<hex>` of a stored module.
    pub source: String,
    /// The function to call; `None` lets the runtime choose (`run`, or the only one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The tool's input.
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
    /// Limits; missing fields take the defaults.
    #[serde(default)]
    pub limits: ResourceLimits,
    /// Environment variables granted to the tool, and nothing else.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Host directories granted to the tool.
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Network access.
    #[serde(default)]
    pub network: Network,
    /// Scheduling priority (higher first).
    #[serde(default)]
    pub priority: i32,
    /// How many times the node may retry the job after a crash of the node.
    #[serde(default)]
    pub retries: u32,
    /// Run under the deterministic profile (WASM): same module and params give the
    /// same output and fuel on any machine.
    #[serde(default)]
    pub deterministic: bool,
    /// The user to run as (containers); `None` means an unprivileged one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Go: build the package for the host and run it in the process sandbox instead
    /// of building it to `wasip1` for the WASM runtime.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub native: bool,
    /// Where the job may run (CONTRACTS §7): this node only (the default), the best
    /// node, the best peer, or one named peer.
    #[serde(default, skip_serializing_if = "Placement::is_local")]
    #[cfg_attr(feature = "openapi", schema(value_type = Value, example = "any"))]
    pub placement: Placement,
    /// How the result is checked (CONTRACTS §8): not at all (the default), or by
    /// running the job on several nodes and comparing their results.
    #[serde(default, skip_serializing_if = "Verification::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Value, example = json!({"strategy": "redundant", "min_peers": 3}))
    )]
    pub verification: Verification,
}

/// The most nodes one verified job may run on. Each attempt costs a whole execution
/// somewhere, and a submitter asking for hundreds would be a cheap amplifier.
pub const MAX_VERIFICATION_PEERS: u32 = 16;

/// How a job's result is checked (CONTRACTS §8). JSON: `{"strategy": "none"}` or
/// `{"strategy": "redundant", "min_peers": N, "max_peers": M}` (`max_peers` optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Verification {
    /// One node runs it and its result is taken as it comes.
    #[default]
    None,
    /// `min_peers` distinct nodes run it and their results are compared; up to
    /// `max_peers` may run it to break a tie.
    Redundant {
        /// How many nodes must run it (2 to 16).
        min_peers: u32,
        /// The bound on nodes run to break a tie; `None` means `min_peers + 2`, capped.
        max_peers: Option<u32>,
    },
}

impl Verification {
    /// Whether the result is taken unchecked.
    pub fn is_none(&self) -> bool {
        matches!(self, Verification::None)
    }

    /// The name of the strategy: `none` or `redundant`.
    pub fn strategy(&self) -> &'static str {
        match self {
            Verification::None => "none",
            Verification::Redundant { .. } => "redundant",
        }
    }

    /// How many nodes must run the job (1 without verification).
    pub fn min_peers(&self) -> u32 {
        match *self {
            Verification::None => 1,
            Verification::Redundant { min_peers, .. } => min_peers,
        }
    }

    /// The most nodes that may run it: `max_peers`, or `min_peers + 2` capped at
    /// [`MAX_VERIFICATION_PEERS`].
    pub fn max_peers(&self) -> u32 {
        match *self {
            Verification::None => 1,
            Verification::Redundant { min_peers, max_peers } => {
                max_peers.unwrap_or((min_peers + 2).min(MAX_VERIFICATION_PEERS))
            }
        }
    }
}

impl Serialize for Verification {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match *self {
            Verification::None => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("strategy", "none")?;
                m.end()
            }
            Verification::Redundant { min_peers, max_peers } => {
                let mut m = s.serialize_map(Some(2 + max_peers.is_some() as usize))?;
                m.serialize_entry("strategy", "redundant")?;
                m.serialize_entry("min_peers", &min_peers)?;
                if let Some(max) = max_peers {
                    m.serialize_entry("max_peers", &max)?;
                }
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Verification {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            strategy: String,
            #[serde(default)]
            min_peers: Option<u32>,
            #[serde(default)]
            max_peers: Option<u32>,
        }
        let raw = Raw::deserialize(d).map_err(|e| {
            D::Error::custom(format!(
                r#"invalid verification ({e}; expected {{"strategy": "none"}} or {{"strategy": "redundant", "min_peers": N}})"#
            ))
        })?;
        let extra = |name: &str| {
            D::Error::custom(format!(
                "verification: min_peers and max_peers apply only to the redundant strategy, not to {name}"
            ))
        };
        match raw.strategy.as_str() {
            "none" if raw.min_peers.is_some() || raw.max_peers.is_some() => Err(extra("none")),
            "none" => Ok(Verification::None),
            "redundant" => {
                let max = MAX_VERIFICATION_PEERS;
                let min_peers = raw.min_peers.ok_or_else(|| {
                    D::Error::custom("verification: the redundant strategy needs min_peers (2 to 16)")
                })?;
                if !(2..=max).contains(&min_peers) {
                    return Err(D::Error::custom(format!(
                        "verification: min_peers must be 2 to {max}, not {min_peers}"
                    )));
                }
                if let Some(m) = raw.max_peers
                    && !(min_peers..=max).contains(&m)
                {
                    return Err(D::Error::custom(format!(
                        "verification: max_peers must be min_peers ({min_peers}) to {max}, not {m}"
                    )));
                }
                Ok(Verification::Redundant {
                    min_peers,
                    max_peers: raw.max_peers,
                })
            }
            // Refused by name, so that nobody mistakes silence for an attestation.
            "tee" => Err(D::Error::custom(
                "verification strategy 'tee' is refused: no node of this network can provide a TEE \
                 attestation (SEV-SNP, TDX) yet; use redundant (see docs/verification.md)",
            )),
            "zk" => Err(D::Error::custom(
                "verification strategy 'zk' is refused: no node of this network can produce a zkVM \
                 proof of an execution yet; use redundant (see docs/verification.md)",
            )),
            other => Err(D::Error::custom(format!(
                "unknown verification strategy '{other}' (expected none or redundant)"
            ))),
        }
    }
}

/// Where a job may run (CONTRACTS §7). Its JSON is `"local" | "any" | "remote"` or
/// `{"peer": "<peer id>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Placement {
    /// Never leaves this node.
    #[default]
    Local,
    /// The best node, this one included.
    Any,
    /// The best peer, never this node.
    Remote,
    /// That peer and no other (a libp2p peer id, base58).
    Peer(String),
}

impl Placement {
    /// Whether the job stays on this node.
    pub fn is_local(&self) -> bool {
        matches!(self, Placement::Local)
    }

    /// The name used in logs and errors: `local`, `any`, `remote` or `peer <id>`.
    pub fn describe(&self) -> String {
        match self {
            Placement::Local => "local".into(),
            Placement::Any => "any".into(),
            Placement::Remote => "remote".into(),
            Placement::Peer(p) => format!("peer {p}"),
        }
    }
}

/// The base58btc alphabet peer ids are written in.
const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Whether `s` has the shape of a libp2p peer id (base58btc, 40 to 60 characters: an
/// ed25519 key's identity multihash is 52, a sha256 multihash 46). The network crate
/// parses it fully; this lets the core refuse a typo without depending on libp2p.
pub fn looks_like_peer_id(s: &str) -> bool {
    (40..=60).contains(&s.len()) && s.chars().all(|c| BASE58.contains(c))
}

impl Serialize for Placement {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Placement::Local => s.serialize_str("local"),
            Placement::Any => s.serialize_str("any"),
            Placement::Remote => s.serialize_str("remote"),
            Placement::Peer(p) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("peer", p)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Placement {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Named {
            peer: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Word(String),
            Named(Named),
        }
        let form = Form::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                r#"invalid placement (expected "local", "any", "remote" or {"peer": "<peer id>"})"#,
            )
        })?;
        match form {
            Form::Word(w) => match w.as_str() {
                "local" => Ok(Placement::Local),
                "any" => Ok(Placement::Any),
                "remote" => Ok(Placement::Remote),
                other => Err(serde::de::Error::custom(format!(
                    r#"unknown placement '{other}' (expected "local", "any", "remote" or {{"peer": "<peer id>"}})"#
                ))),
            },
            Form::Named(Named { peer }) if looks_like_peer_id(&peer) => Ok(Placement::Peer(peer)),
            Form::Named(Named { peer }) => Err(serde::de::Error::custom(format!(
                "invalid peer id '{peer}' in placement (expected a base58 libp2p peer id)"
            ))),
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl JobSpec {
    /// A job with default limits, no grants and `{}` as params.
    pub fn new(runtime: RuntimeKind, source: impl Into<String>) -> Self {
        JobSpec {
            runtime,
            source: source.into(),
            function: None,
            params: empty_object(),
            limits: ResourceLimits::default(),
            env: BTreeMap::new(),
            mounts: Vec::new(),
            network: Network::None,
            priority: 0,
            retries: 0,
            deterministic: false,
            user: None,
            native: false,
            placement: Placement::Local,
            verification: Verification::None,
        }
    }

    /// Sets the function.
    pub fn function(mut self, name: impl Into<String>) -> Self {
        self.function = Some(name.into());
        self
    }

    /// Sets the params.
    pub fn params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: ResourceLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks what every runtime relies on: sane limits, and an environment that cannot
    /// impersonate the node (`HANZO_FUNCTION` and `HANZO_JOB_ID` are the node's to set).
    pub fn validate(&self) -> Result<(), ComputeError> {
        self.limits.validate()?;
        // Refused here, statically, rather than by each runtime when it runs: a node
        // that ignored the flag would give a verified job a result that merely claims
        // to be reproducible.
        if self.deterministic && !self.runtime.has_deterministic_profile() {
            return Err(ComputeError::invalid(format!(
                "deterministic: the {} runtime has no deterministic profile (only wasm and go have one)",
                self.runtime
            )));
        }
        if self.deterministic && self.native {
            return Err(ComputeError::invalid(
                "deterministic: a native Go build has no deterministic profile (leave out native to build it to WASM)",
            ));
        }
        // An agent calls an endpoint from the node's own network, with a key, and its
        // tools are this node's: peers never start one, so it never leaves the node
        // (and its env, which may hold the key, is never offered to one).
        if self.runtime == RuntimeKind::Agent && !self.verification.is_none() {
            return Err(ComputeError::invalid(
                "verification: an agent runs on the node it is submitted to, once (peers never start agents)",
            ));
        }
        if self.runtime == RuntimeKind::Agent && !self.placement.is_local() {
            return Err(ComputeError::invalid(
                "placement: an agent runs on the node it is submitted to (peers never start agents)",
            ));
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(ComputeError::invalid(format!("invalid env name '{k}'")));
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                return Err(ComputeError::invalid(format!(
                    "env {k} is set by the node and cannot be overridden"
                )));
            }
        }
        Ok(())
    }

    /// The function the runtime will be asked for, `run` when none was named.
    pub fn function_or_default(&self) -> &str {
        self.function.as_deref().unwrap_or(DEFAULT_FUNCTION)
    }
}

/// A `sha256:<hex>` source, if `source` is one.
///
/// Returns `Err` when it starts with `sha256:` but the digest is malformed, so that a
/// typo is reported as such rather than as a missing file.
pub fn parse_digest_source(source: &str) -> Result<Option<String>, ComputeError> {
    let Some(hex) = source.strip_prefix("sha256:") else {
        return Ok(None);
    };
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(hex.to_ascii_lowercase()))
    } else {
        Err(ComputeError::invalid(format!(
            "invalid digest '{source}' (expected sha256: followed by 64 hex digits)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_default_to_read_only() {
        let m: Mount = "/data:/in".parse().unwrap();
        assert!(!m.writable);
        let m: Mount = "/data:/out:rw".parse().unwrap();
        assert!(m.writable);
        assert!("/data:relative".parse::<Mount>().is_err());
        assert!("/data:/x:rx".parse::<Mount>().is_err());
        assert!("nocolon".parse::<Mount>().is_err());
    }

    #[test]
    fn job_spec_needs_only_runtime_and_source() {
        let j: JobSpec = serde_json::from_str(r#"{"runtime":"wasm","source":"x.wasm"}"#).unwrap();
        assert_eq!(j.runtime, RuntimeKind::Wasm);
        assert_eq!(j.params, serde_json::json!({}));
        assert_eq!(j.limits, ResourceLimits::default());
        assert_eq!(j.function_or_default(), "run");
    }

    #[test]
    fn job_spec_accepts_both_mount_forms() {
        let j: JobSpec = serde_json::from_str(
            r#"{"runtime":"wasm","source":"x","mounts":["/a:/a",{"host":"/b","guest":"/b","writable":true}]}"#,
        )
        .unwrap();
        assert_eq!(j.mounts.len(), 2);
        assert!(!j.mounts[0].writable && j.mounts[1].writable);
        let e = serde_json::from_str::<JobSpec>(
            r#"{"runtime":"docker","source":"x","mounts":[{"host":"/srv:/etc","guest":"/b"}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("':'"), "{e}");
    }

    #[test]
    fn the_node_variables_cannot_be_overridden() {
        let mut j = JobSpec::new(RuntimeKind::Wasm, "x");
        j.env.insert("HANZO_JOB_ID".into(), "someone-else".into());
        assert!(j.validate().unwrap_err().to_string().contains("HANZO_JOB_ID"));
        j.env.clear();
        j.env.insert("A=B".into(), "x".into());
        assert!(j.validate().is_err());
    }

    #[test]
    fn agents_never_leave_the_node() {
        let mut j = JobSpec::new(RuntimeKind::Agent, "x");
        j.validate().unwrap();
        j.placement = Placement::Remote;
        assert!(j.validate().unwrap_err().to_string().contains("placement"));
        j.placement = Placement::Local;
        j.verification = Verification::Redundant {
            min_peers: 2,
            max_peers: None,
        };
        assert!(j.validate().unwrap_err().to_string().contains("verification"));
    }

    #[test]
    fn unknown_runtime_names_the_choices() {
        let e = "lua".parse::<RuntimeKind>().unwrap_err().to_string();
        assert!(e.contains("lua") && e.contains("wasm"), "{e}");
    }

    #[test]
    fn placements_parse_in_all_four_forms_and_malformed_peer_ids_are_refused() {
        let id = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";
        for (json, want) in [
            (r#""local""#.to_string(), Placement::Local),
            (r#""any""#.to_string(), Placement::Any),
            (r#""remote""#.to_string(), Placement::Remote),
            (format!(r#"{{"peer":"{id}"}}"#), Placement::Peer(id.into())),
        ] {
            let p: Placement = serde_json::from_str(&json).unwrap();
            assert_eq!(p, want);
            assert_eq!(serde_json::to_string(&p).unwrap(), json);
        }
        for bad in [
            r#""everywhere""#,
            r#"{"peer":"0OIl"}"#,
            r#"{"peer":"x","y":1}"#,
            "3",
        ] {
            let e = serde_json::from_str::<Placement>(bad).unwrap_err().to_string();
            assert!(e.contains("placement"), "{bad}: {e}");
        }
        // A local job's spec is stored and hashed exactly as before the field existed.
        let j = JobSpec::new(RuntimeKind::Wasm, "x");
        assert!(!serde_json::to_string(&j).unwrap().contains("placement"));
    }

    #[test]
    fn verification_parses_redundant_and_refuses_what_no_node_can_give() {
        let ok = [
            (r#"{"strategy":"none"}"#, Verification::None),
            (
                r#"{"strategy":"redundant","min_peers":3}"#,
                Verification::Redundant {
                    min_peers: 3,
                    max_peers: None,
                },
            ),
            (
                r#"{"strategy":"redundant","min_peers":2,"max_peers":16}"#,
                Verification::Redundant {
                    min_peers: 2,
                    max_peers: Some(16),
                },
            ),
        ];
        for (json, want) in ok {
            let v: Verification = serde_json::from_str(json).unwrap();
            assert_eq!(v, want);
            assert_eq!(serde_json::to_string(&v).unwrap(), json);
        }
        let v = Verification::Redundant {
            min_peers: 3,
            max_peers: None,
        };
        assert_eq!((v.min_peers(), v.max_peers()), (3, 5));
        let v = Verification::Redundant {
            min_peers: 15,
            max_peers: None,
        };
        assert_eq!(v.max_peers(), MAX_VERIFICATION_PEERS);
        for (bad, says) in [
            (r#"{"strategy":"tee"}"#, "TEE"),
            (r#"{"strategy":"zk"}"#, "zkVM"),
            (r#"{"strategy":"vote"}"#, "unknown verification strategy 'vote'"),
            (r#"{"strategy":"redundant"}"#, "needs min_peers"),
            (
                r#"{"strategy":"redundant","min_peers":1}"#,
                "min_peers must be 2 to 16, not 1",
            ),
            (r#"{"strategy":"redundant","min_peers":17}"#, "not 17"),
            (
                r#"{"strategy":"redundant","min_peers":3,"max_peers":2}"#,
                "max_peers must be",
            ),
            (r#"{"strategy":"none","min_peers":3}"#, "only to the redundant"),
            (r#"{"strategy":"redundant","min_peers":3,"quorum":2}"#, "quorum"),
            (r#""redundant""#, "invalid verification"),
        ] {
            let e = serde_json::from_str::<Verification>(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        // A job without verification is stored and hashed exactly as before the field.
        let j = JobSpec::new(RuntimeKind::Wasm, "x");
        assert!(!serde_json::to_string(&j).unwrap().contains("verification"));
        let j: JobSpec = serde_json::from_str(
            r#"{"runtime":"wasm","source":"x","verification":{"strategy":"redundant","min_peers":3}}"#,
        )
        .unwrap();
        assert_eq!(j.verification.min_peers(), 3);
    }

    #[test]
    fn deterministic_is_refused_where_no_profile_exists() {
        for kind in RuntimeKind::ALL {
            let mut j = JobSpec::new(kind, "x");
            j.deterministic = true;
            match j.validate() {
                Ok(()) => assert!(kind.has_deterministic_profile(), "{kind}"),
                Err(e) => {
                    assert!(!kind.has_deterministic_profile(), "{kind}: {e}");
                    assert!(e.to_string().contains("no deterministic profile"), "{e}");
                }
            }
        }
        let mut j = JobSpec::new(RuntimeKind::Go, "x");
        j.deterministic = true;
        j.native = true;
        assert!(j.validate().unwrap_err().to_string().contains("native"));
    }

    #[test]
    fn digest_sources() {
        let h = "a".repeat(64);
        assert_eq!(parse_digest_source(&format!("sha256:{h}")).unwrap(), Some(h));
        assert_eq!(parse_digest_source("x.wasm").unwrap(), None);
        assert!(parse_digest_source("sha256:abc").is_err());
    }
}
