//! Long-running services: deploy, list, inspect, scale and remove them on the
//! node's service runtimes (Docker, and Kubernetes where the node has it), with the
//! same [`ServiceSpec`] as `hanzo-node service deploy`.
//!
//! The runtimes themselves are the record of what is deployed (Docker labels, say), so
//! the API stores nothing: every answer is what the runtime reports now.

use crate::State;
use crate::error::ApiError;
use crate::routes::schemas::ErrorReply;
use crate::routes::{Segment, body, query};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hanzo_compute::service::{MAX_REPLICAS, ServiceRuntime, ServiceSpec, ServiceStatus, validate_name};
use hanzo_compute::{ComputeError, RuntimeKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type S = AxState<Arc<State>>;
type ApiResult<T = Response> = Result<T, ApiError>;

/// The largest service spec or scale request accepted, in bytes.
pub(crate) const MAX_SERVICE_BODY: usize = crate::MAX_JOB_BODY;

/// The node's service runtimes, handed to the API through
/// [`ApiOptions::services`](crate::ApiOptions::services).
///
/// Changes to one service name (deploy, scale, remove) are serialised: two deploys of
/// the same name racing each other would otherwise fight over its replicas (a failed
/// deploy removes every replica of the name, including the other deploy's).
#[derive(Clone, Default)]
pub struct ServiceRuntimes {
    runtimes: Vec<Arc<dyn ServiceRuntime>>,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl ServiceRuntimes {
    /// The runtimes services can be deployed on, at most one per kind (the first of a
    /// kind is used).
    pub fn new(runtimes: Vec<Arc<dyn ServiceRuntime>>) -> Self {
        ServiceRuntimes {
            runtimes,
            locks: Arc::default(),
        }
    }

    /// The kinds of runtime services can run on, in order.
    pub fn kinds(&self) -> Vec<RuntimeKind> {
        self.runtimes.iter().map(|r| r.kind()).collect()
    }

    fn get(&self, kind: RuntimeKind) -> ApiResult<Arc<dyn ServiceRuntime>> {
        self.runtimes
            .iter()
            .find(|r| r.kind() == kind)
            .cloned()
            .ok_or_else(|| {
                let why = match kind {
                    RuntimeKind::Docker | RuntimeKind::K8s => {
                        format!("the {kind} runtime is not enabled on this node")
                    }
                    _ => format!("the {kind} runtime does not run services (docker and k8s do)"),
                };
                unavailable(format!("runtime: {why}"))
            })
    }

    /// The runtimes `kind` names, or every one when it names none.
    fn select(&self, kind: Option<RuntimeKind>) -> ApiResult<Vec<Arc<dyn ServiceRuntime>>> {
        match kind {
            Some(k) => Ok(vec![self.get(k)?]),
            None if self.runtimes.is_empty() => Err(unavailable(
                "no runtime on this node runs services (enable docker in compute.enabled_runtimes)",
            )),
            None => Ok(self.runtimes.clone()),
        }
    }

    /// Waits for exclusive use of `name`.
    async fn lock(&self, name: &str) -> NameLock {
        let mutex = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        NameLock {
            guard: Some(mutex.lock_owned().await),
            name: name.to_string(),
            locks: self.locks.clone(),
        }
    }
}

impl std::fmt::Debug for ServiceRuntimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ServiceRuntimes").field(&self.kinds()).finish()
    }
}

/// Exclusive use of one service name; the map entry goes when nobody holds or waits
/// for it, so names tried once do not pile up.
struct NameLock {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    name: String,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Drop for NameLock {
    fn drop(&mut self) {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        self.guard.take();
        // Waiters clone the entry under the map's lock, so a count of one (the map's
        // own) means nobody else holds or waits for this name.
        if map.get(&self.name).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.name);
        }
    }
}

/// The service routes; the router adds the auth layer around them.
pub(crate) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route(
            "/v1/services",
            post(deploy_service)
                .get(list_services)
                .layer(DefaultBodyLimit::max(MAX_SERVICE_BODY)),
        )
        .route("/v1/services/{name}", get(get_service).delete(remove_service))
        .route(
            "/v1/services/{name}/scale",
            post(scale_service).layer(DefaultBodyLimit::max(MAX_SERVICE_BODY)),
        )
}

