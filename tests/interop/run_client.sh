#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/interop/run_client.sh: runs an independent stream detour client (the quinn one, on
# g3proxy's own QUIC and TLS stack, or the quic-go one) against a fresh `detour serve` on a
# loopback port chosen by the kernel, with certificates in a temporary folder; then checks that
# the server's log agrees with what the client saw and that the server stops cleanly on SIGTERM.
#
# usage: run_client.sh DETOUR CLIENT SETUP HOST [SERVE_ARGS...] -- [CLIENT_ARGS...]
#   SETUP  dev          the development certificates `detour serve` makes in its state folder
#          mtls         a `detour cert` set; serve --client-ca; the client presents client.pem
#          mtls-nocert  the same server; the client presents no certificate
#          wrong-ca     development certificates; the client trusts another CA
#          wrong-ip     a server certificate for 192.0.2.1 only
#          rsa          an RSA-2048 CA and server certificate made by openssl (an enterprise
#                       PKI's usual kind; TLS 1.3 signs with RSA-PSS)
#          ed25519      an Ed25519 CA, server and client certificate made by openssl; serve
#                       --client-ca; the client presents its certificate (mutual TLS, both
#                       signatures Ed25519)
#   HOST   127.0.0.1 or ::1
# --server, --ca, --cert and --key are added to the client's arguments. KEEP_WORK=1 keeps the
# temporary folder (certificates, the server's log) for a look after the run.
set -uo pipefail

detour=$1 client=$2 setup=$3 host=$4
shift 4
serve_args=()
while [[ $# -gt 0 && $1 != -- ]]; do
  serve_args+=("$1")
  shift
done
[[ $# -gt 0 ]] && shift # the --
client_args=("$@")

work=$(mktemp -d)
server_pid=
cleanup() {
  # Only the server this script started, by its own pid.
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then kill -KILL "$server_pid"; fi
  [[ -n ${KEEP_WORK:-} ]] || rm -rf "$work"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  echo "--- server log (last 40 lines) ---"
  tail -40 "$work/serve.log"
  exit 1
}

# Certificates.
ca=$work/state/ca.pem
case $setup in
  dev) ;;
  mtls | mtls-nocert | wrong-ip)
    ip_args=()
    [[ $setup == wrong-ip ]] && ip_args=(--ip 192.0.2.1)
    "$detour" cert --out "$work/pki" "${ip_args[@]}" >/dev/null || { echo "detour cert failed"; exit 1; }
    ca=$work/pki/ca.pem
    serve_args+=(--cert "$work/pki/server.pem" --key "$work/pki/server.key")
    [[ $setup == mtls* ]] && serve_args+=(--client-ca "$work/pki/ca.pem")
    [[ $setup == mtls ]] && client_args+=(--cert "$work/pki/client.pem" --key "$work/pki/client.key")
    ;;
  wrong-ca)
    "$detour" cert --out "$work/other" >/dev/null || { echo "detour cert failed"; exit 1; }
    ca=$work/other/ca.pem
    ;;
  rsa)
    command -v openssl >/dev/null || { echo "SKIP: needs openssl"; exit 77; }
    mkdir -p "$work/rsa"
    (
      cd "$work/rsa" &&
        openssl req -x509 -newkey rsa:2048 -nodes -days 90 -subj /CN=rsa-ca \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
          -keyout ca.key -out ca.pem &&
        openssl req -newkey rsa:2048 -nodes -subj /CN=detour -keyout server.key -out server.csr &&
        printf 'subjectAltName=IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n' >ext.cnf &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 \
          -extfile ext.cnf -out server.pem
    ) >/dev/null 2>&1 || { echo "openssl could not make the RSA certificates"; exit 1; }
    ca=$work/rsa/ca.pem
    serve_args+=(--cert "$work/rsa/server.pem" --key "$work/rsa/server.key")
    ;;
  ed25519)
    command -v openssl >/dev/null || { echo "SKIP: needs openssl"; exit 77; }
    mkdir -p "$work/ed"
    (
      cd "$work/ed" &&
        openssl req -x509 -newkey ed25519 -nodes -days 90 -subj /CN=ed25519-ca \
          -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
          -keyout ca.key -out ca.pem &&
        openssl req -newkey ed25519 -nodes -subj /CN=detour -keyout server.key -out server.csr &&
        printf 'subjectAltName=IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n' >server.cnf &&
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 \
          -extfile server.cnf -out server.pem &&
        openssl req -newkey ed25519 -nodes -subj /O=detour/CN=g3proxy -keyout client.key \
          -out client.csr &&
        printf 'extendedKeyUsage=clientAuth\n' >client.cnf &&
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 90 \
          -extfile client.cnf -out client.pem
    ) >/dev/null 2>&1 || { echo "openssl could not make the Ed25519 certificates"; exit 1; }
    ca=$work/ed/ca.pem
    serve_args+=(--cert "$work/ed/server.pem" --key "$work/ed/server.key" --client-ca "$ca")
    client_args+=(--cert "$work/ed/client.pem" --key "$work/ed/client.key")
    ;;
  *) echo "unknown setup $setup"; exit 2 ;;
