//! # wasm-bench
//!
//! The WASM runtime's benchmark, every figure from one run so they are comparable:
//! our warm path with and without receipt signing, throughput on every core, the bare
//! wasmtime floor, Extism on an equivalent plugin, and the first call after a restart
//! (in process and as a whole CLI process). Prints a markdown report; see
//! BENCHMARKS.md at the repository root for what each row means.
//!
//! `cargo run --release -p wasm-bench [-- --out report.md]`

mod env;
mod floor;
mod report;
mod stats;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use hanzo_compute::config::WasmConfig;
use hanzo_compute::{Compute, Job, JobSpec, NodeKey, RuntimeKind, Signing};
use hanzo_wasm_runtime::{WasmOptions, WasmRuntime};
use report::{Cli, Cold, Method, Results, Throughput};
use serde_json::{Value, json};
use stats::Latency;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// About a hundred bytes of params, the size of a typical small tool call.
const PARAMS: &str =
    r#"{"user":"alice","action":"score","values":[1,2,3,4,5],"note":"a hundred bytes of params roughly"}"#;
const FUNCTION: &str = "run";
#[derive(Parser, Debug)]
#[command(about = "Benchmark of hanzo-node's WASM runtime against bare wasmtime and Extism")]
struct Args {
    /// Also write the markdown report to this file.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Timed calls per latency row.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Untimed calls per latency row before timing starts.
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
    /// Rounds the latency rows are interleaved in.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Executions per throughput row.
    #[arg(long, default_value_t = 60_000)]
    throughput_calls: usize,
    /// Tokio workers and OS threads for the throughput rows.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Tasks in flight in the throughput rows.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Fresh runtimes created for the in-process cold start.
    #[arg(long, default_value_t = 10)]
    cold_runs: usize,
    /// `hanzo-node run` processes timed, each followed by one `hanzo-node --version`.
    #[arg(long, default_value_t = 50)]
    cli_runs: usize,
    /// Do not invoke cargo: use what is built, or fail saying what to build.
    #[arg(long)]
    no_build: bool,
}

