// SPDX-License-Identifier: MIT
// fuzz/session_chunks.cpp: the stream_session fed an arbitrary byte stream in arbitrary chunks.
// Input: byte 0 = chunking (bits 0-5: piece size 1-64; bit 6: pseudo-random sizes; bit 7: the
// stream ends after the input), byte 1 = seed and action, byte 2 = limits (0: defaults), then
// the stream. Properties: the chunked outcome equals the one-shot outcome (state, error and
// offset, kind, match id, request, payload, WebSocket summary); `consumed` never exceeds what
// was offered; errors are sticky and named; a north task holds exactly the stream's header and
// payload bytes and the request the stateless parser reads; every state has its name; the
// response is the encoded answer, written in pieces.
#include <detour/session.hpp>

#include "property.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

using namespace detour;

namespace {

struct outcome {
  session_state state;
  errc error;
  std::uint64_t offset;
  std::optional<stream_kind> kind;
  std::uint16_t match_id;
  std::size_t taken;
};

bool same(const outcome& a, const outcome& b) {
  if (a.state != b.state || a.error != b.error || a.offset != b.offset || a.kind != b.kind)
    return false;
  // A failure may be seen after a different number of bytes was taken (the first piece may hold
  // more of a bad header than a short one); everything else must agree exactly.
  return a.state == session_state::failed || (a.match_id == b.match_id && a.taken == b.taken);
}

outcome summary(const stream_session& s, std::size_t taken) {
  return {s.state(), s.error(), s.error_offset(), s.kind(), s.match_id(), taken};
}

bool same_task(const task_request& a, const task_request& b) {
  auto eq = [](std::span<const std::uint8_t> x, std::span<const std::uint8_t> y) {
    return std::equal(x.begin(), x.end(), y.begin(), y.end());
  };
  if (!eq(a.payload, b.payload) || !eq(a.header, b.header)) return false;
  if (a.request.upstream.text != b.request.upstream.text ||
      a.request.protocol_name != b.request.protocol_name ||
      a.request.username != b.request.username || !(a.request.task_id == b.request.task_id) ||
      a.request.payload_length != b.request.payload_length)
    return false;
  if (a.websocket_error != b.websocket_error || a.websocket.has_value() != b.websocket.has_value())
    return false;
  return !a.websocket || (a.websocket->resource == b.websocket->resource &&
                          a.websocket->header_block == b.websocket->header_block);
}

// Feeds like a driver: offers everything not yet taken; returns the bytes taken.
std::size_t feed(stream_session& s, std::span<const std::uint8_t> stream,
                 const std::vector<std::size_t>& pieces) {
  std::vector<std::uint8_t> pending;
  std::size_t at = 0, taken = 0;
  for (const std::size_t n : pieces) {
    pending.insert(pending.end(), stream.begin() + static_cast<std::ptrdiff_t>(at),
                   stream.begin() + static_cast<std::ptrdiff_t>(at + n));
    at += n;
    const auto before = s.state();
    const auto r = s.feed(pending);
    DETOUR_FUZZ_CHECK(r.consumed <= pending.size());
    if (before == session_state::failed) DETOUR_FUZZ_CHECK(r.consumed == 0); // sticky
    if (r.event == session_event::error) DETOUR_FUZZ_CHECK(s.state() == session_state::failed);
    DETOUR_FUZZ_CHECK(std::string_view(to_string(s.state())) != "?");
    taken += r.consumed;
    pending.erase(pending.begin(), pending.begin() + static_cast<std::ptrdiff_t>(r.consumed));
  }
  return taken;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 3) return 0;
  const std::uint8_t policy = data[0], seed = data[1], limits = data[2];
  const std::span<const std::uint8_t> stream(data + 3, size - 3);
  session_options options;
  if (limits != 0) {
    options.limits.header.max_header_size = 16 + std::size_t{limits} * 2;
    options.limits.max_payload_length = limits;
    options.websocket.max_lines = 1 + limits % 8;
  }
  const bool ends = policy & 0x80;

  stream_session one(options);
  const std::size_t one_taken = feed(one, stream, {stream.size()});
  if (ends) (void)one.end_of_stream();

  std::vector<std::size_t> pieces;
  std::uint32_t rng = seed * 2654435761u + 1;
  for (std::size_t left = stream.size(); left != 0;) {
    std::size_t n = 1 + (policy & 0x3F);
    if (policy & 0x40) {
      rng = rng * 1103515245u + 12345u;
      n = 1 + (rng >> 16) % n;
    }
    n = std::min(n, left);
    pieces.push_back(n);
    left -= n;
  }
  stream_session chunked(options);
  const std::size_t chunked_taken = feed(chunked, stream, pieces);
  if (ends) (void)chunked.end_of_stream();

