//! Tools doing real work (the examples), the runner's contract (async, exceptions,
//! print(), unknown functions, results that are not JSON), bad input, grants, health.

use crate::util::{Node, err, examples, logs, ok};
use hanzo_compute::config::PythonConfig;
use hanzo_compute::{ComputeError, Mount, Network, Runtime};
use serde_json::json;
use sha2::{Digest, Sha256};

#[tokio::test]
async fn csv_stats_example_computes_statistics() {
    let n = Node::new();
    let csv = "city,temp,rain\nOslo,3.5,10\nRome,14,2\nCairo,22.5,0\nLima,19,1\n";
    let ex = n
        .run(
            n.job(&examples().join("csv_stats.py"))
                .params(json!({"csv": csv})),
        )
        .await;
    let out = ok(&ex);
    let temps = [3.5f64, 14.0, 22.5, 19.0];
    let mean = temps.iter().sum::<f64>() / 4.0;
    let var = temps.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / 3.0;
    assert_eq!(out["rows"], json!(4));
    let t = &out["columns"]["temp"];
    assert!((t["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{t}");
    assert!((t["stdev"].as_f64().unwrap() - var.sqrt()).abs() < 1e-9, "{t}");
    assert_eq!(t["median"], json!(16.5));
    assert_eq!(out["columns"]["rain"]["max"], json!(10.0));
    assert!(out["columns"].get("city").is_none(), "text columns have no stats");

    let ex = n
        .run(
            n.job(&examples().join("csv_stats.py"))
                .function("columns")
                .params(json!({"csv": csv})),
        )
        .await;
    assert_eq!(
        ok(&ex),
        &json!([{"name": "city", "type": "text"}, {"name": "temp", "type": "number"}, {"name": "rain", "type": "number"}])
    );

    // The tool's own ValueError is its failure, with the message.
    let ex = n
        .run(n.job(&examples().join("csv_stats.py")).params(json!({"csv": 5})))
        .await;
    let e = err(&ex);
    assert_eq!(e.exit_code(), 1);
    assert!(
        e.to_string().contains("ValueError: params.csv must be a string"),
        "{e}"
    );
}

#[tokio::test]
async fn async_word_freq_example_is_awaited() {
    let n = Node::new();
    let text = "The cat and the hat.\nThe end, said the cat's friend";
    let ex = n
        .run(
            n.job(&examples().join("word_freq.py"))
                .params(json!({"text": text, "top": 2})),
        )
        .await;
    let out = ok(&ex);
    assert_eq!(out["top"], json!([["the", 4], ["and", 1]]));
    assert_eq!(out["words"], json!(11));
}

#[tokio::test]
async fn async_functions_and_coroutines_are_awaited() {
    let n = Node::new();
    let src = "import asyncio\n\nasync def run(p):\n    await asyncio.sleep(0.01)\n    return {'x': p['x'] * 2}\n\ndef later(p):\n    async def inner():\n        return 'awaited'\n    return inner()\n";
    let p = n.script("aio.py", src);
    assert_eq!(
        ok(&n.run(n.job(&p).params(json!({"x": 21}))).await),
        &json!({"x": 42})
    );
    assert_eq!(ok(&n.run(n.job(&p).function("later")).await), &json!("awaited"));
}

#[tokio::test]
async fn exceptions_are_tool_failures_with_type_message_and_traceback() {
    let n = Node::new();
    let ex = n
        .run_script(
            "boom.py",
            "def helper():\n    raise KeyError('no such thing')\n\ndef run(p):\n    helper()\n",
            json!({}),
        )
        .await;
    match err(&ex) {
        ComputeError::ToolFailed(m) => assert!(m.contains("KeyError: 'no such thing'"), "{m}"),
        other => panic!("{other:?}"),
    }
    let l = logs(&ex);
    assert!(l.contains("Traceback") && l.contains("in helper"), "{l}");
    assert!(ex.code_hash.is_some(), "the script ran: a receipt names it");

    // Failing while loading (a syntax error, a missing import) is the tool's failure too.
    let ex = n
        .run_script("syntax.py", "def run(p):\n    return (\n", json!({}))
        .await;
    assert_eq!(err(&ex).exit_code(), 1);
    assert!(err(&ex).to_string().contains("SyntaxError"), "{}", err(&ex));
    let ex = n
        .run_script(
            "imp.py",
            "import hanzo_no_such_module\ndef run(p): pass\n",
            json!({}),
        )
        .await;
    assert!(
        err(&ex).to_string().contains("ModuleNotFoundError"),
        "{}",
        err(&ex)
    );
    // sys.exit inside the tool does not pass for success.
    let ex = n
        .run_script("exit.py", "import sys\ndef run(p):\n    sys.exit(0)\n", json!({}))
        .await;
    assert!(err(&ex).to_string().contains("SystemExit"), "{}", err(&ex));
}

#[tokio::test]
async fn print_inside_the_tool_goes_to_the_logs_not_the_output() {
    let n = Node::new();
    let src = r#"
import os, subprocess, sys
print("imported")
def run(p):
    print("from print", {"looks": "like json"})
    sys.stdout.write("from sys.stdout\n")
    os.write(1, b"from fd 1\n")
    subprocess.run(["echo", "from a child"], check=True)
    return {"ok": True}
"#;
    let ex = n.run_script("chatty.py", src, json!({})).await;
    assert_eq!(ok(&ex), &json!({"ok": true}));
    let l = logs(&ex);
    for line in [
        "imported",
        "from print",
        "from sys.stdout",
        "from fd 1",
        "from a child",
    ] {
        assert!(l.contains(line), "{line} missing from logs: {l}");
    }
}

#[tokio::test]
async fn unknown_function_is_bad_input_listing_the_callable_ones() {
    let n = Node::new();
    let p = n.script(
        "fns.py",
        "from os.path import join\n\ndef run(p): return 1\n\ndef other(p): return 2\n\ndef _private(p): return 3\n",
    );
    assert_eq!(ok(&n.run(n.job(&p).function("other")).await), &json!(2));
    for name in ["nope", "_private", "join"] {
        let ex = n.run(n.job(&p).function(name)).await;
        let e = err(&ex);
        assert_eq!(e.exit_code(), 2, "{e}");
        let m = e.to_string();
        assert!(
            m.contains(&format!("unknown function '{name}'")) && m.contains("other, run"),
            "{m}"
        );
    }
}

#[tokio::test]
async fn results_that_are_not_json_are_a_clear_failure() {
    let n = Node::new();
    for (body, want) in [
        ("return {1, 2}", "not JSON-serialisable"),
        ("return float('nan')", "not JSON-serialisable"),
        ("return object()", "object is not JSON serializable"),
    ] {
        let ex = n
            .run_script("bad.py", &format!("def run(p):\n    {body}\n"), json!({}))
            .await;
        let e = err(&ex);
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains(want), "{body}: {e}");
    }
    // None is JSON null.
    let ex = n
        .run_script("none.py", "def run(p):\n    pass\n", json!({}))
        .await;
    assert_eq!(ok(&ex), &json!(null));
}

#[tokio::test]
async fn bad_sources_are_bad_input() {
    let n = Node::new();
    let missing = n.scripts.path().join("missing.py");
    let ex = n.run(n.job(&missing)).await;
    assert_eq!(err(&ex).exit_code(), 2);
    assert!(err(&ex).to_string().contains("no such file"), "{}", err(&ex));
    assert!(ex.code_hash.is_none());

    let txt = n.script("tool.txt", "def run(p): return p\n");
    assert!(
        err(&n.run(n.job(&txt)).await)
            .to_string()
            .contains("not a .py file")
    );
    let ex = n.run(n.job(n.scripts.path())).await;
    assert_eq!(err(&ex).exit_code(), 2);
    let ex = n
        .run(hanzo_compute::JobSpec::new(
            hanzo_compute::RuntimeKind::Python,
            format!("sha256:{}", "a".repeat(64)),
        ))
        .await;
    assert_eq!(err(&ex).exit_code(), 2);
}

#[tokio::test]
async fn malformed_pep723_blocks_are_bad_input_naming_the_problem() {
    let n = Node::new();
    for (src, want) in [
        (
            "# /// script\n# dependencies = [\"tabulate\"]\ndef run(p): pass\n",
            "no closing",
        ),
        (
            "# /// script\n# dependencies = \"tabulate\"\n# ///\ndef run(p): pass\n",
            "array of strings",
        ),
        (
            "# /// script\n# dependencies = [\n# ///\ndef run(p): pass\n",
            "not valid TOML",
        ),
        (
            "# /// script\n# dependancies = []\n# ///\ndef run(p): pass\n",
            "dependancies",
        ),
        (
            "# /// script\n# dependencies = [\"x @ file:///etc\"]\n# ///\ndef run(p): pass\n",
            "direct reference",
        ),
        (
            "# /// script\n# requires-python = \">=99\"\n# ///\ndef run(p): pass\n",
            "requires Python >=99",
        ),
    ] {
        let ex = n.run_script("meta.py", src, json!({})).await;
        let e = err(&ex);
        assert_eq!(e.exit_code(), 2, "{src}: {e}");
        assert!(e.to_string().contains(want), "{src}: {e}");
    }
    assert!(n.envs().is_empty(), "nothing was installed");
    // A satisfied requires-python without dependencies runs on the bare interpreter.
    let ex = n
        .run_script(
            "ok.py",
            "# /// script\n# requires-python = \">=3.8\"\n# ///\ndef run(p): return 7\n",
            json!({}),
        )
        .await;
    assert_eq!(ok(&ex), &json!(7));
    assert!(n.envs().is_empty());
}

#[tokio::test]
async fn the_work_dir_copy_runs_and_its_hash_is_the_code_hash() {
    let n = Node::new();
    let src = "import os, sys\n\ndef run(p):\n    return {'file': __file__, 'cwd': os.getcwd(), 'flags': [sys.flags.isolated, sys.flags.no_site]}\n";
    let p = n.script("where.py", src);
    let ex = n.run(n.job(&p)).await;
    let out = ok(&ex);
    let file = out["file"].as_str().unwrap();
    assert!(
        !file.starts_with(n.scripts.path().to_str().unwrap()),
        "ran the host path: {file}"
    );
    assert!(file.ends_with("where.py"), "{file}");
    assert_eq!(
        out["flags"],
        json!([1, 1]),
        "isolated mode, standard library only"
    );
    assert_eq!(
        ex.code_hash.as_deref(),
        Some(hex::encode(Sha256::digest(src.as_bytes())).as_str())
    );
}

#[tokio::test]
async fn granted_env_mounts_and_network_work() {
    let n = Node::new();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "granted").unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    // Tools run as nobody, never as the node's root: the mounts must be theirs to use.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(out_dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // Another host, reached through the sandbox's NAT (a test host of the test's own);
    // the host's own loopback is not reachable.
    let mut other = hanzo_testkit::nethost::TestHost::new();
    let port = other.tcp_server("hello from another host");
    let loopback = hanzo_testkit::nethost::loopback_server("the host itself");
    let src = r#"
import os, socket
def run(p):
    with open("/data/in.txt") as f:
        read = f.read()
    with open("/out/result.txt", "w") as f:
        f.write("written")
    try:
        open("/data/x", "w")
        ro = False
    except OSError:
        ro = True
    s = socket.create_connection((p["host"], p["port"]), timeout=5)
    reply = s.recv(64).decode()
    s.close()
    try:
        socket.create_connection(("127.0.0.1", p["loopback"]), timeout=5).close()
        host = "reached"
    except OSError:
        host = "refused"
    return {"env": os.environ.get("GRANTED"), "home": os.environ.get("HOME"),
            "leak": os.environ.get("CARGO_MANIFEST_DIR"), "read": read, "ro": ro,
            "reply": reply, "host": host}
"#;
    let p = n.script("grants.py", src);
    let mut spec = n
        .job(&p)
        .params(json!({"port": port, "host": other.addr.to_string(), "loopback": loopback}));
    spec.env.insert("GRANTED".into(), "yes".into());
    spec.mounts.push(Mount {
        host: data.path().into(),
        guest: "/data".into(),
        writable: false,
    });
    spec.mounts.push(Mount {
        host: out_dir.path().into(),
        guest: "/out".into(),
        writable: true,
    });
    spec.network = Network::Full;
    let ex = n.run(spec).await;
    let out = ok(&ex);
    assert_eq!(out["env"], json!("yes"));
    assert_eq!(out["leak"], json!(null), "the node's environment leaked");
    assert_eq!(out["read"], json!("granted"));
    assert_eq!(out["ro"], json!(true));
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("result.txt")).unwrap(),
        "written"
    );
    assert_eq!(out["reply"], json!("hello from another host"));
    assert_eq!(
        out["host"],
        json!("refused"),
        "network: full reached the host's loopback"
    );
}

