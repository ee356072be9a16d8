//! One MCP server the node is a client of: a stdio server in a sandbox session, or a
//! streamable-HTTP server; started (connected), described, called, stopped.
//!
//! A server is not trusted. Everything it sends is bounded before rmcp parses it: a
//! stdio server's stdout goes through [`Metered`], which ends the connection once the
//! server has written more than the call in progress may return (or, between calls,
//! more than [`IDLE_BUDGET`]): a flood costs the server its session, never the node
//! its memory. Its stderr goes to the job's logs, bounded per call. Every wait on it
//! (the handshake, the tool list, a call) is raced against the job's deadline, its
//! cancellation and the process's exit.

use crate::output::ServerIdentity;
use hanzo_compute::stdio::{LOG_CAP, LogBuffer, LogSink, last_log_line};
use hanzo_compute::{CancelToken, ComputeError, LimitKind};
use hanzo_sandbox::{Exit, ProcessSpec, Sandbox, Session};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation, JsonObject,
    ProtocolVersion, Tool,
};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use serde_json::{Value, json};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::unix::pipe;
use tokio::time::Instant;

/// What a stdio server may write on stdout while no call is in progress (notifications,
/// log messages): a server chattering more than this between calls is stopped.
pub(crate) const IDLE_BUDGET: u64 = 1 << 20;

/// The most tools one server may list: a list is a description, not a data channel.
const MAX_TOOLS: usize = 4096;

/// A connected MCP server.
pub(crate) struct Server {
    service: RunningService<RoleClient, ClientConfig>,
    session: Option<Session>,
    /// What it says it is.
    pub identity: ServerIdentity,
    /// Its tools, as listed once connected.
    pub tools: Vec<Tool>,
    /// The server as the receipt's `code_hash` names it (program digest and arguments,
    /// or URL).
    pub code: Value,
    io: Arc<CallIo>,
    /// Calls served so far.
    pub calls: u64,
    /// Holds the server's place in the pool's bound while it lives.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The byte budget and the log buffer of the call in progress, shared with the reader
/// of the server's stdout and the sink of its stderr.
struct CallIo {
    read: AtomicU64,
    budget: AtomicU64,
    flooded: AtomicBool,
    call: Mutex<Option<LogBuffer>>,
}

impl CallIo {
    fn new() -> Self {
        CallIo {
            read: AtomicU64::new(0),
            budget: AtomicU64::new(IDLE_BUDGET),
            flooded: AtomicBool::new(false),
            call: Mutex::new(None),
        }
    }

    fn log(&self, bytes: &[u8]) {
        if let Some(buf) = self.call.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            buf.push(bytes);
        }
        // Between calls a server's logs go nowhere: no job asked for them.
    }

    fn begin(&self, budget: u64, sink: LogSink) {
        self.read.store(0, Ordering::SeqCst);
        self.budget.store(budget, Ordering::SeqCst);
        *self.call.lock().unwrap_or_else(|p| p.into_inner()) = Some(LogBuffer::new(LOG_CAP).with_sink(sink));
    }

    fn end(&self) -> Vec<u8> {
        self.read.store(0, Ordering::SeqCst);
        self.budget.store(IDLE_BUDGET, Ordering::SeqCst);
        self.call
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .map(|mut b| b.finish())
            .unwrap_or_default()
    }
}

/// A stdio server's stdout, counted against the budget of the call in progress.
struct Metered {
    inner: pipe::Receiver,
    io: Arc<CallIo>,
}