/// The service routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(deploy_service, list_services, get_service, scale_service, remove_service))]
pub(crate) struct ServicesDoc;

/// 503 `runtime_unavailable`, as for a job whose runtime cannot run it.
fn unavailable(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "runtime_unavailable", message)
}

/// A runtime's error as the rest of the API answers it: bad input 400, an unavailable
/// runtime 503 `runtime_unavailable`, the node's own fault 500. A replica that did not
/// start (its image's command failed, say) is the service's fault, not the node's:
/// 422 `service_failed`.
fn compute_error(e: ComputeError) -> ApiError {
    match e {
        ComputeError::InvalidInput(m) => ApiError::invalid(m),
        ComputeError::Unavailable(m) => unavailable(m),
        ComputeError::ToolFailed(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "service_failed", m),
        e @ ComputeError::LimitExceeded { .. } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "limit_exceeded", e.to_string())
        }
        // Services are never verified; should one ever be, this is the node's fault.
        e @ (ComputeError::Internal(_) | ComputeError::Cancelled | ComputeError::VerificationFailed(_)) => {
            ApiError::internal(e)
        }
        ComputeError::Unschedulable(m) => unavailable(m),
    }
}

/// The optional `runtime` query parameter; any other parameter is refused.
fn runtime_param(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult<Option<RuntimeKind>> {
    let q = query(q)?;
    if let Some(k) = q.keys().find(|k| *k != "runtime") {
        return Err(ApiError::invalid(format!("{k}: unknown query parameter")));
    }
    q.get("runtime")
        .map(|r| {
            r.parse::<RuntimeKind>()
                .map_err(|e| ApiError::invalid(format!("runtime: {e}")))
        })
        .transpose()
}

/// A service name (`[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 40), or 400 naming `name`.
fn check_name(name: &str) -> ApiResult<()> {
    validate_name(name).map_err(|e| ApiError::invalid(format!("name: {e}")))
}

/// 1 to [`MAX_REPLICAS`]: zero replicas is a removal, which has its own route.
fn check_replicas(replicas: u32) -> ApiResult<()> {
    if (1..=MAX_REPLICAS).contains(&replicas) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "replicas: {replicas} is not from 1 to {MAX_REPLICAS} (to stop a service, remove it)"
        )))
    }
}

/// Parses a JSON body, naming the field at fault (`replicas: invalid type ...`), or
/// `what` when the fault is the body as a whole (not JSON, a missing field).
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> ApiResult<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // `?` is where a syntax error left the parser with no field to name.
        if matches!(path.as_str(), "" | "." | "?") {
            ApiError::invalid(format!("{what}: {inner}"))
        } else {
            ApiError::invalid(format!("{path}: {inner}"))
        }
    })
}

/// Parses a service spec and checks it field by field, so the message names the field
/// at fault (`replicas: invalid type ...`, `ports: port 0 is not a port`,
/// `service: missing field 'image'`).
fn parse_spec(bytes: &[u8]) -> ApiResult<ServiceSpec> {
    let spec: ServiceSpec = parse_json(bytes, "service")?;
    check_name(&spec.name)?;
    if spec.image.trim().is_empty() {
        return Err(ApiError::invalid("image: must not be empty"));
    }
    check_replicas(spec.replicas)?;
    if spec.ports.contains(&0) {
        return Err(ApiError::invalid("ports: port 0 is not a port"));
    }
    spec.limits
        .validate()
        .map_err(|e| ApiError::invalid(format!("limits: {e}")))?;
    if spec.health_check.as_ref().is_some_and(|h| h.command.is_empty()) {
        return Err(ApiError::invalid("health_check.command: must not be empty"));
    }
    // Whatever else the spec's own rules refuse (the checks above name the field for
    // the ones known today).
    spec.validate()
        .map_err(|e| ApiError::invalid(format!("service: {e}")))?;
    Ok(spec)
}

