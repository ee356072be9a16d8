//! Where a fresh instance's time goes: the step-by-step figures behind BENCHMARKS.md
//! ("WASM hot path"), which the benchmark's whole-call rows cannot show.
//!
//! ```text
//! cargo build --release -p echo --target wasm32-wasip1
//! cargo run --release -p wasm-bench --example breakdown -- target/wasm32-wasip1/release/echo.wasm [steps|receipt|ours|signed]
//! ```
//!
//! - `steps` (the default): bare wasmtime, one fresh instance per call under three
//!   pool settings (wasmtime's defaults; 2 MiB kept resident; the same with
//!   `PAGEMAP_SCAN`) and with fuel metering, each step timed on its own.
//! - `receipt`: the parts of a receipt (hashes, the context hash, the signed bytes,
//!   the signature).
//! - `ours` / `signed`: our runtime's unsigned or signed call in a loop for 5 s, to
//!   run under `perf record` (build with `--profile bench` for symbols); `signed-new`
//!   makes a new job for every call, as the benchmark's signed row does.
//! - `load` / `load-unsigned`: the throughput row's shape (2 tokio workers, 64 tasks
//!   in flight) for 5 s, with the receipts per signature when signed.
//! - `floors`: the bare floor's throughput on 2 threads three ways (sync calls; async
//!   calls on a current_thread runtime per thread; async calls from 64 tasks on a
//!   2-worker multi_thread runtime): what the async embedding and tokio cost alone.
//! - `floor-async`: the bare floor's async call in a loop, to hold ours against in an
//!   instruction count.
//! - `contract`: what the signed ≤ 1.1x target is measured against, taken apart. In
//!   interleaved rounds: our unsigned call; one signature over a receipt's bytes, in a
//!   loop (warm, as the benchmark's signature row); the same signature after 64 KiB of
//!   other memory was read (its tables no longer in L1); our unsigned call followed by
//!   that signature (a signed call with none of the receipt's own work); and our signed
//!   call.
//!
//! Counting instructions (valgrind's callgrind) instead of timing: run a mode twice
//! with `BREAKDOWN_CALLS=200` and `=1200` (`ours`, `signed`, `floor-async`) and take
//! the difference of the two profiles: 1,000 calls, with start-up and compilation
//! cancelled out. `BREAKDOWN_DATA=DIR` keeps the module's artifact between runs (no
//! cranelift in the profile), and under valgrind our runtime runs without its pool (it
//! cannot reserve one there), so `floor-async` takes `BREAKDOWN_ONDEMAND=1` to match.

use anyhow::{Context, Result};
use hanzo_compute::receipt::{ExecutionContext, Receipt, ReceiptBody, hash_json, sha256_hex, timestamp};
use hanzo_compute::{Compute, Job, JobSpec, NodeKey, RuntimeKind, Signing, Usage};
use hanzo_wasm_runtime::{WasmOptions, WasmRuntime};
use serde_json::Value;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig, Store,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

/// The benchmark's params (main.rs).
const PARAMS: &str =
    r#"{"user":"alice","action":"score","values":[1,2,3,4,5],"note":"a hundred bytes of params roughly"}"#;
const CALLS: usize = 20_000;
const WARMUP: usize = 2_000;

/// The node's allocator, as in the benchmark.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().context(
        "usage: breakdown ECHO_WASM [steps|receipt|ours|signed|signed-new|load|load-unsigned|floors|floor-async|contract]",
    )?;
    let wasm = std::fs::read(&path).with_context(|| format!("cannot read {path}"))?;
    match args.next().as_deref().unwrap_or("steps") {
        "steps" => steps(&wasm),
        "receipt" => receipt(),
        "ours" => ours(&wasm, Signing::Off, false),
        "signed" => ours(&wasm, Signing::On, false),
        "signed-new" => ours(&wasm, Signing::On, true),
        "load" => load(&wasm, Signing::On),
        "load-unsigned" => load(&wasm, Signing::Off),
        "floors" => floors(&wasm),
        "floor-async" => floor_async(&wasm),
        "contract" => contract(&wasm),
        other => anyhow::bail!(
            "unknown mode {other} (steps, receipt, ours, signed, signed-new, load, load-unsigned, floors, floor-async or contract)"
        ),
    }
}

