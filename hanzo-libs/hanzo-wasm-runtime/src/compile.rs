//! Compiling a module, as part of the job that needs it.
//!
//! Cranelift cannot be interrupted: a hostile module (one function with thousands of
//! live locals) can keep it busy for minutes. So compilation runs where it can be
//! given up at the job's deadline:
//!
//! - [`Compiler::Subprocess`] (what `hanzo-node` uses): a child process (the node's
//!   own binary in its compile mode, [`compile_main`]) under an `RLIMIT_DATA` of the
//!   job's memory plus [`COMPILER_BASE_MB`] and [`COMPILER_PER_CORE_MB`] per core (its
//!   own needs), and an `RLIMIT_CPU` backstop, killed at
//!   the job's deadline or cancellation. It writes the machine code to a temporary file
//!   in the store; the node renames it into place and maps it with
//!   `Module::deserialize_file` (see the SAFETY note in `exec.rs`).
//! - [`Compiler::Thread`] (the default of an embedding library): a dedicated thread
//!   whose result is abandoned at the deadline. The thread cannot be stopped and keeps
//!   its core busy until cranelift finishes; at most `available_parallelism` such
//!   threads run at once (a job waiting for one waits within its own deadline), and
//!   their memory is not bounded.

use crate::engine::{Profile, artifact_tag, engine_config};
use hanzo_compute::ComputeError;
use hanzo_compute::config::WasmConfig;
use std::ffi::OsString;
use std::path::PathBuf;

/// The first argument that makes `hanzo-node` run [`compile_main`].
pub const COMPILE_SUBCOMMAND: &str = "__wasm-compile";

/// Memory the compiler process may use beyond the job's `memory_mb`: its own code,
/// heap and the engine, before it reads the module ...
pub const COMPILER_BASE_MB: u64 = 64;
/// ... and per core, for the stack and heap of each compiling thread.
pub const COMPILER_PER_CORE_MB: u64 = 8;

/// What the compiler process may use beyond the job's memory, in MiB.
pub(crate) fn compiler_overhead_mb() -> u64 {
    let cores = u64::from(hanzo_compute::fingerprint::machine().cpu_cores);
    COMPILER_BASE_MB + COMPILER_PER_CORE_MB * cores
}

/// Exit status of the compiler when the module is not valid WebAssembly.
const EXIT_INVALID: i32 = 2;
/// Exit status of the compiler when it could not run (bad arguments, I/O).
const EXIT_FAILED: i32 = 5;

/// How modules are compiled.
#[derive(Debug, Clone, Default)]
pub enum Compiler {
    /// On a dedicated thread of this process, abandoned (not stopped) at the deadline.
    #[default]
    Thread,
    /// In a child process running `program args... <compile arguments>`, which must
    /// call [`compile_main`] with the compile arguments; killed at the deadline.
    Subprocess {
        /// The program (for `hanzo-node`, its own executable).
        program: PathBuf,
        /// Arguments before the compile arguments (for `hanzo-node`, [`COMPILE_SUBCOMMAND`]).
        args: Vec<OsString>,
    },
}

/// What the parent passes the compiler process, in order.
pub(crate) struct CompileArgs {
    pub(crate) profile: Profile,
    pub(crate) config: WasmConfig,
    /// `RLIMIT_DATA` in bytes.
    pub(crate) memory_bytes: u64,
    /// `RLIMIT_CPU` in seconds: a backstop should the parent die before killing it.
    pub(crate) cpu_seconds: u64,
    pub(crate) input: PathBuf,
    pub(crate) output: PathBuf,
}

impl CompileArgs {
    pub(crate) fn to_args(&self) -> Vec<OsString> {
        vec![
            self.profile.name().into(),
            serde_json::to_string(&self.config).unwrap_or_default().into(),
            self.memory_bytes.to_string().into(),
            self.cpu_seconds.to_string().into(),
            self.input.clone().into(),
            self.output.clone().into(),
        ]
    }