  const auto a = summary(one, one_taken), b = summary(chunked, chunked_taken);
  DETOUR_FUZZ_CHECK(same(a, b));
  if (a.state == session_state::failed) {
    // Sticky: nothing changes it any more.
    const auto r = chunked.feed(stream);
    DETOUR_FUZZ_CHECK(r.event == session_event::error && r.consumed == 0);
    DETOUR_FUZZ_CHECK(!chunked.decide(action::proceed));
    DETOUR_FUZZ_CHECK(chunked.end_of_stream().event == session_event::error);
    chunked.fail(errc::stream_reset);
    DETOUR_FUZZ_CHECK(chunked.error() == a.error && fuzz::named_error(a.error));
    DETOUR_FUZZ_CHECK(std::string_view(to_string(chunked.state())) == "failed");
    return 0;
  }
  if (one.kind() == stream_kind::north && one.state() >= session_state::decision) {
    DETOUR_FUZZ_CHECK(same_task(one.task(), chunked.task()));
    const auto& task = one.task();
    DETOUR_FUZZ_CHECK(task.payload.size() == task.request.payload_length);
    // The session kept exactly the stream's header and payload bytes, and read the request
    // the stateless parser reads.
    DETOUR_FUZZ_CHECK(task.header.size() + task.payload.size() <= stream.size());
    DETOUR_FUZZ_CHECK(std::equal(task.header.begin(), task.header.end(), stream.begin()));
    DETOUR_FUZZ_CHECK(std::equal(task.payload.begin(), task.payload.end(),
                                 stream.begin() + static_cast<std::ptrdiff_t>(task.header.size())));
    const auto direct = decode_north_request(stream, options.limits);
    DETOUR_FUZZ_CHECK(direct.complete() && direct.consumed == task.header.size() &&
                      direct.value.match_id == task.request.match_id &&
                      direct.value.upstream.text == task.request.upstream.text &&
                      direct.value.payload_length == task.request.payload_length);
  }
  if (one.state() == session_state::decision) {
    const action act = seed & 1 ? action::proceed : (seed & 2 ? action::bypass : action::block);
    DETOUR_FUZZ_CHECK(chunked.decide(act));
    DETOUR_FUZZ_CHECK(!chunked.decide(act));
    DETOUR_FUZZ_CHECK(std::string_view(to_string(chunked.state())) == "response");
    const auto expected = encode_response(chunked.match_id(), act);
    std::size_t written = 0;
    while (!chunked.pending_output().empty()) {
      const auto out = chunked.pending_output();
      DETOUR_FUZZ_CHECK(out.size() == expected.size() - written);
      DETOUR_FUZZ_CHECK(std::equal(out.begin(), out.end(), expected.begin() + written));
      const std::size_t n = 1 + (seed >> 2) % out.size();
      chunked.output_written(n);
      written += n;
    }
    const auto st = chunked.state();
    if (act == action::proceed)
      DETOUR_FUZZ_CHECK(st == session_state::relay);
    else
      DETOUR_FUZZ_CHECK(st == (ends ? session_state::finished : session_state::closing));
    DETOUR_FUZZ_CHECK(chunked.decision() == act);
    DETOUR_FUZZ_CHECK(std::string_view(to_string(st)) == (st == session_state::relay ? "relay"
                                                          : st == session_state::closing
                                                              ? "closing"
                                                              : "finished"));
    // After the answer: relay bytes are not the session's, bypass/block drops them, the end
    // completes the closing, and a late failure cannot undo a finished stream.
    const auto more = chunked.feed(stream);
    if (st == session_state::relay) DETOUR_FUZZ_CHECK(more.consumed == 0);
    if (st == session_state::closing) DETOUR_FUZZ_CHECK(more.consumed == stream.size());
    if (st == session_state::finished) DETOUR_FUZZ_CHECK(more.event == session_event::finished);
    (void)chunked.end_of_stream();
    DETOUR_FUZZ_CHECK(chunked.peer_finished());
    if (st != session_state::relay) DETOUR_FUZZ_CHECK(chunked.state() == session_state::finished);
    chunked.fail(errc::stream_reset);
    DETOUR_FUZZ_CHECK(chunked.state() == (st == session_state::relay ? session_state::failed
                                                                     : session_state::finished));
  }
  if (one.kind() == stream_kind::south) DETOUR_FUZZ_CHECK(one.hello().match_id == one.match_id());
  DETOUR_FUZZ_CHECK(std::string_view(to_string(one.state())) != "?");
  // A reset session serves the next stream exactly like a fresh one.
  chunked.reset();
  DETOUR_FUZZ_CHECK(chunked.state() == session_state::header && chunked.received() == 0);
  const std::size_t again = feed(chunked, stream, {stream.size()});
  if (ends) (void)chunked.end_of_stream();
  DETOUR_FUZZ_CHECK(same(summary(chunked, again), a));
  return 0;
}
