//! # process-bench
//!
//! The process runtimes' benchmark (Deno, Python, Go, native), every figure from one
//! run so they are comparable: for each runtime, our `Runtime::execute` of a real tool
//! from `examples/` against the same tool run by hand (`deno run`, `uv run`,
//! `python3`, the bare binary), with the ratio ours/by hand and the target of
//! at most 1.3x; the sandbox's fixed cost on `/bin/true` in each of its modes; Python
//! with a cached environment against a cold one; and the first call of each runtime on
//! an empty data directory. Prints a markdown report; see BENCHMARKS.md.
//!
//! `cargo run --release -p process-bench [-- --quick]`

mod facts;
mod hand;
mod stats;

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use hand::Hand;
use hanzo_compute::config::{DenoConfig, GoConfig, PythonConfig, WasmConfig};
use hanzo_compute::{CancelToken, Job, JobSpec, Runtime, RuntimeKind};
use hanzo_deno_runtime::DenoRuntime;
use hanzo_go_runtime::{GoRuntime, Target};
use hanzo_native_runtime::{NativeRuntime, TOOL_HOST_SUBCOMMAND};
use hanzo_python_runtime::PythonRuntime;
use hanzo_sandbox::toolchain::find_program;
use hanzo_sandbox::{Options, ProcessSpec, Sandbox};
use hanzo_wasm_runtime::{WasmOptions, WasmRuntime};
use serde_json::{Value, json};
use stats::{Latency, ms, ratio};
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The text every text tool gets: about a hundred bytes, a typical small call.
const TEXT: &str =
    "The quick brown fox jumps over the lazy dog. The dog sleeps, and the fox runs away into the wood.";
/// The target: our call at most 1.3x the same tool run by hand.
const TARGET: f64 = 1.3;
/// Processes and threads per job, the node's default (`[compute.sandbox] pids_limit`).
const PIDS: u32 = 128;

#[derive(Parser, Debug)]
#[command(about = "Benchmark of hanzo-node's process runtimes against the same tools run by hand")]
struct Args {
    /// A short smoke run: few samples per row (the cold builds still happen).
    #[arg(long)]
    quick: bool,
    /// Timed runs per row [default: 60; 8 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// Untimed runs per row before timing [default: 5; 2 with --quick].
    #[arg(long)]
    warmup: Option<usize>,
    /// Python runs with a cold environment (removed before each run; uv's cache
    /// warm) [default: 8; 2 with --quick].
    #[arg(long)]
    cold_runs: Option<usize>,
    /// Python runs on an empty data directory (empty uv cache: downloads from PyPI)
    /// [default: 3; 1 with --quick; 0 skips them].
    #[arg(long)]
    fully_cold_runs: Option<usize>,
    /// Also write the markdown report to this file.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Do not invoke cargo: use the text-tools-cmd that is built, or fail saying how.
    #[arg(long)]
    no_build: bool,
    /// Measure only these sections (comma-separated): floor, native, go, bytes (needs
    /// go), deno, python [default: all]. The targets table keeps the rows that were measured.
    #[arg(long, value_delimiter = ',', value_parser = ["floor", "native", "go", "bytes", "deno", "python"])]
    only: Vec<String>,
}

fn main() -> ExitCode {
    // The native runtime's built-ins and cdylibs run in a helper process; in the node
    // that is the node's own binary, here the bench's (see `NativeRuntime::new`).
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    if argv.first().is_some_and(|a| a == TOOL_HOST_SUBCOMMAND) {
        std::process::exit(hanzo_native_runtime::tool_host_main(argv));
    }
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("process-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One sample: the wall time and the tool's output.
type Sample = Result<(Duration, Value)>;

/// One way of running a tool: by hand or through a runtime.
struct Way<'a> {
    id: &'static str,
    label: String,
    /// The by-hand row this one is compared with.
    base: Option<&'static str>,
    run: Box<dyn FnMut() -> Sample + 'a>,
}

impl<'a> Way<'a> {
    fn new(id: &'static str, label: impl Into<String>, run: Box<dyn FnMut() -> Sample + 'a>) -> Self {
        Way {
            id,
            label: label.into(),
            base: None,
            run,
        }
    }

    fn vs(mut self, base: &'static str) -> Self {
        self.base = Some(base);
        self
    }
}

/// A measured row.
struct Row {
    id: &'static str,
    label: String,
    base: Option<&'static str>,
    lat: Latency,
}

/// Runs each way `warmup` times untimed, then `runs` times timed, interleaved run by
/// run in a rotating order so that background load and cache effects hit every way
/// alike. Every output must equal the first one: the ways do the same work.
fn measure(title: &str, mut ways: Vec<Way<'_>>, warmup: usize, runs: usize) -> Result<Vec<Row>> {
    eprintln!(
        "process-bench: {title}: {} ways, {warmup} warm-up + {runs} timed runs each ...",
        ways.len()
    );
    let mut reference: Option<Value> = None;
    let mut check = |way: &Way<'_>, v: Value| -> Result<()> {
        match &reference {
            None => reference = Some(v),
            Some(r) if *r == v => {}
            Some(r) => bail!(
                "{} ({}) returned {v}, but the first way returned {r}: the ways do not do the same work",
                way.id,
                way.label
            ),
        }
        Ok(())
    };
    for way in ways.iter_mut() {
        for _ in 0..warmup {
            let (_, v) = (way.run)().with_context(|| format!("{} ({})", way.id, way.label))?;
            check(way, v)?;
        }
    }
    let n = ways.len();
    let mut samples = vec![Vec::with_capacity(runs); n];
    for i in 0..runs {
        for k in 0..n {
            let j = (i + k) % n;
            let way = &mut ways[j];
            let (d, v) = (way.run)().with_context(|| format!("{} ({})", way.id, way.label))?;
            check(way, v)?;
            samples[j].push(d);
        }
    }
    Ok(ways
        .into_iter()
        .zip(samples)
        .map(|(w, s)| Row {
            id: w.id,
            label: w.label,
            base: w.base,
            lat: Latency::of(&s),
        })
        .collect())
}

