//! Named tools: register a runtime + source + JSON Schema of the params + limits under
//! a name, then call it by name. A call's params are validated against the schema
//! before anything is stored or run; a valid call is then an ordinary job (the same
//! path as `POST /v1/jobs`).

use crate::error::ApiError;
use crate::routes::schemas::{ErrorReply, Job as JobView, Queued, Tool, ToolDefinition, ToolList};
use crate::routes::{Segment, body, flag, query, read_store, submit_spec};
use crate::{MAX_TOOL_BODY, State};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hanzo_compute::{ComputeError, JobSpec, RuntimeKind};
use hanzo_jobstore::{ToolRecord, ToolSpec};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

type S = AxState<Arc<State>>;
type ApiResult<T = Response> = Result<T, ApiError>;

/// The most schema violations named in one `invalid_params` message; the first few
/// are what a caller needs, and the message stays one readable line.
const MAX_REPORTED: usize = 5;

pub(crate) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route(
            "/v1/tools",
            post(register_tool)
                .get(list_tools)
                .layer(DefaultBodyLimit::max(MAX_TOOL_BODY)),
        )
        .route("/v1/tools/{name}", get(get_tool).delete(delete_tool))
        .route(
            "/v1/tools/{name}/call",
            post(call_tool).layer(DefaultBodyLimit::max(MAX_TOOL_BODY)),
        )
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(register_tool, list_tools, get_tool, delete_tool, call_tool))]
pub(crate) struct ToolsDoc;

/// `[a-z0-9][a-z0-9_-]{0,63}`: safe in a URL path segment, a file name and a log line.
fn check_name(name: &str) -> ApiResult<()> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && (b == b'_' || b == b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "name: '{name}' must match [a-z0-9][a-z0-9_-]{{0,63}}"
        )))
    }
}

/// Compiles a tool's schema: draft 2020-12 unless the schema names another in
/// `$schema`; the schema itself is checked against its meta-schema. Remote and file
/// `$ref`s cannot be resolved (the resolver features are off), so a schema that needs
/// them is refused rather than making the node fetch URLs an API caller chose.
fn compile(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(schema)
        .map_err(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("at {at}: {e}")
            }
        })
}

/// Checks params against a tool's schema; the message names each failing location
/// as a JSON pointer under `params` (`params/text: 5 is not of type "string"`).
pub(crate) fn validate(tool: &ToolRecord, params: &Value) -> ApiResult<()> {
    let Some(schema) = &tool.spec.schema else {
        return Ok(());
    };
    // Registration compiled it already; failing now means the stored row changed.
    let validator = compile(schema).map_err(|e| {
        ApiError::internal(format!(
            "tool {}: stored schema no longer compiles: {e}",
            tool.spec.name
        ))
    })?;
    let errors: Vec<String> = validator
        .iter_errors(params)
        .take(MAX_REPORTED + 1)
        .map(|e| format!("params{}: {e}", e.instance_path()))
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    let mut message = errors[..errors.len().min(MAX_REPORTED)].join("; ");
    if errors.len() > MAX_REPORTED {
        message.push_str("; ...");
    }
    Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_params", message))
}

fn parse_tool(bytes: &[u8]) -> ApiResult<ToolSpec> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, ToolSpec>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::invalid(format!("tool: {inner}"))
        } else {
            ApiError::invalid(format!("{path}: {inner}"))
        }
    })
}

pub(crate) async fn stored(state: &State, name: &str) -> ApiResult<ToolRecord> {
    let key = name.to_string();
    read_store(state, move |s| s.get_tool(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("name: no tool {name}")))
}

/// An MCP tool registered without a schema takes its server's: the node asks the
/// server (starting it under the tool's limits, or reaching it) for the tool's
/// `inputSchema`, and its description and `outputSchema` where the definition has
/// none. A server that cannot be reached or has no such tool refuses the registration.
async fn describe(state: &State, spec: &mut ToolSpec) -> ApiResult<()> {
    if spec.schema.is_some() && spec.description.is_some() && spec.output_schema.is_some() {
        return Ok(());
    }
    let kind = spec.runtime;
    let Some(rt) = state.scheduler.compute().runtime(kind).cloned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "runtime_unavailable",
            format!("runtime: the {kind} runtime is not enabled on this node"),
        ));
    };
    let mut job = JobSpec::new(kind, spec.source.clone()).limits(spec.limits.clone());
    job.function = spec.function.clone();
    let described = rt.describe(&job).await.map_err(|e| match e {
        ComputeError::Unavailable(m) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "unavailable", format!("source: {m}"))
        }
        e => ApiError::invalid(format!("source: {e}")),
    })?;
    if let Some(d) = described {
        if spec.schema.is_none() {
            spec.schema = Some(d.input_schema);
        }
        if spec.description.is_none() {
            spec.description = d.description;
        }
        if spec.output_schema.is_none() {
            spec.output_schema = d.output_schema;
        }
        // The server's only tool, when none was named, is named from now on.
        if !d.name.is_empty() {
            spec.function.get_or_insert(d.name);
        }
    }
    Ok(())
}

/// Registers a named tool. Re-posting a name replaces that tool (200; its
/// `created_at` is kept), so a deploy script can simply post again; a new name
/// answers 201. The schema is compiled first: an invalid schema is refused (400
/// naming `schema`) and nothing is stored.
#[utoipa::path(post, path = "/v1/tools",
    request_body(content = ToolDefinition, description = "The tool: name, runtime and source required"),
    responses(
        (status = 201, description = "Registered: the tool", body = Tool),
        (status = 200, description = "Replaced a tool of that name: the tool", body = Tool),
        (status = 400, description = "invalid_input, naming the field (name, schema, limits.* including a limit above the node's ceiling, ...)", body = ErrorReply),
        (status = 413, description = "too_large: body over 1 MiB", body = ErrorReply),
        (status = 502, description = "unavailable: an mcp tool's HTTP server could not be reached to describe its tool", body = ErrorReply),
        (status = 503, description = "runtime_unavailable: an mcp tool on a node without the mcp runtime", body = ErrorReply)))]
