// SPDX-License-Identifier: MIT
// cli/workers.cpp: the workers of `detour serve --workers N` and their mailboxes (see
// workers.hpp).
#include "workers.hpp"

#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace detour::cli {

std::size_t default_worker_count() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::size_t n = 0;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) n = static_cast<std::size_t>(CPU_COUNT(&set));
  if (n == 0) n = std::thread::hardware_concurrency();
  if (n == 0) n = 1;
  return std::min(n, server_group::max_workers);
}

// --- mailbox -----------------------------------------------------------------------------------

mailbox::mailbox(event_loop& loop, std::function<void(const forwarded_datagram&)> deliver)
    : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), deliver_(std::move(deliver)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
  watch_ = std::make_unique<io_watch>(loop, fd_, EPOLLIN, [this](std::uint32_t) { on_ready(); });
}

mailbox::~mailbox() {
  watch_.reset();
  ::close(fd_);
}

void mailbox::wake() {
  const std::uint64_t one = 1;
  // A full counter (never, in practice) still leaves the fd readable: the wake is not lost.
  (void)!::write(fd_, &one, sizeof one);
}

void mailbox::post(std::function<void()> fn) {
  bool was_empty = false;
  {
    const std::lock_guard lock(mutex_);
    was_empty = calls_.empty() && datagrams_.empty();
    calls_.push_back(std::move(fn));
  }
  if (was_empty) wake();
}

void mailbox::post(forwarded_datagram&& d) {
  bool was_empty = false;
  {
    const std::lock_guard lock(mutex_);
    was_empty = calls_.empty() && datagrams_.empty();
    datagrams_.push_back(std::move(d));
  }
  if (was_empty) wake();
}

void mailbox::on_ready() {
  std::uint64_t count = 0;
  (void)!::read(fd_, &count, sizeof count);
  {
    const std::lock_guard lock(mutex_);
    run_calls_.swap(calls_);
    run_datagrams_.swap(datagrams_);
  }
  for (const forwarded_datagram& d : run_datagrams_) deliver_(d);
  run_datagrams_.clear();
  for (auto& fn : run_calls_) fn();
  run_calls_.clear();
}

// --- worker_group ------------------------------------------------------------------------------

worker_group::worker_group(event_loop& loop, const serve_config& config, const tls_context& tls,
                           logger& log, std::size_t count)
    : main_loop_(loop) {
  count = std::clamp<std::size_t>(count, 1, server_group::max_workers);
  group_.workers = count;
  fill_random(group_.secret);
  group_.forward = [this](std::size_t to, forwarded_datagram&& d) {
    workers_[to]->box->post(std::move(d));
  };
  if (count > 1) {
    // SO_REUSEPORT would let this process join the sockets of another server already on the
    // port (of the same user) and take half of its packets. A plain bind first fails as one
    // worker's would: with EADDRINUSE, naming the address.
    for (const socket_address& a : config.listen) {
      if (a.port() != 0) (void)udp_socket::bound(a);
    }
  }
  for (std::size_t i = 0; i < count; ++i) {
    auto w = std::make_unique<worker>();
    if (i == 0) {
      w->loop = &loop;
    } else {
      w->own_loop = std::make_unique<event_loop>();
      w->loop = w->own_loop.get();
    }
    w->config = config;
    if (i > 0) {
      // Port 0: every worker joins the port the kernel gave worker 0.
      w->config.listen = workers_.front()->srv->local_addresses();
    }
    w->log = count > 1 ? log.tagged("worker", i) : log;
    w->srv = std::make_unique<server>(*w->loop, w->config, tls, w->log, group_, i);
    server* srv = w->srv.get();
    w->box = std::make_unique<mailbox>(
        *w->loop, [srv](const forwarded_datagram& d) { srv->on_forwarded(d); });
    workers_.push_back(std::move(w));
    if (i == 0 && count > 1) steer(log);
  }
}

