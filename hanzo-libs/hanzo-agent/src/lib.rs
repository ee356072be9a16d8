//! # hanzo-agent
//!
//! The `agent` runtime (CONTRACTS §10): a job's SOURCE is an agent file
//! ([`AgentFile`]), its params `{"prompt": ...}` or `{"messages": [...]}`. The runtime
//! sends the conversation to an OpenAI-compatible chat-completions endpoint with the
//! agent's tools as function definitions; each tool call the model asks for runs as a
//! job of the node (through [`Tools`]) under that tool's registered limits, and its
//! output goes back to the model, until the model answers or `max_steps` is reached.
//!
//! What crosses which boundary:
//! - the model is not trusted: its replies are bounded before they are parsed, its
//!   tool calls are held to the tools the agent file names, their arguments to each
//!   tool's schema, their number to `max_steps`, and a bad call goes back to it as an
//!   error it can read rather than failing the run;
//! - a tool call is a job like any other (the node's scheduler, sandbox, limits and
//!   receipts), so an agent can do no more than its caller could by calling the tools
//!   itself;
//! - the endpoint is reached by the node, so who may name one is the operator's call
//!   (the CLI may; API clients only under `[compute.agent] allowed_endpoints`; peers
//!   never); the API key is read from the job's env or the variables the operator
//!   lists, sent only as the request's bearer, and written nowhere.
//!
//! The output binds the run: the answer, every step with the child job's receipt in
//! order, the model and the endpoint; the agent's own receipt signs its hash, and its
//! `code_hash` is the sha256 of the agent file's bytes.

#![warn(missing_docs)]

mod model;

pub use hanzo_compute::agent::AgentFile;
pub use model::clean;

use hanzo_compute::stdio::LogBuffer;
use hanzo_compute::{
    CancelToken, Capabilities, ComputeError, Execution, Health, Job, JobSpec, LimitKind, Runtime,
    RuntimeKind, Support, ToolDescription, Usage,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};
use tokio::time::Instant;

/// The most bytes of one model reply read, whatever the memory limit leaves. Parsed
/// into JSON values it may take several times that (arguments given as objects).
const MAX_REPLY: usize = 4 << 20;
/// The most tool calls one model reply may carry.
const MAX_CALLS_PER_REPLY: usize = 64;
/// The most characters of a step's params or output shown in the job's logs.
const LOG_PREVIEW: usize = 200;

/// A named tool of the node as the model is shown it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// The JSON Schema of its params, if it has one.
    pub schema: Option<Value>,
    /// Whether it is an agent itself (its calls nest one level deeper).
    pub agent: bool,
}

/// One tool call, to run as a job of the node.
#[derive(Debug, Clone)]
pub struct Call {
    /// The named tool.
    pub tool: String,
    /// Its params, as the model wrote them (an object, not yet checked against the
    /// tool's schema: that is the host's job, as for any caller).
    pub params: Value,
    /// The depth the child job runs at (the agent's plus one).
    pub depth: u32,
    /// The agent's deadline: the child's timeout is cut to what is left of it.
    pub deadline: Instant,
    /// Fires when the agent is cancelled or out of time: the child job is cancelled
    /// and `call` returns once it has ended.
    pub cancel: CancelToken,
}

/// How a tool call ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Child {
    /// The child job's id; `None` when nothing ran (bad params, a refused call).
    pub job_id: Option<String>,
    /// Its output, or why there is none (`code`, `message`).
    pub result: Result<Value, (String, String)>,
    /// The child job's receipt, when it has one.
    pub receipt: Option<Value>,
}

/// The node's named tools, as an agent calls them. Implemented by the node's API (a
/// serving node, or `run agent` opening the job store itself) and by a relay to a
/// node serving from the same data directory.
#[async_trait::async_trait]
pub trait Tools: Send + Sync + 'static {
    /// The named tool `name`, or `None` when the node has no such tool.
    async fn describe(&self, name: &str) -> Result<Option<ToolDef>, ComputeError>;

    /// Runs one call as a job to its end. What the caller may fix (params breaking the
    /// schema, a refused submission, a failed job) comes back in [`Child::result`];
    /// `Err` is the node's own fault.
    async fn call(&self, call: Call) -> Result<Child, ComputeError>;
}

