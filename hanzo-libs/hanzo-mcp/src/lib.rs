//! # hanzo-mcp
//!
//! hanzo-node and the Model Context Protocol (CONTRACTS §9), on the official Rust SDK
//! (`rmcp`):
//!
//! - [`McpRuntime`], the `mcp` runtime: a job's SOURCE names an MCP server (an
//!   `http(s)://` URL, or the command line of a stdio server), its `function` the tool,
//!   its params the tool's arguments. A stdio server runs in the process sandbox
//!   ([`hanzo_sandbox::Sandbox::spawn`]) with nothing of the host but the system
//!   directories and its own installation ([`install`]), and is kept warm across calls
//!   in a bounded pool ([`pool`]).
//! - [`server`]: the node's named tools served over MCP, each call a job.
//!
//! What crosses which boundary: a stdio server is a tool (never trusted) and gets the
//! job's grants only; an HTTP server is reached by the node itself, so who may name one
//! is the operator's call (the CLI may; API clients only under `[compute.mcp]
//! allowed_urls`; peers never, since MCP code does not travel). What either sends back
//! is bounded before it is parsed (`client`).

#![warn(missing_docs)]

mod client;
mod install;
mod output;
mod pool;
pub mod server;

mod source;

/// The HTTP client behind rmcp's streamable-HTTP transport.
pub use reqwest;
/// The MCP SDK this crate is built on, for the implementors of [`server::ToolHost`].
pub use rmcp;
pub use source::Source;

use client::{CallEnd, IDLE_BUDGET, Server};
use hanzo_compute::stdio::last_log_line;
use hanzo_compute::{
    Capabilities, ComputeError, Execution, Health, Job, JobSpec, LimitKind, Runtime, RuntimeKind,
    ToolDescription, Usage,
};
use hanzo_sandbox::{Exit, ProcessSpec, Sandbox, TOOL_PATH};
use rmcp::model::{JsonObject, Tool};
use rmcp::service::ServiceError;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The MCP protocol version the node speaks as a client (the newest with the
/// `initialize` handshake, which every released server knows).
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// The largest input or output schema a named tool takes from its server.
const MAX_SCHEMA_BYTES: usize = 256 * 1024;
/// The longest description a named tool takes from its server.
const MAX_DESCRIPTION_BYTES: usize = 8 * 1024;

/// A server that could not be had: why, its logs so far, and what it is (when known).
type Failed = (ComputeError, Vec<u8>, Option<Value>);

/// How the `mcp` runtime runs servers.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// The most servers alive at once, busy or idle (`[compute.mcp] max_servers`).
    pub max_servers: usize,
    /// How long a server may sit idle before it is stopped.
    pub idle_timeout: Duration,
    /// Processes and threads a stdio server may have.
    pub pids_limit: u32,
    /// Where a bare server name (and a `#!/usr/bin/env NAME` interpreter) is looked
    /// for on the host: the node's own `PATH` by default, never a job's.
    pub search_path: String,
    /// Directories a stdio server's installation must lie under (`[compute.mcp]
    /// install_roots`); `None`: anywhere, for the operator's own `hanzo-node run`.
    pub install_roots: Option<Vec<PathBuf>>,
    /// Paths no server is shown, nor anything holding them: the node's data directory.
    pub protected: Vec<PathBuf>,
}

impl Default for McpOptions {
    fn default() -> Self {
        McpOptions {
            max_servers: 8,
            idle_timeout: Duration::from_secs(300),
            pids_limit: hanzo_sandbox::DEFAULT_PIDS_LIMIT,
            search_path: std::env::var("PATH").unwrap_or_else(|_| TOOL_PATH.into()),
            install_roots: None,
            protected: Vec::new(),
        }
    }
}

/// The `mcp` runtime.
pub struct McpRuntime {
    sandbox: Arc<Sandbox>,
    options: McpOptions,
    pool: Arc<pool::Pool>,
}

