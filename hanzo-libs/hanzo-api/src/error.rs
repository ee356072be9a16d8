//! Errors as the API answers them: `{"error": {"code", "message"}}` with a status.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hanzo_scheduler::Rejection;
use serde_json::json;

/// An error answer: an HTTP status, a stable machine-readable code and a message that
/// names what was wrong (the field, the setting, the job).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable name: `invalid_input`, `not_found`, `unauthorized`, `queue_full`, ...
    pub code: &'static str,
    /// For people; names the bad field where there is one.
    pub message: String,
    /// Seconds for `Retry-After` (429 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with no `Retry-After`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 `invalid_input`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal`: the node's own fault (the store failed, ...).
    pub fn internal(message: impl std::fmt::Display) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message.to_string())
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
        let retry_after = match &r {
            Rejection::QueueFull { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        ApiError {
            status,
            code: r.code(),
            message: r.to_string(),
            retry_after,
        }
    }
}

impl From<hanzo_compute::policy::PolicyError> for ApiError {
    fn from(e: hanzo_compute::policy::PolicyError) -> Self {
        use hanzo_compute::policy::PolicyError;
        match e {
            PolicyError::Invalid(m) => ApiError::invalid(m),
            PolicyError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
        }
    }
}

impl From<hanzo_jobstore::Error> for ApiError {
    fn from(e: hanzo_jobstore::Error) -> Self {
        match e {
            hanzo_jobstore::Error::InvalidCursor(_) => ApiError::invalid(format!("cursor: {e}")),
            e => ApiError::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut res = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}
