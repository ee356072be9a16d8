//! Schemas of the replies the handlers build from the store's records, the scheduler's
//! snapshot and `json!`, for the OpenAPI document only. Nothing here is serialised: the
//! JSON the API sends stays exactly what it was (CONTRACTS §6), and the tests below
//! check real replies against these schemas so that the two cannot drift apart.
//!
//! The job spec, limits, receipts, capabilities and services take their schemas from
//! `hanzo-compute` itself (its `openapi` feature).

// Never built: these types only describe JSON that is built elsewhere.
#![allow(dead_code)]

use hanzo_compute::{Capabilities, JobSpec, Receipt, ResourceLimits, RuntimeKind, Usage};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Every error: `{"error": {"code", "message"}}`.
#[derive(ToSchema)]
pub(crate) struct ErrorReply {
    /// What went wrong.
    error: ErrorBody,
}

/// A stable code and a message that names the field, parameter or job at fault.
#[derive(ToSchema)]
pub(crate) struct ErrorBody {
    /// `invalid_input`, `invalid_params`, `unauthorized`, `not_found`,
    /// `already_finished`, `duplicate`, `too_large`, `queue_full`,
    /// `runtime_unavailable`, `unavailable`, `internal`.
    #[schema(examples("invalid_input"))]
    code: String,
    /// For people; starts with the field or parameter at fault where there is one.
    #[schema(examples("limits.memory_mb: invalid type: string \"x\", expected u64"))]
    message: String,
}

/// `GET /healthz` while the node can take jobs.
#[derive(ToSchema)]
pub(crate) struct Healthy {
    /// Always `ok`.
    #[schema(pattern = "^ok$")]
    status: String,
}

/// Where a job is in its life: `queued → running → succeeded | failed | cancelled`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum JobStatus {
    /// Accepted and waiting to run.
    Queued,
    /// Started.
    Running,
    /// Finished with an output.
    Succeeded,
    /// Finished without an output (the tool failed, a limit was hit, ...).
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

/// The answer to a submit without `wait`: the job is committed and queued.
#[derive(ToSchema)]
pub(crate) struct Queued {
    /// The job's id, for `GET /v1/jobs/{id}`.
    id: String,
    /// Always `queued`.
    #[schema(pattern = "^queued$")]
    status: String,
}

/// Why a job has no output.
#[derive(ToSchema)]
pub(crate) struct JobError {
    /// `tool_failed`, `limit_exceeded`, `invalid_input`, `runtime_unavailable`,
    /// `internal`, `cancelled`, `interrupted`, ...
    code: String,
    /// For people.
    message: String,
}

/// A job as stored: its spec, where it is, and its result once it ended. Times are RFC
/// 3339 (UTC, microseconds).
#[derive(ToSchema)]
pub(crate) struct Job {
    /// The job's id.
    id: String,
    /// The runtime (a copy of `spec.runtime`).
    runtime: RuntimeKind,
    /// Where it is.
    status: JobStatus,
    /// What to run, as submitted (defaults filled in).
    spec: JobSpec,
    /// Scheduling priority, higher first (a copy of `spec.priority`).
    priority: i32,
    /// How many times it was started.
    attempts: u32,
    /// Whether a cancel was asked while it ran.
    cancel_requested: bool,
    /// When it was submitted.
    #[schema(format = DateTime)]
    created_at: String,
    /// When it last started.
    #[schema(format = DateTime, required = true)]
    started_at: Option<String>,
    /// When it ended.
    #[schema(format = DateTime, required = true)]
    finished_at: Option<String>,
    /// The tool's output, when it succeeded (any JSON value).
    #[schema(required = true)]
    output: Option<Value>,
    /// The size of `output` in bytes (its JSON text), when there is one.
    output_bytes: Option<u64>,
    /// Why it failed or was cancelled.
    #[schema(required = true)]
    error: Option<JobError>,
    /// The signed receipt, once it ran (`hanzo-node receipt verify` checks it).
    #[schema(required = true)]
    receipt: Option<Receipt>,
    /// Resources used, once it ended.
    #[schema(required = true)]
    usage: Option<Usage>,
    /// The peer id of the node running or having run it (CONTRACTS §7); `null`
    /// while queued.
    #[schema(required = true)]
    executed_by: Option<String>,
    /// Every attempt, oldest first: on peers, and on this node.
    placements: Vec<crate::network::Placement>,
    /// For a job this node runs for a peer: `{"peer_id", "execution_id"}` of the
    /// submitter's attempt.
    origin: Option<serde_json::Map<String, Value>>,
}