/// Installs the TLS crypto provider (ring) that the HTTP client needs, once.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: another part of the process installed one first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl McpRuntime {
    /// A runtime starting stdio servers in `sandbox`.
    pub fn new(sandbox: Arc<Sandbox>, options: McpOptions) -> Self {
        let pool = pool::Pool::new(options.max_servers, options.idle_timeout);
        McpRuntime {
            sandbox,
            options,
            pool,
        }
    }

    /// What must be alike for two jobs to share a server.
    fn key(job: &Job, source: &Source) -> pool::Key {
        let source = match source {
            Source::Http(url) => json!({ "url": url }),
            Source::Stdio(argv) => json!({ "argv": argv }),
        };
        let l = &job.spec.limits;
        json!({
            "source": source,
            "env": job.spec.env,
            "network": job.spec.network,
            "mounts": job.spec.mounts,
            "limits": [l.memory_mb, l.cpu_shares, l.disk_mb],
            "origin": job.origin,
        })
        .to_string()
    }

    /// Starts (connects to) a server for `job`.
    async fn start(
        &self,
        job: &Job,
        source: &Source,
        deadline: Instant,
        budget: u64,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Server, Failed> {
        match source {
            Source::Http(url) => Server::start_http(url, deadline, &job.cancel, budget, permit)
                .await
                .map_err(|e| (e, Vec::new(), Some(json!({ "url": url })))),
            Source::Stdio(argv) => {
                let search = self.options.search_path.clone();
                let program = argv[0].clone();
                let exposure = install::Exposure {
                    install_roots: self.options.install_roots.clone(),
                    protected: self.options.protected.clone(),
                };
                let installed =
                    tokio::task::spawn_blocking(move || install::locate(&program, &search, &exposure))
                        .await
                        .map_err(|e| (ComputeError::internal(e.to_string()), Vec::new(), None))?
                        .map_err(|e| (e, Vec::new(), None))?;
                let spec = self.process_spec(job, &installed, &argv[1..]);
                let code = json!({ "program_sha256": installed.digest, "args": argv[1..] });
                Server::start_stdio(&self.sandbox, spec, code.clone(), job, deadline, budget, permit)
                    .await
                    .map_err(|(e, logs)| (e, logs, Some(code)))
            }
        }
    }

    /// A warm server for `job`, or a new one, its call's accounting begun.
    async fn acquire(
        &self,
        job: &Job,
        source: &Source,
        key: &pool::Key,
        deadline: Instant,
    ) -> Result<Server, Failed> {
        // JSON escaping can double a value's size; the cap on the output itself is
        // checked on the parsed result.
        let budget = job
            .spec
            .limits
            .max_output_bytes
            .saturating_mul(2)
            .saturating_add(IDLE_BUDGET);
        if job.origin.is_some() {
            // Placement never sends MCP jobs (their code does not travel); refuse one
            // that claims to come from a peer all the same.
            return Err((
                ComputeError::invalid("MCP servers are not run for peers"),
                Vec::new(),
                None,
            ));
        }
        loop {
            if let Some(s) = self.pool.take(key) {
                s.begin(budget, job.logs.clone());
                return Ok(s);
            }
            match self.pool.place(deadline, &job.cancel).await {
                pool::Place::Granted(permit) => {
                    return self.start(job, source, deadline, budget, permit).await;
                }
                // A server came back: maybe one of ours, else one to evict.
                pool::Place::Freed => continue,
                pool::Place::Cancelled => return Err((ComputeError::Cancelled, Vec::new(), None)),
                pool::Place::Deadline => {
                    let e = ComputeError::limit(
                        LimitKind::Timeout,
                        format!(
                            "all {} MCP servers of this node stayed busy until the job's timeout ([compute.mcp] max_servers)",
                            self.options.max_servers
                        ),
                    );
                    return Err((e, Vec::new(), None));
                }
            }
        }
    }

    /// Every tool of the server `spec` names, as [`Runtime::describe`] gives one (for
    /// `hanzo-node tool import`): each tool's name with its description, or why it
    /// cannot be one (a schema over the bound).
    pub async fn describe_all(
        &self,
        spec: &JobSpec,
    ) -> Result<Vec<(String, Result<ToolDescription, ComputeError>)>, ComputeError> {
        self.with_server(spec, |server| {
            server
                .tools
                .iter()
                .map(|t| (output::clean(&t.name, 128), describe_tool(t)))
                .collect()
        })
        .await
    }

    /// `f` of a warm server of `spec` (or a new one, kept warm for the calls that
    /// follow), asked without a call.
    async fn with_server<T>(&self, spec: &JobSpec, f: impl FnOnce(&Server) -> T) -> Result<T, ComputeError> {
        let job = Job::new(spec.clone());
        let deadline = Instant::now() + Duration::from_millis(spec.limits.timeout_ms);
        let source = Source::parse(&spec.source)?;
        let key = Self::key(&job, &source);
        let server = self
            .acquire(&job, &source, &key, deadline)
            .await
            .map_err(|(e, _, _)| e)?;
        let out = f(&server);
        server.end().await;
        self.pool.put(key, server);
        Ok(out)
    }

    /// The sandboxed process of a stdio server: the job's environment, mounts,
    /// network and limits, and the server's installation read-only. Not the job's id
    /// or function (`HANZO_JOB_ID`, `HANZO_FUNCTION`): the server outlives the job.
    fn process_spec(&self, job: &Job, installed: &install::Installed, args: &[String]) -> ProcessSpec {
        let mut spec = ProcessSpec::new(&installed.program).args(args.iter().cloned());
        let mut path: Vec<String> = installed
            .path_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        path.push(TOOL_PATH.into());
        spec.env.insert("PATH".into(), path.join(":"));
        spec.env.insert("LANG".into(), "C.UTF-8".into());
        spec.env.extend(job.spec.env.clone());
        for p in &installed.ro_paths {
            spec = spec.ro_path(PathBuf::from(p));
        }
        spec.mounts = job.spec.mounts.clone();
        spec.network = job.spec.network;
        spec.limits = job.spec.limits.clone();
        spec.pids_limit = self.options.pids_limit;
        spec
    }

    /// The tool a job names, or the server's only tool when it names none.
    fn pick_tool<'s>(server: &'s Server, wanted: Option<&str>) -> Result<&'s Tool, ComputeError> {
        let names = || {
            let mut n: Vec<String> = server
                .tools
                .iter()
                .take(20)
                .map(|t| output::clean(&t.name, 128))
                .collect();
            if server.tools.len() > 20 {
                n.push("...".into());
            }
            n.join(", ")
        };
        let who = if server.identity.name.is_empty() {
            "the MCP server".to_string()
        } else {
            format!(
                "the MCP server '{}' {}",
                server.identity.name, server.identity.version
            )
        };
        match wanted {
            Some(name) => server.tools.iter().find(|t| t.name == name).ok_or_else(|| {
                ComputeError::invalid(format!("{who} has no tool '{name}' (it has: {})", names()))
            }),
            None => match server.tools.as_slice() {
                [only] => Ok(only),
                [] => Err(ComputeError::invalid(format!("{who} has no tools"))),
                _ => Err(ComputeError::invalid(format!(
                    "{who} has {} tools; name one with --function ({})",
                    server.tools.len(),
                    names()
                ))),
            },
        }
    }
}

