// SPDX-License-Identifier: MIT
// cli/policy.hpp: the rules file of `detour serve --policy` (docs/policy.md). It maps what a
// task's north header says (g3proxy stream detour: E4 protocol, E0 upstream host and port, E2
// username, the PROXY source address) to the answer (continue, bypass, block): first match wins,
// then the default. Parsing explains each mistake with its line and column. Standard library only.
#pragma once

#include <detour/address.hpp>
#include <detour/request.hpp>
#include <detour/response.hpp>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace detour::cli {

/// Bounds of a rules file. A policy is read by people and evaluated rule by rule for every task;
/// these keep a runaway generated file from making each decision slow or the check unreadable.
struct policy_limits {
  /// Largest file read (1 MiB): tens of thousands of typical rules.
  std::size_t max_file_size = std::size_t{1} << 20;
  /// Longest line: a rule with a long list of hosts still fits.
  std::size_t max_line_length = 8192;
  /// Most rules: a task is checked against each in turn (a few ns per clause).
  std::size_t max_rules = 10000;
  /// Most values in one clause (`host=a,b,...`).
  std::size_t max_values = 1000;
  /// Most errors reported: after that the file is clearly not a policy.
  std::size_t max_errors = 50;
};

/// An IP subnet: `10.0.0.0/8`, `2001:db8::/32`, or one address (/32, /128).
struct ip_subnet {
  detour::ip_address base;
  unsigned prefix = 0;

  /// Whether `a` is inside. Families never mix: an IPv4 subnet holds no IPv6 address.
  constexpr bool contains(const detour::ip_address& a) const noexcept {
    if (a.family != base.family) return false;
    unsigned bits = prefix;
    for (std::size_t i = 0; bits != 0; ++i) {
      const unsigned take = bits >= 8 ? 8 : bits;
      const auto mask = static_cast<std::uint8_t>(0xFF00u >> take);
      if ((a.octets[i] & mask) != (base.octets[i] & mask)) return false;
      bits -= take;
    }
    return true;
  }
};

/// Ports `first` to `last`, both included.
struct port_range {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
};

/// One line of the file: a rule, or the default (which has no clauses).
struct policy_rule {
  std::string name; ///< the rule's name; "default" for the default line
  std::size_t line = 0;
  action decision = action::proceed;
  /// `capture`: tasks this rule continues are written to the --capture file.
  bool capture = false;

  // The clauses; an empty one is absent (matches anything). All present clauses must match,
  // and within a clause any one value.
  std::vector<std::string> protocols; ///< E4 names, exact
  std::vector<std::string> hosts;     ///< upstream host names, lower case, no trailing dot
  std::vector<std::string> suffixes;  ///< from `*.example.com`: ".example.com"
  std::vector<ip_subnet> ips;         ///< upstream host given as an address
  std::vector<port_range> ports;      ///< upstream port
  std::vector<std::string> users;     ///< E2, exact
  bool user_none = false;             ///< `user=-`: no username
  bool user_any = false;              ///< `user=*`: any username
  std::vector<ip_subnet> clients;     ///< PROXY source address

  bool has_user_clause() const noexcept { return user_none || user_any || !users.empty(); }
  bool has_host_clause() const noexcept { return !hosts.empty() || !suffixes.empty(); }
  /// No clause at all: matches every task.
  bool matches_all() const noexcept {
    return protocols.empty() && !has_host_clause() && ips.empty() && ports.empty() &&
           !has_user_clause() && clients.empty();
  }
};

/// A mistake (or a doubt) in a rules file, at a 1-based line and column.
struct policy_issue {
  std::size_t line = 0;
  std::size_t column = 0;
  std::string message;
};

namespace policy_detail {

inline char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

/// `host` (any case, maybe with a trailing dot) equals `name` (lower case, no trailing dot).
inline bool host_equals(std::string_view host, std::string_view name) noexcept {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.size() != name.size()) return false;
  for (std::size_t i = 0; i < host.size(); ++i)
    if (lower(host[i]) != name[i]) return false;
  return true;
}

