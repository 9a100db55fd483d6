// SPDX-License-Identifier: MIT
// bench/limits.cpp: the machine's limits that `detour serve` runs against, measured on one core
// so that bench/run can report each server figure as a ratio to them: UDP datagrams through
// loopback (sendmmsg + recvmmsg, and UDP GSO + GRO), AES-128-GCM seals of QUIC-sized packets
// (wolfSSL, as ngtcp2_crypto_wolfssl uses it), a handshake's public-key work (P-256), and what
// a datagram costs when it wakes a thread that sleeps waiting for it (two threads).
//   detour-limits [--ms N] [--json]
#include <wolfssl/options.h>

#include <wolfssl/wolfcrypt/aes.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace {

using clock_type = std::chrono::steady_clock;

// The payload of a full-sized QUIC packet on an Ethernet path (ngtcp2's default max UDP
// payload is 1200; it probes up from there).
constexpr std::size_t datagram_size = 1200;
constexpr std::size_t batch = 64; // UDP_MAX_SEGMENTS, and the server's sendmmsg batch
// A GSO send must fit one IP packet's 16-bit length (as in cli/udp.cpp): 54 segments of 1200.
constexpr std::size_t gso_segments = (65535 - 8 - 40) / datagram_size;

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(3);
}

// Runs |step| (which reports how many units it did) until |ms| passed; returns units per second.
double rate(int ms, const std::function<std::size_t()>& step) {
  const auto t0 = clock_type::now();
  const auto end = t0 + std::chrono::milliseconds(ms);
  std::uint64_t units = 0;
  auto now = t0;
  do {
    units += step();
    now = clock_type::now();
  } while (now < end);
  return static_cast<double>(units) / std::chrono::duration<double>(now - t0).count();
}

