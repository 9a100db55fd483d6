// SPDX-License-Identifier: MIT
// tests/e2e/inspect_support.hpp: what the end-to-end tests of `detour serve`'s inspection
// features share: a small JSON reader for audit lines, files, running a command (tshark) and
// fetching the metrics endpoint, all on loopback and bounded in time.
#pragma once

#include "client.hpp"

#include <catch2/catch_test_macros.hpp>

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

namespace detour::test {

/// A JSON value: null, bool, number, string, array or object (what audit lines hold).
struct json {
  using array = std::vector<json>;
  using object = std::map<std::string, json>;
  std::variant<std::nullptr_t, bool, double, std::string, array, object> v;

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(v); }
  const std::string& str() const { return std::get<std::string>(v); }
  double num() const { return std::get<double>(v); }
  bool boolean() const { return std::get<bool>(v); }
  const object& obj() const { return std::get<object>(v); }
  const json& operator[](const std::string& key) const { return obj().at(key); }
  bool has(const std::string& key) const { return obj().count(key) != 0; }

  /// Parses one JSON text (RFC 8259); throws std::runtime_error at the first mistake. A lone
  /// \udcXX escape (the audit's "surrogateescape" of a byte that is not UTF-8) becomes that byte.
  static json parse(std::string_view text) {
    std::size_t at = 0;
    json j = value(text, at);
    skip(text, at);
    if (at != text.size()) fail(at, "trailing bytes");
    return j;
  }

private:
  [[noreturn]] static void fail(std::size_t at, const char* what) {
    throw std::runtime_error("json: " + std::string(what) + " at byte " + std::to_string(at));
  }
  static void skip(std::string_view t, std::size_t& at) {
    while (at < t.size() && (t[at] == ' ' || t[at] == '\n' || t[at] == '\r' || t[at] == '\t')) ++at;
  }
  static void expect(std::string_view t, std::size_t& at, std::string_view word) {
    if (t.substr(at, word.size()) != word) fail(at, "unexpected word");
    at += word.size();
  }
  static unsigned hex4(std::string_view t, std::size_t at) {
    if (at + 4 > t.size()) fail(at, "short \\u escape");
    unsigned v = 0;
    for (std::size_t i = 0; i < 4; ++i) {
      const char c = t[at + i];
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        v |= static_cast<unsigned>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F')
        v |= static_cast<unsigned>(c - 'A' + 10);
      else
        fail(at, "bad \\u escape");
    }
    return v;
  }
  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  static std::string string(std::string_view t, std::size_t& at) {
    expect(t, at, "\"");
    std::string out;
    while (true) {
      if (at >= t.size()) fail(at, "unterminated string");
      const char c = t[at++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail(at, "control character in a string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at >= t.size()) fail(at, "unterminated escape");
      const char e = t[at++];
      switch (e) {
      case '"':
        out += '"';
        break;
      case '\\':
        out += '\\';
        break;
      case '/':
        out += '/';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        unsigned cp = hex4(t, at);
        at += 4;
        if (cp >= 0xDC80 && cp <= 0xDCFF) { // surrogateescape: a raw byte
          out += static_cast<char>(cp - 0xDC00);
          break;
        }
        if (cp >= 0xD800 && cp <= 0xDBFF && t.substr(at, 2) == "\\u") {
          const unsigned lo = hex4(t, at + 2);
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            at += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
        }
        utf8(out, cp);
        break;
      }
      default:
        fail(at, "bad escape");
      }
    }
  }
  static json value(std::string_view t, std::size_t& at) {
    skip(t, at);
    if (at >= t.size()) fail(at, "no value");
    const char c = t[at];
    if (c == 'n') return expect(t, at, "null"), json{nullptr};
    if (c == 't') return expect(t, at, "true"), json{true};
    if (c == 'f') return expect(t, at, "false"), json{false};
    if (c == '"') return json{string(t, at)};
    if (c == '[') {
      ++at;
      array a;
      skip(t, at);
      if (at < t.size() && t[at] == ']') return ++at, json{a};
      while (true) {
        a.push_back(value(t, at));
        skip(t, at);
        if (at < t.size() && t[at] == ',') {
          ++at;
          continue;
        }
        expect(t, at, "]");
        return json{a};
      }
    }
    if (c == '{') {
      ++at;
      object o;
      skip(t, at);
      if (at < t.size() && t[at] == '}') return ++at, json{o};
      while (true) {
        skip(t, at);
        std::string key = string(t, at);
        skip(t, at);
        expect(t, at, ":");
        if (o.count(key)) fail(at, "duplicate key");
        o.emplace(std::move(key), value(t, at));
        skip(t, at);
        if (at < t.size() && t[at] == ',') {
          ++at;
          continue;
        }
        expect(t, at, "}");
        return json{o};
      }
    }
    const std::size_t start = at;
    if (t[at] == '-') ++at;
    while (at < t.size() && ((t[at] >= '0' && t[at] <= '9') || t[at] == '.' || t[at] == 'e' ||
                             t[at] == 'E' || t[at] == '+' || t[at] == '-'))
      ++at;
    if (at == start) fail(at, "not a value");
    return json{std::stod(std::string(t.substr(start, at - start)))};
  }
};

inline void write_file(const std::filesystem::path& p, std::string_view text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// The lines of a file, each without its '\n'.
inline std::vector<std::string> file_lines(const std::filesystem::path& p) {
  std::vector<std::string> out;
  std::istringstream in(read_file(p));
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// Runs a shell command; returns its exit status and what it wrote (stdout, and stderr unless
/// the command redirects it itself).
struct command_result {
  int status = -1;
  std::string output;
};
inline command_result run_command(const std::string& command) {
  command_result r;
  const bool own_stderr = command.find(" 2>") != std::string::npos;
  std::FILE* p = ::popen((own_stderr ? command : command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.output.append(buf, n);
  const int s = ::pclose(p);
  r.status = WIFEXITED(s) ? WEXITSTATUS(s) : -1;
  return r;
}

/// Whether `program` is on the PATH.
inline bool have_program(const std::string& program) {
  return run_command("command -v " + program + " >/dev/null").status == 0;
}

/// GET `path` from a loopback HTTP endpoint ("127.0.0.1:9090"); the whole response, or empty.
/// Bounded: 10 s for the whole exchange.
inline std::string http_get(const std::string& address, const std::string& path) {
  const auto to = cli::socket_address::parse(address);
  if (!to) return {};
  const int fd = ::socket(to->family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string out;
  if (::connect(fd, to->data(), to->size()) == 0) {
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + address + "\r\n\r\n";
    (void)::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
    char buf[8192];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
      out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

/// The value of the Prometheus sample `name{labels}` in an exposition; -1 when absent.
inline double metric(const std::string& exposition, const std::string& sample) {
  const std::string all = "\n" + exposition;
  const std::string needle = "\n" + sample + " ";
  const auto at = all.find(needle);
  if (at == std::string::npos) return -1;
  return std::stod(all.substr(at + needle.size()));
}

/// The value of `key=` in a text log line ("" when absent).
inline std::string log_field(const std::string& line, const std::string& key) {
  const auto at = line.find(" " + key + "=");
  if (at == std::string::npos) return {};
  const auto start = at + key.size() + 2;
  return line.substr(start, line.find(' ', start) - start);
}

/// Runs `client` until `done` holds or `deadline` passes, looking at `done` at least every
/// 20 ms: for what the client's own events do not announce (the server's log lines, its files,
/// its exit), which `client_pool::run_until` would only notice at its deadline.
inline bool poll_until(g3_client& client, const std::function<bool()>& done,
                       cli::timestamp deadline) {
  constexpr cli::timestamp step = 20 * cli::nanoseconds_per_second / 1000;
  while (!done()) {
    const cli::timestamp now = cli::monotonic_now();
    if (now >= deadline) return false;
    (void)client.pool->run_until([] { return false; }, std::min(deadline, now + step));
  }
  return true;
}

/// Stops `srv` the way an operator does (SIGTERM) while `client` keeps answering, after it
/// closed its idle connections as g3proxy does; returns the exit status (empty: no exit within
/// 30 s).
inline std::optional<int> stop_server(server_process& srv, g3_client& client) {
  client.pool->shutdown("end of test");
  srv.signal(SIGTERM);
  (void)poll_until(client, [&] { return !srv.running(); },
                   cli::monotonic_now() + 30 * cli::nanoseconds_per_second);
  return srv.wait_exit(5 * cli::nanoseconds_per_second);
}

/// Runs `plans` through `client`, requiring every task to pass.
inline std::vector<cli::probe::task_result>
run_ok(g3_client& client, const std::vector<cli::probe::task_plan>& plans) {
  auto results = client.run(plans);
  for (std::size_t i = 0; i < results.size(); ++i) {
    INFO("task " << i << ": " << cli::probe::to_string(results[i].error) << " "
                 << results[i].detail);
    REQUIRE(results[i].ok());
  }
  return results;
}

} // namespace detour::test
