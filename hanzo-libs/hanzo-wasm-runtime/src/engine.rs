//! The shared wasmtime engines (one per profile) and the epoch ticker that bounds
//! every guest's wall-clock time.

use crate::host::HostState;
use hanzo_compute::ComputeError;
use hanzo_compute::config::WasmConfig;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig};

/// How often the epoch advances. Each tick gives every running guest a chance to
/// yield to the executor and to be stopped, so this is also the granularity of
/// timeouts and cancellation.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Ticks the epoch thread keeps ticking after the last guest finished before it
/// parks. Unparking it is a futex wake and, in a VM, an inter-processor interrupt,
/// and the woken thread can land on the caller's core: jobs that came one after
/// another (a signed call every 40 µs) each paid ~16 µs for it when the thread parked
/// between them (BENCHMARKS.md, "WASM hot path"). Kept short, because a thread waking
/// every millisecond disturbs other work on a two-core machine (Extism's calls in
/// the benchmark took twice as long while it ticked for 50 ms after our last job).
const LINGER_TICKS: u32 = 5;

/// Bytes of each pooled linear memory and table kept resident between uses.
const KEEP_RESIDENT_BYTES: usize = 2 * 1024 * 1024;

/// Which engine configuration a job runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Profile {
    /// The fast default: no fuel metering.
    Standard,
    /// The standard profile with fuel metering, for jobs that set a `fuel` limit (or
    /// every job, under `fuel_metering = "always"`).
    Metered,
    /// Fuel metering, NaN canonicalisation and deterministic relaxed SIMD, for
    /// re-execution checks.
    Deterministic,
}

impl Profile {
    /// The name the compiler subprocess is given.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
            Profile::Metered => "metered",
            Profile::Deterministic => "deterministic",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Profile> {
        match name {
            "standard" => Some(Profile::Standard),
            "metered" => Some(Profile::Metered),
            "deterministic" => Some(Profile::Deterministic),
            _ => None,
        }
    }

    /// Whether guests of this profile count fuel.
    pub(crate) fn metered(self) -> bool {
        self != Profile::Standard
    }
}

/// One engine with its WASI linker.
pub(crate) struct ProfileEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    /// Identifies the engine's code format; names compiled artifacts on disk.
    pub(crate) artifact_tag: String,
    /// Whether the pooling allocator is in use (false after a fallback).
    pub(crate) pooling: bool,
    /// Whether guests count fuel.
    pub(crate) metered: bool,
}

/// The shape of module every engine runs: at most one linear memory and one table,
/// of at most `MAX_TABLE_ELEMENTS` elements. The pool's slots are cut to it (these are
/// wasmtime 49's defaults, set explicitly so that an upgrade cannot move them), and
/// an engine without the pool holds modules to it too ([`check_shape`], the job's
/// [`crate::host::MemoryLimiter`]), so that a module `hanzo-node run` takes is one
/// `serve` takes.
pub(crate) const MAX_MEMORIES: u32 = 1;
/// See [`MAX_MEMORIES`].
pub(crate) const MAX_TABLES: u32 = 1;
/// See [`MAX_MEMORIES`].
pub(crate) const MAX_TABLE_ELEMENTS: usize = 20_000;

/// Refuses, as bad input naming what is over, a module outside the shape the pool's
/// slots hold ([`MAX_MEMORIES`]). With the pool, wasmtime refuses such a module
/// itself when it loads; without it, nothing else would.
pub(crate) fn check_shape(module: &Module) -> Result<(), ComputeError> {
    let r = module.resources_required();
    if r.num_memories > MAX_MEMORIES {
        return Err(ComputeError::invalid(format!(
            "the module defines {} linear memories; this node runs modules with at most {MAX_MEMORIES}",
            r.num_memories
        )));
    }
    if r.num_tables > MAX_TABLES {
        return Err(ComputeError::invalid(format!(
            "the module defines {} tables; this node runs modules with at most {MAX_TABLES}",
            r.num_tables
        )));
    }
    if let Some(n) = r.max_initial_table_size
        && n > MAX_TABLE_ELEMENTS as u64
    {
        return Err(ComputeError::invalid(format!(
            "a table of the module starts with {n} elements; this node allows at most {MAX_TABLE_ELEMENTS}"
        )));
    }
    Ok(())
}

