// SPDX-License-Identifier: MIT
// cli/inspection.cpp: options, policy loading and checking, and the per-task work of the
// inspection features (see inspection.hpp).
#include "inspection.hpp"

#include <fmt/format.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace detour::cli {

// --- options -------------------------------------------------------------------------------------

bool parse_inspection_option(arg_reader& r, inspection_options& o) {
  if (r.is("--policy")) {
    o.policy_file = r.value();
  } else if (r.is("--check-policy")) {
    o.check_policy = r.value();
  } else if (r.is("--audit")) {
    o.audit_file = r.value();
    if (o.audit_file.empty()) throw usage_error("--audit wants a file, or - for stdout");
  } else if (r.is("--audit-queue")) {
    o.audit_queue = r.size(64 * 1024, std::uint64_t{1} << 32);
  } else if (r.is("--capture")) {
    o.capture_file = r.value();
    if (o.capture_file.empty() || o.capture_file == "-")
      throw usage_error("--capture wants a file name");
  } else if (r.is("--capture-max-size")) {
    o.capture_max_size = r.size(64 * 1024, std::uint64_t{1} << 40);
  } else if (r.is("--capture-files")) {
    o.capture_files = static_cast<unsigned>(r.number(1, 1000));
  } else if (r.is("--capture-queue")) {
    o.capture_queue = r.size(1024 * 1024, std::uint64_t{1} << 34);
  } else if (r.is("--metrics")) {
    const std::string_view v = r.value();
    const auto a = socket_address::parse(v);
    if (!a) {
      throw usage_error("--metrics wants ADDR:PORT such as 127.0.0.1:9090 or [::1]:9090, not '" +
                        std::string(v) + "'");
    }
    o.metrics = *a;
  } else if (r.is("--summary-interval")) {
    o.summary_interval = parse_duration(r.name(), r.value());
    if (o.summary_interval != 0 && o.summary_interval < nanoseconds_per_second)
      throw usage_error("--summary-interval is 0 (never) or at least 1s");
  } else {
    return false;
  }
  return true;
}

void check_inspection_options(const inspection_options& o) {
  if (!o.policy_file.empty() && o.action_given) {
    throw usage_error("--action and --policy do not go together: the policy's default line "
                      "answers the tasks no rule matches");
  }
  const inspection_options defaults;
  if (o.audit_file.empty() && o.audit_queue != defaults.audit_queue)
    throw usage_error("--audit-queue needs --audit");
  if (o.capture_file.empty() &&
      (o.capture_max_size != defaults.capture_max_size ||
       o.capture_files != defaults.capture_files || o.capture_queue != defaults.capture_queue))
    throw usage_error("--capture-max-size, --capture-files and --capture-queue need --capture");
}

// --- policy files --------------------------------------------------------------------------------