/// `host` is a proper subdomain of the suffix `.example.com` (lower case).
inline bool host_under(std::string_view host, std::string_view suffix) noexcept {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.size() <= suffix.size()) return false;
  return host_equals(host.substr(host.size() - suffix.size()), suffix);
}

/// Every task `later` matches, `earlier` matches too (so `later` is never used after it):
/// each clause of `earlier` is absent or holds all that `later`'s same clause allows (which
/// must then be present). Conservative: false when in doubt.
inline bool covers(const policy_rule& earlier, const policy_rule& later) {
  const auto within_all = [](const auto& inner, const auto& outer, const auto& inside) {
    return std::all_of(inner.begin(), inner.end(), [&](const auto& x) {
      return std::any_of(outer.begin(), outer.end(), [&](const auto& o) { return inside(x, o); });
    });
  };
  // A list clause: absent in `earlier`, or present in `later` with all of it inside.
  const auto list_covers = [&](const auto& outer, const auto& inner, const auto& inside) {
    return outer.empty() || (!inner.empty() && within_all(inner, outer, inside));
  };
  const auto same = [](const auto& x, const auto& o) { return x == o; };
  const auto subnet_in = [](const ip_subnet& x, const ip_subnet& o) {
    return o.prefix <= x.prefix && o.contains(x.base);
  };
  const auto port_in = [](const port_range& x, const port_range& o) {
    return o.first <= x.first && x.last <= o.last;
  };
  if (!list_covers(earlier.protocols, later.protocols, same) ||
      !list_covers(earlier.ips, later.ips, subnet_in) ||
      !list_covers(earlier.ports, later.ports, port_in) ||
      !list_covers(earlier.clients, later.clients, subnet_in))
    return false;
  if (earlier.has_host_clause()) {
    if (!later.has_host_clause()) return false;
    const auto host_in = [&](const std::string& h) {
      return std::find(earlier.hosts.begin(), earlier.hosts.end(), h) != earlier.hosts.end() ||
             std::any_of(earlier.suffixes.begin(), earlier.suffixes.end(),
                         [&](const std::string& s) { return host_under(h, s); });
    };
    const auto suffix_in = [&](const std::string& s) { // ".x.example" under ".example"
      return std::any_of(earlier.suffixes.begin(), earlier.suffixes.end(),
                         [&](const std::string& o) {
                           return s == o || host_under(std::string_view(s).substr(1), o);
                         });
    };
    if (!std::all_of(later.hosts.begin(), later.hosts.end(), host_in) ||
        !std::all_of(later.suffixes.begin(), later.suffixes.end(), suffix_in))
      return false;
  }
  if (earlier.has_user_clause()) {
    if (!later.has_user_clause()) return false;
    if (later.user_none && !earlier.user_none) return false;
    if (later.user_any && !earlier.user_any) return false;
    if (!earlier.user_any && !within_all(later.users, earlier.users, same)) return false;
  }
  return true;
}

inline bool name_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

} // namespace policy_detail

/// @brief A parsed rules file: rules in order, then the default.
///
/// `decide()` walks the rules in file order and returns the first whose clauses all match the
/// request, else the default. It allocates nothing and reads nothing but the request.
class policy {
public:
  struct parse_result;

  /// Parses a whole file. Every line is checked, so all mistakes are reported at once (up to
  /// `limits.max_errors`); the policy is there only when there are no errors. Warnings
  /// (unreachable rules, say) do not stop a policy from being used.
  static parse_result parse(std::string_view text, const policy_limits& limits = {});

  /// The rule that decides `r`: the first matching rule, else the default.
  const policy_rule& decide(const north_request& r) const noexcept {
    const auto ip = detour::parse_ip(r.upstream.host); // for ip= clauses; empty for a name
    for (const policy_rule& rule : rules_)
      if (matches(rule, r, ip)) return rule;
    return default_;
  }

