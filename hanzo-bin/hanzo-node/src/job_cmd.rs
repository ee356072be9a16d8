//! `hanzo-node job submit | get | ls | logs | cancel`: the CLI as a client of a node's
//! HTTP API (`hanzo-node serve`).
//!
//! The HTTP client is deliberately tiny (HTTP/1.1, `Connection: close`, one request
//! per connection, plain `http://` only): the API is JSON over loopback or a trusted
//! network, and a full client stack would be a large dependency for five calls.

use crate::node::load_config;
use crate::one_line;
use crate::run::RunArgs;
use clap::{Args, Subcommand};
use hanzo_compute::{ComputeError, RuntimeKind};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How to reach the node.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// The node's API, http://HOST:PORT (default: where a node serving from the data
    /// directory listens, from <data_dir>/api-url; else http://<node.api_listen>).
    #[arg(long, value_name = "URL")]
    pub node: Option<String>,
    /// The API token (default: node.api_token / HANZO_NODE_API_TOKEN, else the one the
    /// node created in <data_dir>/api-token). Sent only to loopback addresses.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Submit a job to a node; prints its id, or {"id", "status"} with --json (with
    /// --wait, --follow or --receipt: waits and prints its output as `run` does).
    Submit(Box<SubmitArgs>),
    /// Show one job.
    Get {
        /// The job id.
        id: String,
        /// Print the job as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// List jobs, newest first.
    Ls {
        /// Only jobs in this status (queued|running|succeeded|failed|cancelled).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Only jobs of this runtime.
        #[arg(long, value_name = "RUNTIME")]
        runtime: Option<String>,
        /// At most this many jobs (1-1000; default 100).
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
        /// Print {"jobs": [...]} as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Print a job's logs (its stderr); with --follow, as they are written. Control
    /// characters but newline and tab are shown escaped (\x1b, \r), unless --raw.
    Logs {
        /// The job id.
        id: String,
        /// Keep printing new lines until the job ends (server-sent events).
        #[arg(short, long)]
        follow: bool,
        /// Print the bytes as the tool wrote them, escape sequences included.
        #[arg(long)]
        raw: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Cancel a queued or running job.
    Cancel {
        /// The job id.
        id: String,
        /// Print the job as the node answered, as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Scheduling priority (higher first).
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// How many times the node may retry the job: after the node crashed, or on
    /// another node after the peer running it was lost.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// Where the job may run: local (this node only, the default), any (the best
    /// node, this one included), remote (the best peer), or a peer id.
    #[arg(long, value_name = "WHERE", default_value = "local")]
    pub placement: String,
    /// Wait for the result and print the output as `run` does (same exit codes).
    #[arg(long)]
    pub wait: bool,
    /// Like --wait, printing the job's logs to stderr live while it runs.
    #[arg(long, conflicts_with = "wait")]
    pub follow: bool,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// A failure of the conversation with the node: printed as one `error:` line with
/// its own exit code, without the ComputeError prefix ("runtime unavailable: ...")
/// that would misname a missing node or a refused request.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) exit: u8,
    message: String,
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fail {}

pub(crate) fn fail(exit: u8, message: impl Into<String>) -> anyhow::Error {
    Fail {
        exit,
        message: message.into(),
    }
    .into()
}

pub async fn run(config: Option<&Path>, cmd: JobCmd) -> anyhow::Result<u8> {
    report(dispatch(config, cmd))
}

/// A client command's result: a [`Fail`] becomes its one `error:` line and exit code;
/// anything else goes to the binary's own error handling.
pub(crate) fn report(result: anyhow::Result<u8>) -> anyhow::Result<u8> {
    match result {
        Err(e) if e.is::<Fail>() => {
            let exit = e.downcast_ref::<Fail>().map_or(5, |f| f.exit);
            eprintln!("error: {}", one_line(&e.to_string()));
            Ok(exit)
        }
        other => other,
    }
}

fn dispatch(config: Option<&Path>, cmd: JobCmd) -> anyhow::Result<u8> {
    match cmd {
        JobCmd::Submit(args) => submit(config, *args),
        JobCmd::Get { id, json, node } => {
            let client = Client::new(config, &node)?;
            let job = client
                .call("GET", &format!("/v1/jobs/{}", enc(&id)), b"")?
                .json()?;
            if json {
                println!("{}", serde_json::to_string(&job)?);
            } else {
                print_job(&job);
            }
            Ok(0)
        }
        JobCmd::Ls {
            status,
            runtime,
            limit,
            json,
            node,
        } => {
            let client = Client::new(config, &node)?;
            let mut query = Vec::new();
            if let Some(s) = &status {
                query.push(format!("status={}", enc(s)));
            }
            if let Some(r) = &runtime {
                query.push(format!("runtime={}", enc(r)));
            }
            if let Some(n) = limit {
                query.push(format!("limit={n}"));
            }
            let path = if query.is_empty() {
                "/v1/jobs".to_string()
            } else {
                format!("/v1/jobs?{}", query.join("&"))
            };
            let page = client.call("GET", &path, b"")?.json()?;
            if json {
                println!("{}", serde_json::to_string(&page)?);
            } else {
                print_table(page["jobs"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            }
            Ok(0)
        }
        JobCmd::Logs {
            id,
            follow,
            raw,
            node,
        } => {
            let client = Client::new(config, &node)?;
            if follow {
                client.follow(&id, &mut std::io::stdout().lock(), raw)?;
                return Ok(0);
            }
            let resp = client.call("GET", &format!("/v1/jobs/{}/logs", enc(&id)), b"")?;
            if raw {
                std::io::stdout().lock().write_all(&resp.body)?;
            } else {
                std::io::stdout()
                    .lock()
                    .write_all(crate::escape::bytes(&resp.body).as_bytes())?;
            }
            Ok(0)
        }
        JobCmd::Cancel { id, json, node } => {
            let client = Client::new(config, &node)?;
            let resp = client.call("POST", &format!("/v1/jobs/{}/cancel", enc(&id)), b"")?;
            let accepted = resp.status == 202;
            let job = resp.json()?;
            if json {
                println!("{}", serde_json::to_string(&job)?);
                return Ok(0);
            }
            // 200: it was queued and is cancelled now; 202: it is running and the
            // runtime is stopping it.
            let what = if accepted {
                "cancelling (the runtime is stopping it)"
            } else {
                job["status"].as_str().unwrap_or("cancelled")
            };
            println!("{id} {what}");
            Ok(0)
        }
    }
}

fn submit(config: Option<&Path>, args: SubmitArgs) -> anyhow::Result<u8> {
    let kind: RuntimeKind = args.run.runtime.parse()?;
    let client = Client::new(config, &args.node)?;
    // Without --max-output-bytes the spec carries the contract's default cap.
    let mut spec = args
        .run
        .to_spec(hanzo_compute::ResourceLimits::default().max_output_bytes)?;
    spec.priority = args.priority;
    spec.retries = args.retries;
    spec.placement = match args.placement.as_str() {
        "local" => hanzo_compute::Placement::Local,
        "any" => hanzo_compute::Placement::Any,
        "remote" => hanzo_compute::Placement::Remote,
        peer if hanzo_compute::looks_like_peer_id(peer) => hanzo_compute::Placement::Peer(peer.to_string()),
        other => {
            return Err(ComputeError::invalid(format!(
                "--placement: '{other}' is not local, any, remote or a peer id"
            ))
            .into());
        }
    };
    // The node cannot know this shell's directory: a relative mount is made absolute
    // here, `..` taken as the shell takes it (the node then resolves the path under its
    // mount roots, following no symlink, and refuses any `..` left).
    for m in &mut spec.mounts {
        if m.host.is_relative() {
            let abs = std::path::absolute(&m.host).map_err(|e| {
                ComputeError::invalid(format!("--mount {m}: cannot make the path absolute: {e}"))
            })?;
            m.host = abs.components().fold(PathBuf::new(), |mut p, c| {
                match c {
                    std::path::Component::ParentDir => {
                        p.pop();
                    }
                    c => p.push(c),
                }
                p
            });
        }
    }
    spec.source = resolve_source(&client, kind, &spec.source)?;
    let mut body = serde_json::to_value(&spec)?;
    if args.run.limits.max_output_bytes.is_none() {
        // Unnamed, so the node applies its own default (the contract's, or its lower
        // [compute] max_output_bytes) instead of refusing a cap nobody asked for.
        unname_output_cap(&mut body);
    }
    let ack = client
        .call("POST", "/v1/jobs", body.to_string().as_bytes())?
        .json()?;
    let id = ack["id"]
        .as_str()
        .ok_or_else(|| ComputeError::internal(format!("the node answered without a job id: {ack}")))?
        .to_string();
    if args.follow {
        client.follow(&id, &mut std::io::stderr().lock(), false)?;
        let job = client
            .call("GET", &format!("/v1/jobs/{}", enc(&id)), b"")?
            .json()?;
        return finish(&job, b"", args.run.receipt.as_deref(), args.run.json);
    }
    // A receipt exists only once the job ends: asking for one is waiting.
    if !args.wait && args.run.receipt.is_none() {
        print_ack(&ack, &id, args.run.json)?;
        return Ok(0);
    }
    let job = wait_for(&client, &id)?;
    let logs = client
        .call("GET", &format!("/v1/jobs/{}/logs", enc(&id)), b"")
        .map(|r| r.body)
        .unwrap_or_default();
    finish(&job, &logs, args.run.receipt.as_deref(), args.run.json)
}

/// Leaves `limits.max_output_bytes` out of a job or tool body.
pub(crate) fn unname_output_cap(body: &mut Value) {
    if let Some(limits) = body.get_mut("limits").and_then(Value::as_object_mut) {
        limits.remove("max_output_bytes");
    }
}

/// What a submit that does not wait prints: the id, or with --json the node's
/// acknowledgement `{"id", "status"}`.
pub(crate) fn print_ack(ack: &Value, id: &str, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(ack)?);
    } else {
        println!("{id}");
    }
    Ok(())
}

/// A local file path for a wasm job is uploaded to the node's module store (the node
/// may not see this machine's files, and a relative path would be resolved against
/// the node's directory); other local paths are made absolute, which is right for a
/// node on this machine.
pub(crate) fn resolve_source(client: &Client, kind: RuntimeKind, source: &str) -> anyhow::Result<String> {
    if kind == RuntimeKind::Mcp {
        // A URL, or a command line whose program the node finds itself; only a
        // relative program path needs this shell's directory.
        let cwd = std::env::current_dir()
            .map_err(|e| ComputeError::invalid(format!("cannot read the current directory: {e}")))?;
        return Ok(hanzo_mcp::Source::absolutize(source, &cwd)?);
    }
    let path = Path::new(source);
    if kind == RuntimeKind::Agent {
        // An agent file travels as its text (CONTRACTS §10): the node reads none of
        // this machine's files, and the receipt's code_hash is the file's sha256.
        if path.is_file() {
            return std::fs::read_to_string(path).map_err(|e| {
                ComputeError::invalid(format!("cannot read the agent file {source}: {e}")).into()
            });
        }
        return Ok(source.to_string());
    }
    if source.starts_with("sha256:") || !path.exists() {
        return Ok(source.to_string());
    }
    if kind == RuntimeKind::Wasm && path.is_file() {
        let bytes = std::fs::read(path)
            .map_err(|e| ComputeError::invalid(format!("cannot read {}: {e}", path.display())))?;
        let stored = client.call("POST", "/v1/modules", &bytes)?.json()?;
        return stored["source"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ComputeError::internal(format!("the node stored no module: {stored}")).into());
    }
    Ok(std::fs::canonicalize(path)
        .unwrap_or_else(|_| PathBuf::from(source))
        .display()
        .to_string())
}

/// Polls the job until it ends, with a spinner on a terminal (stderr).
pub(crate) fn wait_for(client: &Client, id: &str) -> anyhow::Result<Value> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} job {prefix} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(id.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut pause = Duration::from_millis(20);
    let result = loop {
        let job = match client
            .call("GET", &format!("/v1/jobs/{}", enc(id)), b"")
            .and_then(|r| r.json())
        {
            Ok(j) => j,
            Err(e) => break Err(e),
        };
        let status = job["status"].as_str().unwrap_or("?").to_string();
        if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
            break Ok(job);
        }
        bar.set_message(status);
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    };
    bar.finish_and_clear();
    result
}

/// Prints a finished job as `run` prints an outcome, and returns `run`'s exit code.
pub(crate) fn finish(
    job: &Value,
    logs: &[u8],
    receipt_path: Option<&Path>,
    as_json: bool,
) -> anyhow::Result<u8> {
    if !logs.is_empty() {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(crate::escape::bytes(logs).as_bytes());
        if !logs.ends_with(b"\n") {
            let _ = err.write_all(b"\n");
        }
    }
    let receipt = job.get("receipt").cloned().unwrap_or(Value::Null);
    if let Some(path) = receipt_path.filter(|_| receipt.is_object()) {
        let text = serde_json::to_string_pretty(&receipt)?;
        std::fs::write(path, text + "\n")
            .map_err(|e| ComputeError::internal(format!("cannot write receipt {}: {e}", path.display())))?;
    }
    let usage = job.get("usage").cloned().unwrap_or(Value::Null);
    if job["status"] == "succeeded" {
        let output = job.get("output").cloned().unwrap_or(Value::Null);
        let line = if as_json {
            json!({"output": output, "usage": usage, "receipt": receipt})
        } else {
            output
        };
        println!("{}", serde_json::to_string(&line)?);
        return Ok(0);
    }
    let code = job["error"]["code"]
        .as_str()
        .unwrap_or(if job["status"] == "cancelled" {
            "cancelled"
        } else {
            "internal"
        })
        .to_string();
    let message = job["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("job ended {}", job["status"].as_str().unwrap_or("?")));
    if as_json {
        let line = json!({"error": {"code": code, "message": message}, "usage": usage, "receipt": receipt});
        println!("{}", serde_json::to_string(&line)?);
    }
    eprintln!("error: {}", one_line(&message));
    Ok(exit_code_of(&code))
}

/// The exit code of a job's error code (ComputeError::code, CONTRACTS §3).
fn exit_code_of(code: &str) -> u8 {
    match code {
        "tool_failed" | "cancelled" => 1,
        "invalid_input" => 2,
        "limit_exceeded" => 3,
        "unavailable" | "unschedulable" => 4,
        _ => 5,
    }
}

fn print_job(job: &Value) {
    let field = |k: &str| match &job[k] {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    for k in [
        "id",
        "status",
        "runtime",
        "priority",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
    ] {
        println!("{k:<12} {}", field(k));
    }
    println!(
        "{:<12} {}",
        "source",
        job["spec"]["source"].as_str().unwrap_or("-")
    );
    if job["cancel_requested"] == true {
        println!("{:<12} requested", "cancel");
    }
    if let Some(code) = job["error"]["code"].as_str() {
        let msg = job["error"]["message"].as_str().unwrap_or("");
        println!("{:<12} {code}: {}", "error", one_line(msg));
    }
    if !job["output"].is_null() {
        println!("{:<12} {}", "output", job["output"]);
    }
}

/// The listing's rows carry no output, only its size (`output_bytes`); `job get`
/// shows the output itself.
fn print_table(jobs: &[Value]) {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            ["id", "status", "runtime", "created_at", "output_bytes"]
                .iter()
                .map(|k| cell(&j[*k]))
                .chain([cell(&j["spec"]["source"])])
                .collect()
        })
        .collect();
    print_columns(
        &["ID", "STATUS", "RUNTIME", "CREATED", "OUTPUT BYTES", "SOURCE"],
        &rows,
    );
}

/// A table cell: the string, or `-`.
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "-".into(),
    }
}

