// SPDX-License-Identifier: MIT
// fuzz/alpn_select.cpp: the ALPN policy of `detour serve` (cli/alpn.hpp) on hostile offers.
// Input: one byte n, then n bytes of the accepted list (wire form), then the client's offer.
// Properties: the answer is -1 or the start of a well-formed name of the offer that is on the
// accepted list, and no earlier offered name is; -1 on a well-formed offer means no offered
// name is accepted; without a list (first_alpn), the offer's first name exactly when the whole
// offer is well formed; nothing is read outside the buffers (ASan, exactly-sized copies).
#include "../cli/alpn.hpp"

#include "property.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace {

// The names of a wire-form list, or nothing when it is malformed.
bool split(const std::vector<std::uint8_t>& wire, std::vector<std::string_view>& names,
           std::vector<std::size_t>& starts) {
  for (std::size_t i = 0; i < wire.size();) {
    const std::size_t len = wire[i];
    if (len == 0 || i + 1 + len > wire.size()) return false;
    starts.push_back(i);
    names.emplace_back(reinterpret_cast<const char*>(wire.data() + i + 1), len);
    i += 1 + len;
  }
  return true;
}

bool accepted_name(const std::vector<std::uint8_t>& accepted, std::string_view name) {
  for (std::size_t j = 0; j < accepted.size();) {
    const std::size_t len = accepted[j];
    if (j + 1 + len > accepted.size()) return false;
    if (std::string_view(reinterpret_cast<const char*>(accepted.data() + j + 1), len) == name) {
      return true;
    }
    j += 1 + len;
  }
  return false;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t n = std::min<std::size_t>(data[0], size - 1);
  // Exactly-sized heap copies, so an over-read is caught.
  const std::vector<std::uint8_t> accepted(data + 1, data + 1 + n);
  const std::vector<std::uint8_t> offer(data + 1 + n, data + size);
  const long r =
      detour::cli::select_alpn(offer.data(), offer.size(), accepted.data(), accepted.size());

  std::vector<std::string_view> names;
  std::vector<std::size_t> starts;
  const bool well_formed = split(offer, names, starts);

  // Without a list of the server's: the client's first name, only of a well-formed offer.
  const long first = detour::cli::first_alpn(offer.data(), offer.size());
  DETOUR_FUZZ_CHECK(first == (well_formed && !names.empty() ? 0 : -1));
  if (r < 0) {
    if (well_formed) {
      for (const auto name : names) DETOUR_FUZZ_CHECK(!accepted_name(accepted, name));
    }
    return 0;
  }
  const auto at = static_cast<std::size_t>(r);
  DETOUR_FUZZ_CHECK(at < offer.size());
  const std::size_t len = offer[at];
  DETOUR_FUZZ_CHECK(len >= 1 && at + 1 + len <= offer.size());
  const std::string_view chosen(reinterpret_cast<const char*>(offer.data() + at + 1), len);
  DETOUR_FUZZ_CHECK(accepted_name(accepted, chosen));
  // A name boundary of the offer, and the first accepted one before it.
  bool boundary = false;
  for (std::size_t i = 0; i < offer.size();) {
    if (i == at) {
      boundary = true;
      break;
    }
    const std::size_t l = offer[i];
    const std::string_view earlier(reinterpret_cast<const char*>(offer.data() + i + 1), l);
    DETOUR_FUZZ_CHECK(!accepted_name(accepted, earlier));
    i += 1 + l;
  }
  DETOUR_FUZZ_CHECK(boundary);
  return 0;
}
