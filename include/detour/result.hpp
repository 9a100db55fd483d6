// SPDX-License-Identifier: MIT
// detour/result.hpp: the tri-state outcome of every decoder in the library (complete, need more
// input, or an error with the byte offset where it was found), in the style of picohttpparser.
// A small trivially-copyable type of our own, since std::expected is not available everywhere.
#pragma once

#include <detour/error.hpp>

#include <cstddef>
#include <cstdint>
#include <system_error>

namespace detour {

/// Where a decoder stands. "Need more" is a status, never an `errc`.
enum class decode_status : std::uint8_t {
  complete,  ///< the value is decoded; `consumed` bytes belong to it
  need_more, ///< the input ends too early; `needed` more bytes are required to make progress
  error,     ///< the input is malformed; `error` says why and `offset` where
};

/// The outcome of decoding a `T` from bytes.
///
/// - complete: `value` holds the result; `consumed` is the number of input bytes it occupies
///   (bytes after them belong to the caller: payload, relay data).
/// - need_more: `needed` is how many more bytes the input must hold before the decoder can
///   progress. Once a decoder knows the full size of what it decodes (for a PROXY header: once
///   the 16-byte fixed part is in), `needed` is exact: input size + `needed` is the total.
/// - error: `error` is the reason and `offset` the position of the offending byte, counted from
///   the start of the decoded item.
///
/// `value` is meaningful only when complete. Views inside it point into the bytes given to the
/// decoder (or into a decoder's storage) and live as long as those bytes do.
template <class T>
struct [[nodiscard]] decode_result {
  decode_status status = decode_status::need_more;
  errc error = {};
  std::size_t consumed = 0;
  std::size_t needed = 0;
  std::size_t offset = 0;
  T value = {};

  constexpr bool complete() const noexcept { return status == decode_status::complete; }
  constexpr bool need_more() const noexcept { return status == decode_status::need_more; }
  constexpr bool failed() const noexcept { return status == decode_status::error; }
  /// True when complete.
  constexpr explicit operator bool() const noexcept { return complete(); }
  /// The error as a std::error_code; empty unless failed().
  std::error_code error_code() const noexcept {
    return failed() ? make_error_code(error) : std::error_code{};
  }

  static constexpr decode_result ok(T v, std::size_t consumed_bytes) noexcept {
    decode_result r;
    r.status = decode_status::complete;
    r.consumed = consumed_bytes;
    r.value = v;
    return r;
  }
  static constexpr decode_result more(std::size_t needed_bytes) noexcept {
    decode_result r;
    r.status = decode_status::need_more;
    r.needed = needed_bytes;
    return r;
  }
  static constexpr decode_result fail(errc e, std::size_t at) noexcept {
    decode_result r;
    r.status = decode_status::error;
    r.error = e;
    r.offset = at;
    return r;
  }
  /// The same status, error, counts and offset around another value type.
  template <class U>
  constexpr decode_result<U> rebind(U v = {}) const noexcept {
    decode_result<U> r;
    r.status = status;
    r.error = error;
    r.consumed = consumed;
    r.needed = needed;
    r.offset = offset;
    r.value = v;
    return r;
  }
};

/// The outcome of an encoder writing into a caller-supplied buffer: the number of bytes
/// written, or the reason nothing usable was written (`errc{}` on success).
struct [[nodiscard]] encode_result {
  errc error = {};
  std::size_t size = 0;

  constexpr bool ok() const noexcept { return error == errc{}; }
  constexpr explicit operator bool() const noexcept { return ok(); }
  std::error_code error_code() const noexcept {
    return ok() ? std::error_code{} : make_error_code(error);
  }
};

} // namespace detour
