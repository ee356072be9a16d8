//! A scripted Kubernetes API on loopback that the real kube client talks to (HTTP/1.1
//! plus the websocket of `pods/attach`), in the spirit of kube-rs's own mock-service
//! tests but exercising the whole client stack. It records every request in order so
//! each test can assert the exact sequence, and plays a per-test script: the reply to
//! the Job's creation, the pod events of the watch, and what the attached container
//! does with its stdin, stdout and stderr.
//!
//! For services it keeps a small object store (Deployments, Services, Ingresses) that
//! server-side apply, merge patch, get, list and delete work on, so a test can assert
//! both the requests and what is left in the cluster afterwards.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

pub const NS: &str = "hanzo-compute";

/// What the attached container does.
#[derive(Clone, Default)]
pub struct Attach {
    /// Written on stdout after stdin closed.
    pub stdout: Vec<u8>,
    /// Written on stderr after stdin closed.
    pub stderr: Vec<u8>,
    /// Never answers (a tool that runs past its deadline).
    pub hang: bool,
    /// Pod events sent on the watch once the streams are written (the container ends).
    pub then: Vec<Value>,
}

/// One test's script.
#[derive(Clone)]
pub struct Script {
    /// Status and body of `POST jobs`; `None` echoes the Job back with 201.
    pub create: Option<(u16, Value)>,
    /// Watch events sent as soon as the pod watch starts.
    pub events: Vec<Value>,
    /// The container's behaviour once attached.
    pub attach: Attach,
    /// For Jobs that retry: the behaviour of each attach in turn, before `attach`.
    pub attaches: Vec<Attach>,
    /// Body of `GET jobs/NAME`.
    pub job: Value,
    /// Body of `GET pods/NAME/log`.
    pub log: String,
    /// Status and body of the pod list, when it is to fail.
    pub list_error: Option<(u16, Value)>,
    /// Objects in the store at the start, as `deployment/NAME`, `service/NAME`,
    /// `ingress/NAME`.
    pub objects: Vec<(String, Value)>,
    /// The pods a service's pod list returns.
    pub service_pods: Vec<Value>,
    /// Requests (as recorded, e.g. `apply service/hanzo-svc-web`) answered with this
    /// status and body instead.
    pub fail: Vec<(String, (u16, Value))>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            create: None,
            events: Vec::new(),
            attach: Attach::default(),
            attaches: Vec::new(),
            job: json!({}),
            log: String::new(),
            list_error: None,
            objects: Vec::new(),
            service_pods: Vec::new(),
            fail: Vec::new(),
        }
    }
}

#[derive(Default)]
struct State {
    requests: Vec<String>,
    stdin: Vec<u8>,
    created: Option<Value>,
    watch: Option<mpsc::UnboundedSender<Value>>,
    attached: usize,
    objects: BTreeMap<String, Value>,
}

