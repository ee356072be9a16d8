//! The routes. Every handler answers JSON errors through [`ApiError`].

use crate::error::ApiError;
use crate::{MAX_JOB_BODY, MAX_MODULE_BODY, State};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State as AxState};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hanzo_compute::{Job, JobSpec, RuntimeKind};
use hanzo_jobstore::{CancelOutcome, JobRecord, JobStatus, JobStore, ListFilter, Page};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::OpenApi;

pub(crate) mod schemas;

use schemas::{
    ErrorReply, Healthy, Job as JobView, JobList, ModuleBytes, NodeInfo, Queued, RuntimeList, StoredModule,
};

pub(crate) type S = AxState<Arc<State>>;
pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

pub(crate) fn router(state: Arc<State>) -> Router {
    let v1 = Router::new()
        .route(
            "/v1/jobs",
            post(submit_job)
                .get(list_jobs)
                .layer(DefaultBodyLimit::max(MAX_JOB_BODY)),
        )
        .route(
            "/v1/jobs/execute",
            post(execute_job).layer(DefaultBodyLimit::max(MAX_JOB_BODY)),
        )
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/jobs/{id}/logs", get(crate::logs::job_logs))
        .route(
            "/v1/modules",
            post(add_module).layer(DefaultBodyLimit::max(MAX_MODULE_BODY)),
        )
        .route("/v1/runtimes", get(runtimes))
        .route("/v1/node", get(node))
        .route("/v1/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics))
        .merge(crate::tools::routes())
        .merge(crate::services::routes())
        .merge(crate::network::routes())
        .merge(crate::mcp::routes(state.clone()));
    // The guard wraps everything, the fallback included (an unknown route answers 401
    // without the token, so routes cannot be probed), and lets only `/healthz` through.
    Router::new()
        .route("/healthz", get(healthz))
        .merge(v1)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(middleware::from_fn_with_state(state.clone(), crate::guard::guard))
        // Outermost: refused requests (401, 421, 415) are logged too.
        .layer(middleware::from_fn(crate::access_log::access_log))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hanzo-node API",
        description = "Jobs, modules, runtimes and metrics of one hanzo-node."
    ),
    paths(
        healthz,
        submit_job,
        execute_job,
        list_jobs,
        get_job,
        cancel_job,
        crate::logs::job_logs,
        add_module,
        runtimes,
        node,
        openapi_json,
        metrics
    ),
    components(schemas(ErrorReply, JobSpec, schemas::JobStatus, schemas::LogEvent))
)]
struct ApiDoc;

pub(crate) fn openapi() -> Value {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::tools::ToolsDoc::openapi());
    doc.merge(crate::services::ServicesDoc::openapi());
    doc.merge(crate::network::NetworkDoc::openapi());
    let mut doc = serde_json::to_value(doc).unwrap_or(Value::Null);
    document_auth(&mut doc);
    doc
}

/// The guard (crate::guard), said once for every route rather than in each annotation
/// (so that routes added later are covered too): a required `bearer` scheme, and on
/// every operation but `/healthz` (which never asks for anything) a 401 `unauthorized`,
/// 421 `misdirected` (Host), 403 `forbidden_origin` (Origin), and, where there is a
/// body, 415 `unsupported_media_type`.
fn document_auth(doc: &mut Value) {
    doc["components"]["securitySchemes"]["bearer"] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "The node's API token: `[node] api_token`, else the one the node created \
            in `<data_dir>/api-token` on first start",
    });
    doc["security"] = json!([{"bearer": []}]);
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, ops) in paths {
        let Some(ops) = ops.as_object_mut() else {
            continue;
        };
        const METHODS: [&str; 8] = [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ];
        let ops = ops
            .iter_mut()
            .filter(|(k, op)| METHODS.contains(&k.as_str()) && op.is_object());
        for (_, op) in ops {
            if path == "/healthz" {
                op["security"] = json!([{}]);
                continue;
            }
            let mut refusals = vec![
                ("401", "unauthorized: the request lacks the node's token"),
                (
                    "421",
                    "misdirected: the Host header is not a name this node answers to",
                ),
                (
                    "403",
                    "forbidden_origin: the Origin header is not in node.api_origins",
                ),
            ];
            if op.get("requestBody").is_some() {
                refusals.push((
                    "415",
                    "unsupported_media_type: a body whose Content-Type is not the documented one",
                ));
            }
            for (status, description) in refusals {
                if op["responses"].get(status).is_none() {
                    op["responses"][status] = json!({
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorReply"}}},
                    });
                }
            }
        }
    }
}

