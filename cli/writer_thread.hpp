// SPDX-License-Identifier: MIT
// cli/writer_thread.hpp: a background writer for `detour serve`'s audit records and capture
// packets: the event loop hands over items (never waiting on a disk), a thread writes them in
// batches. The queue is bounded in bytes: what does not fit is dropped and counted, so a slow
// or full disk costs records, never the server's responsiveness or memory.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace detour::cli {

/// Counters of a writer_thread, readable from any thread.
struct writer_counters {
  std::atomic<std::uint64_t> queued{0};  ///< items accepted by push()
  std::atomic<std::uint64_t> written{0}; ///< items handed to the sink
  std::atomic<std::uint64_t> dropped{0}; ///< items refused because the queue was full
};

/// @brief Runs `sink(batch)` on a thread of its own for what push() queued.
///
/// @tparam Item what is queued (a line, a block of packets); moved, never copied.
///
/// push() never blocks on the sink: it takes a mutex held only to swap vectors. The sink
/// runs on the writer thread only, so what it owns (a file) needs no locking; post() runs other
/// work there between batches (swapping in a reopened file). The destructor writes everything
/// still queued, then joins: nothing accepted is lost on a clean exit.
template <class Item>
class writer_thread {
public:
  using sink_type = std::function<void(std::vector<Item>& batch)>;

  /// @param max_bytes the most bytes (as told to push()) waiting at once; more are dropped.
  writer_thread(std::size_t max_bytes, sink_type sink)
      : max_bytes_(max_bytes), sink_(std::move(sink)), thread_(start()) {}

  ~writer_thread() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  writer_thread(const writer_thread&) = delete;
  writer_thread& operator=(const writer_thread&) = delete;

  /// Queues `item`, which counts for `bytes` against the bound. False (and the item dropped)
  /// when it does not fit.
  bool push(Item&& item, std::size_t bytes) {
    {
      std::lock_guard lock(mutex_);
      if (queued_bytes_ + bytes > max_bytes_) {
        counters_.dropped.fetch_add(1, std::memory_order_relaxed);
        return false;
      }
      queued_bytes_ += bytes;
      pending_.push_back(std::move(item));
      ++pushed_;
    }
    counters_.queued.fetch_add(1, std::memory_order_relaxed);
    wake_.notify_one();
    return true;
  }

  /// Runs `work` on the writer thread after what is queued now has been written.
  void post(std::function<void()> work) {
    {
      std::lock_guard lock(mutex_);
      posted_.push_back({pushed_, std::move(work)});
      ++posts_total_;
    }
    wake_.notify_one();
  }

  /// Waits until everything pushed (and posted) before the call was handled.
  void flush() {
    std::unique_lock lock(mutex_);
    const std::uint64_t target = pushed_;
    const std::uint64_t posts = posts_total_;
    done_.wait(lock, [&] { return handled_ >= target && posts_done_ >= posts; });
  }

  const writer_counters& counters() const noexcept { return counters_; }
  /// Bytes waiting now.
  std::size_t queued_bytes() const {
    std::lock_guard lock(mutex_);
    return queued_bytes_;
  }

private:
  struct posted_work {
    std::uint64_t after; // run once this many pushes were handled
    std::function<void()> work;
  };

  // Starts the thread with every signal blocked: signals belong to the event loop (its
  // signalfd), and a thread that left SIGTERM unblocked would be killed by it instead.
  std::thread start() {
    sigset_t all;
    sigset_t before;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &before);
    std::thread t([this] { run(); });
    pthread_sigmask(SIG_SETMASK, &before, nullptr);
    return t;
  }

  void run() {
    std::vector<Item> batch;
    std::vector<posted_work> works;
    std::unique_lock lock(mutex_);
    while (true) {
      wake_.wait(lock, [&] { return stopping_ || !pending_.empty() || !posted_.empty(); });
      if (pending_.empty() && posted_.empty() && stopping_) break;
      batch.swap(pending_);
      works.swap(posted_);
      const std::uint64_t batch_end = pushed_;
      queued_bytes_ = 0;
      lock.unlock();
      // Work posted before some of these items runs before them (a reopen then applies to
      // what was queued after the signal).
      std::size_t w = 0;
      std::size_t first = 0;
      const std::uint64_t batch_start = batch_end - batch.size();
      for (; w < works.size(); ++w) {
        const std::uint64_t cut = works[w].after - batch_start;
        if (cut > first) write_range(batch, first, cut);
        first = std::max<std::size_t>(first, static_cast<std::size_t>(cut));
        works[w].work();
      }
      if (first < batch.size()) write_range(batch, first, batch.size());
      batch.clear();
      lock.lock();
      handled_ = batch_end;
      posts_done_ += works.size();
      works.clear();
      done_.notify_all();
    }
    done_.notify_all();
  }

  void write_range(std::vector<Item>& batch, std::size_t from, std::size_t to) {
    if (from == 0 && to == batch.size()) {
      sink_(batch);
    } else {
      std::vector<Item> part;
      part.reserve(to - from);
      for (std::size_t i = from; i < to; ++i) part.push_back(std::move(batch[i]));
      sink_(part);
    }
    counters_.written.fetch_add(to - from, std::memory_order_relaxed);
  }

  const std::size_t max_bytes_;
  sink_type sink_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::vector<Item> pending_;
  std::vector<posted_work> posted_;
  std::size_t queued_bytes_ = 0;
  std::uint64_t pushed_ = 0;      // items ever queued
  std::uint64_t handled_ = 0;     // items the sink has seen
  std::uint64_t posts_total_ = 0; // work ever posted
  std::uint64_t posts_done_ = 0;
  bool stopping_ = false;
  writer_counters counters_;
  std::thread thread_; // last: started once everything else is ready
};

} // namespace detour::cli