/// The node's allocator (hanzo-node's `main.rs` says why): our rows run the node's
/// code in this process, so they allocate as the node does. Extism's rows share it.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // One line naming what went wrong, not anyhow's backtrace (RUST_BACKTRACE is often
    // set in CI and would bury the message).
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasm-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    ensure!(
        args.calls > 0
            && args.rounds > 0
            && args.workers > 0
            && args.concurrency > 0
            && args.throughput_calls >= 4
            && args.cold_runs > 0
            && args.cli_runs > 0,
        "counts must be positive"
    );
    let artifacts = env::Artifacts::prepare(args.no_build)?;
    let facts = env::Facts::gather(&artifacts);
    let load_start = env::loadavg();
    let cpu_start = env::CpuTimes::now();
    let started = Instant::now();

    let echo = read(&artifacts.echo)?;
    let extism_wasm = read(&artifacts.extism_echo)?;
    let params: Value = serde_json::from_str(PARAMS)?;
    let key = Arc::new(NodeKey::generate()?);
    let ct = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // A data dir whose store holds the module and its precompiled artifact, as a
    // node's would after the module was first used.
    let data = tempfile::tempdir()?;
    let options = WasmOptions::new(data.path(), WasmConfig::default());
    let sha = {
        let rt = Arc::new(WasmRuntime::new(options.clone())?);
        let sha = rt.add_module(&echo)?;
        let compute = compute_over(&key, &rt);
        let out = ct.block_on(compute.run(spec(&sha, &params)));
        ensure!(
            out.result.as_ref().ok() == Some(&params),
            "echo returned {:?}",
            out.result
        );
        ensure!(
            rt.compilations() == 1,
            "the first call should have compiled the module once"
        );
        sha
    };

    eprintln!("wasm-bench: cold start ({} fresh runtimes) ...", args.cold_runs);
    let cold = cold_start(&ct, &options, &key, &sha, &params, args.cold_runs)?;

    // The warm runtime every warm row uses.
    let rt = Arc::new(WasmRuntime::new(options.clone())?);
    let pooling = rt.pooling();
    let compute = Arc::new(compute_over(&key, &rt));
    let spec = spec(&sha, &params);
    let job = Job::new(spec.clone());
    let floor = floor::Floor::new(&echo, floor::Pool::Ours(rt.pagemap_scan()))?;
    let defaults = floor::Floor::new(&echo, floor::Pool::Defaults)?;
    let mut reused = floor.reused(FUNCTION)?;
    let mut plugin = extism::Plugin::new(&extism_wasm, [], true).context("loading the Extism plugin")?;
    // Compiled once; a Plugin made from it per call gives Extism the same isolation as
    // ours (fresh state every call), and one per thread is how Extism uses cores.
    let compiled =
        extism::CompiledPlugin::new(extism::PluginBuilder::new(extism_wasm.as_slice()).with_wasi(true))?;

    // Every contender must give the right answer before it is timed.
    let out = ct.block_on(compute.run(spec.clone()));
    ensure!(
        out.result.as_ref().ok() == Some(&params),
        "ours returned {:?}",
        out.result
    );
    ensure!(out.receipt.is_some(), "no receipt");
    let mut bytes = Vec::new();
    floor.call(FUNCTION, PARAMS.as_bytes(), &mut bytes)?;
    ensure!(
        serde_json::from_slice::<Value>(&bytes)? == json!({ "ok": params }),
        "the floor returned {}",
        String::from_utf8_lossy(&bytes)
    );
    defaults.call(FUNCTION, PARAMS.as_bytes(), &mut bytes)?;
    ensure!(
        serde_json::from_slice::<Value>(&bytes)? == json!({ "ok": params }),
        "the floor with wasmtime's defaults returned {}",
        String::from_utf8_lossy(&bytes)
    );
    reused.call(PARAMS.as_bytes(), &mut bytes)?;
    ensure!(
        serde_json::from_slice::<Value>(&bytes)? == json!({ "ok": params }),
        "reused floor"
    );
    let extism_out: Value = serde_json::from_str(plugin.call::<&str, &str>(FUNCTION, PARAMS)?)?;
    ensure!(extism_out == params, "Extism returned {extism_out}");
    // What the receipt's signature alone costs: ed25519 over this receipt's bytes.
    let receipt_bytes = serde_json::to_vec(&out.receipt.as_ref().expect("checked").to_value())?;
    // The same with ring, the other Ed25519 in the dependency tree (libp2p's).
    let ring_key = {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("ring cannot make a key"))?;
        ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|_| anyhow::anyhow!("ring cannot read its key"))?
    };

    eprintln!(
        "wasm-bench: warm latency ({} calls x 9 rows in {} rounds) ...",
        args.calls, args.rounds
    );
    let mut contenders: [Contender; 9] = [
        Box::new(|n: usize, out: &mut Vec<u64>| {
            ct.block_on(async {
                for _ in 0..n {
                    let spec = spec.clone();
                    let t = Instant::now();
                    let o = compute.run(spec).await;
                    out.push(t.elapsed().as_nanos() as u64);
                    ensure!(
                        o.result.is_ok() && o.receipt.is_some(),
                        "signed call: {:?}",
                        o.result
                    );
                }
                Ok(())
            })
        }),
        Box::new(|n: usize, out: &mut Vec<u64>| {
            ct.block_on(async {
                for _ in 0..n {
                    let t = Instant::now();
                    let o = compute.run_job(&job, Signing::Off).await;
                    out.push(t.elapsed().as_nanos() as u64);
                    ensure!(o.result.is_ok(), "unsigned call: {:?}", o.result);
                }
                Ok(())
            })
        }),
        Box::new(|n: usize, out: &mut Vec<u64>| {
            let mut bytes = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                floor.call(FUNCTION, PARAMS.as_bytes(), &mut bytes)?;
                out.push(t.elapsed().as_nanos() as u64);
            }
            black_box(&bytes);
            Ok(())
        }),
        Box::new(|n: usize, out: &mut Vec<u64>| {
            let mut bytes = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                defaults.call(FUNCTION, PARAMS.as_bytes(), &mut bytes)?;
                out.push(t.elapsed().as_nanos() as u64);
            }
            black_box(&bytes);
            Ok(())
        }),
        Box::new(|n: usize, out: &mut Vec<u64>| {
            let mut bytes = Vec::new();
            for _ in 0..n {
                let t = Instant::now();
                reused.call(PARAMS.as_bytes(), &mut bytes)?;
                out.push(t.elapsed().as_nanos() as u64);
            }
            black_box(&bytes);
            Ok(())
        }),
        Box::new(|n: usize, out: &mut Vec<u64>| {
            for _ in 0..n {
                let t = Instant::now();
                let r = plugin.call::<&str, &str>(FUNCTION, PARAMS)?;
                black_box(r);
                out.push(t.elapsed().as_nanos() as u64);
            }
            Ok(())
        }),
        Box::new(|n: usize, out: &mut Vec<u64>| {
            for _ in 0..n {
                let t = Instant::now();
                let mut p = extism::Plugin::new_from_compiled(&compiled)?;
                black_box(p.call::<&str, &str>(FUNCTION, PARAMS)?);
                drop(p);
                out.push(t.elapsed().as_nanos() as u64);
            }
            Ok(())
        }),
        Box::new(|n: usize, out: &mut Vec<u64>| {
            for _ in 0..n {
                let t = Instant::now();
                black_box(key.sign_hex(&receipt_bytes));
                out.push(t.elapsed().as_nanos() as u64);
            }
            Ok(())
        }),
        Box::new(|n: usize, out: &mut Vec<u64>| {
            for _ in 0..n {
                let t = Instant::now();
                black_box(ring_key.sign(&receipt_bytes));
                out.push(t.elapsed().as_nanos() as u64);
            }
            Ok(())
        }),
    ];
    let [
        signed,
        unsigned,
        floor_latency,
        defaults_latency,
        reused_latency,
        extism_latency,
        extism_fresh,
        signature,
        ring_signature,
    ] = interleave(&mut contenders, args.warmup, args.calls, args.rounds)?;
    drop(contenders);
    drop(plugin);

    eprintln!(
        "wasm-bench: throughput ({} executions per row) ...",
        args.throughput_calls
    );
    let throughput = {
        let mt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.workers)
            .enable_all()
            .build()?;
        // One plugin per thread: a Plugin serves one call at a time.
        let extism_chunk = |n| {
            threaded_rate(
                args.workers,
                n,
                args.warmup / 4,
                || extism::Plugin::new_from_compiled(&compiled),
                |p: &mut extism::Plugin| {
                    black_box(p.call::<&str, &str>(FUNCTION, PARAMS)?);
                    Ok(())
                },
            )
        };
        let (signed, unsigned, extism_rate, receipts_per_signature) = interleaved_rates(
            &mt,
            &compute,
            &spec,
            args.throughput_calls,
            args.concurrency,
            extism_chunk,
        )?;
        let floor_rate = threaded_rate(
            args.workers,
            args.throughput_calls,
            args.warmup / 4,
            || Ok(Vec::new()),
            |bytes: &mut Vec<u8>| floor.call(FUNCTION, PARAMS.as_bytes(), bytes),
        )?;
        // The same on one worker / thread: what two are measured against.
        let unsigned_one = {
            let one = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let total = args.throughput_calls / 2;
            one.block_on(async {
                burst(&compute, &spec, Signing::Off, total / 10, args.concurrency).await?;
                let t = Instant::now();
                burst(&compute, &spec, Signing::Off, total, args.concurrency).await?;
                anyhow::Ok(total as f64 / t.elapsed().as_secs_f64())
            })?
        };
        let floor_one = threaded_rate(
            1,
            args.throughput_calls / 2,
            args.warmup / 4,
            || Ok(Vec::new()),
            |bytes: &mut Vec<u8>| floor.call(FUNCTION, PARAMS.as_bytes(), bytes),
        )?;
        let defaults_rate = threaded_rate(
            args.workers,
            args.throughput_calls,
            args.warmup / 4,
            || Ok(Vec::new()),
            |bytes: &mut Vec<u8>| defaults.call(FUNCTION, PARAMS.as_bytes(), bytes),
        )?;
        Throughput {
            signed,
            receipts_per_signature,
            unsigned,
            unsigned_one,
            floor: floor_rate,
            floor_one,
            floor_defaults: defaults_rate,
            extism: extism_rate,
        }
    };
    ensure!(
        rt.compilations() == 0,
        "the warm runtime compiled the module instead of loading its artifact"
    );

    eprintln!("wasm-bench: CLI processes ({} runs) ...", args.cli_runs);
    let cli = cli(&artifacts.node, &artifacts.echo, &sha, &params, args.cli_runs)?;

    let others = cpu_start
        .zip(env::CpuTimes::now())
        .and_then(|(a, b)| a.others_share(&b));
    let results = Results {
        facts,
        load_start,
        load_end: env::loadavg(),
        others,
        method: Method {
            params: PARAMS,
            calls: args.calls,
            warmup: args.warmup,
            rounds: args.rounds,
            workers: args.workers,
            concurrency: args.concurrency,
            throughput_calls: args.throughput_calls,
            cold_runs: args.cold_runs,
            pooling,
            keep_resident: floor::KEEP_RESIDENT,
            pagemap_scan: rt.pagemap_scan(),
        },
        signed,
        unsigned,
        floor: floor_latency,
        floor_defaults: defaults_latency,
        floor_reused: reused_latency,
        extism: extism_latency,
        extism_fresh,
        signature,
        ring_signature,
        throughput,
        cold,
        cli,
        elapsed: started.elapsed(),
    };
    let text = report::render(&results);
    print!("{text}");
    if let Some(path) = &args.out {
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wasm-bench: report written to {}", path.display());
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn compute_over(key: &Arc<NodeKey>, rt: &Arc<WasmRuntime>) -> Compute {
    let mut compute = Compute::new(key.clone());
    compute.register(rt.clone());
    compute
}

fn spec(sha: &str, params: &Value) -> JobSpec {
    JobSpec::new(RuntimeKind::Wasm, format!("sha256:{sha}"))
        .function(FUNCTION)
        .params(params.clone())
}

/// Runs `n` timed calls, pushing each one's nanoseconds.
type Contender<'a> = Box<dyn FnMut(usize, &mut Vec<u64>) -> Result<()> + 'a>;

/// Warms every contender up, then times `calls` calls of each in `rounds` rounds,
/// taking turns, so a burst of load from elsewhere on the machine lands on all of
/// them rather than on whichever happened to run then.
fn interleave<const N: usize>(
    contenders: &mut [Contender; N],
    warmup: usize,
    calls: usize,
    rounds: usize,
) -> Result<[Latency; N]> {
    let mut scratch = Vec::with_capacity(warmup);
    for c in contenders.iter_mut() {
        c(warmup, &mut scratch)?;
        scratch.clear();
    }
    let mut samples: [Vec<u64>; N] = std::array::from_fn(|_| Vec::with_capacity(calls));
    for round in 0..rounds {
        // The remainder goes to the last round, so each row gets exactly `calls`.
        let n = calls / rounds + if round == rounds - 1 { calls % rounds } else { 0 };
        for (c, s) in contenders.iter_mut().zip(samples.iter_mut()) {
            c(n, s)?;
        }
    }
    Ok(samples.map(|mut s| Latency::of(&mut s)))
}

/// Our throughput, signed and unsigned, and Extism's (`extism`: the executions per
/// second of `n` calls on its own threads), in chunks taking turns, for the same
/// reason as [`interleave`]: the ratio the issue targets compares signed with
/// Extism's, so a spell of load must not land on one side only. Each of our
/// executions is a new job, as it is for a node serving requests. Returns signed,
/// unsigned, Extism's rate and the receipts per signature.
fn interleaved_rates(
    mt: &tokio::runtime::Runtime,
    compute: &Arc<Compute>,
    spec: &JobSpec,
    total: usize,
    concurrency: usize,
    mut extism: impl FnMut(usize) -> Result<f64>,
) -> Result<(f64, f64, f64, f64)> {
    mt.block_on(async {
        for signing in [Signing::On, Signing::Off] {
            burst(compute, spec, signing, total / 10, concurrency).await?;
        }
        anyhow::Ok(())
    })?;
    let mut spent = [Duration::ZERO; 3];
    let mut signatures = 0;
    let chunk = total / 4;
    for _ in 0..2 {
        for (i, signing) in [Signing::On, Signing::Off].into_iter().enumerate() {
            let t = Instant::now();
            signatures += mt.block_on(burst(compute, spec, signing, chunk, concurrency))?;
            spent[i] += t.elapsed();
        }
        // Timed inside, after its threads made and warmed up their plugins.
        spent[2] += Duration::from_secs_f64(chunk as f64 / extism(chunk)?);
    }
    let done = (2 * chunk) as f64;
    Ok((
        done / spent[0].as_secs_f64(),
        done / spent[1].as_secs_f64(),
        done / spent[2].as_secs_f64(),
        done / signatures.max(1) as f64,
    ))
}

/// `total` executions by `concurrency` tasks, each taking the next until none are
/// left. Returns the signatures made.
async fn burst(
    compute: &Arc<Compute>,
    spec: &JobSpec,
    signing: Signing,
    total: usize,
    concurrency: usize,
) -> Result<u64> {
    let left = Arc::new(AtomicUsize::new(total));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (compute, spec, left) = (compute.clone(), spec.clone(), left.clone());
            tokio::spawn(async move {
                let mut signatures = 0u64;
                while claim(&left) {
                    let o = compute.run_job(&Job::new(spec.clone()), signing).await;
                    ensure!(o.result.is_ok(), "throughput call: {:?}", o.result);
                    // One signature per receipt signed alone, one per batch (its
                    // first leaf).
                    if o.receipt.is_some_and(|r| r.batch.is_none_or(|b| b.index == 0)) {
                        signatures += 1;
                    }
                }
                Ok(signatures)
            })
        })
        .collect();
    let mut signatures = 0;
    for t in tasks {
        signatures += t.await??;
    }
    Ok(signatures)
}

