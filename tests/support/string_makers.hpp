// SPDX-License-Identifier: MIT
// tests/support/string_makers.hpp: readable Catch2 output for the library's enums and results
// (errc by name and message, decode_status, action).
#pragma once

#include <detour/error.hpp>
#include <detour/response.hpp>
#include <detour/result.hpp>

#include <catch2/catch_tostring.hpp>

#include <string>

template <>
struct Catch::StringMaker<detour::errc> {
  static std::string convert(detour::errc e) {
    const auto name = detour::errc_name(e);
    return "errc::" + (name.empty() ? std::to_string(static_cast<int>(e)) : std::string(name)) +
           " (" + detour::error_category::describe(e) + ")";
  }
};

template <>
struct Catch::StringMaker<detour::decode_status> {
  static std::string convert(detour::decode_status s) {
    switch (s) {
    case detour::decode_status::complete:
      return "complete";
    case detour::decode_status::need_more:
      return "need_more";
    case detour::decode_status::error:
      return "error";
    }
    return "decode_status(?)";
  }
};

template <>
struct Catch::StringMaker<detour::action> {
  static std::string convert(detour::action a) { return std::string(detour::to_string(a)); }
};
