//! Per-call host state: the WASI context, the memory limiter, and the deterministic
//! clock and random source.

use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// Everything a running guest can reach through its imports.
pub(crate) struct HostState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: MemoryLimiter,
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
