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
