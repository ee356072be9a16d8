//! One log line per request (`tracing`, target `hanzo_api::access_log`): method, path,
//! status, latency, and the client's address when the server knows it.
//!
//! The path is logged without its query (a query may carry a cursor or, from a
//! careless client, a secret); hyper has already refused a path with control bytes,
//! and the subscriber escapes what it prints. `/healthz` and `/metrics` are polled by
//! machines every few seconds, so they log at debug; everything else at info. For a
//! log stream (SSE) the latency is the time to the response's head, not the stream's
//! length.

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use std::net::SocketAddr;
use std::time::Instant;

pub(crate) async fn access_log(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    if path == "/healthz" || path == "/metrics" {
        tracing::debug!(%method, %path, status, latency_ms, %client, "request");
    } else {
        tracing::info!(%method, %path, status, latency_ms, %client, "request");
    }
    response
}
