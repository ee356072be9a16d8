//! Resource limits (CONTRACTS §2) and the per-runtime declaration of which ones are
//! really enforced.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Default cap on what a tool may write as its output: 16 MiB (CONTRACTS §2).
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;

/// The limits applied to one job.
///
/// The defaults are chosen for untrusted code on a shared machine: a modest memory
/// ceiling, a 30 s wall clock, no network, 16 MiB of output. A job raises them
/// explicitly; a runtime may refuse values above its configured maxima.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ResourceLimits {
    /// Relative CPU weight (Docker/cgroup semantics, 1024 = one normal share).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub cpu_shares: u32,
    /// Memory ceiling in MiB (for WASM: linear memories plus tables).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub memory_mb: u64,
    /// Scratch disk in MiB.
    pub disk_mb: u64,
    /// Network bandwidth in Mbit/s; `None` asks for no particular cap.
    pub network_bandwidth_mbps: Option<u32>,
    /// Wall-clock limit in milliseconds.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub timeout_ms: u64,
    /// WASM fuel (instructions, roughly); `None` means unmetered beyond the timeout.
    pub fuel: Option<u64>,
    /// Cap on the bytes of output (stdout, or the exports-ABI envelope).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub max_output_bytes: u64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        ResourceLimits {
            cpu_shares: 1024,
            memory_mb: 256,
            disk_mb: 512,
            network_bandwidth_mbps: None,
            timeout_ms: 30_000,
            fuel: None,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

impl ResourceLimits {
    /// Its fields in canonical order, as serde writes them (the receipt's signed
    /// bytes and context hash; `the_bytes_signed_are_the_canonical_json_verify_checks`
    /// holds them to the generic form).
    pub(crate) fn canonical_fields(
        &self,
        o: &mut crate::canonical::SortedObject,
    ) -> Result<(), crate::canonical::CanonicalError> {
        // Every field by name, so a new one cannot be left out unnoticed.
        let ResourceLimits {
            cpu_shares,
            memory_mb,
            disk_mb,
            network_bandwidth_mbps,
            timeout_ms,
            fuel,
            max_output_bytes,
        } = self;
        o.field("cpu_shares", cpu_shares)?;
        o.field("disk_mb", disk_mb)?;
        o.field("fuel", fuel)?;
        o.field("max_output_bytes", max_output_bytes)?;
        o.field("memory_mb", memory_mb)?;
        o.field("network_bandwidth_mbps", network_bandwidth_mbps)?;
        o.field("timeout_ms", timeout_ms)
    }

    /// Rejects values that cannot mean anything (zero memory, zero timeout).
    pub fn validate(&self) -> Result<(), crate::ComputeError> {
        let bad = |what: &str| {
            Err(crate::ComputeError::invalid(format!(
                "{what} must be greater than 0"
            )))
        };
        if self.memory_mb == 0 {
            return bad("memory_mb");
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms");
        }
        if self.cpu_shares == 0 {
            return bad("cpu_shares");
        }
        if self.max_output_bytes == 0 {
            return bad("max_output_bytes");
        }
        Ok(())
    }

    /// Memory ceiling in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mb.saturating_mul(1024 * 1024)
    }
}

/// The node's ceilings on job limits (`[compute.limits]` and `[compute] max_output_bytes`):
/// what a job may ask for at most. Checked where jobs come in (the API, the CLI's
/// `run`), before anything is stored or run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceilings {
    /// Largest `timeout_ms`.
    pub timeout_ms: u64,
    /// Largest `memory_mb`.
    pub memory_mb: u64,
    /// Largest `disk_mb`.
    pub disk_mb: u64,
    /// Largest `fuel`.
    pub fuel: u64,
    /// Largest `cpu_shares`.
    pub cpu_shares: u32,
    /// Largest `network_bandwidth_mbps`.
    pub network_bandwidth_mbps: u32,
    /// Largest `max_output_bytes`.
    pub max_output_bytes: u64,
}

impl Default for Ceilings {
    fn default() -> Self {
        Ceilings::from_config(&crate::config::ComputeConfig::default())
    }
}

impl Ceilings {
    /// The ceilings `[compute]` sets.
    pub fn from_config(c: &crate::config::ComputeConfig) -> Self {
        let l = &c.limits;
        Ceilings {
            timeout_ms: l.max_timeout_ms,
            memory_mb: l.max_memory_mb,
            disk_mb: l.max_disk_mb,
            fuel: l.max_fuel,
            cpu_shares: l.max_cpu_shares,
            network_bandwidth_mbps: l.max_network_bandwidth_mbps,
            max_output_bytes: c.max_output_bytes,
        }
    }

