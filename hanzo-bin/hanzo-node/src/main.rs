//! `hanzo-node`: run tools on any runtime, list runtimes, verify receipts.
//!
//! The flags and exit codes are the external contract of CONTRACTS §3: stdout carries
//! only the tool's output (or, with `--json`, the whole result); everything for people
//! goes to stderr, and an error is one line beginning `error:`.

/// jemalloc, not glibc's malloc. Under load a job's memory is often freed on another
/// worker thread than the one that allocated it (a task moves, a receipt is sealed
/// by the batch's holder), and glibc then takes the owning arena's lock: two workers
/// queued on each other's arenas, and signed WASM throughput lost 20-30% to it
/// (BENCHMARKS.md, "The allocator, adopted"). jemalloc frees into a per-thread cache instead.
/// It keeps the limits this binary puts on itself meaningful: it maps memory as it
/// needs it (no large up-front reservation, unlike mimalloc's 1 GiB arena), so the
/// module compiler's `RLIMIT_DATA` and a tool host's memory rlimit still stop it at
/// the first mapping past the limit. Its symbols are prefixed: C code in the process
/// (SQLite, a tool's cdylib in the tool host) keeps glibc's malloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod agent_cmd;
mod cache_cmd;
mod demo;
mod demo_agent;
mod demo_net;
mod escape;
mod job_cmd;
mod ledger_cmd;
mod logging;
mod mcp_cmd;
mod network;
mod new_cmd;
mod node;
mod params;
mod peers_cmd;
mod progress;
mod receipt_cmd;
mod run;
mod runtimes;
mod secure;
mod serve;
mod service_cmd;
mod tool_cmd;

use clap::{Parser, Subcommand};
use hanzo_compute::ComputeError;
use std::path::PathBuf;
use std::process::ExitCode;

/// `--version`: a build with fail points says so, so that nobody mistakes it for a
/// release (scripts/package-test.sh refuses to package it).
const VERSION: &str = if hanzo_compute::failpoints::ENABLED {
    concat!(env!("CARGO_PKG_VERSION"), " (failpoints)")
} else {
    env!("CARGO_PKG_VERSION")
};

/// A compute node: runs WASM, Docker, Deno, Python, Go and native tools (and, as it
/// lands, Kubernetes) behind one job contract, with enforced limits and signed receipts.
#[derive(Parser, Debug)]
// Bare `hanzo-node` prints the help on stderr and exits 2, as a usage error.
#[command(name = "hanzo-node", version = VERSION, about, arg_required_else_help = true)]
struct Cli {
    /// Configuration file (default: $HANZO_CONFIG, else <data dir>/hanzo-node.toml if it exists).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// More detail: the node's logs one level lower (-vv: dependencies too); the long
    /// form of `runtimes` and `demo`.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// Less: the node's logs one level higher (-qq: errors only), no progress bars.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    quiet: u8,

