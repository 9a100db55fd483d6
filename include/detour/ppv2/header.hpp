// SPDX-License-Identifier: MIT
// detour/ppv2/header.hpp: the PROXY protocol version 2 header as a view over the bytes that
// carried it: constants, command/family/transport, addresses, and allocation-free walks over the
// TLVs with typed accessors for the registered types (proxy-protocol.txt sections 2.2-2.2.8).
#pragma once

#include <detour/address.hpp>
#include <detour/detail/bytes.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <span>
#include <string_view>

namespace detour::ppv2 {

/// §2.2: the 12-byte signature that opens every v2 header.
inline constexpr std::array<std::uint8_t, 12> signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
/// §2.2: signature, version/command, family/transport, 16-bit length.
inline constexpr std::size_t fixed_size = 12 + 1 + 1 + 2;
/// §2.2: the length field counts at most 65535 bytes after the fixed part.
inline constexpr std::size_t max_size = fixed_size + 0xFFFF;
/// §2.2: address block sizes ("2*4 + 2*2", "2*16 + 2*2", "2*108").
inline constexpr std::size_t address_size_inet = 4 + 4 + 2 + 2;
inline constexpr std::size_t address_size_inet6 = 16 + 16 + 2 + 2;
inline constexpr std::size_t address_size_unix = 108 + 108;
/// §2.2 (pp2_tlv): type, length_hi, length_lo.
inline constexpr std::size_t tlv_head_size = 3;

/// §2.2: the low nibble of byte 13.
enum class command : std::uint8_t {
  local = 0x0, ///< LOCAL: a connection of the proxy's own (health check); use the real endpoints
  proxy = 0x1, ///< PROXY: the address block describes the original connection
};

/// §2.2: the high nibble of byte 14.
enum class address_family : std::uint8_t {
  unspec = 0x0,      ///< AF_UNSPEC: no address block
  inet = 0x1,        ///< AF_INET: 4-byte addresses and 2-byte ports
  inet6 = 0x2,       ///< AF_INET6: 16-byte addresses and 2-byte ports
  unix_socket = 0x3, ///< AF_UNIX: two 108-byte paths
};

/// §2.2: the low nibble of byte 14.
enum class transport : std::uint8_t {
  unspec = 0x0, ///< UNSPEC
  stream = 0x1, ///< STREAM (TCP, UNIX stream)
  dgram = 0x2,  ///< DGRAM (UDP, UNIX datagram)
};

/// Bytes of the address block for a family (§2.2).
constexpr std::size_t address_size(address_family f) noexcept {
  switch (f) {
  case address_family::inet:
    return address_size_inet;
  case address_family::inet6:
    return address_size_inet6;
  case address_family::unix_socket:
    return address_size_unix;
  case address_family::unspec:
    break;
  }
  return 0;
}

/// TLV types: the registered ones (§2.2) and g3proxy's custom ones (§2.2.8 custom range).
/// TLVs carry the raw `std::uint8_t`; any value may appear on the wire.
enum class tlv_type : std::uint8_t {
  alpn = 0x01,      ///< PP2_TYPE_ALPN (§2.2.1)
  authority = 0x02, ///< PP2_TYPE_AUTHORITY (§2.2.2): host name, UTF-8
  crc32c = 0x03,    ///< PP2_TYPE_CRC32C (§2.2.3): 4 bytes, checked by the decoder
  noop = 0x04,      ///< PP2_TYPE_NOOP (§2.2.4): padding, ignored
  unique_id = 0x05, ///< PP2_TYPE_UNIQUE_ID (§2.2.5): up to 128 opaque bytes
  ssl = 0x20,       ///< PP2_TYPE_SSL (§2.2.6): client flags, verify result, sub-TLVs
  netns = 0x30,     ///< PP2_TYPE_NETNS (§2.2.7): namespace name, US-ASCII

