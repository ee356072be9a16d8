//! MCP both ways (CONTRACTS §9), against parts nobody here wrote: the reference servers
//! `mcp-server-time` and `mcp-server-git` (PyPI) and `@modelcontextprotocol/server-everything`
//! (npm) as tools of the `mcp` runtime; the official Python SDK's client (`mcp` 2.x) and
//! `@modelcontextprotocol/inspector-cli` as clients of the node's own MCP server.
//! `scripts/mcp.sh` (`ensure_mcp`, run by the test command) installs them and says
//! where in HANZO_MCP_VENV and HANZO_MCP_NPM.
//!
//! The misbehaving server (`fixtures/hostile_mcp.py`, on the same SDK) is installed into
//! that venv as a console script, so it runs as a server from PyPI would.

use crate::server::{CAT, Server, free_port};
use crate::util::{Home, assert_one_error_line};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TOKEN: &str = "mcp-test-token";

/// The runtimes the served nodes here offer.
const RUNTIMES: (&str, &str) = ("HANZO_COMPUTE_ENABLED_RUNTIMES", "wasm,docker,python,mcp");

/// `[compute.mcp] install_roots` for the served nodes here: the venv, the npm prefix
/// and the interpreter the venv was made from.
fn install_roots() -> String {
    let venv = std::fs::canonicalize(venv()).unwrap();
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap();
    let home = cfg
        .lines()
        .find_map(|l| {
            l.split_once('=')
                .filter(|(k, _)| k.trim() == "home")
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap();
    let python = std::fs::canonicalize(home).unwrap();
    let prefix = python.parent().unwrap();
    let npm = std::fs::canonicalize(npm()).unwrap();
    format!("{},{},{}", venv.display(), npm.display(), prefix.display())
}

/// The settings of every served node here (and of `mcp serve`).
fn node_env() -> Vec<(&'static str, String)> {
    vec![
        (RUNTIMES.0, RUNTIMES.1.to_string()),
        ("HANZO_COMPUTE_MCP_INSTALL_ROOTS", install_roots()),
        ("HANZO_NETWORK_ENABLED", "false".to_string()),
    ]
}

fn start(h: &Home, extra: &[(&str, &str)]) -> Server {
    let env = node_env();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    Server::start(h, &all)
}

fn mcp_dir(var: &str, sub: &str) -> PathBuf {
    let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/hanzo-node/mcp")
            .join(sub)
    });
    assert!(
        dir.is_dir(),
        "{} is missing: run `source scripts/mcp.sh && ensure_mcp` (the test command does)",
        dir.display()
    );
    dir
}

/// The venv with the Python SDK and the reference servers.
fn venv() -> PathBuf {
    mcp_dir("HANZO_MCP_VENV", "venv")
}

fn venv_bin(name: &str) -> String {
    venv().join("bin").join(name).display().to_string()
}

/// The npm prefix with server-everything and inspector-cli.
fn npm() -> PathBuf {
    mcp_dir("HANZO_MCP_NPM", "npm")
}

/// The misbehaving server, installed into the venv once per test process.
fn hostile() -> String {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let venv = venv();
        let body = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all/fixtures/hostile_mcp.py"),
        )
        .unwrap();
        let script = format!("#!{}\n{body}", venv.join("bin/python").display());
        let dest = venv.join("bin/hanzo-test-hostile-mcp");
        // Written beside and renamed: test processes running at once never see half a file.
        let tmp = venv.join(format!("bin/.hanzo-test-hostile-mcp.{}", std::process::id()));
        std::fs::write(&tmp, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &dest).unwrap();
        dest.display().to_string()
    })
    .clone()
}