/// Prints a header and rows in columns two spaces apart; the last column is not padded.
pub(crate) fn print_columns(head: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i).map(String::len))
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", text.join("  "));
    };
    line(head.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Percent-encodes a path segment or query value (ids are plain, but a typo must not
/// become another route).
pub(crate) fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) struct Client {
    /// host:port, for the Host header.
    authority: String,
    /// Where `authority` resolved to, for connecting.
    addrs: Vec<SocketAddr>,
    /// The URL as given, for messages.
    url: String,
    token: Option<String>,
}

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ComputeError::internal(format!(
                "the node answered {} with a body that is not JSON ({e})",
                self.status
            ))
            .into()
        })
    }
}

impl Client {
    /// The node to talk to and the token to show it: `--token`, else `node.api_token`
    /// (`HANZO_NODE_API_TOKEN`), else the token the node created in
    /// `<data_dir>/api-token`.
    ///
    /// The token is sent only to loopback addresses: this client speaks plain http,
    /// and a token sent in clear across a network is a token given away. A `--node`
    /// elsewhere with a token is refused before anything is sent (exit 2).
    pub(crate) fn new(config: Option<&Path>, args: &NodeArgs) -> anyhow::Result<Client> {
        let url = match &args.node {
            Some(u) => u.clone(),
            // A node serving from this data directory says where it listens (it may
            // have been started with --listen); else the configuration's address.
            None => {
                let cfg = load_config(config)?;
                if let Some(url) = crate::secure::read_endpoint(&cfg.node.data_dir) {
                    return Self::at(url, config, args);
                }
                let listen = cfg.node.api_listen.clone();
                // A node listening on every interface is reached on loopback.
                let listen = listen
                    .strip_prefix("0.0.0.0:")
                    .map(|p| format!("127.0.0.1:{p}"))
                    .or_else(|| listen.strip_prefix("[::]:").map(|p| format!("[::1]:{p}")))
                    .unwrap_or(listen);
                format!("http://{listen}")
            }
        };
        Self::at(url, config, args)
    }