fn print(label: &str, mut ns: Vec<u64>) {
    ns.sort_unstable();
    let at = |q: usize| ns[(ns.len() * q / 100).min(ns.len() - 1)] as f64 / 1e3;
    println!("{label:48} p50 {:7.2} µs   p99 {:7.2} µs", at(50), at(99));
}

/// Times `f` CALLS times after WARMUP untimed calls.
fn time(label: &str, mut f: impl FnMut()) {
    for _ in 0..WARMUP {
        f();
    }
    let mut ns = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        let t = Instant::now();
        f();
        ns.push(t.elapsed().as_nanos() as u64);
    }
    print(label, ns);
}

fn steps(wasm: &[u8]) -> Result<()> {
    let setups = [
        ("wasmtime's default pool settings", 0, false, false),
        ("2 MiB kept resident", 2 << 20, false, false),
        (
            "2 MiB kept resident + PAGEMAP_SCAN (ours, without swap)",
            2 << 20,
            true,
            false,
        ),
        ("ours + fuel metering and epochs", 2 << 20, true, true),
    ];
    for (name, keep, scan, metered) in setups {
        let mut pool = PoolingAllocationConfig::default();
        pool.linear_memory_keep_resident(keep);
        pool.table_keep_resident(keep);
        if scan {
            pool.pagemap_scan(Enabled::Auto);
        }
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config.consume_fuel(metered);
        config.epoch_interruption(metered);
        let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
        let module = Module::new(&engine, wasm).map_err(anyhow::Error::from)?;
        let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c)?;
        let pre = linker.instantiate_pre(&module)?;
        let len = PARAMS.len() as i32;
        const STEPS: [&str; 6] = [
            "WASI context",
            "Store::new",
            "instantiate",
            "exports looked up by name",
            "the guest's code (alloc, write, run)",
            "drop (the slot's reset)",
        ];
        let mut ns: [Vec<u64>; 7] = Default::default();
        for i in 0..CALLS + WARMUP {
            let t0 = Instant::now();
            let ctx = WasiCtxBuilder::new().build_p1();
            let t1 = Instant::now();
            let mut store = Store::new(&engine, ctx);
            if metered {
                store.set_fuel(u64::MAX)?;
                store.set_epoch_deadline(u64::MAX / 2);
            }
            let t2 = Instant::now();
            let instance = pre.instantiate(&mut store)?;
            let t3 = Instant::now();
            let memory = instance.get_memory(&mut store, "memory").context("no memory")?;
            let alloc = instance.get_typed_func::<i32, i32>(&mut store, "hanzo_alloc")?;
            let run = instance.get_typed_func::<(i32, i32), i64>(&mut store, "run")?;
            let t4 = Instant::now();
            let ptr = alloc.call(&mut store, len)?;
            memory.write(&mut store, ptr as u32 as usize, PARAMS.as_bytes())?;
            black_box(run.call(&mut store, (ptr, len))?);
            let t5 = Instant::now();
            drop(store);
            let t6 = Instant::now();
            if i >= WARMUP {
                let t = [t0, t1, t2, t3, t4, t5, t6];
                for s in 0..6 {
                    ns[s].push((t[s + 1] - t[s]).as_nanos() as u64);
                }
                ns[6].push((t6 - t0).as_nanos() as u64);
            }
        }
        println!("{name}:");
        let [a, b, c, d, e, f, total] = ns;
        for (label, v) in STEPS.iter().zip([a, b, c, d, e, f]) {
            print(&format!("  {label}"), v);
        }
        print("  whole call", total);
    }
    Ok(())
}

