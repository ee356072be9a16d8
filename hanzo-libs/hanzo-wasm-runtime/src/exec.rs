//! Loading a module and running one call of it: the two tool ABIs, the sandbox
//! set-up, and the mapping of everything a guest can do wrong onto typed errors.

use crate::WasmRuntime;
use crate::engine::ProfileEngine;
use crate::host::{HostState, HostStop, MemoryLimitHit, MemoryLimiter, WasiPlan};
use crate::pipes::{BoundedPipe, OutputLimitHit, Overflow};
use crate::store::ModuleStore;
use hanzo_compute::receipt::hash_json;
use hanzo_compute::{ComputeError, Execution, Job, LimitKind, Usage};
use serde_json::Value;
use std::time::{Duration, Instant};
use wasmtime::{
    ExternType, Instance, InstancePre, Module, ModuleExport, Store, Trap, TypedFunc, UpdateDeadline, ValType,
};
use wasmtime_wasi::{FsPerms, I32Exit};

/// How long past its deadline a guest blocked inside a host call may take to notice.
const HOST_CALL_GRACE: Duration = Duration::from_millis(20);

/// Which tool ABI a module follows (CONTRACTS §1b), with the exports a call uses,
/// looked up once per module rather than by name on every call.
#[derive(Clone)]
pub(crate) enum Abi {
    /// Exports `hanzo_alloc`: params in memory, an envelope back.
    Exports {
        /// Exports of type `(i32, i32) -> i64`, the callable tool functions.
        functions: Vec<String>,
        /// Their handles, in the same order.
        handles: Vec<ModuleExport>,
        /// `_initialize`, a WASI reactor's constructor, which must run first.
        initialize: Option<ModuleExport>,
        /// `hanzo_alloc`, of type `(i32) -> i32`.
        alloc: ModuleExport,
        /// The memory, `memory`.
        memory: ModuleExport,
    },
    /// Exports `_start`: params on stdin, output on stdout.
    Command {
        /// `_start`, of type `() -> ()`.
        start: ModuleExport,
    },
}

/// A module ready to instantiate.
pub(crate) struct Prepared {
    pub(crate) sha: String,
    pre: InstancePre<HostState>,
    abi: Abi,
    /// When this process last recorded a use of the module in the store (Unix seconds),
    /// so that a module served from memory does not look unused to the store's LRU.
    pub(crate) touched: std::sync::atomic::AtomicU64,
}

/// The precompiled artifact of `sha` for `engine`, when one exists and fits the engine.
pub(crate) fn load_artifact(engine: &ProfileEngine, store: &ModuleStore, sha: &str) -> Option<Module> {
    let artifact = store.artifact_path(sha, &engine.artifact_tag);
    if !artifact.is_file() {
        return None;
    }
    // SAFETY: `deserialize_file` trusts the file to be wasmtime's own output for this
    // wasmtime build; mapping anything else is undefined behaviour. Artifacts are
    // written only by this node: by its own compiler process (the node binary in
    // compile mode, under limits, which writes a temporary file the node renames into
    // place only when the process succeeded and named the expected engine tag) or by a
    // compile thread, atomically, into the node's own data directory. Anyone able to
    // replace them could replace the node binary too. An artifact from another wasmtime
    // build or engine configuration is rejected by its header check and recompiled.
    // (A module able to subvert cranelift itself could subvert the compiler process,
    // and through its artifact this process: the subprocess bounds time and memory,
    // not that.)
    unsafe { Module::deserialize_file(&engine.engine, &artifact) }.ok()
}

