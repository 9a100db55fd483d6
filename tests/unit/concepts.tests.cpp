// SPDX-License-Identifier: MIT
// Tests for detour/concepts.hpp: each stream requirement checked in both directions against tiny
// stand-in types (a type that has exactly what is required, and types that miss one thing).
#include <detour/concepts.hpp>

#include <catch2/catch_test_macros.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace {

using bytes = std::span<const std::uint8_t>;

// The weakest types that meet the requirements: declarations only, never called.
struct receive_half {
  bytes readable();
  void consume(std::size_t);
  bool at_eof();
  std::optional<detour::app_code> receive_reset();
  void stop_reading(detour::app_code);
};
struct send_half {
  std::size_t write_some(bytes);
  void close_write();
  std::optional<detour::app_code> send_stopped();
  void reset_write(detour::app_code);
};
struct full_stream : receive_half, send_half {};

// Const observers and noexcept members are allowed, of course.
struct const_observers_stream {
  bytes readable() const noexcept;
  void consume(std::size_t) noexcept;
  bool at_eof() const noexcept;
  std::optional<detour::app_code> receive_reset() const noexcept;
  void stop_reading(detour::app_code) noexcept;
  std::size_t write_some(bytes) noexcept;
  void close_write() noexcept;
  std::optional<detour::app_code> send_stopped() const noexcept;
  void reset_write(detour::app_code) noexcept;
};

// One requirement missing or wrong at a time.
struct readable_returns_vector : send_half {
  std::vector<std::uint8_t> readable(); // a copy, not a view into the stream's buffer
  void consume(std::size_t);
  bool at_eof();
  std::optional<detour::app_code> receive_reset();
  void stop_reading(detour::app_code);
};
struct readable_of_std_byte : send_half {
  std::span<const std::byte> readable(); // views are std::span<const std::uint8_t> throughout
  void consume(std::size_t);
  bool at_eof();
  std::optional<detour::app_code> receive_reset();
  void stop_reading(detour::app_code);
};
struct consume_returns_count : send_half {
  bytes readable();
  std::size_t consume(std::size_t);
  bool at_eof();
  std::optional<detour::app_code> receive_reset();
  void stop_reading(detour::app_code);
};
struct without_reset_report : send_half {
  bytes readable();
  void consume(std::size_t);
  bool at_eof();
  void stop_reading(detour::app_code);
};
struct without_stop_reading : send_half {
  bytes readable();
  void consume(std::size_t);
  bool at_eof();
  std::optional<detour::app_code> receive_reset();
};
struct eof_as_int : send_half {
  bytes readable();
  void consume(std::size_t);
  int at_eof();
  std::optional<detour::app_code> receive_reset();
  void stop_reading(detour::app_code);
};
struct write_returns_signed : receive_half {
  long write_some(bytes); // "accepted" is a count, never negative: errors are reported otherwise
  void close_write();
  std::optional<detour::app_code> send_stopped();
  void reset_write(detour::app_code);
};
struct write_takes_vector : receive_half {
  std::size_t write_some(const std::vector<std::uint8_t>&);
  void close_write();
  std::optional<detour::app_code> send_stopped();
  void reset_write(detour::app_code);
};
struct without_close_write : receive_half {
  std::size_t write_some(bytes);
  std::optional<detour::app_code> send_stopped();
  void reset_write(detour::app_code);
};
struct without_reset_write : receive_half {
  std::size_t write_some(bytes);
  void close_write();
  std::optional<detour::app_code> send_stopped();
};
struct stop_report_as_bool : receive_half {
  std::size_t write_some(bytes);
  void close_write();
  bool send_stopped(); // the peer's code must be reported
  void reset_write(detour::app_code);
};
// A deleted member does not count.
struct consume_deleted {
  bytes readable();
  void consume(std::size_t) = delete;
  bool at_eof();
  std::optional<detour::app_code> receive_reset();
  void stop_reading(detour::app_code);
};

} // namespace

TEST_CASE("a type with exactly the required members models every stream concept", "[concepts]") {
  STATIC_REQUIRE(detour::readable_stream<receive_half>);
  STATIC_REQUIRE(detour::writable_stream<send_half>);
  STATIC_REQUIRE(detour::duplex_stream<full_stream>);
  STATIC_REQUIRE(detour::duplex_stream<const_observers_stream>);
}

TEST_CASE("one half alone is not a duplex stream", "[concepts]") {
  STATIC_REQUIRE_FALSE(detour::writable_stream<receive_half>);
  STATIC_REQUIRE_FALSE(detour::duplex_stream<receive_half>);
  STATIC_REQUIRE_FALSE(detour::readable_stream<send_half>);
  STATIC_REQUIRE_FALSE(detour::duplex_stream<send_half>);
}

TEST_CASE("a receive half with a wrong or missing member is rejected", "[concepts]") {
  STATIC_REQUIRE_FALSE(detour::readable_stream<readable_returns_vector>);
  STATIC_REQUIRE_FALSE(detour::readable_stream<readable_of_std_byte>);
  STATIC_REQUIRE_FALSE(detour::readable_stream<consume_returns_count>);
  STATIC_REQUIRE_FALSE(detour::readable_stream<without_reset_report>);
  STATIC_REQUIRE_FALSE(detour::readable_stream<without_stop_reading>);
  STATIC_REQUIRE_FALSE(detour::readable_stream<eof_as_int>);
  STATIC_REQUIRE_FALSE(detour::readable_stream<consume_deleted>);
  // ... and so none of them is a duplex stream, although each has a valid send half.
  STATIC_REQUIRE(detour::writable_stream<readable_returns_vector>);
  STATIC_REQUIRE_FALSE(detour::duplex_stream<readable_returns_vector>);
  STATIC_REQUIRE_FALSE(detour::duplex_stream<without_reset_report>);
}

TEST_CASE("a send half with a wrong or missing member is rejected", "[concepts]") {
  STATIC_REQUIRE_FALSE(detour::writable_stream<write_returns_signed>);
  STATIC_REQUIRE_FALSE(detour::writable_stream<write_takes_vector>);
  STATIC_REQUIRE_FALSE(detour::writable_stream<without_close_write>);
  STATIC_REQUIRE_FALSE(detour::writable_stream<without_reset_write>);
  STATIC_REQUIRE_FALSE(detour::writable_stream<stop_report_as_bool>);
  STATIC_REQUIRE(detour::readable_stream<write_returns_signed>);
  STATIC_REQUIRE_FALSE(detour::duplex_stream<write_returns_signed>);
}

TEST_CASE("the concepts are checked on the object type, not on pointers or handles", "[concepts]") {
  STATIC_REQUIRE_FALSE(detour::duplex_stream<full_stream*>);
  STATIC_REQUIRE_FALSE(detour::duplex_stream<int>);
  // A reference names the same object, so it models the concept as well.
  STATIC_REQUIRE(detour::duplex_stream<full_stream&>);
}