/// The engine configuration of `profile`. Everything that shapes machine code is set
/// here, so the compiler subprocess (which builds its engine without `pooling`) makes
/// artifacts this process's engine accepts.
pub(crate) fn engine_config(profile: Profile, cfg: &WasmConfig, pooling: bool, pagemap_scan: bool) -> Config {
    let mut c = Config::new();
    // Timeouts and cancellation: epoch checks are a load and compare on loop
    // back-edges and function entries, so a loop with no calls still ends.
    c.epoch_interruption(true);
    // Fuel metering instruments every basic block of the guest: on a small tool it
    // made the guest's own code ~65% slower (BENCHMARKS.md, "WASM hot path"). Like
    // wasmtime and Extism, it is paid only by the jobs that ask for it: those with a
    // `fuel` limit and the deterministic profile, whose fuel is compared.
    c.consume_fuel(profile.metered());
    let stack = (cfg.max_stack_kb as usize) * 1024;
    c.max_wasm_stack(stack);
    // Guests run on fibers; the fiber must hold the wasm stack plus host frames.
    c.async_stack_size(stack + 1024 * 1024);
    // Shared memories and threads would make results depend on scheduling: the
    // workspace builds wasmtime without its `threads` feature, so modules that use
    // them fail validation.
    if profile == Profile::Deterministic {
        c.cranelift_nan_canonicalization(true);
        c.relaxed_simd_deterministic(true);
    }
    if pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(cfg.max_instances);
        pool.total_memories(cfg.max_instances);
        pool.total_tables(cfg.max_instances);
        pool.total_stacks(cfg.max_instances);
        pool.total_component_instances(0);
        pool.max_memory_size((cfg.max_memory_mb as usize).saturating_mul(1024 * 1024));
        pool.max_memories_per_module(MAX_MEMORIES);
        pool.max_tables_per_module(MAX_TABLES);
        pool.table_elements(MAX_TABLE_ELEMENTS);
        // Reusing a slot otherwise returns its pages to the kernel (madvise), and every
        // such call makes the kernel flush the other cores' TLBs: on a 2-core VM that
        // halved throughput with two workers (BENCHMARKS.md). Keeping the first pages
        // resident and zeroing them instead costs a little memory per used slot.
        pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES);
        pool.table_keep_resident(KEEP_RESIDENT_BYTES);
        // Without it wasmtime resets all of the kept-resident bytes with memset when a
        // slot is reused, whether the guest wrote them or not: for a 1.1 MiB memory
        // that memset was most of a call (35.6 µs, against 13.4 µs with the scan).
        // Linux 6.7's PAGEMAP_SCAN names the pages the guest actually wrote, and only
        // those are reset. On older kernels `Auto` falls back to the memset.
        //
        // Only without swap: wasmtime 49 looks for pages both written and present, so
        // a page the guest wrote that the kernel swapped out before the slot's reset is
        // neither reset nor dropped, and the next job in the slot would read the last
        // one's data (wasmtime PR #14357, open). `pagemap_scan` is false when swap is
        // on (see `swap_enabled`), and the runtime stops taking WASM jobs if swap is
        // turned on while it runs with the scan.
        if pagemap_scan {
            pool.pagemap_scan(wasmtime::Enabled::Auto);
        }
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    c
}

impl ProfileEngine {
    /// `pooling`: try the pooling allocator first (see `WasmOptions::pooling`).
    pub(crate) fn new(
        profile: Profile,
        cfg: &WasmConfig,
        pooling: bool,
        pagemap_scan: bool,
    ) -> Result<Self, ComputeError> {
        // The pooling allocator reserves address space for every slot up front. Some
        // hosts cap virtual memory (ulimit -v, some containers); there the node falls
        // back to allocating per instance rather than refusing to start.
        let pooled = if pooling {
            Engine::new(&engine_config(profile, cfg, true, pagemap_scan)).ok()
        } else {
            None
        };
        let (engine, pooling) = match pooled {
            Some(e) => (e, true),
            None => (
                Engine::new(&engine_config(profile, cfg, false, false))
                    .map_err(|e| ComputeError::internal(format!("cannot create the wasm engine: {e}")))?,
                false,
            ),
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut HostState| s.wasi())
            .map_err(|e| ComputeError::internal(format!("cannot link WASI: {e}")))?;
        let artifact_tag = artifact_tag(&engine);
        Ok(ProfileEngine {
            engine,
            linker,
            artifact_tag,
            pooling,
            metered: profile.metered(),
        })
    }
}