/// The running fixture.
#[derive(Clone)]
pub struct Fixture {
    pub url: String,
    state: Arc<Mutex<State>>,
    script: Arc<Script>,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// A 403 as the API server words it.
pub fn forbidden(verb: &str, resource: &str, group: &str) -> (u16, Value) {
    (
        403,
        status(
            403,
            "Forbidden",
            &format!(
                "{resource}.{group} is forbidden: User \"system:serviceaccount:{NS}:hanzo-node\" cannot {verb} \
                 resource \"{resource}\" in API group \"{group}\" in the namespace \"{NS}\""
            ),
        ),
    )
}

impl Fixture {
    pub async fn start(script: Script) -> Fixture {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = State {
            objects: script.objects.iter().cloned().collect(),
            ..Default::default()
        };
        let fixture = Fixture {
            url,
            state: Arc::new(Mutex::new(state)),
            script: Arc::new(script),
        };
        let f = fixture.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let f = f.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let f = f.clone();
                        async move { Ok::<_, Infallible>(f.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        fixture
    }

    /// A kube client for this API.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(kube::Config::new(self.url.parse().unwrap())).unwrap()
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// What the container read on stdin.
    pub fn stdin(&self) -> Vec<u8> {
        self.state.lock().unwrap().stdin.clone()
    }

    /// The Job the runtime created.
    pub fn created(&self) -> Option<Value> {
        self.state.lock().unwrap().created.clone()
    }

    /// The object store now (`deployment/NAME` -> object).
    pub fn objects(&self) -> BTreeMap<String, Value> {
        self.state.lock().unwrap().objects.clone()
    }

    fn record(&self, what: String) {
        self.state.lock().unwrap().requests.push(what);
    }

    fn push_events(&self, events: &[Value]) {
        if let Some(tx) = &self.state.lock().unwrap().watch {
            for e in events {
                let _ = tx.send(e.clone());
            }
        }
    }

    async fn handle(&self, mut req: Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().clone();
        let jobs = format!("/apis/batch/v1/namespaces/{NS}/jobs");
        let pods = format!("/api/v1/namespaces/{NS}/pods");
        if path == "/version" {
            self.record("get version".into());
            return full(
                200,
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "x",
                        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                        "compiler": "gc", "platform": "linux/amd64"}),
            );
        }
        if let Some(kind) = object_kind(&path) {
            return self.object(kind, req).await;
        }
        if path == pods && query.contains("hanzo.service") {
            self.record(format!("list pods {}", selector(&query)));
            return full(
                200,
                &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "10"},
                        "items": self.script.service_pods.iter()
                            .filter(|p| matches(p, &selector(&query))).collect::<Vec<_>>()}),
            );
        }
        if method == hyper::Method::POST && path == jobs {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut job: Value = serde_json::from_slice(&body).unwrap();
            self.record("create jobs".into());
            self.state.lock().unwrap().created = Some(job.clone());
            return match &self.script.create {
                Some((code, body)) => full(*code, body),
                None => {
                    job["metadata"]["uid"] = json!("job-uid");
                    job["metadata"]["resourceVersion"] = json!("1");
                    full(201, &job)
                }
            };
        }
        if let Some(name) = path.strip_prefix(&format!("{jobs}/")) {
            if method == hyper::Method::DELETE {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let params: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
                let policy = params["propagationPolicy"].as_str().unwrap_or("none").to_string();
                self.record(format!("delete job/{name} propagationPolicy={policy}"));
                return full(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                );
            }
            self.record(format!("get job/{name}"));
            return full(200, &self.script.job);
        }
        if path == pods {
            assert!(
                query.contains("labelSelector=hanzo.managed%3Dtrue%2Chanzo.job%3D"),
                "{query}"
            );
            if query.contains("watch=true") {
                self.record("watch pods".into());
                let (tx, rx) = mpsc::unbounded_channel::<Value>();
                for e in &self.script.events {
                    tx.send(e.clone()).unwrap();
                }
                self.state.lock().unwrap().watch = Some(tx);
                let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                    let e = rx.recv().await?;
                    Some((
                        Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{e}\n")))),
                        rx,
                    ))
                });
                return Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(BodyExt::boxed(StreamBody::new(stream)))
                    .unwrap();
            }
            self.record("list pods".into());
            if let Some((code, body)) = &self.script.list_error {
                return full(*code, body);
            }
            return full(
                200,
                &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "10"}, "items": []}),
            );
        }
        if let Some(rest) = path.strip_prefix(&format!("{pods}/")) {
            if let Some(name) = rest.strip_suffix("/attach") {
                for flag in ["container=tool", "stdin=true", "stdout=true", "stderr=true"] {
                    assert!(query.contains(flag), "attach without {flag}: {query}");
                }
                assert!(!query.contains("tty=true"), "{query}");
                self.record(format!("attach pod/{name}"));
                let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
                let on_upgrade = hyper::upgrade::on(&mut req);
                let f = self.clone();
                tokio::spawn(async move {
                    let upgraded = on_upgrade.await.unwrap();
                    let ws =
                        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
                    f.container(ws).await;
                });
                return Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("upgrade", "websocket")
                    .header("connection", "Upgrade")
                    .header("sec-websocket-accept", derive_accept_key(&key))
                    .header("sec-websocket-protocol", "v5.channel.k8s.io")
                    .body(Full::new(Bytes::new()).boxed())
                    .unwrap();
            }
            if let Some(name) = rest.strip_suffix("/log") {
                self.record(format!("log pod/{name}"));
                return Response::builder()
                    .status(200)
                    .body(Full::new(Bytes::from(self.script.log.clone())).boxed())
                    .unwrap();
            }
        }
        self.record(format!("unexpected {method} {path}?{query}"));
        full(404, &status(404, "NotFound", "not scripted"))
    }

    /// A Deployment, Service or Ingress request, on the store.
    async fn object(&self, kind: &'static str, req: Request<hyper::body::Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().clone();
        let content_type = req
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let plural = if kind == "ingress" {
            "ingresses".to_string()
        } else {
            format!("{kind}s")
        };
        let name = path
            .rsplit_once(&format!("/{plural}"))
            .unwrap()
            .1
            .trim_start_matches('/');
        let key = format!("{kind}/{name}");
        let label = match method {
            hyper::Method::GET if name.is_empty() => format!("list {plural} {}", selector(&query)),
            hyper::Method::GET => format!("get {key}"),
            hyper::Method::PATCH if content_type == "application/apply-patch+yaml" => {
                assert!(
                    query.contains("fieldManager=hanzo-node") && query.contains("force=true"),
                    "apply without the field manager or force: {query}"
                );
                format!("apply {key}")
            }
            hyper::Method::PATCH => format!("patch {key} {content_type}"),
            hyper::Method::DELETE => {
                let params: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
                let policy = params["propagationPolicy"].as_str().unwrap_or("none");
                format!("delete {key} propagationPolicy={policy}")
            }
            _ => format!("unexpected {method} {path}"),
        };
        self.record(label.clone());
        if let Some((_, (code, body))) = self.script.fail.iter().find(|(l, _)| *l == label) {
            return full(*code, body);
        }
        let not_found = || {
            full(
                404,
                &status(404, "NotFound", &format!("{plural} \"{name}\" not found")),
            )
        };
        let mut state = self.state.lock().unwrap();
        match method {
            hyper::Method::GET if name.is_empty() => {
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|(k, o)| k.starts_with(&format!("{kind}/")) && matches(o, &selector(&query)))
                    .map(|(_, v)| v.clone())
                    .collect();
                full(
                    200,
                    &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "5"}, "items": items}),
                )
            }
            hyper::Method::GET => match state.objects.get(&key) {
                Some(o) => full(200, o),
                None => not_found(),
            },
            hyper::Method::PATCH if content_type == "application/apply-patch+yaml" => {
                let mut object: Value = serde_json::from_slice(&body).unwrap();
                let uid = state
                    .objects
                    .get(&key)
                    .map(|o| o["metadata"]["uid"].clone())
                    .unwrap_or(json!(format!("{kind}-uid")));
                object["metadata"]["uid"] = uid;
                object["metadata"]["resourceVersion"] = json!("7");
                state.objects.insert(key, object.clone());
                full(200, &object)
            }
            hyper::Method::PATCH => match state.objects.get_mut(&key) {
                Some(o) => {
                    merge(o, &serde_json::from_slice(&body).unwrap());
                    full(200, o)
                }
                None => not_found(),
            },
            hyper::Method::DELETE => match state.objects.remove(&key) {
                Some(_) => full(
                    200,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
                ),
                None => not_found(),
            },
            _ => full(405, &status(405, "MethodNotAllowed", "not scripted")),
        }
    }

    /// The attached container: reads stdin until the v5 close frame, then plays the
    /// script.
    async fn container<S>(&self, mut ws: WebSocketStream<S>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let script = {
            let mut state = self.state.lock().unwrap();
            state.attached += 1;
            self.script
                .attaches
                .get(state.attached - 1)
                .unwrap_or(&self.script.attach)
                .clone()
        };
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Binary(b) = msg {
                match b.first() {
                    Some(0) => self.state.lock().unwrap().stdin.extend_from_slice(&b[1..]),
                    Some(255) if b.get(1) == Some(&0) => break,
                    _ => {}
                }
            }
        }
        if script.hang {
            self.push_events(&script.then);
            // Hold the stream open until the client goes away.
            while let Some(Ok(_)) = ws.next().await {}
            return;
        }
        for (channel, data) in [(1u8, &script.stdout), (2u8, &script.stderr)] {
            // In chunks, as the kubelet forwards a pipe.
            for chunk in data.chunks(4096) {
                let mut frame = vec![channel];
                frame.extend_from_slice(chunk);
                let _ = ws.send(Message::binary(frame)).await;
            }
        }
        self.push_events(&script.then);
        let mut frame = vec![3u8];
        frame.extend_from_slice(
            json!({"metadata": {}, "status": "Success"})
                .to_string()
                .as_bytes(),
        );
        let _ = ws.send(Message::binary(frame)).await;
        let _ = ws.close(None).await;
    }
}