impl AsyncRead for Metered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.io.flooded.load(Ordering::SeqCst) {
            return Poll::Ready(Err(std::io::Error::other(
                "the MCP server wrote more than it may",
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = (buf.filled().len() - before) as u64;
                let total = this.io.read.fetch_add(n, Ordering::SeqCst) + n;
                if total > this.io.budget.load(Ordering::SeqCst) {
                    this.io.flooded.store(true, Ordering::SeqCst);
                    return Poll::Ready(Err(std::io::Error::other(
                        "the MCP server wrote more than it may",
                    )));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// How a call ended.
pub(crate) enum CallEnd {
    /// The server answered (a result, or a JSON-RPC error).
    Answered(Result<CallToolResult, ServiceError>),
    /// The job's deadline passed first.
    TimedOut,
    /// The job was cancelled first.
    Cancelled,
    /// The connection ended first (the process died, or wrote too much).
    Closed,
}

/// The most pages of `tools/list` followed: a list is a description, not a stream.
const MAX_PAGES: usize = 64;

/// Every tool the server lists, within [`MAX_TOOLS`] and [`MAX_PAGES`].
async fn list_tools(service: &RunningService<RoleClient, ClientConfig>) -> Result<Vec<Tool>, String> {
    let mut tools = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let page = service
            .list_tools(Some(
                rmcp::model::PaginatedRequestParams::default().with_cursor(cursor),
            ))
            .await
            .map_err(|e| e.to_string())?;
        tools.extend(page.tools);
        if tools.len() > MAX_TOOLS {
            return Err(format!("the server lists more than {MAX_TOOLS} tools"));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(tools),
        }
    }
    Err(format!("the server's tool list runs past {MAX_PAGES} pages"))
}

/// The handshake (`initialize`) and the tool list, on any transport; the caller bounds
/// it in time.
async fn handshake<T, E, A>(
    transport: T,
) -> Result<(RunningService<RoleClient, ClientConfig>, Vec<Tool>), String>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let service = client_config()
        .serve(transport)
        .await
        .map_err(|e| e.to_string())?;
    let tools = list_tools(&service).await?;
    Ok((service, tools))
}

/// The client's own description in the handshake.
fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("hanzo-node", env!("CARGO_PKG_VERSION")),
    )
    // The handshake version every released server speaks; rmcp's default (2026-07-28)
    // has no `initialize`, which servers of the 2025 protocols do not know.
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
}

/// rmcp's transport errors name the transport's Rust type
/// (`Transport [rmcp::transport::worker::WorkerTransport<...>] error: `): keep the
/// words a person can act on.
fn tidy(e: &str) -> String {
    let mut s = e.to_string();
    if let (Some(a), Some(b)) = (s.find("Transport ["), s.find("] error: "))
        && a < b
    {
        s.replace_range(a..b + "] error: ".len(), "");
    }
    s.replace("Send message error ", "").trim().to_string()
}

/// What the job's logs keep of a failed start, for the error message.
fn why_from(logs: &[u8], fallback: &str) -> String {
    last_log_line(logs).unwrap_or_else(|| fallback.to_string())
}

impl Server {
    /// Starts `spec` (a stdio server) in `sandbox` for `job` and connects to it, within
    /// `deadline`; its stderr goes to the job's logs until the call that started it ends.
    pub(crate) async fn start_stdio(
        sandbox: &Sandbox,
        mut spec: ProcessSpec,
        code: Value,
        job: &hanzo_compute::Job,
        deadline: Instant,
        call_budget: u64,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Server, (ComputeError, Vec<u8>)> {
        let cancel = &job.cancel;
        let io = Arc::new(CallIo::new());
        io.begin(call_budget, job.logs.clone());
        spec.log_sink = {
            let io = io.clone();
            LogSink::new(move |b| io.log(b))
        };
        let max_line = usize::try_from(call_budget).unwrap_or(usize::MAX);
        let mut session = match sandbox.spawn(spec).await {
            Ok(s) => s,
            Err(outcome) => {
                let logs = io.end();
                let e = match outcome.result() {
                    Err(ComputeError::InvalidInput(m)) => {
                        ComputeError::invalid(format!("the MCP server: {m}"))
                    }
                    Err(e) => e,
                    Ok(_) => ComputeError::internal("the MCP server could not start"),
                };
                return Err((e, logs));
            }
        };
        let Some((tx, rx)) = session.take_io() else {
            let logs = io.end();
            return Err((ComputeError::internal("the MCP server's pipes are gone"), logs));
        };
        let transport = rmcp::transport::async_rw::AsyncRwTransport::new_client(
            Metered {
                inner: rx,
                io: io.clone(),
            },
            tx,
        )
        .with_max_line_length(max_line);
        let connect = handshake(transport);
        let connected = tokio::select! {
            r = connect => r,
            _ = tokio::time::sleep_until(deadline) => Err("timeout".into()),
            _ = cancel.cancelled() => Err("cancelled".into()),
        };
        match connected {
            Ok((service, tools)) => {
                let mut s = Server::new(service, tools, code, io, Some(permit));
                s.session = Some(session);
                s.check_tools()
            }
            Err(why) => {
                // A server that closed its pipe is exiting: let it, so that its exit
                // code is its own (a deadline or a cancellation kills it at once).
                if why != "timeout" && why != "cancelled" {
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_millis(500), session.exited()).await;
                }
                let exited = session.has_exited();
                let outcome = session.stop(None).await;
                let logs = io.end();
                let e = if cancel.is_cancelled() {
                    ComputeError::Cancelled
                } else if why == "timeout" {
                    ComputeError::limit(
                        LimitKind::Timeout,
                        "the MCP server did not finish its handshake before the job's timeout; it was stopped",
                    )
                } else if let Some(limit) = outcome.exit.limit().filter(|_| exited) {
                    outcome
                        .result()
                        .err()
                        .unwrap_or(ComputeError::limit(limit, "the MCP server"))
                } else if io.flooded.load(Ordering::SeqCst) {
                    ComputeError::limit(
                        LimitKind::Output,
                        "the MCP server wrote more than it may during its handshake",
                    )
                } else {
                    // The command ran and is no MCP server (or died at once): a bad command.
                    let code = match outcome.exit {
                        Exit::Exited(c) => format!(" (exit code {c})"),
                        Exit::Signaled(s) => format!(" (signal {s})"),
                        _ => String::new(),
                    };
                    ComputeError::invalid(format!(
                        "the command did not start an MCP server{code}: {}",
                        crate::output::clean(&why_from(&logs, &why), crate::output::MAX_ERROR_TEXT)
                    ))
                };
                Err((e, logs))
            }
        }
    }