    /// The node's base URL, http://HOST:PORT.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// A client of the node at `url` (http://HOST:PORT).
    fn at(url: String, config: Option<&Path>, args: &NodeArgs) -> anyhow::Result<Client> {
        if url.starts_with("https://") {
            return Err(ComputeError::invalid(format!(
                "--node {url}: https is not supported by this client; reach the node over \
                 loopback (an SSH tunnel: ssh -L 3690:127.0.0.1:3690 HOST, then --node http://127.0.0.1:3690)"
            ))
            .into());
        }
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            ComputeError::invalid(format!("--node {url}: only http://HOST:PORT URLs are supported"))
        })?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
            return Err(ComputeError::invalid(format!("--node {url}: expected http://HOST:PORT")).into());
        }
        let token = match &args.token {
            Some(t) => Some(t.clone()),
            None => load_config(config).ok().and_then(|c| {
                Some(c.node.api_token)
                    .filter(|t| !t.is_empty())
                    .or_else(|| crate::secure::read_token(&c.node.data_dir))
            }),
        }
        .filter(|t| !t.is_empty());
        // Resolved once: the addresses checked are the ones connected to.
        let addrs: Vec<SocketAddr> = authority
            .to_socket_addrs()
            .map_err(|e| ComputeError::invalid(format!("--node {url}: {e}")))?
            .collect();
        if token.is_some() && !addrs.iter().all(|a| a.ip().is_loopback()) {
            return Err(fail(
                2,
                format!(
                    "--node {url}: refusing to send the API token over plain http to a \
                     non-loopback address; reach the node over loopback (an SSH tunnel: \
                     ssh -L 3690:127.0.0.1:3690 HOST, then --node http://127.0.0.1:3690)"
                ),
            ));
        }
        Ok(Client {
            authority: authority.to_string(),
            url: format!("http://{authority}"),
            token,
            addrs,
        })
    }

    /// One request; an API error becomes a ComputeError with the contract's exit code.
    pub(crate) fn call(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Resp> {
        let (status, headers, body) = self.send(method, path, body)?;
        if (200..300).contains(&status) {
            return Ok(Resp { status, body });
        }
        Err(api_error(status, &headers, &body))
    }

    /// Writes a job's log lines to `out` as the node streams them (server-sent events,
    /// `GET /v1/jobs/{id}/logs?follow=true`) until the job ends, escaped unless `raw`.
    /// A stream the node ends at its time limit (a `timeout` event) is resumed where it
    /// stopped.
    pub(crate) fn follow(&self, id: &str, out: &mut dyn Write, raw: bool) -> anyhow::Result<()> {
        let mut resume: Option<String> = None;
        loop {
            match self.follow_once(id, out, raw, resume.as_deref())? {
                Some(offset) => resume = Some(offset),
                None => return Ok(()),
            }
        }
    }

    /// One event stream; `Some(offset)` when the node ended it at its time limit.
    fn follow_once(
        &self,
        id: &str,
        out: &mut dyn Write,
        raw: bool,
        resume: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        // HTTP/1.0: the node then sends the stream as it is, up to the close, rather
        // than in chunks this small client would have to undo.
        let path = format!("/v1/jobs/{}/logs?follow=true", enc(id));
        let extra = resume
            .map(|r| format!("Last-Event-ID: {r}\r\n"))
            .unwrap_or_default();
        let s = self.open_with("GET", &path, b"", "HTTP/1.0", &extra)?;
        let mut reader = std::io::BufReader::new(s);
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            if reader
                .read_until(b'\n', &mut line)
                .map_err(|e| self.unreachable(e))?
                == 0
            {
                break;
            }
            head.extend_from_slice(&line);
            if line == b"\r\n" {
                break;
            }
        }
        let (status, headers, _) = parse_response(&head).ok_or_else(|| self.malformed())?;
        if status != 200 {
            let mut body = Vec::new();
            let _ = reader.read_to_end(&mut body);
            return Err(api_error(status, &headers, &body));
        }
        let mut event = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(|e| self.unreachable(e))? == 0 {
                return Err(fail(
                    5,
                    format!("{} closed the log stream of job {id} early", self.url),
                ));
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                let data = data.strip_prefix(' ').unwrap_or(data);
                match event.as_str() {
                    "end" => return Ok(None),
                    "timeout" => {
                        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                        let offset = v["offset"].as_u64().ok_or_else(|| self.malformed())?;
                        return Ok(Some(offset.to_string()));
                    }
                    _ => {}
                }
                // One `data` line per log line (the node splits at line ends).
                if raw {
                    writeln!(out, "{data}")?;
                } else {
                    writeln!(out, "{}", crate::escape::bytes(data.as_bytes()))?;
                }
                out.flush()?;
            } else if line.is_empty() {
                event.clear();
            }
        }
    }

    fn unreachable(&self, e: std::io::Error) -> anyhow::Error {
        fail(
            4,
            format!("no node at {} ({e}); start one with `hanzo-node serve`", self.url),
        )
    }

    fn malformed(&self) -> anyhow::Error {
        ComputeError::internal(format!("{} sent a malformed HTTP answer", self.url)).into()
    }
}

