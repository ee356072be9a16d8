//! Who may talk to the API: the checks every request but `GET /healthz` passes before
//! any route sees it, in this order:
//!
//! 1. `Host` must be one the node answers to (421 `misdirected`): its listen address,
//!    `localhost`/`127.0.0.1`/`[::1]` with its port, or one the operator listed
//!    (`[node] api_hosts`). A web page that re-points its own DNS name at 127.0.0.1
//!    (DNS rebinding) still sends its own name as `Host`, so it is refused here.
//! 2. An `Origin` header must be one the operator listed (`[node] api_origins`, none by
//!    default), else 403 `forbidden_origin`. Browsers add `Origin` to every cross-origin
//!    request (and to same-origin POSTs); other clients send none. A listed origin gets
//!    the CORS headers it needs, preflight (`OPTIONS`) included.
//! 3. The bearer token (401 `unauthorized`), compared in constant time.
//! 4. A body must say what it is (415 `unsupported_media_type`): `application/json`,
//!    or for `POST /v1/modules` `application/octet-stream` / `application/wasm`. A
//!    browser may send `text/plain` cross-origin without asking first; JSON it may not.

use crate::State;
use crate::error::ApiError;
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The `Host` and `Origin` values the API accepts (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Accepted `Host` values, `name:port` (exactly that port) or `name` (any port);
    /// `*` accepts any. Empty: `localhost`, `127.0.0.1` and `[::1]` on any port.
    pub hosts: Vec<String>,
    /// Accepted `Origin` values (`scheme://host[:port]`); empty: a request carrying an
    /// `Origin` is refused.
    pub origins: Vec<String>,
}

impl Access {
    /// The hosts a node listening on `listen` answers to: the listen address itself
    /// (unless it is a wildcard), `localhost`, `127.0.0.1` and `[::1]` with its port,
    /// and `extra` (`[node] api_hosts`).
    pub fn for_listener(listen: std::net::SocketAddr, extra: &[String], origins: &[String]) -> Access {
        let port = listen.port();
        let mut hosts = vec![
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ];
        if !listen.ip().is_unspecified() {
            hosts.push(listen.to_string());
        }
        hosts.extend(extra.iter().map(|h| h.trim().to_ascii_lowercase()));
        Access {
            hosts,
            origins: origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    fn host_ok(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        // `name` and `name:port`; an IPv6 literal keeps its brackets.
        let name = match host.rfind(':') {
            Some(i) if !host[i..].contains(']') => &host[..i],
            _ => host.as_str(),
        };
        if self.hosts.is_empty() {
            return ["localhost", "127.0.0.1", "[::1]"].contains(&name);
        }
        self.hosts
            .iter()
            .any(|h| h == "*" || *h == host || (!has_port(h) && h == name))
    }

    fn origin_ok(&self, origin: &str) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        self.origins.contains(&origin)
    }
}

fn has_port(host: &str) -> bool {
    host.rfind(':').is_some_and(|i| !host[i..].contains(']'))
}

/// The checks of the module doc, as an axum middleware over the whole router.
pub(crate) async fn guard(AxState(state): AxState<Arc<State>>, req: Request, next: Next) -> Response {
    // The liveness probe answers anyone: it says only whether the node takes jobs, and
    // load balancers and orchestrators call it by IP, without a token.
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match &host {
        Some(h) if state.access.host_ok(h) => {}
        _ => {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected",
                format!(
                    "Host: {} is not a name this node answers to (add it to node.api_hosts)",
                    host.as_deref().unwrap_or("(none)")
                ),
            )
            .into_response();
        }
    }
    let origin = match headers.get(header::ORIGIN) {
        None => None,
        Some(v) => match v.to_str().ok().filter(|o| state.access.origin_ok(o)) {
            Some(o) => Some(HeaderValue::from_str(o).unwrap_or(HeaderValue::from_static("null"))),
            None => {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_origin",
                    format!(
                        "Origin: {} is not allowed (node.api_origins)",
                        String::from_utf8_lossy(v.as_bytes())
                    ),
                )
                .into_response();
            }
        },
    };
    if let Some(origin) = &origin
        && req.method() == Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        // A preflight from a listed origin: it carries no token by design.
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        cors(h, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, DELETE"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, last-event-id"),
        );
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        return res;
    }
    let mut res = match refusal(&state, &req) {
        None => next.run(req).await,
        Some(refused) => refused,
    };
    if let Some(origin) = &origin {
        cors(res.headers_mut(), origin);
    }
    res
}

fn cors(h: &mut HeaderMap, origin: &HeaderValue) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// The token, then the body's type: the refusal, if any.
fn refusal(state: &State, req: &Request) -> Option<Response> {
    let headers = req.headers();
    if let Some(token) = &state.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            let mut res = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authorization: a valid bearer token is required (the node's api-token file, or node.api_token)",
            )
            .into_response();
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Some(res);
        }
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|n| n.trim() != "0");
    if has_body {
        let given = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let media = given.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let wanted: &[&str] = if req.uri().path() == "/v1/modules" {
            &["application/octet-stream", "application/wasm"]
        } else {
            &["application/json"]
        };
        if !wanted.contains(&media.as_str()) {
            return Some(
                ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("Content-Type: expected {}, got '{}'", wanted.join(" or "), given),
                )
                .into_response(),
            );
        }
    }
    None
}

/// Compares without stopping at the first difference, so the time taken does not
/// tell an attacker how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_with_their_port_or_by_name() {
        let a = Access::for_listener(
            "127.0.0.1:3690".parse().unwrap(),
            &["node.example".into(), "api.example:443".into()],
            &[],
        );
        for ok in [
            "127.0.0.1:3690",
            "localhost:3690",
            "LOCALHOST:3690",
            "[::1]:3690",
            "node.example",
            "node.example:8080",
            "api.example:443",
        ] {
            assert!(a.host_ok(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:3690",
            "127.0.0.1:3691",
            "127.0.0.1",
            "localhost",
            "api.example",
            "api.example:80",
            "",
        ] {
            assert!(!a.host_ok(bad), "{bad}");
        }
        let any = Access::for_listener("0.0.0.0:1".parse().unwrap(), &["*".into()], &[]);
        assert!(any.host_ok("whatever:9"));
        let wild = Access::for_listener("0.0.0.0:1".parse().unwrap(), &[], &[]);
        assert!(!wild.host_ok("0.0.0.0:1") && wild.host_ok("127.0.0.1:1"));
        let v6 = Access::for_listener("[::1]:7".parse().unwrap(), &["[fd00::1]".into()], &[]);
        assert!(v6.host_ok("[::1]:7") && v6.host_ok("[fd00::1]:5") && !v6.host_ok("[fd00::2]:7"));
    }

    #[test]
    fn origins_match_exactly() {
        let a = Access::for_listener(
            "127.0.0.1:1".parse().unwrap(),
            &[],
            &["http://localhost:5173/".into()],
        );
        assert!(a.origin_ok("http://localhost:5173"));
        assert!(a.origin_ok("HTTP://LOCALHOST:5173"));
        assert!(!a.origin_ok("http://localhost:5174"));
        assert!(!a.origin_ok("null"));
        assert!(!Access::default().origin_ok("http://localhost:5173"));
    }
}
