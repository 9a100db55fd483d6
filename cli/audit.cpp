// SPDX-License-Identifier: MIT
// cli/audit.cpp: audit lines as JSON and the audit file's writer (see audit.hpp).
#include "audit.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <system_error>

namespace detour::cli {

namespace {

void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  const int n = std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
  out.append(buf, static_cast<std::size_t>(n));
}

void append_key(std::string& out, std::string_view key) {
  out += out.back() == '{' ? "\"" : ",\"";
  out += key;
  out += "\":";
}

void field(std::string& out, std::string_view key, std::string_view value) {
  append_key(out, key);
  append_json_string(out, value);
}

void field(std::string& out, std::string_view key, std::uint64_t value) {
  append_key(out, key);
  append_number(out, value);
}

void field_null(std::string& out, std::string_view key) {
  append_key(out, key);
  out += "null";
}

} // namespace

std::string rfc3339_utc(std::int64_t unix_ns) {
  const std::int64_t secs =
      unix_ns >= 0 ? unix_ns / 1'000'000'000 : -((-unix_ns + 999'999'999) / 1'000'000'000);
  const std::int64_t micros = (unix_ns - secs * 1'000'000'000) / 1000;
  const std::time_t t = static_cast<std::time_t>(secs);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[40];
  const int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, static_cast<long long>(micros));
  return std::string(buf, static_cast<std::size_t>(n));
}

std::int64_t wall_clock_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void append_audit_line(std::string& out, const audit_record& r) {
  out += '{';
  field(out, "time", rfc3339_utc(r.time_ns));
  field(out, "task", r.task);
  field(out, "conn", r.conn);
  field(out, "match", std::uint64_t{r.match_id});
  if (r.user) {
    field(out, "user", *r.user);
  } else {
    field_null(out, "user");
  }
  field(out, "client", r.client);
  field(out, "proxy", r.proxy);
  field(out, "upstream", r.upstream);
  field(out, "protocol", r.protocol);
  if (r.websocket) {
    append_key(out, "websocket");
    out += '{';
    if (!r.ws_error.empty()) {
      field(out, "error", r.ws_error);
    } else {
      field(out, "resource", r.ws_resource);
      append_key(out, "headers");
      out += '{';
      for (const auto& [name, value] : r.ws_headers) {
        if (out.back() != '{') out += ',';
        append_json_string(out, name); // names come from the wire: escaped like values
        out += ':';
        append_json_string(out, value);
      }
      out += '}';
    }
    out += '}';
  } else {
    field_null(out, "websocket");
  }
  if (r.rule) {
    field(out, "rule", *r.rule);
  } else {
    field_null(out, "rule");
  }
  field(out, "action", detour::to_string(r.decision));
  append_key(out, "capture");
  out += r.capture ? "true" : "false";
  field(out, "client_bytes", r.client_bytes);
  field(out, "remote_bytes", r.remote_bytes);
  append_key(out, "duration_ms");
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(r.duration_ns) / 1e6);
  out.append(buf, static_cast<std::size_t>(n));
  field(out, "end", r.end);
  out += "}\n";
}

// --- the file ------------------------------------------------------------------------------------

struct audit_log::file {
  int fd = -1;
  bool owned = false; // not standard output

  ~file() { close(); }
  void close() {
    if (fd >= 0 && owned) {
      (void)::fdatasync(fd); // a clean exit leaves the lines on the disk, not in the cache
      (void)::close(fd);
    }
    fd = -1;
  }
};

namespace {

int open_audit(const std::string& path, int& error) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  error = fd < 0 ? errno : 0;
  return fd;
}

// Writes all of |data|; false on an error other than EINTR.
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

} // namespace

audit_log::audit_log(audit_options options)
    : options_(std::move(options)), file_(std::make_shared<file>()) {
  if (options_.path == "-") {
    file_->fd = STDOUT_FILENO;
  } else {
    int error = 0;
    file_->fd = open_audit(options_.path, error);
    if (file_->fd < 0) {
      throw std::system_error(error, std::generic_category(),
                              "cannot open the audit file " + options_.path);
    }
    file_->owned = true;
  }
  writer_ = std::make_unique<writer_thread<std::string>>(
      options_.max_queued_bytes, [f = file_, this](std::vector<std::string>& lines) {
        std::string block;
        std::size_t total = 0;
        for (const auto& l : lines) total += l.size();
        block.reserve(total);
        for (const auto& l : lines) block += l;
        if (!write_all(f->fd, block)) write_errors_.fetch_add(1);
      });
}

audit_log::~audit_log() {
  writer_.reset(); // writes what is queued, then stops
}

bool audit_log::write(const audit_record& r) {
  std::string line;
  line.reserve(512);
  append_audit_line(line, r);
  const std::size_t n = line.size();
  return writer_->push(std::move(line), n);
}

bool audit_log::reopen(std::string& error) {
  if (!file_->owned) return true; // standard output: nothing to reopen
  int err = 0;
  const int fd = open_audit(options_.path, err);
  if (fd < 0) {
    error = std::error_code(err, std::generic_category()).message();
    return false;
  }
  writer_->post([f = file_, fd] {
    f->close();
    f->fd = fd;
    f->owned = true;
  });
  return true;
}

void audit_log::flush() {
  writer_->flush();
}

std::uint64_t audit_log::written() const noexcept {
  return writer_->counters().written.load();
}

std::uint64_t audit_log::dropped() const noexcept {
  return writer_->counters().dropped.load();
}

} // namespace detour::cli