pub(crate) fn body(b: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    b.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "invalid_input"
        };
        ApiError::new(status, code, format!("body: {}", r.body_text()))
    })
}

/// A path segment (`{id}`, `{name}`). Its rejection (a segment that is not UTF-8 once
/// percent-decoded) answers like every other error, JSON 400 `invalid_input`, instead
/// of axum's plain-text default, which the document does not (and should not) promise.
pub(crate) struct Segment(pub String);

impl<T: Send + Sync> FromRequestParts<T> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &T) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(s)| Segment(s))
            .map_err(|r| ApiError::invalid(format!("path: {}", r.body_text())))
    }
}

pub(crate) fn query(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<HashMap<String, String>> {
    q.map(|Query(q)| q)
        .map_err(|r| ApiError::invalid(format!("query: {}", r.body_text())))
}

/// Parses a job spec, naming the field at fault (`limits.memory_mb: invalid type ...`,
/// `runtime: unknown variant ...`, `unknown field ...`).
fn parse_spec(bytes: &[u8]) -> ApiResult<JobSpec> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, JobSpec>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::invalid(format!("job spec: {inner}"))
        } else {
            ApiError::invalid(format!("{path}: {inner}"))
        }
    })
}

pub(crate) fn view(r: &JobRecord, here: &crate::network::Here<'_>) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({"id": r.id}));
    v["runtime"] = json!(r.spec.runtime);
    let (executed_by, placements) = crate::network::placements(r, here);
    v["executed_by"] = executed_by;
    v["placements"] = placements;
    v
}

/// A row of `GET /v1/jobs`: the job without `output` (its size is `output_bytes`).
pub(crate) fn list_row(r: &JobRecord, here: &crate::network::Here<'_>) -> Value {
    let mut v = view(r, here);
    if let Some(o) = v.as_object_mut() {
        o.remove("output");
    }
    v
}

/// Runs a store read on a blocking thread: SQLite calls (and the file reads under
/// them) must not hold an async worker, which would stall every other request on it.
pub(crate) async fn read_store<T: Send + 'static>(
    state: &State,
    read: impl FnOnce(&JobStore) -> hanzo_jobstore::Result<T> + Send + 'static,
) -> ApiResult<T> {
    let store = state.store.clone();
    Ok(tokio::task::spawn_blocking(move || read(&store))
        .await
        .map_err(ApiError::internal)??)
}

/// One job as an answer (`GET /v1/jobs/{id}`, `execute`, `?wait=true`, cancel).
///
/// The output is the one large part (up to the job's output cap), so it is never
/// parsed or re-serialised here: the store reads its JSON text into one buffer, and
/// the body is sent as three pieces, the rest of the job as JSON, `"output":` and
/// that buffer, and the closing brace. The node thus holds about one copy of the
/// output per answer in flight, where parse, view and serialise held four.
pub(crate) async fn job_answer(state: &State, id: &str, status: StatusCode) -> ApiResult {
    let key = id.to_string();
    let raw = read_store(state, move |s| s.get_raw(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("id: no job {id}")))?;
    let mut head = serde_json::to_vec(&list_row(&raw.record, &state.here(id))).map_err(ApiError::internal)?;
    // `head` is an object; reopen it to add the output as the last member.
    if head.pop() != Some(b'}') {
        return Err(ApiError::internal(format!(
            "job {id}: its record is not an object"
        )));
    }
    head.extend_from_slice(if head.len() > 1 {
        b",\"output\":"
    } else {
        b"\"output\":"
    });
    let output = raw.output.unwrap_or_else(|| b"null".to_vec());
    let len = head.len() + output.len() + 1;
    let chunks = [Bytes::from(head), Bytes::from(output), Bytes::from_static(b"}")];
    let body = axum::body::Body::from_stream(futures_util::stream::iter(
        chunks.map(Ok::<_, std::convert::Infallible>),
    ));
    Ok((
        status,
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_LENGTH, len.to_string()),
        ],
        body,
    )
        .into_response())
}

pub(crate) fn flag(q: &HashMap<String, String>, name: &str) -> ApiResult<bool> {
    match q.get(name).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::invalid(format!(
            "{name}: expected true or false, got '{other}'"
        ))),
    }
}

