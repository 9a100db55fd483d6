// SPDX-License-Identifier: MIT
// cli/probe_script.cpp: the protocol conversations of `detour probe --relay-data protocol` (see
// probe_script.hpp). Each is a fixed, valid exchange a dissector (Wireshark, tshark) decodes.
#include "probe_script.hpp"

#include <array>
#include <initializer_list>
#include <string>
#include <utility>

namespace detour::cli::probe {

namespace {

struct builder {
  relay_script script;

  builder& turn(side from, std::string_view bytes) {
    auto& out = from == side::north ? script.client : script.remote;
    out.insert(out.end(), bytes.begin(), bytes.end());
    if (!script.turns.empty() && script.turns.back().from == from) {
      script.turns.back().bytes += bytes.size();
    } else {
      script.turns.push_back({from, bytes.size()});
    }
    return *this;
  }
  builder& client(std::string_view b) { return turn(side::north, b); }
  builder& remote(std::string_view b) { return turn(side::south, b); }
};

std::shared_ptr<const relay_script> smtp() {
  builder b;
  b.remote("220 mail.example.com ESMTP detour-probe\r\n")
      .client("EHLO client.example.com\r\n")
      .remote("250-mail.example.com\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n")
      // AUTH PLAIN "\0alice\0secret": what a redacting server should never let through.
      .client("AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
      .remote("235 2.7.0 Authentication successful\r\n")
      .client("MAIL FROM:<alice@example.com>\r\n")
      .remote("250 2.1.0 Ok\r\n")
      .client("RCPT TO:<bob@example.com>\r\n")
      .remote("250 2.1.5 Ok\r\n")
      .client("DATA\r\n")
      .remote("354 End data with <CR><LF>.<CR><LF>\r\n")
      .client("From: alice@example.com\r\nTo: bob@example.com\r\nSubject: detour probe\r\n"
              "\r\nHello Bob, this message went through a detour server.\r\n"
              // A well-known test card number (Luhn-valid): data loss prevention finds it.
              "Card: 4111 1111 1111 1111, expires 12/30\r\n.\r\n")
      .remote("250 2.0.0 Ok: queued as 4F2A1\r\n")
      .client("QUIT\r\n")
      .remote("221 2.0.0 Bye\r\n");
  return std::make_shared<const relay_script>(std::move(b.script));
}

std::shared_ptr<const relay_script> imap() {
  builder b;
  b.remote("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] detour-probe ready\r\n")
      .client("a1 CAPABILITY\r\n")
      .remote("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\na1 OK CAPABILITY completed\r\n")
      .client("a2 LOGIN alice secret\r\n")
      .remote("a2 OK LOGIN completed\r\n")
      .client("a3 SELECT INBOX\r\n")
      .remote("* 1 EXISTS\r\n* 0 RECENT\r\na3 OK [READ-WRITE] SELECT completed\r\n")
      .client("a4 FETCH 1 (FLAGS)\r\n")
      .remote("* 1 FETCH (FLAGS (\\Seen))\r\na4 OK FETCH completed\r\n")
      .client("a5 LOGOUT\r\n")
      .remote("* BYE logging out\r\na5 OK LOGOUT completed\r\n");
  return std::make_shared<const relay_script>(std::move(b.script));
}

// An HTTP/2 frame (RFC 9113 §4.1): 24-bit length, type, flags, 31-bit stream id, payload.
std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream,
                  std::string_view payload) {
  std::string f;
  f += static_cast<char>(payload.size() >> 16);
  f += static_cast<char>(payload.size() >> 8);
  f += static_cast<char>(payload.size());
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  for (int shift = 24; shift >= 0; shift -= 8) f += static_cast<char>(stream >> shift);
  f += payload;
  return f;
}

// An HPACK literal with incremental indexing and an indexed name (RFC 7541 §6.2.1), no Huffman.
std::string literal(std::uint8_t name_index, std::string_view value) {
  std::string s;
  s += static_cast<char>(0x40 | name_index); // indices below 63 fit the 6-bit prefix
  s += static_cast<char>(value.size());      // values below 127 fit the 7-bit prefix
  s += value;
  return s;
}

std::shared_ptr<const relay_script> http_2() {
  constexpr std::uint8_t data = 0x0, headers = 0x1, settings = 0x4, goaway = 0x7;
  constexpr std::uint8_t end_stream = 0x1, end_headers = 0x4, ack = 0x1;
  // Request: :method GET (static 2), :scheme https (7), :path / (4), :authority.
  const std::string request_block = std::string("\x82\x87\x84", 3) + literal(1, "www.example.com") +
                                    literal(58, "detour-probe"); // user-agent
  // Response: :status 200 (static 8), content-type.
  const std::string response_block = std::string("\x88", 1) + literal(31, "text/plain");
  const std::string body = "hello from the remote, through the detour\n";
  builder b;
  b.client(std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + frame(settings, 0, 0, {}) +
           frame(headers, end_headers | end_stream, 1, request_block))
      .remote(frame(settings, 0, 0, {}) + frame(settings, ack, 0, {}) +
              frame(headers, end_headers, 1, response_block) + frame(data, end_stream, 1, body))
      .client(frame(settings, ack, 0, {}) +
              frame(goaway, 0, 0, std::string("\x00\x00\x00\x01\x00\x00\x00\x00", 8)));
  return std::make_shared<const relay_script>(std::move(b.script));
}

// A WebSocket frame (RFC 6455 §5.2), FIN set; masked with `mask` when it comes from the client.
std::string ws_frame(std::uint8_t opcode, std::string_view payload, const char* mask) {
  std::string f;
  f += static_cast<char>(0x80 | opcode);
  f += static_cast<char>((mask ? 0x80 : 0) | payload.size()); // payloads below 126 bytes
  if (mask) f.append(mask, 4);
  for (std::size_t i = 0; i < payload.size(); ++i)
    f += static_cast<char>(payload[i] ^ (mask ? mask[i % 4] : 0));
  return f;
}

std::shared_ptr<const relay_script> websocket() {
  constexpr std::uint8_t text = 0x1, close = 0x8;
  const char mask1[] = "\x12\x34\x56\x78";
  const char mask2[] = "\x9a\xbc\xde\xf0";
  builder b;
  b.client(ws_frame(text, "hello from the client", mask1))
      .remote(ws_frame(text, "hello from the remote", nullptr))
      .client(ws_frame(text, "{\"subscribe\":\"detour/probe\"}", mask2))
      .remote(ws_frame(text, "{\"ok\":true}", nullptr))
      .client(ws_frame(close, std::string("\x03\xe8", 2), mask1))
      .remote(ws_frame(close, std::string("\x03\xe8", 2), nullptr));
  return std::make_shared<const relay_script>(std::move(b.script));
}

} // namespace

std::shared_ptr<const relay_script> protocol_script(std::string_view protocol) {
  if (protocol == "smtp") return smtp();
  if (protocol == "imap") return imap();
  if (protocol == "http_2") return http_2();
  if (protocol == "websocket") return websocket();
  return nullptr;
}

} // namespace detour::cli::probe