  upstream = 0xE0,       ///< g3 PP2_TYPE_CUSTOM_UPSTREAM: "host:port" text
  tls_name = 0xE1,       ///< g3 PP2_TYPE_CUSTOM_TLS_NAME: defined, not sent by stream detour
  username = 0xE2,       ///< g3 PP2_TYPE_CUSTOM_USERNAME: text, only for authenticated clients
  task_id = 0xE3,        ///< g3 PP2_TYPE_CUSTOM_TASK_ID: 16 raw UUID bytes
  protocol = 0xE4,       ///< g3 PP2_TYPE_CUSTOM_PROTOCOL: text ("http_2", "websocket", ...)
  match_id = 0xE5,       ///< g3 PP2_TYPE_CUSTOM_MATCH_ID: u16 big-endian
  payload_length = 0xE6, ///< g3 PP2_TYPE_CUSTOM_PAYLOAD_LEN: u32 big-endian
};

/// §2.2.6: second-level TLV types inside PP2_TYPE_SSL.
enum class ssl_subtype : std::uint8_t {
  version = 0x21, ///< PP2_SUBTYPE_SSL_VERSION: "TLSv1.3"
  cn = 0x22,      ///< PP2_SUBTYPE_SSL_CN: client certificate Common Name, UTF-8
  cipher = 0x23,  ///< PP2_SUBTYPE_SSL_CIPHER: "ECDHE-RSA-AES128-GCM-SHA256"
  sig_alg = 0x24, ///< PP2_SUBTYPE_SSL_SIG_ALG: "SHA256"
  key_alg = 0x25, ///< PP2_SUBTYPE_SSL_KEY_ALG: "RSA2048"
  // Registered later (the specification's 2025 revision; HAProxy 3.x, go-proxyproto, Ghostunnel):
  group = 0x26,       ///< PP2_SUBTYPE_SSL_GROUP: key exchange group, US-ASCII ("X25519")
  sig_scheme = 0x27,  ///< PP2_SUBTYPE_SSL_SIG_SCHEME: signature scheme, US-ASCII
  client_cert = 0x28, ///< PP2_SUBTYPE_SSL_CLIENT_CERT: the client certificate, DER (binary)
};

/// §2.2.6: bits of the SSL TLV's `client` field.
inline constexpr std::uint8_t ssl_client_ssl = 0x01;       ///< PP2_CLIENT_SSL
inline constexpr std::uint8_t ssl_client_cert_conn = 0x02; ///< PP2_CLIENT_CERT_CONN
inline constexpr std::uint8_t ssl_client_cert_sess = 0x04; ///< PP2_CLIENT_CERT_SESS

constexpr std::uint8_t to_byte(tlv_type t) noexcept {
  return static_cast<std::uint8_t>(t);
}
constexpr std::uint8_t to_byte(ssl_subtype t) noexcept {
  return static_cast<std::uint8_t>(t);
}
/// §2.2.8: 0xE0-0xEF, "reserved for application-specific data" (g3proxy's range).
constexpr bool is_custom(std::uint8_t type) noexcept {
  return type >= 0xE0 && type <= 0xEF;
}
/// §2.2.8: 0xF0-0xF7, "temporary experimental use".
constexpr bool is_experimental(std::uint8_t type) noexcept {
  return type >= 0xF0 && type <= 0xF7;
}
/// §2.2.8: 0xF8-0xFF, "reserved for future use".
constexpr bool is_future(std::uint8_t type) noexcept {
  return type >= 0xF8;
}

/// The registered name of a TLV type ("PP2_TYPE_ALPN", ...), g3's names for E0-E6, or an empty
/// view for other types.
constexpr std::string_view tlv_type_name(std::uint8_t type) noexcept {
  switch (type) {
  case 0x01:
    return "PP2_TYPE_ALPN";
  case 0x02:
    return "PP2_TYPE_AUTHORITY";
  case 0x03:
    return "PP2_TYPE_CRC32C";
  case 0x04:
    return "PP2_TYPE_NOOP";
  case 0x05:
    return "PP2_TYPE_UNIQUE_ID";
  case 0x20:
    return "PP2_TYPE_SSL";
  case 0x21:
    return "PP2_SUBTYPE_SSL_VERSION";
  case 0x22:
    return "PP2_SUBTYPE_SSL_CN";
  case 0x23:
    return "PP2_SUBTYPE_SSL_CIPHER";
  case 0x24:
    return "PP2_SUBTYPE_SSL_SIG_ALG";
  case 0x25:
    return "PP2_SUBTYPE_SSL_KEY_ALG";
  case 0x26:
    return "PP2_SUBTYPE_SSL_GROUP";
  case 0x27:
    return "PP2_SUBTYPE_SSL_SIG_SCHEME";
  case 0x28:
    return "PP2_SUBTYPE_SSL_CLIENT_CERT";
  case 0x30:
    return "PP2_TYPE_NETNS";
  case 0xE0:
    return "PP2_TYPE_CUSTOM_UPSTREAM";
  case 0xE1:
    return "PP2_TYPE_CUSTOM_TLS_NAME";
  case 0xE2:
    return "PP2_TYPE_CUSTOM_USERNAME";
  case 0xE3:
    return "PP2_TYPE_CUSTOM_TASK_ID";
  case 0xE4:
    return "PP2_TYPE_CUSTOM_PROTOCOL";
  case 0xE5:
    return "PP2_TYPE_CUSTOM_MATCH_ID";
  case 0xE6:
    return "PP2_TYPE_CUSTOM_PAYLOAD_LEN";
  default:
    return {};
  }
}

/// Bytes seen as text without copying (TLV values are byte strings; see docs/protocol.md for
/// what the library assumes about their encoding).
inline std::string_view as_text(std::span<const std::uint8_t> bytes) noexcept {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

/// One TLV: its type, its value (a view into the header's bytes) and where it starts.
struct tlv_view {
  std::uint8_t type = 0;
  std::span<const std::uint8_t> value;
  /// Offset of the TLV's type byte from the start of the header (or of the enclosing walk).
  std::size_t offset = 0;

  std::string_view text() const noexcept { return as_text(value); }
};

/// A forward range over the TLVs in a block of bytes, walked without copying. The walk stops at
/// the first TLV that does not fit, so it is safe over any bytes; over a decoded header's TLV
/// block (which the decoder validated) it visits every TLV and ends exactly at the end.
class tlv_range {
public:
  class iterator {
  public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = tlv_view;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = tlv_view;

    iterator() = default;
    tlv_view operator*() const noexcept { return current_; }
    iterator& operator++() noexcept {
      pos_ += tlv_head_size + current_.value.size();
      load();
      return *this;
    }
    iterator operator++(int) noexcept {
      auto copy = *this;
      ++*this;
      return copy;
    }
    friend bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.pos_ == b.pos_;
    }

  private:
    friend class tlv_range;
    iterator(std::span<const std::uint8_t> bytes, std::size_t pos, std::size_t base) noexcept
        : bytes_(bytes), pos_(pos), base_(base) {
      load();
    }
    void load() noexcept {
      const std::size_t left = bytes_.size() - pos_;
      if (left < tlv_head_size) {
        pos_ = bytes_.size();
        return;
      }
      const std::size_t len = detail::load_be16(bytes_.data() + pos_ + 1);
      if (len > left - tlv_head_size) {
        pos_ = bytes_.size();
        return;
      }
      current_ = {bytes_[pos_], bytes_.subspan(pos_ + tlv_head_size, len), base_ + pos_};
    }
    std::span<const std::uint8_t> bytes_;
    std::size_t pos_ = 0;
    std::size_t base_ = 0;
    tlv_view current_;
  };

  tlv_range() = default;
  /// Walks `bytes`; `base` is added to each tlv_view::offset (the block's offset in its header).
  explicit tlv_range(std::span<const std::uint8_t> bytes, std::size_t base = 0) noexcept
      : bytes_(bytes), base_(base) {}

  iterator begin() const noexcept { return {bytes_, 0, base_}; }
  iterator end() const noexcept { return {bytes_, bytes_.size(), base_}; }
  bool empty() const noexcept { return begin() == end(); }
  /// The raw bytes walked.
  std::span<const std::uint8_t> bytes() const noexcept { return bytes_; }

  /// The first TLV of `type`, if any.
  std::optional<tlv_view> find(std::uint8_t type) const noexcept {
    for (const tlv_view t : *this)
      if (t.type == type) return t;
    return std::nullopt;
  }

private:
  std::span<const std::uint8_t> bytes_;
  std::size_t base_ = 0;
};

/// §2.2.6: the value of a PP2_TYPE_SSL TLV.
struct ssl_view {
  /// PP2_CLIENT_* bits (ssl_client_ssl, ssl_client_cert_conn, ssl_client_cert_sess).
  std::uint8_t client = 0;
  /// "zero if the client presented a certificate and it was successfully verified".
  std::uint32_t verify = 0;
  /// The second-level TLVs, in the order sent (HAProxy does not sort them).
  tlv_range sub_tlvs;

