#!/usr/bin/env bash
# bench/session.sh: the sessions benchmark. Builds bench/session_bench.cpp optimised (Release)
# in its own build directory and runs it three times; each line reports the median over those
# runs of the median ns per task, the allocations per task, and the ratio of a task through the
# sessions layer to the bare decode of its two headers measured in the same run. Timings on a
# shared machine are noisy, so when valgrind is installed it also counts the instructions per
# task (callgrind, the difference between two task counts), which no other load disturbs.
#   bench/session.sh
# DETOUR_BENCH_BUILD (default build/bench) sets the build directory; DETOUR_BENCH_ROUNDS the
# rounds per run (default 31, 20000 tasks each).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build=${DETOUR_BENCH_BUILD:-build/bench}
rounds=${DETOUR_BENCH_ROUNDS:-31}

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDETOUR_BUILD_BENCH=ON \
  -DDETOUR_BUILD_TESTS=OFF -DDETOUR_BUILD_CLI=OFF -DDETOUR_INSTALL=OFF >/dev/null
cmake --build "$build" --target detour-session-bench >/dev/null
bench="$build/bench/detour-session-bench"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "compiler: $(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build/CMakeCache.txt") -O3 (Release)"
for run in 1 2 3; do "$bench" --json --rounds "$rounds" >"$work/run$run.json"; done

if command -v valgrind >/dev/null; then
  for mode in decode session driver; do
    for tasks in 2000 6000; do
      valgrind --tool=callgrind --callgrind-out-file="$work/cg.$mode.$tasks" \
        "$bench" --only "$mode" --rounds 1 --tasks "$tasks" >/dev/null 2>&1
    done
  done
fi

python3 - "$work" <<'PY'
import json, pathlib, re, statistics, sys
w = pathlib.Path(sys.argv[1])
runs = [json.loads((w / f"run{i}.json").read_text()) for i in (1, 2, 3)]
names = {"decode_two_headers": "decode north + south headers (reference)",
         "session_task": "session task: header, answer, hello, pairing",
         "server_connection_memory_pipes": "server_connection over memory pipes"}
modes = {"decode_two_headers": "decode", "session_task": "session",
         "server_connection_memory_pipes": "driver"}

def instructions(mode):
    counts = []
    for tasks in (2000, 6000):
        f = w / f"cg.{mode}.{tasks}"
        if not f.exists():
            return None
        m = re.search(r"^summary: (\d+)", f.read_text(), re.M)
        counts.append(int(m.group(1)))
    return (counts[1] - counts[0]) / (2 * (6000 - 2000))  # warm-up + one round: 2 x tasks

print(f"\n{runs[0]['rounds']} rounds of {runs[0]['tasks_per_round']} tasks per run, 3 runs\n")
print(f"{'per task':<46} {'median ns':>10} {'best run':>9} {'allocs':>7} {'instr.':>8}")
for key, label in names.items():
    medians = [r[key]["median_ns"] for r in runs]
    ins = instructions(modes[key])
    print(f"{label:<46} {statistics.median(medians):>10.1f} {min(medians):>9.1f} "
          f"{runs[0][key]['allocs']:>7.3f} {ins if ins is None else round(ins):>8}")
ratios = [r["task_over_decode"] for r in runs]
print(f"\nsession task / bare decode, same run: median {statistics.median(ratios):.2f}x")
PY