/// Why the `artifact` the module compiler just wrote does not load into a pooled
/// engine, and drops it (left in place, every later job would compile the module
/// again). The compiler's engine has no pool, so a module outside the pool's shape
/// compiles there and is refused here: that is the module's fault, named as bad input
/// ([`crate::engine::check_shape`]). Anything else is the node's.
pub(crate) fn artifact_refused(
    profile: crate::engine::Profile,
    cfg: &hanzo_compute::config::WasmConfig,
    artifact: &std::path::Path,
) -> ComputeError {
    let shape = wasmtime::Engine::new(&crate::engine::engine_config(profile, cfg, false, false))
        .ok()
        // SAFETY: as in `load_artifact`: the file is the node's own compiler's output
        // for this very configuration, without the pool (which a module's shape does
        // not change: the code is the same).
        .and_then(|e| unsafe { Module::deserialize_file(&e, artifact) }.ok())
        .map(|m| crate::engine::check_shape(&m));
    let _ = std::fs::remove_file(artifact);
    match shape {
        Some(Err(e)) => e,
        _ => ComputeError::internal("the module compiler's artifact does not load"),
    }
}

/// Saves a module compiled in this process as `sha`'s artifact for `engine`.
pub(crate) fn save_artifact(engine: &ProfileEngine, store: &ModuleStore, sha: &str, module: &Module) {
    if let Ok(code) = module.serialize() {
        // A failure to cache only costs a compile next time.
        let _ = store.write_artifact(sha, &engine.artifact_tag, &code);
    }
}

/// Classifies and links a compiled module.
pub(crate) fn prepare_module(
    engine: &ProfileEngine,
    sha: &str,
    module: Module,
) -> Result<Prepared, ComputeError> {
    crate::engine::check_shape(&module)?;
    let abi = classify(&module)?;
    let pre = engine.linker.instantiate_pre(&module).map_err(|e| {
        ComputeError::invalid(format!(
            "cannot link the module: {} (only WASI preview 1 imports are provided)",
            root_message(&e)
        ))
    })?;
    Ok(Prepared {
        sha: sha.to_string(),
        pre,
        abi,
        touched: std::sync::atomic::AtomicU64::new(unix_now()),
    })
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn classify(module: &Module) -> Result<Abi, ComputeError> {
    let func = |name: &str| match module.get_export(name) {
        Some(ExternType::Func(f)) => Some(f),
        _ => None,
    };
    let is = |f: &wasmtime::FuncType, params: &[ValType], results: &[ValType]| {
        f.params()
            .map(|p| p.to_string())
            .eq(params.iter().map(|p| p.to_string()))
            && f.results()
                .map(|p| p.to_string())
                .eq(results.iter().map(|p| p.to_string()))
    };
    let handle = |name: &str| {
        module
            .get_export_index(name)
            .ok_or_else(|| ComputeError::internal(format!("the export {name} has no index")))
    };
    if let Some(alloc) = func("hanzo_alloc") {
        if !is(&alloc, &[ValType::I32], &[ValType::I32]) {
            return Err(ComputeError::invalid("hanzo_alloc must have type (i32) -> i32"));
        }
        if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
            return Err(ComputeError::invalid(
                "an exports-ABI module must export its memory as 'memory'",
            ));
        }
        let functions: Vec<String> = module
            .exports()
            .filter(|e| !e.name().starts_with("hanzo_") && !e.name().starts_with('_'))
            .filter(|e| matches!(e.ty(), ExternType::Func(f) if is(&f, &[ValType::I32, ValType::I32], &[ValType::I64])))
            .map(|e| e.name().to_string())
            .collect();
        let initialize = match func("_initialize") {
            Some(f) if is(&f, &[], &[]) => Some(handle("_initialize")?),
            Some(_) => return Err(ComputeError::invalid("_initialize must have type () -> ()")),
            None => None,
        };
        return Ok(Abi::Exports {
            handles: functions.iter().map(|f| handle(f)).collect::<Result<_, _>>()?,
            functions,
            initialize,
            alloc: handle("hanzo_alloc")?,
            memory: handle("memory")?,
        });
    }
    if let Some(start) = func("_start") {
        if !is(&start, &[], &[]) {
            return Err(ComputeError::invalid("_start must have type () -> ()"));
        }
        return Ok(Abi::Command {
            start: handle("_start")?,
        });
    }
    Err(ComputeError::invalid(
        "the module exports neither hanzo_alloc (exports ABI) nor _start (WASI command)",
    ))
}

