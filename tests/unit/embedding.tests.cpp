// SPDX-License-Identifier: MIT
// The embedding example of docs/library.md ("Sessions: embedding the library"), compiled and run:
// a push-style stream type of the user's own (as a QUIC library with callbacks would feed it), a
// server_connection over it with an inspection hook, and a client playing g3proxy.
#include <detour/io/server_connection.hpp>

#include <detour/io/client_task.hpp>
#include <detour/io/memory_pipe.hpp>

#include "support/tasks.hpp"

#include <catch2/catch_test_macros.hpp>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace {

// ---- docs/library.md: "Your own stream type" --------------------------------------------------
// A push-style stream: the transport appends what arrives (a QUIC library's "data received"
// callback), consume() is where flow-control credit goes back, write_some() takes what fits in
// a bounded send buffer that the transport drains.
class my_stream {
public:
  // Transport side.
  void on_data(std::span<const std::uint8_t> bytes, bool fin) {
    rx_.insert(rx_.end(), bytes.begin(), bytes.end());
    fin_ = fin_ || fin;
  }
  void on_reset(std::uint64_t code) { reset_ = code; }
  void on_stop_sending(std::uint64_t code) { stopped_ = code; }
  std::vector<std::uint8_t> take_output() { return std::exchange(tx_, {}); }
  bool fin_sent() const { return fin_sent_; }
  std::uint64_t credit_given() const { return credit_; }

  // detour::duplex_stream.
  std::span<const std::uint8_t> readable() { return rx_; }
  void consume(std::size_t n) {
    rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(n));
    credit_ += n; // a QUIC adaptor extends the stream and connection windows by n here
  }
  bool at_eof() { return fin_; }
  std::optional<detour::app_code> receive_reset() { return reset_; }
  void stop_reading(detour::app_code code) { stop_sent_ = code; }
  std::size_t write_some(std::span<const std::uint8_t> bytes) {
    const std::size_t n = std::min(bytes.size(), send_limit - tx_.size());
    tx_.insert(tx_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    return n; // 0 when the send buffer is full: step again once the transport drained it
  }
  void close_write() { fin_sent_ = true; }
  std::optional<detour::app_code> send_stopped() { return stopped_; }
  void reset_write(detour::app_code code) { reset_sent_ = code; }

  static constexpr std::size_t send_limit = 64 * 1024;

private:
  std::vector<std::uint8_t> rx_, tx_;
  bool fin_ = false, fin_sent_ = false;
  std::optional<detour::app_code> reset_, stopped_, stop_sent_, reset_sent_;
  std::uint64_t credit_ = 0;
};
static_assert(detour::duplex_stream<my_stream>);

// ---- docs/library.md: "An inspection hook" ---------------------------------------------------
// Counts the SMTP commands a client sends and hides AUTH credentials from the remote: lines are
// collected across chunks, and each complete line is passed on (or rewritten).
struct smtp_auth_redactor {
  int* commands = nullptr; // shared by all streams
  std::string line{};      // this direction's unfinished line
  std::string out{};       // what this call forwards

  detour::io::verdict operator()(const detour::io::chunk<detour::task_request>& c) {
    const bool smtp = c.task && c.task->request.protocol == detour::protocol_kind::smtp;
    if (!smtp || c.side != detour::stream_kind::north) return detour::io::verdict::pass();
    out.clear();
    line.append(reinterpret_cast<const char*>(c.bytes.data()), c.bytes.size());
    for (std::size_t end; (end = line.find("\r\n")) != std::string::npos;) {
      std::string_view l(line.data(), end + 2);
      ++*commands;
      out +=
          l.starts_with("AUTH PLAIN ") ? std::string("AUTH PLAIN <redacted>\r\n") : std::string(l);
      line.erase(0, end + 2);
    }
    if (c.last) out += line; // an unfinished last line goes out as it is
    return detour::io::verdict::replace(
        {reinterpret_cast<const std::uint8_t*>(out.data()), out.size()});
  }
};

// ---- docs/library.md: "Serving a connection" ---------------------------------------------------
// What a server does per connection with its own streams; time is a plain tick here.
struct my_connection {
  using conn_type = detour::io::server_connection<my_stream, std::uint64_t, smtp_auth_redactor>;
  conn_type tasks;
  std::vector<std::pair<my_stream*, conn_type::stream_id>> open;