    /// The node's log lines on stderr: text or json (default: node.log_format, text).
    /// RUST_LOG filters them (e.g. RUST_LOG=hanzo_api=debug,info).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<logging::Format>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one tool and print its output.
    Run(Box<run::RunArgs>),
    /// List the runtimes: available?, version, isolation (with -v: how each limit is
    /// honoured).
    Runtimes {
        /// Print {"runtimes": [...]} as JSON (every detail) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Work with receipts.
    #[command(subcommand)]
    Receipt(receipt_cmd::ReceiptCmd),
    /// Work with the content-addressed module store.
    #[command(subcommand)]
    Module(node::ModuleCmd),
    /// Long-running services: deploy, ls, inspect, scale, rm.
    #[command(subcommand)]
    Service(service_cmd::ServiceCmd),
    /// Talk to a node's HTTP API: job submit, get, ls, logs, cancel.
    #[command(subcommand)]
    Job(job_cmd::JobCmd),
    /// Named tools on a node: tool add, ls, call, rm.
    #[command(subcommand)]
    Tool(tool_cmd::ToolCmd),
    /// Run the example tools and print their outputs and receipts.
    Demo(demo::DemoArgs),
    /// Serve the HTTP API (node.api_listen) over the durable job queue.
    Serve(serve::ServeArgs),
    /// The runtimes' caches: ls (sizes vs node.cache_max_mb), prune.
    #[command(subcommand)]
    Cache(cache_cmd::CacheCmd),
    /// Start a tool project: new rust|go|python|deno NAME [--dir PATH].
    New(new_cmd::NewArgs),
    /// The peers a serving node knows: runtimes, free capacity, latency, reputation.
    Peers {
        /// Print the API's JSON array of peers instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: job_cmd::NodeArgs,
    },
    /// The node's named tools over MCP: `mcp serve` speaks MCP on stdin/stdout.
    #[command(subcommand)]
    Mcp(mcp_cmd::McpCmd),
    /// What a serving node earned from and owes to each peer, and each peer's record
    /// in its verified jobs (`GET /v1/ledger`).
    Ledger {
        /// Print the API's JSON (`{"accounts": [...]}`) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: job_cmd::NodeArgs,
    },
}

fn main() -> ExitCode {
    // The native runtime's helper: hanzo-node re-run inside the process sandbox to load
    // a tool's cdylib or run a built-in tool there, never in the node itself. Checked
    // before anything else starts (no runtime, no config, no threads).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args
        .get(1)
        .is_some_and(|a| a == hanzo_native_runtime::TOOL_HOST_SUBCOMMAND)
    {
        let code = hanzo_native_runtime::tool_host_main(args[2..].to_vec());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // The WASM runtime's module compiler: hanzo-node re-run as a child process, under
    // the job's memory limit and killed at its deadline (hanzo_wasm_runtime::Compiler).
    if args
        .get(1)
        .is_some_and(|a| a == hanzo_wasm_runtime::COMPILE_SUBCOMMAND)
    {
        let code = hanzo_wasm_runtime::compile_main(args[2..].to_vec());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // clap's own message: the `error:` line naming the argument, then its hints
            // ("a similar argument exists"), the usage line and where help is; only the
            // first line starts with `error:`. Bare `hanzo-node` gets the help, exit 2.
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let serving = matches!(cli.command, Command::Serve(_));
    // `mcp serve` runs jobs in process (or relays them): every core, like `serve`, but
    // logs at warn (its host application shows its stderr).
    let multi_threaded = serving || matches!(cli.command, Command::Mcp(_));
    progress::QUIET.store(cli.quiet > 0, std::sync::atomic::Ordering::Relaxed);
    // The log format: the flag, else the configuration's (read here and kept for the
    // command; a configuration that does not load is reported by the command itself).
    let format = cli.log_format.unwrap_or_else(|| {
        node::preload_config(cli.config.as_deref())
            .and_then(|f| f.parse().ok())
            .unwrap_or(logging::Format::Text)
    });
    // `serve` logs at info; one-shot commands at warn (their stderr is the tool's logs
    // and the contract's error line).
    if let Err(e) = logging::init(format, if serving { 2 } else { 1 }, cli.verbose, cli.quiet) {
        eprintln!("error: {}", one_line(&e.to_string()));
        return ExitCode::from(e.exit_code() as u8);
    }
    // The service uses every core; one-shot commands need only one thread.
    let mut builder = if multi_threaded {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let result = builder
        .enable_all()
        .build()
        .map_err(|e| anyhow::Error::new(ComputeError::internal(e)))
        .and_then(|rt| rt.block_on(dispatch(cli)));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let code = e
                .downcast_ref::<ComputeError>()
                .map(|c| c.exit_code())
                .or_else(|| e.downcast_ref::<job_cmd::Fail>().map(|f| i32::from(f.exit)))
                .unwrap_or(5);
            eprintln!("error: {}", one_line(&format!("{e:#}")));
            ExitCode::from(code as u8)
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(args) => run::run(cli.config.as_deref(), *args).await,
        Command::Runtimes { json } => runtimes::list(cli.config.as_deref(), json, cli.verbose > 0).await,
        Command::Receipt(cmd) => receipt_cmd::run(cli.config.as_deref(), cmd).await,
        Command::Module(cmd) => node::module(cli.config.as_deref(), cmd).await,
        Command::Service(cmd) => service_cmd::run(cli.config.as_deref(), cmd).await,
        Command::Job(cmd) => job_cmd::run(cli.config.as_deref(), cmd).await,
        Command::Tool(cmd) => tool_cmd::run(cli.config.as_deref(), cmd).await,
        Command::Demo(args) => demo::run(cli.config.as_deref(), args, cli.verbose > 0).await,
        Command::Serve(args) => serve::run(cli.config.as_deref(), args).await,
        Command::Cache(cmd) => cache_cmd::run(cli.config.as_deref(), cmd).await,
        Command::New(args) => new_cmd::run(args).await,
        Command::Peers { json, node } => peers_cmd::run(cli.config.as_deref(), json, node).await,
        Command::Ledger { json, node } => ledger_cmd::run(cli.config.as_deref(), json, node).await,
        Command::Mcp(cmd) => mcp_cmd::run(cli.config.as_deref(), cmd).await,
    }
}

/// Folds a message onto one line, so a multi-line cause cannot break the contract.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