esac

listen=$host:0
[[ $host == *:* ]] && listen="[$host]:0"
"$detour" serve --listen "$listen" --state-dir "$work/state" --log-level info \
  "${serve_args[@]}" >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!

# Wait (bounded: 10 s) until the server says where it listens.
address=
for _ in $(seq 200); do
  address=$(grep -o 'server.listening addresses=[^ ]*' "$work/serve.log" | head -1 | cut -d= -f2)
  [[ -n $address ]] && break
  kill -0 "$server_pid" 2>/dev/null || fail "detour serve exited at start"
  sleep 0.05
done
[[ -n $address ]] || fail "detour serve did not start listening within 10 s"

echo "+ $(basename "$client") --server $address --ca $ca ${client_args[*]}"
"$client" --server "$address" --ca "$ca" "${client_args[@]}" | tee "$work/client.out"
status=${PIPESTATUS[0]}
[[ $status -eq 0 ]] || fail "$(basename "$client") exited with $status"

# Stop the server (bounded: 40 s; its drain timeout is 30 s) and expect a clean exit.
kill -0 "$server_pid" 2>/dev/null || fail "detour serve died during the run"
kill -TERM "$server_pid"
for _ in $(seq 400); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
kill -0 "$server_pid" 2>/dev/null && fail "detour serve did not stop within 40 s of SIGTERM"
wait "$server_pid"
serve_status=$?
server_pid=
[[ $serve_status -eq 0 ]] || fail "detour serve exited with $serve_status after SIGTERM"

# The server's view must agree with the client's.
log=$work/serve.log
count() { grep -c -- "$1" "$log"; }
grep -E '^[^ ]+ (warn|error) ' "$log" && fail "the server logged warnings or errors (above)"
case $setup in
  dev | mtls | ed25519)
    read -r connections resumed answered < <(sed -n \
      's/^totals: connections=\([0-9]*\) resumed=\([0-9]*\) answered=\([0-9]*\)$/\1 \2 \3/p' \
      "$work/client.out")
    [[ -n ${answered:-} ]] || fail "no totals line from the client"
    [[ $(count ' conn.open ') -eq $connections ]] ||
      fail "the client made $connections connections, the server logged $(count ' conn.open ') conn.open"
    [[ $(count ' conn.open .*resumed=true') -eq $resumed ]] ||
      fail "the client resumed $resumed sessions, the server logged $(count 'resumed=true') resumed=true"
    [[ $(count ' task.end ') -eq $answered ]] ||
      fail "the server answered $answered tasks but logged $(count ' task.end ') task.end"
    closes=$(count ' conn.close ')
    finished=$(count ' conn.close .*reason=finished code=app:0x0')
    [[ $closes -eq $connections && $finished -eq $closes ]] ||
      fail "$closes conn.close lines, $finished of them reason=finished code=app:0x0; expected $connections"
    if [[ $setup == ed25519 ]]; then
      # This wolfSSL verifies Ed25519 certificates but cannot read their subject: full
      # handshakes say so, resumed ones as under mtls when nothing was remembered.
      [[ $(count ' conn.open .*client_cert=(verified)') -eq $((connections - resumed)) ]] ||
        fail "$(count 'client_cert=(verified)') conn.open lines say client_cert=(verified); expected $((connections - resumed))"
      [[ $(count ' conn.open .*client_cert=(resumed)') -eq $resumed ]] ||
        fail "$(count 'client_cert=(resumed)') conn.open lines say client_cert=(resumed); expected $resumed"
    fi
    if [[ $setup == mtls ]]; then
      # Resumed connections present no certificate; the server still names the one verified
      # when their session began (FINDINGS.md #2).
      named=$(count ' conn.open .*client_cert="/O=detour/CN=g3proxy"')
      [[ $named -eq $connections ]] ||
        fail "$named of $connections conn.open lines name the client certificate"
    fi
    ;;
  mtls-nocert)
    [[ $(count ' conn.handshake_failed ') -ge 1 ]] || fail "no conn.handshake_failed logged"
    [[ $(count ' conn.open ') -eq 0 ]] || fail "a connection without a client certificate was opened"
    ;;
  wrong-ca | wrong-ip)
    [[ $(count ' conn.open ') -eq 0 ]] || fail "a connection was opened though the client refused it"
    ;;
esac
echo "server log agrees; detour serve stopped cleanly"
