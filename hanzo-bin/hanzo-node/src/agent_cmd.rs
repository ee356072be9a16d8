//! `hanzo-node run agent AGENT.toml` (CONTRACTS §10): the agent runs in this process,
//! and its tool calls are jobs of the node whose data directory this is:
//! - a node serving from it holds its job store: each call goes to that node's `/mcp`
//!   (its endpoint file and token), so the calls are that node's jobs;
//! - otherwise this process opens the job store itself and runs each call as a stored
//!   job through the same scheduler, policy, limits and receipts as `serve`.
//!
//! The agent file is read here and travels as the job's source (its text), so the
//! receipt's `code_hash` is the sha256 of the file's bytes. The key named by
//! `api_key_env` comes from `--env`, else from this shell's environment: the operator
//! at their shell is trusted with their own keys.

use crate::mcp_cmd::Relay;
use crate::node::{Node, load_config};
use crate::run::RunArgs;
use hanzo_agent::{AgentFile, Call, Child, ToolDef, Tools};
use hanzo_compute::{ComputeError, RuntimeKind};
use hanzo_mcp::rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, ServerResult, Tool,
};
use hanzo_mcp::rmcp::service::PeerRequestOptions;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::OnceCell;

pub async fn run(config: Option<&Path>, args: RunArgs) -> anyhow::Result<u8> {
    let cfg = load_config(config)?;
    let path = std::path::PathBuf::from(&args.source);
    let text = tokio::task::spawn_blocking(move || std::fs::read_to_string(&path))
        .await
        .map_err(ComputeError::internal)?
        .map_err(|e| ComputeError::invalid(format!("cannot read the agent file {}: {e}", args.source)))?;
    let file = AgentFile::parse(&text)?;
    let mut spec = args.to_spec(cfg.compute.max_output_bytes)?;
    spec.source = text;
    hanzo_compute::Ceilings::from_config(&cfg.compute).check(&spec.limits)?;
    if !cfg.runtime_enabled(RuntimeKind::Agent) {
        return Err(ComputeError::Unavailable(
            "the agent runtime is not enabled on this node ([compute] enabled_runtimes)".into(),
        )
        .into());
    }
    if let Some(var) = &file.api_key_env
        && !spec.env.contains_key(var)
    {
        match std::env::var(var) {
            Ok(key) => {
                spec.env.insert(var.clone(), key);
            }
            Err(_) => {
                return Err(ComputeError::invalid(format!(
                    "api_key_env: {var} is not set (in this shell, or with --env {var}=...)"
                ))
                .into());
            }
        }
    }
    crate::secure::data_dir(&cfg.node.data_dir)?;
    match crate::node::open_store(&cfg).await? {
        Ok((store, _recovery)) => {
            // Jobs the store holds from before stay queued for the next `serve`: a
            // one-shot command does not take over the node's queue.
            let node = Node::build(config, None, false).await?;
            let compute = Arc::new(node.compute);
            let _api = crate::node::local_api(
                &node.config,
                compute.clone(),
                node.wasm.clone(),
                node.agent.clone(),
                store,
            )?;
            crate::run::run_spec(&compute, spec, &args).await
        }
        Err(hanzo_jobstore::Error::Locked(_)) => {
            let node = Node::build(config, Some(RuntimeKind::Agent), false).await?;
            let relay = Relay::connect(&cfg).await?;
            if let Some(agent) = &node.agent {
                agent.bind(Arc::new(RelayTools {
                    relay,
                    tools: OnceCell::new(),
                }));
            }
            crate::run::run_spec(&node.compute, spec, &args).await
        }
        Err(e) => Err(ComputeError::internal(e).into()),
    }
}

/// The serving node's tools, reached over its `/mcp`.
struct RelayTools {
    relay: Relay,
    /// Its tool list, read once per run.
    tools: OnceCell<Vec<Tool>>,
}

#[async_trait::async_trait]
impl Tools for RelayTools {
    async fn describe(&self, name: &str) -> Result<Option<ToolDef>, ComputeError> {
        let tools = self
            .tools
            .get_or_try_init(|| async {
                self.relay
                    .client
                    .list_all_tools()
                    .await
                    .map_err(|e| ComputeError::Unavailable(format!("the serving node: {e}")))
            })
            .await?;
        Ok(tools.iter().find(|t| t.name == name).map(|t| ToolDef {
            name: t.name.to_string(),
            description: t.description.as_ref().map(|d| d.to_string()),
            schema: Some(Value::Object((*t.input_schema).clone())),
            // The serving node bounds its own agents' depth.
            agent: false,
        }))
    }

    async fn call(&self, call: Call) -> Result<Child, ComputeError> {
        let Value::Object(args) = call.params else {
            return Ok(Child {
                job_id: None,
                result: Err(("invalid_params".into(), "params must be an object".into())),
                receipt: None,
            });
        };
        let params = CallToolRequestParams::new(call.tool.clone()).with_arguments(args);
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let mut handle = self
            .relay
            .client
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .map_err(|e| ComputeError::Unavailable(format!("the serving node: {e}")))?;
        let answer = tokio::select! {
            r = &mut handle.rx => r,
            _ = call.cancel.cancelled() => {
                // Sent before this returns (and this process perhaps exits): the
                // node cancels the call's job on `notifications/cancelled`.
                let _ = handle.cancel(Some("the agent was cancelled or ran out of time".into())).await;
                return Ok(Child {
                    job_id: None,
                    result: Err(("cancelled".into(), "the agent was cancelled or ran out of time".into())),
                    receipt: None,
                });
            }
        };
        let result = match answer {
            Ok(r) => r,
            Err(_) => {
                return Err(ComputeError::Unavailable(
                    "the serving node closed the call".into(),
                ));
            }
        };
        match result {
            Ok(ServerResult::CallToolResult(r)) => Ok(child_of(r)),
            Ok(other) => Err(ComputeError::Unavailable(format!(
                "the serving node answered a call with {other:?}"
            ))),
            Err(hanzo_mcp::rmcp::ServiceError::McpError(e)) => Ok(Child {
                job_id: None,
                result: Err(("invalid_params".into(), e.message.to_string())),
                receipt: None,
            }),
            Err(e) => Err(ComputeError::Unavailable(format!("the serving node: {e}"))),
        }
    }
}

/// A `tools/call` result of the node's MCP server (`hanzo_mcp::server::job_result`)
/// as the job it reports: the output is the text item's JSON (structured content
/// wraps a non-object), a failure's text is `code: message`.
fn child_of(r: CallToolResult) -> Child {
    let meta = r.meta.as_ref();
    let get = |k: &str| meta.and_then(|m| m.get(k)).cloned();
    let job_id = get(hanzo_mcp::server::META_JOB_ID).and_then(|v| v.as_str().map(str::to_string));
    let receipt = get(hanzo_mcp::server::META_RECEIPT);
    let text = r
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default();
    let result = if r.is_error.unwrap_or(false) {
        let (code, message) = text.split_once(": ").unwrap_or(("tool_failed", &text));
        Err((code.to_string(), message.to_string()))
    } else {
        serde_json::from_str::<Value>(&text)
            .ok()
            .or(r.structured_content.clone())
            .ok_or_else(|| {
                (
                    "internal".to_string(),
                    "the serving node's result has no output".to_string(),
                )
            })
    };
    Child {
        job_id,
        result,
        receipt,
    }
}
