//! The floor: the same exports-ABI call made with the `wasmtime` crate directly and
//! nothing else — no fuel, no epochs, no limiter, no JSON, no receipt. Whatever our
//! runtime costs above this is our overhead; this is what wasmtime itself costs.

use anyhow::{Context, Result};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module, PoolingAllocationConfig,
    Store, TypedFunc,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

/// Bytes of each pooled memory and table kept resident under [`Pool::Ours`], as in
/// our runtime.
pub const KEEP_RESIDENT: usize = 2 << 20;

/// One shared engine and a pre-linked module, like our runtime keeps.
pub struct Floor {
    engine: Engine,
    pre: InstancePre<WasiP1Ctx>,
    initialize: bool,
}

/// How the floor's pooling allocator is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Our runtime's settings (hanzo-wasm-runtime engine.rs): the first 2 MiB of each
    /// memory and table kept resident, and (`true`, as our runtime decided: no swap)
    /// the pages a guest wrote found with `PAGEMAP_SCAN` and reset in place.
    Ours(bool),
    /// wasmtime's defaults: nothing kept resident, so a finished instance's pages go
    /// back to the kernel with `madvise`.
    Defaults,
}

impl Floor {
    pub fn new(wasm: &[u8], pool_settings: Pool) -> Result<Floor> {
        let mut config = Config::new();
        // The same allocation strategy as ours, so the comparison isolates what we
        // add on top rather than mmap-per-instance costs.
        let mut pool = PoolingAllocationConfig::default();
        if let Pool::Ours(scan) = pool_settings {
            pool.linear_memory_keep_resident(KEEP_RESIDENT);
            pool.table_keep_resident(KEEP_RESIDENT);
            if scan {
                pool.pagemap_scan(wasmtime::Enabled::Auto);
            }
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("creating the floor's wasmtime engine")?;
        let module = Module::new(&engine, wasm)
            .map_err(anyhow::Error::from)
            .context("compiling echo.wasm for the floor")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx: &mut WasiP1Ctx| ctx)?;
        let pre = linker.instantiate_pre(&module)?;
        let initialize = module.get_export("_initialize").is_some();
        Ok(Floor {
            engine,
            pre,
            initialize,
        })
    }

    /// One call in a fresh instance; the result bytes (the guest's envelope) land in
    /// `out`. Fresh per call because that is what our runtime does: comparing against
    /// a reused instance would measure a different isolation model.
    pub fn call(&self, function: &str, params: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let mut store = Store::new(&self.engine, WasiCtxBuilder::new().build_p1());
        let instance = self.pre.instantiate(&mut store)?;
        if self.initialize {
            let init = instance.get_typed_func::<(), ()>(&mut store, "_initialize")?;
            init.call(&mut store, ())?;
        }
        let memory = instance
            .get_memory(&mut store, "memory")
            .context("the module exports no memory")?;
        let alloc = instance.get_typed_func::<i32, i32>(&mut store, "hanzo_alloc")?;
        let len = i32::try_from(params.len())?;
        let ptr = alloc.call(&mut store, len)?;
        memory.write(&mut store, ptr as u32 as usize, params)?;
        let run = instance.get_typed_func::<(i32, i32), i64>(&mut store, function)?;
        let packed = run.call(&mut store, (ptr, len))? as u64;
        let (at, len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        let bytes = memory
            .data(&store)
            .get(at..at + len)
            .context("the result points outside the module's memory")?;
        out.clear();
        out.extend_from_slice(bytes);
        Ok(())
    }
}

/// One instance kept and called again and again: Extism's model, here only to show
/// how much of the per-call cost is the fresh instance.
pub struct Reused {
    store: Store<WasiP1Ctx>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    free: TypedFunc<(i32, i32), ()>,
    run: TypedFunc<(i32, i32), i64>,
}

impl Floor {
    pub fn reused(&self, function: &str) -> Result<Reused> {
        let mut store = Store::new(&self.engine, WasiCtxBuilder::new().build_p1());
        let instance = self.pre.instantiate(&mut store)?;
        if self.initialize {
            let init = instance.get_typed_func::<(), ()>(&mut store, "_initialize")?;
            init.call(&mut store, ())?;
        }
        Ok(Reused {
            memory: instance
                .get_memory(&mut store, "memory")
                .context("the module exports no memory")?,
            alloc: instance.get_typed_func(&mut store, "hanzo_alloc")?,
            free: instance.get_typed_func(&mut store, "hanzo_free")?,
            run: instance.get_typed_func(&mut store, function)?,
            store,
        })
    }
}

impl Reused {
    pub fn call(&mut self, params: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let len = i32::try_from(params.len())?;
        let ptr = self.alloc.call(&mut self.store, len)?;
        self.memory.write(&mut self.store, ptr as u32 as usize, params)?;
        let packed = self.run.call(&mut self.store, (ptr, len))? as u64;
        let (at, out_len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        let bytes = self
            .memory
            .data(&self.store)
            .get(at..at + out_len)
            .context("the result points outside the module's memory")?;
        out.clear();
        out.extend_from_slice(bytes);
        // Both buffers go back, or a long-lived instance would leak them call by call.
        self.free.call(&mut self.store, (at as i32, out_len as i32))?;
        self.free.call(&mut self.store, (ptr, len))?;
        Ok(())
    }
}
