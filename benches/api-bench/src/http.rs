//! A keep-alive HTTP/1.1 client on one TCP connection: hyper's connection API, no
//! pool, so each client task of the benchmark is exactly one connection. Shared by
//! api-bench and network-bench (whose nodes want a bearer token).

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;

/// One answer: status and the whole body.
pub struct Resp {
    pub status: u16,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// One connection to a node.
pub struct Conn {
    addr: SocketAddr,
    auth: Option<String>,
    send: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        tcp.set_nodelay(true)?;
        let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            addr,
            auth: None,
            send,
        })
    }

    /// Sends `token` as the bearer token with every request.
    #[allow(dead_code)]
    pub fn authorized(mut self, token: &str) -> Conn {
        self.auth = Some(format!("Bearer {token}"));
        self
    }

    pub async fn req(&mut self, method: &str, path: &str, body: impl Into<Bytes>) -> Result<Resp> {
        self.send.ready().await.context("connection closed")?;
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if let Some(auth) = &self.auth {
            req = req.header("authorization", auth);
        }
        let req = req
            // Modules are uploaded as bytes; everything else is JSON.
            .header(
                "content-type",
                if path.starts_with("/v1/modules") {
                    "application/octet-stream"
                } else {
                    "application/json"
                },
            )
            .body(Full::new(body.into()))?;
        let resp = self.send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Resp { status, body })
    }

    /// A request that must answer `want`.
    pub async fn expect(
        &mut self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
        want: u16,
    ) -> Result<Resp> {
        let r = self.req(method, path, body).await?;
        if r.status != want {
            return Err(anyhow!(
                "{method} {path}: {} (wanted {want}): {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        Ok(r)
    }
}
