//! `hanzo-node run <RUNTIME> <SOURCE> ...` (CONTRACTS §3).

use crate::node::Node;
use clap::Args;
use hanzo_compute::stdio::LogSink;
use hanzo_compute::{
    ComputeError, Job, JobOutcome, JobSpec, Mount, Network, ResourceLimits, RuntimeKind, Signing,
    parse_env_pair,
};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The limit flags of every command that starts a job (`run`, `job submit`, `tool add`):
/// one set, so their names, defaults and meaning cannot drift apart (CONTRACTS §3).
/// A flag left out takes `ResourceLimits::default()`'s value, named in its help.
#[derive(Args, Debug, Clone, Default)]
pub struct LimitArgs {
    /// Memory limit in MiB (default 256).
    #[arg(long, value_name = "N")]
    pub memory_mb: Option<u64>,
    /// Wall-clock limit in milliseconds (default 30000).
    #[arg(long, value_name = "N")]
    pub timeout_ms: Option<u64>,
    /// Fuel limit, WASM only (default: unmetered beyond the timeout).
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Relative CPU weight (default 1024).
    #[arg(long, value_name = "N")]
    pub cpu_shares: Option<u32>,
    /// Scratch disk in MiB (default 512).
    #[arg(long, value_name = "N")]
    pub disk_mb: Option<u64>,
    /// Cap on the output in bytes (default 16 MiB).
    #[arg(long, value_name = "N")]
    pub max_output_bytes: Option<u64>,
}

impl LimitArgs {
    /// The limits the flags ask for, the defaults filling the rest. The output cap's
    /// default is the caller's: `run` takes the node's `[compute] max_output_bytes`.
    pub fn to_limits(&self, default_output_cap: u64) -> ResourceLimits {
        let d = ResourceLimits::default();
        ResourceLimits {
            cpu_shares: self.cpu_shares.unwrap_or(d.cpu_shares),
            memory_mb: self.memory_mb.unwrap_or(d.memory_mb),
            disk_mb: self.disk_mb.unwrap_or(d.disk_mb),
            network_bandwidth_mbps: None,
            timeout_ms: self.timeout_ms.unwrap_or(d.timeout_ms),
            fuel: self.fuel,
            max_output_bytes: self.max_output_bytes.unwrap_or(default_output_cap),
        }
    }
}

#[derive(Args, Debug)]
// `run` (and `job submit`, which shares these flags) take the output cap's default from
// the configuration, so say so there.
#[command(mut_arg("max_output_bytes", |a| {
    a.help("Cap on the output in bytes (default 16 MiB, or [compute] max_output_bytes)")
}))]
pub struct RunArgs {
    /// wasm | docker | deno | python | go | native | k8s | mcp | agent
    pub runtime: String,
    /// A file or directory path, an image reference, sha256:<hex> of a stored module,
    /// for mcp the URL or command line of an MCP server, for agent an agent file.
    pub source: String,
    /// The function to call (default: run, or the module's only tool function).
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
    /// The tool's params as JSON; `-` reads them from stdin. Without --params or
    /// --params-file, a stdin that is a pipe or a file is read (empty: {}); a terminal
    /// or a socket never is.
    #[arg(long, value_name = "JSON", conflicts_with = "params_file")]
    pub params: Option<String>,
    /// Read the params from a file (`-`: stdin).
    #[arg(long, value_name = "PATH")]
    pub params_file: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// none (default) or full.
    #[arg(long, value_name = "none|full", default_value = "none")]
    pub network: String,
    /// Grant an environment variable (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Grant a host directory, read-only unless :rw (repeatable).
    #[arg(long = "mount", value_name = "HOST:GUEST[:ro|rw]")]
    pub mounts: Vec<String>,
    /// Run under the deterministic profile (WASM).
    #[arg(long)]
    pub deterministic: bool,
    /// Go: build the package for this host and run it in the process sandbox instead of
    /// building it to wasip1 for the WASM runtime.
    #[arg(long)]
    pub native: bool,
    /// The user to run as (containers; default: an unprivileged user).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Write the receipt to this file.
    #[arg(long, value_name = "PATH")]
    pub receipt: Option<PathBuf>,
    /// Print the whole result {"output", "usage", "receipt"} instead of the output.
    #[arg(long)]
    pub json: bool,
}

