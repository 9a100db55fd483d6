// SPDX-License-Identifier: MIT
// detour/detour.hpp: the whole library in one include.
#pragma once

#include <detour/address.hpp>
#include <detour/error.hpp>
#include <detour/ppv2/decode.hpp>
#include <detour/ppv2/encode.hpp>
#include <detour/ppv2/header.hpp>
#include <detour/request.hpp>
#include <detour/response.hpp>
#include <detour/result.hpp>
#include <detour/version.hpp>
#include <detour/websocket_payload.hpp>