/// The export `handle` of `instance` as a typed function.
///
/// The handle comes from `classify`, which checked that export's type against
/// exactly these parameters and results on the module this instance was made from
/// (`get_module_export` returns nothing for an instance of another module), so the
/// check `typed` would repeat on every call is skipped.
fn typed<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    store: &mut Store<HostState>,
    instance: &Instance,
    handle: &ModuleExport,
) -> Result<TypedFunc<P, R>, ComputeError> {
    let func = instance
        .get_module_export(&mut *store, handle)
        .and_then(|e| e.into_func())
        .ok_or_else(|| ComputeError::internal("an export of the module is missing from its instance"))?;
    // SAFETY: `func`'s type is `P -> R`, checked by `classify` on this module (above).
    Ok(unsafe { TypedFunc::new_unchecked(&*store, func) })
}

/// The function an exports-ABI job calls: the one named, else `run`, else the only one.
fn pick_function(functions: &[String], asked: Option<&str>) -> Result<String, ComputeError> {
    let list = || functions.join(", ");
    match asked {
        Some(name) if functions.iter().any(|f| f == name) => Ok(name.to_string()),
        Some(name) => Err(ComputeError::invalid(format!(
            "the module has no tool function '{name}' (it exports: {})",
            list()
        ))),
        None if functions.iter().any(|f| f == "run") => Ok("run".into()),
        None if functions.len() == 1 => Ok(functions[0].clone()),
        None if functions.is_empty() => Err(ComputeError::invalid(
            "the module exports no tool function of type (i32, i32) -> i64",
        )),
        None => Err(ComputeError::invalid(format!(
            "the module exports several tool functions ({}); choose one with --function",
            list()
        ))),
    }
}

/// What went wrong inside a call, before it is named for the user.
enum Failure {
    Wasm(wasmtime::Error),
    Compute(ComputeError),
}

impl From<wasmtime::Error> for Failure {
    fn from(e: wasmtime::Error) -> Self {
        Failure::Wasm(e)
    }
}

impl From<ComputeError> for Failure {
    fn from(e: ComputeError) -> Self {
        Failure::Compute(e)
    }
}

