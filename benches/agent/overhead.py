"""What an agent adds per tool call, on a release node (BENCHMARKS.md, "Agent runtime").

N calls of one WASM tool (`slugify` of the example text tools) through an agent whose
model is the tests' scripted endpoint on loopback (it answers at once, so what is
measured is the node: the model request, the child job through the store and the
scheduler, its receipt), against the same N calls made directly over the API.

    python3 benches/agent/overhead.py target/release/hanzo-node \
        target/wasm32-wasip1/release hanzo-bin/hanzo-node/tests/all/fixtures/openai_script.py [N]

Standard library only; prints one JSON line. Ports: 127.0.0.1:39601 and one the
scripted endpoint picks; data under /tmp/agent-perf-home.
"""
import json, os, subprocess, sys, time, urllib.request
BIN, EX, FIX = sys.argv[1], sys.argv[2], sys.argv[3]
N = int(sys.argv[4]) if len(sys.argv) > 4 else 20
home = "/tmp/agent-perf-home"; subprocess.run(["rm", "-rf", home])
os.makedirs(home)
def call(method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:39601{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": "Bearer perf", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())
turns = [{"reply": {"tool_calls": [{"name": "slug", "arguments": json.dumps({"text": f"Hello World {i}"})}]}} for i in range(N)]
turns.append({"reply": {"content": "done"}})
script = {"key": None, "model": "m", "turns": turns}
open("/tmp/agent-perf-script.json", "w").write(json.dumps(script))
for f in ["/tmp/agent-perf.port", "/tmp/agent-perf.log"]:
    if os.path.exists(f): os.remove(f)
model = subprocess.Popen(["python3", FIX, "/tmp/agent-perf-script.json", "/tmp/agent-perf.port", "/tmp/agent-perf.log"])
while not os.path.exists("/tmp/agent-perf.port"): time.sleep(0.02)
port = open("/tmp/agent-perf.port").read().strip()
endpoint = f"http://127.0.0.1:{port}/v1"
env = dict(os.environ, HANZO_HOME=home, HANZO_NODE_API_TOKEN="perf", HANZO_NODE_API_LISTEN="127.0.0.1:39601",
           HANZO_COMPUTE_ENABLED_RUNTIMES="wasm,agent", HANZO_NETWORK_ENABLED="false",
           HANZO_COMPUTE_AGENT_ALLOWED_ENDPOINTS=endpoint, HANZO_COMPUTE_AGENT_MAX_STEPS="64")
node = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(200):
        try:
            urllib.request.urlopen("http://127.0.0.1:39601/healthz", timeout=1); break
        except Exception: time.sleep(0.05)
    call("POST", "/v1/tools", {"name": "slug", "runtime": "wasm", "source": os.path.abspath(f"{EX}/text_tools.wasm"),
        "function": "slugify", "schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}})
    # Warm: the module compiles once.
    call("POST", "/v1/tools/slug/call?wait=true", {"text": "warm"})
    t = time.perf_counter()
    for i in range(N):
        call("POST", "/v1/tools/slug/call?wait=true", {"text": f"Hello World {i}"})
    direct = (time.perf_counter() - t) * 1000
    agent_file = f'endpoint = "{endpoint}"\nmodel = "m"\ntools = ["slug"]\nmax_steps = {N}\n'
    t = time.perf_counter()
    job = call("POST", "/v1/jobs?wait=true", {"runtime": "agent", "source": agent_file, "params": {"prompt": "go"},
                                              "limits": {"timeout_ms": 120000}})
    whole = (time.perf_counter() - t) * 1000
    assert job["status"] == "succeeded", job
    steps = job["output"]["steps"]
    assert len(steps) == N
    tools_ms = sum(call("GET", f"/v1/jobs/{s['job_id']}")["usage"]["wall_time_ms"] for s in steps)
    log = [json.loads(l) for l in open("/tmp/agent-perf.log")]
    print(json.dumps({
        "calls": N,
        "direct_ms_per_call_over_api": round(direct / N, 2),
        "agent_wall_ms": round(job["usage"]["wall_time_ms"], 1),
        "agent_ms_per_step": round(job["usage"]["wall_time_ms"] / N, 2),
        "tool_execution_ms_per_call": round(tools_ms / N, 3),
        "requests_to_model": len(log),
        "receipt_bytes_per_step": round(sum(len(json.dumps(s["receipt"])) for s in steps) / N),
        "output_bytes": len(json.dumps(job["output"])),
    }))
finally:
    node.terminate(); model.terminate(); node.wait(); model.wait()
