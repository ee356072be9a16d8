//! Image references and pull policies, against real registries: Debian's `docker-registry`
//! started on 127.0.0.1 (which Docker treats as an insecure registry, so plain HTTP works),
//! once open and once behind htpasswd (bcrypt) basic auth.

use crate::util::*;
use hanzo_compute::config::DockerConfig;
use hanzo_compute::{ComputeError, JobSpec, RuntimeKind};
use hanzo_docker_runtime::{DockerOptions, DockerRuntime, ImageRef, PullPolicy, PullProgress};
use serde_json::json;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `docker-registry` process on 127.0.0.1, killed when dropped.
struct Registry {
    port: u16,
    child: Child,
    dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    /// Serves the images under `storage`; with `htpasswd`, only to those who log in.
    fn start(storage: &Path, htpasswd: Option<&Path>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth = htpasswd
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: hanzo-test\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
             delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            storage.display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start docker-registry ({e}); run `source scripts/docker.sh && ensure_docker`")
            });
        let mut registry = Registry { port, child, dir };
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("docker-registry exited ({status}): {}", registry.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(15),
                "docker-registry did not listen: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// `127.0.0.1:<port>/<path>`.
    fn name(&self, path: &str) -> String {
        format!("127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes every local tag and digest reference of a repository when dropped (pulls add
/// both, also to the fixture image when the content is the same).
struct RepoGuard(String);

impl Drop for RepoGuard {
    fn drop(&mut self) {
        let out = docker_output(&[
            "images",
            "--digests",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.Repository}}@{{.Digest}}",
            &self.0,
        ]);
        for reference in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if !reference.contains("<none>") {
                let _ = docker_output(&["rmi", reference]);
            }
        }
    }
}

/// Pushes the local image `local` as `remote`, then removes the local `remote` tag.
fn push_as(local: &str, remote: &str) {
    docker(&["tag", local, remote]);
    docker(&["push", "--quiet", remote]);
    docker(&["rmi", remote]);
}

/// A node with the given pull policy (and credentials) whose pull progress is recorded.
fn pulling_node(config: DockerConfig) -> (Node, Arc<Mutex<Vec<PullProgress>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let node = Node::from_runtime(|id| {
        DockerRuntime::new(DockerOptions {
            config,
            node_id: id.to_string(),
        })
        .with_progress(Arc::new(move |p| sink.lock().unwrap().push(p)))
    });
    (node, events)
}

fn with_policy(policy: &str) -> DockerConfig {
    DockerConfig {
        pull_policy: policy.into(),
        ..Default::default()
    }
}