    /// Refuses limits above a ceiling, naming the limit, the value and the setting
    /// (`timeout_ms 18446744073709551615 is above this node's ceiling of 3600000
    /// ([compute.limits] max_timeout_ms)`). Bad input: exit 2, HTTP 400.
    pub fn check(&self, l: &ResourceLimits) -> Result<(), crate::ComputeError> {
        let rows: [(&str, Option<u64>, u64, &str); 7] = [
            (
                "timeout_ms",
                Some(l.timeout_ms),
                self.timeout_ms,
                "[compute.limits] max_timeout_ms",
            ),
            (
                "memory_mb",
                Some(l.memory_mb),
                self.memory_mb,
                "[compute.limits] max_memory_mb",
            ),
            (
                "disk_mb",
                Some(l.disk_mb),
                self.disk_mb,
                "[compute.limits] max_disk_mb",
            ),
            ("fuel", l.fuel, self.fuel, "[compute.limits] max_fuel"),
            (
                "cpu_shares",
                Some(l.cpu_shares.into()),
                self.cpu_shares.into(),
                "[compute.limits] max_cpu_shares",
            ),
            (
                "network_bandwidth_mbps",
                l.network_bandwidth_mbps.map(u64::from),
                self.network_bandwidth_mbps.into(),
                "[compute.limits] max_network_bandwidth_mbps",
            ),
            (
                "max_output_bytes",
                Some(l.max_output_bytes),
                self.max_output_bytes,
                "[compute] max_output_bytes",
            ),
        ];
        for (name, asked, ceiling, key) in rows {
            if let Some(asked) = asked
                && asked > ceiling
            {
                return Err(crate::ComputeError::invalid(format!(
                    "{name} {asked} is above this node's ceiling of {ceiling} ({key})"
                )));
            }
        }
        Ok(())
    }
}

/// One kind of limit, as named in errors, receipts and capability tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// `cpu_shares`.
    CpuShares,
    /// `memory_mb`.
    Memory,
    /// `disk_mb`.
    Disk,
    /// `network_bandwidth_mbps`.
    NetworkBandwidth,
    /// `timeout_ms`.
    Timeout,
    /// `fuel` (WASM).
    Fuel,
    /// `max_output_bytes`.
    Output,
    /// Process count (fork bombs).
    Processes,
    /// Call-stack depth (WASM stack size).
    Stack,
    /// An agent's tool calls (`max_steps` of its agent file).
    Steps,
}

impl LimitKind {
    /// Every limit kind, in table order.
    pub const ALL: [LimitKind; 10] = [
        LimitKind::CpuShares,
        LimitKind::Memory,
        LimitKind::Disk,
        LimitKind::NetworkBandwidth,
        LimitKind::Timeout,
        LimitKind::Fuel,
        LimitKind::Output,
        LimitKind::Processes,
        LimitKind::Stack,
        LimitKind::Steps,
    ];

    /// The short name used in messages ("memory", "timeout", ...).
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::CpuShares => "cpu_shares",
            LimitKind::Memory => "memory",
            LimitKind::Disk => "disk",
            LimitKind::NetworkBandwidth => "network_bandwidth",
            LimitKind::Timeout => "timeout",
            LimitKind::Fuel => "fuel",
            LimitKind::Output => "output",
            LimitKind::Processes => "processes",
            LimitKind::Stack => "stack",
            LimitKind::Steps => "steps",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a runtime honours one limit (CONTRACTS §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Support {
    /// The runtime stops a job that breaks the limit.
    Enforced,
    /// The runtime measures and reports it, but does not stop the job.
    Advisory,
    /// The runtime cannot honour it; setting it has no effect.
    Unsupported,
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Support::Enforced => "enforced",
            Support::Advisory => "advisory",
            Support::Unsupported => "unsupported",
        })
    }
}

/// One row of a runtime's capability table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitSupport {
    /// Enforced, advisory or unsupported.
    pub support: Support,
    /// How, or why not, in a sentence.
    pub how: String,
}

/// What a runtime can do: per limit, whether it is enforced, plus the isolation
/// features it offers. Shown by `hanzo-node runtimes` and `GET /v1/runtimes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Capabilities {
    /// Every [`LimitKind`], with how it is honoured.
    pub limits: BTreeMap<LimitKind, LimitSupport>,
    /// Whether jobs may ask for network access (`network: full`).
    pub network: bool,
    /// Whether host directories can be mounted (`--mount`).
    pub mounts: bool,
    /// Whether the runtime offers the deterministic profile.
    pub deterministic: bool,
    /// The isolation boundary, in a phrase ("wasmtime sandbox", "container", ...).
    pub isolation: String,
}