/// Runs one call of a prepared module in a fresh instance. `spent` is the part of the
/// job's timeout already used (compiling the module): the guest gets the rest.
pub(crate) async fn run(
    rt: &WasmRuntime,
    engine: &ProfileEngine,
    p: &Prepared,
    job: &Job,
    spent: Duration,
) -> Execution {
    let spec = &job.spec;
    let limits = &spec.limits;
    let mut exec = Execution {
        code_hash: Some(p.sha.clone()),
        function: spec.function_or_default().to_string(),
        result: Err(ComputeError::internal("not run")),
        usage: Usage::default(),
        logs: Vec::new(),
    };
    if let Abi::Exports { functions, .. } = &p.abi {
        match pick_function(functions, spec.function.as_deref()) {
            Ok(f) => exec.function = f,
            Err(e) => {
                exec.result = Err(e);
                return exec;
            }
        }
    }
    let params = match serde_json::to_vec(&spec.params) {
        Ok(b) => b,
        Err(e) => {
            exec.result = Err(ComputeError::invalid(format!("params cannot be serialised: {e}")));
            return exec;
        }
    };
    let cap = usize::try_from(limits.max_output_bytes).unwrap_or(usize::MAX);
    let logs =
        BoundedPipe::new(hanzo_compute::stdio::LOG_CAP, Overflow::Truncate).with_sink(job.logs.clone());
    let stdout = BoundedPipe::new(cap, Overflow::Trap);

    // The sandbox: nothing from the host unless the job lists it.
    let mut env = Vec::with_capacity(spec.env.len() + 2);
    env.push(("HANZO_FUNCTION".to_string(), exec.function.clone()));
    env.push(("HANZO_JOB_ID".to_string(), job.tool_job_id().to_string()));
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let plan = WasiPlan {
        stdin: matches!(p.abi, Abi::Command { .. }).then(|| params.clone()),
        // Under the exports ABI the output is the envelope; anything printed is log.
        stdout: match p.abi {
            Abi::Command { .. } => stdout.clone(),
            Abi::Exports { .. } => logs.clone(),
        },
        stderr: logs.clone(),
        env,
        deterministic_seed: spec
            .deterministic
            .then(|| format!("{}:{}", p.sha, hash_json(&spec.params))),
    };
    let limiter = MemoryLimiter::new(limits.memory_bytes());
    let state = if spec.mounts.is_empty() {
        HostState::lazy(plan, limiter)
    } else {
        let mut wasi = plan.builder();
        for m in &spec.mounts {
            let perms = if m.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            // The path was resolved once when the job was admitted; refuse it if a
            // component has since been swapped for a symlink (a job holding a parent
            // writable), since the preopen below follows symlinks.
            if let Err(e) = hanzo_compute::mounts::open_no_symlinks(&m.host) {
                exec.result = Err(ComputeError::invalid(format!(
                    "cannot mount {}: {}",
                    m.host.display(),
                    hanzo_compute::mounts::describe(&e)
                )));
                return exec;
            }
            if let Err(e) = wasi.preopened_dir(&m.host, &m.guest, perms) {
                exec.result = Err(ComputeError::invalid(format!(
                    "cannot mount {}: {e}",
                    m.host.display()
                )));
                return exec;
            }
        }
        HostState::built(wasi.build_p1(), limiter)
    };
    let mut store = Store::new(&engine.engine, state);
    store.limiter(|s| &mut s.limiter);
    let fuel = limits.fuel.unwrap_or(u64::MAX);
    if engine.metered
        && let Err(e) = store.set_fuel(fuel)
    {
        exec.result = Err(ComputeError::internal(e));
        return exec;
    }

    // Wait for a pooling slot before the clock starts: queueing is not running.
    let permit = match rt.permits.acquire().await {
        Ok(p) => p,
        Err(_) => {
            exec.result = Err(ComputeError::internal("the wasm runtime is shutting down"));
            return exec;
        }
    };
    let running = rt.ticker.enter();
    let started = Instant::now();
    let timeout = Duration::from_millis(limits.timeout_ms).saturating_sub(spent);
    let deadline = started + timeout;
    let cancel = job.cancel.clone();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if cancel.is_cancelled() {
            return Err(wasmtime::Error::new(HostStop::Cancelled));
        }
        if Instant::now() >= deadline {
            return Err(wasmtime::Error::new(HostStop::Timeout));
        }
        // Yield to the executor once per tick so one long guest cannot starve the
        // other jobs sharing this thread.
        Ok(UpdateDeadline::Yield(1))
    });

    let outcome = {
        let call = call(&mut store, p, &exec.function, &params, cap, &stdout);
        tokio::select! {
            biased;
            r = call => r,
            // A guest blocked inside a host call (a WASI sleep) sees no epoch ticks;
            // these arms stop it there. Dropping the call unwinds its fiber.
            _ = job.cancel.cancelled() => Err(Failure::Wasm(wasmtime::Error::new(HostStop::Cancelled))),
            _ = tokio::time::sleep_until((deadline + HOST_CALL_GRACE).into()) => {
                Err(Failure::Wasm(wasmtime::Error::new(HostStop::Timeout)))
            }
        }
    };
    exec.usage.set_wall_time(spent + started.elapsed());
    exec.usage.fuel_consumed = if engine.metered {
        store.get_fuel().ok().map(|left| fuel - left)
    } else {
        None
    };
    exec.usage.peak_memory_bytes = Some(store.data().limiter.peak());
    // The store goes before the permit: its pooling slot is reset and free again
    // before another job may take it.
    drop(running);
    drop(store);
    drop(permit);
    exec.logs = logs.take();
    exec.result = outcome.map_err(|f| match f {
        Failure::Compute(e) => e,
        Failure::Wasm(e) => name_failure(&e, job, rt.config.max_stack_kb, &stdout.take(), &exec.logs),
    });
    exec
}