void worker_group::steer(logger& log) {
  // Before the other workers join: a datagram that reaches a socket of the group before the
  // program does is hashed, and forwarded if it must be (forward_to_owner).
  // DETOUR_STEERING=off: without the program, as on a kernel that refuses it (docs/serve.md).
  const char* env = std::getenv("DETOUR_STEERING");
  const bool turned_off = env && std::string_view(env) == "off";
  const int e = turned_off ? 0 : workers_.front()->srv->steer_by_connection_id();
  group_.steering = !turned_off && e == 0;
  group_.packing =
      group_.steering && workers_.front()->config.placement == serve_config::placement::pack;
  if (!group_.steering) {
    log.warn("server.steering_unavailable",
             {{"error", turned_off ? std::string("turned off by DETOUR_STEERING=off")
                                   : std::string(std::strerror(e))},
              {"note", "packets reaching the wrong worker are handed over; new connections "
                       "spread by the kernel's hash"}});
  }
}

worker_group::~worker_group() {
  // Then each worker's members go in reverse order: mailbox, server, logger, configuration,
  // loop; the group_ they all reference goes last.
  stop_threads();
}

void worker_group::start() {
  // Threads inherit the signal mask: block everything while creating them, so that signals
  // go to the main thread's signalfd and never interrupt a worker.
  sigset_t all;
  sigset_t before;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &before);
  mailbox* main_box = workers_.front()->box.get();
  for (std::size_t i = 1; i < workers_.size(); ++i) {
    event_loop* l = workers_[i]->loop;
    workers_[i]->thread = std::thread([l, main_box] {
      try {
        l->run();
      } catch (const std::exception& e) {
        // As in the single loop: the error ends the process (run_serve logs server.failed and
        // exits 1), from the main thread, which then stops and joins the other workers.
        main_box->post([what = std::string(e.what())] { throw std::runtime_error(what); });
      }
    });
  }
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

void worker_group::stop_threads() {
  for (auto& w : workers_) {
    if (!w->thread.joinable()) continue;
    event_loop* l = w->loop;
    w->box->post([l] { l->stop(); });
  }
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

std::vector<socket_address> worker_group::local_addresses() const {
  return workers_.front()->srv->local_addresses();
}

bool worker_group::gso_available() const noexcept {
  for (const auto& w : workers_) {
    if (!w->srv->gso_available()) return false;
  }
  return true;
}

worker_totals worker_group::totals() const noexcept {
  worker_totals t;
  constexpr auto relaxed = std::memory_order_relaxed;
  for (const auto& w : workers_) {
    const server_stats& s = w->srv->stats();
    t.connections += s.connections.load(relaxed);
    t.refused += s.refused.load(relaxed);
    t.retries += s.retries.load(relaxed);
    t.version_negotiations += s.version_negotiations.load(relaxed);
    t.stateless_resets += s.stateless_resets.load(relaxed);
    t.forwarded += s.forwarded.load(relaxed);
  }
  t.open = group_.connections.load(relaxed);
  return t;
}

void worker_group::replace_tls(const tls_context& tls) {
  for (auto& w : workers_) {
    server* srv = w->srv.get();
    if (w->loop == &main_loop_) {
      srv->replace_tls(tls);
    } else {
      w->box->post([srv, tls] { srv->replace_tls(tls); });
    }
  }
}

void worker_group::begin_shutdown(std::function<void()> on_done) {
  if (!on_drained_ && drained_ == 0) on_drained_ = std::move(on_done); // else: a second signal
  mailbox& main_box = *workers_.front()->box;
  for (auto& w : workers_) {
    server* srv = w->srv.get();
    // Each worker's "drained" comes back to the main loop through worker 0's mailbox.
    auto drained = [this, &main_box] { main_box.post([this] { on_worker_drained(); }); };
    if (w->loop == &main_loop_) {
      srv->begin_shutdown(drained);
    } else {
      w->box->post([srv, drained] { srv->begin_shutdown(drained); });
    }
  }
}

std::vector<std::size_t> worker_group::heartbeat() {
  std::vector<std::size_t> late;
  for (std::size_t i = 0; i < workers_.size(); ++i) {
    if (workers_[i]->answered.load(std::memory_order_acquire) < heartbeat_round_) late.push_back(i);
  }
  if (!late.empty()) return late;
  const std::uint64_t round = ++heartbeat_round_;
  for (auto& w : workers_) {
    worker* wp = w.get();
    wp->box->post([wp, round] { wp->answered.store(round, std::memory_order_release); });
  }
  return late;
}

void worker_group::on_worker_drained() {
  if (++drained_ < workers_.size() || !on_drained_) return;
  auto done = std::move(on_drained_);
  on_drained_ = nullptr;
  done();
}

} // namespace detour::cli