/// A pod of the tool job in the given container state, as a watch event.
pub fn pod_event(kind: &str, rv: u32, state: Value) -> Value {
    pod_event_with(kind, rv, state, json!({}))
}

/// As [`pod_event`], with extra fields merged into the pod's status.
pub fn pod_event_with(kind: &str, rv: u32, state: Value, status_extra: Value) -> Value {
    pod_event_of("hanzo-tool-pod", kind, rv, state, status_extra)
}

/// As [`pod_event_with`], for the pod `name` (uid `<name>-uid`): a Job's second pod.
pub fn pod_event_of(name: &str, kind: &str, rv: u32, state: Value, status_extra: Value) -> Value {
    let mut status = json!({
        "phase": if state.get("running").is_some() { "Running" } else { "Pending" },
        "containerStatuses": [{
            "name": "tool", "image": "busybox:1.36", "ready": state.get("running").is_some(),
            "restartCount": 0, "state": state,
            "imageID": format!("docker.io/library/busybox@sha256:{}", "ab".repeat(32)),
        }],
    });
    if let (Some(s), Some(extra)) = (status.as_object_mut(), status_extra.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    json!({"type": kind, "object": {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": format!("{name}-uid"), "resourceVersion": rv.to_string()},
        "spec": {"containers": [{"name": "tool", "image": "busybox:1.36"}]},
        "status": status,
    }})
}

pub fn running() -> Value {
    json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
}

pub fn terminated(code: i32, reason: &str) -> Value {
    json!({"terminated": {"exitCode": code, "reason": reason}})
}

pub fn waiting(reason: &str, message: &str) -> Value {
    json!({"waiting": {"reason": reason, "message": message}})
}

/// The kind (`deployment`, `service`, `ingress`) of a request's path, if it is one.
fn object_kind(path: &str) -> Option<&'static str> {
    [
        ("/apis/apps/v1/namespaces/NS/deployments", "deployment"),
        ("/api/v1/namespaces/NS/services", "service"),
        ("/apis/networking.k8s.io/v1/namespaces/NS/ingresses", "ingress"),
    ]
    .into_iter()
    .find(|(prefix, _)| {
        let prefix = prefix.replace("NS", NS);
        path == prefix || path.starts_with(&format!("{prefix}/"))
    })
    .map(|(_, kind)| kind)
}