/// Instantiates and calls the module under its ABI.
async fn call(
    store: &mut Store<HostState>,
    p: &Prepared,
    function: &str,
    params: &[u8],
    cap: usize,
    stdout: &BoundedPipe,
) -> Result<Value, Failure> {
    let instance = p.pre.instantiate_async(&mut *store).await?;
    match &p.abi {
        Abi::Command { start } => {
            let start = typed::<(), ()>(store, &instance, start)?;
            match start.call_async(&mut *store, ()).await {
                Ok(()) => {}
                // Go's wasip1 programs, among others, always end with proc_exit.
                Err(e) if e.downcast_ref::<I32Exit>().map(|x| x.0) == Some(0) => {}
                // A non-zero exit is named in `name_failure`, with stdout and logs.
                Err(e) => return Err(e.into()),
            }
            hanzo_compute::stdio::parse_output(&stdout.take()).map_err(Failure::Compute)
        }
        Abi::Exports {
            functions,
            handles,
            initialize,
            alloc,
            memory,
        } => {
            if let Some(init) = initialize {
                let init = typed::<(), ()>(store, &instance, init)?;
                init.call_async(&mut *store, ()).await?;
            }
            let memory = instance
                .get_module_export(&mut *store, memory)
                .and_then(|e| e.into_memory())
                .ok_or_else(|| ComputeError::invalid("the module exports no memory"))?;
            let alloc = typed::<i32, i32>(store, &instance, alloc)?;
            let len = i32::try_from(params.len())
                .map_err(|_| ComputeError::invalid("params are larger than 2 GiB"))?;
            let ptr = alloc.call_async(&mut *store, len).await?;
            memory
                .write(&mut *store, ptr as u32 as usize, params)
                .map_err(|_| {
                    ComputeError::ToolFailed("hanzo_alloc returned memory outside the module's memory".into())
                })?;
            let handle = functions
                .iter()
                .position(|f| f == function)
                .map(|i| &handles[i])
                .ok_or_else(|| ComputeError::internal(format!("no tool function '{function}'")))?;
            let f = typed::<(i32, i32), i64>(store, &instance, handle)?;
            let packed = f.call_async(&mut *store, (ptr, len)).await? as u64;
            let (out_ptr, out_len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
            if out_len > cap {
                return Err(ComputeError::limit(
                    LimitKind::Output,
                    format!("the tool returned {out_len} bytes, more than the cap of {cap}"),
                )
                .into());
            }
            let data = memory.data(&*store);
            let bytes = out_ptr
                .checked_add(out_len)
                .and_then(|end| data.get(out_ptr..end))
                .ok_or_else(|| {
                    ComputeError::ToolFailed("the result points outside the module's memory".into())
                })?;
            parse_envelope(bytes).map_err(Failure::Compute)
        }
    }
}

/// `{"ok": output}` or `{"error": message}`, nothing else: exactly one key.
///
/// Read as a stream, straight into the output `Value`: parsing the whole envelope
/// into a map first and taking `ok` out of it allocated, filled and freed a map node
/// and a key on every call: 690 instructions, ~7% of what our layer adds to a bare
/// wasmtime call (BENCHMARKS.md, "Instructions per call").
fn parse_envelope(bytes: &[u8]) -> Result<Value, ComputeError> {
    let malformed = |why: String| ComputeError::ToolFailed(format!("malformed result envelope: {why}"));
    let shape = || malformed("expected {\"ok\": ...} or {\"error\": \"...\"}".into());
    match serde_json::from_slice::<Envelope>(bytes) {
        Ok(Envelope::Ok(out)) => Ok(out),
        Ok(Envelope::Error(Value::String(msg))) => Err(ComputeError::ToolFailed(msg)),
        Ok(Envelope::Error(other)) => Err(ComputeError::ToolFailed(other.to_string())),
        Ok(Envelope::Other) => Err(shape()),
        // Valid JSON of another shape (an array, a number): the visitor refused it.
        Err(e) if e.classify() == serde_json::error::Category::Data => Err(shape()),
        Err(e) => Err(malformed(format!("not JSON ({e})"))),
    }
}

/// A result envelope as read: its one key's value, or `Other` for an object of any
/// other keys (none, an unknown one, or more than one).
enum Envelope {
    Ok(Value),
    Error(Value),
    Other,
}

impl<'de> serde::Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor)
    }
}