/// A tool run by hand; `json`: its stdout is the output, else it must be empty.
fn by_hand<'a>(mut hand: Hand, json: bool) -> Box<dyn FnMut() -> Sample + 'a> {
    Box::new(move || {
        let (d, out) = hand.run()?;
        let v = if json {
            serde_json::from_slice(&out)
                .with_context(|| format!("the output is not JSON: {:?}", String::from_utf8_lossy(&out)))?
        } else {
            ensure!(out.is_empty(), "unexpected output");
            Value::Null
        };
        Ok((d, v))
    })
}

/// `runtime.execute` of a fresh job of `spec`, timed around the call.
fn ours<'a>(
    rt: &'a tokio::runtime::Runtime,
    runtime: Arc<dyn Runtime>,
    spec: JobSpec,
) -> Box<dyn FnMut() -> Sample + 'a> {
    Box::new(move || execute(rt, runtime.as_ref(), &spec))
}

fn execute(rt: &tokio::runtime::Runtime, runtime: &dyn Runtime, spec: &JobSpec) -> Sample {
    let job = Job::new(spec.clone());
    let t = Instant::now();
    let ex = rt.block_on(runtime.execute(&job));
    let d = t.elapsed();
    let logs = String::from_utf8_lossy(&ex.logs);
    let v = ex
        .result
        .map_err(|e| anyhow!("{} job failed: {e}; logs: {}", spec.runtime, logs.trim()))?;
    Ok((d, v))
}

/// `bytes` run as the executable `./tool` in `sandbox` for a job of `spec`, straight
/// through `Sandbox::run` (no runtime: no source read, hash or build lookup).
fn sandboxed_exe<'a>(
    rt: &'a tokio::runtime::Runtime,
    sandbox: Arc<Sandbox>,
    spec: JobSpec,
    bytes: Vec<u8>,
) -> Box<dyn FnMut() -> Sample + 'a> {
    let cancel = CancelToken::new();
    Box::new(move || {
        let job = Job::new(spec.clone());
        let p = ProcessSpec::for_job("./tool", &job)
            .executable("tool", bytes.clone())
            .pids_limit(PIDS);
        let t = Instant::now();
        let o = rt.block_on(sandbox.run(p, &cancel));
        let d = t.elapsed();
        let v = o.result().map_err(|e| anyhow!("{e}"))?;
        Ok((d, v))
    })
}

/// A complete spec (a runtime's exact command) run as is by `sandbox`, timed.
fn sandboxed_spec<'a>(
    rt: &'a tokio::runtime::Runtime,
    sandbox: Arc<Sandbox>,
    spec: ProcessSpec,
) -> Box<dyn FnMut() -> Sample + 'a> {
    let cancel = CancelToken::new();
    Box::new(move || {
        let t = Instant::now();
        let o = rt.block_on(sandbox.run(spec.clone(), &cancel));
        let d = t.elapsed();
        let v = o.result().map_err(|e| anyhow!("{e}"))?;
        Ok((d, v))
    })
}

/// `program args…` with the params on stdin, in `sandbox` (no output expected).
fn sandboxed_cmd<'a>(
    rt: &'a tokio::runtime::Runtime,
    sandbox: Sandbox,
    spec: JobSpec,
    program: &'static str,
    args: &'static [&'static str],
) -> Box<dyn FnMut() -> Sample + 'a> {
    let cancel = CancelToken::new();
    Box::new(move || {
        let job = Job::new(spec.clone());
        let p = ProcessSpec::for_job(program, &job)
            .args(args.iter().copied())
            .pids_limit(PIDS);
        let t = Instant::now();
        let o = rt.block_on(sandbox.run(p, &cancel));
        let d = t.elapsed();
        ensure!(
            o.success() && o.stdout.is_empty(),
            "{program} in the sandbox: {:?}: {}",
            o.exit,
            String::from_utf8_lossy(&o.stderr).trim()
        );
        Ok((d, Value::Null))
    })
}

/// `/bin/true` with the params on stdin, in `sandbox`.
fn sandboxed_true<'a>(
    rt: &'a tokio::runtime::Runtime,
    sandbox: Sandbox,
    spec: JobSpec,
) -> Box<dyn FnMut() -> Sample + 'a> {
    sandboxed_cmd(rt, sandbox, spec, "/bin/true", &[])
}

/// A first call, timed once.
struct First {
    what: String,
    took: Duration,
}

/// Python runs that are not interleaved (each needs set-up between runs).
struct Cold {
    id: &'static str,
    label: String,
    lat: Latency,
}

struct Counts {
    runs: usize,
    warmup: usize,
    cold: usize,
    fully_cold: usize,
}