impl RunArgs {
    /// The job spec, or a bad-input error naming the flag.
    pub fn to_spec(&self, default_output_cap: u64) -> Result<JobSpec, ComputeError> {
        let runtime: RuntimeKind = self.runtime.parse()?;
        let params = crate::params::resolve(self.params.as_deref(), self.params_file.as_deref())?;
        let limits = self.limits.to_limits(default_output_cap);
        let mut spec = JobSpec::new(runtime, &self.source).params(params).limits(limits);
        spec.function = self.function.clone();
        spec.network = self.network.parse::<Network>()?;
        for e in &self.env {
            let (k, v) = parse_env_pair(e)?;
            spec.env.insert(k, v);
        }
        spec.mounts = self
            .mounts
            .iter()
            .map(|m| m.parse::<Mount>())
            .collect::<Result<_, _>>()?;
        spec.deterministic = self.deterministic;
        spec.user = self.user.clone();
        if self.native && spec.runtime != RuntimeKind::Go {
            return Err(ComputeError::invalid("--native applies to the go runtime only"));
        }
        spec.native = self.native;
        Ok(spec)
    }
}

pub async fn run(config: Option<&Path>, args: RunArgs) -> anyhow::Result<u8> {
    // Parse the runtime name before anything else, so a typo is a usage error even
    // when the configuration cannot load.
    let kind: RuntimeKind = args.runtime.parse()?;
    if kind == RuntimeKind::Agent {
        return crate::agent_cmd::run(config, args).await;
    }
    let node = Node::build(config, Some(kind), false).await?;
    let mut spec = args.to_spec(node.config.compute.max_output_bytes)?;
    // The node's ceilings hold here too (exit 2 naming the limit), which also keeps
    // every deadline and byte count the runtimes compute from a limit in range.
    hanzo_compute::Ceilings::from_config(&node.config.compute).check(&spec.limits)?;
    // A relative mount means this shell's directory; resolved once, here, so that the
    // runtime binds exactly the path that was checked. The operator at their own shell
    // may mount anything (no mount roots).
    let cwd = std::env::current_dir()
        .map_err(|e| ComputeError::invalid(format!("--mount: cannot read the current directory: {e}")))?;
    for m in &mut spec.mounts {
        *m = hanzo_compute::mounts::resolve_local(m, &cwd)?;
    }
    // `./venv/bin/server` means this shell's directory too.
    if kind == RuntimeKind::Mcp {
        spec.source = hanzo_mcp::Source::absolutize(&spec.source, &cwd)?;
    }
    if node.compute.runtime(kind).is_none() {
        return Err(ComputeError::Unavailable(node.unavailable_reason(kind)).into());
    }
    let code = run_spec(&node.compute, spec, &args).await;
    if kind == RuntimeKind::Wasm {
        // The process ends with this one job. Tearing the WASM runtime down first
        // (unmapping the engine's reservations, joining the epoch thread, freeing its
        // tables) repeats what the kernel's exit does anyway, and it writes nothing:
        // leaving it to the exit saved ~0.13 ms of `run wasm` (BENCHMARKS.md, "`run
        // wasm`'s process"). Other runtimes are dropped: theirs may own child processes
        // (an MCP server, a container) that their drop stops.
        std::mem::forget(node);
    }
    code
}

/// Runs `spec` on `compute` as the operator's one-shot job: its logs to our stderr as
/// they are written, then the output (or `--json` result) and the receipt as the
/// contract asks; returns the exit code.
pub async fn run_spec(compute: &hanzo_compute::Compute, spec: JobSpec, args: &RunArgs) -> anyhow::Result<u8> {
    // The tool's log stream goes to our stderr as it is written (as `docker run` does),
    // so a long job shows its progress; `report` adds only what the runtime appended at
    // the end (a note about dropped bytes). Escaped: the tool is not trusted with the
    // operator's terminal (crate::escape).
    let streamed = Arc::new(AtomicUsize::new(0));
    let escaper = Arc::new(std::sync::Mutex::new(crate::escape::Escaper::default()));
    let sink = {
        let streamed = streamed.clone();
        let escaper = escaper.clone();
        LogSink::new(move |chunk| {
            let text = escaper.lock().unwrap_or_else(|p| p.into_inner()).push(chunk);
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
            streamed.fetch_add(chunk.len(), Ordering::Relaxed);
        })
    };
    // The slow first-run steps get a spinner on a terminal, unless -q.
    let spinner = crate::progress::wanted() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let job = Job::new(spec)
        .with_log_sink(sink)
        .with_progress(crate::progress::steps(spinner));
    // The receipt is what `--receipt` writes and `--json` prints; with neither, nothing
    // reads it. Not making one spares a one-shot command the signature, the hashes and
    // sha2's CPU feature checks they bring (BENCHMARKS.md, issue 17, ninth session).
    let signing = if args.receipt.is_some() || args.json {
        Signing::On
    } else {
        Signing::Off
    };
    let outcome = compute.run_job(&job, signing).await;
    report(
        &outcome,
        streamed.load(Ordering::Relaxed),
        &escaper,
        args.receipt.as_deref(),
        args.json,
    )
}

