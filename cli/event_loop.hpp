// SPDX-License-Identifier: MIT
// cli/event_loop.hpp: the single-threaded epoll event loop of the `detour` command, shared by the
// server and the client side: file-descriptor watches, nanosecond timers (ngtcp2's time base),
// deferred calls that run once per loop iteration, and signals through signalfd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

struct epoll_event; // <sys/epoll.h>, kept out of this header

namespace detour::cli {

/// Nanoseconds on CLOCK_MONOTONIC: the same unit and epoch-free clock as `ngtcp2_tstamp`, so a
/// value can be handed to ngtcp2 as is.
using timestamp = std::uint64_t;

inline constexpr timestamp nanoseconds_per_millisecond = 1'000'000;
inline constexpr timestamp nanoseconds_per_second = 1'000'000'000;

/// Reads CLOCK_MONOTONIC now (a vDSO call: cheap enough to call per packet).
timestamp monotonic_now() noexcept;

class event_loop;

/// Watches one file descriptor for epoll readiness while it lives. The fd stays owned by the
/// caller and must outlive the watch. The callback receives the epoll event bits (EPOLLIN,
/// EPOLLOUT, EPOLLERR...); it may destroy the watch itself.
class io_watch {
public:
  using callback = std::function<void(std::uint32_t events)>;

  /// Registers |fd| for |events| (level-triggered). Throws std::system_error if epoll refuses.
  io_watch(event_loop& loop, int fd, std::uint32_t events, callback on_ready);
  ~io_watch();
  io_watch(const io_watch&) = delete;
  io_watch& operator=(const io_watch&) = delete;

  /// Changes the watched events, e.g. adds EPOLLOUT while a send is blocked. Cheap when unchanged.
  void set_events(std::uint32_t events);
  std::uint32_t events() const noexcept { return events_; }
  int fd() const noexcept { return fd_; }

private:
  friend class event_loop;
  event_loop& loop_;
  int fd_;
  std::uint32_t events_;
  callback on_ready_;
};

/// A one-shot timer on the monotonic clock. Re-arming replaces the previous deadline; a timer
/// costs O(log n) to arm and nothing to keep. The callback may re-arm or destroy the timer.
class timer {
public:
  explicit timer(event_loop& loop, std::function<void()> on_expiry);
  ~timer();
  timer(const timer&) = delete;
  timer& operator=(const timer&) = delete;

  /// Fires at |deadline| (at once, on the next iteration, when it has passed already).
  void arm_at(timestamp deadline);
  /// Fires |delay| nanoseconds from now.
  void arm_in(timestamp delay) { arm_at(monotonic_now() + delay); }
  void cancel() noexcept;
  bool armed() const noexcept { return heap_index_ != npos; }
  timestamp deadline() const noexcept { return deadline_; }

private:
  friend class event_loop;
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  event_loop& loop_;
  std::function<void()> on_expiry_;
  timestamp deadline_ = 0;
  std::size_t heap_index_ = npos;
};

/// A call made once after the current batch of events, however often it was scheduled meanwhile:
/// the natural place for "write what became ready" work that several callbacks ask for.
class deferred {
public:
  explicit deferred(event_loop& loop, std::function<void()> run);
  ~deferred();
  deferred(const deferred&) = delete;
  deferred& operator=(const deferred&) = delete;

  void schedule() noexcept;
  void cancel() noexcept;
  bool scheduled() const noexcept { return linked_; }

private:
  friend class event_loop;
  event_loop& loop_;
  std::function<void()> run_;
  deferred* prev_ = nullptr;
  deferred* next_ = nullptr;
  bool linked_ = false;
};

/// Delivers signals through a signalfd. The signals are blocked for the whole process while the
/// watch lives (create it before starting any thread) and unblocked afterwards.
class signal_watch {
public:
  signal_watch(event_loop& loop, std::initializer_list<int> signals,
               std::function<void(int signal)> on_signal);
  ~signal_watch();
  signal_watch(const signal_watch&) = delete;
  signal_watch& operator=(const signal_watch&) = delete;

private:
  void drain();
  int fd_ = -1;
  std::vector<int> signals_;
  std::function<void(int)> on_signal_;
  std::unique_ptr<io_watch> watch_;
};

/// The loop: epoll for descriptors, a binary heap of timers with nanosecond waits
/// (epoll_pwait2), and a queue of deferred calls. Single-threaded; nothing here is thread-safe.
class event_loop {
public:
  /// Throws std::system_error when epoll_create1 fails.
  event_loop();
  ~event_loop();
  event_loop(const event_loop&) = delete;
  event_loop& operator=(const event_loop&) = delete;

  /// Runs until stop() is called (from a callback).
  void run();
  /// Waits for events at most until |deadline| (or not at all when deferred calls are pending),
  /// dispatches them, expired timers and deferred calls. Returns false once stop() was called.
  bool run_once(timestamp deadline);
  void stop() noexcept { stopped_ = true; }
  bool stopped() const noexcept { return stopped_; }
  /// When the last wait for events began and ended (monotonic): what arrived in between was
  /// waiting for the thread to wake, not for the loop to finish other work.
  timestamp wait_began() const noexcept { return wait_began_; }
  timestamp wait_ended() const noexcept { return wait_ended_; }

private:
  friend class io_watch;
  friend class timer;
  friend class deferred;

  void add(io_watch& w);
  void modify(io_watch& w);
  void remove(io_watch& w) noexcept;

  void heap_push(timer& t);
  void heap_remove(timer& t) noexcept;
  void heap_sift_up(std::size_t i) noexcept;
  void heap_sift_down(std::size_t i) noexcept;
  void heap_place(std::size_t i, timer* t) noexcept;
  void run_timers();

  void link(deferred& d) noexcept;
  void unlink(deferred& d) noexcept;
  void run_deferred();

  int epoll_fd_ = -1;
  bool stopped_ = false;
  bool have_pwait2_ = true;
  timestamp wait_began_ = 0;
  timestamp wait_ended_ = 0;
  std::vector<timer*> heap_;
  deferred* deferred_head_ = nullptr;
  deferred* deferred_tail_ = nullptr;
  // The batch of epoll events being dispatched: a watch removed meanwhile clears its later
  // entries, so no event reaches a destroyed watch (or a new one at the same address).
  ::epoll_event* batch_ = nullptr;
  int batch_size_ = 0;
  int batch_pos_ = 0;
};

} // namespace detour::cli