/// Which key of an envelope was read, without allocating it (`ok` may come escaped,
/// as `"\u006fk"`, which the deserializer unescapes before this sees it).
enum EnvelopeKey {
    Ok,
    Error,
    Other,
}

impl<'de> serde::Deserialize<'de> for EnvelopeKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = EnvelopeKey;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, key: &str) -> Result<EnvelopeKey, E> {
                Ok(match key {
                    "ok" => EnvelopeKey::Ok,
                    "error" => EnvelopeKey::Error,
                    _ => EnvelopeKey::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct EnvelopeVisitor;

impl<'de> serde::de::Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a result envelope")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        use serde::de::IgnoredAny;
        let first = match map.next_key::<EnvelopeKey>()? {
            None => return Ok(Envelope::Other),
            Some(EnvelopeKey::Ok) => Envelope::Ok(map.next_value()?),
            Some(EnvelopeKey::Error) => Envelope::Error(map.next_value()?),
            Some(EnvelopeKey::Other) => {
                map.next_value::<IgnoredAny>()?;
                Envelope::Other
            }
        };
        // The rest is still read to its end (the document must be valid JSON), and
        // any second key, even the same one again, makes it no envelope.
        let mut more = false;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value::<IgnoredAny>()?;
            more = true;
        }
        Ok(if more { Envelope::Other } else { first })
    }
}

fn find<T: std::error::Error + Send + Sync + 'static>(e: &wasmtime::Error) -> Option<&T> {
    e.downcast_ref::<T>()
        .or_else(|| e.chain().find_map(|c| c.downcast_ref::<T>()))
}

pub(crate) fn root_message(e: &wasmtime::Error) -> String {
    e.root_cause().to_string()
}