fn claim(left: &AtomicUsize) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Executions per second with `threads` OS threads, each with its own `W` made
/// (and warmed up) before the clock starts.
fn threaded_rate<W>(
    threads: usize,
    total: usize,
    warmup: usize,
    make: impl Fn() -> Result<W> + Sync,
    call: impl Fn(&mut W) -> Result<()> + Sync,
) -> Result<f64> {
    let left = AtomicUsize::new(total);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    let ready = make().and_then(|mut w| {
                        (0..warmup).try_for_each(|_| call(&mut w))?;
                        Ok(w)
                    });
                    // Reached even on error, or the others would wait forever.
                    barrier.wait();
                    let mut w = ready?;
                    while claim(&left) {
                        call(&mut w)?;
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let t = Instant::now();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))??;
        }
        Ok(total as f64 / t.elapsed().as_secs_f64())
    })
}

/// Row 6a/6b: a fresh runtime over the data dir, then its first call, `runs` times.
fn cold_start(
    ct: &tokio::runtime::Runtime,
    options: &WasmOptions,
    key: &Arc<NodeKey>,
    sha: &str,
    params: &Value,
    runs: usize,
) -> Result<Cold> {
    let (mut create, mut first, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut compilations = 0;
    for _ in 0..runs {
        let spec = spec(sha, params);
        let t0 = Instant::now();
        let rt = Arc::new(WasmRuntime::new(options.clone())?);
        let t1 = Instant::now();
        let compute = compute_over(key, &rt);
        let out = ct.block_on(compute.run(spec));
        let t2 = Instant::now();
        ensure!(
            out.result.as_ref().ok() == Some(params),
            "cold call: {:?}",
            out.result
        );
        compilations += rt.compilations();
        create.push(t1 - t0);
        first.push(t2 - t1);
        total.push(t2 - t0);
        // Dropped outside the clock: shutting the runtime down is not part of starting.
        drop((compute, rt));
    }
    Ok(Cold {
        create: Latency::of_durations(&create),
        first_call: Latency::of_durations(&first),
        total: Latency::of_durations(&total),
        compilations,
    })
}

/// Row 6c: the whole `hanzo-node run` process over a data dir that already holds the
/// module and the binary's own precompiled artifact.
fn cli(node: &Path, echo: &Path, sha: &str, params: &Value, runs: usize) -> Result<Cli> {
    let home = tempfile::tempdir()?;
    let command = |args: &[&str]| {
        let mut c = Command::new(node);
        c.args(args)
            .env("HANZO_HOME", home.path())
            .env_remove("HANZO_CONFIG")
            .stdin(Stdio::null());
        c
    };
    let ok = |args: &[&str]| -> Result<String> {
        let out = command(args)
            .output()
            .with_context(|| format!("cannot run {}", node.display()))?;
        ensure!(
            out.status.success(),
            "`hanzo-node {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let echo = echo.display().to_string();
    let source = ok(&["module", "add", &echo])?;
    ensure!(
        source == format!("sha256:{sha}"),
        "`module add` printed {source}, expected sha256:{sha}"
    );
    let run_args = ["run", "wasm", &source, "--params", PARAMS];
    // This first run compiles and stores the artifact for the binary's own engine.
    // (The bench's wasmtime carries Extism's extra features, so an artifact written by
    // this process would not match the binary's engine.)
    ok(&run_args)?;
    let artifacts = || -> Result<Vec<(PathBuf, std::time::SystemTime)>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(home.path().join("modules"))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "cwasm") {
                v.push((p.clone(), std::fs::metadata(&p)?.modified()?));
            }
        }
        v.sort();
        Ok(v)
    };
    let before = artifacts()?;
    ensure!(
        before.len() == 1,
        "expected one precompiled artifact after the first run, found {}",
        before.len()
    );

    // The two commands take turns, so that a spell of noise on the machine (a VM's
    // neighbours) weighs on both sides of the ratio alike.
    let mut times = Vec::with_capacity(runs);
    let mut version = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let out = ok(&run_args)?;
        times.push(t.elapsed());
        let got: Value =
            serde_json::from_str(&out).context("hanzo-node printed something other than JSON")?;
        ensure!(&got == params, "hanzo-node printed {out}");
        let t = Instant::now();
        ok(&["--version"])?;
        version.push(t.elapsed());
    }
    Ok(Cli {
        run: Latency::of_durations(&times),
        version: Latency::of_durations(&version),
        artifact_reused: artifacts()? == before,
    })
}
