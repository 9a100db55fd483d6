// SPDX-License-Identifier: MIT
// cli/probe_script.hpp: protocol-shaped relay data for `detour probe --relay-data protocol`:
// a short, real SMTP (RFC 5321), IMAP (RFC 9051), HTTP/2 (RFC 9113, RFC 7541) or WebSocket
// (RFC 6455) conversation, in turns, so that a server that inspects or captures the relay sees
// what g3proxy would detour. A pass-through server echoes it like any other data.
#pragma once

#include "probe_task.hpp"

#include <memory>
#include <string_view>

namespace detour::cli::probe {

/// The conversation of `protocol` ("smtp", "imap", "http_2", "websocket"); nullptr for a
/// protocol without one. The client side is what the client sends (north), the remote side
/// what the server answers (south); each turn is sent once the previous ones were echoed.
std::shared_ptr<const relay_script> protocol_script(std::string_view protocol);

} // namespace detour::cli::probe