/// Names what stopped the guest.
fn name_failure(e: &wasmtime::Error, job: &Job, stack_kb: u64, stdout: &[u8], logs: &[u8]) -> ComputeError {
    let limits = &job.spec.limits;
    if let Some(stop) = find::<HostStop>(e) {
        return match stop {
            HostStop::Timeout => ComputeError::limit(
                LimitKind::Timeout,
                format!("stopped after the {} ms timeout", limits.timeout_ms),
            ),
            HostStop::Cancelled => ComputeError::Cancelled,
        };
    }
    if let Some(m) = find::<MemoryLimitHit>(e) {
        return ComputeError::limit(LimitKind::Memory, m.to_string());
    }
    if let Some(o) = find::<OutputLimitHit>(e) {
        return ComputeError::limit(LimitKind::Output, o.to_string());
    }
    if let Some(exit) = find::<I32Exit>(e) {
        return hanzo_compute::stdio::failure(exit.0.into(), stdout, logs);
    }
    if let Some(trap) = find::<Trap>(e) {
        return match trap {
            Trap::OutOfFuel => ComputeError::limit(
                LimitKind::Fuel,
                format!("used all {} units of fuel", limits.fuel.unwrap_or(u64::MAX)),
            ),
            Trap::StackOverflow => ComputeError::limit(
                LimitKind::Stack,
                format!("call stack exhausted (the wasm stack is capped at {stack_kb} KiB)"),
            ),
            Trap::Interrupt => ComputeError::limit(
                LimitKind::Timeout,
                format!("stopped after the {} ms timeout", limits.timeout_ms),
            ),
            other => {
                let mut msg = format!("the tool trapped: {other}");
                if let Some(line) = hanzo_compute::stdio::last_log_line(logs) {
                    msg.push_str(&format!(" ({line})"));
                }
                ComputeError::ToolFailed(msg)
            }
        };
    }
    // Errors raised by the embedding rather than the guest: name them plainly.
    let msg = root_message(e);
    if msg.contains("maximum concurrent") || msg.contains("pooling") {
        return ComputeError::internal(format!("no free instance slot: {msg}"));
    }
    ComputeError::ToolFailed(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes() {
        assert_eq!(
            parse_envelope(br#"{"ok":{"a":1}}"#).unwrap(),
            serde_json::json!({"a":1})
        );
        assert_eq!(
            parse_envelope(br#"{"error":"bad"}"#).unwrap_err(),
            ComputeError::ToolFailed("bad".into())
        );
        // Escaped keys are the same keys.
        assert_eq!(
            parse_envelope(br#"{"\u006fk":[1]}"#).unwrap(),
            serde_json::json!([1])
        );
        assert_eq!(
            parse_envelope(br#"{"error":{"why":2}}"#).unwrap_err(),
            ComputeError::ToolFailed(r#"{"why":2}"#.into())
        );
        for bad in [
            &br#"{"ok":1,"error":"x"}"#[..],
            br#"{"error":"x","ok":1}"#,
            br#"{"ok":1,"ok":2}"#,
            br#"{"result":1,"ok":1}"#,
            b"{}",
            b"[1]",
            b"\"ok\"",
            b"nope",
            br#"{"ok":1"#,
            br#"{"ok":1} x"#,
            br#"{"result":1}"#,
        ] {
            let e = parse_envelope(bad).unwrap_err().to_string();
            assert!(e.contains("malformed result envelope"), "{e}");
        }
        // What is wrong is named: the shape, or the JSON itself.
        let message = |b: &[u8]| parse_envelope(b).unwrap_err().to_string();
        assert!(
            message(b"[1]").contains(r#"expected {"ok": ...}"#),
            "{}",
            message(b"[1]")
        );
        assert!(message(br#"{"ok":1,"ok":2}"#).contains(r#"expected {"ok": ...}"#));
        assert!(message(b"nope").contains("not JSON"), "{}", message(b"nope"));
        assert!(message(br#"{"ok":1} x"#).contains("not JSON"));
        // A guest's deep nesting ends in an error, not in the host's stack: in the
        // output (serde_json's depth limit) and in a key that is skipped.
        for deep in [
            format!(r#"{{"ok":{}}}"#, "[".repeat(100_000)),
            format!(r#"{{"x":{}1{}}}"#, "[".repeat(100_000), "]".repeat(100_000)),
        ] {
            let e = message(deep.as_bytes());
            assert!(e.contains("malformed result envelope"), "{e}");
        }
    }

    #[test]
    fn function_choice() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(pick_function(&f(&["a", "run"]), None).unwrap(), "run");
        assert_eq!(pick_function(&f(&["only"]), None).unwrap(), "only");
        assert!(
            pick_function(&f(&["a", "b"]), None)
                .unwrap_err()
                .to_string()
                .contains("--function")
        );
        assert!(
            pick_function(&f(&["a"]), Some("zz"))
                .unwrap_err()
                .to_string()
                .contains("zz")
        );
    }
}
