//! The node as an MCP server (CONTRACTS §9): `tools/list` gives the node's named tools
//! (name, description, input schema, output schema where known), `tools/call` runs one
//! as a job under its registered limits and answers `structuredContent` plus a text
//! item, `isError` on failure, and the job's receipt in the result's `_meta`.
//!
//! The handler ([`NodeServer`]) is the same over stdio (`hanzo-node mcp serve`) and
//! streamable HTTP (`/mcp` on the API); what it serves comes from a [`ToolHost`]: the
//! node's API in process, or a serving node reached over its own `/mcp`.
//!
//! While a call runs, a client that asked for progress (a `progressToken`) gets a
//! notification every second naming the job; a client's `notifications/cancelled`
//! cancels the job.

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject,
    ListToolsResult, MetaObject, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
pub use tokio_util::sync::CancellationToken;

/// The `_meta` key of a call's job id.
pub const META_JOB_ID: &str = "hanzo-node/job_id";
/// The `_meta` key of a call's receipt (CONTRACTS §4), as `receipt verify` reads it.
pub const META_RECEIPT: &str = "hanzo-node/receipt";
/// The `_meta` key of a call's usage (wall time, memory, fuel).
pub const META_USAGE: &str = "hanzo-node/usage";

/// How often a running call reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the MCP server serves: the node's named tools, and a way to run one.
#[async_trait::async_trait]
pub trait ToolHost: Send + Sync + 'static {
    /// Every named tool, as MCP lists them.
    async fn list(&self) -> Result<Vec<Tool>, ErrorData>;

    /// Runs tool `name` with `args`, as a job, to its end; the job is cancelled when
    /// `cancel` fires. `started` is told the job's id once it is queued.
    async fn call(
        &self,
        name: &str,
        args: JsonObject,
        cancel: CancellationToken,
        started: tokio::sync::oneshot::Sender<String>,
    ) -> Result<CallToolResult, ErrorData>;
}

/// A named tool as `tools/list` shows it. An input schema that is not an object
/// schema (a boolean schema, or none) is shown as "any object": MCP wants one.
pub fn tool_entry(
    name: &str,
    description: Option<&str>,
    schema: Option<&Value>,
    output: Option<&Value>,
) -> Tool {
    let input = match schema {
        Some(Value::Object(m)) => m.clone(),
        _ => json!({"type": "object"}).as_object().cloned().unwrap_or_default(),
    };
    let mut t = Tool::new_with_raw(
        name.to_string(),
        description.map(|d| d.to_string().into()),
        Arc::new(input),
    );
    // rmcp drops a non-object output schema for clients of older protocol versions;
    // keep only object ones, which every version takes.
    if let Some(Value::Object(o)) = output
        && o.get("type").and_then(Value::as_str) == Some("object")
    {
        t = t.with_raw_output_schema(Arc::new(o.clone()));
    }
    t
}

/// A finished job as a `tools/call` result: its output as `structuredContent` (an
/// output that is not an object is wrapped as `{"result": ...}`, since MCP's structured
/// content is an object) with the same JSON as a text item; a failure as `isError`
/// with `code: message`. `_meta` carries the job id, the receipt and the usage.
pub fn job_result(
    job_id: &str,
    output: Result<Value, (String, String)>,
    receipt: Option<Value>,
    usage: Option<Value>,
) -> CallToolResult {
    let mut r = match output {
        Ok(v) => {
            let text = v.to_string();
            let structured = if v.is_object() { v } else { json!({ "result": v }) };
            let mut r = CallToolResult::structured(structured);
            r.content = vec![ContentBlock::text(text)];
            r
        }
        Err((code, message)) => CallToolResult::error(vec![ContentBlock::text(format!("{code}: {message}"))]),
    };
    let mut meta = MetaObject::new();
    meta.insert(META_JOB_ID.into(), json!(job_id));
    if let Some(receipt) = receipt {
        meta.insert(META_RECEIPT.into(), receipt);
    }
    if let Some(usage) = usage {
        meta.insert(META_USAGE.into(), usage);
    }
    r = r.with_meta(Some(meta));
    r
}

