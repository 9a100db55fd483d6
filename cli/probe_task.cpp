// SPDX-License-Identifier: MIT
// cli/probe_task.cpp: one detour task as g3proxy's client runs it (see probe_task.hpp).
#include "probe_task.hpp"

#include "probe_report.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <array>

namespace detour::cli::probe {

std::string_view to_string(side s) noexcept {
  return s == side::north ? "north" : "south";
}

std::string_view to_string(failure f) noexcept {
  switch (f) {
  case failure::none:
    return "none";
  case failure::connect:
    return "connect";
  case failure::stream_open_timeout:
    return "stream_open_timeout";
  case failure::header_encode:
    return "header_encode";
  case failure::response_timeout:
    return "response_timeout";
  case failure::response_truncated:
    return "response_truncated";
  case failure::invalid_match_id:
    return "invalid_match_id";
  case failure::unexpected_action:
    return "unexpected_action";
  case failure::stream_reset:
    return "stream_reset";
  case failure::stop_sending:
    return "stop_sending";
  case failure::closed_early:
    return "closed_early";
  case failure::data_mismatch:
    return "data_mismatch";
  case failure::data_overrun:
    return "data_overrun";
  case failure::relay_timeout:
    return "relay_timeout";
  case failure::connection_closed:
    return "connection_closed";
  case failure::deadline:
    return "deadline";
  }
  return "unknown";
}

namespace {

std::string action_text(const detour::response& r) {
  return fmt::format("{} ({})", detour::to_string(r.decision), r.raw_action);
}

std::string seconds_text(nanoseconds ns) {
  return fmt::format("{:g} s", static_cast<double>(ns) / 1e9);
}

} // namespace

std::optional<std::vector<std::uint8_t>> g3_task::north_header(const task_plan& plan,
                                                               std::uint16_t match_id) {
  detour::north_request r;
  r.client = plan.client;
  r.proxy = plan.proxy;
  r.upstream.text = plan.upstream;
  if (const auto up = detour::parse_upstream(plan.upstream)) r.upstream = *up;
  if (plan.username) r.username = *plan.username;
  r.task_id = plan.task_id;
  r.protocol_name = plan.protocol;
  r.protocol = detour::protocol_from_name(plan.protocol);
  r.match_id = match_id;
  r.payload_length = static_cast<std::uint32_t>(plan.payload.size());
  // g3proxy encodes into a 536-byte buffer (V2_BUF_CAP) and gives the task up when the header
  // does not fit, so a larger header is never sent.
  std::array<std::uint8_t, detour::g3_max_header_size> buf{};
  const auto e = detour::encode_north_request(r, buf);
  if (!e) return std::nullopt;
  return std::vector<std::uint8_t>(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(e.size));
}

std::optional<std::vector<std::uint8_t>> g3_task::south_hello(const task_plan& plan,
                                                              std::uint16_t match_id) {
  detour::south_hello h;
  h.client = plan.client;
  h.proxy = plan.proxy;
  h.match_id = match_id;
  std::array<std::uint8_t, detour::g3_max_header_size> buf{};
  const auto e = detour::encode_south_hello(h, buf);
  if (!e) return std::nullopt;
  return std::vector<std::uint8_t>(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(e.size));
}

g3_task::g3_task(task_plan plan, std::uint16_t match_id) noexcept
    : plan_(std::move(plan)), north_data_(plan_.seed * 2 + 1), south_data_(plan_.seed * 2 + 2) {
  result_.match_id = match_id;
}

void g3_task::start(task_io& io, nanoseconds now) {
  result_.started = now;
  last_progress_ = now;
  auto header = north_header(plan_, result_.match_id);
  if (!header) {
    // g3proxy's quiet abort: a north stream carrying nothing but FIN.
    phase_ = phase::answer;
    fail_and_end(io, failure::header_encode, side::north,
                 "the north header cannot be encoded within g3proxy's 536 bytes", now);
    return;
  }
  north_.preamble = std::move(*header);
  north_.preamble.insert(north_.preamble.end(), plan_.payload.begin(), plan_.payload.end());
  phase_ = phase::answer;
  pump_side(io, side::north);
}

nanoseconds g3_task::next_deadline() const noexcept {
  switch (phase_) {
  case phase::answer:
    return result_.started + plan_.response_timeout;
  case phase::relay:
  case phase::closing:
    return last_progress_ + plan_.idle_timeout;
  case phase::idle:
  case phase::done:
    break;
  }
  return 0;
}

void g3_task::on_data(task_io& io, side s, std::span<const std::uint8_t> bytes, bool fin,
                      nanoseconds now) {
  if (done()) return;
  direction& d = dir(s);
  if (!bytes.empty()) last_progress_ = now;
  if (s == side::north && phase_ == phase::answer) {
    const std::size_t take = std::min(bytes.size(), detour::response_size - answer_size_);
    std::copy_n(bytes.begin(), take, answer_ + answer_size_);
    answer_size_ += take;
    bytes = bytes.subspan(take);
    if (answer_size_ == detour::response_size) {
      on_answer(io, now);
      if (done()) return;
    } else if (fin) {
      d.fin_received = true;
      fail_and_end(
          io, failure::response_truncated, side::north,
          fmt::format("the north stream ended after {} of the 4 answer bytes", answer_size_), now);
      return;
    }
  }
  if (!bytes.empty()) {
    take_echo(io, s, bytes, now);
    if (done()) return;
  }
  if (fin) {
    d.fin_received = true;
    last_progress_ = now;
    if (phase_ == phase::closing) {
      maybe_finish_close(io, now);
    } else if (!d.fin_sent) {
      fail_and_end(io, failure::closed_early, s,
                   fmt::format("the server finished the {} stream before we finished ours "
                               "({} of {} bytes sent, {} echoed)",
                               to_string(s), d.sent, target(s), d.echoed),
                   now);
    }
    return;
  }
  pump(io, now);
}

void g3_task::on_answer(task_io& io, nanoseconds now) {
  const auto r = detour::decode_response({answer_, detour::response_size});
  result_.answered = now;
  result_.answer = r.value;
  if (r.value.match_id != result_.match_id) {
    fail_and_end(io, failure::invalid_match_id, side::north,
                 fmt::format("answer for match id {}, expected {} (g3proxy: invalid match id)",
                             r.value.match_id, result_.match_id),
                 now);
    return;
  }
  if (plan_.expect && *plan_.expect != r.value.decision) {
    fail_and_end(io, failure::unexpected_action, side::north,
                 fmt::format("expected {}, the server answered {}",
                             detour::to_string(*plan_.expect), action_text(r.value)),
                 now);
    return;
  }
  if (r.value.decision != detour::action::proceed) {
    // Bypass or block: FIN both sends (south stays empty), stop reading both.
    end_like_g3(io);
    succeed(now);
    return;
  }
  auto hello = south_hello(plan_, result_.match_id);
  if (!hello) {
    fail_and_end(io, failure::header_encode, side::south, "the south hello cannot be encoded", now);
    return;
  }
  south_.preamble = std::move(*hello);
  phase_ = phase::relay;
  last_progress_ = now;
}

void g3_task::take_echo(task_io& io, side s, std::span<const std::uint8_t> bytes, nanoseconds now) {
  direction& d = dir(s);
  if (plan_.verify_echo) {
    if (d.echoed + bytes.size() > d.sent) {
      fail_and_end(io, failure::data_overrun, s,
                   fmt::format("{} bytes came back on {} but only {} were sent there",
                               d.echoed + bytes.size(), to_string(s), d.sent),
                   now);
      return;
    }
    const std::size_t at = mismatch(s, d.echoed, bytes);
    if (at != pattern::npos) {
      fail_and_end(io, failure::data_mismatch, s,
                   fmt::format("{} echo differs at relay offset {}: sent {:#04x}, got {:#04x}",
                               to_string(s), d.echoed + at, data_at(s, d.echoed + at),
                               bytes[at]),
                   now);
      return;
    }
  }
  d.echoed += bytes.size();
}

bool g3_task::pump_side(task_io& io, side s) {
  direction& d = dir(s);
  while (d.preamble_sent < d.preamble.size()) {
    const std::size_t n =
        io.write(s, std::span<const std::uint8_t>(d.preamble).subspan(d.preamble_sent));
    if (n == 0) return false;
    d.preamble_sent += n;
  }
  if (phase_ != phase::relay) return true;
  if (s == side::north && plan_.remote_speaks_first && !plan_.script) {
    // The remote's greeting first: north stays silent until south's echo is complete.
    const bool south_done =
        plan_.verify_echo ? south_.echoed == plan_.remote_bytes : south_.sent == plan_.remote_bytes;
    if (!south_done) return true;
  }
  const std::uint64_t limit = allowed(s);
  while (d.sent < limit) {
    // Generate a chunk only once its predecessor was taken whole: a full send buffer refuses
    // writes often, and regenerating what it refused would cost more than the relay itself.
    if (d.chunk_taken == d.chunk.size()) {
      d.chunk.resize(
          static_cast<std::size_t>(std::min<std::uint64_t>(plan_.write_size, limit - d.sent)));
      fill(s, d.sent, d.chunk);
      d.chunk_taken = 0;
    }
    const std::size_t n =
        io.write(s, std::span<const std::uint8_t>(d.chunk).subspan(d.chunk_taken));
    d.chunk_taken += n;
    d.sent += n;
    if (d.chunk_taken < d.chunk.size()) return false;
  }
  return true;
}

void g3_task::fill(side s, std::uint64_t offset, std::span<std::uint8_t> out) const noexcept {
  if (const auto* script = script_of(s)) {
    std::copy_n(script->begin() + static_cast<std::ptrdiff_t>(offset), out.size(), out.begin());
  } else {
    data_of(s).fill(offset, out);
  }
}

std::uint8_t g3_task::data_at(side s, std::uint64_t offset) const noexcept {
  const auto* script = script_of(s);
  return script ? (*script)[offset] : data_of(s).at(offset);
}

std::size_t g3_task::mismatch(side s, std::uint64_t offset,
                              std::span<const std::uint8_t> bytes) const {
  const auto* script = script_of(s);
  if (!script) return data_of(s).mismatch(offset, bytes);
  for (std::size_t i = 0; i < bytes.size(); ++i)
    if (bytes[i] != (*script)[offset + i]) return i;
  return pattern::npos;
}

std::uint64_t g3_task::allowed(side s) const noexcept {
  if (!plan_.script) return target(s);
  std::uint64_t north = 0;
  std::uint64_t south = 0;
  const auto back = [this](const direction& d) { return plan_.verify_echo ? d.echoed : d.sent; };
  for (const relay_turn& t : plan_.script->turns) {
    if (back(north_) < north || back(south_) < south) break; // an earlier turn is still out
    (t.from == side::north ? north : south) += t.bytes;
  }
  return std::min(s == side::north ? north : south, target(s));
}

void g3_task::pump(task_io& io, nanoseconds now) {
  if (phase_ != phase::relay && phase_ != phase::answer) return;
  // South first: its hello must be out before relay data, and for SMTP/IMAP it speaks first.
  if (phase_ == phase::relay) pump_side(io, side::south);
  pump_side(io, side::north);
  if (phase_ != phase::relay) return;
  const bool all_sent = north_.sent == plan_.client_bytes && south_.sent == plan_.remote_bytes &&
                        north_.preamble_sent == north_.preamble.size() &&
                        south_.preamble_sent == south_.preamble.size();
  const bool all_back = !plan_.verify_echo || (north_.echoed == plan_.client_bytes &&
                                               south_.echoed == plan_.remote_bytes);
  if (all_sent && all_back) begin_close(io, now);
}

void g3_task::on_writable(task_io& io, side, nanoseconds now) {
  if (done()) return;
  last_progress_ = now;
  pump(io, now);
}

void g3_task::begin_close(task_io& io, nanoseconds now) {
  // g3proxy never half-closes one stream alone: both sends end together.
  phase_ = phase::closing;
  last_progress_ = now;
  north_.fin_sent = south_.fin_sent = true;
  io.finish(side::north);
  io.finish(side::south);
  maybe_finish_close(io, now);
}

void g3_task::maybe_finish_close(task_io& io, nanoseconds now) {
  // Client ends first: wait for north to end, drop south. Remote first: the mirror image.
  const side awaited = plan_.ends_first == ender::client ? side::north : side::south;
  const side other = awaited == side::north ? side::south : side::north;
  if (!dir(awaited).fin_received) return;
  if (!dir(other).fin_received && !dir(other).stopped) {
    dir(other).stopped = true;
    io.stop_sending(other, 0);
  }
  succeed(now);
}

void g3_task::end_like_g3(task_io& io) {
  // What g3proxy does whenever a task ends other than by a completed relay: FIN both send
  // sides (an unwritten south stream thus arrives empty and finished), stop reading both.
  for (side s : {side::north, side::south}) {
    direction& d = dir(s);
    if (!d.fin_sent) {
      d.fin_sent = true;
      io.finish(s);
    }
  }
  for (side s : {side::north, side::south}) {
    direction& d = dir(s);
    if (!d.fin_received && !d.stopped) {
      d.stopped = true;
      io.stop_sending(s, 0);
    }
  }
}

void g3_task::on_reset(task_io& io, side s, std::uint64_t code, nanoseconds now) {
  if (done()) return;
  direction& d = dir(s);
  if (d.stopped) return; // the answer to our own STOP_SENDING
  d.fin_received = true; // the receive side is over either way
  fail_and_end(io, failure::stream_reset, s,
               fmt::format("the server reset the {} stream with code {} ({}; {} of {} relay "
                           "bytes echoed)",
                           to_string(s), code_text(code),
                           phase_ == phase::answer ? "before the answer" : "during the relay",
                           d.echoed, target(s)),
               now);
}

void g3_task::on_stop_sending(task_io& io, side s, std::optional<std::uint64_t> code,
                              nanoseconds now) {
  if (done()) return;
  direction& d = dir(s);
  // After our FIN, with every byte echoed, the server has read all it needs: harmless.
  if (phase_ == phase::closing && d.fin_sent) return;
  d.fin_sent = true; // ngtcp2 answers STOP_SENDING with RESET_STREAM: our send side is over
  fail_and_end(io, failure::stop_sending, s,
               fmt::format("the server stopped reading the {} stream{} ({} of {} relay bytes "
                           "sent)",
                           to_string(s), code ? fmt::format(" with code {}", code_text(*code)) : "",
                           d.sent, target(s)),
               now);
}

void g3_task::on_timer(task_io& io, nanoseconds now) {
  if (done()) return;
  const nanoseconds deadline = next_deadline();
  if (deadline == 0 || now < deadline) return;
  if (phase_ == phase::answer) {
    fail_and_end(io, failure::response_timeout, side::north,
                 fmt::format("no answer within {} ({} of 4 bytes came)",
                             seconds_text(plan_.response_timeout), answer_size_),
                 now);
    return;
  }
  const side awaited = plan_.ends_first == ender::client ? side::north : side::south;
  const std::string state =
      phase_ == phase::closing
          ? fmt::format("both sides finished, the {} stream never ended", to_string(awaited))
          : fmt::format("north {}/{} sent {} echoed, south {}/{} sent {} echoed", north_.sent,
                        plan_.client_bytes, north_.echoed, south_.sent, plan_.remote_bytes,
                        south_.echoed);
  fail_and_end(io, failure::relay_timeout, std::nullopt,
               fmt::format("no progress for {}: {}", seconds_text(plan_.idle_timeout), state), now);
}

void g3_task::fail(failure f, std::string detail, nanoseconds now) {
  if (done()) return;
  result_.error = f;
  result_.detail = std::move(detail);
  result_.finished = now;
  result_.north_echoed = north_.echoed;
  result_.south_echoed = south_.echoed;
  phase_ = phase::done;
}

void g3_task::fail_and_end(task_io& io, failure f, std::optional<side> where, std::string detail,
                           nanoseconds now) {
  end_like_g3(io);
  result_.where = where;
  fail(f, std::move(detail), now);
}

void g3_task::succeed(nanoseconds now) {
  result_.finished = now;
  result_.north_echoed = north_.echoed;
  result_.south_echoed = south_.echoed;
  phase_ = phase::done;
}

} // namespace detour::cli::probe