fn receipt() -> Result<()> {
    let key = NodeKey::generate()?;
    let params: Value = serde_json::from_str(PARAMS)?;
    let spec = JobSpec::new(RuntimeKind::Wasm, format!("sha256:{}", "a".repeat(64)))
        .function("run")
        .params(params.clone());
    let job = Job::new(spec.clone());
    let version = "wasmtime 49; deterministic profile 1; stack 512 KiB".to_string();
    time("new job id", || {
        black_box(hanzo_compute::new_job_id());
    });
    time("hash_json(params)", || {
        black_box(hash_json(&params));
    });
    time("sha256_hex of 97 bytes", || {
        black_box(sha256_hex(PARAMS.as_bytes()));
    });
    time("context hash (the spec of the call before)", || {
        black_box(ExecutionContext::of(&job.spec, "run", job.tool_job_id(), &version).hash());
    });
    // Two specs in turn: each call misses the per-thread cache of the fixed part.
    let mut other = Job::new(spec.clone());
    other.spec.env.insert("K".into(), "v".into());
    let mut turn = false;
    time("context hash (another spec each call)", || {
        turn = !turn;
        let j = if turn { &job } else { &other };
        black_box(ExecutionContext::of(&j.spec, "run", j.tool_job_id(), &version).hash());
    });
    let digest = [0xa5u8; 32];
    time("to_hex of 32 bytes, ten times", || {
        for _ in 0..10 {
            black_box(hanzo_compute::receipt::to_hex(black_box(&digest)));
        }
    });
    time("nothing (the clock's own cost)", || {});
    time("timestamp", || {
        black_box(timestamp(SystemTime::now()));
    });
    let body = || ReceiptBody {
        job_id: job.id.clone(),
        runtime: RuntimeKind::Wasm,
        function: "run".into(),
        code_hash: "a".repeat(64),
        input_hash: hash_json(&params),
        result: Ok(hash_json(&params)),
        usage: Usage::default(),
        limits: job.spec.limits.clone(),
        deterministic: false,
        started_at: SystemTime::now(),
        finished_at: SystemTime::now(),
        context_hash: "b".repeat(64),
        runtime_version: version.clone(),
        nonce: None,
    };
    let signed = Receipt::sign(body(), &key)?;
    let bytes = serde_json::to_vec(&signed.to_value())?;
    time("Receipt::sign (whole)", || {
        black_box(Receipt::sign(body(), &key).expect("signs"));
    });
    time("one signature (NodeKey::sign_hex)", || {
        black_box(key.sign_hex(&bytes));
    });
    Ok(())
}

/// Our runtime over a fresh data directory (kept while the returned guard lives),
/// with `wasm` in its store, and the spec of a call to it.
fn our_compute(wasm: &[u8]) -> Result<(tempfile::TempDir, Arc<Compute>, JobSpec)> {
    let data = tempfile::tempdir()?;
    // BREAKDOWN_DATA=DIR: a data dir kept between runs, so the module is compiled
    // once, not in every profiled run.
    let dir = std::env::var_os("BREAKDOWN_DATA").map_or_else(|| data.path().to_path_buf(), Into::into);
    let options = WasmOptions::new(&dir, hanzo_compute::config::WasmConfig::default());
    let rt = Arc::new(WasmRuntime::new(options)?);
    let sha = rt.add_module(wasm)?;
    let mut compute = Compute::new(Arc::new(NodeKey::generate()?));
    compute.register(rt);
    let spec = JobSpec::new(RuntimeKind::Wasm, format!("sha256:{sha}"))
        .function("run")
        .params(serde_json::from_str(PARAMS)?);
    Ok((data, Arc::new(compute), spec))
}

/// `BREAKDOWN_CALLS=N`: exactly N calls instead of a time (for a profiler that counts
/// instructions: two counts' difference is their calls' worth).
fn fixed_calls() -> Option<usize> {
    std::env::var("BREAKDOWN_CALLS").ok().and_then(|n| n.parse().ok())
}

/// `new_job`: a new job (id, spec) per call, as `compute.run(spec)` in the
/// benchmark's signed row, rather than one job run again and again.
fn ours(wasm: &[u8], signing: Signing, new_job: bool) -> Result<()> {
    let (_data, compute, spec) = our_compute(wasm)?;
    let job = Job::new(spec);
    let ct = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let fixed = fixed_calls();
    ct.block_on(async {
        let end = Instant::now() + Duration::from_secs(5);
        let mut ns = Vec::new();
        while fixed.map_or(Instant::now() < end, |n| ns.len() < n) {
            // Cloned outside the timer, as the benchmark does.
            let spec = new_job.then(|| job.spec.clone());
            let t = Instant::now();
            let out = match spec {
                Some(spec) => compute.run_job(&Job::new(spec), signing).await,
                None => compute.run_job(&job, signing).await,
            };
            ns.push(t.elapsed().as_nanos() as u64);
            anyhow::ensure!(out.result.is_ok(), "{:?}", out.result);
        }
        print("our call", ns);
        Ok(())
    })
}

