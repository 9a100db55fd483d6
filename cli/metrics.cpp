// SPDX-License-Identifier: MIT
// cli/metrics.cpp: counters, the Prometheus text exposition and the HTTP responder (see
// metrics.hpp).
#include "metrics.hpp"

#include "http_request.hpp"

#include <fmt/format.h>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace detour::cli {

namespace {

constexpr std::string_view protocol_names[] = {"http_2", "websocket", "smtp", "imap", "other"};
constexpr action action_values[] = {action::proceed, action::bypass, action::block};

std::size_t action_index(action a) noexcept {
  return a == action::proceed ? 0 : a == action::bypass ? 1 : 2;
}

// Task durations: from a quick bypass (well under a millisecond) to a long-lived WebSocket.
std::vector<double> duration_bounds() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800};
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t v) {
  if (labels.empty()) {
    fmt::format_to(std::back_inserter(out), "{} {}\n", name, v);
  } else {
    fmt::format_to(std::back_inserter(out), "{}{{{}}} {}\n", name, labels, v);
  }
}

void counter(std::string& out, std::string_view name, std::string_view help, std::uint64_t v) {
  family(out, name, "counter", help);
  sample(out, name, {}, v);
}

void gauge(std::string& out, std::string_view name, std::string_view help, std::uint64_t v) {
  family(out, name, "gauge", help);
  sample(out, name, {}, v);
}

std::string bound_text(double b) {
  return fmt::format("{}", b);
}

} // namespace

// --- histogram -----------------------------------------------------------------------------------

histogram::histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1, 0) {}

void histogram::observe(double v) noexcept {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++buckets_[i];
  ++count_;
  sum_ += v;
}

std::uint64_t histogram::cumulative(std::size_t i) const noexcept {
  std::uint64_t n = 0;
  for (std::size_t k = 0; k <= i && k < buckets_.size(); ++k) n += buckets_[k];
  return n;
}

// --- metrics -------------------------------------------------------------------------------------

metrics::metrics() : duration_(duration_bounds()) {}

std::size_t metrics::protocol_index(std::string_view protocol) noexcept {
  for (std::size_t i = 0; i + 1 < protocols; ++i)
    if (protocol == protocol_names[i]) return i;
  return protocols - 1;
}

std::string_view metrics::protocol_label(std::string_view protocol) noexcept {
  return protocol_names[protocol_index(protocol)];
}

std::string_view metrics::end_label(std::string_view end) noexcept {
  if (end == "finished") return "finished";
  // An error name: a fixed set, as the library defines it.
  for (int v = 1; v < 256; ++v) {
    const std::string_view name = errc_name(static_cast<errc>(v));
    if (!name.empty() && name == end) return name;
  }
  return "connection_closed";
}

void metrics::task_answered(std::string_view protocol, action a) {
  ++answered_[protocol_index(protocol)][action_index(a)];
}

void metrics::task_ended(std::string_view protocol, action a, std::string_view end,
                         std::uint64_t client_bytes, std::uint64_t remote_bytes,
                         std::uint64_t duration_ns) {
  std::string key = fmt::format("protocol=\"{}\",action=\"{}\",end=\"{}\"",
                                protocol_label(protocol), detour::to_string(a), end_label(end));
  const auto it = ended_.find(key);
  if (it == ended_.end()) {
    ended_.emplace(std::move(key), 1);
  } else {
    ++it->second;
  }
  client_bytes_ += client_bytes;
  remote_bytes_ += remote_bytes;
  duration_.observe(static_cast<double>(duration_ns) / 1e9);
}

void metrics::stream_error(errc e) {
  const std::string_view name = errc_name(e);
  ++stream_errors_[std::string(name.empty() ? std::string_view("unknown") : name)];
}

void metrics::handshake_failed(std::string_view reason) {
  ++handshake_failures_[std::string(reason)];
}

void metrics::policy_reload(bool ok) {
  ++(ok ? reloads_ok_ : reloads_refused_);
}

std::uint64_t metrics::tasks_answered() const noexcept {
  std::uint64_t n = 0;
  for (const auto& row : answered_)
    for (const auto v : row) n += v;
  return n;
}

std::uint64_t metrics::stream_errors() const noexcept {
  std::uint64_t n = 0;
  for (const auto& [k, v] : stream_errors_) n += v;
  return n;
}

std::uint64_t metrics::handshake_failures() const noexcept {
  std::uint64_t n = 0;
  for (const auto& [k, v] : handshake_failures_) n += v;
  return n;
}

