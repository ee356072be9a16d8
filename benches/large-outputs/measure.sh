#!/bin/bash
# usage: benches/large-outputs/measure.sh BINARY HOME PORT   (root: writes /proc/PID/clear_refs)
# The node's peak RSS (VmHWM, reset with clear_refs before each step) around a job with a
# 40 MiB output, a GET of it on a fresh node, and a listing of six such jobs.
# HOME is deleted and recreated. See BENCHMARKS.md, "Large outputs in the node".
BIN=$1; H=$2; PORT=$3
export HANZO_HOME=$H HANZO_NODE_API_LISTEN=127.0.0.1:$PORT HANZO_COMPUTE_MAX_OUTPUT_BYTES=67108864
TOKEN_ARGS=()
start() { $BIN serve >$H.log 2>&1 & PID=$!; for i in $(seq 100); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.2; done; }
tok() { [ -f $H/api-token ] && echo "Authorization: Bearer $(cat $H/api-token)" || echo "X-No: 1"; }
kb() { grep "$1" /proc/$PID/status | awk '{print $2}'; }
reset() { echo 5 > /proc/$PID/clear_refs; }
step() { # name, then command
  local name=$1; shift; reset; local before=$(kb VmRSS); "$@" >/dev/null; sleep 0.3
  echo "$name: rss_before=${before}kB peak=$(kb VmHWM)kB peak_delta=$(( $(kb VmHWM) - before ))kB"; }
rm -rf $H; mkdir -p $H
start
HERE=$(dirname "$(readlink -f "$0")")
SPEC='{"runtime":"native","source":"'$HERE'/big.sh","limits":{"max_output_bytes":67108864,"timeout_ms":120000}}'
step "execute (1 job, 40 MiB output)" curl -s -H "$(tok)" -H 'Content-Type: application/json' -d "$SPEC" http://127.0.0.1:$PORT/v1/jobs/execute
for i in 1 2 3 4 5; do curl -s -H "$(tok)" -H 'Content-Type: application/json' -d "$SPEC" http://127.0.0.1:$PORT/v1/jobs/execute >/dev/null; done
ID=$(curl -s -H "$(tok)" "http://127.0.0.1:$PORT/v1/jobs?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["id"])')
kill $PID; wait $PID 2>/dev/null
start
echo "fresh node: rss=$(kb VmRSS)kB"
step "GET /v1/jobs/{id} (40 MiB output)" curl -s -H "$(tok)" http://127.0.0.1:$PORT/v1/jobs/$ID
step "GET /v1/jobs (6 jobs of 40 MiB)" curl -s -H "$(tok)" http://127.0.0.1:$PORT/v1/jobs
echo "list bytes: $(curl -s -H "$(tok)" http://127.0.0.1:$PORT/v1/jobs | wc -c)"
kill $PID; wait $PID 2>/dev/null