/// How the agent runtime is set up (`[compute.agent]`).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// How deep agents may call agents.
    pub max_depth: u32,
    /// The largest `max_steps` an agent file may ask for.
    pub max_steps: u32,
    /// Variables of the node's environment an agent may take its key from.
    pub key_vars: Vec<String>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        let c = hanzo_compute::config::AgentConfig::default();
        AgentOptions {
            max_depth: c.max_depth,
            max_steps: c.max_steps,
            key_vars: c.key_vars,
        }
    }
}

/// The `agent` runtime.
pub struct AgentRuntime {
    options: AgentOptions,
    tools: OnceLock<Arc<dyn Tools>>,
    /// Built at the first agent, not with the node: a machine without CA certificates
    /// must still start (and reach an `http://` endpoint).
    client: std::sync::Mutex<Option<reqwest::Client>>,
}

impl std::fmt::Debug for AgentRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentRuntime")
            .field("options", &self.options)
            .field("bound", &self.tools.get().is_some())
            .finish()
    }
}

impl AgentRuntime {
    /// A runtime that can run agents once [`bind`](Self::bind) gave it the node's tools.
    pub fn new(options: AgentOptions) -> Result<Self, ComputeError> {
        Ok(AgentRuntime {
            options,
            tools: OnceLock::new(),
            client: std::sync::Mutex::new(None),
        })
    }

    /// The HTTP client, built once.
    fn client(&self) -> Result<reqwest::Client, ComputeError> {
        let mut slot = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        install_crypto();
        // No proxy from the environment and no redirects: the key goes to the
        // endpoint named, by the route named, or nowhere.
        let builder = || {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
        };
        let client = match builder().build() {
            Ok(c) => c,
            // The system's verifier found no CA certificates (a container without
            // ca-certificates): no root is trusted then, so `https://` endpoints fail
            // their certificate check, saying so, and `http://` ones still work.
            Err(_) => builder()
                .tls_certs_only(Vec::new())
                .build()
                .map_err(|e| ComputeError::internal(format!("the agent runtime's HTTP client: {e}")))?,
        };
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Gives the runtime the node's tools; the first binding holds (false if one did).
    pub fn bind(&self, tools: Arc<dyn Tools>) -> bool {
        self.tools.set(tools).is_ok()
    }
}

/// rustls on ring for the endpoint's TLS (the workspace builds no aws-lc).
fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err: another part of the process installed one first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The params schema of every agent: a prompt, or a conversation.
pub fn params_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "description": "the user's message"},
            "messages": {
                "type": "array",
                "description": "a conversation in chat-completions form, instead of a prompt",
                "items": {"type": "object", "required": ["role"]}
            }
        },
        "additionalProperties": false,
        "minProperties": 1,
        "maxProperties": 1
    })
}

#[async_trait::async_trait]
impl Runtime for AgentRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Agent
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new("the node's own process; every tool call is a job in its runtime's sandbox")
            .with(
                LimitKind::Timeout,
                Support::Enforced,
                "the whole loop, model and tool calls; each tool call gets at most what is left",
            )
            .with(
                LimitKind::Memory,
                Support::Enforced,
                "the conversation and each model reply are held to memory_mb",
            )
            .with(LimitKind::Output, Support::Enforced, "the answer with its steps")
            .with(
                LimitKind::Steps,
                Support::Enforced,
                "max_steps tool calls, then a limit",
            )
            .with(
                LimitKind::CpuShares,
                Support::Unsupported,
                "the agent only waits; its tool calls have their own",
            )
    }

    async fn health(&self) -> Health {
        // Nothing to probe: the endpoint is each agent's own, and the node's tools
        // are bound by whatever runs the agent (a serving node, `run agent`).
        Health {
            available: true,
            version: Some(format!(
                "agent {} (OpenAI chat completions)",
                env!("CARGO_PKG_VERSION")
            )),
            detail: None,
        }
    }

    async fn describe(&self, spec: &JobSpec) -> Result<Option<ToolDescription>, ComputeError> {
        let file = AgentFile::parse(&spec.source)?;
        let tools = if file.tools.is_empty() {
            "no tools".to_string()
        } else {
            format!("tools {}", file.tools.join(", "))
        };
        Ok(Some(ToolDescription {
            name: String::new(),
            description: Some(format!("an agent: {} with {tools}", file.model)),
            input_schema: params_schema(),
            output_schema: None,
        }))
    }

    async fn execute(&self, job: &Job) -> Execution {
        let started = std::time::Instant::now();
        let mut logs = LogBuffer::default().with_sink(job.logs.clone());
        let mut run = Run {
            rt: self,
            job,
            logs: &mut logs,
            peak: 0,
            steps: Vec::new(),
        };
        let (code_hash, result) = run.go().await;
        let peak = run.peak;
        let mut usage = Usage {
            peak_memory_bytes: Some(peak as u64),
            ..Usage::default()
        };
        usage.set_wall_time(started.elapsed());
        Execution {
            code_hash,
            function: job.spec.function_or_default().to_string(),
            result,
            usage,
            logs: logs.finish(),
        }
    }
}

