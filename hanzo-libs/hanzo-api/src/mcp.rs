//! `/mcp`: the node's named tools over MCP (streamable HTTP, CONTRACTS §9), behind the
//! API's guard like every route (the token as bearer, the `Host` and `Origin` checks).
//! A call is a job like `POST /v1/tools/{name}/call?wait=true`: params checked against
//! the tool's schema, the tool's limits, the API's policy, stored in the job store.

use crate::State;
use crate::routes::{enqueue, read_store, wait_or_cancel};
use axum::http::StatusCode;
use hanzo_mcp::rmcp::ErrorData;
use hanzo_mcp::rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use hanzo_mcp::server::{CancellationToken, NodeServer, ToolHost, job_result, tool_entry};
use serde_json::{Value, json};
use std::sync::Arc;

/// The API as the MCP server's host of tools.
pub(crate) struct ApiHost {
    pub(crate) state: Arc<State>,
}

fn failure(code: &str, message: &str) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(format!("{code}: {message}"))])
}

#[async_trait::async_trait]
impl ToolHost for ApiHost {
    async fn list(&self) -> Result<Vec<Tool>, ErrorData> {
        let tools = read_store(&self.state, |s| s.list_tools())
            .await
            .map_err(|e| ErrorData::internal_error(e.message, None))?;
        Ok(tools
            .iter()
            .map(|t| {
                tool_entry(
                    &t.spec.name,
                    t.spec.description.as_deref(),
                    t.spec.schema.as_ref(),
                    t.spec.output_schema.as_ref(),
                )
            })
            .collect())
    }

    async fn call(
        &self,
        name: &str,
        args: JsonObject,
        cancel: CancellationToken,
        started: tokio::sync::oneshot::Sender<String>,
    ) -> Result<CallToolResult, ErrorData> {
        let state = &self.state;
        let tool = match crate::tools::stored(state, name).await {
            Ok(t) => t,
            Err(e) if e.status == StatusCode::NOT_FOUND => {
                return Err(ErrorData::invalid_params(format!("unknown tool '{name}'"), None));
            }
            Err(e) => return Err(ErrorData::internal_error(e.message, None)),
        };
        let params = Value::Object(args);
        // Arguments that break the schema are the caller's to fix: a tool error the
        // model can read (MCP's advice), not a protocol error.
        if let Err(e) = crate::tools::validate(&tool, &params) {
            return Ok(failure(e.code, &e.message));
        }
        let submitted = match enqueue(state, crate::tools::tool_job(tool, params), true).await {
            Ok(s) => s,
            Err(e) => return Ok(failure(e.code, &e.message)),
        };
        let id = submitted.id;
        let _ = started.send(id.clone());
        let Some(done) = submitted.done else {
            return Err(ErrorData::internal_error("the job has no waiter", None));
        };
        // The client cancelled (or went away): so is the job.
        let (record, output) = wait_or_cancel(state, &id, done, cancel.cancelled())
            .await
            .map_err(|e| ErrorData::internal_error(e.message, None))?;
        let usage = record.usage.map(|u| json!(u));
        Ok(job_result(&id, output, record.receipt, usage))
    }
}

/// The `/mcp` route: a streamable-HTTP MCP server of the node's named tools.
pub(crate) fn routes(state: Arc<State>) -> axum::Router<Arc<State>> {
    use hanzo_mcp::rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let name = state.scheduler.compute().key().id().to_string();
    let server = NodeServer::new(Arc::new(ApiHost { state }), name);
    // The API's guard has checked `Host` (DNS rebinding) and `Origin` already, against
    // the node's own list; rmcp's default list (loopback only) would refuse a node
    // that listens elsewhere.
    let config = StreamableHttpServerConfig::default()
        .disable_allowed_hosts()
        // As every other body the API takes.
        .with_max_request_body_bytes(crate::MAX_TOOL_BODY);
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        LocalSessionManager::default().into(),
        config,
    );
    axum::Router::new().nest_service("/mcp", service)
}

/// The node's MCP server over this API, for `hanzo-node mcp serve` in process.
pub(crate) fn server(state: Arc<State>) -> NodeServer {
    let name = state.scheduler.compute().key().id().to_string();
    NodeServer::new(Arc::new(ApiHost { state }), name)
}