  /// Whether one rule matches `r` (`upstream_ip`: the upstream host as an address, if it is one).
  static bool matches(const policy_rule& rule, const north_request& r,
                      const std::optional<detour::ip_address>& upstream_ip) noexcept {
    using namespace policy_detail;
    if (!rule.protocols.empty() && std::find(rule.protocols.begin(), rule.protocols.end(),
                                             r.protocol_name) == rule.protocols.end())
      return false;
    if (rule.has_host_clause()) {
      if (upstream_ip) return false; // names never match an address
      const std::string_view h = r.upstream.host;
      const bool exact = std::any_of(rule.hosts.begin(), rule.hosts.end(),
                                     [&](const std::string& n) { return host_equals(h, n); });
      if (!exact && std::none_of(rule.suffixes.begin(), rule.suffixes.end(),
                                 [&](const std::string& s) { return host_under(h, s); }))
        return false;
    }
    if (!rule.ips.empty()) {
      if (!upstream_ip) return false; // no name resolution: an address clause needs an address
      if (std::none_of(rule.ips.begin(), rule.ips.end(),
                       [&](const ip_subnet& s) { return s.contains(*upstream_ip); }))
        return false;
    }
    if (!rule.ports.empty() &&
        std::none_of(rule.ports.begin(), rule.ports.end(), [&](const port_range& p) {
          return r.upstream.port >= p.first && r.upstream.port <= p.last;
        }))
      return false;
    if (rule.has_user_clause()) {
      if (!r.username) {
        if (!rule.user_none) return false;
      } else if (!rule.user_any &&
                 std::find(rule.users.begin(), rule.users.end(), *r.username) == rule.users.end()) {
        return false;
      }
    }
    if (!rule.clients.empty() &&
        std::none_of(rule.clients.begin(), rule.clients.end(),
                     [&](const ip_subnet& s) { return s.contains(r.client.ip); }))
      return false;
    return true;
  }

  std::span<const policy_rule> rules() const noexcept { return rules_; }
  const policy_rule& fallback() const noexcept { return default_; }
  /// Whether any rule (or the default) captures.
  bool captures_any() const noexcept {
    return default_.capture || std::any_of(rules_.begin(), rules_.end(),
                                           [](const policy_rule& r) { return r.capture; });
  }

private:
  std::vector<policy_rule> rules_;
  policy_rule default_;
};

/// What parsing a file gives: a policy when there are no errors, and the issues found.
struct policy::parse_result {
  std::optional<policy> value; ///< set when `errors` is empty
  std::vector<policy_issue> errors;
  std::vector<policy_issue> warnings;
  bool ok() const noexcept { return value.has_value(); }
};

/// A rule in words, as `detour serve --check-policy` prints it:
/// "protocol smtp|imap, host mail.example.com -> continue, capture".
inline std::string describe(const policy_rule& r) {
  std::string out;
  const auto clause = [&out](std::string_view key, const auto& values, auto&& text) {
    if (values.empty()) return;
    out += out.empty() ? "" : ", ";
    out += key;
    out += ' ';
    bool first = true;
    for (const auto& v : values) {
      if (!first) out += '|';
      first = false;
      out += text(v);
    }
  };
  const auto same = [](const std::string& s) { return s; };
  const auto subnet = [](const ip_subnet& s) {
    const unsigned full = s.base.is_v4() ? 32 : 128;
    std::string t(detour::to_text(s.base).view());
    if (s.prefix != full) t += "/" + std::to_string(s.prefix);
    return t;
  };
  clause("protocol", r.protocols, same);
  std::vector<std::string> hosts = r.hosts;
  for (const auto& s : r.suffixes) hosts.push_back("*" + s);
  clause("host", hosts, same);
  clause("ip", r.ips, subnet);
  clause("port", r.ports, [](const port_range& p) {
    return p.first == p.last ? std::to_string(p.first)
                             : std::to_string(p.first) + "-" + std::to_string(p.last);
  });
  std::vector<std::string> users = r.users;
  if (r.user_any) users.emplace_back("* (any username)");
  if (r.user_none) users.emplace_back("- (no username)");
  clause("user", users, same);
  clause("client", r.clients, subnet);
  if (out.empty()) out = "every task";
  out += " -> ";
  out += detour::to_string(r.decision);
  if (r.capture) out += ", capture";
  return out;
}

