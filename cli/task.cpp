// SPDX-License-Identifier: MIT
// cli/task.cpp: INTERIM transport check: every stream is echoed onto itself with the library's
// relay, without header handling. Replaced by the detour task flow.
#include "task.hpp"

#include <detour/io/relay.hpp>

#include <list>

namespace detour::cli {

struct task_set::impl {
  struct echo {
    explicit echo(quic_stream& s) : stream(s), relay(s, s, stream_kind::north) {}
    quic_stream& stream;
    io::relay<quic_stream, quic_stream> relay;
  };
  struct slot {
    std::unique_ptr<quic_stream> stream;
    std::unique_ptr<echo> e;
    bool ready = false;
  };
  explicit impl(const context& c) : ctx(c) {}
  context ctx;
  std::unordered_map<quic_stream*, slot> slots;
};

task_set::task_set(const context& ctx) : impl_(std::make_unique<impl>(ctx)) {}
task_set::~task_set() = default;

quic_stream& task_set::open_stream(ngtcp2_conn* conn, std::int64_t id, timestamp) {
  auto s = std::make_unique<quic_stream>(conn, id, impl_->ctx.pool, impl_->ctx.config.send_buffer,
                                         impl_->ctx.listener);
  quic_stream* raw = s.get();
  auto& slot = impl_->slots[raw];
  slot.stream = std::move(s);
  slot.e = std::make_unique<impl::echo>(*raw);
  ++counters_.streams;
  return *raw;
}

void task_set::on_event(quic_stream& s) {
  if (auto it = impl_->slots.find(&s); it != impl_->slots.end()) it->second.ready = true;
}

void task_set::step(timestamp) {
  for (auto& [s, slot] : impl_->slots) {
    if (!slot.ready) continue;
    slot.ready = false;
    if (slot.e && !s->closed()) slot.e->relay.step();
  }
}

void task_set::on_closed(quic_stream& s, timestamp) {
  const auto it = impl_->slots.find(&s);
  if (it == impl_->slots.end()) return;
  counters_.bytes_in += s.bytes_received();
  counters_.bytes_out += s.bytes_accepted();
  impl_->slots.erase(it);
}

std::optional<timestamp> task_set::next_deadline() const {
  return std::nullopt;
}
void task_set::on_deadline(timestamp) {}
void task_set::connection_closed(std::string_view, timestamp) {
  impl_->slots.clear();
}
std::size_t task_set::active() const noexcept {
  return impl_->slots.size();
}

} // namespace detour::cli
