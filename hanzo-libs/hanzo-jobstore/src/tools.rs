//! Named tools: a runtime, a source, a JSON Schema of the params and default limits,
//! registered once and called by name. Kept in the same database as the jobs, so a
//! registration is as durable as a job (committed by the writer before it is
//! acknowledged).

use crate::record::time;
use hanzo_compute::{ResourceLimits, RuntimeKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::SystemTime;

/// What a tool is, as registered. Validating the name and the schema is the caller's
/// job (the API does it); the store keeps what it is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSpec {
    /// The tool's name, unique in the store.
    pub name: String,
    /// Which runtime runs it.
    pub runtime: RuntimeKind,
    /// A path, an image reference or `sha256:<hex>` of a stored module.
    pub source: String,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema its params must satisfy; `None` accepts any params.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// The JSON Schema of its output, where known (an MCP tool's `outputSchema`); for
    /// the clients of the node's MCP server, not checked by the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// The limits every call runs with; missing fields take the defaults.
    #[serde(default)]
    pub limits: ResourceLimits,
    /// The function to call; `None` lets the runtime choose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

/// A registered tool: its spec and when it was stored. Times serialise as RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolRecord {
    /// What was registered.
    #[serde(flatten)]
    pub spec: ToolSpec,
    /// When the name was first registered (kept when the tool is replaced).
    #[serde(with = "time")]
    pub created_at: SystemTime,
    /// When this definition was stored.
    #[serde(with = "time")]
    pub updated_at: SystemTime,
}