/// A job in a listing: everything [`Job`] holds but the output, whose size
/// `output_bytes` gives (read the output with `GET /v1/jobs/{id}`). A page's size
/// thus does not grow with what the tools printed.
#[derive(ToSchema)]
pub(crate) struct JobRow {
    /// The job's id.
    id: String,
    /// The runtime (a copy of `spec.runtime`).
    runtime: RuntimeKind,
    /// Where it is.
    status: JobStatus,
    /// What to run, as submitted (defaults filled in).
    spec: JobSpec,
    /// Scheduling priority, higher first (a copy of `spec.priority`).
    priority: i32,
    /// How many times it was started.
    attempts: u32,
    /// Whether a cancel was asked while it ran.
    cancel_requested: bool,
    /// When it was submitted.
    #[schema(format = DateTime)]
    created_at: String,
    /// When it last started.
    #[schema(format = DateTime, required = true)]
    started_at: Option<String>,
    /// When it ended.
    #[schema(format = DateTime, required = true)]
    finished_at: Option<String>,
    /// The size of the output in bytes (its JSON text), when the job has one.
    output_bytes: Option<u64>,
    /// Why it failed or was cancelled.
    #[schema(required = true)]
    error: Option<JobError>,
    /// The signed receipt, once it ran.
    #[schema(required = true)]
    receipt: Option<Receipt>,
    /// Resources used, once it ended.
    #[schema(required = true)]
    usage: Option<Usage>,
    /// The peer id of the node running or having run it (CONTRACTS §7); `null`
    /// while queued.
    #[schema(required = true)]
    executed_by: Option<String>,
    /// Every attempt, oldest first: on peers, and on this node.
    placements: Vec<crate::network::Placement>,
    /// For a job this node runs for a peer: `{"peer_id", "execution_id"}` of the
    /// submitter's attempt.
    origin: Option<serde_json::Map<String, Value>>,
}

/// One page of `GET /v1/jobs`, newest first.
#[derive(ToSchema)]
pub(crate) struct JobList {
    /// The jobs, without their outputs.
    jobs: Vec<JobRow>,
    /// The cursor of the next page; `null` on the last one.
    #[schema(required = true)]
    next: Option<String>,
}

/// A stored WASM module.
#[derive(ToSchema)]
pub(crate) struct StoredModule {
    /// sha256 of the module, hex.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    sha256: String,
    /// `sha256:<hex>`, ready for a job's `source`.
    #[schema(pattern = "^sha256:[0-9a-f]{64}$")]
    source: String,
}

/// One server-sent event of `GET /v1/jobs/{id}/logs?follow=true` (the schema of
/// `text/event-stream` describes each event, as schemathesis and OpenAPI 3.2's
/// `itemSchema` read it): `log` events carry one line of the logs with `id` the byte
/// offset past it; the last, `end`, carries `{"id", "status", "error"}` as JSON.
#[derive(ToSchema)]
pub(crate) struct LogEvent {
    /// `log` or `end`.
    #[schema(pattern = "^(log|end)$")]
    event: String,
    /// The line (`log`), or the job's end as JSON (`end`).
    data: String,
    /// `log`: the byte offset just past the line, for `Last-Event-ID`.
    id: Option<String>,
}

/// A WASM module: its binary, or WAT text.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub(crate) struct ModuleBytes(Vec<u8>);

