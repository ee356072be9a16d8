//! The shared conformance suite (hanzo_compute::conformance) on the `mcp` runtime: a
//! stdio MCP server written here in plain Python (Debian's python3, no SDK), so that the
//! suite runs wherever the sandbox does. Its tools have the fixtures' behaviours; every
//! job of the suite goes through the runtime's warm pool.

use hanzo_compute::conformance::{Fixture, Harness};
use hanzo_compute::{JobSpec, Runtime, RuntimeKind};
use hanzo_mcp::{McpOptions, McpRuntime};
use hanzo_sandbox::Sandbox;
use std::sync::Arc;

/// A line-delimited JSON-RPC MCP server: initialize, tools/list, tools/call.
const SERVER: &str = r#"
import json, sys

TOOLS = ["echo", "fail", "spin", "grow", "big_output", "log"]

def answer(id, result):
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": id, "result": result}) + "\n")
    sys.stdout.flush()

def text(value, error=False):
    return {"content": [{"type": "text", "text": value}], "isError": error}

for line in sys.stdin:
    msg = json.loads(line)
    method, id = msg.get("method"), msg.get("id")
    if id is None:
        continue
    if method == "initialize":
        answer(id, {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                    "serverInfo": {"name": "conformance", "version": "1"}})
    elif method == "tools/list":
        answer(id, {"tools": [{"name": t, "inputSchema": {"type": "object"}} for t in TOOLS]})
    elif method == "tools/call":
        name, args = msg["params"]["name"], msg["params"].get("arguments") or {}
        if name == "echo":
            answer(id, text(json.dumps(args)))
        elif name == "fail":
            answer(id, text("requested failure", True))
        elif name == "spin":
            while True:
                pass
        elif name == "grow":
            hog = []
            while True:
                hog.append(bytearray(1 << 20))
        elif name == "big_output":
            answer(id, text(json.dumps("x" * args["bytes"])))
        elif name == "log":
            sys.stderr.write(args["message"] + "\n")
            sys.stderr.flush()
            answer(id, text(json.dumps({"logged": True})))
    else:
        sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": method}}) + "\n")
        sys.stdout.flush()
"#;

struct McpHarness {
    rt: Arc<McpRuntime>,
}

impl McpHarness {
    fn new() -> Self {
        McpHarness {
            rt: Arc::new(McpRuntime::new(
                Arc::new(Sandbox::detect()),
                McpOptions::default(),
            )),
        }
    }
}

impl Harness for McpHarness {
    fn runtime(&self) -> Arc<dyn Runtime> {
        self.rt.clone()
    }

    fn job(&self, fixture: Fixture) -> JobSpec {
        let source = format!("/usr/bin/python3 -c {}", shlex::try_quote(SERVER).unwrap());
        let mut spec = JobSpec::new(RuntimeKind::Mcp, source);
        spec.function = Some(
            match fixture {
                Fixture::Echo => "echo",
                Fixture::Fail => "fail",
                Fixture::Spin => "spin",
                Fixture::MemoryHog => "grow",
                Fixture::BigOutput => "big_output",
                Fixture::Log => "log",
            }
            .into(),
        );
        spec
    }
}

hanzo_compute::conformance_tests!(McpHarness::new());