/// 200 while the node can take jobs: at least one runtime registered, room in the
/// queue, and the job store's writes going through; 503 otherwise.
#[utoipa::path(get, path = "/healthz", responses(
    (status = 200, description = "The node can take jobs", body = Healthy),
    (status = 503, description = "unavailable: no runtime, the queue is full, or the job store cannot write", body = ErrorReply)))]
async fn healthz(AxState(state): S) -> Response {
    if let Some(why) = state.hooks.health.check(&state.store).await {
        let why = format!("the job store cannot write: {why}");
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why).into_response();
    }
    let snap = state.scheduler.snapshot();
    let runtimes = state.scheduler.compute().runtimes().count();
    if runtimes > 0 && snap.queued < snap.queue_capacity {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        let why = if runtimes == 0 {
            "no runtime is enabled"
        } else {
            "the job queue is full"
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why).into_response()
    }
}

/// Submits a job: validated, given a queue place, committed to the store, then
/// acknowledged with 202. `?wait=true` waits for the result like `execute`.
#[utoipa::path(post, path = "/v1/jobs",
    params(("wait" = Option<bool>, Query, description = "Wait for the result (200 with the job)")),
    request_body(content = JobSpec, description = "A job spec (CONTRACTS §6): runtime and source required"),
    responses(
        (status = 202, description = "Queued: committed to the store", body = Queued),
        (status = 200, description = "With wait=true: the finished job", body = JobView),
        (status = 400, description = "invalid_input, naming the field (a limit above the node's ceiling, a bad mount)", body = ErrorReply),
        (status = 403, description = "forbidden: a mount outside [compute] mount_roots or of a protected path, or root in a container", body = ErrorReply),
        (status = 409, description = "duplicate: a job of that id is already queued or running", body = ErrorReply),
        (status = 413, description = "too_large: body over 1 MiB", body = ErrorReply),
        (status = 422, description = "too_large: the job can never fit this node", body = ErrorReply),
        (status = 429, description = "queue_full, with Retry-After", body = ErrorReply,
            headers(("Retry-After" = u64, description = "Seconds, from the queue's drain rate"))),
        (status = 503, description = "runtime_unavailable: nothing was stored", body = ErrorReply)))]
async fn submit_job(
    AxState(state): S,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let q = query(q)?;
    let wait = flag(&q, "wait")?;
    if let Some(k) = q.keys().find(|k| *k != "wait") {
        return Err(ApiError::invalid(format!("{k}: unknown query parameter")));
    }
    submit(&state, &body(b)?, wait).await
}

/// Runs a job and waits for its result (same as `POST /v1/jobs?wait=true`).
#[utoipa::path(post, path = "/v1/jobs/execute",
    request_body(content = JobSpec, description = "A job spec (CONTRACTS §6): runtime and source required"),
    responses(
        (status = 200, description = "The finished job: status, output or error, receipt", body = JobView),
        (status = 400, description = "invalid_input, naming the field (a limit above the node's ceiling, a bad mount)", body = ErrorReply),
        (status = 403, description = "forbidden: a mount outside [compute] mount_roots or of a protected path, or root in a container", body = ErrorReply),
        (status = 409, description = "duplicate: a job of that id is already queued or running", body = ErrorReply),
        (status = 413, description = "too_large: body over 1 MiB", body = ErrorReply),
        (status = 422, description = "too_large: the job can never fit this node", body = ErrorReply),
        (status = 429, description = "queue_full, with Retry-After", body = ErrorReply,
            headers(("Retry-After" = u64, description = "Seconds, from the queue's drain rate"))),
        (status = 503, description = "runtime_unavailable: nothing was stored", body = ErrorReply)))]
async fn execute_job(AxState(state): S, b: Result<Bytes, BytesRejection>) -> ApiResult {
    submit(&state, &body(b)?, true).await
}

async fn submit(state: &State, bytes: &[u8], wait: bool) -> ApiResult {
    let mut spec = parse_spec(bytes)?;
    default_output_cap(state, bytes, &mut spec.limits);
    submit_spec(state, spec, wait).await
}