/// One agent run.
struct Run<'a> {
    rt: &'a AgentRuntime,
    job: &'a Job,
    logs: &'a mut LogBuffer,
    /// The largest the conversation grew, in bytes.
    peak: usize,
    /// The tool calls made so far.
    steps: Vec<Value>,
}

impl Run<'_> {
    /// The code hash (once the agent file is read) and the result.
    async fn go(&mut self) -> (Option<String>, Result<Value, ComputeError>) {
        let spec = &self.job.spec;
        // Peers never start agents: the node would call an endpoint from its own
        // network, with its own key, on a stranger's word (docs/security.md).
        if self.job.origin.is_some() {
            return (None, Err(ComputeError::invalid("agents do not run for peers")));
        }
        let file = match AgentFile::parse(&spec.source) {
            Ok(f) => f,
            Err(e) => return (None, Err(e)),
        };
        let code_hash = hex::encode(Sha256::digest(spec.source.as_bytes()));
        (Some(code_hash), self.agent(&file).await)
    }

    async fn agent(&mut self, file: &AgentFile) -> Result<Value, ComputeError> {
        let job = self.job;
        let spec = &job.spec;
        let deadline = Instant::now() + std::time::Duration::from_millis(spec.limits.timeout_ms);
        if file.max_steps > self.rt.options.max_steps {
            return Err(ComputeError::invalid(format!(
                "agent file: max_steps {} is above this node's ceiling ([compute.agent] max_steps = {})",
                file.max_steps, self.rt.options.max_steps
            )));
        }
        if !spec.mounts.is_empty() {
            return Err(ComputeError::invalid(
                "mounts: an agent reads no files; give them to its tools",
            ));
        }
        // Checked here too, not only where an agent's call is refused: the tool an
        // agent calls is looked up again when it runs, and could have become an agent.
        if job.depth > self.rt.options.max_depth {
            return Err(ComputeError::invalid(format!(
                "too deep: agents nest at most {} deep on this node ([compute.agent] max_depth)",
                self.rt.options.max_depth
            )));
        }
        let mut messages = initial_messages(file, &spec.params)?;
        let key = self.key(file)?;
        // The lookup of the tools is held to the deadline and the cancel too (a
        // serving node reached over MCP may not answer).
        let tools = tokio::select! {
            t = self.tool_defs(file) => t?,
            _ = job.cancel.cancelled() => return Err(ComputeError::Cancelled),
            _ = tokio::time::sleep_until(deadline) => return Err(out_of_time()),
        };
        let budget = usize::try_from(spec.limits.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        // A child token for the tool calls: fires on a cancel of the agent or at its
        // deadline, so a call in flight is stopped either way.
        let children = CancelToken::new();
        let watch = {
            let (cancel, children) = (job.cancel.clone(), children.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
                children.cancel();
            })
        };
        let result = self
            .turns(
                file,
                key.as_deref(),
                &tools,
                &mut messages,
                budget,
                deadline,
                &children,
            )
            .await;
        watch.abort();
        result.map_err(|e| self.with_chain(e))
    }

    /// A failed run's error, naming the calls it made: how many, and the sha256 of
    /// their receipts in order (the canonical JSON of the list), so that the failed
    /// agent's receipt binds them too.
    fn with_chain(&self, e: ComputeError) -> ComputeError {
        if self.steps.is_empty() {
            return e;
        }
        let receipts: Vec<Value> = self.steps.iter().map(|s| s["receipt"].clone()).collect();
        let chain = format!(
            " (after {} tool calls; their receipts hash to {})",
            self.steps.len(),
            hanzo_compute::receipt::hash_json(&Value::Array(receipts))
        );
        match e {
            ComputeError::LimitExceeded { limit, detail } => ComputeError::LimitExceeded {
                limit,
                detail: detail + &chain,
            },
            ComputeError::ToolFailed(m) => ComputeError::ToolFailed(m + &chain),
            ComputeError::Unavailable(m) => ComputeError::Unavailable(m + &chain),
            other => other,
        }
    }

    /// The API key, from the job's env or a variable of the node's the operator lists.
    fn key(&self, file: &AgentFile) -> Result<Option<String>, ComputeError> {
        let Some(var) = &file.api_key_env else {
            return Ok(None);
        };
        if let Some(v) = self.job.spec.env.get(var) {
            return Ok(Some(v.clone()));
        }
        // `VAR` lets any endpoint the agent may reach have the key; `VAR@PREFIX` only
        // endpoints under PREFIX (whole components), one entry per prefix.
        let mut listed = false;
        let mut allowed = false;
        for entry in &self.rt.options.key_vars {
            let (name, prefix) = match entry.split_once('@') {
                Some((n, p)) => (n, Some(p)),
                None => (entry.as_str(), None),
            };
            if name != var {
                continue;
            }
            listed = true;
            allowed |= prefix.is_none_or(|p| hanzo_compute::policy::under_prefix(&file.endpoint, p));
        }
        if !listed {
            return Err(ComputeError::invalid(format!(
                "api_key_env: {var} is not in the job's env and not one of the node's [compute.agent] key_vars"
            )));
        }
        if !allowed {
            return Err(ComputeError::invalid(format!(
                "api_key_env: the node's {var} may not be sent to {} ([compute.agent] key_vars names where it may go)",
                clean(&file.endpoint)
            )));
        }
        std::env::var(var).map(Some).map_err(|_| {
            ComputeError::invalid(format!(
                "api_key_env: {var} is one of the node's key_vars but is not set in its environment"
            ))
        })
    }

    /// The function definitions of the agent's tools; a tool the node does not have
    /// is bad input, found before the model is called.
    async fn tool_defs(&self, file: &AgentFile) -> Result<Vec<(ToolDef, Value)>, ComputeError> {
        if file.tools.is_empty() {
            return Ok(Vec::new());
        }
        let host = self.rt.tools.get().ok_or_else(|| {
            ComputeError::Unavailable("the agent runtime has no access to the node's named tools".into())
        })?;
        let mut defs = Vec::new();
        for name in &file.tools {
            let Some(def) = host.describe(name).await? else {
                return Err(ComputeError::invalid(format!(
                    "agent file: tools: the node has no tool '{name}'"
                )));
            };
            // A function's parameters must be an object schema; a tool without one
            // takes any object.
            let parameters = match &def.schema {
                Some(s @ Value::Object(_)) => s.clone(),
                _ => json!({"type": "object"}),
            };
            // Always a description: older llama.cpp servers refuse a function without.
            let description = def
                .description
                .clone()
                .unwrap_or_else(|| format!("the node's tool {}", def.name));
            let function = json!({"name": def.name, "description": description, "parameters": parameters});
            defs.push((def, json!({"type": "function", "function": function})));
        }
        Ok(defs)
    }

    #[allow(clippy::too_many_arguments)]
    async fn turns(
        &mut self,
        file: &AgentFile,
        key: Option<&str>,
        tools: &[(ToolDef, Value)],
        messages: &mut Vec<Value>,
        budget: usize,
        deadline: Instant,
        children: &CancelToken,
    ) -> Result<Value, ComputeError> {
        let job = self.job;
        let url = file.completions_url();
        let functions: Vec<Value> = tools.iter().map(|(_, f)| f.clone()).collect();
        self.steps.clear();
        let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);
        let mut turn = 0usize;
        let answer = loop {
            turn += 1;
            let held = conversation_bytes(messages);
            self.peak = self.peak.max(held);
            if held > budget {
                return Err(memory(held, budget));
            }
            let body = model::body(file, messages, &functions);
            let client = self.rt.client()?;
            let request = model::complete(
                &client,
                model::Request {
                    url: &url,
                    key,
                    body: &body,
                    deadline,
                    max_reply: (budget - held).min(MAX_REPLY),
                },
                turn,
            );
            let reply = tokio::select! {
                r = request => r?,
                _ = job.cancel.cancelled() => return Err(ComputeError::Cancelled),
                _ = tokio::time::sleep_until(deadline) => return Err(out_of_time()),
            };
            prompt_tokens = prompt_tokens.saturating_add(reply.prompt_tokens);
            completion_tokens = completion_tokens.saturating_add(reply.completion_tokens);
            messages.push(reply.message());
            if reply.calls.is_empty() {
                break reply.content.unwrap_or_default();
            }
            if reply.calls.len() > MAX_CALLS_PER_REPLY {
                return Err(ComputeError::ToolFailed(format!(
                    "malformed reply from the model (request {turn}): {} tool calls at once; at most {MAX_CALLS_PER_REPLY}",
                    reply.calls.len()
                )));
            }
            for call in &reply.calls {
                if self.steps.len() as u32 >= file.max_steps {
                    return Err(ComputeError::LimitExceeded {
                        limit: LimitKind::Steps,
                        detail: format!(
                            "the model asked for tool call {} ({}) and max_steps is {}",
                            self.steps.len() + 1,
                            clean(&call.name),
                            file.max_steps
                        ),
                    });
                }
                let step = self
                    .step(self.steps.len() + 1, call, tools, deadline, children)
                    .await?;
                if job.cancel.is_cancelled() {
                    return Err(ComputeError::Cancelled);
                }
                if Instant::now() >= deadline {
                    return Err(out_of_time());
                }
                let content = match (&step["output"], step.get("error")) {
                    (_, Some(e)) => json!({"error": e}).to_string(),
                    (out, None) => out.to_string(),
                };
                messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": content}));
                self.steps.push(step);
                // What the calls brought in counts at once, not only at the next turn:
                // one reply may ask for many calls with large outputs.
                let held = conversation_bytes(messages) + conversation_bytes(&self.steps);
                self.peak = self.peak.max(held);
                if held > budget {
                    return Err(memory(held, budget));
                }
            }
        };
        let output = json!({
            "answer": answer,
            "steps": self.steps,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens.saturating_add(completion_tokens),
                "requests": turn,
            },
            "model": file.model,
            "endpoint": file.endpoint,
        });
        self.log(format!(
            "answer after {} steps: {}\n",
            self.steps.len(),
            preview(&json!(answer))
        ));
        let size = output.to_string().len() as u64;
        if size > job.spec.limits.max_output_bytes {
            return Err(ComputeError::LimitExceeded {
                limit: LimitKind::Output,
                detail: format!(
                    "the answer with its steps is {size} bytes; max_output_bytes is {}",
                    job.spec.limits.max_output_bytes
                ),
            });
        }
        Ok(output)
    }

    /// One tool call: checked against the agent's tools, run as a job, logged.
    async fn step(
        &mut self,
        number: usize,
        call: &model::ToolCall,
        tools: &[(ToolDef, Value)],
        deadline: Instant,
        children: &CancelToken,
    ) -> Result<Value, ComputeError> {
        // The name as the model wrote it is the model's: only a name a tool could have
        // is kept as is, anything else cleaned and cut (it reaches logs and terminals).
        let name = if AgentFile::is_tool_name(&call.name) {
            call.name.clone()
        } else {
            clean(&call.name.chars().take(64).collect::<String>())
        };
        let refused = |params: Value, code: &str, message: String| {
            json!({"tool": name, "params": params, "output": null, "receipt": null,
                   "error": {"code": code, "message": message}})
        };
        let step = match serde_json::from_str::<Value>(&call.arguments) {
            Err(e) => refused(
                Value::String(call.arguments.clone()),
                "invalid_arguments",
                format!("the arguments are not JSON: {e}"),
            ),
            Ok(params) if !params.is_object() => refused(
                params,
                "invalid_arguments",
                "the arguments must be a JSON object".into(),
            ),
            Ok(params) => match tools.iter().find(|(d, _)| d.name == call.name) {
                None => {
                    let names: Vec<&str> = tools.iter().map(|(d, _)| d.name.as_str()).collect();
                    refused(
                        params,
                        "unknown_tool",
                        format!(
                            "this agent was not given a tool '{}'; its tools are: {}",
                            clean(&call.name),
                            if names.is_empty() {
                                "none".into()
                            } else {
                                names.join(", ")
                            }
                        ),
                    )
                }
                Some((def, _)) => {
                    let host = self.rt.tools.get().ok_or_else(|| {
                        ComputeError::Unavailable(
                            "the agent runtime has no access to the node's named tools".into(),
                        )
                    })?;
                    let depth = self.job.depth + 1;
                    if def.agent && depth > self.rt.options.max_depth {
                        refused(
                            params,
                            "too_deep",
                            format!(
                                "'{}' is an agent, and agents nest at most {} deep on this node ([compute.agent] max_depth)",
                                def.name, self.rt.options.max_depth
                            ),
                        )
                    } else {
                        let child = host
                            .call(Call {
                                tool: def.name.clone(),
                                params: params.clone(),
                                depth,
                                deadline,
                                cancel: children.clone(),
                            })
                            .await?;
                        let mut s = json!({"tool": def.name, "params": params, "output": null,
                                           "receipt": child.receipt});
                        if let Some(id) = &child.job_id {
                            s["job_id"] = json!(id);
                        }
                        match child.result {
                            Ok(v) => s["output"] = v,
                            Err((code, message)) => s["error"] = json!({"code": code, "message": message}),
                        }
                        s
                    }
                }
            },
        };
        let outcome = match step.get("error") {
            Some(e) => format!(
                "error {}: {}",
                e["code"].as_str().unwrap_or(""),
                clean(e["message"].as_str().unwrap_or(""))
            ),
            None => preview(&step["output"]),
        };
        let job = step
            .get("job_id")
            .and_then(Value::as_str)
            .map(|id| format!(" (job {id})"))
            .unwrap_or_default();
        self.log(format!(
            "step {number}: {} {} -> {outcome}{job}\n",
            clean(&call.name),
            preview(&step["params"])
        ));
        Ok(step)
    }

    fn log(&mut self, line: String) {
        self.logs.push(line.as_bytes());
    }
}