fn run(args: Args) -> Result<()> {
    let q = args.quick;
    let c = Counts {
        runs: args.runs.unwrap_or(if q { 8 } else { 60 }),
        warmup: args.warmup.unwrap_or(if q { 2 } else { 5 }),
        cold: args.cold_runs.unwrap_or(if q { 2 } else { 8 }),
        fully_cold: args.fully_cold_runs.unwrap_or(if q { 1 } else { 3 }),
    };
    ensure!(
        c.runs > 0 && c.cold > 0,
        "--runs and --cold-runs must be positive"
    );
    let root = facts::workspace_root()?;
    let on = |section: &str| args.only.is_empty() || args.only.iter().any(|o| o == section);
    let text_tools = facts::text_tools_cmd(&root, args.no_build)?;
    let helper = std::env::current_exe().context("cannot find the bench's own binary")?;

    let load_start = facts::loadavg();
    let cpu_start = facts::CpuTimes::now();
    let started = Instant::now();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // The node's data directory, and the by-hand side's files (wrappers, caches).
    let data = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let sandbox = Arc::new(Sandbox::detect());
    let mut rows: Vec<Row> = Vec::new();
    let mut sections: Vec<(String, String, Vec<&'static str>)> = Vec::new();
    let mut firsts: Vec<First> = Vec::new();
    let mut software: Vec<String> = Vec::new();

    // ---- the sandbox floor: /bin/true -------------------------------------------------
    if on("floor") {
        let params = json!({ "text": TEXT });
        let spec = JobSpec::new(RuntimeKind::Native, "/bin/true").params(params.clone());
        let stdin = serde_json::to_vec(&params)?;
        let mode = |bwrap: bool, cgroups: bool| {
            Sandbox::detect_with(Options {
                allow_bwrap: bwrap,
                allow_cgroups: cgroups,
                ..Options::default()
            })
        };
        let ways = vec![
            Way::new(
                "F0",
                "by hand: `/bin/true < params`",
                by_hand(
                    Hand::new(Path::new("/bin/true"), &[], work.path(), &[], &stdin),
                    false,
                ),
            ),
            Way::new(
                "F1",
                "sandbox: bubblewrap + cgroups (what the runtimes use here)",
                sandboxed_true(&rt, (*sandbox).clone(), spec.clone()),
            )
            .vs("F0"),
            Way::new(
                "F2",
                "sandbox: bubblewrap only",
                sandboxed_true(&rt, mode(true, false), spec.clone()),
            )
            .vs("F0"),
            Way::new(
                "F3",
                "sandbox: cgroups only",
                sandboxed_true(&rt, mode(false, true), spec.clone()),
            )
            .vs("F0"),
            Way::new(
                "F4",
                "sandbox: neither (rlimits, namespaces by unshare)",
                sandboxed_true(&rt, mode(false, false), spec.clone()),
            )
            .vs("F0"),
        ];
        let mut got = measure("sandbox floor", ways, c.warmup, c.runs)?;
        // The same with a real interpreter's start-up (many files opened, a few MiB
        // of memory touched): Debian's python3, which every mode can show the tool
        // (`nobody` cannot read pyenv's under /root).
        const PY: &str = "/usr/bin/python3";
        const PY_ARGS: &[&str] = &["-I", "-S", "-B", "-c", "pass"];
        let ways = vec![
            Way::new(
                "S0",
                "by hand: `/usr/bin/python3 -I -S -B -c pass < params`",
                by_hand(Hand::new(Path::new(PY), PY_ARGS, work.path(), &[], &stdin), false),
            ),
            Way::new(
                "S1",
                "sandbox: bubblewrap + cgroups",
                sandboxed_cmd(&rt, (*sandbox).clone(), spec.clone(), PY, PY_ARGS),
            )
            .vs("S0"),
            Way::new(
                "S2",
                "sandbox: bubblewrap only",
                sandboxed_cmd(&rt, mode(true, false), spec.clone(), PY, PY_ARGS),
            )
            .vs("S0"),
            Way::new(
                "S3",
                "sandbox: cgroups only",
                sandboxed_cmd(&rt, mode(false, true), spec.clone(), PY, PY_ARGS),
            )
            .vs("S0"),
            Way::new(
                "S4",
                "sandbox: neither",
                sandboxed_cmd(&rt, mode(false, false), spec, PY, PY_ARGS),
            )
            .vs("S0"),
        ];
        got.extend(measure("sandbox floor, python3 -c pass", ways, c.warmup, c.runs)?);
        sections.push((
            "Sandbox floor: `/bin/true` and `python3 -c pass`".into(),
            "`sandbox.run(ProcessSpec::for_job(program, &job))` in each mode of the sandbox, \
             against the program spawned by hand; the same params on stdin."
                .into(),
            got.iter().map(|r| r.id).collect(),
        ));
        rows.extend(got);
    }

    // ---- native: an executable and a built-in -----------------------------------------
    if on("native") {
        // As the node configures it: tools kept by digest and run read-only in place.
        let native: Arc<dyn Runtime> = Arc::new(
            NativeRuntime::new(sandbox.clone(), helper.clone(), PIDS).with_store(data.path().join("native")),
        );
        let params = json!({ "text": TEXT });
        let stdin = serde_json::to_vec(&params)?;
        let exe = JobSpec::new(RuntimeKind::Native, text_tools.to_string_lossy()).params(params.clone());
        let ways = vec![
            Way::new(
                "N0",
                "by hand: `text-tools-cmd < params`",
                by_hand(Hand::new(&text_tools, &[], work.path(), &[], &stdin), true),
            ),
            Way::new(
                "N1",
                "ours: `NativeRuntime::execute` (the executable stored once by digest, run read-only in place)",
                ours(&rt, native.clone(), exe.clone()),
            )
            .vs("N0"),
            Way::new(
                "N1b",
                "context: the same bytes run by `Sandbox::run` directly (no read or hash of the file)",
                sandboxed_exe(&rt, sandbox.clone(), exe, std::fs::read(&text_tools)?),
            )
            .vs("N0"),
        ];
        let mut got = measure("native executable", ways, c.warmup, c.runs)?;
        let hash_params = json!({ "text": TEXT, "algorithm": "sha256" });
        let hash_stdin = serde_json::to_vec(&hash_params)?;
        let ways = vec![
            Way::new(
                "N2",
                "by hand: the tool host, `<helper> __tool-host builtin hash < params`",
                by_hand(
                    Hand::new(
                        &helper,
                        &[TOOL_HOST_SUBCOMMAND, "builtin", "hash"],
                        work.path(),
                        &[],
                        &hash_stdin,
                    ),
                    true,
                ),
            ),
            Way::new(
                "N3",
                "ours: `NativeRuntime::execute` of `builtin:hash` (the same helper, sandboxed)",
                ours(
                    &rt,
                    native,
                    JobSpec::new(RuntimeKind::Native, "builtin:hash").params(hash_params),
                ),
            )
            .vs("N2"),
        ];
        got.extend(measure("native built-in", ways, c.warmup, c.runs)?);
        sections.push((
            "Native".into(),
            format!(
                "`examples/rust/text-tools` built natively (`text-tools-cmd`, {} KiB, `word_stats`), and \
                 the built-in `hash` (sha256 of the text). The helper is this bench's binary, which \
                 hands `__tool-host` to `tool_host_main` as the node's binary does.",
                std::fs::metadata(&text_tools)?.len() / 1024
            ),
            got.iter().map(|r| r.id).collect(),
        ));
        rows.extend(got);
    }

    // (the `bytes` rows reuse the Go build: they run only with the `go` section)
    let mut go_bytes: Vec<u8> = Vec::new();
    // ---- Go: native build in the sandbox, wasip1 build on the WASM runtime ------------
    if on("go") {
        let wasm: Arc<dyn Runtime> = Arc::new(
            WasmRuntime::new(WasmOptions::new(data.path(), WasmConfig::default()))
                .map_err(|e| anyhow!("cannot start the WASM runtime: {e}"))?,
        );
        let go = Arc::new(GoRuntime::new(
            sandbox.clone(),
            wasm,
            &GoConfig::default(),
            data.path(),
            PIDS,
        ));
        let tc = go.toolchain().map_err(|e| anyhow!("{e}"))?.clone();
        software.push(format!("{} ({})", tc.version, tc.go.display()));
        let source = root.join("examples/go/wordfreq");
        let params = json!({ "text": TEXT, "top": 3 });
        let stdin = serde_json::to_vec(&params)?;
        let wasi = JobSpec::new(RuntimeKind::Go, source.to_string_lossy()).params(params);
        let mut native = wasi.clone();
        native.native = true;
        let go_rt: Arc<dyn Runtime> = go.clone();
        eprintln!("process-bench: go: first calls on an empty data dir (cold build cache) ...");
        let (took, _) = execute(&rt, go_rt.as_ref(), &native)?;
        firsts.push(First {
            what: "Go `--native`, empty data dir: `go build` with an empty GOCACHE (std + package), then the run".into(),
            took,
        });
        let (took, _) = execute(&rt, go_rt.as_ref(), &wasi)?;
        firsts.push(First {
            what: "Go wasip1 (default), then: `go build` for wasip1 (its std is cold too), wasmtime compiles the module, the run".into(),
            took,
        });
        // The very bytes the runtime runs, as the bare binary a user would have built.
        let built = rt
            .block_on(go.build(&source.to_string_lossy(), Target::Native))
            .map_err(|e| anyhow!("{e}"))?;
        let bare = work.path().join("wordfreq");
        std::fs::copy(&built.path, &bare)?;
        go_bytes = std::fs::read(&bare)?;
        let size = go_bytes.len() as u64;
        let ways = vec![
            Way::new(
                "G0",
                "by hand: `./wordfreq < params` (the runtime's native build)",
                by_hand(
                    Hand::new(Path::new("./wordfreq"), &[], work.path(), &[], &stdin),
                    true,
                ),
            ),
            Way::new(
                "G1",
                "ours: `GoRuntime::execute`, `native: true` (cached build, sandboxed)",
                ours(&rt, go_rt.clone(), native.clone()),
            )
            .vs("G0"),
            Way::new(
                "G1b",
                "context: the same bytes run by `Sandbox::run` directly (no source hashing, no read of the build)",
                sandboxed_exe(&rt, sandbox.clone(), native.clone(), go_bytes.clone()),
            )
            .vs("G0"),
            Way::new(
                "G2",
                "ours: `GoRuntime::execute`, default: wasip1 build on the WASM runtime (comparison)",
                ours(&rt, go_rt, wasi),
            )
            .vs("G0"),
        ];
        let got = measure("go", ways, c.warmup, c.runs)?;
        sections.push((
            "Go".into(),
            format!(
                "`examples/go/wordfreq` (top 3 words). Natively built: a static {} KiB executable \
                 (`CGO_ENABLED=0`). The default build is a wasip1 reactor with the Go SDK's exports \
                 ABI (the package has `hanzo_exports` files), run by the WASM runtime.",
                size / 1024
            ),
            got.iter().map(|r| r.id).collect(),
        ));
        rows.extend(got);
    }

    // ---- where the time goes: the fixed cost and the tool's bytes -----------------
    if on("bytes") && !go_bytes.is_empty() {
        let spec = JobSpec::new(RuntimeKind::Native, "/bin/true").params(json!({ "text": TEXT }));
        let exe = std::fs::read(&text_tools)?;
        let with_file = |bytes: Vec<u8>| {
            let (sandbox, spec, rt) = (sandbox.clone(), spec.clone(), &rt);
            let cancel = CancelToken::new();
            Box::new(move || {
                let job = Job::new(spec.clone());
                let p = ProcessSpec::for_job("/bin/true", &job)
                    .executable("tool", bytes.clone())
                    .pids_limit(PIDS);
                let t = Instant::now();
                let o = rt.block_on(sandbox.run(p, &cancel));
                let d = t.elapsed();
                ensure!(o.success(), "/bin/true with a work file: {:?}", o.exit);
                Ok((d, Value::Null))
            }) as Box<dyn FnMut() -> Sample + '_>
        };
        let exe_path = text_tools.clone();
        let ways = vec![
            Way::new(
                "C0",
                "`/bin/true` in the sandbox (as F1)",
                sandboxed_true(&rt, (*sandbox).clone(), spec.clone()),
            ),
            Way::new(
                "C1",
                format!(
                    "`/bin/true` in the sandbox with text-tools-cmd's {} KiB as an executable work file",
                    exe.len() / 1024
                ),
                with_file(exe.clone()),
            )
            .vs("C0"),
            Way::new(
                "C2",
                format!(
                    "`/bin/true` in the sandbox with wordfreq's {} KiB as an executable work file",
                    go_bytes.len() / 1024
                ),
                with_file(go_bytes.clone()),
            )
            .vs("C0"),
            Way::new(
                "C3",
                "in process: read text-tools-cmd and sha256 it (what `NativeRuntime` does per call)",
                Box::new(move || {
                    use sha2::Digest;
                    let t = Instant::now();
                    let bytes = std::fs::read(&exe_path)?;
                    let digest = sha2::Sha256::digest(&bytes);
                    let d = t.elapsed();
                    std::hint::black_box(digest);
                    Ok((d, Value::Null))
                }),
            ),
        ];
        let got = measure("sandbox payload", ways, c.warmup, c.runs)?;
        sections.push((
            "Where the time goes: the tool's bytes".into(),
            "A native tool's bytes are placed in the sandbox on every call (a memfd, copied by \
             bubblewrap into the job's tmpfs), so that the code that runs is exactly what the \
             receipt's hash names; these rows time that copy alone, and the per-call read and hash \
             of the native runtime."
                .into(),
            got.iter().map(|r| r.id).collect(),
        ));
        rows.extend(got);
    }

    // ---- Deno -------------------------------------------------------------------------
    if on("deno") {
        let deno = Arc::new(DenoRuntime::new(
            sandbox.clone(),
            &DenoConfig::default(),
            data.path(),
            PIDS,
        ));
        let deno_bin = deno
            .deno_path()
            .ok_or_else(|| anyhow!("deno is not installed (pip install deno)"))?
            .to_path_buf();
        software.push(format!(
            "deno {} ({})",
            deno.version().map_err(|e| anyhow!("{e}"))?.deno,
            deno_bin.display()
        ));
        let tool = root.join("examples/deno/text.ts");
        let dir = work.path().join("deno");
        std::fs::create_dir_all(&dir)?;
        // The same work as the node's runner: params from stdin, the tool's `run`,
        // its result as JSON on stdout.
        std::fs::write(
            dir.join("wrapper.ts"),
            format!(
                "import {{ run }} from \"file://{}\";\n\
                 const params = JSON.parse(await new Response(Deno.stdin.readable).text());\n\
                 console.log(JSON.stringify(await run(params)));\n",
                tool.display()
            ),
        )?;
        let params = json!({ "text": TEXT, "top": 3 });
        let stdin = serde_json::to_vec(&params)?;
        let spec = JobSpec::new(RuntimeKind::Deno, tool.to_string_lossy()).params(params);
        let deno_rt: Arc<dyn Runtime> = deno.clone();
        eprintln!("process-bench: deno: first call on an empty module cache ...");
        let (took, _) = execute(&rt, deno_rt.as_ref(), &spec)?;
        // Our exact deno command line, run without the sandbox: its work files written
        // to a directory, DENO_DIR a copy of the prepared cache (so that what this row
        // writes to it cannot help or hurt ours, which gets the cache read-only).
        let command = deno
            .command(&Job::new(spec.clone()))
            .map_err(|e| anyhow!("{e}"))?;
        let cmd_dir = work.path().join("deno-command");
        for f in &command.workdir_files {
            let path = cmd_dir.join(&f.name);
            std::fs::create_dir_all(path.parent().expect("a file in a directory"))?;
            std::fs::write(&path, &f.contents)?;
        }
        let cmd_cache = work.path().join("deno-command-cache");
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(deno.cache_dir())
            .arg(&cmd_cache)
            .status()?;
        ensure!(status.success(), "cannot copy the deno cache");
        let mut cmd_env = command.env.clone();
        if cmd_env.contains_key("DENO_DIR") {
            cmd_env.insert("DENO_DIR".into(), cmd_cache.to_string_lossy().into_owned());
        }
        let cmd_args: Vec<&str> = command.args.iter().map(String::as_str).collect();
        let ours_by_hand = Hand::new(&command.program, &cmd_args, &cmd_dir, &[], &stdin).clean_env(&cmd_env);
        firsts.push(First {
            what: "Deno, empty module cache: `deno install` of the tool (sandboxed), then the run".into(),
            took,
        });
        let cache = work.path().join("deno-cache");
        let cache = cache.to_string_lossy();
        let ways = vec![
            Way::new(
                "D0",
                "by hand: `deno run wrapper.ts < params` (warm DENO_DIR)",
                by_hand(
                    Hand::new(
                        &deno_bin,
                        &["run", "wrapper.ts"],
                        &dir,
                        &[
                            ("DENO_DIR", &cache),
                            ("DENO_NO_UPDATE_CHECK", "1"),
                            ("NO_COLOR", "1"),
                        ],
                        &stdin,
                    ),
                    true,
                ),
            ),
            Way::new(
                "D0b",
                "context: our deno command line (`DenoRuntime::command`: runner, permissions, `--cached-only`, heap flag) run by hand, no sandbox",
                by_hand(ours_by_hand, true),
            )
            .vs("D0"),
            Way::new(
                "D1",
                "ours: `DenoRuntime::execute` (prepared module cache and the tool's V8 code cache)",
                ours(&rt, deno_rt, spec),
            )
            .vs("D0"),
            Way::new(
                "D1b",
                "context: the same sandboxed command (`DenoRuntime::command`) through `Sandbox::run` directly (no source read or hash, no prepared or code cache check)",
                sandboxed_spec(&rt, sandbox.clone(), command.clone()),
            )
            .vs("D0"),
            Way::new(
                "D1c",
                "context: D1b without the tool's V8 code cache (its three read-only files not mounted: deno compiles the runner, the tool and its lazy modules, as before the code cache)",
                sandboxed_spec(&rt, sandbox.clone(), {
                    let mut c = command.clone();
                    c.mounts.retain(|m| !m.guest.contains(hanzo_deno_runtime::CODE_CACHE_DB));
                    c
                }),
            )
            .vs("D1b"),
        ];
        let got = measure("deno", ways, c.warmup, c.runs)?;
        sections.push((
            "Deno".into(),
            "`examples/deno/text.ts`, `run` (async: word counts, top words, a Web Crypto sha256). \
             By hand: a four-line `wrapper.ts` that imports the tool, reads the params from stdin \
             and prints the result, run with the same deno binary and no permission flags."
                .into(),
            got.iter().map(|r| r.id).collect(),
        ));
        rows.extend(got);
    }

    // ---- Python -----------------------------------------------------------------------
    let mut colds: Vec<Cold> = Vec::new();
    if on("python") {
        let python = Arc::new(PythonRuntime::new(
            sandbox.clone(),
            &PythonConfig::default(),
            data.path(),
            PIDS,
        ));
        let health = rt.block_on(python.health());
        ensure!(
            health.available,
            "the Python runtime is unavailable: {}",
            health.detail.unwrap_or_default()
        );
        software.push(health.version.unwrap_or_default());
        // The interpreter and uv the runtime found (same lookup: PATH, past pyenv shims).
        let py = find_program("python3", None).map_err(|e| anyhow!("{e}"))?;
        let uv = find_program("uv", None).map_err(|e| anyhow!("{e}"))?;
        let dir = work.path().join("python");
        std::fs::create_dir_all(&dir)?;
        let examples = root.join("examples/python");
        // Copies next to the wrappers, so that by-hand runs write their __pycache__
        // there (as a user's would), not into the repository.
        for f in ["csv_stats.py", "table.py"] {
            std::fs::copy(examples.join(f), dir.join(f))?;
        }
        let wrapper = |module: &str, header: &str| {
            format!(
                "{header}import json, sys\n\
                 sys.path.insert(0, {dir:?})\n\
                 import {module}\n\
                 print(json.dumps({module}.run(json.load(sys.stdin))))\n",
                dir = dir.display().to_string()
            )
        };
        std::fs::write(dir.join("csv_wrapper.py"), wrapper("csv_stats", ""))?;
        let table_src = std::fs::read_to_string(examples.join("table.py"))?;
        std::fs::write(
            dir.join("table_wrapper.py"),
            wrapper("table", &pep723_block(&table_src)?),
        )?;
        // Our runner with fresh copies of the tools, for the rows that run our command
        // line by hand: -B writes no __pycache__, and none is there to read.
        let runner_dir = work.path().join("python-runner");
        std::fs::create_dir_all(&runner_dir)?;
        std::fs::write(
            runner_dir.join(hanzo_python_runtime::RUNNER_NAME),
            hanzo_python_runtime::RUNNER,
        )?;
        for f in ["csv_stats.py", "table.py"] {
            std::fs::copy(examples.join(f), runner_dir.join(f))?;
        }
        let runner_env = [("HANZO_FUNCTION", "run")];
        let uv_cache = work.path().join("uv-cache");
        let (uv_cache, py_s) = (uv_cache.to_string_lossy(), py.to_string_lossy());
        // uv finds its interpreter on PATH otherwise, here through pyenv's shims (a
        // shell script per query, ~200 ms): name the one the runtime uses.
        let uv_env = [("UV_CACHE_DIR", &*uv_cache), ("UV_PYTHON", &*py_s)];

        // No dependencies: csv_stats.py.
        let csv_params = json!({ "csv": "city,temp,pop\nOslo,3.5,709\nRome,14,2873\nCairo,22.5,9540\n" });
        let csv_stdin = serde_json::to_vec(&csv_params)?;
        let csv_spec = JobSpec::new(
            RuntimeKind::Python,
            examples.join("csv_stats.py").to_string_lossy(),
        )
        .params(csv_params);
        let ways = vec![
            Way::new(
                "P0",
                "by hand: `python3 csv_wrapper.py < params`",
                by_hand(Hand::new(&py, &["csv_wrapper.py"], &dir, &[], &csv_stdin), true),
            ),
            Way::new(
                "P1",
                "by hand: `python3 -I -S -B csv_wrapper.py` (our runner's flags; context)",
                by_hand(
                    Hand::new(&py, &["-I", "-S", "-B", "csv_wrapper.py"], &dir, &[], &csv_stdin),
                    true,
                ),
            ),
            Way::new(
                "P1b",
                "context: our command line (`python3 -I -S -B .hanzo_runner.py csv_stats.py`) run by hand, no sandbox",
                by_hand(
                    Hand::new(
                        &py,
                        &[
                            "-I",
                            "-S",
                            "-B",
                            hanzo_python_runtime::RUNNER_NAME,
                            "csv_stats.py",
                        ],
                        &runner_dir,
                        &runner_env,
                        &csv_stdin,
                    ),
                    true,
                ),
            ),
            Way::new(
                "P2",
                "by hand: `uv run --script csv_wrapper.py < params`",
                by_hand(
                    Hand::new(
                        &uv,
                        &["run", "--script", "csv_wrapper.py"],
                        &dir,
                        &uv_env,
                        &csv_stdin,
                    ),
                    true,
                ),
            ),
            Way::new(
                "P3",
                "ours: `PythonRuntime::execute` (no environment: the interpreter with -I -S -B)",
                ours(&rt, python.clone(), csv_spec),
            )
            .vs("P0"),
        ];
        let mut got = measure("python, no dependencies", ways, c.warmup, c.runs)?;

        // A PEP 723 dependency: table.py (tabulate).
        let table_params =
            json!({ "rows": [["Oslo", 3.5], ["Rome", 14], ["Cairo", 22.5]], "headers": ["city", "temp"] });
        let table_stdin = serde_json::to_vec(&table_params)?;
        let table_spec = JobSpec::new(RuntimeKind::Python, examples.join("table.py").to_string_lossy())
            .params(table_params);
        let python: Arc<dyn Runtime> = python;
        eprintln!("process-bench: python: first call of table.py on an empty data dir ...");
        let (took, _) = execute(&rt, python.as_ref(), &table_spec)?;
        firsts.push(First {
            what: "Python `table.py`, empty data dir: `uv venv` + `uv pip install tabulate` (empty uv cache: from PyPI; sandboxed), then the run".into(),
            took,
        });
        let envs = data.path().join("python/envs");
        let env_dir = only_env(&envs)?;
        let env_python = env_dir.join("bin/python");
        let ways = vec![
            Way::new(
                "P4",
                "by hand: `uv run --script table_wrapper.py < params` (uv's cached script environment)",
                by_hand(
                    Hand::new(
                        &uv,
                        &["run", "--script", "table_wrapper.py"],
                        &dir,
                        &uv_env,
                        &table_stdin,
                    ),
                    true,
                ),
            ),
            Way::new(
                "P5",
                "by hand: `<env>/bin/python table_wrapper.py < params` (our cached environment's interpreter)",
                by_hand(
                    Hand::new(&env_python, &["table_wrapper.py"], &dir, &[], &table_stdin),
                    true,
                ),
            ),
            Way::new(
                "P5b",
                "context: our command line (`<env>/bin/python -I -B .hanzo_runner.py table.py`) run by hand, no sandbox",
                by_hand(
                    Hand::new(
                        &env_python,
                        &["-I", "-B", hanzo_python_runtime::RUNNER_NAME, "table.py"],
                        &runner_dir,
                        &runner_env,
                        &table_stdin,
                    ),
                    true,
                ),
            ),
            Way::new(
                "P6",
                "ours: `PythonRuntime::execute`, environment cached",
                ours(&rt, python.clone(), table_spec.clone()),
            )
            .vs("P4"),
        ];
        let mut deps = measure("python, PEP 723 dependency", ways, c.warmup, c.runs)?;
        // P6 is also compared with P5, in the targets table.
        got.append(&mut deps);
        sections.push((
            "Python".into(),
            format!(
                "`examples/python/csv_stats.py` (no dependencies) and `examples/python/table.py` \
                 (PEP 723: `tabulate>=0.9`). By hand: a wrapper that imports the tool, reads the \
                 params from stdin and prints `json.dumps(run(params))`; the same interpreter \
                 ({}); uv with its own warm cache and `UV_PYTHON` set to that interpreter.",
                py.display()
            ),
            got.iter().map(|r| r.id).collect(),
        ));
        rows.extend(got);

        // Cold environment, uv's cache warm: the environment is removed before each run.
        eprintln!(
            "process-bench: python: {} runs with a cold environment (uv cache warm) ...",
            c.cold
        );
        let mut cold = Vec::new();
        for _ in 0..c.cold {
            std::fs::remove_dir_all(only_env(&envs)?)?;
            cold.push(execute(&rt, python.as_ref(), &table_spec)?.0);
        }
        colds.push(Cold {
            id: "P7",
            label: "ours, cold environment (removed before each run; uv's cache warm: `uv venv` + install from the cache)".into(),
            lat: Latency::of(&cold),
        });
        // Fully cold: a new data dir (empty uv cache) and a new runtime each time.
        if c.fully_cold > 0 {
            eprintln!(
                "process-bench: python: {} runs on an empty data dir (downloads from PyPI) ...",
                c.fully_cold
            );
            let mut fully = Vec::new();
            for _ in 0..c.fully_cold {
                let fresh = tempfile::tempdir()?;
                let rt_py = PythonRuntime::new(sandbox.clone(), &PythonConfig::default(), fresh.path(), PIDS);
                fully.push(execute(&rt, &rt_py, &table_spec)?.0);
            }
            colds.push(Cold {
                id: "P8",
                label: "ours, fully cold (new data dir: empty uv cache, tabulate downloaded from PyPI)"
                    .into(),
                lat: Latency::of(&fully),
            });
        }
    }

    let elapsed = started.elapsed();
    let others = cpu_start
        .zip(facts::CpuTimes::now())
        .and_then(|(a, b)| a.others_share(&b));
    let load_end = facts::loadavg();

    // ---- the report -------------------------------------------------------------------
    let by_id: HashMap<&str, &Row> = rows.iter().map(|r| (r.id, r)).collect();
    let mut r = String::new();
    writeln!(r, "# Process runtimes benchmark\n")?;
    writeln!(
        r,
        "- **Machine:** {}; load average (1/5/15 min) {load_start} at start, {load_end} at end; other processes (and hypervisor steal) used {} of the machine's CPU during the run",
        facts::machine(),
        others
            .map(|o| format!("{:.0}%", o * 100.0))
            .unwrap_or_else(|| "an unknown share".into())
    )?;
    writeln!(
        r,
        "- **Software:** hanzo-node {} (git {}), {}, bubblewrap {}",
        env!("CARGO_PKG_VERSION"),
        facts::git(&root),
        software.join(", "),
        sandbox.bwrap_version().unwrap_or("none")
    )?;
    writeln!(r, "- **Sandbox:** {}", sandbox.describe())?;
    writeln!(
        r,
        "- **Method:** {} timed runs per row after {} warm-up runs; the rows of one comparison interleaved run by run in a rotating order, so background load hits them alike. *By hand*: the program spawned by the bench as a shell would (fork/exec, params on stdin, the bench's environment), timed from spawn to exit with its output read. *Ours*: `Runtime::execute(&job)` on a tokio multi_thread runtime (2 workers), a new `Job` per run (no receipt), timed around the call. Every run's output is checked equal to the by-hand output. Percentiles are nearest-rank (with fewer than 100 runs, p99 is the slowest run). Total run time {:.0} s.",
        c.runs,
        c.warmup,
        elapsed.as_secs_f64()
    )?;
    for (title, about, ids) in &sections {
        writeln!(r, "\n## {title}\n\n{about}\n")?;
        writeln!(
            r,
            "| # | path | p50 ms | p90 ms | p99 ms | mean ms | p50 vs base | +p50 ms |"
        )?;
        writeln!(r, "|---|---|---:|---:|---:|---:|---:|---:|")?;
        for id in ids {
            let row = by_id[id];
            let (vs, plus) = match row.base.and_then(|b| by_id.get(b)) {
                Some(b) => (
                    format!("{:.2}x ({})", ratio(row.lat.p50, b.lat.p50), b.id),
                    format!(
                        "{:+.2}",
                        (row.lat.p50.as_secs_f64() - b.lat.p50.as_secs_f64()) * 1e3
                    ),
                ),
                None => ("—".into(), "—".into()),
            };
            writeln!(
                r,
                "| {} | {} | {} | {} | {} | {} | {vs} | {plus} |",
                row.id,
                row.label,
                ms(row.lat.p50),
                ms(row.lat.p90),
                ms(row.lat.p99),
                ms(row.lat.mean),
            )?;
        }
    }
    if !colds.is_empty() {
        let cached = by_id["P6"].lat.p50;
        writeln!(r, "\n### Python: cached against cold environments (`table.py`)\n")?;
        writeln!(
            r,
            "| # | path | runs | p50 ms | mean ms | max ms | p50 vs cached (P6) |"
        )?;
        writeln!(r, "|---|---|---:|---:|---:|---:|---:|")?;
        writeln!(
            r,
            "| P6 | ours, environment cached | {} | {} | {} | {} | 1.00x |",
            by_id["P6"].lat.n,
            ms(cached),
            ms(by_id["P6"].lat.mean),
            ms(by_id["P6"].lat.max)
        )?;
        for cold in &colds {
            writeln!(
                r,
                "| {} | {} | {} | {} | {} | {} | {:.1}x |",
                cold.id,
                cold.label,
                cold.lat.n,
                ms(cold.lat.p50),
                ms(cold.lat.mean),
                ms(cold.lat.max),
                ratio(cold.lat.p50, cached)
            )?;
        }
    }
    writeln!(r, "\n## First call on an empty data directory (once each)\n")?;
    writeln!(r, "| first call | ms |")?;
    writeln!(r, "|---|---:|")?;
    for f in &firsts {
        writeln!(r, "| {} | {:.0} |", f.what, f.took.as_secs_f64() * 1e3)?;
    }
    writeln!(r, "\n## Targets: ours / by hand at p50, at most {TARGET}x\n")?;
    writeln!(
        r,
        "| runtime | ours | by hand | ours p50 ms | by hand p50 ms | ratio p50 | ratio mean | ≤ {TARGET}x |"
    )?;
    writeln!(r, "|---|---|---|---:|---:|---:|---:|---|")?;
    let targets = [
        ("sandbox floor", "F1", "F0", false),
        ("sandbox floor, python3 -c pass", "S1", "S0", false),
        ("native executable", "N1", "N0", true),
        ("native built-in", "N3", "N2", true),
        ("Go --native", "G1", "G0", true),
        ("Go wasip1 (WASM runtime)", "G2", "G0", false),
        ("Deno", "D1", "D0", true),
        ("Python, no dependencies", "P3", "P0", true),
        ("Python, no dependencies, vs uv run", "P3", "P2", true),
        ("Python, cached env, vs uv run", "P6", "P4", true),
        ("Python, cached env, vs the env's python", "P6", "P5", true),
        (
            "native: runtime share (vs `Sandbox::run` of the bytes)",
            "N1",
            "N1b",
            false,
        ),
        (
            "Go --native: runtime share (vs `Sandbox::run` of the bytes)",
            "G1",
            "G1b",
            false,
        ),
        (
            "Deno: sandbox share (vs our command line by hand)",
            "D1",
            "D0b",
            false,
        ),
        (
            "Deno: runtime share (vs `Sandbox::run` of its command)",
            "D1",
            "D1b",
            false,
        ),
        (
            "Python, no dependencies: sandbox share (vs our command line by hand)",
            "P3",
            "P1b",
            false,
        ),
        (
            "Python, cached env: sandbox share (vs our command line by hand)",
            "P6",
            "P5b",
            false,
        ),
    ];
    for (what, a, b, target) in targets {
        // (a row of a section left out by --only)
        let (Some(&x), Some(&y)) = (by_id.get(a), by_id.get(b)) else {
            continue;
        };
        let p50 = ratio(x.lat.p50, y.lat.p50);
        let verdict = if !target {
            "no target (context)".to_string()
        } else if p50 <= TARGET {
            "met".to_string()
        } else {
            "**missed**".to_string()
        };
        writeln!(
            r,
            "| {what} | {a} | {b} | {} | {} | {p50:.2}x | {:.2}x | {verdict} |",
            ms(x.lat.p50),
            ms(y.lat.p50),
            ratio(x.lat.mean, y.lat.mean)
        )?;
    }
    print!("{r}");
    if let Some(out) = &args.out {
        std::fs::write(out, &r).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

/// The `# /// script` block at the top of a PEP 723 script, with its closing line.
fn pep723_block(source: &str) -> Result<String> {
    let mut block = String::new();
    let mut inside = false;
    for line in source.lines() {
        if line.trim_end() == "# /// script" {
            inside = true;
        }
        if inside {
            block.push_str(line);
            block.push('\n');
            if line.trim_end() == "# ///" {
                return Ok(block);
            }
        }
    }
    bail!("no complete `# /// script` block")
}

/// The one environment in `envs` (the cached-env rows build exactly one).
fn only_env(envs: &Path) -> Result<PathBuf> {
    let found: Vec<PathBuf> = std::fs::read_dir(envs)
        .with_context(|| format!("cannot list {}", envs.display()))?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one environment in {}, found {}",
            envs.display(),
            found.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep723_header_of_the_example() {
        let src = include_str!("../../../examples/python/table.py");
        let block = pep723_block(src).unwrap();
        assert!(block.starts_with("# /// script\n"));
        assert!(block.ends_with("# ///\n"));
        assert!(block.contains("tabulate"));
        assert!(pep723_block("import os\n").is_err());
    }
}
