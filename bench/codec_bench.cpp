// SPDX-License-Identifier: MIT
// bench/codec_bench.cpp: timings of the protocol core (PROXY v2 codec, detour request): decode
// and encode of a typical north header (TCP4, all six custom TLVs, no payload) and of a HAProxy
// header with SSL TLVs and CRC32C. Reports the median ns per header over rounds and the heap
// allocations per call, counted by a replacement global operator new.
//   codec_bench [--rounds N] [--round-ms MS] [--json] [--dump DIR] [--only NAME --calls N]
// --dump DIR writes the two headers (north.bin, haproxy.bin) for the Go comparison program.
// --only NAME --calls N runs one benchmark's body exactly N times, untimed: for instruction
// counts (bench/codec.sh runs it under callgrind with two values of N and takes the difference).
#include <detour/ppv2/decode.hpp>
#include <detour/ppv2/encode.hpp>
#include <detour/request.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

// --- Allocation counting ------------------------------------------------------------------------
namespace {
std::atomic<std::uint64_t> allocations{0};
}

void* operator new(std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

using namespace detour;
using clock_type = std::chrono::steady_clock;

/// Keeps the compiler from discarding a computed value or hoisting the work out of the loop.
template <class T>
inline void keep(const T& value) {
  asm volatile("" : : "r,m"(value) : "memory");
}

/// One benchmark: `body(n)` does the measured work n times.
struct bench_case {
  std::string name;
  std::function<void(std::size_t)> body;
};

struct figures {
  std::string name;
  double median_ns = 0, p25_ns = 0, p75_ns = 0, min_ns = 0;
  double allocs_per_call = 0;
};

figures measure(const std::string& name, int rounds, double round_ms,
                const std::function<void(std::size_t)>& body) {
  // Calibrate: iterations per round so that a round lasts about round_ms.
  std::size_t n = 64;
  while (true) {
    const auto t0 = clock_type::now();
    body(n);
    const double ms = std::chrono::duration<double, std::milli>(clock_type::now() - t0).count();
    if (ms >= round_ms / 4 || n > (std::size_t{1} << 34)) {
      n = static_cast<std::size_t>(static_cast<double>(n) * round_ms / std::max(ms, 1e-3)) + 1;
      break;
    }
    n *= 4;
  }
  std::vector<double> ns;
  const std::uint64_t a0 = allocations.load();
  std::size_t calls = 0;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = clock_type::now();
    body(n);
    const auto t1 = clock_type::now();
    ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count() /
                 static_cast<double>(n));
    calls += n;
  }
  const std::uint64_t a1 = allocations.load();
  std::sort(ns.begin(), ns.end());
  figures f;
  f.name = name;
  f.median_ns = ns[ns.size() / 2];
  f.p25_ns = ns[ns.size() / 4];
  f.p75_ns = ns[ns.size() * 3 / 4];
  f.min_ns = ns.front();
  f.allocs_per_call = static_cast<double>(a1 - a0) / static_cast<double>(calls);
  return f;
}

/// The typical north request: TCP4, a user name, all six custom TLVs, no payload.
std::vector<std::uint8_t> north_header() {
  north_request r;
  r.client = {ip_address::v4(192, 168, 0, 1), 56324};
  r.proxy = {ip_address::v4(192, 168, 0, 11), 443};
  r.username = "alice";
  r.task_id.bytes = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1,
                     0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
  r.upstream.text = "example.com:443";
  r.match_id = 7;
  r.protocol = protocol_kind::smtp;
  std::vector<std::uint8_t> out(g3_max_header_size);
  const auto e = encode_north_request(r, out);
  if (!e) std::abort();
  out.resize(e.size);
  return out;
}

