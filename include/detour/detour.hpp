// SPDX-License-Identifier: MIT
// detour/detour.hpp: the whole library in one include (the POSIX adapters in detour/posix/ are
// left out: they need the operating system's socket headers).
#pragma once

#include <detour/address.hpp>
#include <detour/concepts.hpp>
#include <detour/error.hpp>
#include <detour/io/client_task.hpp>
#include <detour/io/inspect.hpp>
#include <detour/io/memory_pipe.hpp>
#include <detour/io/relay.hpp>
#include <detour/io/server_connection.hpp>
#include <detour/io/server_stream.hpp>
#include <detour/pairing.hpp>
#include <detour/ppv2/decode.hpp>
#include <detour/ppv2/encode.hpp>
#include <detour/ppv2/header.hpp>
#include <detour/request.hpp>
#include <detour/response.hpp>
#include <detour/result.hpp>
#include <detour/session.hpp>
#include <detour/version.hpp>
#include <detour/websocket_payload.hpp>