/// See the module's doc (`contract`).
fn contract(wasm: &[u8]) -> Result<()> {
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 2_000;
    let (_data, compute, spec) = our_compute(wasm)?;
    let job = Job::new(spec);
    let key = compute.key();
    let ct = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The bytes a real receipt of this call signs, and another job's receipt to
    // read them from.
    let receipt = ct
        .block_on(compute.run_job(&job, Signing::On))
        .receipt
        .context("a signed call has a receipt")?;
    let bytes = serde_json::to_vec(&receipt.to_value())?;
    // Read between cold signatures: twice the L1 data cache of the machines here.
    let other = vec![1u8; 64 << 10];
    let evict = || {
        let mut sum = 0u64;
        for line in other.chunks(64) {
            sum = sum.wrapping_add(u64::from(black_box(line[0])));
        }
        black_box(sum);
    };
    const LABELS: [&str; 6] = [
        "unsigned call",
        "one signature, warm (the bench's row)",
        "one signature after 64 KiB read",
        "unsigned call, then one signature",
        "signed call",
        "signed call of a new job (the bench's row 1)",
    ];
    let mut ns: [Vec<u64>; 6] = Default::default();
    ct.block_on(async {
        for round in 0..=ROUNDS {
            // Round 0 warms up and is not kept.
            let keep = round > 0;
            for (i, v) in ns.iter_mut().enumerate() {
                for _ in 0..PER_ROUND {
                    if i == 2 {
                        evict();
                    }
                    // Cloned outside the timer, as the benchmark does.
                    let spec = (i == 5).then(|| job.spec.clone());
                    let t = Instant::now();
                    match i {
                        0 => {
                            let out = compute.run_job(&job, Signing::Off).await;
                            anyhow::ensure!(out.result.is_ok(), "{:?}", out.result);
                        }
                        1 | 2 => {
                            black_box(key.sign_hex(black_box(&bytes)));
                        }
                        3 => {
                            let out = compute.run_job(&job, Signing::Off).await;
                            anyhow::ensure!(out.result.is_ok(), "{:?}", out.result);
                            black_box(key.sign_hex(black_box(&bytes)));
                        }
                        4 => {
                            let out = compute.run_job(&job, Signing::On).await;
                            anyhow::ensure!(out.receipt.is_some(), "{:?}", out.result);
                        }
                        _ => {
                            let spec = spec.context("cloned above")?;
                            let out = compute.run(spec).await;
                            anyhow::ensure!(out.receipt.is_some(), "{:?}", out.result);
                        }
                    }
                    if keep {
                        v.push(t.elapsed().as_nanos() as u64);
                    }
                }
            }
        }
        anyhow::Ok(())
    })?;
    let p50 = |v: &mut Vec<u64>| {
        v.sort_unstable();
        v[v.len() / 2] as f64 / 1e3
    };
    let [a, b, c, d, e, f] = ns.each_mut().map(p50);
    for (label, x) in LABELS.iter().zip([a, b, c, d, e, f]) {
        println!("{label:44} p50 {x:7.2} µs");
    }
    println!(
        "unsigned + signature, one after the other: {:.3}x (unsigned + one warm signature)",
        d / (a + b)
    );
    println!("signed call: {:.3}x (unsigned + one warm signature)", e / (a + b));
    println!(
        "signed call of a new job: {:.3}x (unsigned + one warm signature)",
        f / (a + b)
    );
    Ok(())
}