std::string metrics::render(const metrics_gauges& g) const {
  std::string out;
  out.reserve(8192);
  counter(out, "detour_connections_accepted_total", "QUIC connections accepted.",
          g.connections_accepted);
  gauge(out, "detour_connections_open", "QUIC connections open now.", g.connections_open);
  counter(out, "detour_connections_refused_total",
          "Connections refused: over --max-connections or while shutting down.",
          g.connections_refused);
  counter(out, "detour_retries_total", "QUIC Retry packets sent (--retry).", g.retries);
  counter(out, "detour_stateless_resets_total", "Stateless resets sent.", g.stateless_resets);
  counter(out, "detour_version_negotiations_total", "Version negotiation packets sent.",
          g.version_negotiations);
  counter(out, "detour_packets_forwarded_total",
          "Packets received by one worker and handed to another (--workers): new connections "
          "placed there by --placement pack, and, without the kernel's steering, packets of "
          "clients whose address changed.",
          g.packets_forwarded);

  family(out, "detour_handshake_failures_total", "counter",
         "Handshakes that failed, by reason (tls: certificate, ALPN, ...; timeout).");
  for (const std::string_view reason : {"tls", "timeout"}) {
    const auto it = handshake_failures_.find(reason);
    sample(out, "detour_handshake_failures_total", fmt::format("reason=\"{}\"", reason),
           it == handshake_failures_.end() ? 0 : it->second);
  }

  family(out, "detour_tasks_total", "counter", "Tasks answered, by protocol (E4) and action.");
  for (std::size_t p = 0; p < protocols; ++p) {
    for (std::size_t a = 0; a < actions; ++a) {
      sample(out, "detour_tasks_total",
             fmt::format("protocol=\"{}\",action=\"{}\"", protocol_names[p],
                         detour::to_string(action_values[a])),
             answered_[p][a]);
    }
  }
  gauge(out, "detour_tasks_running", "Tasks answered and not ended yet.",
        tasks_answered() - std::min(tasks_answered(), tasks_ended()));
  family(out, "detour_tasks_ended_total", "counter",
         "Tasks ended, by protocol, action and how (finished, an error name, "
         "connection_closed).");
  for (const auto& [labels, v] : ended_) sample(out, "detour_tasks_ended_total", labels, v);

  family(out, "detour_relayed_bytes_total", "counter",
         "Bytes relayed through the server by ended tasks, by direction.");
  sample(out, "detour_relayed_bytes_total", "direction=\"client_to_remote\"", client_bytes_);
  sample(out, "detour_relayed_bytes_total", "direction=\"remote_to_client\"", remote_bytes_);

  family(out, "detour_stream_errors_total", "counter",
         "Streams reset for a protocol error or a timeout, by error (docs/errors.md).");
  for (const auto& [name, v] : stream_errors_)
    sample(out, "detour_stream_errors_total", fmt::format("error=\"{}\"", name), v);

  family(out, "detour_task_duration_seconds", "histogram",
         "Time from the answer to the end of a task.");
  for (std::size_t i = 0; i < duration_.bounds().size(); ++i) {
    sample(out, "detour_task_duration_seconds_bucket",
           fmt::format("le=\"{}\"", bound_text(duration_.bounds()[i])), duration_.cumulative(i));
  }
  sample(out, "detour_task_duration_seconds_bucket", "le=\"+Inf\"", duration_.count());
  fmt::format_to(std::back_inserter(out), "detour_task_duration_seconds_sum {}\n", duration_.sum());
  sample(out, "detour_task_duration_seconds_count", {}, duration_.count());

  family(out, "detour_policy_reloads_total", "counter",
         "Policy reloads on SIGHUP, by result (a refused file leaves the old policy in use).");
  sample(out, "detour_policy_reloads_total", "result=\"ok\"", reloads_ok_);
  sample(out, "detour_policy_reloads_total", "result=\"refused\"", reloads_refused_);

  if (g.audit) {
    counter(out, "detour_audit_records_total", "Audit records written.", g.audit_written);
    counter(out, "detour_audit_dropped_total",
            "Audit records dropped: the queue to the disk was full.", g.audit_dropped);
    counter(out, "detour_audit_write_errors_total", "Failed writes to the audit file.",
            g.audit_write_errors);
  }
  if (g.capture) {
    counter(out, "detour_capture_packets_total", "Synthetic packets written to the capture.",
            g.capture_packets);
    counter(out, "detour_capture_bytes_total", "Bytes of those packets.", g.capture_bytes);
    counter(out, "detour_capture_dropped_total",
            "Groups of capture packets dropped: the queue to the disk was full.",
            g.capture_dropped);
    counter(out, "detour_capture_rotations_total", "Capture files started at the size limit.",
            g.capture_rotations);
    counter(out, "detour_capture_write_errors_total", "Failed capture writes, renames, opens.",
            g.capture_write_errors);
  }
  return out;
}

