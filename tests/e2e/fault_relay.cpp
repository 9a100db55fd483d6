// SPDX-License-Identifier: MIT
// tests/e2e/fault_relay.cpp: see fault_relay.hpp.
#include "fault_relay.hpp"

#include <sys/epoll.h>

namespace detour::test {

using cli::monotonic_now;
using cli::socket_address;
using cli::timestamp;

fault_relay::fault_relay(cli::event_loop& loop, const socket_address& server, fault_profile profile)
    : loop_(loop), server_(server), profile_(profile),
      front_(cli::udp_socket::bound(
          *socket_address::parse(server.family() == AF_INET6 ? "[::1]:0" : "127.0.0.1:0"))),
      release_timer_(loop, [this] { release(); }), rng_(profile.seed) {
  front_watch_ = std::make_unique<cli::io_watch>(loop_, front_.fd(), EPOLLIN,
                                                 [this](std::uint32_t) { on_front(); });
}

fault_relay::~fault_relay() = default;

void fault_relay::blackout(timestamp duration) {
  blackout_until_ = monotonic_now() + duration;
}

double fault_relay::uniform() {
  return std::uniform_real_distribution<double>(0, 1)(rng_);
}

void fault_relay::on_front() {
  while (front_.receive(batch_) != 0) {
    for (const auto& d : batch_.datagrams()) {
      const std::string key(reinterpret_cast<const char*>(d.remote.data()), d.remote.size());
      auto it = flows_.find(key);
      if (it == flows_.end()) {
        auto f = std::make_unique<flow>(flow{d.remote, cli::udp_socket::connected(server_), {}});
        flow* raw = f.get();
        f->watch = std::make_unique<cli::io_watch>(
            loop_, f->upstream.fd(), EPOLLIN, [this, raw](std::uint32_t) { on_upstream(*raw); });
        it = flows_.emplace(key, std::move(f)).first;
      }
      for (std::size_t off = 0; off < d.data.size(); off += d.segment_size) {
        inject(it->second.get(), d.remote,
               d.data.subspan(off, std::min(d.segment_size, d.data.size() - off)));
      }
    }
  }
}

void fault_relay::rebind() {
  for (auto& [key, f] : flows_) {
    flow* raw = f.get();
    raw->watch.reset();
    raw->upstream = cli::udp_socket::connected(server_);
    raw->watch = std::make_unique<cli::io_watch>(loop_, raw->upstream.fd(), EPOLLIN,
                                                 [this, raw](std::uint32_t) { on_upstream(*raw); });
  }
}

void fault_relay::on_upstream(flow& f) {
  while (f.upstream.receive(batch_) != 0) {
    for (const auto& d : batch_.datagrams()) {
      for (std::size_t off = 0; off < d.data.size(); off += d.segment_size) {
        inject(nullptr, f.client,
               d.data.subspan(off, std::min(d.segment_size, d.data.size() - off)));
      }
    }
  }
}

void fault_relay::inject(flow* to_server, const socket_address& client,
                         std::span<const std::uint8_t> bytes) {
  const timestamp now = monotonic_now();
  if (now < blackout_until_) {
    ++stats_.blacked_out;
    return;
  }
  if (uniform() < profile_.drop) {
    ++stats_.dropped;
    return;
  }
  timestamp due = now + profile_.delay;
  if (profile_.jitter)
    due += static_cast<timestamp>(uniform() * static_cast<double>(profile_.jitter));
  if (uniform() < profile_.reorder) {
    ++stats_.reordered;
    due += profile_.reorder_delay;
  }
  schedule(due, to_server, client, bytes);
  if (uniform() < profile_.duplicate) {
    ++stats_.duplicated;
    schedule(due + profile_.reorder_delay / 2, to_server, client, bytes);
  }
}

void fault_relay::schedule(timestamp due, flow* to_server, const socket_address& client,
                           std::span<const std::uint8_t> bytes) {
  queue_.push(pending{due, seq_++, to_server, client, {bytes.begin(), bytes.end()}});
  release();
}

void fault_relay::release() {
  const timestamp now = monotonic_now();
  while (!queue_.empty() && queue_.top().due <= now) {
    const pending& p = queue_.top();
    if (p.to_server) {
      (void)p.to_server->upstream.send(nullptr, nullptr, p.bytes, p.bytes.size());
    } else {
      (void)front_.send(&p.client, nullptr, p.bytes, p.bytes.size());
    }
    ++stats_.forwarded;
    queue_.pop();
  }
  if (!queue_.empty()) release_timer_.arm_at(queue_.top().due);
}

} // namespace detour::test