/// A job or tool that names no output cap gets the contract's default, lowered to this
/// node's `[compute] max_output_bytes` when that is smaller (as `hanzo-node run` does):
/// a client that asked for nothing must not be refused for a 16 MiB it never named.
/// A cap the client names is held to the ceiling as given.
pub(crate) fn default_output_cap(state: &State, bytes: &[u8], limits: &mut hanzo_compute::ResourceLimits) {
    #[derive(serde::Deserialize)]
    struct Probe {
        limits: Option<LimitsProbe>,
    }
    #[derive(serde::Deserialize)]
    struct LimitsProbe {
        max_output_bytes: Option<serde::de::IgnoredAny>,
    }
    // A second pass over a body that already parsed, skipping every value but one.
    let named = serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.limits)
        .is_some_and(|l| l.max_output_bytes.is_some());
    if !named {
        limits.max_output_bytes =
            hanzo_compute::DEFAULT_MAX_OUTPUT_BYTES.min(state.policy.ceilings.max_output_bytes);
    }
}

/// Applies the operator's policy to a job from an API client: ceilings, container
/// user, and mounts resolved (without following symlinks) to the canonical paths that
/// are then stored and run. The mounts are opened, so off the async workers.
pub(crate) async fn admit(state: &State, mut spec: JobSpec) -> ApiResult<JobSpec> {
    let policy = state.policy.clone();
    tokio::task::spawn_blocking(move || policy.admit(&mut spec).map(|()| spec))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

/// Submits a parsed spec (`POST /v1/jobs`, and a named tool's call).
pub(crate) async fn submit_spec(state: &State, spec: JobSpec, wait: bool) -> ApiResult {
    let s = enqueue(state, spec, wait).await?;
    answer(state, s.id, s.done).await
}

/// A job stored and handed to the scheduler or the placement layer.
pub(crate) struct Submitted {
    /// Its id.
    pub id: String,
    /// Fires when it ends (when asked for).
    pub done: Option<tokio::sync::oneshot::Receiver<crate::hooks::Ended>>,
}

/// How long a cancelled call waits for its job to end before answering anyway.
const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A job a caller submitted and waits on (an MCP client's call, an agent's tool call):
/// waits for it to end; when `cancelled` comes first, cancels it like
/// `POST /v1/jobs/{id}/cancel` and waits for it, briefly. Answers its record (without
/// `output` and `error`) and its result: the output, or the error's `(code, message)`.
pub(crate) async fn wait_or_cancel(
    state: &State,
    id: &str,
    mut done: tokio::sync::oneshot::Receiver<crate::hooks::Ended>,
    cancelled: impl std::future::Future<Output = ()>,
) -> ApiResult<(JobRecord, Result<Value, (String, String)>)> {
    tokio::select! {
        _ = &mut done => {}
        _ = cancelled => {
            let _ = state.store.cancel(id).await;
            cancel_running(state, id).await;
            let _ = tokio::time::timeout(CANCEL_GRACE, &mut done).await;
        }
    }
    let key = id.to_string();
    let mut record = read_store(state, move |s| s.get(&key))
        .await?
        .ok_or_else(|| ApiError::internal(format!("job {id} vanished from the store")))?;
    let result = match (record.output.take(), record.error.take()) {
        (_, Some(e)) => Err((e.code, e.message)),
        (Some(v), None) => Ok(v),
        (None, None) => Err((
            "cancelled".to_string(),
            format!("job {id} did not end in time ({})", record.status.name()),
        )),
    };
    Ok((record, result))
}

/// Checks, stores and queues (or places) a job: what `POST /v1/jobs` does before it
/// answers, shared with the MCP server's calls.
pub(crate) async fn enqueue(state: &State, spec: JobSpec, wait: bool) -> ApiResult<Submitted> {
    enqueue_at(state, spec, wait, 0).await
}

/// [`enqueue`] for a job at `depth` under agents (`Job::depth`): an agent's tool call.
pub(crate) async fn enqueue_at(
    state: &State,
    mut spec: JobSpec,
    wait: bool,
    depth: u32,
) -> ApiResult<Submitted> {
    // A verified job runs on several nodes (CONTRACTS §8): `local`, the default,
    // widens to `any`, and the stored spec says so.
    if !spec.verification.is_none() && spec.placement.is_local() {
        spec.placement = hanzo_compute::Placement::Any;
    }
    if !spec.placement.is_local() {
        return enqueue_placed(state, spec, wait).await;
    }
    // Every check (policy, spec, capacity, runtime health, queue room) before anything
    // is stored: a refused job leaves no trace, an accepted one has its queue place.
    let spec = admit(state, spec).await?;
    let permit = state.scheduler.reserve(&spec).await?;
    let record = state
        .hooks
        .health
        .track("submit", state.store.submit(spec.clone()).await)?;
    let id = record.id.clone();
    let done = wait.then(|| state.hooks.wait_for(&id));
    let mut job = Job::with_id(id.clone(), spec).with_log_sink(state.hooks.live.open(&id));
    job.depth = depth;
    if let Err(rejection) = permit.submit(job) {
        // Not expected (the permit holds the place), but the job is acknowledged in
        // the store: record why it will not run rather than leave it queued.
        let outcome = hanzo_compute::JobOutcome {
            job_id: id.clone(),
            result: Err(rejection.to_compute_error()),
            usage: Default::default(),
            logs: Vec::new(),
            receipt: None,
        };
        let finished = state.store.finish(&outcome).await;
        state.hooks.forget(&id);
        finished?;
        return Err(rejection.into());
    }
    Ok(Submitted { id, done })
}

/// A job whose placement is not `local` (CONTRACTS §7): checked (policy, spec, what
/// may leave this node), stored, and handed to the placement layer, which records its
/// end. With the network off, `any` runs here and `remote` or a named peer ends
/// `unschedulable`.
async fn enqueue_placed(state: &State, spec: JobSpec, wait: bool) -> ApiResult<Submitted> {
    let mut spec = admit(state, spec).await?;
    spec.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
    hanzo_placement::check(&spec).map_err(|e| ApiError::invalid(format!("placement: {e}")))?;
    let placer = state.placer.get();
    // Jobs being placed count against the same queue capacity as queued ones: each
    // is a task of this node until it ends.
    if let Some(p) = placer {
        let capacity = state.scheduler.snapshot().queue_capacity;
        if p.counts().1 as usize >= capacity {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "queue_full",
                format!("{capacity} jobs are being placed already; retry after 5 s"),
            );
            e.retry_after = Some(5);
            return Err(e);
        }
    }
    if placer.is_none() && spec.placement == hanzo_compute::Placement::Any && spec.verification.is_none() {
        spec.placement = hanzo_compute::Placement::Local;
        return Box::pin(enqueue(state, spec, wait)).await;
    }
    let record = state
        .hooks
        .health
        .track("submit", state.store.submit(spec.clone()).await)?;
    let id = record.id.clone();
    let done = wait.then(|| state.hooks.wait_for(&id));
    match placer {
        Some(placer) => placer.place(id.clone(), spec),
        None => {
            let job = Job::with_id(id.clone(), spec);
            let result = if job.spec.verification.is_none() {
                hanzo_compute::ComputeError::Unschedulable(format!(
                    "no node can take the job ({}): the network is off on this node ([network] enabled = false)",
                    job.spec.placement.describe()
                ))
            } else {
                hanzo_compute::ComputeError::VerificationFailed(format!(
                    "insufficient_peers: {} nodes must run a verified job, and the network is off on this node ([network] enabled = false)",
                    job.spec.verification.min_peers()
                ))
            };
            if !job.spec.verification.is_none() {
                let v = &job.spec.verification;
                let block = json!({
                    "strategy": v.strategy(), "min_peers": v.min_peers(), "max_peers": v.max_peers(),
                    "nonce": null, "verdict": "insufficient_peers", "receipts": [], "dissenters": [],
                });
                let _ = state.store.set_verification(&id, &block).await;
            }
            let outcome = hanzo_compute::JobOutcome {
                job_id: id.clone(),
                result: Err(result),
                usage: Default::default(),
                logs: Vec::new(),
                receipt: None,
            };
            hanzo_scheduler::Hooks::finished(state.hooks.as_ref(), &job, &outcome).await;
        }
    }
    Ok(Submitted { id, done })
}

