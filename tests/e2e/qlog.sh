#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/qlog.sh: `detour serve --qlog` and `detour probe --qlog` on loopback.
#
#  1. serve and probe both with --qlog, a small load over rotating connections: one file per
#     connection on each side, named by the connection ID (serve's conn= is its start), every
#     record valid JSON (JSON-SEQ), each file complete, both sides' group_ids pairing up, and
#     the server's packets carrying the tasks' stream data;
#  2. the directory removed while serve runs: the tasks still pass and each worker logs one
#     qlog.failed line, not one per connection;
#  3. an unusable --qlog (a regular file) stops serve (exit 1) and the probe (exit 3) at once,
#     with a message naming --qlog.
#
# usage: qlog.sh DETOUR
set -uo pipefail

detour=$1
work=$(mktemp -d)
server_pid=
cleanup() {
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT
failed=0
fail() {
  echo "FAIL: $*"
  failed=1
}

# start_serve LOG ARGS...: starts serve on 127.0.0.1 (kernel-chosen port); sets $address.
start_serve() {
  local log=$1
  shift
  "$detour" serve --listen 127.0.0.1:0 --state-dir "$work/state" --workers 2 --log-level info \
    "$@" >/dev/null 2>"$log" &
  server_pid=$!
  address=
  for _ in $(seq 200); do
    address=$(grep -o 'server.listening addresses=[^ ]*' "$log" | head -1 | cut -d= -f2)
    [[ -n $address ]] && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "detour serve exited at start:"
      cat "$log"
      exit 1
    fi
    sleep 0.05
  done
  echo "detour serve did not start listening within 10 s"
  cat "$log"
  exit 1
}

stop_serve() {
  kill -TERM "$server_pid"
  wait "$server_pid"
  local status=$?
  server_pid=
  [[ $status -eq 0 ]] || fail "detour serve exited with $status after SIGTERM"
}

probe_load() { # probe_load EXTRA_ARGS...
  "$detour" probe load --server "$address" --ca "$work/state/ca.pem" --tasks 48 \
    --concurrency 8 --bytes 3k --connections 2 --reuse-limit 16 --deadline 60s "$@"
}

# --- 1. both sides write a qlog per connection ---------------------------------------------
start_serve "$work/serve1.log" --qlog "$work/srv"
echo "+ detour probe load ... --qlog $work/prb"
probe_load --qlog "$work/prb" >"$work/probe1.out" || fail "the load with --qlog failed"
cat "$work/probe1.out"
stop_serve

python3 - "$work/serve1.log" "$work/srv" "$work/prb" <<'EOF' || failed=1
import json, os, re, sys

log, srv, prb = sys.argv[1:4]
problems = []

def records(path):
    data = open(path, 'rb').read()
    if not data.endswith(b'\n'):
        problems.append(f"{path}: does not end with a whole record")
    out = []
    for i, chunk in enumerate(data.split(b'\x1e')):
        if not chunk.strip():
            continue
        try:
            out.append(json.loads(chunk))
        except ValueError as e:
            problems.append(f"{path}: record {i} is not JSON: {e}")
    return out

def side(folder, vantage):
    groups = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not re.fullmatch(r'[0-9a-f]{16,40}\.sqlog', name):
            problems.append(f"{path}: unexpected file name")
            continue
        recs = records(path)
        if not recs:
            problems.append(f"{path}: no records")
            continue
        head = recs[0]
        if head.get('qlog_format') != 'JSON-SEQ':
            problems.append(f"{path}: first record is not a JSON-SEQ qlog header: {head}")
            continue
        trace = head.get('trace', {})
        if trace.get('vantage_point', {}).get('type') != vantage:
            problems.append(f"{path}: vantage point is not {vantage}")
        events = [r.get('name') for r in recs[1:]]
        for wanted in ('transport:packet_sent', 'transport:packet_received'):
            if wanted not in events:
                problems.append(f"{path}: no {wanted} event")
        groups[trace.get('common_fields', {}).get('group_id')] = (name, recs)
    return groups

server = side(srv, 'server')
client = side(prb, 'client')

# serve's conn.open lines: one file per connection, named by its connection ID.
opened = re.findall(r'conn\.open .*?conn=([0-9a-f]{8})', open(log).read())
names = sorted(n for n, _ in server.values())
if len(opened) != len(names):
    problems.append(f"{len(opened)} connections opened, {len(names)} server qlog files")
for conn in opened:
    if not any(n.startswith(conn) for n in names):
        problems.append(f"no server qlog file starts with conn={conn}")
# 48 tasks at 16 per connection: at least 3 connections.
if len(names) < 3:
    problems.append(f"only {len(names)} server qlog files for 48 tasks at 16 per connection")
if set(server) != set(client):
    problems.append(f"group ids differ: server {sorted(server)} client {sorted(client)}")

# The tasks' bytes: 3 KiB each way on two streams per task, echoed by the server.
sent = 0
for _, recs in server.values():
    for r in recs:
        if r.get('name') == 'transport:packet_sent':
            for f in r['data'].get('frames', []):
                if f.get('frame_type') == 'stream':
                    sent += f.get('length', 0)
if sent < 48 * 2 * 3072:
    problems.append(f"the server's qlogs show {sent} stream bytes sent, "
                    f"expected at least {48 * 2 * 3072}")

for p in problems:
    print("FAIL:", p)
print(f"{len(server)} server and {len(client)} client qlog files checked, "
      f"{sent} stream bytes sent by the server")
sys.exit(1 if problems else 0)
EOF

# --- 2. the directory vanishes: tasks go on, one warning per worker ---------------------------
start_serve "$work/serve2.log" --qlog "$work/gone"
rm -rf "$work/gone"
probe_load >"$work/probe2.out" || fail "the load failed after the qlog directory was removed"
stop_serve
warnings=$(grep -c 'qlog.failed' "$work/serve2.log")
if [[ $warnings -lt 1 || $warnings -gt 2 ]]; then
  fail "expected one qlog.failed line per worker (1 or 2), got $warnings"
  grep 'qlog.failed' "$work/serve2.log" | head -5
fi

# --- 3. an unusable --qlog is refused at start ------------------------------------------------
touch "$work/a-file"
"$detour" serve --listen 127.0.0.1:0 --state-dir "$work/state" --qlog "$work/a-file" \
  >/dev/null 2>"$work/serve3.log" &
server_pid=$!
for _ in $(seq 200); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.05
done
if kill -0 "$server_pid" 2>/dev/null; then
  fail "detour serve --qlog <a regular file> did not exit"
else
  wait "$server_pid"
  status=$?
  [[ $status -eq 1 ]] || fail "detour serve --qlog <a regular file> exited with $status, not 1"
  grep -q -- '--qlog' "$work/serve3.log" || fail "serve's refusal does not name --qlog"
fi
server_pid=
"$detour" probe check --server 127.0.0.1:9 --no-verify --qlog "$work/a-file/x" \
  >/dev/null 2>"$work/probe3.err"
status=$?
[[ $status -eq 3 ]] || fail "detour probe --qlog <under a regular file> exited with $status, not 3"
grep -q -- '--qlog' "$work/probe3.err" || fail "the probe's refusal does not name --qlog"
cat "$work/serve3.log" "$work/probe3.err"

exit $failed
