// SPDX-License-Identifier: MIT
// tests/interop/ppv2_inspect.cpp: the library at the command line for the HAProxy and
// go-proxyproto interop tests.
//   ppv2_inspect decode            reads raw bytes on stdin, prints the decoded header as
//                                  `name=value` lines (status, addresses, every TLV, SSL fields)
//   ppv2_inspect encode SRC DST [north|south]
//                                  writes to stdout a header for SRC -> DST ("a.b.c.d:port" or
//                                  "[v6]:port"): a detour north request or south hello, or a bare
//                                  PROXY header without TLVs
#include <detour/ppv2/decode.hpp>
#include <detour/ppv2/encode.hpp>
#include <detour/request.hpp>

#include <array>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

using namespace detour;

namespace {

std::string hex(std::span<const std::uint8_t> bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (std::uint8_t b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 0xF];
  }
  return out;
}

std::string type_hex(std::uint8_t t) {
  return "0x" + hex(std::span<const std::uint8_t>(&t, 1));
}

int decode_stdin() {
  const std::vector<std::uint8_t> in((std::istreambuf_iterator<char>(std::cin)),
                                     std::istreambuf_iterator<char>());
  const auto r = ppv2::decode(in);
  if (r.failed()) {
    std::cout << "status=error\nerror=" << errc_name(r.error) << "\noffset=" << r.offset << "\n";
    return 1;
  }
  if (r.need_more()) {
    std::cout << "status=need_more\nneeded=" << r.needed << "\n";
    return 1;
  }
  const auto& h = r.value;
  std::cout << "status=complete\nsize=" << h.size()
            << "\ncommand=" << (h.command == ppv2::command::proxy ? "PROXY" : "LOCAL")
            << "\nfam=" << type_hex(h.bytes[13]);
  if (h.family == ppv2::address_family::unix_socket) {
    // The paths up to their first NUL (PROXY v2 section 2.2: 108 bytes each, NUL-padded).
    const auto path = [](std::span<const std::uint8_t> p) {
      std::string out(p.begin(), p.end());
      return out.substr(0, out.find('\0'));
    };
    std::cout << "\nsource=" << path(h.unix_source())
              << "\ndestination=" << path(h.unix_destination());
  } else {
    std::cout << "\nsource=" << to_text(h.source).view()
              << "\ndestination=" << to_text(h.destination).view();
  }
  std::cout << "\ntrailing=" << in.size() - h.size() << "\n";
  std::string order;
  for (const auto t : h.tlvs()) {
    order += (order.empty() ? "" : ",") + type_hex(t.type);
    std::cout << "tlv." << type_hex(t.type) << "=" << hex(t.value) << "\n";
  }
  std::cout << "tlv_order=" << order << "\n";
  if (const auto c = h.crc32c()) std::cout << "crc32c=" << *c << "\n";
  if (const auto a = h.authority()) std::cout << "authority=" << *a << "\n";
  if (const auto u = h.unique_id()) std::cout << "unique_id=" << ppv2::as_text(*u) << "\n";
  if (const auto ssl = h.ssl()) {
    std::cout << "ssl.client=" << int(ssl->client) << "\nssl.verify=" << ssl->verify << "\n";
    std::string sub;
    for (const auto t : ssl->sub_tlvs) sub += (sub.empty() ? "" : ",") + type_hex(t.type);
    std::cout << "ssl.order=" << sub << "\n";
    const auto show = [](std::string_view name, std::optional<std::string_view> v) {
      if (v) std::cout << "ssl." << name << "=" << *v << "\n";
    };
    show("version", ssl->version());
    show("cn", ssl->cn());
    show("cipher", ssl->cipher());
    show("sig_alg", ssl->sig_alg());
    show("key_alg", ssl->key_alg());
    show("group", ssl->group());
    show("sig_scheme", ssl->sig_scheme());
    if (const auto cert = ssl->client_cert())
      std::cout << "ssl.client_cert_size=" << cert->size() << "\n";
  }
  return 0;
}

int encode(std::string_view src, std::string_view dst, std::string_view kind) {
  const auto s = parse_socket_address(src), d = parse_socket_address(dst);
  if (!s || !d) {
    std::cerr << "bad address\n";
    return 2;
  }
  std::array<std::uint8_t, 1024> out{};
  encode_result e;
  if (kind == "north") {
    north_request r;
    r.client = *s;
    r.proxy = *d;
    r.upstream.text = "example.com:443";
    r.protocol = protocol_kind::smtp;
    r.match_id = 1;
    e = encode_north_request(r, out);
  } else if (kind == "south") {
    e = encode_south_hello(south_hello{*s, *d, 1, 0}, out);
  } else {
    e = ppv2::encode(ppv2::header_fields::tcp(*s, *d), {}, out);
  }
  if (!e) {
    std::cerr << "encode: " << e.error_code().message() << "\n";
    return 1;
  }
  std::fwrite(out.data(), 1, e.size, stdout);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.size() == 1 && args[0] == "decode") return decode_stdin();
  if ((args.size() == 3 || args.size() == 4) && args[0] == "encode")
    return encode(args[1], args[2], args.size() == 4 ? args[3] : "");
  std::cerr << "usage: ppv2_inspect decode | ppv2_inspect encode SRC DST [north|south]\n";
  return 2;
}