/// `202 {"id", "status": "queued"}`, or the job once it ended when `done` is given.
async fn answer(
    state: &State,
    id: String,
    done: Option<tokio::sync::oneshot::Receiver<crate::hooks::Ended>>,
) -> ApiResult {
    match done {
        None => Ok((StatusCode::ACCEPTED, Json(json!({"id": id, "status": "queued"}))).into_response()),
        Some(done) => {
            let _ = done.await;
            job_answer(state, &id, StatusCode::OK).await.map_err(|e| {
                if e.status == StatusCode::NOT_FOUND {
                    ApiError::internal(format!("job {id} vanished from the store"))
                } else {
                    e
                }
            })
        }
    }
}

/// Lists jobs, newest first, `limit` per page (default 100, at most 1000); `next` is
/// the cursor of the following page.
#[utoipa::path(get, path = "/v1/jobs",
    params(
        ("status" = Option<schemas::JobStatus>, Query, description = "Only jobs with this status"),
        ("runtime" = Option<RuntimeKind>, Query, description = "Only jobs for this runtime"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000,
            description = "Jobs per page (1-1000, default 100)"),
        ("cursor" = Option<String>, Query, pattern = "^[1-9][0-9]{0,17}$",
            description = "The `next` of the previous page")),
    responses((status = 200, description = "One page of jobs, newest first", body = JobList),
        (status = 400, description = "invalid_input, naming the parameter", body = ErrorReply)))]