    fn parse(args: Vec<OsString>) -> Result<CompileArgs, String> {
        let [profile, config, memory, cpu, input, output]: [OsString; 6] = args
            .try_into()
            .map_err(|_| "usage: <profile> <config json> <memory bytes> <cpu seconds> <input> <output>")?;
        let text = |s: OsString| s.into_string().map_err(|_| "arguments must be UTF-8".to_string());
        let profile = text(profile)?;
        Ok(CompileArgs {
            profile: Profile::from_name(&profile).ok_or(format!("unknown profile {profile}"))?,
            config: serde_json::from_str(&text(config)?).map_err(|e| format!("bad config: {e}"))?,
            memory_bytes: text(memory)?.parse().map_err(|e| format!("bad memory: {e}"))?,
            cpu_seconds: text(cpu)?.parse().map_err(|e| format!("bad cpu seconds: {e}"))?,
            input: input.into(),
            output: output.into(),
        })
    }
}

/// The compiler process: compiles `input` for the profile's engine and writes the
/// artifact to `output`. Returns the exit status: 0, [`EXIT_INVALID`] (message on
/// stderr) or [`EXIT_FAILED`]. Running out of memory aborts the process.
pub fn compile_main(args: Vec<OsString>) -> i32 {
    let args = match CompileArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_FAILED;
        }
    };
    // Limits first, before the module is read: the process is ours, the module is not.
    if let Err(e) = limit_self(args.memory_bytes, args.cpu_seconds) {
        eprintln!("cannot set the compiler's limits: {e}");
        return EXIT_FAILED;
    }
    let bytes = match std::fs::read(&args.input) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cannot read {}: {e}", args.input.display());
            return EXIT_FAILED;
        }
    };
    // Functions compile in parallel, as in-process compilation always did: a large
    // module (a Go program: thousands of functions) compiles several times faster, and
    // the job's deadline bounds the whole. One huge function gains nothing from it.
    let config = engine_config(args.profile, &args.config, false, false);
    let engine = match wasmtime::Engine::new(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot create the wasm engine: {e}");
            return EXIT_FAILED;
        }
    };
    let code = match engine.precompile_module(&bytes) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", crate::exec::root_message(&e));
            return EXIT_INVALID;
        }
    };
    // The artifact names the engine it is for; the parent checks the tag it expects.
    println!("{}", artifact_tag(&engine));
    match std::fs::write(&args.output, code) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cannot write {}: {e}", args.output.display());
            EXIT_FAILED
        }
    }
}

fn limit_self(memory_bytes: u64, cpu_seconds: u64) -> std::io::Result<()> {
    let set = |resource, value: u64| {
        let lim = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct it is given and nothing else.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // RLIMIT_DATA counts the heap and private writable mappings (what cranelift
    // allocates), not address space merely reserved, so it tracks real memory use.
    set(libc::RLIMIT_DATA, memory_bytes)?;
    set(libc::RLIMIT_CPU, cpu_seconds.max(1))?;
    Ok(())
}

/// How a compiler process ended, named for the job.
pub(crate) fn name_exit(
    status: std::process::ExitStatus,
    stderr: &[u8],
    memory_mb: u64,
    timeout_ms: u64,
) -> ComputeError {
    use std::os::unix::process::ExitStatusExt;
    let text = String::from_utf8_lossy(stderr);
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if status.code() == Some(EXIT_INVALID) {
        return ComputeError::invalid(format!("invalid WebAssembly module: {first}"));
    }
    // Rust's allocation failure message, then an abort.
    if text.contains("memory allocation of") || status.signal() == Some(libc::SIGABRT) && text.is_empty() {
        return ComputeError::limit(
            hanzo_compute::LimitKind::Memory,
            format!(
                "compiling the module needed more than the job's {memory_mb} MiB (plus {} MiB for the compiler itself)",
                compiler_overhead_mb()
            ),
        );
    }
    if matches!(status.signal(), Some(libc::SIGXCPU) | Some(libc::SIGKILL)) {
        return compile_timeout(timeout_ms);
    }
    ComputeError::internal(format!("the module compiler failed ({status}): {first}"))
}

/// The error of a job whose compilation did not finish within its timeout.
pub(crate) fn compile_timeout(timeout_ms: u64) -> ComputeError {
    ComputeError::limit(
        hanzo_compute::LimitKind::Timeout,
        format!("compiling the module did not finish within the {timeout_ms} ms timeout"),
    )
}
