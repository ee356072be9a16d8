//! Flags, output shapes and exit codes (CONTRACTS §3).

use crate::util::*;

#[test]
fn a_tool_prints_its_output_on_one_line() {
    let h = Home::new();
    let m = h.file("t.wat", &returning(r#"{"ok":{"answer":42,"list":[1,2]}}"#));
    let r = h.run(&["run", "wasm", &m, "--params", r#"{"q":"life"}"#]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "{\"answer\":42,\"list\":[1,2]}\n");
}

#[test]
fn json_prints_output_usage_and_receipt() {
    let h = Home::new();
    let m = h.file("t.wat", &returning(r#"{"ok":"hi"}"#));
    let r = h.run(&["run", "wasm", &m, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    assert_eq!(v["output"], "hi");
    assert!(v["usage"]["wall_time_ms"].as_f64().unwrap() > 0.0);
    // Fuel is counted for the jobs that set a fuel limit ([compute.wasm] fuel_metering).
    assert!(v["usage"]["fuel_consumed"].is_null(), "{v}");
    let metered = h.run(&["run", "wasm", &m, "--json", "--fuel", "1000000"]).json();
    assert!(metered["usage"]["fuel_consumed"].as_u64().is_some(), "{metered}");
    for field in [
        "runtime",
        "code_hash",
        "input_hash",
        "output_hash",
        "usage",
        "limits",
        "started_at",
        "finished_at",
        "node_id",
        "signature",
    ] {
        assert!(!v["receipt"][field].is_null(), "receipt lacks {field}");
    }
}

#[test]
fn params_from_a_file() {
    let h = Home::new();
    let m = h.file("t.wat", &returning(r#"{"ok":1}"#));
    let p = h.file("params.json", r#"{"from": "file"}"#);
    let r = h.run(&["run", "wasm", &m, "--params-file", &p, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let expected = hanzo_compute::receipt::hash_json(&serde_json::json!({"from": "file"}));
    assert_eq!(r.json()["receipt"]["input_hash"], expected);
}

#[test]
fn bad_input_is_exit_2_with_one_error_line() {
    let h = Home::new();
    let m = h.file("t.wat", &returning(r#"{"ok":1}"#));
    let not_wasm = h.file("tool.wasm", "just text");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["run", "wasm", &m, "--params", "{not json"],
            "--params is not valid JSON",
        ),
        (
            vec!["run", "wasm", &m, "--params-file", "/nonexistent.json"],
            "cannot read --params-file",
        ),
        (vec!["run", "wasm", "/nonexistent/tool.wasm"], "cannot read"),
        (vec!["run", "wasm", &not_wasm], "not a WebAssembly module"),
        (vec!["run", "lua", &m], "unknown runtime 'lua'"),
        (
            vec!["run", "wasm", &m, "--function", "nope"],
            "no tool function 'nope'",
        ),
        (vec!["run", "wasm", &m, "--mount", "relative"], "invalid mount"),
        (vec!["run", "wasm", &m, "--env", "NOVALUE"], "invalid env"),
        (vec!["run", "wasm", &m, "--network", "some"], "invalid network"),
        (vec!["run", "wasm", &m, "--memory-mb", "lots"], "invalid value"),
        (vec!["run", "wasm", &m, "--network", "full"], "no network"),
        (
            vec!["run", "native", "builtin:echo", "--deterministic"],
            "the native runtime has no deterministic profile",
        ),
        (vec!["run", "wasm"], "required"),
        (vec!["frobnicate"], "unrecognized subcommand"),
    ];
    for (args, needle) in cases {
        let r = h.run(&args);
        assert_one_error_line(&r, 2, needle);
        assert!(r.stdout.is_empty(), "{args:?} printed {}", r.stdout);
        assert!(!r.stderr.contains("panicked"), "{args:?} panicked");
    }
}

#[test]
fn tool_failure_is_exit_1() {
    let h = Home::new();
    let m = h.file("t.wat", &returning(r#"{"error":"city not found"}"#));
    assert_one_error_line(&h.run(&["run", "wasm", &m]), 1, "city not found");
}

#[test]
fn unbuilt_disabled_or_unreachable_runtimes_are_exit_4() {
    let h = Home::new();
    let script = h.file("tool.ts", "export function run(p) { return p }");
    let r = h.run_with(&["run", "deno", &script], |c| {
        c.env("HANZO_COMPUTE_DENO_BINARY", "/nonexistent/deno");
    });
    assert_one_error_line(&r, 4, "deno");
    let r = h.run_with(&["run", "go", "."], |c| {
        c.env("HANZO_COMPUTE_GO_BINARY", "/nonexistent/go");
    });
    assert_one_error_line(&r, 4, "go");
    let m = h.file("t.wat", &returning(r#"{"ok":1}"#));
    let r = h.run_with(&["run", "wasm", &m], |c| {
        c.env("HANZO_COMPUTE_ENABLED_RUNTIMES", "docker");
    });
    assert_one_error_line(&r, 4, "disabled");
    // No daemon at the configured socket: exit 4, saying how to start one.
    let r = h.run_with(&["run", "docker", "busybox:latest"], |c| {
        c.env("HANZO_COMPUTE_DOCKER_SOCKET", "/nonexistent/docker.sock");
    });
    assert_one_error_line(&r, 4, "start");
}

#[test]
fn a_bad_config_names_the_key() {
    let h = Home::new();
    let cfg = h.file("hanzo-node.toml", "[compute.wasm]\nmax_memroy_mb = 5\n");
    let m = h.file("t.wat", &returning(r#"{"ok":1}"#));
    assert_one_error_line(&h.run(&["--config", &cfg, "run", "wasm", &m]), 2, "max_memroy_mb");
    let r = h.run_with(&["run", "wasm", &m], |c| {
        c.env("HANZO_COMPUTE_WASM_MAX_STACK_KB", "deep");
    });
    assert_one_error_line(&r, 2, "HANZO_COMPUTE_WASM_MAX_STACK_KB");
}

#[test]
fn runtimes_lists_what_each_runtime_enforces() {
    let h = Home::new();
    let r = h.run(&["runtimes", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json()["runtimes"].clone();
    let wasm = v
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["runtime"] == "wasm")
        .unwrap();
    assert_eq!(wasm["available"], true);
    assert_eq!(wasm["capabilities"]["limits"]["memory"]["support"], "enforced");
    assert_eq!(wasm["capabilities"]["limits"]["disk"]["support"], "unsupported");
    let docker = v
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["runtime"] == "docker")
        .unwrap();
    // Available or not depends on the host's daemon; the table is there either way.
    assert_eq!(docker["capabilities"]["limits"]["fuel"]["support"], "unsupported");
    assert_eq!(docker["capabilities"]["limits"]["memory"]["support"], "enforced");
    // The test command installs deno, uv and go: every process runtime is available,
    // on the sandbox's table.
    for name in ["deno", "python", "go", "native"] {
        let rt = v
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["runtime"] == name)
            .unwrap();
        assert_eq!(rt["available"], true, "{name}: {}", rt["detail"]);
        assert_eq!(rt["capabilities"]["limits"]["timeout"]["support"], "enforced");
    }
    let native = v
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["runtime"] == "native")
        .unwrap();
    let builtins: Vec<&str> = native["builtins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert!(
        builtins.contains(&"hash") && builtins.contains(&"json-query"),
        "{builtins:?}"
    );
    let k8s = v
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["runtime"] == "k8s")
        .unwrap();
    assert_eq!(k8s["available"], false);
    // At a glance: one line a runtime, the enforced limits in a column; the long
    // form (how each limit holds) with -v.
    let table = h.run(&["runtimes"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let wasm_line = table.stdout.lines().find(|l| l.starts_with("wasm ")).unwrap();
    assert!(
        wasm_line.contains(" yes ") && wasm_line.contains("mem,"),
        "{}",
        table.stdout
    );
    assert!(
        table.stdout.lines().next().unwrap().starts_with("RUNTIME"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.lines().count() < 15, "{}", table.stdout);
    let long = h.run(&["runtimes", "-v"]);
    assert!(
        long.stdout.contains("enforced") && long.stdout.contains("isolation:"),
        "{}",
        long.stdout
    );
}

#[test]
fn modules_added_to_the_store_run_by_digest() {
    let h = Home::new();
    let m = h.file("t.wat", &returning(r#"{"ok":"stored"}"#));
    let r = h.run(&["module", "add", &m]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let digest = r.stdout.trim().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    let out = h.run(&["run", "wasm", &digest]);
    assert_eq!(out.stdout.trim(), "\"stored\"");
    assert!(h.run(&["module", "ls"]).stdout.contains(&digest));
}

#[test]
fn an_sdk_tool_runs_and_its_receipt_verifies() {
    let h = Home::new();
    let dir = examples_dir();
    let module = dir.join("text_tools.wasm").display().to_string();
    let receipt = h.path("receipt.json").display().to_string();
    let params = r#"{"text":"one two two three three three","top":1}"#;
    let r = h.run(&[
        "run",
        "wasm",
        &module,
        "--function",
        "word_stats",
        "--params",
        params,
        "--receipt",
        &receipt,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.json();
    assert_eq!(out["top_words"][0]["word"], "three", "{out}");
    let v = h.run(&[
        "receipt",
        "verify",
        &receipt,
        "--code",
        &module,
        "--params",
        params,
        "--output",
        r.stdout.trim(),
    ]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    assert!(v.stdout.starts_with("ok:"), "{}", v.stdout);
}

#[test]
fn the_demo_runs_every_step_as_expected() {
    // README command 1 without its set-up: every runtime this host has (the test
    // command installs deno, uv and go) runs its example and hostile steps.
    let h = Home::new();
    let examples = examples_dir();
    let sources = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    // The agent step's endpoint: the stand-in scripts/demo.sh starts.
    let port_file = h.path("stand-in.port");
    let mut stand_in = std::process::Command::new("python3")
        .arg(sources.join("agent/stand_in_model.py"))
        .arg(&port_file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let port = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            break p.trim().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stand-in model never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let endpoint = format!("http://127.0.0.1:{port}/v1");
    let r = h.run(&[
        "demo",
        "--examples",
        &examples.display().to_string(),
        "--sources",
        &sources.display().to_string(),
        "--agent-endpoint",
        &endpoint,
    ]);
    let _ = stand_in.kill();
    let _ = stand_in.wait();
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("agent receipt verified") && r.stdout.contains("binding 2 calls in order"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("skipping"), "{}", r.stdout);
    for needle in [
        "TypeScript on Deno",
        "Python",
        "--native",
        "built-in",
        "/etc/shadow",
    ] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.stdout);
    }
    assert!(r.stdout.contains("all demo steps behaved as expected"));
}

/// A SOURCE larger than the runtime reads is refused from its size, before a byte is
/// read (a 3 GiB module file was once read whole: 3.1 GiB of node memory); a
/// FIFO named like a script is refused instead of blocking the node forever.
#[test]
fn oversized_and_endless_sources_are_refused_before_they_are_read() {
    let h = Home::new();
    // 3 GiB that take no disk (sparse).
    let big = h.path("big.wasm");
    std::fs::File::create(&big).unwrap().set_len(3 << 30).unwrap();
    let r = h.run(&["run", "wasm", big.to_str().unwrap()]);
    assert_one_error_line(&r, 2, "is more than the 268435456 bytes the node reads");

    let fifo = h.path("tool.py");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let mut child = h
        .cmd()
        .args(["run", "python", fifo.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("hanzo-node run python <fifo> blocked on the FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let r = Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_one_error_line(&r, 2, "not a regular file");
}

#[test]
fn usage_errors_keep_clap_s_hints_with_one_error_line() {
    let h = Home::new();
    // A misspelt flag: the error names it, the hint names the real one, the usage line
    // follows; only the first line starts with `error:`.
    let r = h.run(&["run", "wasm", "x.wasm", "--jsn"]);
    assert_one_error_line(&r, 2, "'--jsn'");
    assert!(
        r.stderr.lines().next().unwrap().starts_with("error:"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("a similar argument exists: '--json'"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Usage: hanzo-node run"), "{}", r.stderr);
    // A missing argument is named.
    let r = h.run(&["run", "wasm"]);
    assert_one_error_line(&r, 2, "required");
    assert!(r.stderr.contains("<SOURCE>"), "{}", r.stderr);
    // A misspelt subcommand gets its "did you mean".
    let r = h.run(&["runtime"]);
    assert_one_error_line(&r, 2, "unrecognized subcommand");
    assert!(r.stderr.contains("'runtimes'"), "{}", r.stderr);
    // Bare hanzo-node: the help, on stderr, exit 2; nothing on stdout.
    let r = h.run(&[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr.contains("Usage: hanzo-node [OPTIONS] <COMMAND>"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("runtimes"), "{}", r.stderr);
    // --help itself is a success, on stdout.
    let r = h.run(&["--help"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("Usage: hanzo-node"), "{}", r.stdout);
}

#[test]
fn an_unknown_configuration_variable_is_named() {
    let h = Home::new();
    let r = h.run_with(&["runtimes"], |c| {
        c.env("HANZO_NODE_API_LISTN", "127.0.0.1:1");
    });
    assert_one_error_line(&r, 2, "HANZO_NODE_API_LISTN: unknown configuration variable");
    assert!(
        r.error_line().contains("did you mean HANZO_NODE_API_LISTEN?"),
        "{}",
        r.stderr
    );
}

#[test]
fn docker_errors_name_the_real_cause() {
    let h = Home::new();
    // A socket left over from a daemon that stopped: nobody listens.
    let stale = h.path("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let r = h.run_with(&["run", "docker", "hanzo-test/busybox:latest"], |c| {
        c.env("HANZO_COMPUTE_DOCKER_SOCKET", &stale);
    });
    assert_one_error_line(&r, 4, "no Docker daemon listens on");

    // A socket this user may not open: not "no daemon", but who may.
    let dir = tempfile::Builder::new().prefix("hanzo-sock").tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = dir.path().join("docker.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = crate::util::run_as_nobody(
        &["run", "docker", "hanzo-test/busybox:latest"],
        &[("HANZO_COMPUTE_DOCKER_SOCKET", private.to_str().unwrap())],
    );
    assert_one_error_line(&r, 4, "may not open it (permission denied)");

    // A registry this machine cannot reach: unavailable (4), not a bad reference (2).
    // Loopback, with nothing listening on the port.
    let port = crate::server::free_port();
    let image = format!("127.0.0.1:{port}/hanzo-test/absent:1");
    let r = h.run(&["run", "docker", &image]);
    assert_one_error_line(&r, 4, "registry cannot be reached");
    // A reference the (reachable) daemon has never heard of stays bad input.
    let r = h.run_with(&["run", "docker", "hanzo-test/absent:1"], |c| {
        c.env("HANZO_COMPUTE_DOCKER_PULL_POLICY", "never");
    });
    assert_one_error_line(&r, 2, "not present");
}

#[test]
fn a_slow_first_step_shows_a_spinner_on_a_terminal_only() {
    // The first run of a module compiles it (seconds, in a debug build); on a terminal
    // (script(1) gives the node one) a spinner says so, and clears itself.
    let h = Home::new();
    let module = examples_dir().join("sentiment.wasm").display().to_string();
    let line = format!(
        "{} run wasm {module} --function analyze --params '{{\"text\":\"good\"}}'",
        env!("CARGO_BIN_EXE_hanzo-node")
    );
    let out = h
        .cmd_of("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains("compiling the module"), "{tty}");
    assert!(tty.contains("\"label\":\"positive\""), "{tty}");
    // Compiled now: the second run has nothing slow to show.
    let again = h
        .cmd_of("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&again.stdout).contains("compiling"));

    // Not a terminal (a pipe, as in scripts and CI): no spinner, only the contract's lines.
    let h = Home::new();
    let r = h.run(&[
        "run",
        "wasm",
        &module,
        "--function",
        "analyze",
        "--params",
        r#"{"text":"good"}"#,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stderr.contains("compiling"), "{}", r.stderr);
    // -q on a terminal: none either.
    let h = Home::new();
    let quiet = format!("{line} -q");
    let out = h
        .cmd_of("script")
        .args(["-qec", &quiet, "/dev/null"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("compiling"));
}

#[test]
fn a_node_that_is_not_root_and_has_no_bubblewrap_refuses_process_tools() {
    // The tool would run as the node's own user and read its key: unavailable (exit 4),
    // saying why and how to change it.
    let script = tempfile::Builder::new().prefix("hanzo-tool").tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(script.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tool = script.path().join("t.py");
    std::fs::write(&tool, "def run(p):\n    return p\n").unwrap();
    let no_bwrap = ("HANZO_COMPUTE_SANDBOX_BUBBLEWRAP", "false");
    for rt in ["python", "deno", "native"] {
        let r = crate::util::run_as_nobody(&["run", rt, tool.to_str().unwrap()], &[no_bwrap]);
        assert_one_error_line(&r, 4, "could read its data directory");
        assert!(r.error_line().contains("allow_unisolated"), "{}", r.stderr);
    }
    let r = crate::util::run_as_nobody(&["runtimes", "--json"], &[no_bwrap]);
    let rts = r.json()["runtimes"].clone();
    let python = rts
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["runtime"] == "python")
        .unwrap();
    assert_eq!(python["available"], false);
    // The operator may opt in, for tools they trust: the refusal is gone.
    let r = crate::util::run_as_nobody(
        &["run", "python", tool.to_str().unwrap()],
        &[no_bwrap, ("HANZO_COMPUTE_SANDBOX_ALLOW_UNISOLATED", "true")],
    );
    assert!(
        !r.stderr.contains("could read its data directory"),
        "{}",
        r.stderr
    );
    // With bubblewrap (user namespaces), the same node runs them isolated.
    let r = crate::util::run_as_nobody(&["runtimes", "--json"], &[]);
    let rts = r.json()["runtimes"].clone();
    let native = rts
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["runtime"] == "native")
        .unwrap();
    assert!(
        !native["detail"].as_str().unwrap_or("").contains("could read"),
        "{native}"
    );
}
