#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/example_smtp_redactor.sh: the custom server of docs/examples/smtp_redactor.cpp on
# loopback, tested with `detour probe` as a user would:
#   1. `probe check` passes: apart from SMTP messages it is a pass-through server;
#   2. `probe load --protocol smtp --relay-data protocol` fails exactly where the message's card
#      number comes back masked (data_mismatch at its first digit), every task;
#   3. its capture shows the masked number and never the original (read back with tshark, which
#      must be installed: Debian package tshark, installed by scripts/deps);
#   4. it stops cleanly on SIGTERM and says how many numbers it masked.
#
# usage: example_smtp_redactor.sh SMTP_REDACTOR DETOUR
set -uo pipefail

redactor=$1
detour=$2
work=$(mktemp -d)
pid=
cleanup() {
  # Only the server this script started, by its own pid.
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "--- server log (last 30 lines) ---"
  tail -30 "$work/serve.log"
  exit 1
}

"$redactor" --listen 127.0.0.1:0 --state-dir "$work/state" --capture "$work/tasks.pcap" \
  --audit "$work/audit.jsonl" >"$work/serve.out" 2>"$work/serve.log" &
pid=$!
address=
for _ in $(seq 200); do # bounded: 10 s
  address=$(grep -o 'server.listening addresses=[^ ]*' "$work/serve.log" | head -1 | cut -d= -f2)
  [[ -n $address ]] && break
  kill -0 "$pid" 2>/dev/null || fail "smtp-redactor exited at start"
  sleep 0.05
done
[[ -n $address ]] || fail "smtp-redactor did not start listening within 10 s"
probe=("$detour" probe --server "$address" --ca "$work/state/ca.pem" --response-timeout 5s
  --idle-timeout 10s --handshake-timeout 5s --stream-open-timeout 10s)

echo "+ detour probe check"
"${probe[0]}" "${probe[1]}" check "${probe[@]:2}" --deadline 120s >"$work/check.out"
status=$?
cat "$work/check.out"
[[ $status -eq 0 ]] || fail "probe check exited with $status"

echo "+ detour probe load --protocol smtp --relay-data protocol --tasks 8"
"${probe[0]}" "${probe[1]}" load "${probe[@]:2}" --protocol smtp --relay-data protocol --tasks 8 \
  --concurrency 4 --deadline 60s >"$work/load.out"
status=$?
cat "$work/load.out"
[[ $status -eq 1 ]] || fail "probe load exited with $status; the masked card number must fail it"
grep -Eq 'data_mismatch +8 ' "$work/load.out" || fail "expected 8 data_mismatch failures"
# The first digit of "4111 1111 1111 1111" comes back as 'X' (0x58) instead of '4' (0x34).
grep -q "north echo differs at relay offset [0-9]*: sent 0x34, got 0x58" "$work/load.out" ||
  fail "the mismatch is not the card number's first digit"

kill -TERM "$pid"
wait "$pid"
status=$?
pid=
[[ $status -eq 0 ]] || fail "smtp-redactor exited with $status after SIGTERM"
grep -q "smtp-redactor: 8 card number(s) masked" "$work/serve.log" || fail "no count of 8"
[[ $(wc -l <"$work/audit.jsonl") -ge 8 ]] || fail "the audit file lacks the tasks"

command -v tshark >/dev/null ||
  fail "tshark is not on the PATH: install it (Debian package tshark; scripts/deps does)"
# Every message, as tshark decodes it (Internet Message Format, after SMTP DATA).
body=$(tshark -r "$work/tasks.pcap" -Y imf -V 2>/dev/null)
[[ $(grep -c "Subject: detour probe" <<<"$body") -eq 8 ]] || fail "not 8 messages in the capture"
grep -q "XXXX XXXX XXXX 1111" <<<"$body" || fail "the capture does not show the masked number"
if grep -q "4111 1111 1111 1111" <<<"$body"; then fail "the capture shows the card number"; fi
echo "PASS"