/// An API error answer as the CLI reports it: one message, the contract's exit code.
fn api_error(status: u16, headers: &[(String, String)], body: &[u8]) -> anyhow::Error {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v["error"]["code"].as_str().unwrap_or("").to_string();
    let mut message = v["error"]["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status}: {}", String::from_utf8_lossy(body).trim()));
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    match status {
        401 => fail(
            2,
            format!(
                "{message} (set --token or HANZO_NODE_API_TOKEN; a local node's is in <data_dir>/api-token)"
            ),
        ),
        429 => {
            if let Some(after) = header("retry-after") {
                message.push_str(&format!("; retry after {after} s"));
            }
            fail(4, message)
        }
        400..=499 => fail(2, message),
        503 => fail(4, message),
        _ => fail(5, format!("the node failed ({status} {code}): {message}")),
    }
}

impl Client {
    fn send(&self, method: &str, path: &str, body: &[u8]) -> anyhow::Result<Parsed> {
        let mut s = self.open(method, path, body, "HTTP/1.1")?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| self.unreachable(e))?;
        parse_response(&raw).ok_or_else(|| self.malformed())
    }

    /// Connects and sends one request.
    fn open(&self, method: &str, path: &str, body: &[u8], version: &str) -> anyhow::Result<TcpStream> {
        self.open_with(method, path, body, version, "")
    }

    /// Connects and sends one request with `extra` header lines (each ending `\r\n`).
    fn open_with(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        version: &str,
        extra: &str,
    ) -> anyhow::Result<TcpStream> {
        let unreachable = |e| self.unreachable(e);
        let mut last = None;
        let mut stream = None;
        // Only the addresses checked in `new` (loopback ones, when a token is sent).
        for a in &self.addrs {
            match TcpStream::connect_timeout(a, Duration::from_secs(5)) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut s =
            stream.ok_or_else(|| unreachable(last.unwrap_or_else(|| std::io::Error::other("no address"))))?;
        // Every call is short (waiting is done by polling; a followed log stream has a
        // keep-alive every 15 s), so a minute of silence is a fault.
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(unreachable)?;
        let auth = self
            .token
            .as_deref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let content_type = if path == "/v1/modules" {
            "application/octet-stream"
        } else {
            "application/json"
        };
        let head = format!(
            "{method} {path} {version}\r\nHost: {}\r\nConnection: close\r\n{auth}{extra}\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            self.authority,
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(unreachable)?;
        // A refused body may be answered (and the socket closed) before it is all sent.
        let _ = s.write_all(body);
        Ok(s)
    }
}

type Parsed = (u16, Vec<(String, String)>, Vec<u8>);

/// Status line, headers and body (Content-Length, chunked, or up to the close).
fn parse_response(raw: &[u8]) -> Option<Parsed> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    if !status_line.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let rest = &raw[split + 4..];
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        rest.get(..len)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some((status, headers, body))
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
