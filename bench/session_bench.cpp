// SPDX-License-Identifier: MIT
// bench/session_bench.cpp: per-task overhead of the sessions layer without I/O: north header ->
// answer -> south hello -> pairing -> teardown, through stream_session and pairing_table, with
// the bare decode of the same two headers measured in the same run as the reference. Reports
// the median ns per task over rounds and heap allocations per task (a counting operator new).
//   session_bench [--rounds N] [--tasks N] [--json] [--only decode|session|driver]
// --only runs one measurement (bench/session.sh counts instructions per task that way).
#include <detour/io/memory_pipe.hpp>
#include <detour/io/server_connection.hpp>
#include <detour/pairing.hpp>
#include <detour/request.hpp>
#include <detour/session.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

// --- Allocation counting ------------------------------------------------------------------------
namespace {
std::atomic<std::uint64_t> allocations{0};
}

// Out of line, so the optimiser does not pair an inlined malloc with a sized delete and warn.
[[gnu::noinline]] void* operator new(std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

using namespace detour;
using clock_type = std::chrono::steady_clock;

template <class T>
inline void keep(const T& value) {
  asm volatile("" : : "g"(&value) : "memory");
}

// The bytes g3proxy sends for task k of a connection (match id k & 0xFFFF): a TCP4 north
// request with all six custom TLVs and no payload (an SMTP task), and its south hello.
struct task_bytes {
  std::vector<std::uint8_t> north, south;
};

task_bytes make_task(std::uint16_t match_id) {
  north_request r;
  r.client = {ip_address::v4(192, 0, 2, 10), 50123};
  r.proxy = {ip_address::v4(198, 51, 100, 1), 8443};
  r.upstream = *parse_upstream("mail.example.com:25");
  r.username = "alice";
  for (std::size_t i = 0; i < 16; ++i) r.task_id.bytes[i] = static_cast<std::uint8_t>(i * 7);
  r.protocol_name = "smtp";
  r.protocol = protocol_kind::smtp;
  r.match_id = match_id;
  std::array<std::uint8_t, 600> buf{};
  const auto n = encode_north_request(r, buf);
  south_hello s;
  s.client = r.client;
  s.proxy = r.proxy;
  s.match_id = match_id;
  std::array<std::uint8_t, 64> sbuf{};
  const auto m = encode_south_hello(s, sbuf);
  if (!n || !m) std::abort();
  return {{buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n.size)},
          {sbuf.begin(), sbuf.begin() + static_cast<std::ptrdiff_t>(m.size)}};
}

struct figures {
  double median_ns = 0, min_ns = 0;
  double allocations_per_task = 0;
};

// Runs `one_task(k)` for `tasks` tasks per round, `rounds` rounds after a warm-up round.
template <class F>
figures measure(F&& one_task, int rounds, int tasks) {
  for (int k = 0; k < tasks; ++k) one_task(k); // warm-up: storage grows, tables fill
  std::vector<double> per_task;
  const auto before = allocations.load();
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = clock_type::now();
    for (int k = 0; k < tasks; ++k) one_task(k);
    const auto t1 = clock_type::now();
    per_task.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() / tasks);
  }
  const auto allocated = allocations.load() - before;
  std::sort(per_task.begin(), per_task.end());
  return {per_task[per_task.size() / 2], per_task.front(),
          static_cast<double>(allocated) / (static_cast<double>(rounds) * tasks)};
}

} // namespace