#[tokio::test]
async fn health_and_capabilities_name_the_toolchain() {
    let n = Node::new();
    let h = n.rt.health().await;
    assert!(h.available, "{h:?}");
    let v = h.version.unwrap();
    assert!(v.contains("Python 3.") && v.contains("uv "), "{v}");
    let caps = n.rt.capabilities();
    assert!(
        caps.isolation.contains("Python 3.") && caps.isolation.contains("uv "),
        "{}",
        caps.isolation
    );
    assert!(!caps.deterministic);
    assert_eq!(n.rt.kind(), hanzo_compute::RuntimeKind::Python);
}

#[tokio::test]
async fn a_version_request_finds_an_installed_interpreter() {
    let n = Node::with_config(&PythonConfig {
        uv: String::new(),
        python: "3".into(),
    });
    let h = n.rt.health().await;
    assert!(h.available, "{h:?}");
    let ex = n
        .run_script(
            "v.py",
            "import sys\ndef run(p): return sys.version_info[0]\n",
            json!({}),
        )
        .await;
    assert_eq!(ok(&ex), &json!(3));
}

#[tokio::test]
async fn a_missing_toolchain_is_unavailable_with_install_advice() {
    for config in [
        PythonConfig {
            uv: "/nonexistent/uv".into(),
            python: String::new(),
        },
        PythonConfig {
            uv: String::new(),
            python: "/nonexistent/python3".into(),
        },
    ] {
        let n = Node::with_config(&config);
        let h = n.rt.health().await;
        assert!(!h.available);
        let d = h.detail.unwrap();
        assert!(d.contains("/nonexistent/") && d.contains("pip install uv"), "{d}");
        let ex = n.run_script("x.py", "def run(p): return 1\n", json!({})).await;
        assert!(matches!(err(&ex), ComputeError::Unavailable(_)));
        assert_eq!(err(&ex).exit_code(), 4);
    }
}