/// What HAProxy 2.6 sends with crc32c, authority, unique-id, ssl, cert-cn, ssl-cipher, cert-sig
/// and cert-key (a client with a certificate): CRC32C first, SSL sub-TLVs in HAProxy's order.
std::vector<std::uint8_t> haproxy_header_fields(std::vector<ppv2::tlv>& tlvs,
                                                ppv2::header_fields& f,
                                                std::vector<std::uint8_t>& ssl_value) {
  f = ppv2::header_fields::tcp({ip_address::v4(127, 0, 0, 1), 37186},
                               {ip_address::v4(127, 0, 0, 1), 8443});
  ssl_value = {0x07, 0, 0, 0, 0};
  const auto sub = [&](std::uint8_t type, std::string_view v) {
    ssl_value.push_back(type);
    ssl_value.push_back(static_cast<std::uint8_t>(v.size() >> 8));
    ssl_value.push_back(static_cast<std::uint8_t>(v.size()));
    ssl_value.insert(ssl_value.end(), v.begin(), v.end());
  };
  sub(0x21, "TLSv1.3");
  sub(0x22, "interop-client");
  sub(0x25, "RSA2048");
  sub(0x24, "RSA-SHA256");
  sub(0x23, "TLS_AES_256_GCM_SHA384");
  static constexpr std::array<std::uint8_t, 4> crc_placeholder{};
  tlvs = {ppv2::tlv{ppv2::tlv_type::crc32c, crc_placeholder},
          ppv2::tlv{ppv2::tlv_type::authority, std::string_view("www.example.com")},
          ppv2::tlv{ppv2::tlv_type::unique_id, std::string_view("uid-127.0.0.1-37186")},
          ppv2::tlv{ppv2::tlv_type::ssl, std::span<const std::uint8_t>(ssl_value)}};
  std::vector<std::uint8_t> out;
  if (!ppv2::encode_append(f, tlvs, out, {true})) std::abort();
  return out;
}

void print(const figures& f, bool json, bool last) {
  if (json) {
    std::printf(
        "  {\"name\":\"%s\",\"median_ns\":%.2f,\"p25_ns\":%.2f,\"p75_ns\":%.2f,\"min_ns\":%.2f,"
        "\"allocs_per_call\":%.3f}%s\n",
        f.name.c_str(), f.median_ns, f.p25_ns, f.p75_ns, f.min_ns, f.allocs_per_call,
        last ? "" : ",");
  } else {
    std::printf("%-44s median %8.2f ns  (p25 %.2f, p75 %.2f, min %.2f)  allocs/call %.3f\n",
                f.name.c_str(), f.median_ns, f.p25_ns, f.p75_ns, f.min_ns, f.allocs_per_call);
  }
}

} // namespace

