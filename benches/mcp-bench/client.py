# The Python SDK side of mcp-bench (the official `mcp` 2.x client), timing calls:
#   client.py stdio 'COMMAND ARGS' TOOL ARGS_JSON RUNS WARMUP COLD
#       warm: one session, RUNS calls after WARMUP; cold: COLD fresh sessions, each
#       timed from the spawn of the server to the end of its first call.
#   client.py http URL TOKEN TOOL ARGS_JSON RUNS WARMUP
# Prints {"warm_ms": [...], "cold_ms": [...]}.
import asyncio
import json
import os
import shlex
import sys
import time

import httpx2
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


async def timed_calls(session, tool, args, runs, warmup):
    for _ in range(warmup):
        await session.call_tool(tool, args)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        r = await session.call_tool(tool, args)
        out.append((time.perf_counter() - t) * 1e3)
        assert not r.is_error, r
    return out


async def main():
    if sys.argv[1] == "stdio":
        argv = shlex.split(sys.argv[2])
        tool, args = sys.argv[3], json.loads(sys.argv[4])
        runs, warmup, cold = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=dict(os.environ))
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                warm = await timed_calls(s, tool, args, runs, warmup)
        cold_ms = []
        for _ in range(cold):
            t = time.perf_counter()
            async with stdio_client(params) as (r, w):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    await s.call_tool(tool, args)
                    cold_ms.append((time.perf_counter() - t) * 1e3)
        print(json.dumps({"warm_ms": warm, "cold_ms": cold_ms}))
    else:
        url, token, tool, args = sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
        runs, warmup = int(sys.argv[6]), int(sys.argv[7])
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            async with streamable_http_client(url, http_client=http) as (r, w):
                async with ClientSession(r, w) as s:
                    await s.initialize()
                    warm = await timed_calls(s, tool, args, runs, warmup)
        print(json.dumps({"warm_ms": warm, "cold_ms": []}))


asyncio.run(main())