/// Finds the service `name` on the runtime `kind` names, or on every runtime in turn.
/// 404 when no runtime has it; when one cannot answer and none has it, that runtime's
/// error (503 for an unavailable one): the service may well exist there.
async fn find(
    services: &ServiceRuntimes,
    name: &str,
    kind: Option<RuntimeKind>,
) -> ApiResult<(Arc<dyn ServiceRuntime>, ServiceStatus)> {
    check_name(name)?;
    let mut failed = None;
    for rt in services.select(kind)? {
        match rt.inspect(name).await {
            Ok(status) => return Ok((rt, status)),
            // The name is valid, so bad input here means "no such service".
            Err(ComputeError::InvalidInput(_)) => {}
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    Err(match failed {
        Some(e) => compute_error(e),
        None => ApiError::not_found(format!("name: no service {name}")),
    })
}

/// Runs a change to a service to its end on its own task: a client that hangs up must
/// not cancel a deploy half-way and leave some replicas created and others not.
async fn detached<T: Send + 'static>(
    change: impl Future<Output = Result<T, ComputeError>> + Send + 'static,
) -> ApiResult<T> {
    tokio::spawn(change)
        .await
        .map_err(|e| ApiError::internal(format!("the service change failed: {e}")))?
        .map_err(compute_error)
}

/// Deploys a service, or redeploys it (every replica replaced with the new spec): the
/// body is a service spec, as for `hanzo-node service deploy --file`. The runtime is
/// `?runtime=` (default docker). Answers 201 with the service's status, its endpoints
/// (`127.0.0.1:49153`, one per published port and replica) included.
#[utoipa::path(post, path = "/v1/services",
    params(("runtime" = Option<String>, Query, description = "docker (default) or k8s")),
    request_body(content = ServiceSpec, description = "The service: name and image required, unknown fields refused"),
    responses(
        (status = 201, description = "Deployed: the service's status, endpoints included", body = ServiceStatus),
        (status = 400, description = "invalid_input, naming the field (a limit above the node's ceiling too)", body = ErrorReply),
        (status = 403, description = "forbidden: user root (0, a name, group 0) without [compute.docker] allow_root", body = ErrorReply),
        (status = 413, description = "too_large: body over 1 MiB", body = ErrorReply),
        (status = 422, description = "service_failed: a replica did not start; too_large: a replica can never fit this node", body = ErrorReply),
        (status = 503, description = "runtime_unavailable: the runtime is not on this node, or cannot run now (the reason)", body = ErrorReply)))]
async fn deploy_service(
    AxState(state): S,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let kind = runtime_param(q)?.unwrap_or(RuntimeKind::Docker);
    let spec = parse_spec(&body(b)?)?;
    if kind == RuntimeKind::Docker {
        // A replica on this node's Docker shares the node with its jobs: one that could
        // never fit the node is refused as a job would be (the cluster judges k8s ones).
        // The scheduler's own "can never fit" rule; a replica takes no job slot.
        let capacity = state.scheduler.snapshot().capacity;
        let demand = hanzo_scheduler::Resources {
            jobs: 0,
            ..hanzo_scheduler::Resources::demand(&spec.limits)
        };
        if let Some(why) = demand.exceeds(&capacity) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "too_large",
                format!("limits: a replica can never fit this node: {why}"),
            ));
        }
        // A service's container is a container like a job's: root only where the
        // operator allows it.
        state.policy.check_user("user", spec.user.as_deref())?;
    }
    // The node's ceilings hold for services' limits as for jobs' (after the capacity
    // check, which answers 422 for a replica no node of this size could hold).
    state.policy.check_limits(&spec.limits)?;
    let rt = state.services.get(kind)?;
    let lock = state.services.lock(&spec.name).await;
    let status = detached(async move {
        let _lock = lock;
        rt.deploy(&spec).await
    })
    .await?;
    Ok((StatusCode::CREATED, Json(status)).into_response())
}

/// Every service of every service runtime of the node (or of `?runtime=`), by name.
/// A runtime that cannot answer is named in `unavailable` with the reason while the
/// others' services are still listed; 503 when none can answer.
#[utoipa::path(get, path = "/v1/services",
    params(("runtime" = Option<String>, Query, description = "Only this runtime's services (docker or k8s)")),
    responses(
        (status = 200, description = "The services, and the runtimes that could not answer", body = ServiceList),
        (status = 400, description = "invalid_input, naming the parameter", body = ErrorReply),
        (status = 503, description = "runtime_unavailable: no service runtime, or none can answer", body = ErrorReply)))]
