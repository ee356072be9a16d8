//! What API clients may ask of a node,
//! through the real `hanzo-node serve` and the real CLI: mounts only under the
//! operator's `[compute] mount_roots`, resolved without following symlinks, never the
//! node's data dir or a container engine; Docker as root only with `allow_root`; a
//! ceiling on every limit (400 naming it over the API, exit 2 on the CLI, no panic);
//! relative mounts on the CLI meaning the shell's directory.

use crate::server::{CAT, Server, error_of};
use crate::util::{Home, assert_one_error_line};
use hanzo_testkit::docker::{SCRIPT_VAR, busybox_image};
use serde_json::{Value, json};
use std::os::unix::fs::symlink;
use std::path::PathBuf;

const MAX: &str = "18446744073709551615";

fn post(s: &Server, path: &str, v: &Value) -> (u16, Value) {
    let r = s.post_json(path, v);
    let body = if r.body.is_empty() { Value::Null } else { r.json() };
    (r.status, body)
}

fn jobs(s: &Server) -> usize {
    s.req("GET", "/v1/jobs", b"").json()["jobs"]
        .as_array()
        .unwrap()
        .len()
}

/// A mount root inside the test's home: `in/` (a directory with a file), `out` (a
/// symlink to the host's /etc, as a job holding the root writable could plant), and
/// the node's data directory (`home/`) inside the root too.
struct Roots {
    home: Home,
    root: PathBuf,
}

impl Roots {
    fn new() -> Roots {
        let home = Home::new();
        let root = home.dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("in/sub")).unwrap();
        std::fs::write(root.join("in/n"), "42").unwrap();
        symlink("/etc", root.join("out")).unwrap();
        std::fs::create_dir_all(root.join("home")).unwrap();
        Roots { home, root }
    }

    fn at(&self, p: &str) -> String {
        self.root.join(p).display().to_string()
    }
}

fn with_mount(mount: Value) -> Value {
    json!({"runtime": "wasm", "source": "sha256:".to_string() + &"0".repeat(64), "mounts": [mount]})
}

#[test]
fn api_jobs_mount_only_under_the_operators_roots_and_never_through_a_symlink() {
    let r = Roots::new();
    let root = r.root.display().to_string();
    let s = Server::start(&r.home, &[("HANZO_COMPUTE_MOUNT_ROOTS", root.as_str())]);
    let source = s.module(CAT);
    let spec = |mount: Value| {
        let mut v = with_mount(mount);
        v["source"] = json!(source);
        v
    };
    let refused = |mount: Value, status: u16, needle: &str| {
        let (st, e) = post(&s, "/v1/jobs", &spec(mount.clone()));
        assert_eq!(st, status, "{mount}: {e}");
        let (code, msg) = error_of(&e);
        assert_eq!(
            code,
            if status == 403 {
                "forbidden"
            } else {
                "invalid_input"
            },
            "{e}"
        );
        assert!(msg.starts_with("mounts[0]: "), "{msg}");
        assert!(msg.contains(needle), "{mount}: {msg}");
        assert!(!msg.contains('\n'));
    };
    // Outside every root; the node's own data; a container engine.
    refused(json!("/etc:/etc"), 403, "mount roots");
    refused(
        json!({"host": "/", "guest": "/host", "writable": true}),
        403,
        "mount roots",
    );
    refused(json!(format!("{}:/d:rw", r.at("home"))), 403, "data directory");
    refused(json!(format!("{}:/d", r.at("home/keys"))), 403, "data directory");
    refused(json!(format!("{root}:/d")), 403, "data directory");
    refused(json!("/var/run/docker.sock:/var/run/docker.sock:rw"), 403, "");
    // A planted symlink is not followed, not even to a path under the root.
    refused(json!(format!("{}:/d:rw", r.at("out"))), 400, "symbolic link");
    refused(json!(format!("{}:/d", r.at("out/passwd"))), 400, "symbolic link");
    symlink(r.root.join("in"), r.root.join("in-link")).unwrap();
    refused(json!(format!("{}:/d", r.at("in-link"))), 400, "symbolic link");
    // Relative paths and `..` mean nothing to a node.
    refused(json!("in:/d"), 400, "relative");
    refused(json!(format!("{}:/d", r.at("in/../out"))), 400, "'..'");
    refused(json!(format!("{}:/d", r.at("missing"))), 400, "does not exist");
    assert_eq!(jobs(&s), 0, "a refused job was stored");

    // Under the root: accepted, and stored as the canonical path that was checked.
    let (st, ack) = post(&s, "/v1/jobs", &spec(json!(format!("{}/./in/sub/:/data", root))));
    assert_eq!(st, 202, "{ack}");
    let job = s.job(ack["id"].as_str().unwrap());
    assert_eq!(
        job["spec"]["mounts"][0],
        format!("{}:/data:ro", r.at("in/sub")),
        "{job}"
    );

    // A node with no mount roots (the default) mounts nothing for API clients.
    drop(s);
    let h = Home::new();
    let s = Server::start(&h, &[]);
    let source = s.module(CAT);
    let mut v = with_mount(json!(format!("{}:/data", r.at("in"))));
    v["source"] = json!(source);
    let (st, e) = post(&s, "/v1/jobs", &v);
    assert_eq!(st, 403, "{e}");
    assert!(error_of(&e).1.contains("none are set"), "{e}");
}

