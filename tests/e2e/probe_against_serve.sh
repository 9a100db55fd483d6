#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/probe_against_serve.sh: runs `detour probe` against a fresh `detour serve` on a
# loopback address (port chosen by the kernel, development certificates in a temporary folder).
# Fails when the probe's exit status is not the expected one, when its --json output is not
# valid JSON, or when the server did not survive the run and stop cleanly on SIGTERM.
#
# usage: probe_against_serve.sh DETOUR HOST EXPECTED_EXIT [SERVE_ARGS...] -- PROBE_ARGS...
#   HOST            127.0.0.1 or ::1; or `none`: no server, the probe is aimed at UDP port 9 on
#                   127.0.0.1 where nothing answers (it must give up in time, not hang)
#   EXPECTED_EXIT   the probe's expected exit status (0 all passed, 1 failures)
#   PROBE_ARGS      the mode and its options; --server and --ca are added
# DETOUR_PROBE_JSON_CHECK, when set: a Python expression over `d`, the probe's --json output,
# that must hold (the measured behaviour a test asserts, beyond the exit status).
set -uo pipefail

detour=$1
host=$2
expected=$3
shift 3
serve_args=()
while [[ $# -gt 0 && $1 != -- ]]; do
  serve_args+=("$1")
  shift
done
shift # the --
probe_args=("$@")

work=$(mktemp -d)
server_pid=
cleanup() {
  # Only the server this script started, by its own pid.
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [[ $host == none ]]; then
  echo "+ detour probe ${probe_args[*]} --server 127.0.0.1:9 --no-verify"
  "$detour" probe "${probe_args[@]}" --server 127.0.0.1:9 --no-verify
  status=$?
  if [[ $status -ne $expected ]]; then
    echo "FAIL: detour probe exited with $status, expected $expected"
    exit 1
  fi
  exit 0
fi

listen=$host:0
[[ $host == *:* ]] && listen="[$host]:0"
"$detour" serve --listen "$listen" --state-dir "$work/state" --log-level info \
  "${serve_args[@]}" >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!

# Wait (bounded: 10 s) for the server to say where it listens.
address=
for _ in $(seq 200); do
  address=$(grep -o 'server.listening addresses=[^ ]*' "$work/serve.log" | head -1 | cut -d= -f2)
  [[ -n $address ]] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "detour serve exited at start:"
    cat "$work/serve.log"
    exit 1
  fi
  sleep 0.05
done
if [[ -z $address ]]; then
  echo "detour serve did not start listening within 10 s"
  cat "$work/serve.log"
  exit 1
fi

echo "+ detour probe ${probe_args[*]} --server $address"
"$detour" probe "${probe_args[@]}" --server "$address" --ca "$work/state/ca.pem" >"$work/probe.out"
status=$?
cat "$work/probe.out"

failed=0
if [[ $status -ne $expected ]]; then
  echo "FAIL: detour probe exited with $status, expected $expected"
  failed=1
fi
if [[ " ${probe_args[*]} " == *" --json "* ]] && command -v python3 >/dev/null; then
  if ! python3 -m json.tool "$work/probe.out" >/dev/null; then
    echo "FAIL: the --json output is not valid JSON"
    failed=1
  fi
fi
if [[ -n ${DETOUR_PROBE_JSON_CHECK:-} ]]; then
  if ! python3 - "$work/probe.out" "$DETOUR_PROBE_JSON_CHECK" <<'PY'; then
import json, sys
d = json.load(open(sys.argv[1]))
ok = eval(sys.argv[2], {}, {"d": d})
print(f"check: {sys.argv[2]}: {'holds' if ok else 'does not hold'}")
sys.exit(0 if ok else 1)
PY
    echo "FAIL: the probe's output does not satisfy the check"
    failed=1
  fi
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "FAIL: detour serve died during the run:"
  tail -50 "$work/serve.log"
  server_pid=
  exit 1
fi
kill -TERM "$server_pid"
wait "$server_pid"
serve_status=$?
server_pid=
if [[ $serve_status -ne 0 ]]; then
  echo "FAIL: detour serve exited with $serve_status after SIGTERM"
  tail -50 "$work/serve.log"
  failed=1
fi
if [[ $failed -ne 0 ]]; then
  echo "--- server log (last 50 lines) ---"
  tail -50 "$work/serve.log"
fi
exit $failed