async fn list_services(
    AxState(state): S,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let kind = runtime_param(q)?;
    let runtimes = state.services.select(kind)?;
    let mut services = Vec::new();
    let mut down = Vec::new();
    let mut first_error = None;
    for rt in &runtimes {
        match rt.list().await {
            Ok(list) => services.extend(list),
            Err(e) => {
                down.push(RuntimeDown {
                    runtime: rt.kind(),
                    message: e.to_string(),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error
        && down.len() == runtimes.len()
    {
        return Err(compute_error(e));
    }
    services.sort_by(|a, b| (&a.name, a.runtime.name()).cmp(&(&b.name, b.runtime.name())));
    Ok(Json(ServiceList {
        services,
        unavailable: down,
    })
    .into_response())
}

/// One service: its spec, replicas desired and running, each replica's state and
/// health, and its endpoints. Without `?runtime=` every service runtime is asked.
#[utoipa::path(get, path = "/v1/services/{name}",
    params(("name" = String, Path, description = "The service's name"),
        ("runtime" = Option<String>, Query, description = "Only look on this runtime (docker or k8s)")),
    responses((status = 200, description = "The service's status", body = ServiceStatus),
        (status = 400, description = "invalid_input: not a valid service name, or a bad parameter", body = ErrorReply),
        (status = 404, description = "not_found", body = ErrorReply),
        (status = 503, description = "runtime_unavailable: a runtime that may have it cannot answer", body = ErrorReply)))]
async fn get_service(
    AxState(state): S,
    Segment(name): Segment,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let (_, status) = find(&state.services, &name, runtime_param(q)?).await?;
    Ok(Json(status).into_response())
}

/// The body of `POST /v1/services/{name}/scale`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scale {
    /// The new replica count, from 1 to 64 (to stop a service, remove it).
    #[schema(minimum = 1, maximum = 64)]
    replicas: u32,
}

/// The reply of `GET /v1/services`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ServiceList {
    /// Every service, by name.
    services: Vec<ServiceStatus>,
    /// The runtimes that could not answer (their services are missing from the list).
    unavailable: Vec<RuntimeDown>,
}

/// A service runtime that could not list its services.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RuntimeDown {
    /// `docker` or `k8s`.
    runtime: RuntimeKind,
    /// Why (the daemon is down, ...).
    message: String,
}

/// Changes a service's replica count: replicas are added or dropped from the top, the
/// others keep running. 200 with the new status.
#[utoipa::path(post, path = "/v1/services/{name}/scale",
    params(("name" = String, Path, description = "The service's name"),
        ("runtime" = Option<String>, Query, description = "Only look on this runtime (docker or k8s)")),
    request_body(content = Scale, description = "The new replica count"),
    responses((status = 200, description = "The service's new status", body = ServiceStatus),
        (status = 400, description = "invalid_input, naming the field", body = ErrorReply),
        (status = 404, description = "not_found", body = ErrorReply),
        (status = 413, description = "too_large: body over 1 MiB", body = ErrorReply),
        (status = 422, description = "service_failed: a new replica did not start", body = ErrorReply),
        (status = 503, description = "runtime_unavailable", body = ErrorReply)))]
async fn scale_service(
    AxState(state): S,
    Segment(name): Segment,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let kind = runtime_param(q)?;
    check_name(&name)?;
    let bytes = body(b)?;
    let scale: Scale = parse_json(&bytes, "scale")?;
    check_replicas(scale.replicas)?;
    let lock = state.services.lock(&name).await;
    let (rt, _) = find(&state.services, &name, kind).await?;
    let status = detached(async move {
        let _lock = lock;
        rt.scale(&name, scale.replicas).await
    })
    .await?;
    Ok(Json(status).into_response())
}