namespace policy_detail {

struct token {
  std::string_view text;
  std::size_t column = 0; // 1-based
};

class parser {
public:
  parser(const policy_limits& limits, policy::parse_result& out) : limits_(limits), out_(out) {}

  void error(std::size_t line, std::size_t column, std::string message) {
    if (out_.errors.size() < limits_.max_errors)
      out_.errors.push_back({line, column, std::move(message)});
  }
  void warning(std::size_t line, std::size_t column, std::string message) {
    out_.warnings.push_back({line, column, std::move(message)});
  }

  static std::vector<token> split(std::string_view line) {
    std::vector<token> out;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      if (i >= line.size() || line[i] == '#') break; // a comment runs to the end of the line
      const std::size_t start = i;
      while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
      out.push_back({line.substr(start, i - start), start + 1});
    }
    return out;
  }

  static std::optional<action> parse_action(std::string_view t) {
    if (t == "continue") return action::proceed;
    if (t == "bypass") return action::bypass;
    if (t == "block") return action::block;
    return std::nullopt;
  }

  std::optional<ip_subnet> parse_subnet(std::size_t line, const token& t, std::string_view v,
                                        std::string_view key) {
    ip_subnet s;
    const auto slash = v.find('/');
    const auto ip = detour::parse_ip(v.substr(0, slash));
    if (!ip) {
      error(line, t.column,
            std::string(key) + "=" + std::string(v) + ": '" + std::string(v.substr(0, slash)) +
                "' is not an IPv4 or IPv6 address (write 10.0.0.0/8, 192.0.2.7 or 2001:db8::/32)");
      return std::nullopt;
    }
    s.base = *ip;
    const unsigned full = ip->is_v4() ? 32 : 128;
    s.prefix = full;
    if (slash != std::string_view::npos) {
      const std::string_view p = v.substr(slash + 1);
      unsigned n = 0;
      const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), n);
      if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || n > full) {
        error(line, t.column,
              std::string(key) + "=" + std::string(v) + ": the prefix length after '/' must be " +
                  "a number from 0 to " + std::to_string(full) + " for an IPv" +
                  (ip->is_v4() ? "4" : "6") + " address");
        return std::nullopt;
      }
      s.prefix = n;
    }
    ip_subnet canonical = s;
    for (unsigned bit = s.prefix; bit < full; ++bit)
      canonical.base.octets[bit / 8] =
          static_cast<std::uint8_t>(canonical.base.octets[bit / 8] & ~(0x80u >> (bit % 8)));
    if (canonical.base != s.base) {
      error(line, t.column,
            std::string(key) + "=" + std::string(v) + ": the address has bits set beyond the /" +
                std::to_string(s.prefix) + " prefix; did you mean " +
                std::string(detour::to_text(canonical.base).view()) + "/" +
                std::to_string(s.prefix) + "?");
      return std::nullopt;
    }
    return s;
  }

  std::optional<std::uint16_t> parse_port(std::size_t line, const token& t, std::string_view v,
                                          std::string_view whole) {
    unsigned n = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || n == 0 || n > 65535) {
      error(line, t.column,
            "port=" + std::string(whole) + ": '" + std::string(v) +
                "' is not a port from 1 to 65535 (write port=443, port=25,465,587 or " +
                "port=8000-8999)");
      return std::nullopt;
    }
    return static_cast<std::uint16_t>(n);
  }

  // `host=` values: exact names or `*.suffix`, letters, digits, '-', '_' and dots.
  bool add_host(std::size_t line, const token& t, std::string_view v, policy_rule& r) {
    std::string_view name = v;
    const bool wildcard = name.starts_with("*.");
    if (wildcard) name.remove_prefix(2);
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (v == "*") {
      error(line, t.column, "host=*: leave the host clause out to match every host");
      return false;
    }
    if (detour::parse_ip(name)) {
      error(line, t.column,
            "host=" + std::string(v) + ": an address, not a name; use ip=" + std::string(name) +
                " (host= matches names, ip= matches upstreams given as addresses)");
      return false;
    }
    bool ok = !name.empty() && name.size() <= 253 && name.front() != '.' &&
              name.find("..") == std::string_view::npos;
    for (const char c : name) ok = ok && name_char(c);
    if (!ok) {
      error(line, t.column,
            "host=" + std::string(v) +
                ": not a host name (letters, digits, '-', '_' and dots; '*.' only at the start, " +
                "as in *.example.com)");
      return false;
    }
    std::string lowered;
    for (const char c : name) lowered += lower(c);
    if (wildcard) {
      r.suffixes.push_back("." + lowered);
    } else {
      r.hosts.push_back(std::move(lowered));
    }
    return true;
  }

  static bool token_chars(std::string_view v) noexcept {
    for (const char c : v) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x21 || u == 0x7f) return false;
    }
    return true;
  }

  void clause(std::size_t line, const token& t, policy_rule& r, std::vector<std::string>& seen) {
    const auto eq = t.text.find('=');
    if (eq == std::string_view::npos) {
      error(line, t.column,
            "'" + std::string(t.text) +
                "' is neither a clause (key=value: protocol, host, ip, port, user, client) nor " +
                "'capture'");
      return;
    }
    const std::string key(t.text.substr(0, eq));
    const std::string_view values = t.text.substr(eq + 1);
    static constexpr std::string_view keys[] = {"protocol", "host", "ip", "port", "user", "client"};
    if (std::find(std::begin(keys), std::end(keys), key) == std::end(keys)) {
      error(line, t.column,
            "unknown clause '" + key + "' (the clauses: protocol, host, ip, port, user, client)");
      return;
    }
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      error(line, t.column,
            key + " is given twice in this rule; list the values in one clause, separated by " +
                "commas (" + key + "=a,b)");
      return;
    }
    seen.push_back(key);
    if (values.empty()) {
      error(line, t.column, key + "= has no value");
      return;
    }
    std::size_t count = 0;
    std::size_t start = 0;
    while (true) {
      const auto comma = values.find(',', start);
      const std::string_view v = values.substr(
          start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
      if (++count > limits_.max_values) {
        error(line, t.column,
              key + " has more than " + std::to_string(limits_.max_values) +
                  " values; split the rule");
        return;
      }
      if (v.empty()) {
        error(line, t.column, key + "=" + std::string(values) + ": an empty value between commas");
        return;
      }
      if (key == "protocol") {
        bool ok = true;
        for (const char c : v) ok = ok && name_char(c);
        if (!ok) {
          error(line, t.column,
                "protocol=" + std::string(v) +
                    ": a protocol name is letters, digits, '_', '-' and '.' (g3proxy sends " +
                    "http_2, websocket, smtp, imap)");
          return;
        }
        r.protocols.emplace_back(v);
      } else if (key == "host") {
        if (!add_host(line, t, v, r)) return;
      } else if (key == "ip" || key == "client") {
        const auto s = parse_subnet(line, t, v, key);
        if (!s) return;
        (key == "ip" ? r.ips : r.clients).push_back(*s);
      } else if (key == "port") {
        const auto dash = v.find('-');
        const auto first = parse_port(line, t, v.substr(0, dash), values);
        if (!first) return;
        auto last = first;
        if (dash != std::string_view::npos) {
          last = parse_port(line, t, v.substr(dash + 1), values);
          if (!last) return;
          if (*last < *first) {
            error(line, t.column,
                  "port=" + std::string(v) + ": the range ends before it starts (write " +
                      std::to_string(*last) + "-" + std::to_string(*first) + ")");
            return;
          }
        }
        r.ports.push_back({*first, *last});
      } else { // user
        if (!token_chars(v)) {
          error(line, t.column, "user=" + std::string(v) + ": control characters in a username");
          return;
        }
        if (v == "-") {
          r.user_none = true;
        } else if (v == "*") {
          r.user_any = true;
        } else {
          r.users.emplace_back(v);
        }
      }
      if (comma == std::string_view::npos) break;
      start = comma + 1;
    }
  }

  // The options after the action: `capture` and the clauses.
  void options(std::size_t line, std::span<const token> tokens, policy_rule& r, bool is_default) {
    std::vector<std::string> seen;
    bool capture_seen = false;
    for (const token& t : tokens) {
      if (t.text == "capture") {
        if (capture_seen) error(line, t.column, "'capture' is given twice");
        capture_seen = true;
        if (r.decision != action::proceed) {
          error(line, t.column,
                "'capture' needs the action continue: a bypassed or blocked task relays nothing " +
                    std::string("through this server"));
        }
        r.capture = true;
        continue;
      }
      if (is_default) {
        error(line, t.column,
              "the default line takes an action and optionally 'capture', no clauses ('" +
                  std::string(t.text) + "'); write a rule for that");
        continue;
      }
      clause(line, t, r, seen);
    }
  }

  static bool valid_name(std::string_view n) noexcept {
    if (n.empty() || n.size() > 64) return false;
    for (const char c : n)
      if (!name_char(c)) return false;
    return true;
  }

  void line(std::size_t number, std::string_view text, std::vector<policy_rule>& rules,
            std::optional<policy_rule>& fallback) {
    if (text.size() > limits_.max_line_length) {
      error(number, limits_.max_line_length + 1,
            "the line is longer than " + std::to_string(limits_.max_line_length) +
                " characters; split the rule");
      return;
    }
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto u = static_cast<unsigned char>(text[i]);
      if ((u < 0x20 && text[i] != '\t') || u == 0x7f) {
        error(number, i + 1, "a control character in the line");
        return;
      }
    }
    const auto tokens = split(text);
    if (tokens.empty()) return;
    const token& first = tokens[0];
    if (first.text == "default") {
      default_seen_ = true; // a broken default line is its own error, not a missing one
      if (tokens.size() < 2) {
        error(number, first.column + first.text.size(),
              "the default line needs an action: default continue|bypass|block");
        return;
      }
      policy_rule r;
      r.name = "default";
      r.line = number;
      const auto a = parse_action(tokens[1].text);
      if (!a) {
        error(number, tokens[1].column,
              "'" + std::string(tokens[1].text) + "' is not an action (continue, bypass, block)");
        return;
      }
      r.decision = *a;
      options(number, std::span<const token>(tokens).subspan(2), r, true);
      if (fallback) {
        error(number, first.column,
              "a second default line (the first is on line " + std::to_string(fallback->line) +
                  ")");
        return;
      }
      fallback = std::move(r);
      return;
    }
    if (first.text != "rule") {
      error(number, first.column,
            "'" + std::string(first.text) +
                "' starts no known line: write 'rule NAME ACTION [capture] [key=value...]', " +
                "'default ACTION [capture]' or a # comment");
      return;
    }
    if (tokens.size() < 3) {
      error(number, first.column,
            "a rule needs a name and an action: rule NAME continue|bypass|block [clauses]");
      return;
    }
    policy_rule r;
    r.line = number;
    r.name = std::string(tokens[1].text);
    if (!valid_name(r.name) || r.name == "default") {
      error(number, tokens[1].column,
            "'" + r.name +
                "' is not a rule name (1 to 64 letters, digits, '-', '_', '.'; not 'default')");
      return;
    }
    for (const policy_rule& other : rules) {
      if (other.name == r.name) {
        error(number, tokens[1].column,
              "the rule name '" + r.name + "' is already used on line " +
                  std::to_string(other.line) +
                  " (names appear in audit records: keep them "
                  "unique)");
        return;
      }
    }
    const auto a = parse_action(tokens[2].text);
    if (!a) {
      error(number, tokens[2].column,
            "'" + std::string(tokens[2].text) + "' is not an action (continue, bypass, block)");
      return;
    }
    r.decision = *a;
    const std::size_t errors_before = out_.errors.size();
    options(number, std::span<const token>(tokens).subspan(3), r, false);
    if (out_.errors.size() != errors_before) return;
    if (rules.size() >= limits_.max_rules) {
      error(number, first.column,
            "more than " + std::to_string(limits_.max_rules) + " rules; every task is checked " +
                "against each in turn");
      return;
    }
    rules.push_back(std::move(r));
  }

  void finish(std::vector<policy_rule>& rules, std::optional<policy_rule>& fallback,
              std::size_t last_line) {
    if (!fallback && !default_seen_) {
      error(last_line == 0 ? 1 : last_line, 1,
            "no default line: add one such as 'default continue' (what tasks no rule matches "
            "get)");
    }
    // A rule whose every task an earlier rule takes is never used (pairs are compared only up
    // to a few thousand rules: beyond, the check would cost more than it tells).
    std::size_t reachable = rules.size();
    for (std::size_t i = 0; i < rules.size(); ++i)
      if (rules[i].matches_all()) {
        reachable = i + 1;
        break;
      }
    if (reachable <= 2000) {
      for (std::size_t j = 1; j < reachable; ++j) {
        for (std::size_t i = 0; i < j; ++i) {
          if (!policy_detail::covers(rules[i], rules[j])) continue;
          warning(rules[j].line, 1,
                  "rule '" + rules[j].name + "' is never used: rule '" + rules[i].name +
                      "' on line " + std::to_string(rules[i].line) +
                      " matches every task it would");
          break;
        }
      }
    }
    // A rule without clauses takes every task: what follows it is never used.
    for (std::size_t i = 0; i < rules.size(); ++i) {
      if (!rules[i].matches_all()) continue;
      if (i + 1 < rules.size()) {
        warning(rules[i + 1].line, 1,
                "rule '" + rules[i + 1].name + "' is never used: rule '" + rules[i].name +
                    "' on line " + std::to_string(rules[i].line) + " matches every task");
      } else if (fallback) {
        warning(fallback->line, 1,
                "the default is never used: rule '" + rules[i].name + "' on line " +
                    std::to_string(rules[i].line) + " matches every task");
      }
      break;
    }
  }

private:
  const policy_limits& limits_;
  policy::parse_result& out_;
  bool default_seen_ = false;
};

} // namespace policy_detail

inline policy::parse_result policy::parse(std::string_view text, const policy_limits& limits) {
  parse_result out;
  policy_detail::parser p(limits, out);
  if (text.size() > limits.max_file_size) {
    p.error(1, 1,
            "the file is larger than " + std::to_string(limits.max_file_size) +
                " bytes: not a rules file?");
    return out;
  }
  std::vector<policy_rule> rules;
  std::optional<policy_rule> fallback;
  std::size_t number = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    const auto nl = text.find('\n', start);
    std::string_view line =
        text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1); // CRLF files
    p.line(++number, line, rules, fallback);
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  p.finish(rules, fallback, number);
  if (!out.errors.empty()) return out;
  policy result;
  result.rules_ = std::move(rules);
  result.default_ = std::move(*fallback);
  out.value = std::move(result);
  return out;
}

} // namespace detour::cli