    /// Connects to a streamable-HTTP server at `url` within `deadline`.
    pub(crate) async fn start_http(
        url: &str,
        deadline: Instant,
        cancel: &CancelToken,
        max_response_bytes: u64,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Server, ComputeError> {
        crate::install_crypto();
        let unreachable = |why: String| ComputeError::Unavailable(format!("the MCP server at {url}: {why}"));
        // reqwest's own client, not rmcp's default: building that one panics on a host
        // without CA certificates, where this is an error. No redirects (rmcp would
        // follow same-origin ones; a server that moved is named by its new URL).
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| unreachable(format!("cannot make an HTTP client: {e}")))?;
        let config =
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url)
                .max_json_response_size(usize::try_from(max_response_bytes).unwrap_or(usize::MAX));
        let transport = rmcp::transport::StreamableHttpClientTransport::with_client(http, config);
        let connect = handshake(transport);
        let connected = tokio::select! {
            r = connect => r,
            _ = tokio::time::sleep_until(deadline) => Err("no answer before the job's timeout".into()),
            _ = cancel.cancelled() => return Err(ComputeError::Cancelled),
        };
        let (service, tools) = connected
            .map_err(|e| unreachable(crate::output::clean(&tidy(&e), crate::output::MAX_ERROR_TEXT)))?;
        Server::new(
            service,
            tools,
            json!({ "url": url }),
            Arc::new(CallIo::new()),
            Some(permit),
        )
        .check_tools()
        .map_err(|(e, _)| e)
    }

