// SPDX-License-Identifier: MIT
// cli/probe_abuse.cpp: `detour probe abuse`: hostile and malformed input, written by hand (the
// library's encoders refuse to make it), one case per connection. For each case: what the
// server did with the abused stream (reset and code, STOP_SENDING, FIN, an answer, a
// connection close, or nothing), how fast, and whether a normal task then succeeds on the same
// connection and on a new one.
#include "probe.hpp"
#include "probe_report.hpp"

#include <detour/detail/bytes.hpp>
#include <detour/ppv2/header.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace detour::cli::probe {

namespace {

using bytes = std::vector<std::uint8_t>;

// --- hand-made headers -------------------------------------------------------------------------

struct raw_tlv {
  std::uint8_t type = 0;
  bytes value;
  std::optional<std::uint16_t> declared; ///< a length field that lies
};

bytes text(std::string_view s) {
  return bytes(s.begin(), s.end());
}

bytes be16(std::uint16_t v) {
  return {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

bytes be32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16),
          static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
}

/// A PROXY v2 header built byte by byte: signature, |ver_cmd|, |family|, the length field
/// (|length| or the true one), a TCP4 address block, then the TLVs as given.
bytes raw_header(std::uint8_t ver_cmd, std::uint8_t family, const std::vector<raw_tlv>& tlvs,
                 std::optional<std::uint16_t> length = std::nullopt) {
  bytes out(detour::ppv2::signature.begin(), detour::ppv2::signature.end());
  out.push_back(ver_cmd);
  out.push_back(family);
  bytes body = {192, 0, 2, 10, 192, 0, 2, 1, 0xC3, 0x50, 0x0C, 0x38}; // :50000 -> :3128
  for (const raw_tlv& t : tlvs) {
    body.push_back(t.type);
    const bytes len = be16(t.declared.value_or(static_cast<std::uint16_t>(t.value.size())));
    body.insert(body.end(), len.begin(), len.end());
    body.insert(body.end(), t.value.begin(), t.value.end());
  }
  const bytes len = be16(length.value_or(static_cast<std::uint16_t>(body.size())));
  out.insert(out.end(), len.begin(), len.end());
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

/// The TLVs of a valid north request (g3proxy's order), to be bent by a case.
std::vector<raw_tlv> north_tlvs(std::uint16_t match_id, std::uint32_t payload_length = 0) {
  bytes task_id(16);
  for (std::size_t i = 0; i < 16; ++i) task_id[i] = static_cast<std::uint8_t>(0xA0 + i);
  return {
      {0xE3, task_id, {}},
      {0xE0, text("www.example.com:443"), {}},
      {0xE5, be16(match_id), {}},
      {0xE4, text("http_2"), {}},
      {0xE6, be32(payload_length), {}},
  };
}

// --- watching what the server does -------------------------------------------------------------

/// Records everything the server does to one stream.
class stream_watch final : public stream_observer {
public:
  void on_data(std::int64_t, std::span<const std::uint8_t> b, bool f) override {
    if (received.size() < max_kept) received.insert(received.end(), b.begin(), b.end());
    total += b.size();
    fin = fin || f;
    mark();
  }
  void on_reset(std::int64_t, std::uint64_t code) override {
    reset = code;
    mark();
  }
  void on_stop_sending(std::int64_t, std::optional<std::uint64_t> code) override {
    stopped = true;
    stop_code = code;
    mark();
  }
  void on_writable(std::int64_t) override {}

  /// The stream ended on the server's side in any way.
  bool ended() const noexcept { return fin || reset.has_value() || stopped; }
  /// A north stream got its 4-byte answer (what a south stream receives is echo, not answers).
  bool answered() const noexcept { return north && total >= detour::response_size; }
  bool any() const noexcept { return ended() || total > 0; }

  /// "reset (code 0x126)", "answered continue, then FIN", ...
  std::string describe() const {
    std::vector<std::string> parts;
    if (answered()) {
      const auto r = detour::decode_response(received);
      parts.push_back(fmt::format("answered {} (match id {})", detour::to_string(r.value.decision),
                                  r.value.match_id));
    } else if (total > 0) {
      parts.push_back(fmt::format("sent {} byte(s){}", total, north ? "" : " (echo)"));
    }
    if (reset) parts.push_back(fmt::format("reset (code {})", code_text(*reset)));
    if (stopped)
      parts.push_back(stop_code ? fmt::format("stopped reading (code {})", code_text(*stop_code))
                                : std::string("stopped reading"));
    if (fin) parts.push_back("finished (FIN)");
    if (parts.empty()) return "nothing";
    std::string out = parts[0];
    for (std::size_t i = 1; i < parts.size(); ++i) out += ", " + parts[i];
    return out;
  }

  bool north = true; ///< watches a north stream (answers expected) rather than a south one
  bytes received;
  std::uint64_t total = 0;
  bool fin = false;
  std::optional<std::uint64_t> reset;
  bool stopped = false;
  std::optional<std::uint64_t> stop_code;
  nanoseconds first_event = 0;

private:
  // Enough for answers and a little echo; more is counted, not kept.
  static constexpr std::size_t max_kept = 64 * 1024;
  void mark() {
    if (first_event == 0) first_event = monotonic_now();
  }
};

/// What a case expects of the server for its abused streams.
enum class expect {
  end,    ///< each watched stream ends (reset, STOP_SENDING or FIN) without an answer
  answer, ///< the watched stream gets a valid answer
  any,    ///< anything goes (reported only); the follow-up tasks decide
};

/// One case's script runs against this.
class abuse_env {
public:
  abuse_env(probe_context& ctx, client_pool& pool, pooled_connection& c)
      : ctx_(ctx), pool_(pool), conn_(c) {}

  /// Opens a stream watched by a new stream_watch (waits for credit up to the abuse wait);
  /// |north| says whether it carries a north request (and so expects an answer).
  std::int64_t open(stream_watch*& watch, bool north = true) {
    auto w = std::make_unique<stream_watch>();
    w->north = north;
    watch = w.get();
    std::int64_t id = quic().open_stream(watch);
    if (id < 0) {
      wait([&] { return quic().closed() || quic().streams_left() > 0; }, ctx_.options.abuse_wait);
      id = quic().open_stream(watch);
    }
    watches_.push_back(std::move(w));
    if (id >= 0) ids_.push_back(id);
    return id;
  }
  std::int64_t open(bool north = true) {
    stream_watch* w = nullptr;
    return open(w, north);
  }

  /// Writes |b| (waiting for room at most the abuse wait: a server may never grant credit).
  void send(std::int64_t id, std::span<const std::uint8_t> b) {
    const nanoseconds until = std::min(ctx_.deadline, monotonic_now() + ctx_.options.abuse_wait);
    std::size_t done = 0;
    while (done < b.size() && !quic().closed() && monotonic_now() < until) {
      done += quic().write_some(id, b.subspan(done));
      if (done < b.size()) pause(nanoseconds_per_millisecond);
    }
    quic().flush();
  }
  void finish(std::int64_t id) {
    quic().finish(id);
    quic().flush();
  }

  /// Runs the loop for |d| (never past the run's deadline).
  void pause(nanoseconds d) {
    const nanoseconds until = std::min(ctx_.deadline, monotonic_now() + d);
    pool_.run_until([] { return false; }, until);
  }
  /// Runs the loop until |pred| or |d| passed; returns pred().
  bool wait(const std::function<bool()>& pred, nanoseconds d) {
    return pool_.run_until(pred, std::min(ctx_.deadline, monotonic_now() + d));
  }

  quic_connection& quic() { return *conn_.quic; }
  pooled_connection& connection() { return conn_; }
  client_pool& pool() { return pool_; }
  const probe_options& options() const { return ctx_.options; }
  std::uint16_t match_id() { return pool_.take_match_id(conn_); }
  task_plan plan() const { return protocol_plan(ctx_.options, "http_2", 0, 1024); }

  /// A valid north header with |match_id| (and the given payload length).
  bytes north(std::uint16_t match_id, std::uint32_t payload_length = 0) const {
    task_plan p = plan();
    p.payload.resize(payload_length);
    return *g3_task::north_header(p, match_id);
  }
  bytes south(std::uint16_t match_id) const { return *g3_task::south_hello(plan(), match_id); }

  /// The watches the case asked to be judged (default: every stream it opened).
  std::vector<stream_watch*> judged;
  const std::vector<std::unique_ptr<stream_watch>>& watches() const { return watches_; }
  /// Detaches the watches from the connection (they die with the case).
  void detach() {
    for (std::int64_t id : ids_) quic().set_observer(id, nullptr);
  }
  bool dropped = false;       ///< the case dropped the connection on purpose
  std::string note;           ///< extra facts for the report
  nanoseconds abuse_done = 0; ///< when the hostile input was complete

private:
  probe_context& ctx_;
  client_pool& pool_;
  pooled_connection& conn_;
  std::vector<std::unique_ptr<stream_watch>> watches_;
  std::vector<std::int64_t> ids_;
};

struct abuse_case {
  std::string name;
  expect expectation;
  std::function<void(abuse_env&)> script;
};

/// Sends |header| on a new stream, optionally followed by FIN.
void send_on_new(abuse_env& e, const bytes& header, bool fin, bool north = true) {
  const std::int64_t id = e.open(north);
  if (id < 0) return;
  e.send(id, header);
  if (fin) e.finish(id);
}

/// Sends one complete task's north header and south hello by hand and waits for the relay to
/// be up (the answer, then |relay| bytes echoed on each stream). Returns {north, south}.
std::pair<std::int64_t, std::int64_t> start_relay(abuse_env& e, std::size_t relay,
                                                  stream_watch*& nw, stream_watch*& sw) {
  const std::uint16_t id = e.match_id();
  const std::int64_t north = e.open(nw);
  const std::int64_t south = e.open(sw, false);
  if (north < 0 || south < 0) return {north, south};
  e.send(north, e.north(id));
  e.wait([&] { return nw->answered() || nw->ended(); }, e.options().abuse_wait);
  if (!nw->answered()) return {north, south};
  e.send(south, e.south(id));
  const bytes data(relay, 0x5A);
  e.send(north, data);
  e.send(south, data);
  e.wait(
      [&] { return (nw->total >= 4 + relay && sw->total >= relay) || nw->ended() || sw->ended(); },
      e.options().abuse_wait);
  return {north, south};
}

std::vector<abuse_case> all_cases() {
  std::vector<abuse_case> cases;
  const auto header_case = [&](std::string name, std::function<bytes(abuse_env&)> make, bool fin) {
    cases.push_back({std::move(name), expect::end,
                     [make, fin](abuse_env& e) { send_on_new(e, make(e), fin); }});
  };

  // The fixed 16 bytes (proxy-protocol.txt section 2.2).
  header_case(
      "bad signature",
      [](abuse_env& e) {
        bytes h = e.north(e.match_id());
        h[5] ^= 0xFF;
        return h;
      },
      false);
  header_case(
      "bad version (0x11)",
      [](abuse_env& e) {
        bytes h = e.north(e.match_id());
        h[12] = 0x11;
        return h;
      },
      false);
  header_case(
      "bad command (0x2F)",
      [](abuse_env& e) {
        bytes h = e.north(e.match_id());
        h[12] = 0x2F;
        return h;
      },
      false);
  header_case(
      "LOCAL command instead of PROXY (0x20)",
      [](abuse_env& e) { return raw_header(0x20, 0x11, north_tlvs(e.match_id())); }, false);
  header_case(
      "bad family (0x41)",
      [](abuse_env& e) {
        bytes h = e.north(e.match_id());
        h[13] = 0x41;
        return h;
      },
      false);
  header_case(
      "UDP instead of TCP (0x12)",
      [](abuse_env& e) { return raw_header(0x21, 0x12, north_tlvs(e.match_id())); }, false);
  header_case(
      "length shorter than the address block (4 for TCP4)",
      [](abuse_env& e) {
        bytes h = raw_header(0x21, 0x11, {}, 4);
        h.resize(16 + 4);
        (void)e;
        return h;
      },
      false);
  header_case(
      "length longer than the data sent, then FIN",
      [](abuse_env& e) {
        bytes h = e.north(e.match_id());
        const auto declared = static_cast<std::uint16_t>(h.size() - 16 + 200);
        h[14] = static_cast<std::uint8_t>(declared >> 8);
        h[15] = static_cast<std::uint8_t>(declared);
        return h;
      },
      true);
  cases.push_back(
      {"length 0xFFFF, the rest trickled one byte per 100 ms", expect::end, [](abuse_env& e) {
         stream_watch* w = nullptr;
         const std::int64_t id = e.open(w);
         if (id < 0) return;
         bytes h = e.north(e.match_id());
         h[14] = 0xFF;
         h[15] = 0xFF;
         e.send(id, std::span<const std::uint8_t>(h).first(16));
         const nanoseconds until = monotonic_now() + e.options().abuse_wait;
         std::size_t sent = 16;
         while (!w->any() && !e.quic().closed() && monotonic_now() < until) {
           const std::uint8_t b = sent < h.size() ? h[sent] : 0;
           e.send(id, std::span<const std::uint8_t>(&b, 1));
           ++sent;
           e.wait([&] { return w->any(); }, 100 * nanoseconds_per_millisecond);
         }
         e.note = fmt::format("{} bytes trickled", sent);
       }});

  // TLVs (section 2.2, pp2_tlv; g3proxy's custom types).
  header_case(
      "TLV running past the end of the header",
      [](abuse_env& e) {
        auto tlvs = north_tlvs(e.match_id());
        tlvs.push_back({0xE1, text("abc"), 40});
        return raw_header(0x21, 0x11, tlvs);
      },
      false);
  header_case(
      "duplicate match id TLV (E5 twice)",
      [](abuse_env& e) {
        auto tlvs = north_tlvs(e.match_id());
        tlvs.insert(tlvs.begin() + 3, raw_tlv{0xE5, be16(7), {}});
        return raw_header(0x21, 0x11, tlvs);
      },
      false);
  header_case(
      "missing task id TLV (no E3)",
      [](abuse_env& e) {
        auto tlvs = north_tlvs(e.match_id());
        tlvs.erase(tlvs.begin());
        return raw_header(0x21, 0x11, tlvs);
      },
      false);
  header_case(
      "match id TLV of 3 bytes",
      [](abuse_env& e) {
        auto tlvs = north_tlvs(e.match_id());
        tlvs[2].value.push_back(0);
        return raw_header(0x21, 0x11, tlvs);
      },
      false);
  header_case(
      "headers with neither north nor south TLVs",
      [](abuse_env&) {
        return raw_header(0x21, 0x11, {{0x04, bytes(8, 0), {}}});
      },
      false);
  header_case(
      "payload length larger than the payload sent, then FIN",
      [](abuse_env& e) {
        bytes h = e.north(e.match_id(), 100);
        h.insert(h.end(), 10, 'x');
        return h;
      },
      true);
  header_case(
      "payload length 0xFFFFFFFF",
      [](abuse_env& e) { return raw_header(0x21, 0x11, north_tlvs(e.match_id(), 0xFFFFFFFF)); },
      false);

  // WebSocket payloads (g3proxy's summary format). A server may treat the payload as opaque,
  // so these only report what happened; the follow-up tasks decide.
  const auto ws_case = [&](std::string name, std::string payload) {
    cases.push_back({std::move(name), expect::any, [payload](abuse_env& e) {
                       task_plan p = e.plan();
                       p.protocol = "websocket";
                       p.payload.assign(payload.begin(), payload.end());
                       bytes h = *g3_task::north_header(p, e.match_id());
                       h.insert(h.end(), payload.begin(), payload.end());
                       send_on_new(e, h, false);
                     }});
  };
  ws_case("websocket payload: LF without CR", "/chat\nhost: example.com\n");
  ws_case("websocket payload: last line without CRLF", "/chat\r\nhost: example.com");
  ws_case("websocket payload: empty resource line", "\r\nhost: example.com\r\n");
  ws_case("websocket payload: header line without \": \"", "/chat\r\nhost=example.com\r\n");
  ws_case("websocket payload: host twice", "/chat\r\nhost: a.example\r\nhost: b.example\r\n");

  // Pairing (match ids are per connection, south only after north and its answer).
  cases.push_back({"south stream with an unknown match id", expect::end,
                   [](abuse_env& e) { send_on_new(e, e.south(0xBEEF), false, false); }});
  cases.push_back({"south before north", expect::any, [](abuse_env& e) {
                     const std::uint16_t id = e.match_id();
                     send_on_new(e, e.south(id), false, false);
                     e.pause(50 * nanoseconds_per_millisecond);
                     send_on_new(e, e.north(id), false);
                   }});
  cases.push_back({"two norths with one match id", expect::end, [](abuse_env& e) {
                     const std::uint16_t id = e.match_id();
                     stream_watch* first = nullptr;
                     const std::int64_t a = e.open(first);
                     if (a < 0) return;
                     e.send(a, e.north(id));
                     e.wait([&] { return first->any(); }, e.options().abuse_wait);
                     stream_watch* second = nullptr;
                     const std::int64_t b = e.open(second);
                     if (b < 0) return;
                     e.send(b, e.north(id));
                     e.judged = {second}; // the first one is legitimate
                     e.note = "first north: " + first->describe();
                   }});

  // Timing and aborts.
  cases.push_back(
      {"valid header one byte at a time, 20 ms apart", expect::answer, [](abuse_env& e) {
         stream_watch* w = nullptr;
         const std::int64_t id = e.open(w);
         if (id < 0) return;
         const bytes h = e.north(e.match_id());
         for (const std::uint8_t b : h) {
           if (w->ended() || e.quic().closed()) break;
           e.send(id, std::span<const std::uint8_t>(&b, 1));
           e.pause(20 * nanoseconds_per_millisecond);
         }
       }});
  cases.push_back({"empty north stream finished at once (g3proxy's quiet abort)", expect::end,
                   [](abuse_env& e) {
                     const std::int64_t id = e.open();
                     if (id >= 0) e.finish(id);
                   }});
  cases.push_back({"reset in the middle of a header", expect::any, [](abuse_env& e) {
                     const std::int64_t id = e.open();
                     if (id < 0) return;
                     const bytes h = e.north(e.match_id());
                     e.send(id, std::span<const std::uint8_t>(h).first(h.size() / 2));
                     e.pause(20 * nanoseconds_per_millisecond);
                     e.quic().reset(id, 0x10);
                     e.quic().flush();
                   }});
  cases.push_back({"reset of north in the middle of a relay", expect::end, [](abuse_env& e) {
                     stream_watch *nw = nullptr, *sw = nullptr;
                     const auto [north, south] = start_relay(e, 4096, nw, sw);
                     if (north < 0 || south < 0 || !nw->answered()) {
                       e.note = "the relay did not start: north " + (nw ? nw->describe() : "none");
                       return;
                     }
                     e.quic().reset(north, 0x10);
                     e.quic().flush();
                     e.judged = {sw}; // the south half must be torn down with it
                     e.note = "judged on the south stream";
                   }});
  cases.push_back(
      {"connection dropped without a word in the middle of a relay", expect::any, [](abuse_env& e) {
         stream_watch *nw = nullptr, *sw = nullptr;
         start_relay(e, 4096, nw, sw);
         e.quic().drop();
         e.dropped = true;
         e.judged.clear();
       }});
  cases.push_back(
      {"streams opened and never written (up to --abuse-streams)", expect::any, [](abuse_env& e) {
         // Leave room for the follow-up task's two streams on this connection.
         const std::uint64_t left = e.quic().streams_left();
         const std::uint64_t want =
             std::min<std::uint64_t>(e.options().abuse_streams, left > 2 ? left - 2 : 0);
         std::uint64_t opened = 0;
         for (; opened < want; ++opened) {
           const std::int64_t id = e.open();
           if (id < 0) break;
           e.quic().touch(id);
         }
         e.quic().flush();
         e.note = fmt::format("{} streams opened of the {} the server allows", opened, left);
       }});
  cases.push_back(
      {"seeded random garbage on 8 streams, each then FIN", expect::end, [](abuse_env& e) {
         const pattern random(e.options().seed ^ 0x6761726261676521ULL);
         std::uint64_t at = 0;
         for (int k = 0; k < 8; ++k) {
           const std::size_t len = 1 + random.at(at++) * 3 % 600;
           bytes b(len);
           random.fill(at, b);
           at += len;
           // Half of them start like a real header, to get past the signature.
           if (k % 2 == 0)
             std::copy_n(detour::ppv2::signature.begin(),
                         std::min(b.size(), detour::ppv2::signature.size()), b.begin());
           send_on_new(e, b, true);
         }
       }});
  cases.push_back({"north header larger than g3proxy's 536 bytes", expect::any, [](abuse_env& e) {
                     task_plan p = e.plan();
                     p.username = std::string(700, 'u');
                     detour::north_request r;
                     r.client = p.client;
                     r.proxy = p.proxy;
                     r.upstream = *detour::parse_upstream(p.upstream);
                     r.username = *p.username;
                     r.protocol_name = p.protocol;
                     r.match_id = e.match_id();
                     bytes h(2048);
                     const auto enc = detour::encode_north_request(r, h);
                     h.resize(enc.size);
                     e.note = fmt::format("{} bytes", h.size());
                     send_on_new(e, h, false);
                   }});
  return cases;
}

struct case_report {
  std::string name;
  bool ok = false;
  std::string reaction;
  nanoseconds reaction_time = 0;
  bool reacted = false;
  std::string expectation_failure;
  std::optional<task_result> same_connection;
  std::string same_connection_skip;
  std::optional<task_result> new_connection;
  std::string note;
};

std::string follow_up_text(const std::optional<task_result>& r, const std::string& skip) {
  if (!r) return skip.empty() ? "not run" : skip;
  if (r->ok()) return "ok";
  return fmt::format("FAILED {}: {}", to_string(r->error), r->detail);
}

/// Runs a normal task on |c| (or, when null, a new connection); bounded by the run deadline.
task_result follow_up(probe_context& ctx, client_pool& pool, pooled_connection* c) {
  pooled_connection& target = c ? *c : pool.dial();
  if (!c && !pool.wait_established(target, ctx.deadline)) {
    task_result r;
    r.error = failure::connect;
    r.detail = describe(target.quic->close_state());
    return r;
  }
  std::optional<task_result> result;
  task_plan p = protocol_plan(ctx.options, "http_2", 0, 4096);
  pool.submit_on(target, std::move(p), [&](const task_result& r) { result = r; });
  pool.run_until([&] { return result.has_value(); }, ctx.deadline);
  if (!c) pool.close(target);
  if (!result) {
    task_result r;
    r.error = failure::deadline;
    r.detail = "the run's deadline passed";
    return r;
  }
  return *result;
}

case_report run_case(probe_context& ctx, client_pool& pool, const abuse_case& ac) {
  case_report rep;
  rep.name = ac.name;
  pooled_connection& c = pool.dial();
  if (!pool.wait_established(c, ctx.deadline)) {
    rep.reaction = "no connection: " + describe(c.quic->close_state());
    return rep;
  }
  abuse_env e(ctx, pool, c);
  const nanoseconds t0 = monotonic_now();
  ac.script(e);
  if (e.judged.empty() && !e.dropped)
    for (const auto& w : e.watches()) e.judged.push_back(w.get());
  // Watch the reaction until every judged stream did what settles the case (ended; answered,
  // for `answer`; anything, for `any`) or the wait is over.
  const auto settled = [&] {
    if (c.quic->closed()) return true;
    return std::all_of(e.judged.begin(), e.judged.end(), [&](stream_watch* w) {
      switch (ac.expectation) {
      case expect::end:
        return w->ended();
      case expect::answer:
        return w->answered() || w->ended();
      case expect::any:
        return w->any();
      }
      return true;
    });
  };
  if (!e.dropped) e.wait(settled, ctx.options.abuse_wait);
  rep.note = e.note;

  nanoseconds first = 0;
  std::vector<std::string> seen;
  for (stream_watch* w : e.judged) {
    seen.push_back(w->describe());
    if (w->first_event && (first == 0 || w->first_event > first)) first = w->first_event;
  }
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  if (e.dropped) {
    rep.reaction = "not observable (we dropped the connection)";
  } else if (c.quic->closed() && c.quic->close_state().by == close_info::cause::peer) {
    rep.reaction = "closed the connection: " + describe(c.quic->close_state());
    first = c.quic->close_state().at;
  } else {
    rep.reaction = seen.empty() ? "nothing" : seen[0];
    for (std::size_t i = 1; i < seen.size(); ++i) rep.reaction += " | " + seen[i];
    if (seen.size() > 1)
      rep.reaction = fmt::format("{} streams: {}", e.judged.size(), rep.reaction);
  }
  rep.reacted = first != 0;
  rep.reaction_time = first > t0 ? first - t0 : 0;
  if (!rep.reacted && !e.dropped)
    rep.reaction += fmt::format(" within {}", human_duration(ctx.options.abuse_wait));

  // Did the server meet the expectation for the abused streams?
  if (!e.dropped && !c.quic->closed()) {
    for (stream_watch* w : e.judged) {
      if (ac.expectation == expect::end && (!w->ended() || w->answered())) {
        rep.expectation_failure = w->answered()
                                      ? "the server answered a request it should have refused"
                                      : "the server left the stream open";
        break;
      }
      if (ac.expectation == expect::answer) {
        const auto r = detour::decode_response(w->received);
        if (!r.complete()) {
          rep.expectation_failure = "no answer to a valid header";
          break;
        }
      }
    }
  }
  e.detach();
  // A connection closed by the server for one bad stream takes g3proxy's other tasks with it.
  if (!e.dropped && c.quic->closed())
    rep.expectation_failure = "the server closed the whole connection for one stream";

  if (e.dropped) {
    rep.same_connection_skip = "n/a (connection dropped by us)";
  } else if (c.quic->closed()) {
    rep.same_connection_skip = "impossible: the connection is closed";
  } else {
    rep.same_connection = follow_up(ctx, pool, &c);
  }
  pool.close(c);
  rep.new_connection = follow_up(ctx, pool, nullptr);

  rep.ok = rep.expectation_failure.empty() && rep.new_connection && rep.new_connection->ok() &&
           (e.dropped || (rep.same_connection && rep.same_connection->ok()));
  return rep;
}

} // namespace

std::vector<std::string> abuse_case_names() {
  std::vector<std::string> names;
  for (const abuse_case& ac : all_cases()) names.push_back(ac.name);
  return names;
}

int run_abuse(probe_context& ctx) {
  const probe_options& o = ctx.options;
  pool_config pc = o.pool;
  client_pool pool(ctx.loop, ctx.tls, pc, ctx.log);
  std::vector<case_report> reports;
  if (!o.json) {
    fmt::print("abuse: hostile input against {} (watching each reaction for {})\n",
               o.pool.quic.server.to_string(), human_duration(o.abuse_wait));
    std::fflush(stdout);
  }
  for (const abuse_case& ac : all_cases()) {
    if (!o.only.empty() && ac.name.find(o.only) == std::string::npos) continue;
    if (monotonic_now() >= ctx.deadline) {
      case_report rep;
      rep.name = ac.name;
      rep.reaction = "not run: the run's deadline passed (--deadline)";
      reports.push_back(rep);
      continue;
    }
    case_report rep = run_case(ctx, pool, ac);
    if (!o.json) {
      fmt::print("  {}  {}\n", rep.ok ? "PASS" : "FAIL", rep.name);
      fmt::print("        server: {}{}\n", rep.reaction,
                 rep.reacted ? fmt::format(" after {}", human_duration(rep.reaction_time)) : "");
      if (!rep.note.empty()) fmt::print("        note: {}\n", rep.note);
      if (!rep.expectation_failure.empty())
        fmt::print("        wrong: {}\n", rep.expectation_failure);
      fmt::print("        then: same connection {}; new connection {}\n",
                 follow_up_text(rep.same_connection, rep.same_connection_skip),
                 follow_up_text(rep.new_connection, ""));
      std::fflush(stdout);
    }
    reports.push_back(std::move(rep));
    // Cases are independent: nothing of one may linger into the next.
    pool.shutdown("finished");
  }
  std::size_t passed = 0;
  for (const auto& r : reports) passed += r.ok ? 1 : 0;
  const bool ok = passed == reports.size() && !reports.empty();
  if (o.json) {
    json_writer j;
    j.begin_object()
        .field("mode", "abuse")
        .field("server", o.pool.quic.server.to_string())
        .field("wait_ms", to_ms(o.abuse_wait))
        .key("cases")
        .begin_array();
    for (const auto& r : reports) {
      j.begin_object()
          .field("name", r.name)
          .field("ok", r.ok)
          .field("server", r.reaction)
          .key("reaction_ms");
      if (r.reacted)
        j.value(to_ms(r.reaction_time));
      else
        j.null();
      j.field("note", r.note)
          .field("wrong", r.expectation_failure)
          .field("same_connection", follow_up_text(r.same_connection, r.same_connection_skip))
          .field("new_connection", follow_up_text(r.new_connection, ""))
          .end_object();
    }
    j.end_array()
        .field("passed", static_cast<std::uint64_t>(passed))
        .field("failed", static_cast<std::uint64_t>(reports.size() - passed))
        .field("ok", ok)
        .end_object();
    fmt::print("{}\n", j.str());
  } else {
    fmt::print("result: {} ({} of {} cases passed)\n", ok ? "PASS" : "FAIL", passed,
               reports.size());
  }
  return ok ? exit_passed : exit_failed;
}

} // namespace detour::cli::probe