async fn list_jobs(
    AxState(state): S,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let q = query(q)?;
    let mut filter = ListFilter::default();
    let mut page = Page::default();
    for (k, v) in &q {
        match k.as_str() {
            "status" => {
                filter.status = Some(
                    v.parse::<JobStatus>()
                        .map_err(|e| ApiError::invalid(format!("status: {e}")))?,
                )
            }
            "runtime" => {
                filter.runtime = Some(
                    v.parse::<RuntimeKind>()
                        .map_err(|e| ApiError::invalid(format!("runtime: {e}")))?,
                )
            }
            "limit" => {
                page.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=Page::MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "limit: expected a number from 1 to {}, got '{v}'",
                            Page::MAX_LIMIT
                        ))
                    })?
            }
            "cursor" => page.after = Some(v.parse()?),
            other => return Err(ApiError::invalid(format!("{other}: unknown query parameter"))),
        }
    }
    let page = read_store(&state, move |s| s.list(filter, page)).await?;
    let jobs: Vec<Value> = page
        .jobs
        .iter()
        .map(|r| list_row(r, &state.here(&r.id)))
        .collect();
    Ok(Json(json!({"jobs": jobs, "next": page.next.map(|c| c.to_string())})).into_response())
}

/// One job: status (queued|running|succeeded|failed|cancelled), output, error,
/// receipt, usage, times.
#[utoipa::path(get, path = "/v1/jobs/{id}",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, description = "The job", body = JobView),
        (status = 400, description = "invalid_input: the id is not valid in a path", body = ErrorReply),
        (status = 404, description = "not_found", body = ErrorReply)))]
async fn get_job(AxState(state): S, Segment(id): Segment) -> ApiResult {
    job_answer(&state, &id, StatusCode::OK).await
}

/// Cancels a job: a queued one at once; a running one is stopped (its instance,
/// process or container killed) and ends `cancelled` shortly after.
#[utoipa::path(post, path = "/v1/jobs/{id}/cancel",
    params(("id" = String, Path, description = "The job id")),
    responses((status = 200, description = "Cancelled (queued job): the job", body = JobView),
        (status = 202, description = "Stopping (running job): the job", body = JobView),
        (status = 400, description = "invalid_input: the id is not valid in a path", body = ErrorReply),
        (status = 404, description = "not_found", body = ErrorReply),
        (status = 409, description = "already_finished", body = ErrorReply)))]
async fn cancel_job(AxState(state): S, Segment(id): Segment) -> ApiResult {
    let status = match state.store.cancel(&id).await? {
        CancelOutcome::NotFound => return Err(ApiError::not_found(format!("id: no job {id}"))),
        CancelOutcome::AlreadyFinished(st) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "already_finished",
                format!("job {id} already ended {st}"),
            ));
        }
        CancelOutcome::Cancelled => {
            cancel_running(&state, &id).await;
            StatusCode::OK
        }
        CancelOutcome::Requested => {
            cancel_running(&state, &id).await;
            StatusCode::ACCEPTED
        }
    };
    job_answer(&state, &id, status).await
}

/// Stops a job wherever it is: in this node's scheduler, or being placed on a peer.
pub(crate) async fn cancel_running(state: &State, id: &str) {
    if !state.placer.get().is_some_and(|p| p.cancel(id)) {
        state.scheduler.cancel(id).await;
    }
}

