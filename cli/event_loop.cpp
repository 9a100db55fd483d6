// SPDX-License-Identifier: MIT
// cli/event_loop.cpp: epoll, a timer heap and deferred calls (see event_loop.hpp).
#include "event_loop.hpp"

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <ctime>
#include <system_error>
#include <utility>

namespace detour::cli {

namespace {

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// Events taken from the kernel per epoll_wait: enough to drain a busy server in few calls,
// small enough to live on the stack.
constexpr int max_events_per_wait = 64;

} // namespace

timestamp monotonic_now() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<timestamp>(ts.tv_sec) * nanoseconds_per_second +
         static_cast<timestamp>(ts.tv_nsec);
}

// --- io_watch ----------------------------------------------------------------------------------

io_watch::io_watch(event_loop& loop, int fd, std::uint32_t events, callback on_ready)
    : loop_(loop), fd_(fd), events_(events), on_ready_(std::move(on_ready)) {
  loop_.add(*this);
}

io_watch::~io_watch() {
  loop_.remove(*this);
}

void io_watch::set_events(std::uint32_t events) {
  if (events == events_) return;
  events_ = events;
  loop_.modify(*this);
}

// --- timer -------------------------------------------------------------------------------------

timer::timer(event_loop& loop, std::function<void()> on_expiry)
    : loop_(loop), on_expiry_(std::move(on_expiry)) {}

timer::~timer() {
  cancel();
}

void timer::arm_at(timestamp deadline) {
  if (armed()) {
    const timestamp old = deadline_;
    deadline_ = deadline;
    if (deadline < old) {
      loop_.heap_sift_up(heap_index_);
    } else {
      loop_.heap_sift_down(heap_index_);
    }
    return;
  }
  deadline_ = deadline;
  loop_.heap_push(*this);
}

void timer::cancel() noexcept {
  if (armed()) loop_.heap_remove(*this);
}

// --- deferred ----------------------------------------------------------------------------------

deferred::deferred(event_loop& loop, std::function<void()> run)
    : loop_(loop), run_(std::move(run)) {}

deferred::~deferred() {
  cancel();
}

void deferred::schedule() noexcept {
  if (!linked_) loop_.link(*this);
}

void deferred::cancel() noexcept {
  if (linked_) loop_.unlink(*this);
}

// --- signal_watch ------------------------------------------------------------------------------

signal_watch::signal_watch(event_loop& loop, std::initializer_list<int> signals,
                           std::function<void(int)> on_signal)
    : signals_(signals), on_signal_(std::move(on_signal)) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals_) sigaddset(&set, s);
  if (::sigprocmask(SIG_BLOCK, &set, nullptr) != 0) throw_errno("sigprocmask");
  fd_ = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd_ < 0) throw_errno("signalfd");
  watch_ = std::make_unique<io_watch>(loop, fd_, EPOLLIN, [this](std::uint32_t) { drain(); });
}

signal_watch::~signal_watch() {
  watch_.reset();
  if (fd_ >= 0) ::close(fd_);
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals_) sigaddset(&set, s);
  ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
}

void signal_watch::drain() {
  signalfd_siginfo info{};
  while (::read(fd_, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    on_signal_(static_cast<int>(info.ssi_signo));
  }
}

// --- event_loop --------------------------------------------------------------------------------

event_loop::event_loop() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0) throw_errno("epoll_create1");
}

event_loop::~event_loop() {
  ::close(epoll_fd_);
}

void event_loop::add(io_watch& w) {
  epoll_event ev{};
  ev.events = w.events_;
  ev.data.ptr = &w;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, w.fd_, &ev) != 0) throw_errno("epoll_ctl(ADD)");
}

void event_loop::modify(io_watch& w) {
  epoll_event ev{};
  ev.events = w.events_;
  ev.data.ptr = &w;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, w.fd_, &ev) != 0) throw_errno("epoll_ctl(MOD)");
}

void event_loop::remove(io_watch& w) noexcept {
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, w.fd_, nullptr);
  for (int i = batch_pos_ + 1; i < batch_size_; ++i) {
    if (batch_[i].data.ptr == &w) batch_[i].data.ptr = nullptr;
  }
}

void event_loop::heap_place(std::size_t i, timer* t) noexcept {
  heap_[i] = t;
  t->heap_index_ = i;
}

void event_loop::heap_sift_up(std::size_t i) noexcept {
  timer* t = heap_[i];
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (heap_[parent]->deadline_ <= t->deadline_) break;
    heap_place(i, heap_[parent]);
    i = parent;
  }
  heap_place(i, t);
}

