//! Per-call host state: the WASI context, the memory limiter, and the deterministic
//! clock and random source.

use crate::pipes::BoundedPipe;
use hanzo_compute::receipt::hash_json;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// Everything a running guest can reach through its imports.
pub(crate) struct HostState {
    /// The WASI context, once built.
    wasi: Option<WasiP1Ctx>,
    /// What to build it from on the guest's first WASI call.
    plan: Option<WasiPlan>,
    pub(crate) limiter: MemoryLimiter,
}

impl HostState {
    /// With the WASI context built already (a job with mounts, whose preopens can
    /// fail and are reported before the guest starts).
    pub(crate) fn built(wasi: WasiP1Ctx, limiter: MemoryLimiter) -> Self {
        HostState {
            wasi: Some(wasi),
            plan: None,
            limiter,
        }
    }

    /// With the WASI context built on the guest's first WASI call. An exports-ABI
    /// tool that prints nothing and reads no clock makes none, and building and
    /// dropping a context it never uses was a tenth of such a call.
    pub(crate) fn lazy(plan: WasiPlan, limiter: MemoryLimiter) -> Self {
        HostState {
            wasi: None,
            plan: Some(plan),
            limiter,
        }
    }

    /// The guest's WASI context, built now if this is its first WASI call.
    pub(crate) fn wasi(&mut self) -> &mut WasiP1Ctx {
        if self.wasi.is_none() {
            let plan = self.plan.take().expect("a WASI context or a plan for one");
            self.wasi = Some(plan.builder().build_p1());
        }
        self.wasi.as_mut().expect("built above")
    }
}

/// A guest's WASI context before it is built: its stdio, arguments and environment,
/// and in the deterministic profile its clocks and random sources. Nothing from the
/// host is in it unless the job lists it; mounts are added by the caller.
pub(crate) struct WasiPlan {
    /// Bytes on stdin (the command ABI's params).
    pub(crate) stdin: Option<Vec<u8>>,
    pub(crate) stdout: BoundedPipe,
    pub(crate) stderr: BoundedPipe,
    pub(crate) env: Vec<(String, String)>,
    /// The seed of the deterministic profile's clocks and random streams.
    pub(crate) deterministic_seed: Option<String>,
}

impl WasiPlan {
    pub(crate) fn builder(self) -> WasiCtxBuilder {
        let mut wasi = WasiCtxBuilder::new();
        if let Some(stdin) = self.stdin {
            wasi.stdin(MemoryInputPipe::new(stdin));
        }
        wasi.stdout(self.stdout);
        wasi.stderr(self.stderr);
        wasi.arg("tool.wasm");
        for (k, v) in &self.env {
            wasi.env(k, v);
        }
        if let Some(seed) = self.deterministic_seed {
            // Same module + same params => same clock readings and "random" bytes.
            wasi.wall_clock(VirtualClock::default());
            wasi.monotonic_clock(VirtualClock::default());
            wasi.secure_random(deterministic_random(format!("secure:{seed}").as_bytes()));
            wasi.insecure_random(deterministic_random(format!("insecure:{seed}").as_bytes()));
            wasi.insecure_random_seed(u128::from_le_bytes(
                hex::decode(&hash_json(&Value::String(seed))[..32])
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or([0; 16]),
            ));
        }
        wasi
    }
}

/// Why the host stopped a guest; carried through the trap so the error can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostStop {
    /// The job's wall-clock limit passed.
    #[error("the job ran past its timeout")]
    Timeout,
    /// The job was cancelled.
    #[error("the job was cancelled")]
    Cancelled,
}

/// Raised when the guest asks for more memory than its limit.
#[derive(Debug, thiserror::Error)]
#[error("{what} would grow to {desired} bytes, past the limit of {limit} bytes (memory_mb)")]
pub(crate) struct MemoryLimitHit {
    pub(crate) what: &'static str,
    pub(crate) desired: u64,
    pub(crate) limit: u64,
}