/// A server's tool as a named tool takes it: its schemas and description, bounded (they
/// are stored with the tool and shown to every MCP client).
fn describe_tool(t: &Tool) -> Result<ToolDescription, ComputeError> {
    let input = Value::Object((*t.input_schema).clone());
    let len = input.to_string().len();
    if len > MAX_SCHEMA_BYTES {
        return Err(ComputeError::invalid(format!(
            "the tool's inputSchema is {len} bytes (at most {MAX_SCHEMA_BYTES})"
        )));
    }
    let output = t
        .output_schema
        .as_ref()
        .map(|o| Value::Object((**o).clone()))
        .filter(|o| o.to_string().len() <= MAX_SCHEMA_BYTES);
    Ok(ToolDescription {
        name: output::clean(&t.name, 128),
        description: t
            .description
            .as_ref()
            .map(|d| output::clean(d, MAX_DESCRIPTION_BYTES)),
        input_schema: input,
        output_schema: output,
    })
}

/// How a call ended, as the job's result, and whether (and why) its server must stop:
/// `None` keeps it; `Some(why)` stops it, `why` the node's reason if it had one.
fn call_result(
    end: CallEnd,
    job: &Job,
    source: &Source,
) -> (Result<Value, ComputeError>, Option<Option<Exit>>) {
    let clean = |text: String| output::clean(&text, output::MAX_ERROR_TEXT);
    match end {
        CallEnd::Answered(Ok(r)) => (output::to_output(r), None),
        CallEnd::Answered(Err(ServiceError::McpError(e))) => (Err(rpc_error(e)), None),
        // An HTTP server that stopped answering is unreachable (exit 4), as at the start.
        CallEnd::Answered(Err(e @ (ServiceError::TransportSend(_) | ServiceError::TransportClosed)))
            if matches!(source, Source::Http(_)) =>
        {
            let why = clean(format!("the MCP server at {}: {e}", job.spec.source));
            (Err(ComputeError::Unavailable(why)), Some(None))
        }
        CallEnd::Answered(Err(e)) => (
            Err(ComputeError::ToolFailed(clean(format!(
                "the MCP call failed: {e}"
            )))),
            Some(None),
        ),
        CallEnd::TimedOut => (
            Err(ComputeError::limit(
                LimitKind::Timeout,
                format!(
                    "the MCP server did not answer within the {} ms timeout; it was stopped",
                    job.spec.limits.timeout_ms
                ),
            )),
            Some(Some(Exit::TimedOut)),
        ),
        CallEnd::Cancelled => (Err(ComputeError::Cancelled), Some(Some(Exit::Cancelled))),
        // Why, only the server's end can say (`why_closed`).
        CallEnd::Closed => (Err(ComputeError::internal("the connection closed")), Some(None)),
    }
}

