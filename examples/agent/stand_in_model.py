"""A stand-in for a language model behind an OpenAI-compatible chat-completions API, for
the demo (`scripts/demo.sh`): no model can run on the machines the demo is made for.

It is not a model. It plays one simple plan, the way a model would answer through the
API: to a user's question it calls every tool it is offered whose parameters take a
`text`, with the text quoted in the question; given the tools' results, it answers by
quoting them. Point the agent at a real endpoint instead (Ollama, llama.cpp's server,
vLLM, OpenAI; docs/agents.md) and the node does the same work for a real model.

    python3 stand_in_model.py PORT_FILE     # serves on 127.0.0.1, writes its port there

Standard library only.
"""

import json
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def plan(messages, tools):
    """The next assistant message: tool calls for a question, an answer for results."""
    last = messages[-1]
    if last.get("role") == "tool":
        results = []
        names = {}
        for m in messages:
            for c in m.get("tool_calls") or []:
                names[c["id"]] = c["function"]["name"]
        for m in messages:
            if m.get("role") == "tool":
                results.append(f"{names.get(m['tool_call_id'], 'a tool')} said {m['content']}")
        return {"role": "assistant", "content": "(stand-in model) The tools answered: " + "; ".join(results)}
    question = last.get("content") or ""
    quoted = re.search(r'"([^"]+)"', question)
    text = quoted.group(1) if quoted else question
    calls = []
    for i, t in enumerate(tools):
        f = t["function"]
        props = (f.get("parameters") or {}).get("properties") or {}
        if "text" in props:
            args = {"text": text}
            if "top" in props:
                args["top"] = 3
            calls.append({"id": f"call_{i}", "type": "function",
                          "function": {"name": f["name"], "arguments": json.dumps(args)}})
    if not calls:
        return {"role": "assistant", "content": "(stand-in model) I have no tool that reads a text."}
    return {"role": "assistant", "content": None, "tool_calls": calls}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm
    # holds the body for the client's delayed ACK (40 ms a request), as real servers
    # (Go's net/http, Ollama's) do not.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self.answer(404, {"error": {"message": f"no route {self.path}", "type": "not_found_error"}})
        try:
            req = json.loads(body)
            message = plan(req["messages"], req.get("tools") or [])
        except (ValueError, KeyError, TypeError) as e:
            return self.answer(400, {"error": {"message": f"bad request: {e}", "type": "invalid_request_error"}})
        calls = "tool_calls" in message
        self.answer(200, {
            "id": "chatcmpl-stand-in", "object": "chat.completion", "created": int(time.time()),
            "model": req.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        })


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
