//! `hanzo-node mcp serve`: the node's named tools as an MCP server on stdin/stdout
//! (CONTRACTS §9), for editors and agent hosts that start their servers as commands.
//!
//! It works whether or not `hanzo-node serve` runs on the same data directory:
//! - a node serving from it holds its job store: `mcp serve` relays to that node's
//!   `/mcp` (its endpoint file and token), so calls are that node's jobs;
//! - otherwise `mcp serve` is the node: it opens the job store itself and runs each
//!   call as a job in process, under the same policy, limits and receipts as `serve`
//!   (with no HTTP listener and no peers), until its client closes stdin.

use crate::node::{Node, load_config};
use clap::Subcommand;
use hanzo_compute::ComputeError;
use hanzo_mcp::rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation, JsonObject,
    ProtocolVersion, Tool,
};
use hanzo_mcp::rmcp::service::{RoleClient, RunningService};
use hanzo_mcp::rmcp::{ErrorData, ServiceExt};
use hanzo_mcp::server::{CancellationToken, NodeServer, ToolHost};
use std::path::Path;
use std::sync::Arc;

#[derive(Subcommand, Debug)]
pub enum McpCmd {
    /// Serve the node's named tools over MCP on stdin/stdout (configure it in an MCP
    /// client as the command `hanzo-node mcp serve`). Relays to a node serving from
    /// the same data directory, else runs the calls itself.
    Serve,
}

pub async fn run(config: Option<&Path>, cmd: McpCmd) -> anyhow::Result<u8> {
    match cmd {
        McpCmd::Serve => serve(config).await,
    }
}

async fn serve(config: Option<&Path>) -> anyhow::Result<u8> {
    let cfg = load_config(config)?;
    crate::secure::data_dir(&cfg.node.data_dir)?;
    let server = match crate::node::open_store(&cfg).await? {
        Ok((store, recovery)) => {
            let node = Node::build(config, None, true).await?;
            let api = crate::node::local_api(
                &node.config,
                Arc::new(node.compute),
                node.wasm.clone(),
                node.agent.clone(),
                store,
            )?;
            api.recover(recovery.queued, recovery.remote).await;
            tracing::info!(data_dir = %cfg.node.data_dir.display(), "serving MCP on stdio, running calls in process");
            api.mcp_server()
        }
        Err(hanzo_jobstore::Error::Locked(_)) => {
            let host = Relay::connect(&cfg).await?;
            let name = host.name.clone();
            NodeServer::new(Arc::new(host), name)
        }
        Err(e) => return Err(ComputeError::internal(e).into()),
    };
    let running = server
        .serve(hanzo_mcp::rmcp::transport::stdio())
        .await
        .map_err(|e| ComputeError::internal(format!("MCP on stdio: {e}")))?;
    // Until the client closes stdin (or the process is told to stop).
    tokio::select! {
        _ = running.waiting() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(0)
}

/// A node serving from the same data directory, reached over its `/mcp`.
pub(crate) struct Relay {
    pub(crate) client: RunningService<RoleClient, ClientConfig>,
    name: String,
}

impl Relay {
    pub(crate) async fn connect(cfg: &hanzo_compute::Config) -> anyhow::Result<Relay> {
        let dir = &cfg.node.data_dir;
        let unreachable = |why: String| {
            crate::job_cmd::fail(
                4,
                format!(
                    "a node is serving from {} and its MCP endpoint did not answer: {why}",
                    dir.display()
                ),
            )
        };
        let url = crate::secure::read_endpoint(dir)
            .ok_or_else(|| unreachable("it wrote no endpoint file (api-url)".into()))?;
        // The token goes to loopback only, as with every client command: the address
        // is resolved once, checked, and connected to by number.
        let authority = url
            .strip_prefix("http://")
            .unwrap_or(&url)
            .trim_end_matches('/')
            .to_string();
        let addr = {
            use std::net::ToSocketAddrs;
            let addrs: Vec<std::net::SocketAddr> = authority
                .to_socket_addrs()
                .map_err(|e| unreachable(format!("{url}: {e}")))?
                .collect();
            match addrs.first() {
                Some(a) if addrs.iter().all(|a| a.ip().is_loopback()) => *a,
                _ => {
                    return Err(crate::job_cmd::fail(
                        2,
                        format!(
                            "{url} is not a loopback address: refusing to send the API token over plain http"
                        ),
                    ));
                }
            }
        };
        let url = format!("http://{addr}");
        let token = Some(cfg.node.api_token.clone())
            .filter(|t| !t.is_empty())
            .or_else(|| crate::secure::read_token(dir))
            .ok_or_else(|| unreachable("no API token (node.api_token or <data_dir>/api-token)".into()))?;
        hanzo_mcp::install_crypto();
        let config = hanzo_mcp::rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            format!("{url}/mcp"),
        )
        .auth_header(token);
        let transport = hanzo_mcp::rmcp::transport::StreamableHttpClientTransport::with_client(
            reqwest_client().map_err(|e| unreachable(e.to_string()))?,
            config,
        );
        let client = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("hanzo-node mcp serve", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
        .serve(transport)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
        let name = client
            .peer_info()
            .and_then(|i| i.server_info.as_ref().and_then(|s| s.title.clone()))
            .unwrap_or_else(|| url.clone());
        tracing::info!(node = %url, "serving MCP on stdio, relaying to the serving node");
        Ok(Relay { client, name })
    }
}

/// No proxy (an editor's `HTTP_PROXY` would otherwise get the token in clear), no
/// redirects.
fn reqwest_client() -> Result<hanzo_mcp::reqwest::Client, hanzo_mcp::reqwest::Error> {
    hanzo_mcp::reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .redirect(hanzo_mcp::reqwest::redirect::Policy::none())
        .build()
}

#[async_trait::async_trait]
impl ToolHost for Relay {
    async fn list(&self) -> Result<Vec<Tool>, ErrorData> {
        self.client
            .list_all_tools()
            .await
            .map_err(|e| ErrorData::internal_error(format!("the serving node: {e}"), None))
    }

    async fn call(
        &self,
        name: &str,
        args: JsonObject,
        cancel: CancellationToken,
        _started: tokio::sync::oneshot::Sender<String>,
    ) -> Result<CallToolResult, ErrorData> {
        let params = CallToolRequestParams::new(name.to_string()).with_arguments(args);
        // Dropping the call (a cancellation) sends the node `notifications/cancelled`,
        // which cancels its job.
        tokio::select! {
            r = self.client.call_tool(params) => r.map_err(|e| match e {
                hanzo_mcp::rmcp::ServiceError::McpError(e) => e,
                e => ErrorData::internal_error(format!("the serving node: {e}"), None),
            }),
            _ = cancel.cancelled() => Err(ErrorData::internal_error("cancelled", None)),
        }
    }
}