/// One runtime kind as the node sees it (as `hanzo-node runtimes --json`).
#[derive(ToSchema)]
pub(crate) struct RuntimeReport {
    /// The kind.
    runtime: RuntimeKind,
    /// Whether jobs can run on it now.
    available: bool,
    /// The engine's or toolchain's version.
    #[schema(required = true)]
    version: Option<String>,
    /// Why it is unavailable, or a note for the operator.
    #[schema(required = true)]
    detail: Option<String>,
    /// What redundant verification can prove of its results (output hash and fuel, or
    /// output hash only); `null` for a kind that is not enabled.
    #[schema(required = true)]
    verification: Option<String>,
    /// Which limits it enforces; `null` for a kind that is not enabled.
    #[schema(required = true)]
    capabilities: Option<Capabilities>,
}

/// Every runtime kind.
#[derive(ToSchema)]
pub(crate) struct RuntimeList {
    /// One entry per runtime kind.
    runtimes: Vec<RuntimeReport>,
}

/// Resources, as the scheduler counts them.
#[derive(ToSchema)]
pub(crate) struct Resources {
    /// Job slots.
    jobs: u64,
    /// Memory in MiB.
    memory_mb: u64,
    /// CPU in thousandths of a core.
    cpu_millicores: u64,
}

/// The scheduler's counters since the node started.
#[derive(ToSchema)]
pub(crate) struct Counters {
    /// Jobs accepted into the queue.
    accepted: u64,
    /// Submits refused, by error code.
    rejected: BTreeMap<String, u64>,
    /// Jobs whose execution began.
    started: u64,
    /// Jobs that ran and ended.
    finished: u64,
    /// Jobs not run because they were cancelled or could not be started.
    skipped: u64,
    /// Jobs cancelled while queued.
    cancelled_queued: u64,
    /// Resumed jobs failed because they could no longer run.
    failed_unrunnable: u64,
}

/// The node: its id, what it offers, what is in use, the queue.
#[derive(ToSchema)]
pub(crate) struct NodeInfo {
    /// The node's ed25519 public key, hex: the key its receipts are signed with.
    id: String,
    /// The runtimes registered on this node.
    runtimes: Vec<RuntimeKind>,
    /// Jobs waiting.
    queued: u64,
    /// Jobs waiting, by priority (the keys are the priorities).
    queued_by_priority: BTreeMap<String, u64>,
    /// The queue's capacity.
    queue_capacity: u64,
    /// Jobs holding resources (starting or running).
    running: u64,
    /// Running jobs, by runtime.
    running_by_runtime: BTreeMap<String, u64>,
    /// Resources held by running jobs.
    in_use: Resources,
    /// What the node hands out in all.
    capacity: Resources,
    /// Counters since start.
    counters: Counters,
    /// Jobs finishing per second, recently (0 when unknown).
    throughput_per_sec: f64,
    /// Whether this build has fail points (a test build that may lie, drop results or
    /// stall on purpose: CONTRACTS §8); `false` on every release.
    failpoints: bool,
}

/// A tool definition (`POST /v1/tools`). Unknown fields are refused.
#[derive(ToSchema, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolDefinition {
    /// Unique on the node: `[a-z0-9][a-z0-9_-]{0,63}`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    name: String,
    /// Which runtime runs it.
    runtime: RuntimeKind,
    /// A path, an image reference or `sha256:<hex>` of a stored module; not empty.
    #[schema(min_length = 1)]
    source: String,
    /// For people.
    #[serde(default)]
    description: Option<String>,
    /// The JSON Schema (draft 2020-12 unless `$schema` says otherwise) every call's
    /// params must satisfy; self-contained (no remote or file `$ref`s). Absent: any params.
    #[serde(default)]
    #[schema(schema_with = json_schema)]
    schema: Option<Value>,
    /// The JSON Schema of the output, for MCP clients (not checked by the node). An
    /// `mcp` tool registered without `schema` takes its server's `inputSchema`, and its
    /// `description` and `outputSchema` unless given.
    #[serde(default)]
    #[schema(schema_with = json_schema)]
    output_schema: Option<Value>,
    /// The limits every call runs with; missing fields take the defaults.
    #[serde(default)]
    limits: ResourceLimits,
    /// The function to call; absent lets the runtime choose.
    #[serde(default)]
    function: Option<String>,
}