/// The decoded `labelSelector` of a query.
fn selector(query: &str) -> String {
    let raw = query
        .split('&')
        .find_map(|p| p.strip_prefix("labelSelector="))
        .unwrap_or("");
    raw.replace("%3D", "=").replace("%2C", ",").replace("%2F", "/")
}

/// Whether `object`'s labels satisfy an equality-based selector (`k=v,k=v`).
fn matches(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|p| !p.is_empty()).all(|pair| {
        let (k, v) = pair.split_once('=').expect("an equality selector");
        object["metadata"]["labels"][k].as_str() == Some(v)
    })
}

/// A JSON merge patch (RFC 7386).
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

/// A pod of service `name` (labels as the runtime sets them for node `node-1`), with
/// the container in `state` and `ready`.
pub fn service_pod(name: &str, pod: &str, state: Value, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod, "namespace": NS, "uid": format!("{pod}-uid"),
                     "labels": {"hanzo.managed": "true", "hanzo.kind": "service", "hanzo.node": "node-1",
                                "hanzo.service": name}},
        "spec": {"containers": [{"name": "service", "image": "busybox:1.36"}]},
        "status": {"phase": if state.get("running").is_some() { "Running" } else { "Pending" },
                   "podIP": "10.1.2.3",
                   "containerStatuses": [{"name": "service", "image": "busybox:1.36", "imageID": "",
                                          "ready": ready, "restartCount": 0, "state": state}]},
    })
}