int main(int argc, char** argv) {
  int rounds = 31, tasks = 20000;
  bool json = false;
  std::string_view only;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--rounds" && i + 1 < argc)
      rounds = std::atoi(argv[++i]);
    else if (a == "--tasks" && i + 1 < argc)
      tasks = std::atoi(argv[++i]);
    else if (a == "--json")
      json = true;
    else if (a == "--only" && i + 1 < argc)
      only = argv[++i];
    else {
      std::fprintf(stderr, "usage: session_bench [--rounds N] [--tasks N] [--json] "
                           "[--only decode|session|driver]\n");
      return 2;
    }
  }
  // 64 different tasks, match ids around the wrap, reused in turn (a connection's ids recur).
  std::vector<task_bytes> set;
  for (std::uint32_t k = 0; k < 64; ++k)
    set.push_back(make_task(static_cast<std::uint16_t>((65504 + k) & 0xFFFF)));
  const auto pick = [&](int k) -> const task_bytes& {
    return set[static_cast<std::size_t>(k) % set.size()];
  };

  const auto run = [&](std::string_view name) { return only.empty() || only == name; };
  figures bare, task, driven;

  // Reference: decoding the same two headers, nothing else.
  if (run("decode"))
    bare = measure(
        [&](int k) {
          const auto& t = pick(k);
          const auto n = decode_stream_header(t.north);
          const auto s = decode_stream_header(t.south);
          if (!n.complete() || !s.complete()) std::abort();
          keep(n);
          keep(s);
        },
        rounds, tasks);

  // The task through the sessions layer: two pooled sessions and the connection's table.
  stream_session north, south;
  pairing_table<int> table(default_pairing_capacity, 1000);
  std::uint64_t now = 0;
  if (run("session"))
    task = measure(
        [&](int k) {
          const auto& t = pick(k);
          north.reset();
          south.reset();
          if (north.feed(t.north).event != session_event::north_ready) std::abort();
          if (!north.decide(action::proceed)) std::abort();
          const auto answer = north.pending_output();
          keep(answer);
          north.output_written(answer.size());
          const auto id = north.match_id();
          if (table.add(stream_kind::north, id, 1, ++now).status != pairing_status::waiting)
            std::abort();
          if (south.feed(t.south).event != session_event::south_ready) std::abort();
          const auto paired = table.add(stream_kind::south, south.match_id(), 2, now);
          if (paired.status != pairing_status::paired) std::abort();
          keep(paired);
          (void)table.remove(stream_kind::north, id);
          (void)table.remove(stream_kind::south, id);
        },
        rounds, tasks);

  // For context: the same task through io::server_connection over in-memory pipes (stream
  // drivers, answer written, echoes started and finished at once), two pipes reused.
  using conn_type = io::server_connection<io::pipe_end>;
  conn_type conn(1000);
  std::vector<std::unique_ptr<io::memory_pipe>> pipes;
  for (int i = 0; i < 2; ++i)
    pipes.push_back(std::make_unique<io::memory_pipe>(io::pipe_options{.capacity = 1024},
                                                      io::pipe_options{.capacity = 1024}));
  if (run("driver"))
    driven = measure(
        [&](int k) {
          const auto& t = pick(k);
          auto& np = *pipes[0];
          auto& sp = *pipes[1];
          np.reset();
          sp.reset();
          (void)np.a().write_some(t.north);
          np.a().close_write();
          const auto n = conn.open(np.b(), static_cast<std::uint64_t>(k));
          if (conn.step(*n, 0) != io::stream_status::decision) std::abort();
          (void)conn.decide(*n, action::proceed, 0);
          (void)sp.a().write_some(t.south);
          sp.a().close_write();
          const auto s = conn.open(sp.b(), 0);
          if (conn.step(*s, 0) != io::stream_status::done) std::abort();
          if (conn.step(*n, 0) != io::stream_status::done) std::abort();
          conn.release(*n);
          conn.release(*s);
        },
        rounds, tasks);

  if (!only.empty()) {
    const figures& f = only == "decode" ? bare : only == "session" ? task : driven;
    std::printf("%s: median %.1f ns, min %.1f ns, %.3f allocs per task\n",
                std::string(only).c_str(), f.median_ns, f.min_ns, f.allocations_per_task);
    return 0;
  }
  const double ratio = task.median_ns / bare.median_ns;
  if (json) {
    std::printf(
        "{\"rounds\": %d, \"tasks_per_round\": %d,\n"
        " \"decode_two_headers\": {\"median_ns\": %.1f, \"min_ns\": %.1f, \"allocs\": %.3f},\n"
        " \"session_task\": {\"median_ns\": %.1f, \"min_ns\": %.1f, \"allocs\": %.3f},\n"
        " \"server_connection_memory_pipes\": {\"median_ns\": %.1f, \"min_ns\": %.1f, "
        "\"allocs\": %.3f},\n"
        " \"task_over_decode\": %.2f}\n",
        rounds, tasks, bare.median_ns, bare.min_ns, bare.allocations_per_task, task.median_ns,
        task.min_ns, task.allocations_per_task, driven.median_ns, driven.min_ns,
        driven.allocations_per_task, ratio);
    return 0;
  }
  std::printf("%-46s %10s %10s %12s\n", "per task (median of rounds)", "median ns", "min ns",
              "allocs/task");
  std::printf("%-46s %10.1f %10.1f %12.3f\n", "decode north + south headers (reference)",
              bare.median_ns, bare.min_ns, bare.allocations_per_task);
  std::printf("%-46s %10.1f %10.1f %12.3f\n", "session task: header, answer, hello, pairing",
              task.median_ns, task.min_ns, task.allocations_per_task);
  std::printf("%-46s %10.1f %10.1f %12.3f\n", "server_connection over memory pipes (context)",
              driven.median_ns, driven.min_ns, driven.allocations_per_task);
  std::printf("session task / bare decode: %.2fx (%d rounds of %d tasks)\n", ratio, rounds, tasks);
  return 0;
}