fn load(wasm: &[u8], signing: Signing) -> Result<()> {
    let (_data, compute, spec) = our_compute(wasm)?;
    let mt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Receipts by the size of the batch that signed them (1: signed alone).
    let (calls, by_size) = mt.block_on(async {
        let end = Instant::now() + Duration::from_secs(5);
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (compute, spec) = (compute.clone(), spec.clone());
                tokio::spawn(async move {
                    let (mut calls, mut by_size) = (0u64, std::collections::BTreeMap::<u64, u64>::new());
                    while Instant::now() < end {
                        let out = compute.run_job(&Job::new(spec.clone()), signing).await;
                        anyhow::ensure!(out.result.is_ok(), "{:?}", out.result);
                        calls += 1;
                        if let Some(r) = out.receipt {
                            *by_size.entry(r.batch.map_or(1, |b| b.size)).or_default() += 1;
                        }
                    }
                    Ok((calls, by_size))
                })
            })
            .collect();
        let (mut calls, mut by_size) = (0, std::collections::BTreeMap::<u64, u64>::new());
        for t in tasks {
            let (c, s) = t.await??;
            calls += c;
            for (size, n) in s {
                *by_size.entry(size).or_default() += n;
            }
        }
        anyhow::Ok((calls, by_size))
    })?;
    // A batch of `size` gave `size` receipts.
    let signatures: f64 = by_size.iter().map(|(size, n)| *n as f64 / *size as f64).sum();
    println!(
        "{} calls/s over 5 s, {:.1} receipts per signature",
        calls / 5,
        if signatures == 0.0 {
            0.0
        } else {
            calls as f64 / signatures
        }
    );
    if signatures > 0.0 {
        // Where the signatures went: alone, small batches, large ones.
        let mut buckets = [0f64; 5];
        for (size, n) in &by_size {
            let b = match size {
                1 => 0,
                2..=4 => 1,
                5..=16 => 2,
                17..=64 => 3,
                _ => 4,
            };
            buckets[b] += *n as f64 / *size as f64;
        }
        println!(
            "signatures by batch size: alone {:.0}%, 2-4 {:.0}%, 5-16 {:.0}%, 17-64 {:.0}%, more {:.0}%",
            buckets[0] / signatures * 100.0,
            buckets[1] / signatures * 100.0,
            buckets[2] / signatures * 100.0,
            buckets[3] / signatures * 100.0,
            buckets[4] / signatures * 100.0,
        );
    }
    Ok(())
}

/// The bare floor's engine as our runtime sets it up (engine.rs): epochs, our stack
/// sizes, a pool of our runtime's size with 2 MiB kept resident and `PAGEMAP_SCAN`
/// (wasmtime's default pool reserves terabytes, more address space than valgrind can
/// give). `BREAKDOWN_ONDEMAND=1`: no pool, as our runtime falls back to where it
/// cannot reserve one (under valgrind).
fn floor_engine(wasm: &[u8]) -> Result<(Engine, Module)> {
    let cfg = hanzo_compute::config::WasmConfig::default();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(cfg.max_instances);
    pool.total_memories(cfg.max_instances);
    pool.total_tables(cfg.max_instances);
    pool.total_stacks(cfg.max_instances);
    pool.max_memory_size((cfg.max_memory_mb as usize) << 20);
    pool.linear_memory_keep_resident(2 << 20);
    pool.table_keep_resident(2 << 20);
    pool.pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    if std::env::var_os("BREAKDOWN_ONDEMAND").is_none() {
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config.epoch_interruption(true);
    let stack = (cfg.max_stack_kb as usize) << 10;
    config.max_wasm_stack(stack);
    config.async_stack_size(stack + (1 << 20));
    let engine = Engine::new(&config).map_err(anyhow::Error::from)?;
    let module = Module::new(&engine, wasm).map_err(anyhow::Error::from)?;
    Ok((engine, module))
}

/// One async call of the bare floor in a fresh instance.
async fn floor_async_call(engine: &Engine, pre: &wasmtime::InstancePre<WasiP1Ctx>) -> Result<()> {
    let len = PARAMS.len() as i32;
    let mut store = Store::new(engine, WasiCtxBuilder::new().build_p1());
    store.set_epoch_deadline(u64::MAX / 2);
    let instance = pre.instantiate_async(&mut store).await?;
    let memory = instance.get_memory(&mut store, "memory").context("no memory")?;
    let alloc = instance.get_typed_func::<i32, i32>(&mut store, "hanzo_alloc")?;
    let run = instance.get_typed_func::<(i32, i32), i64>(&mut store, "run")?;
    let ptr = alloc.call_async(&mut store, len).await?;
    memory.write(&mut store, ptr as u32 as usize, PARAMS.as_bytes())?;
    black_box(run.call_async(&mut store, (ptr, len)).await?);
    Ok(())
}

/// `calls` on two OS threads at once; the sum of what they return.
fn on_two_threads(calls: impl Fn() -> u64 + Sync) -> u64 {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..2).map(|_| s.spawn(&calls)).collect();
        threads.into_iter().map(|t| t.join().expect("thread")).sum()
    })
}