fn out_of_time() -> ComputeError {
    ComputeError::LimitExceeded {
        limit: LimitKind::Timeout,
        detail: "the agent did not finish within its timeout".into(),
    }
}

fn memory(held: usize, budget: usize) -> ComputeError {
    ComputeError::LimitExceeded {
        limit: LimitKind::Memory,
        detail: format!("the conversation holds {held} bytes; the agent's memory limit is {budget}"),
    }
}

fn conversation_bytes(messages: &[Value]) -> usize {
    messages.iter().map(|m| m.to_string().len()).sum()
}

/// A value in at most [`LOG_PREVIEW`] characters, for the logs.
fn preview(v: &Value) -> String {
    clean(&{
        let s = v.to_string();
        if s.chars().count() > LOG_PREVIEW {
            format!("{}...", s.chars().take(LOG_PREVIEW).collect::<String>())
        } else {
            s
        }
    })
}

/// The conversation's start: the system message, then the prompt or the messages
/// given.
fn initial_messages(file: &AgentFile, params: &Value) -> Result<Vec<Value>, ComputeError> {
    let bad = |m: &str| Err(ComputeError::invalid(format!("params: {m}")));
    let Some(obj) = params.as_object() else {
        return bad(r#"an agent takes {"prompt": "..."} or {"messages": [...]}"#);
    };
    let mut messages = Vec::new();
    if let Some(system) = &file.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    match (obj.get("prompt"), obj.get("messages"), obj.len()) {
        (Some(Value::String(p)), None, 1) => messages.push(json!({"role": "user", "content": p})),
        (None, Some(Value::Array(list)), 1) => {
            if list.is_empty() {
                return bad("messages: empty");
            }
            for (i, m) in list.iter().enumerate() {
                let role = m.get("role").and_then(Value::as_str);
                if !matches!(role, Some("system" | "user" | "assistant" | "tool")) {
                    return Err(ComputeError::invalid(format!(
                        "params: messages[{i}]: role must be system, user, assistant or tool"
                    )));
                }
                messages.push(m.clone());
            }
        }
        _ => return bad(r#"an agent takes {"prompt": "..."} or {"messages": [...]}, one of the two"#),
    }
    Ok(messages)
}