/// Prints the outcome as the contract asks, writes the receipt, and returns the exit
/// code (an error line is printed by `main`). The first `streamed` bytes of the logs
/// were printed live already.
pub fn report(
    outcome: &JobOutcome,
    streamed: usize,
    escaper: &std::sync::Mutex<crate::escape::Escaper>,
    receipt_path: Option<&Path>,
    json: bool,
) -> anyhow::Result<u8> {
    // The tool's own log stream goes to our stderr, escaped, before any error line.
    if !outcome.logs.is_empty() {
        let mut err = std::io::stderr().lock();
        let mut e = escaper.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = e.push(outcome.logs.get(streamed..).unwrap_or_default());
        text.push_str(&e.finish());
        let _ = err.write_all(text.as_bytes());
        if !outcome.logs.ends_with(b"\n") {
            let _ = err.write_all(b"\n");
        }
    }
    if let (Some(path), Some(receipt)) = (receipt_path, &outcome.receipt) {
        let text = serde_json::to_string_pretty(&receipt.to_value())?;
        std::fs::write(path, text + "\n")
            .map_err(|e| ComputeError::internal(format!("cannot write receipt {}: {e}", path.display())))?;
    }
    let receipt = outcome
        .receipt
        .as_ref()
        .map(|r| r.to_value())
        .unwrap_or(Value::Null);
    match &outcome.result {
        Ok(output) => {
            let line = if json {
                json!({"output": output, "usage": outcome.usage, "receipt": receipt})
            } else {
                output.clone()
            };
            println!("{}", serde_json::to_string(&line)?);
            Ok(0)
        }
        Err(e) => {
            if json {
                let line = json!({
                    "error": {"code": e.code(), "message": e.to_string()},
                    "usage": outcome.usage,
                    "receipt": receipt,
                });
                println!("{}", serde_json::to_string(&line)?);
            }
            Err(e.clone().into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        limits: LimitArgs,
    }

    #[test]
    fn limit_flags_left_out_take_the_defaults_their_help_names() {
        let d = ResourceLimits::default();
        let parsed = Probe::try_parse_from(["probe"]).unwrap().limits;
        let limits = parsed.to_limits(7);
        assert_eq!(limits.memory_mb, d.memory_mb);
        assert_eq!(limits.timeout_ms, d.timeout_ms);
        assert_eq!(limits.cpu_shares, d.cpu_shares);
        assert_eq!(limits.disk_mb, d.disk_mb);
        assert_eq!(limits.fuel, None);
        assert_eq!(limits.max_output_bytes, 7, "the caller's output cap");
        assert_eq!(limits.network_bandwidth_mbps, None);

        // The help states each default; it must be the one applied.
        let cmd = Probe::command();
        let help = |id: &str| {
            cmd.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_help())
                .map(|h| h.to_string())
                .unwrap_or_default()
        };
        assert!(help("memory_mb").contains(&format!("default {}", d.memory_mb)));
        assert!(help("timeout_ms").contains(&format!("default {}", d.timeout_ms)));
        assert!(help("cpu_shares").contains(&format!("default {}", d.cpu_shares)));
        assert!(help("disk_mb").contains(&format!("default {}", d.disk_mb)));
        assert_eq!(d.max_output_bytes, 16 << 20);
        assert!(help("max_output_bytes").contains("default 16 MiB"));
    }

    #[test]
    fn limit_flags_set_every_limit() {
        let parsed = Probe::try_parse_from([
            "probe",
            "--memory-mb=64",
            "--timeout-ms=500",
            "--fuel=9",
            "--cpu-shares=512",
            "--disk-mb=32",
            "--max-output-bytes=100",
        ])
        .unwrap()
        .limits;
        let limits = parsed.to_limits(7);
        assert_eq!(
            (
                limits.memory_mb,
                limits.timeout_ms,
                limits.fuel,
                limits.cpu_shares,
                limits.disk_mb,
                limits.max_output_bytes
            ),
            (64, 500, Some(9), 512, 32, 100)
        );
    }
}