fn job(image: &str) -> JobSpec {
    JobSpec::new(RuntimeKind::Docker, image)
        .function("run")
        .params(json!({"via": "registry"}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_reference_is_bad_input() {
    let node = Node::new();
    for bad in [
        "Hanzo/Echo:latest",
        "hanzo-test/echo:",
        "hanzo-test/echo@sha256:abc",
        "a b",
        "-x",
    ] {
        let out = node.run(JobSpec::new(RuntimeKind::Docker, bad)).await;
        let msg = expect_invalid(&out);
        assert!(msg.contains("invalid image reference"), "{bad}: {msg}");
        assert!(out.receipt.is_none(), "nothing ran, nothing is receipted");
    }
    assert!(containers(&format!("label=hanzo.node={}", node.id)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_under_never_is_bad_input() {
    let node = Node::new();
    let out = node
        .run(JobSpec::new(RuntimeKind::Docker, "hanzo-test/does-not-exist:1"))
        .await;
    let msg = expect_invalid(&out);
    assert!(
        msg.contains("hanzo-test/does-not-exist:1") && msg.contains("never"),
        "{msg}"
    );
    assert!(out.receipt.is_none());
    assert!(containers(&format!("label=hanzo.node={}", node.id)).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_fails_promptly() {
    let (node, _) = pulling_node(with_policy("if-not-present"));
    let name = format!("127.0.0.1:{}/hanzo/nowhere:1", free_port());
    let t = Instant::now();
    let out = node.run(job(&name)).await;
    // The machine's environment, not the job's reference: unavailable (exit 4).
    let msg = match &out.result {
        Err(e @ ComputeError::Unavailable(m)) => {
            assert_eq!(e.exit_code(), 4);
            m.clone()
        }
        other => panic!("expected unavailable, got {other:?}"),
    };
    assert!(msg.contains(&name) && msg.contains("cannot be reached"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(30), "took {:?}", t.elapsed());
    eprintln!("unreachable registry, after {:?}: {msg}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_policies_against_a_local_registry() {
    let v1 = image_id(echo());
    let storage = tempfile::tempdir().unwrap();
    let registry = Registry::start(storage.path(), None);
    let name = registry.name("hanzo/echo:1");
    let _cleanup = RepoGuard(registry.name("hanzo/echo"));
    push_as(ECHO, &name);
    let reference: ImageRef = name.parse().unwrap();

    // never: not present, so bad input, and nothing ran.
    let (never, never_events) = pulling_node(with_policy("never"));
    let out = never.run(job(&name)).await;
    let msg = expect_invalid(&out);
    assert!(msg.contains("never"), "{msg}");
    assert!(never_events.lock().unwrap().is_empty());

    // if-not-present: pulls it (with progress) and runs it.
    let (lazy, lazy_events) = pulling_node(with_policy("if-not-present"));
    let t = Instant::now();
    let out = lazy.run(job(&name)).await;
    assert_eq!(expect_ok(&out), json!({"via": "registry"}));
    let pulled = lazy_events.lock().unwrap().len();
    assert!(pulled > 0, "the progress callback saw no event");
    eprintln!(
        "if-not-present pull and run: {:?}, {pulled} progress events: {:?}",
        t.elapsed(),
        lazy_events
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.status.as_str())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        out.receipt.as_ref().unwrap().code_hash,
        v1,
        "same content, same image id"
    );
    // ... and does not pull it again.
    let out = lazy.run(job(&name)).await;
    expect_ok(&out);
    assert_eq!(
        lazy_events.lock().unwrap().len(),
        pulled,
        "pulled although present"
    );

    // Move the tag in the registry to a new image; the local tag stays on the old one.
    let scratch = docker(&["create", ECHO]);
    let _scratch = ContainerGuard(scratch.clone());
    docker(&[
        "commit",
        "--change",
        "LABEL hanzo.test.version=2",
        &scratch,
        &name,
    ]);
    docker(&["push", "--quiet", &name]);
    let v2 = image_id(&name);
    let _v2 = ImageGuard(vec![v2.clone()]);
    assert_ne!(v1, v2);
    docker(&["tag", ECHO, &name]);
    // if-not-present keeps what it has ...
    let out = lazy.run(job(&name)).await;
    assert_eq!(out.receipt.as_ref().unwrap().code_hash, v1);
    // ... always picks up the moved tag.
    let (eager, eager_events) = pulling_node(with_policy("always"));
    let out = eager.run(job(&name)).await;
    assert_eq!(expect_ok(&out), json!({"via": "registry"}));
    assert_eq!(
        out.receipt.as_ref().unwrap().code_hash,
        v2,
        "always re-pulled the moved tag"
    );
    assert!(!eager_events.lock().unwrap().is_empty());
    assert_eq!(image_id(&name), v2);

    // A digest-pinned reference runs exactly that image.
    let digest = docker(&["image", "inspect", "--format", "{{index .RepoDigests 0}}", &name]);
    assert!(
        digest.starts_with(&registry.name("hanzo/echo@sha256:")),
        "{digest}"
    );
    let out = never.run(job(&digest)).await;
    expect_ok(&out);
    assert_eq!(out.receipt.as_ref().unwrap().code_hash, v2);

    // The pull API directly: progress for every step, and ensure_image's answer is the id.
    let mut direct = Vec::new();
    eager.rt.pull(&reference, &mut |p| direct.push(p)).await.unwrap();
    assert!(
        direct
            .iter()
            .any(|p| p.status.contains("Digest") || p.status.contains("up to date")),
        "{direct:?}"
    );
    let id = eager
        .rt
        .ensure_image(&reference, PullPolicy::IfNotPresent, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(id, v2);

    // never, once the image is gone again: bad input.
    docker(&["rmi", &name]);
    let out = never.run(job(&name)).await;
    expect_invalid(&out);
    let err = never
        .rt
        .ensure_image(&reference, PullPolicy::Never, &mut |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    for node in [&never, &lazy, &eager] {
        assert!(containers(&format!("label=hanzo.node={}", node.id)).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_credentials_are_sent() {
    let v1 = image_id(echo());
    let storage = tempfile::tempdir().unwrap();
    // Fill the storage through an open registry, then serve it behind basic auth.
    let open = Registry::start(storage.path(), None);
    let _open_cleanup = RepoGuard(open.name("hanzo/echo"));
    push_as(ECHO, &open.name("hanzo/echo:1"));
    drop(open);
    let htpasswd = storage.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "hanzo", "s3cret-pass"])
        .output()
        .unwrap_or_else(|e| {
            panic!("htpasswd is missing ({e}); run `source scripts/docker.sh && ensure_docker`")
        });
    assert!(out.status.success());
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let secured = Registry::start(storage.path(), Some(&htpasswd));
    let name = secured.name("hanzo/echo:1");
    let _cleanup = RepoGuard(secured.name("hanzo/echo"));

    let registry = format!("127.0.0.1:{}", secured.port);
    // Without credentials, and with a wrong password: a clear refusal.
    for (username, password) in [("", ""), ("hanzo", "wrong")] {
        let (node, _) = pulling_node(DockerConfig {
            username: username.into(),
            password: password.into(),
            registry: registry.clone(),
            ..with_policy("if-not-present")
        });
        let out = node.run(job(&name)).await;
        let msg = expect_invalid(&out);
        eprintln!("pull as {username:?}: {msg}");
        assert!(msg.contains(&format!("cannot pull {name}")), "{msg}");
        assert!(
            [
                "no basic auth credentials",
                "unauthorized",
                "authentication required"
            ]
            .iter()
            .any(|why| msg.contains(why)),
            "the refusal does not say why: {msg}"
        );
    }
    // With them (the credentials are for this registry), it pulls and runs.
    let (node, events) = pulling_node(DockerConfig {
        username: "hanzo".into(),
        password: "s3cret-pass".into(),
        registry,
        ..with_policy("if-not-present")
    });
    let out = node.run(job(&name)).await;
    assert_eq!(expect_ok(&out), json!({"via": "registry"}));
    assert_eq!(out.receipt.as_ref().unwrap().code_hash, v1);
    assert!(!events.lock().unwrap().is_empty());
}

/// A listener on 127.0.0.1 posing as a registry: it answers every request with a 401
/// asking for basic auth, and records the `Authorization` header of each (empty when
/// none was sent). Stops when dropped.
struct FakeRegistry {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeRegistry {
    fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = conn.set_nonblocking(false);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                // The daemon tries TLS first on an insecure registry: not HTTP, hang up.
                if !text.starts_with("GET ") && !text.starts_with("HEAD ") {
                    continue;
                }
                let auth = text
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("authorization")
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                seen2.lock().unwrap().push(auth);
                let _ = conn.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"hanzo-test\"\r\n\
                      Docker-Distribution-API-Version: registry/2.0\r\nContent-Type: application/json\r\n\
                      Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                );
            }
        });
        FakeRegistry { port, seen, stop }
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The configured password goes to the configured registry only: a job naming an image
/// on another registry (here a listener on 127.0.0.1 that records what it is sent)
/// pulls it anonymously. The control: with that listener configured as the registry,
/// the same pull carries the credentials, so the listener would have seen them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_credentials_go_to_their_registry_only() {
    require_docker();
    let fake = FakeRegistry::start();
    let image = format!("127.0.0.1:{}/hanzo/tool:1", fake.port);
    let pull = |registry: &str| {
        let (node, _) = pulling_node(DockerConfig {
            username: "hanzo".into(),
            password: "s3cret-pass".into(),
            registry: registry.into(),
            ..with_policy("always")
        });
        let image = image.clone();
        async move {
            let out = node.run(job(&image)).await;
            expect_invalid(&out)
        }
    };
    for other in ["", "registry.example.com", "127.0.0.1:1"] {
        fake.seen.lock().unwrap().clear();
        let msg = pull(other).await;
        let seen = fake.seen.lock().unwrap().clone();
        assert!(
            !seen.is_empty(),
            "the daemon never asked the fake registry: {msg}"
        );
        assert!(
            seen.iter().all(|a| a.is_empty()),
            "credentials for {other:?} were sent to {image}: {seen:?}"
        );
    }
    fake.seen.lock().unwrap().clear();
    let msg = pull(&format!("127.0.0.1:{}", fake.port)).await;
    let seen = fake.seen.lock().unwrap().clone();
    // base64("hanzo:s3cret-pass")
    assert!(
        seen.iter().any(|a| a == "Basic aGFuem86czNjcmV0LXBhc3M="),
        "the control pull did not carry the credentials ({msg}): {seen:?}"
    );
}

/// An image id (`sha256:<hex>`, how a peer's pinned job runs) is looked up in the
/// daemon and never pulled, even under `always` and with a default registry that
/// would otherwise prefix it; `resolve_code` names the same id a run's receipt does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_id_runs_as_itself_and_is_never_pulled() {
    use hanzo_compute::Runtime;
    let hex = image_id(echo());
    let config = DockerConfig {
        pull_policy: "always".into(),
        registry: format!("127.0.0.1:{}", free_port()),
        ..Default::default()
    };
    let (node, events) = pulling_node(config.clone());
    let out = node.run(job(&format!("sha256:{hex}"))).await;
    assert_eq!(expect_ok(&out), json!({"via": "registry"}));
    assert_eq!(out.receipt.as_ref().unwrap().code_hash, hex);
    assert!(events.lock().unwrap().is_empty(), "an id was pulled");
    let rt = DockerRuntime::new(DockerOptions {
        config,
        node_id: unique_node_id(),
    });
    let spec = job(&format!("sha256:{hex}"));
    assert_eq!(rt.resolve_code(&spec).await.unwrap(), Some(hex.clone()));
    // An id the daemon does not hold is bad input, not a pull.
    let missing = format!("sha256:{}", "0".repeat(64));
    let out = node.run(job(&missing)).await;
    let msg = expect_invalid(&out);
    assert!(msg.contains("cannot be pulled"), "{msg}");
    assert!(events.lock().unwrap().is_empty(), "a missing id was pulled");
}