/// The bare floor's throughput (2 threads) three ways: sync calls, async calls on a
/// current_thread runtime per thread, async calls from 64 tasks on a 2-worker
/// multi_thread runtime. What the async embedding and tokio cost on their own.
fn floors(wasm: &[u8]) -> Result<()> {
    let (engine, module) = floor_engine(wasm)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |c| c)?;
    let pre = Arc::new(linker.instantiate_pre(&module)?);
    let mut sync_linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut sync_linker, |c| c)?;
    let sync_pre = sync_linker.instantiate_pre(&module)?;
    let len = PARAMS.len() as i32;
    let sync_call = || -> Result<()> {
        let mut store = Store::new(&engine, WasiCtxBuilder::new().build_p1());
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = sync_pre.instantiate(&mut store)?;
        let memory = instance.get_memory(&mut store, "memory").context("no memory")?;
        let alloc = instance.get_typed_func::<i32, i32>(&mut store, "hanzo_alloc")?;
        let run = instance.get_typed_func::<(i32, i32), i64>(&mut store, "run")?;
        let ptr = alloc.call(&mut store, len)?;
        memory.write(&mut store, ptr as u32 as usize, PARAMS.as_bytes())?;
        black_box(run.call(&mut store, (ptr, len))?);
        Ok(())
    };
    const SECS: u64 = 3;
    let rate = |n: u64| n / SECS;
    for round in 0..2 {
        let end = Instant::now() + Duration::from_secs(SECS);
        let n = on_two_threads(|| {
            let mut n = 0u64;
            while Instant::now() < end {
                sync_call().expect("sync call");
                n += 1;
            }
            n
        });
        println!(
            "round {round}: sync, 2 threads                   {:>8} calls/s",
            rate(n)
        );
        let end = Instant::now() + Duration::from_secs(SECS);
        let n = on_two_threads(|| {
            let ct = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            ct.block_on(async {
                let mut n = 0u64;
                while Instant::now() < end {
                    floor_async_call(&engine, &pre).await.expect("async call");
                    n += 1;
                }
                n
            })
        });
        println!(
            "round {round}: async, current_thread x 2         {:>8} calls/s",
            rate(n)
        );
        let mt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let end = Instant::now() + Duration::from_secs(SECS);
        let n: u64 = mt.block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let (engine, pre) = (engine.clone(), pre.clone());
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while Instant::now() < end {
                            floor_async_call(&engine, &pre).await.expect("async call");
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            let mut n = 0;
            for t in tasks {
                n += t.await.expect("task");
            }
            n
        });
        println!(
            "round {round}: async, multi_thread 2w x 64 tasks {:>8} calls/s",
            rate(n)
        );
    }
    Ok(())
}

/// BREAKDOWN_CALLS (default 20,000) async calls of the bare floor on a current_thread
/// runtime: the instruction profile to hold ours against.
fn floor_async(wasm: &[u8]) -> Result<()> {
    let n = fixed_calls().unwrap_or(CALLS);
    let (engine, module) = floor_engine(wasm)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |c| c)?;
    let pre = linker.instantiate_pre(&module)?;
    let ct = tokio::runtime::Builder::new_current_thread().build()?;
    ct.block_on(async {
        for _ in 0..n {
            floor_async_call(&engine, &pre).await?;
        }
        anyhow::Ok(())
    })
}