/// Runs the Python SDK client fixture; one JSON value per step.
pub(crate) fn sdk_client(home: &Home, args: &[&str]) -> Vec<Value> {
    let out = Command::new(venv().join("bin/python"))
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/all/fixtures/mcp_client.py"))
        .args(args)
        .env("HANZO_HOME", home.path("home"))
        .env_remove("HANZO_CONFIG")
        .envs(node_env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the SDK client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `hanzo-node run mcp SOURCE --function F --params P [extra...]`.
fn run_mcp(h: &Home, source: &str, function: &str, params: &Value, extra: &[&str]) -> crate::util::Run {
    let p = params.to_string();
    let mut args = vec!["run", "mcp", source, "--function", function, "--params", &p];
    args.extend_from_slice(extra);
    h.run(&args)
}

#[test]
fn the_time_server_from_pypi_runs_sandboxed_and_its_receipt_verifies() {
    let h = Home::new();
    let receipt = h.path("r.json").display().to_string();
    let source = format!("{} --local-timezone UTC", venv_bin("mcp-server-time"));
    let r = run_mcp(
        &h,
        &source,
        "get_current_time",
        &json!({"timezone": "Europe/Paris"}),
        &["--receipt", &receipt],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.json();
    // structuredContent: the server's own object.
    assert_eq!(out["timezone"], "Europe/Paris", "{out}");
    assert!(
        out["datetime"].as_str().is_some_and(|d| d.starts_with("20")),
        "{out}"
    );
    let v = h.run(&["receipt", "verify", &receipt]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    let rc: Value = serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    assert_eq!(rc["runtime"], "mcp");
    assert_eq!(rc["function"], "get_current_time");
    // The server is what it is: another argument list is another code hash.
    let r2 = run_mcp(
        &h,
        &venv_bin("mcp-server-time"),
        "get_current_time",
        &json!({"timezone": "Europe/Paris"}),
        &["--json"],
    );
    assert_eq!(r2.code, 0, "{}", r2.stderr);
    assert_ne!(r2.json()["receipt"]["code_hash"], rc["code_hash"]);
    assert_eq!(r2.json()["receipt"]["input_hash"], rc["input_hash"]);
}

#[test]
fn unknown_tools_tool_errors_and_bad_servers_have_the_contracts_exit_codes() {
    let h = Home::new();
    let time = venv_bin("mcp-server-time");
    // A tool the server does not have: 2, naming the ones it has.
    let r = run_mcp(&h, &time, "no_such_tool", &json!({}), &[]);
    assert_one_error_line(&r, 2, "get_current_time");
    // isError: a tool failure, 1, with the server's text.
    let r = run_mcp(
        &h,
        &time,
        "get_current_time",
        &json!({"timezone": "Mars/Olympus"}),
        &[],
    );
    assert_one_error_line(&r, 1, "Mars/Olympus");
    // Arguments are an object.
    let r = run_mcp(&h, &time, "get_current_time", &json!([1]), &[]);
    assert_one_error_line(&r, 2, "JSON object");
    // A command that is not there, and one that is no MCP server: 2.
    let r = run_mcp(&h, "no-such-mcp-server-anywhere", "x", &json!({}), &[]);
    assert_one_error_line(&r, 2, "not found");
    let r = run_mcp(&h, "/bin/true", "x", &json!({}), &[]);
    assert_one_error_line(&r, 2, "did not start an MCP server");
    // A URL nobody answers: 4.
    let url = format!("http://127.0.0.1:{}/mcp", free_port());
    let r = run_mcp(&h, &url, "x", &json!({}), &[]);
    assert_one_error_line(&r, 4, "127.0.0.1");
    let r = run_mcp(&h, "ftp://127.0.0.1/x", "x", &json!({}), &[]);
    assert_one_error_line(&r, 2, "ftp");
}

#[test]
fn the_git_server_reads_a_repository_the_test_made_and_nothing_else() {
    let h = Home::new();
    let repo = h.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("a.txt"), "hello\n").unwrap();
    git(&["add", "a.txt"]);
    git(&["commit", "-q", "-m", "the first commit the test made"]);
    let source = format!("{} --repository /repo", venv_bin("mcp-server-git"));
    let mount = format!("{}:/repo", repo.display());
    // The repository is the test's (root's), the server runs as nobody: git wants to be
    // told that is fine, through the environment the job grants.
    let env = [
        "--mount",
        &mount,
        "--env",
        "GIT_CONFIG_COUNT=1",
        "--env",
        "GIT_CONFIG_KEY_0=safe.directory",
        "--env",
        "GIT_CONFIG_VALUE_0=*",
    ];
    let r = run_mcp(&h, &source, "git_log", &json!({"repo_path": "/repo"}), &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("the first commit the test made"),
        "{}",
        r.stdout
    );
    // Without the mount, the sandbox has no such repository.
    let r = run_mcp(&h, &source, "git_log", &json!({"repo_path": "/repo"}), &env[2..]);
    assert_ne!(r.code, 0, "{}", r.stdout);
}

#[test]
fn server_everything_from_npm_over_stdio_and_streamable_http() {
    let h = Home::new();
    let bin = npm().join("node_modules/.bin/mcp-server-everything");
    let stdio = bin.display().to_string();
    let r = run_mcp(&h, &stdio, "echo", &json!({"message": "hi there"}), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // One text item that is not JSON: the content as it came.
    assert_eq!(
        r.json(),
        json!({"content": [{"type": "text", "text": "Echo: hi there"}]})
    );
    let r = run_mcp(&h, &stdio, "get-sum", &json!({"a": 2, "b": 40}), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("42"), "{}", r.stdout);

    // The same server over streamable HTTP, on a loopback port of the test's.
    let port = free_port();
    let mut server = Command::new(&bin)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = run_mcp(&h, &url, "get-sum", &json!({"a": 2, "b": 3}), &[]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("The sum of 2 and 3 is 5"), "{}", r.stdout);
}

#[test]
fn a_hostile_server_is_held_to_the_job() {
    let h = Home::new();
    let server = hostile();
    // Crashes in the middle of the call: a tool failure with its last words.
    let r = run_mcp(&h, &server, "crash", &json!({}), &[]);
    assert_one_error_line(&r, 1, "exited with code 3 during the call: about to crash");
    // Never answers: killed at the deadline. 6 s, so that the server's start (Python
    // importing the SDK, over a second, more on a loaded machine) ends well inside it
    // and the deadline is met by the call.
    let t = Instant::now();
    let r = run_mcp(&h, &server, "hang", &json!({}), &["--timeout-ms", "6000"]);
    assert_one_error_line(&r, 3, "6000 ms timeout");
    assert!(t.elapsed() < Duration::from_secs(25), "{:?}", t.elapsed());
    // An answer over the output cap, and garbage on the protocol's pipe: stopped.
    let cap = ["--max-output-bytes", "100000"];
    let r = run_mcp(&h, &server, "flood", &json!({"mib": 4}), &cap);
    assert_one_error_line(&r, 3, "output");
    let r = run_mcp(&h, &server, "garbage", &json!({"mib": 64}), &cap);
    assert_one_error_line(&r, 3, "output");
    // Memory: the job's limit holds the server.
    let r = run_mcp(
        &h,
        &server,
        "flood",
        &json!({"mib": 200}),
        &["--memory-mb", "128"],
    );
    assert_one_error_line(&r, 3, "memory");
    // No network without the grant: a listener on the host's loopback is not reachable.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let r = run_mcp(
        &h,
        &server,
        "connect",
        &json!({"host": "127.0.0.1", "port": port}),
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["connected"], false, "{}", r.stdout);
    // No host files but the system's and its own installation.
    let secret = h.file("secret.txt", "do not read");
    for path in [secret.as_str(), "/etc/hostname", "/root/.bashrc"] {
        let r = run_mcp(&h, &server, "read", &json!({"path": path}), &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.json()["read"], false, "{path}: {}", r.stdout);
    }
    // ... and its own installation it can read (the SDK it imports lives there).
    let own = venv().join("pyvenv.cfg").display().to_string();
    let r = run_mcp(&h, &server, "read", &json!({"path": own}), &[]);
    assert_eq!(r.json()["read"], true, "{}", r.stdout);
}

/// The node's API with the token.
fn serve(h: &Home) -> Server {
    start(h, &[("HANZO_NODE_API_TOKEN", TOKEN)])
}

fn call(s: &Server, tool: &str, params: &Value) -> Value {
    let r = s.req(
        "POST",
        &format!("/v1/tools/{tool}/call?wait=true"),
        params.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn add_tool(s: &Server, def: &Value) -> Value {
    let r = s.post_json("/v1/tools", def);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

#[test]
fn warm_servers_are_reused_and_a_broken_one_is_replaced() {
    let h = Home::new();
    let s = serve(&h);
    let server = hostile();
    for (name, function) in [("pid", "pid"), ("crash", "crash"), ("hang", "hang")] {
        add_tool(
            &s,
            &json!({"name": name, "runtime": "mcp", "source": server, "function": function,
                    "limits": {"timeout_ms": 3000}}),
        );
    }
    let first = call(&s, "pid", &json!({}));
    assert_eq!(first["status"], "succeeded", "{first}");
    let second = call(&s, "pid", &json!({}));
    // One process served both calls: the same pid, a count that went on.
    assert_eq!(second["output"]["pid"], first["output"]["pid"], "{second}");
    assert_eq!(second["output"]["calls"], 2, "{second}");
    // A crash takes that server; the next call gets a fresh one.
    let crashed = call(&s, "crash", &json!({}));
    assert_eq!(crashed["status"], "failed", "{crashed}");
    assert_eq!(call(&s, "pid", &json!({}))["output"]["calls"], 1);
    // So does a hang, at the deadline.
    let hung = call(&s, "hang", &json!({}));
    assert_eq!(hung["error"]["code"], "limit_exceeded", "{hung}");
    assert_eq!(call(&s, "pid", &json!({}))["output"]["calls"], 1);
}

#[test]
fn a_named_mcp_tool_takes_its_servers_schema_and_is_checked_before_it_runs() {
    let h = Home::new();
    let s = serve(&h);
    let url = s.url();
    let time = venv_bin("mcp-server-time");
    let add = h.run(&[
        "tool",
        "add",
        "tz",
        "mcp",
        &time,
        "--function",
        "get_current_time",
        "--json",
        "--node",
        &url,
        "--token",
        TOKEN,
    ]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    let t = add.json();
    assert_eq!(t["schema"]["required"], json!(["timezone"]), "{t}");
    assert_eq!(t["description"], "Get current time in a specific timezone");
    assert_eq!(t["output_schema"]["type"], "object", "{t}");
    // A call breaking the schema: 400 before anything runs (exit 2 on the CLI).
    let bad = h.run(&[
        "tool",
        "call",
        "tz",
        "--params",
        r#"{"timezone": 5}"#,
        "--wait",
        "--node",
        &url,
        "--token",
        TOKEN,
    ]);
    assert_one_error_line(&bad, 2, "timezone");
    let good = h.run(&[
        "tool",
        "call",
        "tz",
        "--params",
        r#"{"timezone": "Asia/Tokyo"}"#,
        "--wait",
        "--node",
        &url,
        "--token",
        TOKEN,
    ]);
    assert_eq!(good.code, 0, "{}", good.stderr);
    assert_eq!(good.json()["timezone"], "Asia/Tokyo");
    // A tool the server does not have is refused at registration.
    let r = s.post_json(
        "/v1/tools",
        &json!({"name": "nope", "runtime": "mcp", "source": time, "function": "no_such_tool"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("no_such_tool"), "{}", r.text());
}

#[test]
fn tool_import_registers_every_tool_of_a_server_under_a_prefix() {
    let h = Home::new();
    let s = serve(&h);
    let url = s.url();
    let everything = npm()
        .join("node_modules/.bin/mcp-server-everything")
        .display()
        .to_string();
    let r = h.run(&[
        "tool",
        "import",
        "ev-",
        "mcp",
        &everything,
        "--json",
        "--node",
        &url,
        "--token",
        TOKEN,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let tools = r.json()["tools"].as_array().unwrap().clone();
    assert!(tools.len() >= 5, "{tools:?}");
    let sum = tools
        .iter()
        .find(|t| t["name"] == "ev-get-sum")
        .expect("get-sum imported");
    assert_eq!(sum["function"], "get-sum");
    assert!(sum["schema"]["properties"]["a"].is_object(), "{sum}");
    // Callable, its schema checked, like any named tool.
    let out = call(&s, "ev-get-sum", &json!({"a": 20, "b": 22}));
    assert!(out["output"].to_string().contains("42"), "{out}");
    let bad = s.req("POST", "/v1/tools/ev-get-sum/call", br#"{"a": "x"}"#);
    assert_eq!(bad.status, 400, "{}", bad.text());
    // Only MCP servers list their tools; a prefix must make valid names.
    assert_one_error_line(
        &h.run(&[
            "tool", "import", "x-", "wasm", "a.wasm", "--node", &url, "--token", TOKEN,
        ]),
        2,
        "import takes an mcp server",
    );
    assert_one_error_line(
        &h.run(&[
            "tool",
            "import",
            "Bad",
            "mcp",
            &everything,
            "--node",
            &url,
            "--token",
            TOKEN,
        ]),
        2,
        "PREFIX",
    );
}

#[test]
fn a_serving_node_starts_only_servers_installed_where_the_operator_said() {
    let h = Home::new();
    let s = serve(&h);
    // A copy of the time server outside the install roots (a script, its venv's
    // interpreter named in its #! line).
    let copy = h.file(
        "server",
        &std::fs::read_to_string(venv_bin("mcp-server-time")).unwrap(),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let job = json!({"runtime": "mcp", "source": copy, "function": "get_current_time", "params": {"timezone": "UTC"}});
    let r = s.req("POST", "/v1/jobs?wait=true", job.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "invalid_input", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("install_roots"),
        "{v}"
    );
    // The operator at the shell is not bound by them.
    let r = run_mcp(&h, &copy, "get_current_time", &json!({"timezone": "UTC"}), &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The installed one runs.
    let job = json!({"runtime": "mcp", "source": venv_bin("mcp-server-time"), "function": "get_current_time",
                     "params": {"timezone": "UTC"}});
    let r = s.req("POST", "/v1/jobs?wait=true", job.to_string().as_bytes());
    assert_eq!(r.json()["status"], "succeeded", "{}", r.text());
}

#[test]
fn api_clients_may_name_only_the_mcp_urls_the_operator_allows() {
    let h = Home::new();
    let port = free_port();
    let allowed = format!("http://127.0.0.1:{port}/mcp");
    let s = start(
        &h,
        &[
            ("HANZO_NODE_API_TOKEN", TOKEN),
            ("HANZO_COMPUTE_MCP_ALLOWED_URLS", &allowed),
        ],
    );
    for url in [
        "http://169.254.169.254/latest/meta-data".to_string(),
        format!("http://127.0.0.1:{port}/mcpx"),
        format!("http://127.0.0.1:{}/mcp", port + 1),
    ] {
        let job = json!({"runtime": "mcp", "source": url, "function": "x"});
        let r = s.post_json("/v1/jobs", &job);
        assert_eq!(r.status, 403, "{url}: {}", r.text());
        let tool = json!({"name": "t", "runtime": "mcp", "source": url, "function": "x", "schema": {}});
        assert_eq!(s.post_json("/v1/tools", &tool).status, 403, "{url}");
    }
    // The allowed one is taken (and fails at run time here: nothing listens).
    let job = json!({"runtime": "mcp", "source": allowed, "function": "x"});
    let r = s.req("POST", "/v1/jobs?wait=true", job.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "unavailable", "{}", r.text());
}

/// A Docker image whose tool echoes its params (busybox's `cat`), built locally.
fn cat_image() -> &'static str {
    static IMAGE: OnceLock<()> = OnceLock::new();
    const NAME: &str = "hanzo-test/mcp-cat:latest";
    IMAGE.get_or_init(|| {
        let base = hanzo_testkit::docker::busybox_image();
        let mut child = Command::new("docker")
            .args(["build", "-q", "-t", NAME, "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("FROM {base}\nCMD [\"cat\"]\n").as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "docker build {NAME}");
    });
    NAME
}

/// Registers a WASM, a container and a script tool on `s`.
fn three_tools(h: &Home, s: &Server) {
    let m = s.req("POST", "/v1/modules", CAT.as_bytes());
    assert_eq!(m.status, 201, "{}", m.text());
    let object = json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
    add_tool(
        s,
        &json!({"name": "wasm-cat", "runtime": "wasm", "source": m.json()["source"], "description": "echoes, in WASM",
                "schema": object}),
    );
    add_tool(
        s,
        &json!({"name": "docker-cat", "runtime": "docker", "source": cat_image(), "description": "echoes, in a container",
                "schema": object}),
    );
    let script = h.file(
        "shout.py",
        "def run(p):\n    return {\"shout\": p[\"text\"].upper()}\n",
    );
    add_tool(
        s,
        &json!({"name": "py-shout", "runtime": "python", "source": script, "description": "shouts, in Python",
                "schema": object}),
    );
}

#[test]
fn the_python_sdk_lists_and_calls_wasm_container_and_script_tools_over_http() {
    let h = Home::new();
    let s = serve(&h);
    three_tools(&h, &s);
    let url = format!("{}/mcp", s.url());
    let steps = json!([
        {"list": true},
        {"call": "wasm-cat", "args": {"text": "a"}},
        {"call": "docker-cat", "args": {"text": "b"}},
        {"call": "py-shout", "args": {"text": "c"}},
        {"call": "py-shout", "args": {"text": 3}},
        {"call": "no-such-tool", "args": {}},
    ]);
    let out = sdk_client(&h, &["http", &url, TOKEN, &steps.to_string()]);
    let names: Vec<&str> = out[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["docker-cat", "py-shout", "wasm-cat"]);
    assert_eq!(out[0]["tools"][2]["inputSchema"]["required"], json!(["text"]));
    assert_eq!(out[0]["tools"][2]["description"], "echoes, in WASM");
    assert_eq!(
        out[1]["result"]["structuredContent"],
        json!({"text": "a"}),
        "{}",
        out[1]
    );
    assert_eq!(
        out[2]["result"]["structuredContent"],
        json!({"text": "b"}),
        "{}",
        out[2]
    );
    assert_eq!(
        out[3]["result"]["structuredContent"],
        json!({"shout": "C"}),
        "{}",
        out[3]
    );
    // A text item with the same JSON, for clients that read only text.
    assert_eq!(out[3]["result"]["content"][0]["text"], r#"{"shout":"C"}"#);
    // Arguments breaking the schema: a tool error the model can read, nothing run.
    assert_eq!(out[4]["result"]["isError"], true, "{}", out[4]);
    assert!(
        out[4]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("invalid_params")
    );
    assert!(
        out[5]["error"].as_str().unwrap().contains("no-such-tool"),
        "{}",
        out[5]
    );
    // Each call was a job with a receipt that verifies.
    let meta = &out[3]["result"]["_meta"];
    let id = meta["hanzo-node/job_id"].as_str().unwrap();
    assert_eq!(s.job(id)["status"], "succeeded");
    let receipt = h.file("r.json", &meta["hanzo-node/receipt"].to_string());
    let v = h.run(&["receipt", "verify", &receipt]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    // Without the token, nothing.
    let r = s
        .try_req_as(
            "POST",
            "/mcp",
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            None,
        )
        .unwrap();
    assert_eq!(r.status, 401);
}

#[test]
fn progress_while_a_long_call_runs_and_cancellation_cancels_the_job() {
    let h = Home::new();
    let s = serve(&h);
    let server = hostile();
    add_tool(
        &s,
        &json!({"name": "hang", "runtime": "mcp", "source": server, "function": "hang", "limits": {"timeout_ms": 60000}}),
    );
    let url = format!("{}/mcp", s.url());
    let steps = json!([{"call": "hang", "progress": true, "cancel_after": 3.5}]);
    let out = sdk_client(&h, &["http", &url, TOKEN, &steps.to_string()]);
    assert_eq!(out[0]["cancelled"], true);
    // The job the call was is cancelled, well before its 60 s timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = s.req("GET", "/v1/jobs", b"").json();
        let job = &page["jobs"][0];
        if job["status"] == "cancelled" {
            break;
        }
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Progress: a call of a few seconds reports every second.
    add_tool(
        &s,
        &json!({"name": "slow", "runtime": "mcp", "source": server, "function": "sleep", "schema": {"type": "object"}}),
    );
    let steps = json!([{"call": "slow", "args": {"seconds": 3}, "progress": true}]);
    let out = sdk_client(&h, &["http", &url, TOKEN, &steps.to_string()]);
    assert_eq!(out[0]["result"]["structuredContent"]["slept"], 3, "{}", out[0]);
    let progress = out[0]["progress"].as_array().unwrap();
    assert!(progress.len() >= 2, "{}", out[0]);
    assert!(
        progress[1]["message"].as_str().unwrap().contains("running"),
        "{}",
        out[0]
    );
}

#[test]
fn mcp_serve_on_stdio_relays_to_a_serving_node_and_runs_calls_itself_without_one() {
    let h = Home::new();
    let bin = env!("CARGO_BIN_EXE_hanzo-node");
    let steps = json!([{"list": true}, {"call": "py-shout", "args": {"text": "x"}}]).to_string();
    {
        // The token the node makes (no HANZO_NODE_API_TOKEN): `mcp serve` finds it in
        // the data directory, with the node's address.
        let s = start(&h, &[]);
        three_tools(&h, &s);
        let out = sdk_client(&h, &["stdio", &format!("{bin} mcp serve"), &steps]);
        assert_eq!(out[0]["tools"].as_array().unwrap().len(), 3, "{}", out[0]);
        let id = out[1]["result"]["_meta"]["hanzo-node/job_id"]
            .as_str()
            .unwrap()
            .to_string();
        // A job of the serving node.
        assert_eq!(s.job(&id)["output"], json!({"shout": "X"}));
    }
    // No node serving: `mcp serve` opens the job store itself.
    let out = sdk_client(&h, &["stdio", &format!("{bin} mcp serve"), &steps]);
    assert_eq!(
        out[1]["result"]["structuredContent"],
        json!({"shout": "X"}),
        "{}",
        out[1]
    );
    let id = out[1]["result"]["_meta"]["hanzo-node/job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let s = serve(&h);
    assert_eq!(s.job(&id)["status"], "succeeded");
}

#[test]
fn inspector_cli_lists_and_calls_the_nodes_tools() {
    let h = Home::new();
    {
        let s = serve(&h);
        three_tools(&h, &s);
    }
    // inspector-cli 1.0 reads its own package.json relative to the working directory.
    let build = npm().join("node_modules/@modelcontextprotocol/inspector-cli/build");
    let inspector = |args: &[&str]| {
        let out = Command::new("node")
            .arg("index.js")
            .arg(env!("CARGO_BIN_EXE_hanzo-node"))
            .args(["mcp", "serve"])
            .args(args)
            .current_dir(&build)
            .env("HANZO_HOME", h.path("home"))
            .envs(node_env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "inspector {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let list = inspector(&["--method", "tools/list"]);
    assert_eq!(list["tools"].as_array().unwrap().len(), 3, "{list}");
    let called = inspector(&[
        "--method",
        "tools/call",
        "--tool-name",
        "wasm-cat",
        "--tool-arg",
        "text=hello",
    ]);
    assert_eq!(called["structuredContent"], json!({"text": "hello"}), "{called}");
}