// --- the HTTP responder --------------------------------------------------------------------------

struct metrics_http::client {
  int fd = -1;
  std::string in;
  std::string out;
  std::size_t sent = 0;
  std::unique_ptr<io_watch> watch;
  std::unique_ptr<timer> deadline;
  bool closing = false;

  ~client() {
    watch.reset();
    if (fd >= 0) ::close(fd);
  }
};

namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

std::string response(std::string_view status, std::string_view type, std::string_view body,
                     bool head_only) {
  std::string r = fmt::format("HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n"
                              "Connection: close\r\nCache-Control: no-store\r\n\r\n",
                              status, type, body.size());
  if (!head_only) r += body;
  return r;
}

} // namespace

metrics_http::metrics_http(event_loop& loop, const socket_address& address, render_fn render,
                           metrics_http_options options)
    : loop_(loop), render_(std::move(render)), options_(options), reaper_(loop, [this] {
        std::vector<client*> dead;
        dead.swap(closing_);
        for (client* c : dead) clients_.erase(c);
      }) {
  fd_ = ::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw_errno("metrics: socket");
  const int one = 1;
  (void)::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd_, address.data(), address.size()) != 0 || ::listen(fd_, 64) != 0) {
    const int e = errno;
    ::close(fd_);
    errno = e;
    throw_errno("metrics: cannot listen on " + address.to_string());
  }
  watch_ = std::make_unique<io_watch>(loop_, fd_, EPOLLIN, [this](std::uint32_t) { on_accept(); });
}

metrics_http::~metrics_http() {
  clients_.clear();
  watch_.reset();
  if (fd_ >= 0) ::close(fd_);
}

socket_address metrics_http::local_address() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  return socket_address(reinterpret_cast<const sockaddr*>(&ss), len);
}

void metrics_http::on_accept() {
  for (int round = 0; round < 16; ++round) {
    const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return; // EAGAIN, or an error to try again on the next readiness
    if (clients_.size() >= options_.max_clients) {
      ::close(fd); // busy: a scraper retries at its next interval
      continue;
    }
    auto c = std::make_unique<client>();
    client* raw = c.get();
    c->fd = fd;
    c->watch = std::make_unique<io_watch>(loop_, fd, EPOLLIN,
                                          [this, raw](std::uint32_t ev) { on_client(*raw, ev); });
    c->deadline = std::make_unique<timer>(loop_, [this, raw] { close_client(*raw); });
    c->deadline->arm_in(options_.client_timeout);
    clients_.emplace(raw, std::move(c));
  }
}

void metrics_http::on_client(client& c, std::uint32_t events) {
  if (c.closing) return;
  if (events & (EPOLLERR | EPOLLHUP)) {
    if (!(events & EPOLLIN)) {
      close_client(c);
      return;
    }
  }
  if (c.out.empty() && (events & EPOLLIN)) {
    char buf[2048];
    while (true) {
      const ssize_t n = ::read(c.fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) { // closed before a whole request, or an error
        close_client(c);
        return;
      }
      c.in.append(buf, static_cast<std::size_t>(n));
      if (c.in.size() > options_.max_request) break;
    }
    const auto head = parse_request_head(c.in);
    using status = http_request_head::status;
    if (head.state == status::need_more && c.in.size() <= options_.max_request) return;
    ++requests_;
    if (head.state != status::complete) {
      c.out = response("400 Bad Request", "text/plain; charset=utf-8", "bad request\n", false);
    } else if (head.method != "GET" && head.method != "HEAD") {
      c.out = response("405 Method Not Allowed", "text/plain; charset=utf-8", "only GET /metrics\n",
                       false);
    } else if (const std::string_view path = head.target.substr(0, head.target.find('?'));
               path != "/metrics" && path != "/") {
      c.out = response("404 Not Found", "text/plain; charset=utf-8", "try /metrics\n",
                       head.method == "HEAD");
    } else {
      c.out = response("200 OK", "text/plain; version=0.0.4; charset=utf-8", render_(),
                       head.method == "HEAD");
    }
    ::shutdown(c.fd, SHUT_RD);
  }
  while (c.sent < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c.watch->set_events(EPOLLOUT);
      return;
    }
    if (n <= 0) break;
    c.sent += static_cast<std::size_t>(n);
  }
  close_client(c);
}

void metrics_http::close_client(client& c) {
  if (c.closing) return;
  c.closing = true;
  c.deadline->cancel();
  c.watch.reset();
  closing_.push_back(&c);
  reaper_.schedule();
}

} // namespace detour::cli