/// The output, unless it is over the job's cap.
fn capped(output: Value, cap: u64) -> Result<Value, ComputeError> {
    let len = serde_json::to_vec(&output)
        .map(|b| b.len() as u64)
        .unwrap_or(u64::MAX);
    if len > cap {
        return Err(ComputeError::limit(
            LimitKind::Output,
            format!("the MCP tool returned {len} bytes of output, over the {cap} byte cap"),
        ));
    }
    Ok(output)
}

/// Stops a server whose connection ended during a call, and says why it ended: a limit
/// (memory, processes), too much output, or a crash with its last words.
async fn why_closed(mut server: Server, why: Option<Exit>, logs: &[u8], job: &Job) -> ComputeError {
    let flooded = server.flooded();
    if flooded {
        server.stop(Some(Exit::OutputLimit)).await;
        return ComputeError::limit(
            LimitKind::Output,
            format!(
                "the MCP server wrote more than the {} byte cap allows; it was stopped",
                job.spec.limits.max_output_bytes
            ),
        );
    }
    // Its pipe closes a moment before its exit is seen: let it finish exiting before
    // anything is killed, so that how it ended is its own.
    server.settle(Duration::from_millis(500)).await;
    match server.stop(why).await {
        Some(o) if o.exit.limit().is_some() => o.result().err().unwrap_or(ComputeError::Cancelled),
        Some(o) => {
            let how = match o.exit {
                Exit::Exited(c) => format!(" with code {c}"),
                Exit::Signaled(s) => format!(" on signal {s}"),
                _ => String::new(),
            };
            let words = last_log_line(logs).unwrap_or_else(|| "no message".into());
            ComputeError::ToolFailed(format!(
                "the MCP server exited{how} during the call: {}",
                output::clean(&words, output::MAX_ERROR_TEXT)
            ))
        }
        None => ComputeError::ToolFailed("the MCP server closed the connection during the call".into()),
    }
}

/// A JSON-RPC error in answer to a call: arguments the server refused are bad input
/// (exit 2), anything else a failure of the tool.
fn rpc_error(e: rmcp::ErrorData) -> ComputeError {
    use rmcp::model::ErrorCode;
    let message = output::clean(&e.message, output::MAX_ERROR_TEXT);
    if e.code == ErrorCode::INVALID_PARAMS || e.code == ErrorCode::METHOD_NOT_FOUND {
        ComputeError::invalid(format!("the MCP server refused the call: {message}"))
    } else {
        ComputeError::ToolFailed(format!(
            "the MCP server answered with error {}: {message}",
            e.code.0
        ))
    }
}