struct udp_pair {
  int tx = -1;
  int rx = -1;
  udp_pair(bool gro) {
    tx = ::socket(AF_INET, SOCK_DGRAM, 0);
    rx = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (tx < 0 || rx < 0) die("socket");
    const int buf = 4 << 20;
    (void)::setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    (void)::setsockopt(tx, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    if (gro) {
      const int one = 1;
      if (::setsockopt(rx, SOL_UDP, UDP_GRO, &one, sizeof one) != 0) die("UDP_GRO");
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(rx, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
    socklen_t len = sizeof a;
    ::getsockname(rx, reinterpret_cast<sockaddr*>(&a), &len);
    if (::connect(tx, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");
  }
  ~udp_pair() {
    ::close(tx);
    ::close(rx);
  }
  udp_pair(const udp_pair&) = delete;
  udp_pair& operator=(const udp_pair&) = delete;
};

// Drains |rx| with recvmmsg into 64 KiB slots; returns the datagrams received (GRO trains
// counted by their segments).
std::size_t drain(int rx, std::vector<std::uint8_t>& space) {
  constexpr std::size_t slot = 65536;
  std::array<iovec, batch> iov{};
  std::array<mmsghdr, batch> msgs{};
  struct alignas(cmsghdr) control {
    std::uint8_t bytes[CMSG_SPACE(sizeof(int))];
  };
  std::array<control, batch> controls{};
  std::size_t datagrams = 0;
  for (;;) {
    for (std::size_t i = 0; i < batch; ++i) {
      iov[i] = {space.data() + i * slot, slot};
      msgs[i].msg_hdr = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_control = controls[i].bytes;
      msgs[i].msg_hdr.msg_controllen = sizeof controls[i].bytes;
    }
    const int n = ::recvmmsg(rx, msgs.data(), batch, MSG_DONTWAIT, nullptr);
    if (n <= 0) return datagrams;
    for (int i = 0; i < n; ++i) {
      const msghdr& m = msgs[static_cast<std::size_t>(i)].msg_hdr;
      std::size_t seg = 0;
      for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&m), c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
          int v = 0;
          std::memcpy(&v, CMSG_DATA(c), sizeof v);
          seg = static_cast<std::size_t>(v);
        }
      }
      const std::size_t len = msgs[static_cast<std::size_t>(i)].msg_len;
      datagrams += seg ? (len + seg - 1) / seg : 1;
    }
  }
}

// One core sends 64 datagrams (one sendmmsg call) and receives them (recvmmsg), in turn:
// datagrams per second through the kernel, send and receive both paid.
double udp_sendmmsg(int ms) {
  udp_pair p(false);
  std::vector<std::uint8_t> out(datagram_size * batch, 0x5a), space(65536 * batch);
  std::array<iovec, batch> iov{};
  std::array<mmsghdr, batch> msgs{};
  for (std::size_t i = 0; i < batch; ++i) {
    iov[i] = {out.data() + i * datagram_size, datagram_size};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  return rate(ms, [&] {
    if (::sendmmsg(p.tx, msgs.data(), batch, 0) < 0) die("sendmmsg");
    return drain(p.rx, space);
  });
}

// The same with one GSO send of 54 segments (as many as fit) and a GRO receiver.
double udp_gso_gro(int ms) {
  udp_pair p(true);
  std::vector<std::uint8_t> out(datagram_size * gso_segments, 0x5a), space(65536 * batch);
  iovec iov{out.data(), out.size()};
  struct alignas(cmsghdr) control {
    std::uint8_t bytes[CMSG_SPACE(sizeof(std::uint16_t))];
  } ctl{};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl.bytes;
  m.msg_controllen = sizeof ctl.bytes;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
  const auto seg = static_cast<std::uint16_t>(datagram_size);
  std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
  return rate(ms, [&] {
    if (::sendmsg(p.tx, &m, 0) < 0) die("sendmsg(UDP_SEGMENT)");
    return drain(p.rx, space);
  });
}

// AES-128-GCM seals of 1200-byte packets with a 16-byte tag and a QUIC-sized header as
// associated data: what protecting one packet costs (opening costs the same).
double aes_gcm_seals(int ms) {
  Aes aes;
  std::array<std::uint8_t, 16> key{1, 2, 3};
  std::array<std::uint8_t, 12> iv{};
  std::array<std::uint8_t, 16> tag{};
  std::array<std::uint8_t, 25> aad{0x40};
  std::vector<std::uint8_t> in(datagram_size - 16 - aad.size(), 0x5a), out(in.size());
  if (wc_AesInit(&aes, nullptr, INVALID_DEVID) != 0 ||
      wc_AesGcmSetKey(&aes, key.data(), key.size()) != 0) {
    std::fputs("AES-GCM key setup failed\n", stderr);
    std::exit(3);
  }
  std::uint64_t pn = 0;
  const double r = rate(ms, [&] {
    for (int i = 0; i < 64; ++i) {
      ++pn;
      std::memcpy(iv.data() + 4, &pn, sizeof pn);
      if (wc_AesGcmEncrypt(&aes, out.data(), in.data(), static_cast<word32>(in.size()), iv.data(),
                           iv.size(), tag.data(), tag.size(), aad.data(), aad.size()) != 0) {
        std::fputs("AES-GCM seal failed\n", stderr);
        std::exit(3);
      }
    }
    return std::size_t{64};
  });
  wc_AesFree(&aes);
  return r;
}

// A TLS 1.3 server's public-key work per full handshake with a P-256 certificate and key share:
// one ECDH key pair, one shared secret, one ECDSA signature (CertificateVerify). With mutual TLS
// one ECDSA verification more (the client's CertificateVerify; its chain adds another).
struct handshake_rates {
  double plain = 0; ///< per second
  double mutual = 0;
};

handshake_rates handshake_crypto(int ms) {
  WC_RNG rng;
  if (wc_InitRng(&rng) != 0) die("wc_InitRng");
  ecc_key server_key, peer;
  wc_ecc_init(&server_key);
  wc_ecc_init(&peer);
  if (wc_ecc_make_key_ex(&rng, 32, &server_key, ECC_SECP256R1) != 0 ||
      wc_ecc_make_key_ex(&rng, 32, &peer, ECC_SECP256R1) != 0) {
    std::fputs("P-256 key generation failed\n", stderr);
    std::exit(3);
  }
  std::array<std::uint8_t, 32> digest{7};
  std::array<std::uint8_t, 80> sig{};
  word32 sig_len = sig.size();
  const auto ecdh_and_sign = [&] {
    ecc_key eph;
    wc_ecc_init(&eph);
    std::array<std::uint8_t, 32> secret{};
    word32 secret_len = secret.size();
    sig_len = sig.size();
    if (wc_ecc_make_key_ex(&rng, 32, &eph, ECC_SECP256R1) != 0 || wc_ecc_set_rng(&eph, &rng) != 0 ||
        wc_ecc_shared_secret(&eph, &peer, secret.data(), &secret_len) != 0 ||
        wc_ecc_sign_hash(digest.data(), digest.size(), sig.data(), &sig_len, &rng, &server_key) !=
            0) {
      std::fputs("P-256 handshake operations failed\n", stderr);
      std::exit(3);
    }
    wc_ecc_free(&eph);
  };
  handshake_rates r;
  r.plain = rate(ms, [&] {
    ecdh_and_sign();
    return std::size_t{1};
  });
  r.mutual = rate(ms, [&] {
    ecdh_and_sign();
    int ok = 0;
    if (wc_ecc_verify_hash(sig.data(), sig_len, digest.data(), digest.size(), &ok, &server_key) !=
            0 ||
        !ok) {
      std::fputs("P-256 verification failed\n", stderr);
      std::exit(3);
    }
    return std::size_t{1};
  });
  wc_ecc_free(&server_key);
  wc_ecc_free(&peer);
  wc_FreeRng(&rng);
  return r;
}

struct wakeup_costs {
  double across_us = 0;    // CPU per datagram that wakes its receiver on another core
  double same_core_us = 0; // ... on the same core
  double awake_us = 0;     // CPU per datagram sent and received by a thread that never sleeps
};

double thread_cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

// The calling thread on |cpu| only (no effect if the CPU is not available).
void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)::sched_setaffinity(0, sizeof set, &set);
}

// Two threads on |cpu_a| and |cpu_b| pass one 1200-byte datagram back and forth over
// loopback, each blocking in recv() until it arrives, as a server's worker sleeps in
// epoll_wait between packets: the CPU of both per datagram received, a sleep and a wake-up
// included.
double ping_pong(int ms, int cpu_a, int cpu_b) {
  const auto bound = [] {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("bind");
    return fd;
  };
  const auto join = [](int from, int to) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    ::getsockname(to, reinterpret_cast<sockaddr*>(&addr), &len);
    if (::connect(from, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die("connect");
  };
  const int a = bound(), b = bound();
  join(a, b);
  join(b, a);
  const std::size_t rounds = static_cast<std::size_t>(ms) * 10; // 10 to 100 us each
  double cpu_b_s = 0;
  std::thread echo([&] {
    pin_to(cpu_b);
    std::vector<std::uint8_t> buf(datagram_size);
    const double c0 = thread_cpu_seconds();
    for (std::size_t i = 0; i < rounds; ++i) {
      if (::recv(b, buf.data(), buf.size(), 0) < 0) die("recv");
      if (::send(b, buf.data(), buf.size(), 0) < 0) die("send");
    }
    cpu_b_s = thread_cpu_seconds() - c0;
  });
  std::vector<std::uint8_t> buf(datagram_size, 0x5a);
  double cpu_a_s = 0;
  std::thread first([&] {
    pin_to(cpu_a);
    const double c0 = thread_cpu_seconds();
    for (std::size_t i = 0; i < rounds; ++i) {
      if (::send(a, buf.data(), buf.size(), 0) < 0) die("send");
      if (::recv(a, buf.data(), buf.size(), 0) < 0) die("recv");
    }
    cpu_a_s = thread_cpu_seconds() - c0;
  });
  first.join();
  echo.join();
  ::close(a);
  ::close(b);
  return (cpu_a_s + cpu_b_s) / static_cast<double>(2 * rounds) * 1e6;
}

// What a datagram costs when it wakes a thread that sleeps waiting for it, on another core
// and on the same one, against one thread that sends a datagram and receives it at once and
// never sleeps. On a virtual machine a wake-up across cores (the other core idle, then woken)
// can cost several times what it does on bare metal, and a server's workers pay it for the
// packets that find them asleep.
wakeup_costs wakeup_cost(int ms) {
  wakeup_costs out;
  {
    udp_pair p(false);
    std::vector<std::uint8_t> buf(datagram_size, 0x5a);
    const double c0 = thread_cpu_seconds();
    const double per_s = rate(ms, [&] {
      if (::send(p.tx, buf.data(), buf.size(), 0) < 0) die("send");
      while (::recv(p.rx, buf.data(), buf.size(), 0) < 0) {
      }
      return std::size_t{1};
    });
    out.awake_us = (thread_cpu_seconds() - c0) / (per_s * ms / 1000.0) * 1e6;
  }
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  (void)::sched_getaffinity(0, sizeof allowed, &allowed);
  int cpus[2] = {-1, -1};
  for (int c = 0, found = 0; c < CPU_SETSIZE && found < 2; ++c) {
    if (CPU_ISSET(c, &allowed)) cpus[found++] = c;
  }
  out.same_core_us = ping_pong(ms, cpus[0], cpus[0]);
  out.across_us = cpus[1] >= 0 ? ping_pong(ms, cpus[0], cpus[1]) : out.same_core_us;
  return out;
}

} // namespace

int main(int argc, char** argv) {
  int ms = 500;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--ms" && i + 1 < argc) {
      ms = std::atoi(argv[++i]);
    } else if (a == "--json") {
      json = true;
    } else {
      std::fputs("usage: detour-limits [--ms N] [--json]\n", stderr);
      return 2;
    }
  }
  if (ms <= 0) ms = 500;
  const double mmsg = udp_sendmmsg(ms);
  const double gso = udp_gso_gro(ms);
  const double seals = aes_gcm_seals(ms);
  const handshake_rates hs = handshake_crypto(ms);
  const wakeup_costs wake = wakeup_cost(ms);
  const auto gbit = [](double datagrams) {
    return datagrams * static_cast<double>(datagram_size) * 8 / 1e9;
  };
  if (json) {
    std::printf("{\"datagram_bytes\": %zu, \"udp_sendmmsg_per_s\": %.0f, \"udp_gso_gro_per_s\": "
                "%.0f, \"aes128gcm_seals_per_s\": %.0f, \"handshake_crypto_per_s\": %.1f, "
                "\"handshake_crypto_mtls_per_s\": %.1f, \"datagram_waking_across_us\": %.2f, "
                "\"datagram_waking_same_core_us\": %.2f, \"datagram_awake_us\": %.2f}\n",
                datagram_size, mmsg, gso, seals, hs.plain, hs.mutual, wake.across_us,
                wake.same_core_us, wake.awake_us);
  } else {
    std::printf("one core, %zu-byte datagrams, %d ms each:\n", datagram_size, ms);
    std::printf("  UDP loopback, sendmmsg + recvmmsg  %9.0f datagrams/s  %6.2f Gbit/s  %.2f us\n",
                mmsg, gbit(mmsg), 1e6 / mmsg);
    std::printf("  UDP loopback, GSO + GRO            %9.0f datagrams/s  %6.2f Gbit/s  %.2f us\n",
                gso, gbit(gso), 1e6 / gso);
    std::printf("  AES-128-GCM seal (wolfSSL)         %9.0f packets/s    %6.2f Gbit/s  %.2f us\n",
                seals, gbit(seals), 1e6 / seals);
    std::printf("  handshake public-key work (P-256)  %9.1f /s  (%.0f us)\n", hs.plain,
                1e6 / hs.plain);
    std::printf("  ... with a client signature check  %9.1f /s  (%.0f us)\n", hs.mutual,
                1e6 / hs.mutual);
    std::printf("  a datagram that wakes its receiver %9.1f us of CPU on another core, %.1f us on "
                "the same one (%.1f us without the sleep and wake-up)\n",
                wake.across_us, wake.same_core_us, wake.awake_us);
  }
  return 0;
}