void event_loop::heap_sift_down(std::size_t i) noexcept {
  timer* t = heap_[i];
  const std::size_t n = heap_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && heap_[child + 1]->deadline_ < heap_[child]->deadline_) ++child;
    if (t->deadline_ <= heap_[child]->deadline_) break;
    heap_place(i, heap_[child]);
    i = child;
  }
  heap_place(i, t);
}

void event_loop::heap_push(timer& t) {
  heap_.push_back(&t);
  t.heap_index_ = heap_.size() - 1;
  heap_sift_up(t.heap_index_);
}

void event_loop::heap_remove(timer& t) noexcept {
  const std::size_t i = t.heap_index_;
  t.heap_index_ = timer::npos;
  timer* last = heap_.back();
  heap_.pop_back();
  if (last == &t) return;
  heap_place(i, last);
  heap_sift_up(i);
  heap_sift_down(last->heap_index_);
}

void event_loop::run_timers() {
  const timestamp now = monotonic_now();
  while (!heap_.empty() && heap_.front()->deadline_ <= now) {
    timer& t = *heap_.front();
    heap_remove(t);
    t.on_expiry_(); // may re-arm or destroy |t|
  }
}

void event_loop::link(deferred& d) noexcept {
  d.linked_ = true;
  d.next_ = nullptr;
  d.prev_ = deferred_tail_;
  if (deferred_tail_) {
    deferred_tail_->next_ = &d;
  } else {
    deferred_head_ = &d;
  }
  deferred_tail_ = &d;
}

void event_loop::unlink(deferred& d) noexcept {
  (d.prev_ ? d.prev_->next_ : deferred_head_) = d.next_;
  (d.next_ ? d.next_->prev_ : deferred_tail_) = d.prev_;
  d.prev_ = d.next_ = nullptr;
  d.linked_ = false;
}

void event_loop::run_deferred() {
  // Only what was scheduled before this pass runs now; what the calls schedule runs on the next
  // iteration, after fresh I/O, so a call that keeps rescheduling itself cannot starve the loop.
  deferred* last = deferred_tail_;
  while (deferred_head_) {
    deferred& d = *deferred_head_;
    const bool was_last = &d == last;
    unlink(d);
    d.run_(); // may destroy |d| or schedule others
    if (was_last) break;
  }
}

bool event_loop::run_once(timestamp deadline) {
  if (stopped_) return false;
  timestamp wait_until = deadline;
  if (!heap_.empty() && heap_.front()->deadline_ < wait_until) {
    wait_until = heap_.front()->deadline_;
  }
  const timestamp now = monotonic_now();
  timestamp wait = deferred_head_ || wait_until <= now ? 0 : wait_until - now;

  std::array<epoll_event, max_events_per_wait> events{};
  int n = -1;
  if (have_pwait2_) {
    timespec ts{static_cast<time_t>(wait / nanoseconds_per_second),
                static_cast<long>(wait % nanoseconds_per_second)};
    n = ::epoll_pwait2(epoll_fd_, events.data(), max_events_per_wait, &ts, nullptr);
    if (n < 0 && errno == ENOSYS) have_pwait2_ = false;
  }
  if (!have_pwait2_) {
    // Millisecond resolution: round up so a timer never fires early.
    const timestamp ms = (wait + nanoseconds_per_millisecond - 1) / nanoseconds_per_millisecond;
    n = ::epoll_wait(epoll_fd_, events.data(), max_events_per_wait,
                     ms > 60'000 ? 60'000 : static_cast<int>(ms));
  }
  if (n < 0) {
    if (errno != EINTR) throw_errno("epoll_wait");
    n = 0;
  }
  wait_began_ = now;
  wait_ended_ = wait == 0 ? now : monotonic_now();

  batch_ = events.data();
  batch_size_ = n;
  for (batch_pos_ = 0; batch_pos_ < batch_size_; ++batch_pos_) {
    auto* w = static_cast<io_watch*>(events[static_cast<std::size_t>(batch_pos_)].data.ptr);
    if (w) w->on_ready_(events[static_cast<std::size_t>(batch_pos_)].events);
  }
  batch_ = nullptr;
  batch_size_ = batch_pos_ = 0;

  run_timers();
  run_deferred();
  return !stopped_;
}

void event_loop::run() {
  // With nothing armed, wake up once a minute anyway; nothing depends on it.
  while (run_once(monotonic_now() + 60 * nanoseconds_per_second)) {
  }
}

} // namespace detour::cli