    fn new(
        service: RunningService<RoleClient, ClientConfig>,
        tools: Vec<Tool>,
        code: Value,
        io: Arc<CallIo>,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Server {
        let identity = service
            .peer_info()
            .and_then(|i| i.server_info.clone())
            .map(|i| ServerIdentity {
                name: crate::output::clean(&i.name, 256),
                version: crate::output::clean(&i.version, 256),
            })
            .unwrap_or_default();
        Server {
            service,
            session: None,
            identity,
            tools,
            code,
            io,
            calls: 0,
            _permit: permit,
        }
    }

    fn check_tools(self) -> Result<Server, (ComputeError, Vec<u8>)> {
        if self.tools.len() > MAX_TOOLS {
            let n = self.tools.len();
            return Err((
                ComputeError::ToolFailed(format!("the MCP server lists {n} tools (at most {MAX_TOOLS})")),
                self.io.end(),
            ));
        }
        Ok(self)
    }

    /// Whether the server can take another call: its process alive, its connection
    /// open, its output within bounds.
    pub(crate) fn alive(&self) -> bool {
        !self.service.is_transport_closed()
            && !self.io.flooded.load(Ordering::SeqCst)
            && self.session.as_ref().is_none_or(|s| !s.has_exited())
    }

    /// Starts a call's accounting on a server that was idle: its stdout budget and
    /// where its stderr goes.
    pub(crate) fn begin(&self, budget: u64, sink: LogSink) {
        self.io.begin(budget, sink);
    }

    /// Calls `tool`, racing the answer against the deadline, the job's cancellation and
    /// the process's exit. The call's accounting must have begun (a fresh server's
    /// began at its start).
    pub(crate) async fn call(
        &mut self,
        tool: &str,
        args: JsonObject,
        deadline: Instant,
        cancel: &CancelToken,
    ) -> CallEnd {
        self.calls += 1;
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let service = &self.service;
        let io = &self.io;
        let session = &mut self.session;
        let exited = async {
            match session.as_mut() {
                Some(s) => s.exited().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = service.call_tool(params) => match r {
                Err(ServiceError::TransportClosed) | Err(ServiceError::TransportSend(_))
                    if io.flooded.load(Ordering::SeqCst) => CallEnd::Closed,
                Err(ServiceError::TransportClosed) => CallEnd::Closed,
                r => CallEnd::Answered(r),
            },
            _ = tokio::time::sleep_until(deadline) => CallEnd::TimedOut,
            _ = cancel.cancelled() => CallEnd::Cancelled,
            _ = exited => CallEnd::Closed,
        }
    }

    /// Ends a call's accounting: the logs it produced, with what the server wrote on
    /// stderr before it answered (read now: its reader runs on its own time).
    pub(crate) async fn end(&self) -> Vec<u8> {
        if let Some(s) = &self.session {
            s.flush_logs().await;
        }
        self.io.end()
    }

    /// Waits up to `d` for a server whose connection ended to exit by itself, so that
    /// how it ended (its exit code, an OOM kill) is its own and not the node's kill.
    pub(crate) async fn settle(&mut self, d: std::time::Duration) {
        if let Some(s) = self.session.as_mut() {
            let _ = tokio::time::timeout(d, s.exited()).await;
        }
    }

    /// Whether the server was stopped for writing too much.
    pub(crate) fn flooded(&self) -> bool {
        self.io.flooded.load(Ordering::SeqCst)
    }

    /// The peak memory of the server's processes so far (a stdio server in a memory
    /// cgroup).
    pub(crate) fn peak_memory_bytes(&self) -> Option<u64> {
        self.session.as_ref().and_then(Session::peak_memory_bytes)
    }

    /// Stops the server: closes the connection and kills a stdio server's processes,
    /// reporting how the process ended (`None` for an HTTP server). `why` is the
    /// node's reason, if it had one.
    pub(crate) async fn stop(mut self, why: Option<Exit>) -> Option<hanzo_sandbox::ProcessOutcome> {
        let outcome = match self.session.take() {
            Some(s) => Some(s.stop(why).await),
            None => None,
        };
        let _ = self
            .service
            .close_with_timeout(std::time::Duration::from_millis(100))
            .await;
        outcome
    }
}