#[async_trait::async_trait]
impl Runtime for McpRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Mcp
    }

    /// The sandbox's table, for stdio servers. The timeout and the output cap are the
    /// runtime's own, per call; memory, processes and CPU hold for the server's whole
    /// life (a warm server is one sandbox across calls).
    fn capabilities(&self) -> Capabilities {
        let mut c = self.sandbox.capabilities();
        c.isolation = format!(
            "stdio MCP servers: {}; kept warm (up to {} servers, stopped after {} s idle); HTTP MCP servers run where they run, held to the call's timeout and output cap",
            self.sandbox.describe(),
            self.options.max_servers,
            self.options.idle_timeout.as_secs()
        );
        c.deterministic = false;
        c
    }

    async fn health(&self) -> Health {
        let (idle, live) = self.pool.counts(self.options.max_servers);
        let mut h = Health::ok(format!("rmcp 3.11, MCP {PROTOCOL_VERSION}"));
        let mut notes = vec![format!(
            "{live} of {} servers running, {idle} idle",
            self.options.max_servers
        )];
        notes.extend(self.sandbox.notes().iter().cloned());
        h.detail = Some(notes.join("; "));
        h
    }

    /// The tool as the server lists it, asked of a warm server (or a new one, kept
    /// warm for the calls that follow).
    async fn describe(&self, spec: &JobSpec) -> Result<Option<ToolDescription>, ComputeError> {
        self.with_server(spec, |server| {
            Self::pick_tool(server, spec.function.as_deref()).and_then(describe_tool)
        })
        .await?
        .map(Some)
    }

    async fn execute(&self, job: &Job) -> Execution {
        let started = std::time::Instant::now();
        let deadline = Instant::now() + Duration::from_millis(job.spec.limits.timeout_ms);
        let source = match Source::parse(&job.spec.source) {
            Ok(s) => s,
            Err(e) => return Execution::rejected(&job.spec, e),
        };
        let args: JsonObject = match &job.spec.params {
            Value::Object(m) => m.clone(),
            Value::Null => JsonObject::new(),
            _ => {
                let e = ComputeError::invalid("an MCP tool takes its arguments as a JSON object");
                return Execution::rejected(&job.spec, e);
            }
        };
        let key = Self::key(job, &source);
        let mut server = match self.acquire(job, &source, &key, deadline).await {
            Ok(s) => s,
            Err((e, logs, code)) => {
                let mut ex = Execution::rejected(&job.spec, e);
                ex.logs = logs;
                // A server that started and then missed its deadline (or its memory
                // limit) in the handshake: the receipt names it by what is known, its
                // program or URL and the tool asked for.
                ex.code_hash = code.map(|c| output::start_hash(&c, job.spec.function_or_default()));
                return ex;
            }
        };
        let tool = match Self::pick_tool(&server, job.spec.function.as_deref()) {
            Ok(t) => t.clone(),
            Err(e) => {
                let mut ex = Execution::rejected(&job.spec, e);
                ex.logs = server.end().await;
                self.pool.put(key, server);
                return ex;
            }
        };
        let code_hash = output::code_hash(&server.code, &server.identity, &tool);
        let end = server.call(&tool.name, args, deadline, &job.cancel).await;
        let mut usage = Usage {
            peak_memory_bytes: server.peak_memory_bytes(),
            ..Usage::default()
        };
        let closed = matches!(end, CallEnd::Closed);
        let (result, stop) = call_result(end, job, &source);
        let mut result = result.and_then(|v| capped(v, job.spec.limits.max_output_bytes));
        let logs = server.end().await;
        match stop {
            None if server.alive() => self.pool.put(key, server),
            None => {
                tokio::spawn(server.stop(None));
            }
            Some(why) if closed => result = Err(why_closed(server, why, &logs, job).await),
            // Stopped in the background: the job's answer need not wait for the kill and
            // the clean-up.
            Some(why) => {
                let why = if server.flooded() {
                    Some(Exit::OutputLimit)
                } else {
                    why
                };
                tokio::spawn(server.stop(why));
            }
        }
        usage.set_wall_time(started.elapsed());
        Execution {
            code_hash: Some(code_hash),
            function: tool.name.to_string(),
            result,
            usage,
            logs,
        }
    }
}