/// A registered tool: its definition (limits filled in) and when it was stored.
#[derive(ToSchema)]
pub(crate) struct Tool {
    /// The tool's name.
    name: String,
    /// Which runtime runs it.
    runtime: RuntimeKind,
    /// A path, an image reference or `sha256:<hex>` of a stored module.
    source: String,
    /// For people (absent when none was given).
    description: Option<String>,
    /// The JSON Schema of the params (absent: any params).
    #[schema(schema_with = json_schema)]
    schema: Option<Value>,
    /// The JSON Schema of the output (absent: not known).
    #[schema(schema_with = json_schema)]
    output_schema: Option<Value>,
    /// The limits every call runs with.
    limits: ResourceLimits,
    /// The function to call (absent: the runtime chooses).
    function: Option<String>,
    /// When the name was first registered (kept when the tool is replaced).
    #[schema(format = DateTime)]
    created_at: String,
    /// When this definition was stored.
    #[schema(format = DateTime)]
    updated_at: String,
}

/// A JSON Schema: an object, or `true`/`false` (accept / refuse everything).
fn json_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Boolean, Type::Null]))
        .description(Some(
            "The JSON Schema (draft 2020-12 unless `$schema` says otherwise) every call's params \
             must satisfy: an object, or true/false; self-contained (no remote or file `$ref`s). \
             Absent or null: any params.",
        ))
        .build()
}

/// `GET /v1/tools`: every tool, by name.
#[derive(ToSchema)]
pub(crate) struct ToolList {
    /// The tools.
    tools: Vec<Tool>,
}

#[cfg(test)]
mod tests {
    use hanzo_compute::receipt::{Outcome, RECEIPT_VERSION, ReceiptError};
    use hanzo_compute::{JobSpec, Receipt, ResourceLimits, RuntimeKind, Usage};
    use hanzo_jobstore::{JobError, JobRecord, JobStatus, ToolRecord, ToolSpec};
    use serde_json::{Value, json};
    use std::time::{Duration, SystemTime};