int main(int argc, char** argv) {
  int rounds = 31;
  double round_ms = 20;
  bool json = false;
  std::string dump, only;
  std::size_t calls = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--rounds" && i + 1 < argc)
      rounds = std::atoi(argv[++i]);
    else if (a == "--round-ms" && i + 1 < argc)
      round_ms = std::atof(argv[++i]);
    else if (a == "--json")
      json = true;
    else if (a == "--dump" && i + 1 < argc)
      dump = argv[++i];
    else if (a == "--only" && i + 1 < argc)
      only = argv[++i];
    else if (a == "--calls" && i + 1 < argc)
      calls = std::strtoull(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: codec_bench [--rounds N] [--round-ms MS] [--json] [--dump DIR]\n"
                           "                   [--only NAME --calls N]\n");
      return 2;
    }
  }

  const auto north = north_header();
  std::vector<ppv2::tlv> ha_tlvs;
  ppv2::header_fields ha_fields;
  std::vector<std::uint8_t> ssl_value;
  const auto haproxy = haproxy_header_fields(ha_tlvs, ha_fields, ssl_value);
  if (!dump.empty()) {
    std::ofstream(dump + "/north.bin", std::ios::binary)
        .write(reinterpret_cast<const char*>(north.data()),
               static_cast<std::streamsize>(north.size()));
    std::ofstream(dump + "/haproxy.bin", std::ios::binary)
        .write(reinterpret_cast<const char*>(haproxy.data()),
               static_cast<std::streamsize>(haproxy.size()));
  }
  // Exactly-sized heap copies, read through a pointer the optimizer cannot see through.
  std::vector<std::uint8_t> north_in(north), haproxy_in(haproxy);
  const std::uint8_t* volatile north_ptr = north_in.data();
  const std::uint8_t* volatile haproxy_ptr = haproxy_in.data();
  std::vector<std::uint8_t> out(4096);
  std::vector<std::uint8_t> storage(ppv2::decode_limits{}.max_header_size);

  std::vector<bench_case> cases;
  const auto add = [&](std::string name, std::function<void(std::size_t)> body) {
    cases.push_back({std::move(name), std::move(body)});
  };
  add("north: decode_north_request", [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto r = decode_north_request({north_ptr, north.size()});
      keep(r.value.match_id);
      keep(r.value.upstream.port);
      keep(r.value.task_id);
      keep(r.status);
    }
  });
  add("north: ppv2::decode only", [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto r = ppv2::decode({north_ptr, north.size()});
      keep(r.value.source);
      keep(r.status);
    }
  });
  add("north: ppv2::decoder alone, one piece", [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      ppv2::decoder d(storage);
      const auto r = d.feed({north_ptr, north.size()});
      keep(r.value.source);
      keep(r.status);
    }
  });
  add("north: decode_stream_header", [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto s = decode_stream_header({north_ptr, north.size()});
      keep(s.value.north.match_id);
      keep(s.status);
    }
  });
  add("north: ppv2::decoder + parse_stream_header", [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      ppv2::decoder d(storage);
      const auto r = d.feed({north_ptr, north.size()});
      const auto s = parse_stream_header(r.value);
      keep(s.value.north.match_id);
      keep(s.status);
    }
  });
  add("north: encode_north_request", [&](std::size_t n) {
    north_request r;
    r.client = {ip_address::v4(192, 168, 0, 1), 56324};
    r.proxy = {ip_address::v4(192, 168, 0, 11), 443};
    r.username = "alice";
    r.upstream.text = "example.com:443";
    r.protocol = protocol_kind::smtp;
    for (std::size_t i = 0; i < n; ++i) {
      r.match_id = static_cast<std::uint16_t>(i);
      const auto e = encode_north_request(r, out);
      keep(e.size);
      keep(out[30]);
    }
  });
  add("haproxy ssl: ppv2::decode + TLVs read", [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto r = ppv2::decode({haproxy_ptr, haproxy.size()});
      const auto ssl = r.value.ssl();
      keep(r.value.authority());
      keep(r.value.unique_id());
      keep(ssl->cn());
      keep(ssl->version());
      keep(ssl->cipher());
      keep(r.status);
    }
  });
  add("haproxy ssl: ppv2::encode with CRC32C", [&](std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      const auto e = ppv2::encode(ha_fields, ha_tlvs, out, {true});
      keep(e.size);
      keep(out[30]);
    }
  });

  if (!only.empty()) {
    for (const bench_case& c : cases)
      if (c.name == only) {
        c.body(calls);
        return 0;
      }
    std::fprintf(stderr, "codec_bench: no benchmark named \"%s\"\n", only.c_str());
    return 2;
  }
  std::vector<figures> all;
  for (const bench_case& c : cases) all.push_back(measure(c.name, rounds, round_ms, c.body));

  if (json)
    std::printf("{\"north_bytes\":%zu,\"haproxy_bytes\":%zu,\"results\":[\n", north.size(),
                haproxy.size());
  else
    std::printf("north header %zu bytes, HAProxy SSL header %zu bytes; %d rounds\n", north.size(),
                haproxy.size(), rounds);
  for (std::size_t i = 0; i < all.size(); ++i) print(all[i], json, i + 1 == all.size());
  if (json) std::printf("]}\n");
  return 0;
}