impl Capabilities {
    /// A table in which every limit starts as unsupported; runtimes fill it in.
    pub fn new(isolation: impl Into<String>) -> Self {
        let limits = LimitKind::ALL
            .iter()
            .map(|k| {
                (
                    *k,
                    LimitSupport {
                        support: Support::Unsupported,
                        how: "not honoured by this runtime".into(),
                    },
                )
            })
            .collect();
        Capabilities {
            limits,
            network: false,
            mounts: false,
            deterministic: false,
            isolation: isolation.into(),
        }
    }

    /// What redundant verification (CONTRACTS §8) can prove of this runtime's results:
    /// shown beside the capabilities so nobody takes an output-hash match for more
    /// than it is.
    pub fn verification(&self) -> &'static str {
        if self.deterministic {
            "output hash and fuel in the deterministic profile: honest nodes agree exactly, \
             so any difference is a fault or a lie; output hash only outside it"
        } else {
            "output hash only: honest nodes may differ (clock, randomness, scheduling), and \
             colluding nodes returning the same wrong output are not caught"
        }
    }

    /// Sets how one limit is honoured.
    pub fn with(mut self, kind: LimitKind, support: Support, how: impl Into<String>) -> Self {
        self.limits.insert(
            kind,
            LimitSupport {
                support,
                how: how.into(),
            },
        );
        self
    }

    /// How `kind` is honoured.
    pub fn support(&self, kind: LimitKind) -> Support {
        self.limits
            .get(&kind)
            .map(|l| l.support)
            .unwrap_or(Support::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_valid() {
        let l = ResourceLimits::default();
        l.validate().unwrap();
        assert_eq!(l.memory_mb, 256);
        assert_eq!(l.max_output_bytes, 16 * 1024 * 1024);
        assert!(l.fuel.is_none());
    }

    #[test]
    fn partial_limits_fill_in_defaults_and_unknown_keys_are_rejected() {
        let l: ResourceLimits = serde_json::from_str(r#"{"memory_mb": 64}"#).unwrap();
        assert_eq!(l.memory_mb, 64);
        assert_eq!(l.timeout_ms, 30_000);
        let e = serde_json::from_str::<ResourceLimits>(r#"{"memroy_mb": 64}"#).unwrap_err();
        assert!(e.to_string().contains("memroy_mb"), "{e}");
    }

    #[test]
    fn zero_values_are_rejected() {
        let l = ResourceLimits {
            timeout_ms: 0,
            ..Default::default()
        };
        assert!(l.validate().unwrap_err().to_string().contains("timeout_ms"));
    }

    #[test]
    fn every_ceiling_is_refused_by_name() {
        let c = Ceilings::default();
        ResourceLimits::default().validate().unwrap();
        c.check(&ResourceLimits::default()).unwrap();
        type Set = fn(&mut ResourceLimits);
        let cases: [(&str, Set); 7] = [
            ("timeout_ms", |l| l.timeout_ms = u64::MAX),
            ("memory_mb", |l| l.memory_mb = u64::MAX),
            ("disk_mb", |l| l.disk_mb = u64::MAX),
            ("fuel", |l| l.fuel = Some(u64::MAX)),
            ("cpu_shares", |l| l.cpu_shares = u32::MAX),
            ("network_bandwidth_mbps", |l| {
                l.network_bandwidth_mbps = Some(u32::MAX)
            }),
            ("max_output_bytes", |l| l.max_output_bytes = u64::MAX),
        ];
        for (name, set) in cases {
            let mut l = ResourceLimits::default();
            set(&mut l);
            let e = c.check(&l).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
            assert!(e.to_string().starts_with(&format!("{name} ")), "{e}");
            assert!(!e.to_string().contains('\n'));
        }
        // At the ceiling is fine.
        let l = ResourceLimits {
            timeout_ms: c.timeout_ms,
            ..Default::default()
        };
        c.check(&l).unwrap();
    }

    #[test]
    fn serialised_names_are_the_display_names() {
        for k in LimitKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(k.name()));
        }
    }

    #[test]
    fn capability_tables_cover_every_limit() {
        let c = Capabilities::new("test").with(LimitKind::Memory, Support::Enforced, "x");
        assert_eq!(c.limits.len(), LimitKind::ALL.len());
        assert_eq!(c.support(LimitKind::Memory), Support::Enforced);
        assert_eq!(c.support(LimitKind::Disk), Support::Unsupported);
    }
}