    /// Validates `instance` against `#/components/schemas/{name}` of the document.
    fn check(name: &str, instance: &Value) {
        let doc = crate::Api::openapi();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "no schema {name} in the document"
        );
        let schema = json!({"$ref": format!("#/components/schemas/{name}"), "components": doc["components"]});
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{name}: the schema does not compile: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{name} does not describe {instance}: {errors:#?}"
        );
    }

    fn here() -> crate::network::Here<'static> {
        crate::network::Here {
            peer_id: "12D3KooWMe",
            node_id: "00",
            scheduled: false,
        }
    }

    fn finished_record() -> JobRecord {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_000_000);
        let mut spec = JobSpec::new(RuntimeKind::Wasm, "sha256:ab").function("greet");
        spec.mounts.push("/srv/data:/data".parse().unwrap());
        spec.env.insert("A".into(), "b".into());
        spec.limits.fuel = Some(1000);
        let usage = Usage {
            wall_time_ms: 1.5,
            fuel_consumed: Some(10),
            peak_memory_bytes: None,
        };
        let receipt = Receipt {
            version: RECEIPT_VERSION,
            job_id: "j1".into(),
            runtime: RuntimeKind::Wasm,
            function: "greet".into(),
            code_hash: "ab".into(),
            input_hash: "cd".into(),
            output_hash: None,
            status: Outcome::Failed,
            error: Some(ReceiptError {
                code: "limit_exceeded".into(),
                message: "fuel".into(),
            }),
            usage: usage.clone(),
            limits: ResourceLimits::default(),
            deterministic: false,
            started_at: "2025-10-09T08:53:20.000000Z".into(),
            finished_at: "2025-10-09T08:53:20.001500Z".into(),
            context_hash: Some("12".repeat(32)),
            runtime_version: Some("wasmtime 49; deterministic profile 1".into()),
            nonce: Some("34".repeat(16)),
            node_id: "ef".into(),
            signature: "01".into(),
            batch: Some(hanzo_compute::receipt::Batch {
                root: "56".repeat(32),
                index: 1,
                size: 3,
                proof: vec!["78".repeat(32), "9a".repeat(32)],
            }),
        };
        JobRecord {
            id: "j1".into(),
            spec,
            status: JobStatus::Failed,
            priority: 0,
            attempts: 1,
            cancel_requested: false,
            created_at: t0,
            started_at: Some(t0),
            finished_at: Some(t0 + Duration::from_millis(2)),
            output: None,
            output_bytes: None,
            error: Some(JobError {
                code: "limit_exceeded".into(),
                message: "fuel".into(),
            }),
            receipt: Some(receipt.to_value()),
            usage: Some(usage),
            placements: Vec::new(),
            origin: None,
            verification: None,
            acceptance: None,
        }
    }

    #[test]
    fn job_replies_match_their_schemas() {
        let mut record = finished_record();
        check("Job", &crate::routes::view(&record, &here()));
        // Queued: no times, output, error, receipt or usage yet (all null, none absent).
        record.status = JobStatus::Queued;
        record.started_at = None;
        record.finished_at = None;
        record.error = None;
        record.receipt = None;
        record.usage = None;
        record.output = Some(json!([1, "two"]));
        record.output_bytes = Some(11);
        let view = crate::routes::view(&record, &here());
        check("Job", &view);
        let row = crate::routes::list_row(&record, &here());
        assert!(row.get("output").is_none() && row["output_bytes"] == 11, "{row}");
        check("JobRow", &row);
        check("JobList", &json!({"jobs": [row], "next": "42"}));
        check("JobList", &json!({"jobs": [], "next": null}));
        check("Queued", &json!({"id": "j1", "status": "queued"}));
    }

    #[test]
    fn tool_replies_match_their_schemas() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_000_000);
        let mut record = ToolRecord {
            spec: ToolSpec {
                name: "greet".into(),
                runtime: RuntimeKind::Wasm,
                source: "sha256:ab".into(),
                description: None,
                schema: None,
                output_schema: None,
                limits: ResourceLimits::default(),
                function: None,
            },
            created_at: t,
            updated_at: t,
        };
        check("Tool", &json!(record));
        record.spec.description = Some("says hello".into());
        record.spec.schema = Some(json!({"type": "object"}));
        record.spec.function = Some("greet".into());
        check("Tool", &json!(record));
        check("ToolList", &json!({ "tools": [record] }));
        // `true` and `false` are JSON Schemas too (schemathesis registered one).
        record.spec.schema = Some(json!(false));
        check("Tool", &json!(record));
    }

    #[test]
    fn error_replies_match_their_schema() {
        use axum::response::IntoResponse;
        let res = crate::ApiError::invalid("limit: expected a number").into_response();
        assert_eq!(res.status(), 400);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let bytes = rt
            .block_on(axum::body::to_bytes(res.into_body(), 1 << 20))
            .unwrap();
        check("ErrorReply", &serde_json::from_slice(&bytes).unwrap());
    }

    /// A response a client generator could not type is a gap in the document: every
    /// JSON answer of every route has a schema, and every operation documents its 2xx.
    #[test]
    fn every_json_answer_has_a_schema() {
        let doc = crate::Api::openapi();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                assert!(
                    responses.keys().any(|s| s.starts_with('2')),
                    "{method} {path}: no success answer documented"
                );
                for (status, r) in responses {
                    if let Some(json) = r["content"].get("application/json") {
                        assert!(
                            json.get("schema").is_some_and(|s| s != &json!({})),
                            "{method} {path} {status}: a JSON answer without a schema"
                        );
                    }
                }
            }
        }
    }
}