/// Removes a service and every replica. 204; 404 when no runtime has it.
#[utoipa::path(delete, path = "/v1/services/{name}",
    params(("name" = String, Path, description = "The service's name"),
        ("runtime" = Option<String>, Query, description = "Only look on this runtime (docker or k8s)")),
    responses((status = 204, description = "Removed"),
        (status = 400, description = "invalid_input: not a valid service name, or a bad parameter", body = ErrorReply),
        (status = 404, description = "not_found", body = ErrorReply),
        (status = 503, description = "runtime_unavailable", body = ErrorReply)))]
async fn remove_service(
    AxState(state): S,
    Segment(name): Segment,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let kind = runtime_param(q)?;
    check_name(&name)?;
    let lock = state.services.lock(&name).await;
    let (rt, _) = find(&state.services, &name, kind).await?;
    detached(async move {
        let _lock = lock;
        rt.remove(&name).await
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_errors_name_the_field() {
        let cases = [
            (r#"{"name":"web"}"#, "service: missing field `image`"),
            ("{not json", "service: key must be a string"),
            ("", "service: EOF while parsing"),
            (
                r#"{"name":"Web","image":"x"}"#,
                "name: invalid service name 'Web'",
            ),
            (r#"{"name":"web","image":" "}"#, "image: must not be empty"),
            (
                r#"{"name":"web","image":"x","replicas":"2"}"#,
                "replicas: invalid type",
            ),
            (
                r#"{"name":"web","image":"x","replicas":0}"#,
                "replicas: 0 is not from 1 to 64",
            ),
            (
                r#"{"name":"web","image":"x","replicas":65}"#,
                "replicas: 65 is not from 1 to 64",
            ),
            (
                r#"{"name":"web","image":"x","ports":[0]}"#,
                "ports: port 0 is not a port",
            ),
            (
                r#"{"name":"web","image":"x","ports":[70000]}"#,
                "ports[0]: invalid value",
            ),
            (
                r#"{"name":"web","image":"x","colour":1}"#,
                "colour: unknown field",
            ),
            (
                r#"{"name":"web","image":"x","restart":"sometimes"}"#,
                "restart: unknown variant",
            ),
            (
                r#"{"name":"web","image":"x","health_check":{"command":[]}}"#,
                "health_check.command: must not be empty",
            ),
        ];
        for (body, want) in cases {
            let e = parse_spec(body.as_bytes()).expect_err(body);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
            assert!(e.message.starts_with(want), "{body}: {}", e.message);
        }
        let spec = parse_spec(br#"{"name":"web","image":"web:1","ports":[8080]}"#).unwrap();
        assert_eq!((spec.replicas, spec.ports), (1, vec![8080]));
    }

    #[test]
    fn compute_errors_keep_the_api_statuses() {
        let cases = [
            (ComputeError::invalid("x"), 400, "invalid_input"),
            (
                ComputeError::Unavailable("no daemon".into()),
                503,
                "runtime_unavailable",
            ),
            (
                ComputeError::ToolFailed("exec failed".into()),
                422,
                "service_failed",
            ),
            (ComputeError::internal("boom"), 500, "internal"),
        ];
        for (e, status, code) in cases {
            let a = compute_error(e);
            assert_eq!((a.status.as_u16(), a.code), (status, code));
        }
    }

    #[test]
    fn a_name_lock_is_exclusive_and_forgotten_when_free() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(name_lock());
    }

    async fn name_lock() {
        let s = ServiceRuntimes::new(Vec::new());
        let held = s.lock("web").await;
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.lock("web").await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a second holder got the lock");
        let other = s.lock("db").await; // other names are not held up
        drop(other);
        drop(held);
        drop(waiter.await.unwrap());
        assert!(s.locks.lock().unwrap().is_empty());
    }

    #[test]
    fn only_runtimes_that_run_services_are_chosen() {
        let s = ServiceRuntimes::default();
        for kind in [RuntimeKind::Docker, RuntimeKind::Wasm] {
            let e = s.get(kind).err().unwrap();
            assert_eq!((e.status.as_u16(), e.code), (503, "runtime_unavailable"));
            assert!(e.message.starts_with("runtime: the"), "{}", e.message);
        }
        assert_eq!(s.select(None).err().unwrap().status.as_u16(), 503);
    }
}