/// The node's MCP server over a [`ToolHost`]; cheap to clone (one per HTTP session).
pub struct NodeServer {
    host: Arc<dyn ToolHost>,
    name: String,
}

impl Clone for NodeServer {
    fn clone(&self) -> Self {
        NodeServer {
            host: self.host.clone(),
            name: self.name.clone(),
        }
    }
}

impl NodeServer {
    /// A server of `host`'s tools, introducing itself as `name` (the node's id, say).
    pub fn new(host: Arc<dyn ToolHost>, name: impl Into<String>) -> Self {
        NodeServer {
            host,
            name: name.into(),
        }
    }
}

impl ServerHandler for NodeServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("hanzo-node", env!("CARGO_PKG_VERSION")).with_title(self.name.clone()))
            .with_instructions(
                "The named tools of a hanzo-node. Every call runs as a job on the node, sandboxed and held to the tool's registered limits; the result's _meta carries the job id and its signed receipt (hanzo-node/receipt), which `hanzo-node receipt verify` checks.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _cx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.host.list().await?))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<String>();
        let call = self.host.call(&request.name, args, cx.ct.clone(), started_tx);
        let Some(token) = cx.meta.get_progress_token() else {
            return call.await.map(Into::into);
        };
        // Progress while the job runs: seconds so far, with the job's id once known.
        let peer = cx.peer.clone();
        let ticker = async move {
            let job = started_rx.await.ok();
            let t0 = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            loop {
                tick.tick().await;
                let secs = t0.elapsed().as_secs_f64().round();
                let message = match &job {
                    Some(id) => format!("job {id} running ({secs} s)"),
                    // A host that does not name its jobs (a relay).
                    None => format!("running ({secs} s)"),
                };
                let p = ProgressNotificationParam::new(token.clone(), secs).with_message(message);
                if peer.notify_progress(p).await.is_err() {
                    // The client is gone; the call's own end will follow.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            r = call => r.map(Into::into),
            _ = ticker => unreachable!("the progress ticker never ends"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_become_structured_content_and_a_text_item() {
        let r = job_result("j1", Ok(json!({"a": 1})), Some(json!({"sig": "x"})), None);
        assert_eq!(r.structured_content, Some(json!({"a": 1})));
        assert_eq!(r.content[0].as_text().unwrap().text, r#"{"a":1}"#);
        assert_eq!(r.is_error, Some(false));
        let meta = r.meta.unwrap();
        assert_eq!(meta.get(META_JOB_ID), Some(&json!("j1")));
        assert_eq!(meta.get(META_RECEIPT), Some(&json!({"sig": "x"})));
        let r = job_result("j2", Ok(json!([1, 2])), None, None);
        assert_eq!(r.structured_content, Some(json!({"result": [1, 2]})));
        assert_eq!(r.content[0].as_text().unwrap().text, "[1,2]");
    }

    #[test]
    fn failures_are_is_error_with_the_code() {
        let r = job_result("j", Err(("limit_exceeded".into(), "timeout".into())), None, None);
        assert_eq!(r.is_error, Some(true));
        assert_eq!(r.content[0].as_text().unwrap().text, "limit_exceeded: timeout");
    }

    #[test]
    fn tools_always_have_an_object_input_schema() {
        let t = tool_entry(
            "t",
            Some("d"),
            Some(&json!(true)),
            Some(&json!({"type": "string"})),
        );
        assert_eq!(
            Value::Object((*t.input_schema).clone()),
            json!({"type": "object"})
        );
        assert!(t.output_schema.is_none());
        let s = json!({"type": "object", "properties": {"x": {"type": "integer"}}});
        let t = tool_entry("t", None, Some(&s), Some(&s));
        assert_eq!(Value::Object((*t.input_schema).clone()), s);
        assert!(t.output_schema.is_some());
    }
}
