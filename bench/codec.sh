#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/codec.sh: the codec benchmark, in one run next to pires/go-proxyproto decoding the same
# bytes: builds bench/codec_bench.cpp optimised (Release) in its own build directory, dumps the
# two headers it measures, builds bench/go/main.go against Debian's
# golang-github-pires-go-proxyproto-dev, runs both and prints medians, allocations and ratios;
# with valgrind installed, also the instructions per call of each C++ benchmark (callgrind: the
# difference between 2000 and 6000 calls of the same optimised binary, which load does not
# change).
#   bench/codec.sh            # needs: apt-get install golang-go golang-github-pires-go-proxyproto-dev
# DETOUR_BENCH_BUILD (default build/bench) sets the build directory; DETOUR_BENCH_ROUNDS the
# rounds of the C++ side (default 31 of 20 ms); the Go side runs 11 rounds of 200 ms.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build=${DETOUR_BENCH_BUILD:-build/bench}
rounds=${DETOUR_BENCH_ROUNDS:-31}
gopath=/usr/share/gocode
if ! command -v go >/dev/null || [ ! -d "$gopath/src/github.com/pires/go-proxyproto" ]; then
  echo "codec.sh: needs golang-go and golang-github-pires-go-proxyproto-dev (apt-get install them)" >&2
  exit 2
fi

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDETOUR_BUILD_BENCH=ON \
  -DDETOUR_BUILD_TESTS=OFF -DDETOUR_BUILD_CLI=OFF -DDETOUR_INSTALL=OFF >/dev/null
cmake --build "$build" --target detour-codec-bench >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$build/bench/detour-codec-bench" --dump "$work" --rounds 1 --round-ms 1 >/dev/null
GO111MODULE=off GOPATH=$gopath GOCACHE="$work/gocache" GOFLAGS= go build -o "$work/gobench" bench/go/main.go

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "compiler: $(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt") -O3 (Release); $(go version)"
"$build/bench/detour-codec-bench" --json --rounds "$rounds" >"$work/cpp.json"
"$work/gobench" -north "$work/north.bin" -haproxy "$work/haproxy.bin" >"$work/go.json"
"$build/bench/detour-codec-bench" --json --rounds "$rounds" >"$work/cpp2.json"

# Instructions per call: callgrind over N calls of one benchmark, for two N (what runs once,
# start-up and calibration, cancels out).
: >"$work/instructions"
if command -v valgrind >/dev/null; then
  instructions() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$build/bench/detour-codec-bench" \
      --only "$1" --calls "$2" 2>&1 | sed -n 's/.*Collected : *//p'
  }
  python3 -c 'import json,sys; [print(r["name"]) for r in json.load(open(sys.argv[1]))["results"]]' \
    "$work/cpp.json" | while IFS= read -r name; do
    a=$(instructions "$name" 2000)
    b=$(instructions "$name" 6000)
    printf '%s\t%s\n' "$name" "$(((b - a) / 4000))" >>"$work/instructions"
  done
fi

python3 - "$work" <<'PY'
import json, sys, pathlib
w = pathlib.Path(sys.argv[1])
cpp = json.loads((w / "cpp.json").read_text())
cpp2 = json.loads((w / "cpp2.json").read_text())
go = {r["name"]: r for r in json.loads((w / "go.json").read_text())["results"]}
# The C++ side runs before and after the Go side; each figure is the mean of its two medians.
both = {r["name"]: r for r in cpp["results"]}
for r in cpp2["results"]:
    a = both[r["name"]]
    a["median_ns"] = (a["median_ns"] + r["median_ns"]) / 2
instructions = dict(line.rstrip("\n").split("\t") for line in (w / "instructions").open())
print(f"north header {cpp['north_bytes']} bytes, HAProxy SSL header {cpp['haproxy_bytes']} bytes\n")
print(f"{'C++ (detour)':<44} {'median ns':>10} {'allocs':>7} {'instructions':>13}")
for r in cpp["results"]:
    print(f"{r['name']:<44} {both[r['name']]['median_ns']:>10.1f} {r['allocs_per_call']:>7.2f}"
          f" {instructions.get(r['name'], '-'):>13}")
print(f"\n{'Go (go-proxyproto)':<44} {'median ns':>10} {'allocs':>7}")
for r in go.values():
    print(f"{r['name']:<44} {r['median_ns']:>10.1f} {r['allocs_per_call']:>7.2f}")
print("\nratios (Go median / C++ median, same work):")
for c, g in (("north: decode_north_request", "north: Read + typed detour fields"),
             ("north: ppv2::decode only", "north: Read"),
             ("haproxy ssl: ppv2::decode + TLVs read", "haproxy ssl: Read + TLVs read")):
    print(f"  {c:<44} vs {g:<36} {go[g]['median_ns'] / both[c]['median_ns']:>6.1f}x")
print("\nincremental against one-shot (C++ median / C++ median, same run):")
for c, g in (("north: ppv2::decoder alone, one piece", "north: ppv2::decode only"),
             ("north: ppv2::decoder + parse_stream_header", "north: decode_stream_header")):
    print(f"  {c:<44} vs {g:<36} {both[c]['median_ns'] / both[g]['median_ns']:>6.2f}x")
PY