namespace {

// The line `number` (1-based) of `text`, without its line end.
std::string_view line_of(std::string_view text, std::size_t number) {
  std::size_t start = 0;
  for (std::size_t n = 1; n < number; ++n) {
    const auto nl = text.find('\n', start);
    if (nl == std::string_view::npos) return {};
    start = nl + 1;
  }
  std::string_view line = text.substr(start, text.find('\n', start) - start);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

std::string explain(const std::string& path, std::string_view text, const policy_issue& e,
                    std::string_view kind) {
  std::string out = fmt::format("{}:{}:{}: {}: {}", path, e.line, e.column, kind, e.message);
  const std::string_view line = line_of(text, e.line);
  if (!line.empty() && line.size() <= 200) {
    std::string caret;
    for (std::size_t i = 0; i + 1 < e.column && i < line.size(); ++i)
      caret += line[i] == '\t' ? '\t' : ' ';
    out += fmt::format("\n    {}\n    {}^", line, caret);
  }
  return out;
}

} // namespace

policy_load load_policy(const std::string& path) {
  policy_load out;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    out.errors.push_back(path + ": cannot read the policy file");
    return out;
  }
  const policy_limits limits;
  std::string text;
  text.resize(limits.max_file_size + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (in.bad()) {
    out.errors.push_back(path + ": cannot read the policy file");
    return out;
  }
  auto r = policy::parse(text, limits);
  for (const auto& e : r.errors) out.errors.push_back(explain(path, text, e, "error"));
  for (const auto& w : r.warnings) out.warnings.push_back(explain(path, text, w, "warning"));
  if (r.value) out.value = std::make_shared<const policy>(std::move(*r.value));
  return out;
}

int check_policy_command(const std::string& path, std::FILE* out) {
  const policy_load p = load_policy(path);
  for (const auto& e : p.errors) fmt::print(out, "{}\n", e);
  for (const auto& w : p.warnings) fmt::print(out, "{}\n", w);
  if (!p.value) {
    fmt::print(out, "{}: {} error{}: not a usable policy\n", path, p.errors.size(),
               p.errors.size() == 1 ? "" : "s");
    return 1;
  }
  const auto rules = p.value->rules();
  fmt::print(out, "{}: {} rule{} and a default; first match wins\n", path, rules.size(),
             rules.size() == 1 ? "" : "s");
  for (const auto& r : rules)
    fmt::print(out, "  line {:<4} {:<20} {}\n", r.line, r.name, describe(r));
  fmt::print(out, "  line {:<4} {:<20} {}\n", p.value->fallback().line, "default",
             describe(p.value->fallback()));
  return 0;
}

// --- the inspection ------------------------------------------------------------------------------

inspection::inspection(const inspection_options& options, event_loop& loop, logger& log,
                       std::shared_ptr<task_hook> hook)
    : options_(options), loop_(loop), log_(log), hook_(std::move(hook)) {
  if (!options_.policy_file.empty()) {
    policy_load p = load_policy(options_.policy_file);
    if (!p.value) {
      std::string all;
      for (const auto& e : p.errors) all += (all.empty() ? "" : "\n") + e;
      throw std::runtime_error("the policy is not usable (check it with --check-policy):\n" + all);
    }
    for (const auto& w : p.warnings) log_.warn("policy.warning", {{"detail", w}});
    policy_ = std::move(p.value);
    log_.info("policy.loaded", {{"file", options_.policy_file},
                                {"rules", policy_->rules().size()},
                                {"default", detour::to_string(policy_->fallback().decision)}});
  }
  if (!options_.audit_file.empty()) {
    audit_options a;
    a.path = options_.audit_file;
    a.max_queued_bytes = options_.audit_queue;
    audit_ = std::make_unique<audit_log>(a);
    log_.info("audit.open", {{"file", options_.audit_file}});
  }
  if (!options_.capture_file.empty()) {
    capture_options c;
    c.path = options_.capture_file;
    c.max_file_size = options_.capture_max_size;
    c.files = options_.capture_files;
    c.max_queued_bytes = options_.capture_queue;
    capture_ = std::make_unique<capture_file>(c);
    log_.info("capture.open", {{"file", options_.capture_file},
                               {"max_size", options_.capture_max_size},
                               {"files", options_.capture_files}});
    if (policy_ && !policy_->captures_any()) {
      log_.warn("capture.idle", {{"detail", "no rule of the policy says 'capture': nothing will "
                                            "be captured until one does"}});
    }
  }
  if (options_.metrics) {
    http_ = std::make_unique<metrics_http>(loop_, *options_.metrics,
                                           [this] { return render_metrics(); });
    log_.info("metrics.listening", {{"address", http_->local_address().to_string()}});
  }
  if (options_.summary_interval != 0) {
    summary_ = std::make_unique<timer>(loop_, [this] {
      log_summary();
      summary_->arm_in(options_.summary_interval);
    });
    summary_->arm_in(options_.summary_interval);
  }
}

inspection::~inspection() {
  // Everything queued is written before the files close (the writers drain on destruction);
  // the last line says what was written.
  http_.reset();
  summary_.reset();
  live_.clear();
  if (capture_) {
    capture_->flush();
    const capture_stats s = capture_->stats();
    log_.info("capture.closed", {{"file", options_.capture_file},
                                 {"packets", s.packets},
                                 {"dropped", s.dropped_blocks},
                                 {"rotations", s.rotations}});
    capture_.reset();
  }
  if (audit_) {
    audit_->flush();
    log_.info("audit.closed", {{"file", options_.audit_file},
                               {"records", audit_->written()},
                               {"dropped", audit_->dropped()}});
    audit_.reset();
  }
}

std::optional<socket_address> inspection::metrics_address() const {
  if (!http_) return std::nullopt;
  return http_->local_address();
}

std::string inspection::render_metrics() const {
  metrics_gauges g = gauges_ ? gauges_() : metrics_gauges{};
  const std::lock_guard lock(mutex_);
  if (audit_) {
    g.audit = true;
    g.audit_written = audit_->written();
    g.audit_dropped = audit_->dropped();
    g.audit_write_errors = audit_->write_errors();
  }
  if (capture_) {
    const capture_stats s = capture_->stats();
    g.capture = true;
    g.capture_packets = s.packets;
    g.capture_bytes = s.bytes;
    g.capture_dropped = s.dropped_blocks;
    g.capture_rotations = s.rotations;
    g.capture_write_errors = s.write_errors;
  }
  return metrics_.render(g);
}

std::shared_ptr<task_trace> inspection::begin_task(const task_request& t, std::string_view conn,
                                                   action configured, bool draining,
                                                   timestamp now) {
  const north_request& r = t.request;
  auto trace = std::make_shared<task_trace>();
  trace->request = &t;
  trace->started = now;
  audit_record& rec = trace->record;
  rec.time_ns = wall_clock_ns();
  rec.task = std::string(to_text(r.task_id).view());
  rec.conn = std::string(conn);
  rec.match_id = r.match_id;
  if (r.username) rec.user = std::string(*r.username);
  rec.client = std::string(to_text(r.client).view());
  rec.proxy = std::string(to_text(r.proxy).view());
  rec.upstream = std::string(r.upstream.text);
  rec.protocol = std::string(r.protocol_name);
  if (r.protocol == protocol_kind::websocket) {
    rec.websocket = true;
    if (t.websocket) {
      rec.ws_resource = std::string(t.websocket->resource);
      for (const auto h : t.websocket->headers()) {
        const std::string name(h.name);
        if (!rec.ws_headers.empty() && rec.ws_headers.back().first == name &&
            name == "sec-websocket-extensions") {
          rec.ws_headers.back().second += ", " + std::string(h.value);
        } else {
          rec.ws_headers.emplace_back(name, std::string(h.value));
        }
      }
    } else {
      const std::string_view why = errc_name(t.websocket_error);
      rec.ws_error = why.empty() ? "ws_payload_missing" : std::string(why);
    }
  }

  const std::lock_guard lock(mutex_);
  action a = configured;
  bool capture = capture_ != nullptr;
  if (policy_) {
    const policy_rule& rule = policy_->decide(r);
    a = rule.decision;
    capture = capture && rule.capture;
    rec.rule = rule.name;
  }
  // Draining: no new relay starts; g3proxy relays the task itself and nothing fails.
  if (draining && a == action::proceed) a = action::bypass;
  rec.decision = a;
  rec.capture = capture && a == action::proceed;
  metrics_.task_answered(r.protocol_name, a);

  if (rec.capture) {
    // Sequence numbers from the task id: the same task always looks the same.
    const auto& id = r.task_id.bytes;
    const auto word = [&id](std::size_t at) {
      return std::uint32_t{id[at]} << 24 | std::uint32_t{id[at + 1]} << 16 |
             std::uint32_t{id[at + 2]} << 8 | id[at + 3];
    };
    trace->conversation =
        std::make_unique<tcp_conversation>(capture_endpoints(r), word(0), word(4));
    const std::int64_t us = rec.time_ns / 1000;
    trace->conversation->open(*capture_, us);
    if (t.websocket) {
      // The exchange g3proxy summed up, rebuilt so that readers recognise the frames.
      const std::string up = websocket_upgrade_request(*t.websocket, r.upstream.host);
      const std::string down = websocket_upgrade_response(*t.websocket);
      trace->conversation->data(*capture_, stream_kind::north,
                                {reinterpret_cast<const std::uint8_t*>(up.data()), up.size()}, us);
      trace->conversation->data(*capture_, stream_kind::south,
                                {reinterpret_cast<const std::uint8_t*>(down.data()), down.size()},
                                us);
    }
    commit_capture(*trace);
  }
  if (rec.capture || (hook_ && a == action::proceed)) live_[&t] = trace;
  return trace;
}

void inspection::commit_capture(task_trace& t) {
  if (t.capture_stopped) {
    capture_->discard();
    return;
  }
  if (!capture_->commit()) {
    // A hole in a TCP stream cannot be reassembled: the conversation stops here.
    t.capture_stopped = true;
    log_.warn("capture.dropped", {{"task", t.record.task},
                                  {"detail", "the capture queue is full (--capture-queue); the "
                                             "rest of this task is not captured"}});
  }
}

void inspection::capture_chunk(task_trace& t, const io::chunk<task_request>& c,
                               const io::verdict& v) {
  if (t.capture_stopped) return;
  tcp_conversation& conv = *t.conversation;
  const std::int64_t us = wall_clock_ns() / 1000;
  switch (v.action) {
  case io::verdict::kind::pass:
    conv.data(*capture_, c.side, c.bytes, us);
    break;
  case io::verdict::kind::replace:
    conv.data(*capture_, c.side, v.replacement, us);
    break;
  case io::verdict::kind::end:
    conv.reset(*capture_, us);
    break;
  }
  if (c.last) conv.finish(*capture_, c.side, us);
  commit_capture(t);
}

io::verdict inspection::inspect(std::shared_ptr<task_trace>& trace,
                                std::unique_ptr<direction_inspector>& user, bool& looked_up,
                                const io::chunk<task_request>& c) {
  // Without a capture or a hook no task is ever live: the common case takes no lock.
  if (!capture_ && !hook_) return io::verdict::pass();
  if (!looked_up) {
    looked_up = true;
    const std::lock_guard lock(mutex_);
    if (const auto it = live_.find(c.task); it != live_.end()) {
      trace = it->second;
      if (hook_ && c.task) user = hook_->open(*c.task, c.side);
    }
  }
  if (!trace) return io::verdict::pass();
  const io::verdict v = user ? user->inspect(c) : io::verdict::pass();
  if (trace->conversation) {
    const std::lock_guard lock(mutex_);
    capture_chunk(*trace, c, v);
  }
  return v;
}

void inspection::end_task(task_trace& t, std::uint64_t client_bytes, std::uint64_t remote_bytes,
                          std::string_view end, timestamp now) {
  const std::lock_guard lock(mutex_);
  audit_record& rec = t.record;
  rec.client_bytes = client_bytes;
  rec.remote_bytes = remote_bytes;
  rec.duration_ns = now >= t.started ? now - t.started : 0;
  rec.end = std::string(end);
  if (t.conversation && !t.capture_stopped && !t.conversation->closed()) {
    // A task that did not end with both FINs (a reset, an expiry, the connection's close).
    t.conversation->reset(*capture_, wall_clock_ns() / 1000);
    commit_capture(t);
  }
  if (audit_ && !audit_->write(rec)) {
    log_.warn("audit.dropped",
              {{"task", rec.task}, {"detail", "the audit queue is full (--audit-queue)"}});
  }
  metrics_.task_ended(rec.protocol, rec.decision, end, client_bytes, remote_bytes, rec.duration_ns);
  if (t.request) {
    const auto it = live_.find(t.request);
    if (it != live_.end() && it->second.get() == &t) live_.erase(it);
  }
}

void inspection::reload() {
  const std::lock_guard lock(mutex_);
  if (!options_.policy_file.empty()) {
    policy_load p = load_policy(options_.policy_file);
    if (!p.value) {
      metrics_.policy_reload(false);
      log_.error("policy.reload_failed",
                 {{"file", options_.policy_file},
                  {"errors", p.errors.size()},
                  {"first", p.errors.empty() ? std::string_view() : p.errors.front()},
                  {"detail", "the previous policy stays in use"}});
    } else {
      for (const auto& w : p.warnings) log_.warn("policy.warning", {{"detail", w}});
      policy_ = std::move(p.value);
      metrics_.policy_reload(true);
      log_.info("policy.reloaded",
                {{"file", options_.policy_file}, {"rules", policy_->rules().size()}});
    }
  }
  std::string error;
  if (audit_) {
    if (audit_->reopen(error)) {
      log_.info("audit.reopened", {{"file", options_.audit_file}});
    } else {
      log_.error("audit.reopen_failed", {{"file", options_.audit_file}, {"error", error}});
    }
  }
  if (capture_) {
    if (capture_->reopen(error)) {
      log_.info("capture.reopened", {{"file", options_.capture_file}});
    } else {
      log_.error("capture.reopen_failed", {{"file", options_.capture_file}, {"error", error}});
    }
  }
}

void inspection::flush() {
  if (audit_) audit_->flush();
  if (capture_) capture_->flush();
}

void inspection::log_summary() {
  const metrics_gauges g = gauges_ ? gauges_() : metrics_gauges{};
  const std::lock_guard lock(mutex_);
  const std::uint64_t tasks = metrics_.tasks_answered();
  const std::uint64_t interval_tasks = tasks - summary_tasks_;
  summary_tasks_ = tasks;
  const std::uint64_t ended = metrics_.tasks_ended();
  log_.info("metrics.summary",
            {{"connections_open", g.connections_open},
             {"connections", g.connections_accepted},
             {"connections_refused", g.connections_refused},
             {"tasks", tasks},
             {"tasks_interval", interval_tasks},
             {"running", tasks - std::min(tasks, ended)},
             {"client_bytes", metrics_.client_bytes()},
             {"remote_bytes", metrics_.remote_bytes()},
             {"stream_errors", metrics_.stream_errors()},
             {"handshake_failures", metrics_.handshake_failures()},
             {"audit_records", audit_ ? audit_->written() : 0},
             {"audit_dropped", audit_ ? audit_->dropped() : 0},
             {"capture_packets", capture_ ? capture_->stats().packets : 0},
             {"capture_dropped", capture_ ? capture_->stats().dropped_blocks : 0}});
}

} // namespace detour::cli