/// Stores a WASM module (binary or WAT text, up to 64 MiB) in the content store; jobs
/// then use `"source": "sha256:<hex>"`. The module is validated first (not compiled);
/// the store is kept under `[node] modules_max_mb` by evicting least recently used
/// modules, and a job naming an evicted one fails with "unknown module".
#[utoipa::path(post, path = "/v1/modules",
    request_body(description = "The module's bytes (binary WASM or WAT text), sent as application/wasm or application/octet-stream",
        content((ModuleBytes = "application/wasm"), (ModuleBytes = "application/octet-stream"))),
    responses((status = 201, description = "Stored", body = StoredModule),
        (status = 400, description = "invalid_input: not a valid WASM module, or larger than the module store's quota", body = ErrorReply),
        (status = 413, description = "too_large: body over 64 MiB", body = ErrorReply),
        (status = 503, description = "runtime_unavailable: the wasm runtime is off", body = ErrorReply)))]
async fn add_module(AxState(state): S, b: Result<Bytes, BytesRejection>) -> ApiResult {
    let bytes = body(b)?;
    let wasm = state.wasm.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "runtime_unavailable",
            "the wasm runtime is not enabled on this node",
        )
    })?;
    // Validating and precompiling a module is CPU work: off the async workers.
    let sha = tokio::task::spawn_blocking(move || wasm.add_module(&bytes))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| match e {
            hanzo_compute::ComputeError::InvalidInput(m) => ApiError::invalid(format!("body: {m}")),
            e => ApiError::internal(e),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"sha256": sha, "source": format!("sha256:{sha}")})),
    )
        .into_response())
}

/// Every runtime kind: available?, version, detail, capabilities (as `hanzo-node
/// runtimes --json`), as `{"runtimes": [...]}` like every list of the API.
#[utoipa::path(get, path = "/v1/runtimes",
    responses((status = 200, description = "One entry per runtime kind", body = RuntimeList)))]
async fn runtimes(AxState(state): S) -> ApiResult {
    let compute = state.scheduler.compute();
    let mut rows = Vec::new();
    for kind in RuntimeKind::ALL {
        rows.push(
            compute
                .runtime_report(kind, || format!("the {kind} runtime is not enabled on this node"))
                .await,
        );
    }
    Ok(Json(json!({ "runtimes": rows })).into_response())
}

/// The node: its id (the receipts' signing key), capacity, what is in use, the queue.
#[utoipa::path(get, path = "/v1/node",
    responses((status = 200, description = "id, capacity, in_use, queue, counters", body = NodeInfo)))]
async fn node(AxState(state): S) -> ApiResult {
    let snap = state.scheduler.snapshot();
    let mut v = serde_json::to_value(&snap).map_err(ApiError::internal)?;
    v["id"] = json!(state.scheduler.compute().key().id());
    v["node_id"] = json!(state.scheduler.compute().key().id());
    v["peer_id"] = json!(state.peer_id);
    v["network"] = json!(state.placer.get().is_some());
    // A test build that can lie on purpose (CONTRACTS §8) says so to anyone asking.
    v["failpoints"] = json!(hanzo_compute::failpoints::ENABLED);
    if let Some(placer) = state.placer.get() {
        v["listen_addrs"] = json!(
            placer
                .network()
                .listen_addrs()
                .await
                .map_err(ApiError::internal)?
        );
        v["nat"] = json!(placer.network().nat_status().await.map_err(ApiError::internal)?);
    }
    v["runtimes"] = json!(
        state
            .scheduler
            .compute()
            .runtimes()
            .map(|r| r.kind())
            .collect::<Vec<_>>()
    );
    Ok(Json(v).into_response())
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
async fn openapi_json() -> ApiResult {
    Ok(Json(openapi()).into_response())
}

/// Prometheus metrics: jobs by runtime and status, queue depth, running jobs,
/// resources in use and capacity, rejections, job durations.
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics(AxState(state): S) -> ApiResult {
    let store = state.store.clone();
    // counts() scans the store (~6 ms at 100,000 jobs): off the async workers.
    let counts = tokio::task::spawn_blocking(move || store.counts())
        .await
        .map_err(ApiError::internal)??;
    let mut text = crate::metrics::render(
        &counts,
        &state.scheduler.snapshot(),
        &state.hooks.durations,
        &state.hooks.health,
    );
    text.push_str(&crate::network::metrics_text(&state).await);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}
