// SPDX-License-Identifier: MIT
// cli/app_codes.hpp: the QUIC application error codes `detour serve` sends (RFC 9000 §20.2):
// on RESET_STREAM and STOP_SENDING when it ends a stream, on CONNECTION_CLOSE (type 0x1d) when
// it ends a connection. docs/errors.md lists them for users; the numbers never change.
#pragma once

#include <detour/concepts.hpp>

namespace detour::cli {

/// No error: a connection closed at shutdown or because the server drains; STOP_SENDING when a
/// stream's remaining input is simply not needed. g3proxy itself uses 0 the same way.
inline constexpr app_code code_no_error = 0x0;
/// Something failed inside the server (not the client's fault).
inline constexpr app_code code_internal_error = 0x1;
/// The server is shutting down: a stream opened while it drains is refused.
inline constexpr app_code code_shutting_down = 0x2;

// A stream the server ends because of a detour protocol error gets the library's code for
// it: io::app_code_for(errc) = 0x100 + the errc value (io/server_stream.hpp), e.g. 0x101
// bad_signature, 0x126 header_timeout, 0x122 pairing_expired.

} // namespace detour::cli