/// Caps linear memories and tables together at the job's `memory_mb`.
///
/// A guest that hits the cap is trapped rather than handed `-1` from `memory.grow`:
/// most toolchains abort on allocation failure anyway, and a trap lets the node name
/// the limit instead of reporting an opaque `unreachable`.
pub(crate) struct MemoryLimiter {
    limit: u64,
    memories: u64,
    tables: u64,
    peak: u64,
}

/// Bytes one table element costs in wasmtime (a pointer).
const TABLE_ELEMENT_BYTES: u64 = 8;

impl MemoryLimiter {
    pub(crate) fn new(limit: u64) -> Self {
        MemoryLimiter {
            limit,
            memories: 0,
            tables: 0,
            peak: 0,
        }
    }

    /// The most memory (linear memories plus tables) the guest held at once.
    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    fn grow(&mut self, what: &'static str, current: u64, desired: u64) -> wasmtime::Result<bool> {
        let (slot, other) = match what {
            "a table" => (self.tables, self.memories),
            _ => (self.memories, self.tables),
        };
        let next = slot - current.min(slot) + desired;
        if next + other > self.limit {
            return Err(wasmtime::Error::new(MemoryLimitHit {
                what,
                desired: next + other,
                limit: self.limit,
            }));
        }
        match what {
            "a table" => self.tables = next,
            _ => self.memories = next,
        }
        self.peak = self.peak.max(self.memories + self.tables);
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow("linear memory", current as u64, desired as u64)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A table grows no further than a pool slot holds (`table.grow` gives -1),
        // on an engine without the pool as well (engine::MAX_TABLE_ELEMENTS).
        if desired > crate::engine::MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.grow(
            "a table",
            current as u64 * TABLE_ELEMENT_BYTES,
            desired as u64 * TABLE_ELEMENT_BYTES,
        )
    }
}

/// The deterministic profile's clocks: they start at a fixed instant and advance a
/// fixed step per reading, so a guest that times itself sees the same numbers on
/// every machine (and a guest that waits for time to pass still makes progress).
#[derive(Default)]
pub(crate) struct VirtualClock {
    ticks: AtomicU64,
}

/// 2025-01-01T00:00:00Z: what the deterministic wall clock starts from.
const VIRTUAL_EPOCH_SECS: u64 = 1_735_689_600;
/// How far the deterministic clocks move per reading.
const VIRTUAL_STEP_NANOS: u64 = 1_000;

impl VirtualClock {
    fn next(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::Relaxed) * VIRTUAL_STEP_NANOS
    }
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(VIRTUAL_STEP_NANOS)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(VIRTUAL_EPOCH_SECS) + Duration::from_nanos(self.next())
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        VIRTUAL_STEP_NANOS
    }
    fn now(&self) -> u64 {
        self.next()
    }
}

/// Bytes of the deterministic random stream, which then repeats. The profile is for
/// reproducible computation, not for secrets, and the docs say so.
const RANDOM_STREAM_BYTES: usize = 8 * 1024;

/// A reproducible "random" byte stream: sha256(seed || counter) blocks.
pub(crate) fn deterministic_random(seed: &[u8]) -> wasmtime_wasi::Deterministic {
    let mut stream = Vec::with_capacity(RANDOM_STREAM_BYTES);
    let mut counter: u64 = 0;
    while stream.len() < RANDOM_STREAM_BYTES {
        let mut h = Sha256::new();
        h.update(seed);
        h.update(counter.to_le_bytes());
        stream.extend_from_slice(&h.finalize());
        counter += 1;
    }
    wasmtime_wasi::Deterministic::new(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn memories_and_tables_share_one_budget() {
        let mut l = MemoryLimiter::new(100);
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.table_growing(0, 5, None).unwrap()); // 40 bytes
        assert!(l.memory_growing(60, 61, None).is_err());
        assert_eq!(l.peak(), 100);
    }

    #[test]
    fn virtual_clocks_advance_identically() {
        let a = VirtualClock::default();
        let b = VirtualClock::default();
        let ra: Vec<u64> = (0..3).map(|_| HostMonotonicClock::now(&a)).collect();
        let rb: Vec<u64> = (0..3).map(|_| HostMonotonicClock::now(&b)).collect();
        assert_eq!(ra, rb);
        assert!(ra[0] < ra[1] && ra[1] < ra[2]);
    }
}