  explicit my_connection(int* commands)
      : tasks(/*pair_timeout=*/10'000, detour::io::server_options<std::uint64_t>{},
              smtp_auth_redactor{commands}) {}

  // The transport reports a new stream, or an event on one (data, FIN, reset, room to write).
  void on_stream_event(my_stream& s, std::uint64_t now) {
    auto it = std::find_if(open.begin(), open.end(), [&](auto& p) { return p.first == &s; });
    if (it == open.end()) {
      const auto id = tasks.open(s, now);
      if (!id) return s.reset_write(detour::io::app_code_for(detour::errc::pairing_full));
      it = open.insert(open.end(), {&s, *id});
    }
    switch (tasks.step(it->second, now)) {
    case detour::io::stream_status::decision: {
      // The policy: here at once; it could answer later, from anywhere on this thread.
      const auto& request = tasks.stream(it->second).task()->request;
      const auto a = request.upstream.host.ends_with(".blocked.example") ? detour::action::block
                                                                         : detour::action::proceed;
      (void)tasks.decide(it->second, a, now);
      break;
    }
    case detour::io::stream_status::done:
    case detour::io::stream_status::failed:
      // A QUIC server waits for the transport to close the stream, then releases it.
      tasks.release(it->second);
      open.erase(it);
      break;
    default:
      break;
    }
  }
  // The timer armed for tasks.next_expiry() fired.
  void on_timer(std::uint64_t now) { tasks.expire(now); }
};

// The network between a g3proxy-like client (memory pipe end a) and the server's my_stream:
// what the client wrote arrives through end b, what the server sends leaves through end b.
struct wire {
  detour::io::pipe_end* net;
  my_stream server{};
  bool fin_forwarded = false;

  void carry() {
    if (const auto code = net->receive_reset()) server.on_reset(*code);
    const auto in = net->readable();
    server.on_data(in, net->at_eof());
    net->consume(in.size());
    if (const auto code = net->send_stopped()) server.on_stop_sending(*code);
    const auto out = server.take_output();
    if (!out.empty()) REQUIRE(net->write_some(out) == out.size());
    if (server.fin_sent() && !fin_forwarded) {
      fin_forwarded = true;
      net->close_write();
    }
  }
};

} // namespace

TEST_CASE("the embedding example serves tasks over a user's own stream type", "[embedding][docs]") {
  int commands = 0;
  my_connection conn(&commands);
  detour::io::memory_pipe north_pipe, south_pipe;
  wire north{&north_pipe.b()}, south{&south_pipe.b()};

  const auto north_open = detour::test::north_bytes({.match_id = 0, .protocol = "smtp"});
  const auto south_open = detour::test::south_bytes(0);
  detour::io::client_task<detour::io::pipe_end> g3(north_pipe.a(), south_pipe.a(), north_open,
                                                   south_open, 0);
  const std::string client_says = "EHLO me\r\nAUTH PLAIN c2VjcmV0\r\nQUIT\r\n";
  bool sent = false;
  std::string echoed;
  for (std::uint64_t now = 0; now < 1000; ++now) {
    const auto st = g3.step();
    if (st == detour::io::client_status::relaying && !sent) {
      REQUIRE(north_pipe.a().write_some({reinterpret_cast<const std::uint8_t*>(client_says.data()),
                                         client_says.size()}) == client_says.size());
      north_pipe.a().close_write();
      south_pipe.a().close_write();
      sent = true;
    }
    for (wire* w : {&north, &south}) {
      w->carry();
      conn.on_stream_event(w->server, now);
      w->carry();
    }
    if (sent) {
      const auto v = north_pipe.a().readable();
      echoed.append(reinterpret_cast<const char*>(v.data()), v.size());
      north_pipe.a().consume(v.size());
      if (north_pipe.a().at_eof() && conn.open.empty()) break;
    }
  }
  CHECK(g3.status() == detour::io::client_status::relaying);
  CHECK(echoed == "EHLO me\r\nAUTH PLAIN <redacted>\r\nQUIT\r\n");
  CHECK(commands == 3);
  CHECK(north.server.credit_given() == north_open.size() + client_says.size());
  CHECK(conn.open.empty());
  CHECK(conn.tasks.pairing().empty());
}