#[test]
fn the_cli_client_sends_absolute_mounts() {
    let r = Roots::new();
    let root = r.root.display().to_string();
    let s = Server::start(&r.home, &[("HANZO_COMPUTE_MOUNT_ROOTS", root.as_str())]);
    let cat = r.home.file("cat.wat", CAT);
    let url = s.url();
    let args = [
        "job",
        "submit",
        "wasm",
        &cat,
        "--mount",
        "sub:/data",
        "--mount",
        "../in/sub:/sub",
        "--node",
        &url,
    ];
    let run = r.home.run_with(&args, |c| {
        c.current_dir(r.root.join("in"));
    });
    assert_eq!(run.code, 0, "{}", run.stderr);
    let job = s.job(run.stdout.trim());
    // Taken in the shell's directory, `..` as the shell takes it; then resolved by the
    // node under its root.
    let want = r.at("in/sub");
    assert_eq!(
        job["spec"]["mounts"],
        json!([format!("{want}:/data:ro"), format!("{want}:/sub:ro")]),
        "{job}"
    );
}

#[test]
fn api_limits_above_a_ceiling_are_refused_naming_the_limit() {
    let h = Home::new();
    let s = Server::start(&h, &[("HANZO_COMPUTE_LIMITS_MAX_TIMEOUT_MS", "60000")]);
    let source = s.module(CAT);
    let limits: [(&str, Value); 7] = [
        ("timeout_ms", json!(u64::MAX)),
        ("memory_mb", json!(u64::MAX)),
        ("disk_mb", json!(u64::MAX)),
        ("fuel", json!(u64::MAX)),
        ("cpu_shares", json!(u32::MAX)),
        ("network_bandwidth_mbps", json!(u32::MAX)),
        ("max_output_bytes", json!(u64::MAX)),
    ];
    for (name, value) in limits {
        let spec = json!({"runtime": "wasm", "source": source, "limits": {name: value}});
        for path in ["/v1/jobs", "/v1/jobs/execute"] {
            let (st, e) = post(&s, path, &spec);
            assert_eq!(st, 400, "{name}: {e}");
            let (code, msg) = error_of(&e);
            assert_eq!(code, "invalid_input");
            assert!(msg.starts_with(&format!("limits.{name} ")), "{msg}");
            assert!(msg.contains("ceiling"), "{msg}");
        }
        // A named tool: refused at registration.
        let tool = json!({"name": "t", "runtime": "wasm", "source": source, "limits": {name: value}});
        let (st, e) = post(&s, "/v1/tools", &tool);
        assert_eq!(st, 400, "{name}: {e}");
        assert!(error_of(&e).1.starts_with(&format!("limits.{name} ")), "{e}");
    }
    // The configured ceiling, exactly.
    let at = |ms: u64| json!({"runtime": "wasm", "source": source, "limits": {"timeout_ms": ms}});
    let (st, e) = post(&s, "/v1/jobs", &at(60_001));
    assert_eq!(st, 400, "{e}");
    assert!(error_of(&e).1.contains("max_timeout_ms"), "{e}");
    let (st, e) = post(&s, "/v1/jobs?wait=true", &at(60_000));
    assert_eq!(st, 200, "{e}");
    assert_eq!(e["status"], "succeeded", "{e}");
    assert_eq!(jobs(&s), 1);
    // Services are held to the same ceilings, and to allow_root.
    let svc = json!({"name": "web", "image": "busybox", "limits": {"disk_mb": u64::MAX}});
    let (st, e) = post(&s, "/v1/services", &svc);
    assert_eq!(st, 400, "{e}");
    assert!(error_of(&e).1.starts_with("limits.disk_mb "), "{e}");
    let svc = json!({"name": "web", "image": "busybox", "user": "0:0"});
    let (st, e) = post(&s, "/v1/services", &svc);
    assert_eq!(st, 403, "{e}");
    assert!(error_of(&e).1.starts_with("user: "), "{e}");
}

