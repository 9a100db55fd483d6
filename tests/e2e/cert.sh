#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tests/e2e/cert.sh: `detour cert` refuses bad values (exit 2) before it writes anything, and
# what it writes verifies with openssl: a key that does not match --ca-cert, a leaf given as CA,
# bad DNS names, unspecified or malformed IP addresses, a too-long --client-name; the leaves
# never outlive a reused CA (a shorter default with a warning, an explicit --days refused).
#
# usage: cert.sh DETOUR    (exit 77, skipped, without openssl)
set -uo pipefail

detour=$1
command -v openssl >/dev/null || { echo "SKIP: this test needs openssl (apt-get install openssl)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
fail() {
  echo "FAIL: $*"
  failed=1
}

# expect_refused NAME MESSAGE ARGS...: exit 2, MESSAGE on stderr, no --out folder left.
expect_refused() {
  local name=$1 message=$2
  shift 2
  local out=$work/refused
  rm -rf "$out"
  "$detour" cert --out "$out" "$@" >"$work/stdout" 2>"$work/stderr"
  local status=$?
  [[ $status -eq 2 ]] || fail "$name: exit status $status, expected 2 ($(cat "$work/stderr"))"
  grep -qF -- "$message" "$work/stderr" ||
    fail "$name: stderr lacks '$message': $(cat "$work/stderr")"
  [[ ! -e $out ]] || fail "$name: $out was left behind"
}

"$detour" cert --out "$work/base" >/dev/null || fail "a first set could not be made"
openssl verify -CAfile "$work/base/ca.pem" "$work/base/server.pem" >/dev/null ||
  fail "the first set does not verify"

expect_refused "a key of another certificate" "does not match the certificate" \
  --ca-cert "$work/base/ca.pem" --ca-key "$work/base/server.key"
expect_refused "a leaf as CA" "is not a CA certificate" \
  --ca-cert "$work/base/server.pem" --ca-key "$work/base/server.key"
expect_refused "an empty DNS name" "is not a DNS name" --dns ''
expect_refused "a DNS name with a space" "is not a DNS name" --dns 'bad name!'
expect_refused "0.0.0.0" "unspecified address" --ip 0.0.0.0
expect_refused "::" "unspecified address" --ip ::
expect_refused "a malformed IPv4 address" "not an IPv4 or IPv6 address" --ip 10.0.0.999
expect_refused "a client name of 64 bytes" "--client-name" \
  --client-name "$(printf 'c%.0s' $(seq 64))"

# A CA of openssl's that ends in 10 days; an expired one cannot be made without a fake clock
# (the unit tests cover it).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 10 -subj /CN=short \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$work/short.key" -out "$work/short.pem" 2>/dev/null || fail "openssl req failed"
expect_refused "--days past the CA's end" "would outlive the CA" \
  --ca-cert "$work/short.pem" --ca-key "$work/short.key" --days 30
"$detour" cert --out "$work/short" --ca-cert "$work/short.pem" --ca-key "$work/short.key" \
  >/dev/null 2>"$work/stderr" || fail "a set under a short CA could not be made"
grep -qF "warning: the CA" "$work/stderr" || fail "no warning about the shorter validity"
for leaf in server client; do
  openssl verify -CAfile "$work/short/ca.pem" "$work/short/$leaf.pem" >/dev/null ||
    fail "$leaf.pem does not verify against the short CA"
  # Still valid in 8 days, not beyond the CA's end.
  openssl x509 -in "$work/short/$leaf.pem" -noout -checkend $((8 * 86400)) >/dev/null ||
    fail "$leaf.pem ends too early"
  ca_end=$(date -d "$(openssl x509 -in "$work/short.pem" -noout -enddate | cut -d= -f2)" +%s)
  leaf_end=$(date -d "$(openssl x509 -in "$work/short/$leaf.pem" -noout -enddate | cut -d= -f2)" +%s)
  [[ $leaf_end -le $ca_end ]] || fail "$leaf.pem outlives its CA"
done

# A reused CA that is fine gives a set that verifies.
"$detour" cert --out "$work/more" --ca-cert "$work/base/ca.pem" --ca-key "$work/base/ca.key" \
  --ip 10.0.0.6 --dns '*.detour.example' >/dev/null || fail "a second set could not be made"
openssl verify -CAfile "$work/more/ca.pem" "$work/more/server.pem" >/dev/null ||
  fail "the second set does not verify"

# A client name that is no DNS name is the common name alone (no subjectAltName).
"$detour" cert --out "$work/named" --client-name "proxy eu 1" >/dev/null 2>"$work/stderr" ||
  fail "a client name with spaces was refused: $(cat "$work/stderr")"
openssl x509 -in "$work/named/client.pem" -noout -subject | grep -qF "CN = proxy eu 1" ||
  fail "the client certificate does not carry its name"
openssl x509 -in "$work/named/client.pem" -noout -text | grep -q "Subject Alternative Name" &&
  fail "the client certificate names 'proxy eu 1' as a DNS name"
openssl verify -CAfile "$work/named/ca.pem" "$work/named/client.pem" >/dev/null ||
  fail "the named client certificate does not verify"

[[ $failed -eq 0 ]] && echo "all passed"
exit $failed