async fn register_tool(AxState(state): S, b: Result<Bytes, BytesRejection>) -> ApiResult {
    let bytes = body(b)?;
    let mut spec = parse_tool(&bytes)?;
    crate::routes::default_output_cap(&state, &bytes, &mut spec.limits);
    check_name(&spec.name)?;
    if spec.source.trim().is_empty() {
        return Err(ApiError::invalid("source: must not be empty"));
    }
    spec.limits
        .validate()
        .map_err(|e| ApiError::invalid(format!("limits: {e}")))?;
    // The same ceilings as a job's, now and again at every call (they may have been
    // lowered since).
    state.policy.check_limits(&spec.limits)?;
    state
        .policy
        .check_mcp_source("source", spec.runtime, &spec.source)?;
    state
        .policy
        .check_agent_source("source", spec.runtime, &spec.source)?;
    if matches!(spec.runtime, RuntimeKind::Mcp | RuntimeKind::Agent) {
        describe(&state, &mut spec).await?;
    }
    if let Some(schema) = &spec.schema {
        compile(schema).map_err(|e| ApiError::invalid(format!("schema: {e}")))?;
    }
    // Not checked against outputs, but shown to MCP clients as a schema: one it must be.
    if let Some(schema) = &spec.output_schema {
        compile(schema).map_err(|e| ApiError::invalid(format!("output_schema: {e}")))?;
    }
    let (record, replaced) = state.store.put_tool(spec).await?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(json!(record))).into_response())
}

/// Every registered tool, by name.
#[utoipa::path(get, path = "/v1/tools",
    responses((status = 200, description = "Every tool, by name", body = ToolList)))]
async fn list_tools(AxState(state): S) -> ApiResult {
    let tools = read_store(&state, |s| s.list_tools()).await?;
    Ok(Json(json!({ "tools": tools })).into_response())
}

/// One tool: name, runtime, source, description, schema, limits, function, times.
#[utoipa::path(get, path = "/v1/tools/{name}",
    params(("name" = String, Path, description = "The tool's name")),
    responses((status = 200, description = "The tool", body = Tool),
        (status = 400, description = "invalid_input: the name is not valid in a path", body = ErrorReply),
        (status = 404, description = "not_found", body = ErrorReply)))]
async fn get_tool(AxState(state): S, Segment(name): Segment) -> ApiResult {
    Ok(Json(json!(stored(&state, &name).await?)).into_response())
}

/// Removes a tool. Jobs already submitted through it are kept and run.
#[utoipa::path(delete, path = "/v1/tools/{name}",
    params(("name" = String, Path, description = "The tool's name")),
    responses((status = 204, description = "Removed"),
        (status = 400, description = "invalid_input: the name is not valid in a path", body = ErrorReply),
        (status = 404, description = "not_found", body = ErrorReply)))]
async fn delete_tool(AxState(state): S, Segment(name): Segment) -> ApiResult {
    if state.store.remove_tool(&name).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("name: no tool {name}")))
    }
}

/// Calls a tool by name: the body is the params (empty means `{}`). They are validated
/// against the tool's schema first (400 `invalid_params`, naming each failing
/// location; nothing stored or run), then submitted as a job with the tool's runtime,
/// source, function and limits, exactly as `POST /v1/jobs` would.
#[utoipa::path(post, path = "/v1/tools/{name}/call",
    params(("name" = String, Path, description = "The tool's name"),
        ("wait" = Option<bool>, Query, description = "Wait for the result (200 with the job)")),
    request_body(content = Value, description = "The params: any JSON value the tool's schema accepts (empty body: {})"),
    responses(
        (status = 202, description = "Queued: committed to the store", body = Queued),
        (status = 200, description = "With wait=true: the finished job", body = JobView),
        (status = 400, description = "invalid_params (names the failing field) or invalid_input", body = ErrorReply),
        (status = 404, description = "not_found: no such tool", body = ErrorReply),
        (status = 409, description = "duplicate: a job of that id is already queued or running", body = ErrorReply),
        (status = 413, description = "too_large: body over 1 MiB", body = ErrorReply),
        (status = 422, description = "too_large: the job can never fit this node", body = ErrorReply),
        (status = 429, description = "queue_full, with Retry-After", body = ErrorReply,
            headers(("Retry-After" = u64, description = "Seconds, from the queue's drain rate"))),
        (status = 503, description = "runtime_unavailable: nothing was stored", body = ErrorReply)))]
async fn call_tool(
    AxState(state): S,
    Segment(name): Segment,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let q = query(q)?;
    let wait = flag(&q, "wait")?;
    if let Some(k) = q.keys().find(|k| *k != "wait") {
        return Err(ApiError::invalid(format!("{k}: unknown query parameter")));
    }
    let tool = stored(&state, &name).await?;
    let bytes = body(b)?;
    let params: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("params: not JSON: {e}")))?
    };
    validate(&tool, &params)?;
    submit_spec(&state, tool_job(tool, params), wait).await
}

/// The job a call of `tool` with `params` is: its runtime, source, function and limits.
pub(crate) fn tool_job(tool: ToolRecord, params: Value) -> JobSpec {
    let t = tool.spec;
    let mut spec = JobSpec::new(t.runtime, t.source).params(params).limits(t.limits);
    spec.function = t.function;
    spec
}