/// Names an engine's code format: artifacts are stored under it.
pub(crate) fn artifact_tag(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// Advances every engine's epoch while any guest runs, and sleeps otherwise.
pub(crate) struct Ticker {
    shared: Arc<TickerShared>,
    thread: Option<JoinHandle<()>>,
}

struct TickerShared {
    engines: Mutex<Vec<Engine>>,
    running: AtomicUsize,
    stop: AtomicBool,
    /// Whether to watch for swap being turned on (the engines reset slots with
    /// `PAGEMAP_SCAN`, which is only safe without swap).
    watch_swap: bool,
    /// Swap was seen turned on while the engines reset slots with `PAGEMAP_SCAN`.
    swap_appeared: AtomicBool,
    /// Set while the thread is parked with no guest running, the only time `enter`
    /// must wake it: waking a thread is a system call and, in a VM, an interrupt to
    /// another core, which jobs that follow one another should not each pay.
    idle: AtomicBool,
}

impl Ticker {
    /// `watch_swap`: check for swap being turned on when the thread wakes from idle
    /// and every second while it ticks.
    pub(crate) fn start(watch_swap: bool) -> Self {
        let shared = Arc::new(TickerShared {
            watch_swap,
            swap_appeared: AtomicBool::new(false),
            engines: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            idle: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hanzo-wasm-epoch".into())
            .spawn(move || {
                let mut idle_ticks: u32 = 0;
                let mut ticks: u32 = 0;
                while !s.stop.load(Ordering::Acquire) {
                    if s.running.load(Ordering::Acquire) == 0 {
                        idle_ticks = idle_ticks.saturating_add(1);
                    } else {
                        idle_ticks = 0;
                    }
                    ticks = ticks.wrapping_add(1);
                    if s.watch_swap && ticks.is_multiple_of(SWAP_CHECK_TICKS) {
                        s.check_swap();
                    }
                    if idle_ticks > LINGER_TICKS {
                        // Idle: no guest to interrupt. `enter` unparks us. The flag
                        // goes up before `running` is read again, and `enter` bumps
                        // `running` before it reads the flag (both SeqCst), so one of
                        // the two always sees the other: no guest starts unticked.
                        s.idle.store(true, Ordering::SeqCst);
                        if s.running.load(Ordering::SeqCst) == 0 {
                            std::thread::park_timeout(Duration::from_millis(100));
                        }
                        s.idle.store(false, Ordering::SeqCst);
                        // Woken for a guest (or by the timeout): swap may have been
                        // turned on while nothing ran. Read here, on this thread, not on
                        // the job's path.
                        if s.watch_swap {
                            s.check_swap();
                        }
                        continue;
                    }
                    // Parked rather than asleep, so that dropping the runtime (a
                    // one-shot command's exit) need not wait out the tick. An early
                    // wake only makes one tick short.
                    std::thread::park_timeout(EPOCH_TICK);
                    for e in s.engines.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                        e.increment_epoch();
                    }
                }
            })
            .expect("spawn the epoch thread");
        Ticker {
            shared,
            thread: Some(thread),
        }
    }

    /// Whether swap was turned on while the engines reset slots with `PAGEMAP_SCAN`.
    pub(crate) fn swap_appeared(&self) -> bool {
        self.shared.swap_appeared.load(Ordering::Acquire)
    }

    pub(crate) fn add(&self, engine: &Engine) {
        self.shared
            .engines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(engine.clone());
    }

    /// Marks a guest as running until the guard drops.
    pub(crate) fn enter(&self) -> RunningGuard<'_> {
        if self.shared.running.fetch_add(1, Ordering::SeqCst) == 0
            && self.shared.idle.load(Ordering::SeqCst)
            && let Some(t) = &self.thread
        {
            t.thread().unpark();
        }
        RunningGuard { ticker: self }
    }
}

impl TickerShared {
    fn check_swap(&self) {
        if !self.swap_appeared.load(Ordering::Relaxed) && swap_enabled() {
            self.swap_appeared.store(true, Ordering::Release);
        }
    }
}

/// How often (in ticks, while guests run) the ticker checks for swap.
const SWAP_CHECK_TICKS: u32 = 1000;

/// Whether the kernel may swap this process's memory out: `/proc/swaps` lists a
/// swap device or file (zram and zswap's backing included). Unreadable on Linux
/// counts as yes; elsewhere there is no `PAGEMAP_SCAN` to worry about.
pub(crate) fn swap_enabled() -> bool {
    if hanzo_compute::failpoints::hit(hanzo_compute::failpoints::SWAP_ON) {
        return true;
    }
    match std::fs::read_to_string("/proc/swaps") {
        Ok(text) => swaps_listed(&text),
        Err(_) => cfg!(target_os = "linux"),
    }
}

/// Whether `/proc/swaps` text lists any swap area (its first line is a header).
fn swaps_listed(text: &str) -> bool {
    text.lines().skip(1).any(|l| !l.trim().is_empty())
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Keeps the ticker running while a guest runs.
pub(crate) struct RunningGuard<'a> {
    ticker: &'a Ticker,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.ticker.shared.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::swaps_listed;

    #[test]
    fn swap_areas_are_read_from_proc_swaps() {
        let header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
        assert!(!swaps_listed(header));
        assert!(!swaps_listed(""));
        assert!(swaps_listed(&format!(
            "{header}/dev/zram0 partition 4194300 0 100\n"
        )));
        assert!(swaps_listed(&format!("{header}/swapfile file 2097148 1024 -2\n")));
    }
}
