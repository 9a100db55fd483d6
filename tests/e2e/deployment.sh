#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/deployment.sh: the multi-host deployment of docs/deployment.md on loopback: two
# `detour serve` instances behind nginx's UDP load balancer (the stream module) with 4-tuple
# affinity, and `detour probe load` through it with every relayed byte checked. Passes when
# every task succeeds, both backends served tasks, and all three processes stop cleanly.
# Exits 77 (CTest: skipped) only when nginx or its stream module is not installed.
#
# usage: deployment.sh DETOUR
set -uo pipefail

detour=$1

nginx=$(command -v nginx || true)
[[ -z $nginx && -x /usr/sbin/nginx ]] && nginx=/usr/sbin/nginx
if [[ -z $nginx ]]; then
  echo "SKIPPED: nginx is not installed: the multi-host deployment test did NOT run"
  echo "         (Debian: apt-get install nginx libnginx-mod-stream, or run scripts/deps)"
  exit 77
fi
# Debian builds the stream module as a dynamic module (libnginx-mod-stream); other builds
# compile it in.
load_module=
configure_flags=$("$nginx" -V 2>&1 | tr ' ' '\n')
if ! grep -qx -- '--with-stream\(=dynamic\)\?' <<<"$configure_flags"; then
  echo "SKIPPED: nginx has no stream module: the multi-host deployment test did NOT run"
  exit 77
fi
if grep -qx -- '--with-stream=dynamic' <<<"$configure_flags"; then
  module=
  for m in /usr/lib/nginx/modules/ngx_stream_module.so /usr/lib64/nginx/modules/ngx_stream_module.so; do
    [[ -f $m ]] && module=$m && break
  done
  if [[ -z $module ]]; then
    echo "SKIPPED: nginx's stream module is not installed: the multi-host deployment test did"
    echo "         NOT run (Debian: apt-get install libnginx-mod-stream, or run scripts/deps)"
    exit 77
  fi
  load_module="load_module $module;"
fi

work=$(mktemp -d)
pids=()
cleanup() {
  # Only the processes this script started, by their own pids.
  for p in "${pids[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p"; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  for f in serve-a.log serve-b.log nginx-error.log; do
    [[ -f $work/$f ]] && { echo "--- $f (last 30 lines) ---"; tail -30 "$work/$f"; }
  done
  exit 1
}

# Starts `detour serve` (both with the same development certificates: the load balancer does
# not terminate TLS, so every backend must present a certificate the clients trust) and
# sets $address once it listens. (Not in a subshell: $pids must keep its pid.)
start_serve() {
  local name=$1
  "$detour" serve --listen 127.0.0.1:0 --state-dir "$work/state" --workers 2 \
    >"$work/serve-$name.out" 2>"$work/serve-$name.log" &
  pids+=($!)
  address=
  for _ in $(seq 200); do
    address=$(grep -o 'server.listening addresses=[^ ]*' "$work/serve-$name.log" | head -1 |
      cut -d= -f2)
    [[ -n $address ]] && break
    kill -0 "${pids[-1]}" 2>/dev/null || fail "detour serve $name exited at start"
    sleep 0.05
  done
  [[ -n $address ]] || fail "detour serve $name did not listen within 10 s"
}

start_serve a
backend_a=$address
start_serve b
backend_b=$address
echo "backends: $backend_a $backend_b"

# A free UDP port for nginx (nginx cannot report a kernel-chosen one); retried on a collision.
free_udp_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

front=
for attempt in 1 2 3 4 5; do
  port=$(free_udp_port)
  cat >"$work/nginx.conf" <<EOF
$load_module
daemon off;
master_process on;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log info;
events { worker_connections 1024; }
stream {
  # 4-tuple affinity: a client's address and port always choose the same backend, for as long
  # as its QUIC connection lives (and a session keeps it, proxy_timeout below).
  upstream detour {
    hash \$remote_addr\$remote_port consistent;
    server $backend_a;
    server $backend_b;
  }
  server {
    listen 127.0.0.1:$port udp;
    proxy_pass detour;
    # above detour's 120 s QUIC idle timeout: nginx must not forget a live connection's backend
    proxy_timeout 180s;
  }
}
EOF
  "$nginx" -p "$work" -c "$work/nginx.conf" -e "$work/nginx-error.log" &
  pids+=($!)
  nginx_pid=${pids[-1]}
  # Up when its error log says so, or when a UDP socket is bound to the port.
  for _ in $(seq 100); do
    kill -0 "$nginx_pid" 2>/dev/null || break
    if grep -q "start worker process" "$work/nginx-error.log" 2>/dev/null; then
      front=127.0.0.1:$port
      break
    fi
    sleep 0.05
  done
  [[ -n $front ]] && break
  if grep -q "Address already in use" "$work/nginx-error.log" 2>/dev/null; then
    echo "port $port taken, another one"
    continue
  fi
  fail "nginx did not start"
done
[[ -n $front ]] || fail "nginx found no free port"
echo "nginx: $front"

# 32 connections, 32 source ports: nginx's hash sends them to both backends (all to one has
# a chance of 2^-31). Every task's bytes come back checked by the probe.
echo "+ detour probe load --server $front --tasks 600 --concurrency 64 --bytes 16k --connections 32"
"$detour" probe load --server "$front" --ca "$work/state/ca.pem" --tasks 600 --concurrency 64 \
  --bytes 16k --connections 32 --response-timeout 10s --idle-timeout 20s --handshake-timeout 10s \
  --deadline 180s >"$work/probe.out"
status=$?
cat "$work/probe.out"
[[ $status -eq 0 ]] || fail "detour probe load exited with $status"

tasks_a=$(grep -c 'task.end .*how=finished' "$work/serve-a.log")
tasks_b=$(grep -c 'task.end .*how=finished' "$work/serve-b.log")
echo "tasks served: backend a $tasks_a, backend b $tasks_b"
[[ $tasks_a -gt 0 ]] || fail "backend a served no task"
[[ $tasks_b -gt 0 ]] || fail "backend b served no task"
[[ $((tasks_a + tasks_b)) -eq 600 ]] || fail "600 tasks sent, $((tasks_a + tasks_b)) served"

# A clean stop: nginx first (it is only a relay), then the backends drain and exit 0.
kill -TERM "$nginx_pid"
wait "$nginx_pid"
for p in "${pids[0]}" "${pids[1]}"; do
  kill -TERM "$p"
  wait "$p"
  s=$?
  [[ $s -eq 0 ]] || fail "detour serve exited with $s after SIGTERM"
done
pids=()
echo "PASS"