  bool client_ssl() const noexcept { return (client & ssl_client_ssl) != 0; }
  bool client_cert_conn() const noexcept { return (client & ssl_client_cert_conn) != 0; }
  bool client_cert_sess() const noexcept { return (client & ssl_client_cert_sess) != 0; }

  std::optional<std::string_view> find_text(ssl_subtype t) const noexcept {
    if (auto v = sub_tlvs.find(to_byte(t))) return v->text();
    return std::nullopt;
  }
  std::optional<std::string_view> version() const noexcept {
    return find_text(ssl_subtype::version);
  }
  std::optional<std::string_view> cn() const noexcept { return find_text(ssl_subtype::cn); }
  std::optional<std::string_view> cipher() const noexcept { return find_text(ssl_subtype::cipher); }
  std::optional<std::string_view> sig_alg() const noexcept {
    return find_text(ssl_subtype::sig_alg);
  }
  std::optional<std::string_view> key_alg() const noexcept {
    return find_text(ssl_subtype::key_alg);
  }
  std::optional<std::string_view> group() const noexcept { return find_text(ssl_subtype::group); }
  std::optional<std::string_view> sig_scheme() const noexcept {
    return find_text(ssl_subtype::sig_scheme);
  }
  /// The client certificate's DER bytes (binary: Ghostunnel's tls-full mode sends it).
  std::optional<std::span<const std::uint8_t>> client_cert() const noexcept {
    if (auto v = sub_tlvs.find(to_byte(ssl_subtype::client_cert))) return v->value;
    return std::nullopt;
  }
};

/// §2.2.6: the fixed part of the SSL TLV value (client 1 byte, verify 4 bytes).
inline constexpr std::size_t ssl_fixed_size = 1 + 4;

/// A decoded PROXY v2 header. Every view points into the bytes that were decoded (the caller's
/// buffer, or a ppv2::decoder's storage) and is valid as long as those bytes are unchanged.
struct header_view {
  ppv2::command command = command::local;
  address_family family = address_family::unspec;
  ppv2::transport transport = transport::unspec;
  /// For AF_INET and AF_INET6: the source (the original client) and destination (the address
  /// the client reached, the proxy's own). Zero for other families. For the LOCAL command the
  /// specification says to ignore them and use the real connection's endpoints.
  socket_address source;
  socket_address destination;
  /// The whole header: 16 + length bytes.
  std::span<const std::uint8_t> bytes;
  /// The address block (0, 12, 36 or 216 bytes, after the fixed part).
  std::span<const std::uint8_t> address_block;
  /// The TLV block, from the end of the address block to the end of the header.
  std::span<const std::uint8_t> tlv_block;
  /// LOCAL only: the bytes after the fixed part were not the family's addresses and valid TLVs,
  /// and are ignored as §2.2 says ("discard the protocol block including the family"): the view
  /// then reads AF_UNSPEC with no address and no TLV; `bytes` still covers them all.
  bool block_discarded = false;