#[test]
fn cli_limits_above_a_ceiling_are_exit_2_without_a_panic() {
    let h = Home::new();
    let m = h.file("cat.wat", CAT);
    for flag in [
        "--timeout-ms",
        "--memory-mb",
        "--disk-mb",
        "--fuel",
        "--max-output-bytes",
    ] {
        let r = h.run(&["run", "wasm", &m, flag, MAX]);
        let name = flag.trim_start_matches("--").replace('-', "_");
        assert_one_error_line(&r, 2, &format!("{name} {MAX} is above this node's ceiling"));
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    let r = h.run(&["run", "wasm", &m, "--cpu-shares", "4294967295"]);
    assert_one_error_line(&r, 2, "cpu_shares 4294967295 is above");
    // The operator's own ceiling, from the environment.
    let r = h.run_with(&["run", "wasm", &m, "--timeout-ms", "2000"], |c| {
        c.env("HANZO_COMPUTE_LIMITS_MAX_TIMEOUT_MS", "1000");
    });
    assert_one_error_line(&r, 2, "[compute.limits] max_timeout_ms");
    let r = h.run(&["run", "wasm", &m, "--timeout-ms", "2000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// A TypeScript tool that returns the text of `/data/n`.
const READ_N: &str = r#"export function run() { return Deno.readTextFileSync("/data/n"); }
"#;

#[test]
fn a_relative_cli_mount_means_the_shells_directory() {
    let r = Roots::new();
    let tool = r.home.file("read.ts", READ_N);
    let run = r
        .home
        .run_with(&["run", "deno", &tool, "--mount", "in:/data"], |c| {
            c.current_dir(&r.root);
        });
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "\"42\"");
    let run = r
        .home
        .run_with(&["run", "deno", &tool, "--mount", "missing:/data"], |c| {
            c.current_dir(&r.root);
        });
    assert_one_error_line(&run, 2, "missing");
}

/// Docker through the API: `user: 0` (or a name, or group 0) only with
/// `[compute.docker] allow_root`; a mount under a root is bound as resolved; and the CLI's
/// 2^64-1 ms timeout (which panicked computing the container's deadline) is exit 2.
#[test]
fn docker_root_and_mounts_over_the_api() {
    let image = busybox_image();
    let r = Roots::new();
    let root = r.root.display().to_string();
    let env = [
        ("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm,docker"),
        ("HANZO_COMPUTE_DOCKER_PULL_POLICY", "never"),
        ("HANZO_COMPUTE_MOUNT_ROOTS", root.as_str()),
    ];
    let script = r#"echo "{\"uid\": $(id -u), \"n\": $(cat /data/n)}""#;
    let job = |user: Option<&str>| {
        let mut v = json!({
            "runtime": "docker", "source": image, "env": {SCRIPT_VAR: script},
            "mounts": [format!("{}:/data", r.at("in"))],
        });
        if let Some(u) = user {
            v["user"] = json!(u);
        }
        v
    };
    let s = Server::start(&r.home, &env);
    for user in ["0", "0:0", "root", "1000:0", "toor"] {
        let (st, e) = post(&s, "/v1/jobs", &job(Some(user)));
        assert_eq!(st, 403, "{user}: {e}");
        assert!(error_of(&e).1.contains("allow_root"), "{e}");
    }
    let (st, done) = post(&s, "/v1/jobs/execute", &job(None));
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["output"], json!({"uid": 65534, "n": 42}), "{done}");
    let (st, done) = post(&s, "/v1/jobs/execute", &job(Some("1000:1000")));
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["output"]["uid"], 1000, "{done}");
    drop(s);

    let mut allowed = env.to_vec();
    allowed.push(("HANZO_COMPUTE_DOCKER_ALLOW_ROOT", "true"));
    let s = Server::start(&r.home, &allowed);
    let (st, done) = post(&s, "/v1/jobs/execute", &job(Some("0")));
    assert_eq!(st, 200, "{done}");
    assert_eq!(done["output"], json!({"uid": 0, "n": 42}), "{done}");
    drop(s);

    let run = r
        .home
        .run_with(&["run", "docker", image, "--timeout-ms", MAX], |c| {
            c.env("HANZO_COMPUTE_DOCKER_PULL_POLICY", "never");
        });
    assert_one_error_line(&run, 2, "timeout_ms");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

#[test]
fn a_job_that_names_no_output_cap_gets_the_nodes_lower_one() {
    // An operator who lowers [compute] max_output_bytes below the contract's 16 MiB:
    // jobs and tools that name no cap get the node's, and are not refused for a cap
    // their client never asked for; a named cap is held to the ceiling as given.
    let h = Home::new();
    let s = Server::start(&h, &[("HANZO_COMPUTE_MAX_OUTPUT_BYTES", "64")]);
    let m = s.req("POST", "/v1/modules", CAT.as_bytes()).json();
    let (st, job) = post(
        &s,
        "/v1/jobs/execute",
        &json!({"runtime": "wasm", "source": m["source"], "params": {"a": 1}}),
    );
    assert_eq!((st, &job["status"]), (200, &json!("succeeded")), "{job}");
    assert_eq!(job["output"], json!({"a": 1}));
    // Past the node's cap: the output limit, enforced.
    let big = "x".repeat(100);
    let (_, job) = post(
        &s,
        "/v1/jobs/execute",
        &json!({"runtime": "wasm", "source": m["source"], "params": {"a": big}}),
    );
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "limit_exceeded", "{job}");
    // Named above the ceiling: refused, naming it.
    let (st, e) = post(
        &s,
        "/v1/jobs",
        &json!({"runtime": "wasm", "source": m["source"], "limits": {"max_output_bytes": 65}}),
    );
    assert_eq!(st, 400, "{e}");
    assert!(error_of(&e).1.contains("max_output_bytes"), "{e}");
    // A tool registered without a cap stores the node's.
    let (st, tool) = post(
        &s,
        "/v1/tools",
        &json!({"name": "cat", "runtime": "wasm", "source": m["source"]}),
    );
    assert_eq!(st, 201, "{tool}");
    assert_eq!(tool["limits"]["max_output_bytes"], 64, "{tool}");
    // The CLI client names no cap unless asked.
    let cat = h.file("cat.wat", CAT);
    let url = s.url();
    let r = h.run(&[
        "job",
        "submit",
        "wasm",
        &cat,
        "--params",
        r#"{"b":2}"#,
        "--wait",
        "--node",
        &url,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json(), json!({"b": 2}));
    let r = h.run(&["tool", "add", "cat2", "wasm", &cat, "--json", "--node", &url]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["limits"]["max_output_bytes"], 64);
    let r = h.run(&[
        "job",
        "submit",
        "wasm",
        &cat,
        "--max-output-bytes",
        "65",
        "--node",
        &url,
    ]);
    assert_one_error_line(&r, 2, "max_output_bytes");
}
