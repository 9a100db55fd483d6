# End-to-end tests of `detour probe` against the real `detour serve` on loopback (127.0.0.1 and
# ::1): the conformance suite, the abuse cases, a small load and the exit statuses. Each run is
# bounded by the probe's --deadline and by the CTest TIMEOUT.
set(_probe_runner ${CMAKE_CURRENT_LIST_DIR}/probe_against_serve.sh)
# Short waits: loopback answers in microseconds; these only bound a misbehaving server.
set(_probe_quick --response-timeout 5s --idle-timeout 10s --handshake-timeout 5s
  --stream-open-timeout 10s)

# detour_probe_test(<name> <host> <expected exit> [serve args...] -- <probe args...>)
function(detour_probe_test name host expected)
  add_test(NAME "e2e: probe ${name}"
    COMMAND bash ${_probe_runner} $<TARGET_FILE:detour_cli> ${host} ${expected} ${ARGN})
  set_tests_properties("e2e: probe ${name}" PROPERTIES LABELS "e2e;probe" TIMEOUT 300)
endfunction()

# detour_probe_json_test(<name> <host> <check> [serve args...] -- <probe args...>): the probe
# passes (exit 0) and its --json output satisfies <check>, a Python expression over `d`.
function(detour_probe_json_test name host check)
  add_test(NAME "e2e: probe ${name}"
    COMMAND bash ${_probe_runner} $<TARGET_FILE:detour_cli> ${host} 0 ${ARGN} --json)
  set_tests_properties("e2e: probe ${name}" PROPERTIES LABELS "e2e;probe" TIMEOUT 300
    ENVIRONMENT "DETOUR_PROBE_JSON_CHECK=${check}")
endfunction()

detour_probe_test("check against detour serve on 127.0.0.1" 127.0.0.1 0
  -- check ${_probe_quick} --deadline 120s)
detour_probe_test("check against detour serve on ::1" ::1 0
  -- check ${_probe_quick} --deadline 120s --json)
# A client offering ALPN needs one of its names selected (RFC 9001 §8.1): check requires it.
detour_probe_test("check offering ALPN against detour serve" 127.0.0.1 0
  -- check ${_probe_quick} --alpn x-first,detour --deadline 120s)
detour_probe_test("check expecting block against detour serve --action block" 127.0.0.1 0
  --action block -- check ${_probe_quick} --expect-action block --deadline 120s)
detour_probe_test("check fails (exit 1) when the server blocks and continue is expected"
  127.0.0.1 1 --action block -- check ${_probe_quick} --deadline 120s)
# The server's defaults and the probe's default --abuse-wait (5s): every refusal the cases
# expect must come at once, not after one of the server's timeouts.
detour_probe_test("abuse against detour serve" 127.0.0.1 0
  -- abuse ${_probe_quick} --deadline 240s)
detour_probe_test("load: 400 tasks, 32 at once, 16 KiB each way" 127.0.0.1 0
  -- load ${_probe_quick} --tasks 400 --concurrency 32 --bytes 16k --connections 8 --deadline 120s
  --json)
detour_probe_test("load of websocket tasks on ::1" ::1 0
  -- load ${_probe_quick} --protocol websocket --tasks 100 --concurrency 16 --bytes 4k
  --deadline 120s)
# --rate: an open loop. 200 tasks at 400/s cannot end before the last one is due (199/400 s
# after the first), so the rate measured cannot exceed the one asked for; a closed loop on
# loopback runs them in a few milliseconds.
detour_probe_json_test("load --rate keeps to its schedule" 127.0.0.1
  "d['target_rate'] == 400 and d['passed'] == 200 and d['elapsed_s'] >= 199 / 400 and d['tasks_per_s'] <= 400 * 200 / 199 * 1.0001 and d['start_lag']['count'] == 200"
  -- load ${_probe_quick} --tasks 200 --rate 400 --concurrency 16 --bytes 1k --deadline 120s)
# With one slot and all 50 tasks due within 50 us, each waits for the ones before it: that
# wait is in its latency (counted from when it was due), so the last task's latency spans
# nearly the whole run, and 49 of them started late for want of a slot.
detour_probe_json_test("load --rate counts the wait for a slot in the latency" 127.0.0.1
  "d['slot_waits'] >= 45 and d['latency']['max_ms'] >= d['elapsed_s'] * 1000 - 0.1 and d['start_lag']['max_ms'] > 0"
  -- load ${_probe_quick} --tasks 50 --rate 1000000 --concurrency 1 --bytes 1k --deadline 120s)
detour_probe_json_test("handshakes --rate keeps to its schedule" 127.0.0.1
  "d['target_rate'] == 100 and d['handshakes'] == 40 and d['elapsed_s'] >= 39 / 100"
  -- handshakes ${_probe_quick} --tasks 40 --rate 100 --concurrency 4 --deadline 120s)
detour_probe_test("--rate outside load and handshakes is a usage error (exit 2)" none 2
  -- throughput --rate 100)
detour_probe_test("throughput: 2 tasks x 16 MiB each way" 127.0.0.1 0
  -- throughput ${_probe_quick} --streams 2 --bytes 16m --deadline 120s)
detour_probe_test("handshakes: 40 full handshakes" 127.0.0.1 0
  -- handshakes ${_probe_quick} --tasks 40 --concurrency 4 --deadline 120s --json)
detour_probe_test("gives up in time where nothing listens (exit 1)" none 1
  -- check --handshake-timeout 1s --deadline 30s)
# The kernel's ICMP port unreachable ends the handshake at once, with its cause, well before a
# handshake timeout of 30 s; one line stands for the checks that need a connection.
add_test(NAME "e2e: probe check says at once that nothing listens"
  COMMAND bash -c [=[out=$("$0" probe check --server 127.0.0.1:9 --no-verify --handshake-timeout 30s --deadline 60s); rc=$?; echo "$out"; [[ $rc -eq 1 ]] && grep -q "connection refused: nothing listens on 127.0.0.1:9 (ICMP port unreachable)" <<<"$out" && grep -q "the other 32 checks need a connection to the server: not run" <<<"$out" && [[ $(grep -c "not run" <<<"$out") -eq 2 ]]]=]
    $<TARGET_FILE:detour_cli>)
set_tests_properties("e2e: probe check says at once that nothing listens"
  PROPERTIES LABELS "e2e;probe" TIMEOUT 60)
detour_probe_test("hold: 50 idle connections for 1 s" 127.0.0.1 0
  -- hold ${_probe_quick} --connections 50 --concurrency 8 --hold 1s --deadline 60s)
detour_probe_test("hold fails (exit 1) when the server refuses connections past its limit"
  127.0.0.1 1 --max-connections 10 -- hold ${_probe_quick} --connections 20 --hold 1s
  --deadline 60s --json)
# A hold longer than the run's deadline is cut by it and fails (kind deadline), as tasks do.
detour_probe_test("hold cut by the run's deadline fails (exit 1)" 127.0.0.1 1
  -- hold ${_probe_quick} --connections 10 --hold 30s --deadline 1s --json)
detour_probe_test("abuse --case that matches no case is a usage error (exit 2)" none 2
  -- abuse --case no-such-case)