  /// Total size of the header on the wire.
  std::size_t size() const noexcept { return bytes.size(); }
  /// The TLVs in the order sent; tlv_view::offset counts from the start of the header.
  tlv_range tlvs() const noexcept {
    return tlv_range(tlv_block, fixed_size + address_block.size());
  }
  /// The first TLV of a type.
  std::optional<tlv_view> find(std::uint8_t type) const noexcept { return tlvs().find(type); }
  std::optional<tlv_view> find(tlv_type type) const noexcept { return find(to_byte(type)); }

  /// For AF_UNIX: the 108-byte source and destination paths (zero-padded), else empty.
  std::span<const std::uint8_t> unix_source() const noexcept {
    return family == address_family::unix_socket ? address_block.first(108)
                                                 : std::span<const std::uint8_t>{};
  }
  std::span<const std::uint8_t> unix_destination() const noexcept {
    return family == address_family::unix_socket ? address_block.subspan(108, 108)
                                                 : std::span<const std::uint8_t>{};
  }

  /// PP2_TYPE_ALPN as sent.
  std::optional<std::span<const std::uint8_t>> alpn() const noexcept {
    if (auto t = find(tlv_type::alpn)) return t->value;
    return std::nullopt;
  }
  /// PP2_TYPE_AUTHORITY: the host name the client asked for (TLS SNI).
  std::optional<std::string_view> authority() const noexcept {
    if (auto t = find(tlv_type::authority)) return t->text();
    return std::nullopt;
  }
  /// PP2_TYPE_CRC32C as sent (the decoder already verified it).
  std::optional<std::uint32_t> crc32c() const noexcept {
    if (auto t = find(tlv_type::crc32c); t && t->value.size() == 4)
      return detail::load_be32(t->value.data());
    return std::nullopt;
  }
  /// PP2_TYPE_UNIQUE_ID: up to 128 opaque bytes.
  std::optional<std::span<const std::uint8_t>> unique_id() const noexcept {
    if (auto t = find(tlv_type::unique_id)) return t->value;
    return std::nullopt;
  }
  /// PP2_TYPE_NETNS: the network namespace name.
  std::optional<std::string_view> netns() const noexcept {
    if (auto t = find(tlv_type::netns)) return t->text();
    return std::nullopt;
  }
  /// PP2_TYPE_SSL with its client flags, verify result and sub-TLVs.
  std::optional<ssl_view> ssl() const noexcept {
    auto t = find(tlv_type::ssl);
    if (!t || t->value.size() < ssl_fixed_size) return std::nullopt;
    return ssl_view{
        t->value[0], detail::load_be32(t->value.data() + 1),
        tlv_range(t->value.subspan(ssl_fixed_size), t->offset + tlv_head_size + ssl_fixed_size)};
  }

  /// Equal when they describe the same header: same fields and the same bytes (the views may
  /// point into different buffers).
  friend bool operator==(const header_view& a, const header_view& b) noexcept {
    return a.command == b.command && a.family == b.family && a.transport == b.transport &&
           a.source == b.source && a.destination == b.destination &&
           a.address_block.size() == b.address_block.size() && std::ranges::equal(a.bytes, b.bytes);
  }
};

} // namespace detour::ppv2
