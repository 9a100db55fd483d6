// SPDX-License-Identifier: MIT
// Tests of cli/policy.hpp: the rules file of `detour serve --policy`: each clause kind, first
// match wins, the default, and an explanation with line and column for every mistake.
#include "policy.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/generators/catch_generators.hpp>

#include <string>

using detour::cli::policy;
using detour::cli::policy_rule;

namespace {

// A request as g3proxy would send it; the views point at string literals.
detour::north_request request(std::string_view protocol, std::string_view upstream,
                              std::optional<std::string_view> user = std::nullopt,
                              std::string_view client = "192.0.2.10") {
  detour::north_request r;
  r.protocol_name = protocol;
  r.protocol = detour::protocol_from_name(protocol);
  const auto up = detour::parse_upstream(upstream);
  REQUIRE(up);
  r.upstream = *up;
  r.username = user;
  r.client = {*detour::parse_ip(client), 50000};
  r.proxy = {detour::ip_address::v4(192, 0, 2, 1), 3128};
  return r;
}

policy parse_ok(std::string_view text) {
  auto r = policy::parse(text);
  INFO(text);
  for (const auto& e : r.errors) INFO("line " << e.line << ":" << e.column << ": " << e.message);
  REQUIRE(r.errors.empty());
  REQUIRE(r.ok());
  return std::move(*r.value);
}

// The one error a file gives.
detour::cli::policy_issue single_error(std::string_view text) {
  const auto r = policy::parse(text);
  INFO(text);
  REQUIRE_FALSE(r.ok());
  REQUIRE(r.errors.size() == 1);
  return r.errors[0];
}

std::string decided(const policy& p, const detour::north_request& r) {
  const policy_rule& rule = p.decide(r);
  return rule.name + " " + std::string(detour::to_string(rule.decision));
}

} // namespace

TEST_CASE("policy: a file with only a default answers every task with it", "[policy]") {
  const auto p = parse_ok("default block\n");
  CHECK(p.rules().empty());
  CHECK(decided(p, request("http_2", "example.com:443")) == "default block");
  CHECK(decided(p, request("smtp", "192.0.2.5:25", "alice")) == "default block");
  CHECK_FALSE(p.captures_any());
}

TEST_CASE("policy: protocol clauses match the E4 name exactly, any of a list", "[policy][rules]") {
  const auto p = parse_ok("rule mail continue protocol=smtp,imap\n"
                          "rule future bypass protocol=ftp\n"
                          "default block\n");
  CHECK(decided(p, request("smtp", "mail.example.com:25")) == "mail continue");
  CHECK(decided(p, request("imap", "mail.example.com:993")) == "mail continue");
  CHECK(decided(p, request("ftp", "files.example.com:21")) == "future bypass");
  CHECK(decided(p, request("http_2", "www.example.com:443")) == "default block");
  CHECK(decided(p, request("SMTP", "mail.example.com:25")) == "default block");
}

TEST_CASE("policy: host clauses match names exactly or by *.suffix, ignoring case and a final dot",
          "[policy][rules]") {
  const auto p = parse_ok("rule exact block host=Example.COM\n"
                          "rule subdomains bypass host=*.corp.example\n"
                          "default continue\n");
  CHECK(decided(p, request("http_2", "example.com:443")) == "exact block");
  CHECK(decided(p, request("http_2", "EXAMPLE.com.:443")) == "exact block");
  CHECK(decided(p, request("http_2", "www.example.com:443")) == "default continue");
  CHECK(decided(p, request("http_2", "a.corp.example:443")) == "subdomains bypass");
  CHECK(decided(p, request("http_2", "a.b.CORP.example:443")) == "subdomains bypass");
  // The suffix form needs a label before it: the apex and look-alikes are not subdomains.
  CHECK(decided(p, request("http_2", "corp.example:443")) == "default continue");
  CHECK(decided(p, request("http_2", "evilcorp.example:443")) == "default continue");
  // Names never match an upstream given as an address.
  CHECK(decided(p, request("http_2", "192.0.2.7:443")) == "default continue");
}

TEST_CASE("policy: ip clauses match upstream addresses by subnet, never names", "[policy][rules]") {
  const auto p = parse_ok("rule lan bypass ip=10.0.0.0/8,192.168.1.7\n"
                          "rule v6 block ip=2001:db8::/32\n"
                          "rule any4 continue ip=0.0.0.0/0\n"
                          "default block\n");
  CHECK(decided(p, request("http_2", "10.200.3.4:443")) == "lan bypass");
  CHECK(decided(p, request("http_2", "192.168.1.7:443")) == "lan bypass");
  CHECK(decided(p, request("http_2", "192.168.1.8:443")) == "any4 continue");
  CHECK(decided(p, request("imap", "[2001:db8:5::1]:993")) == "v6 block");
  CHECK(decided(p, request("imap", "[2001:db9::1]:993")) == "default block");
  // No name resolution: a name does not match an address clause, even 0.0.0.0/0.
  CHECK(decided(p, request("http_2", "localhost:443")) == "default block");
}

TEST_CASE("policy: port clauses take ports and ranges", "[policy][rules]") {
  const auto p = parse_ok("rule submission continue port=25,465,587\n"
                          "rule high bypass port=8000-8999\n"
                          "default block\n");
  CHECK(decided(p, request("smtp", "mx.example.com:465")) == "submission continue");
  CHECK(decided(p, request("http_2", "a.example.com:8000")) == "high bypass");
  CHECK(decided(p, request("http_2", "a.example.com:8999")) == "high bypass");
  CHECK(decided(p, request("http_2", "a.example.com:9000")) == "default block");
  CHECK(decided(p, request("http_2", "a.example.com:7999")) == "default block");
}

TEST_CASE("policy: user clauses take names, * for any username and - for none", "[policy][rules]") {
  const auto p = parse_ok("rule staff continue user=alice,bob\n"
                          "rule anonymous block user=-\n"
                          "rule others bypass user=*\n"
                          "default block\n");
  CHECK(decided(p, request("http_2", "a.example:443", "alice")) == "staff continue");
  CHECK(decided(p, request("http_2", "a.example:443", "bob")) == "staff continue");
  CHECK(decided(p, request("http_2", "a.example:443", "Alice")) == "others bypass");
  CHECK(decided(p, request("http_2", "a.example:443")) == "anonymous block");
}

TEST_CASE("policy: client clauses match the PROXY source address by subnet", "[policy][rules]") {
  const auto p = parse_ok("rule lab bypass client=198.51.100.0/24,2001:db8:1::/48\n"
                          "default continue\n");
  CHECK(decided(p, request("http_2", "a.example:443", {}, "198.51.100.77")) == "lab bypass");
  CHECK(decided(p, request("http_2", "a.example:443", {}, "2001:db8:1:2::3")) == "lab bypass");
  CHECK(decided(p, request("http_2", "a.example:443", {}, "198.51.101.1")) == "default continue");
  CHECK(decided(p, request("http_2", "a.example:443", {}, "2001:db8:2::3")) == "default continue");
}

TEST_CASE("policy: every clause of a rule must match, and the first matching rule wins",
          "[policy][precedence]") {
  const auto p = parse_ok("# most specific first\n"
                          "rule alice-mail block protocol=smtp user=alice port=25\n"
                          "rule mail continue capture protocol=smtp\n"
                          "rule alice bypass user=alice\n"
                          "rule mail-again block protocol=smtp\n"
                          "default continue\n");
  CHECK(decided(p, request("smtp", "mx.example:25", "alice")) == "alice-mail block");
  // One clause off (the port) and the next rule decides.
  CHECK(decided(p, request("smtp", "mx.example:587", "alice")) == "mail continue");
  CHECK(p.decide(request("smtp", "mx.example:587", "alice")).capture);
  CHECK(decided(p, request("imap", "mx.example:993", "alice")) == "alice bypass");
  // An earlier rule shadows a later one that also matches.
  CHECK(decided(p, request("smtp", "mx.example:25", "bob")) == "mail continue");
  CHECK(decided(p, request("imap", "mx.example:993", "bob")) == "default continue");
  CHECK(p.captures_any());
}

TEST_CASE("policy: the default line may come anywhere and may capture", "[policy][precedence]") {
  const auto p = parse_ok("default continue capture\n"
                          "rule ads block host=ads.example\n");
  CHECK(decided(p, request("http_2", "ads.example:443")) == "ads block");
  CHECK(p.decide(request("http_2", "www.example:443")).capture);
  CHECK(p.fallback().line == 1);
  CHECK(p.rules()[0].line == 2);
}

TEST_CASE("policy: comments, blank lines, tabs and CRLF line ends are fine", "[policy]") {
  const auto p = parse_ok("# a comment\r\n"
                          "\r\n"
                          "rule\tt1\tblock\thost=a.example   # why: it is bad\r\n"
                          "   \t\r\n"
                          "default continue # the rest\r\n");
  REQUIRE(p.rules().size() == 1);
  CHECK(p.rules()[0].hosts == std::vector<std::string>{"a.example"});
  CHECK(decided(p, request("http_2", "a.example:443")) == "t1 block");
}

TEST_CASE("policy: each mistake is explained with its line and column", "[policy][errors]") {
  struct bad {
    std::string_view text;
    std::size_t line, column;
    std::string_view says;
  };
  const auto b = GENERATE(values<bad>({
      {"default continue\nallow everything\n", 2, 1, "starts no known line"},
      {"default continue\nrule x\n", 2, 1, "needs a name and an action"},
      {"default continue\nrule x allow\n", 2, 8, "not an action"},
      {"default continue\nrule x! block\n", 2, 6, "not a rule name"},
      {"default continue\nrule default block\n", 2, 6, "not a rule name"},
      {"default continue\nrule a block\nrule a bypass\n", 3, 6, "already used on line 2"},
      {"default continue\nrule a block hostname=x\n", 2, 14, "unknown clause 'hostname'"},
      {"default continue\nrule a block host\n", 2, 14, "neither a clause"},
      {"default continue\nrule a block host=\n", 2, 14, "has no value"},
      {"default continue\nrule a block host=a,,b\n", 2, 14, "empty value"},
      {"default continue\nrule a block host=a host=b\n", 2, 21, "given twice"},
      {"default continue\nrule a block host=*\n", 2, 14, "leave the host clause out"},
      {"default continue\nrule a block host=a*.b\n", 2, 14, "not a host name"},
      {"default continue\nrule a block host=a..b\n", 2, 14, "not a host name"},
      {"default continue\nrule a block host=10.1.2.3\n", 2, 14, "use ip=10.1.2.3"},
      {"default continue\nrule a block ip=10.0.0.0/33\n", 2, 14, "from 0 to 32"},
      {"default continue\nrule a block ip=2001:db8::/129\n", 2, 14, "from 0 to 128"},
      {"default continue\nrule a block ip=10.0.0.1/8\n", 2, 14, "did you mean 10.0.0.0/8?"},
      {"default continue\nrule a block ip=example.com\n", 2, 14, "not an IPv4 or IPv6"},
      {"default continue\nrule a block client=10.0.0.0/\n", 2, 14, "prefix length"},
      {"default continue\nrule a block port=0\n", 2, 14, "not a port"},
      {"default continue\nrule a block port=65536\n", 2, 14, "not a port"},
      {"default continue\nrule a block port=https\n", 2, 14, "not a port"},
      {"default continue\nrule a block port=90-80\n", 2, 14, "ends before it starts"},
      {"default continue\nrule a block protocol=h/2\n", 2, 14, "protocol name"},
      {"default continue\nrule a block capture\n", 2, 14, "needs the action continue"},
      {"default continue\nrule a continue capture capture\n", 2, 25, "given twice"},
      {"default continue\nrule a block ip=10.0.0.0/8 ip=11.0.0.0/8\n", 2, 28, "given twice"},
      {"default bypass capture\n", 1, 16, "needs the action continue"},
      {"default continue host=a\n", 1, 18, "no clauses"},
      {"default\n", 1, 8, "needs an action"},
      {"default maybe\n", 1, 9, "not an action"},
      {"default continue\ndefault block\n", 2, 1, "second default line (the first is on line 1)"},
      {"rule a block host=x\n", 1, 1, "no default line"},
      {"", 1, 1, "no default line"},
      {"default continue\nrule a block host=a\x01\n", 2, 20, "control character"},
  }));
  const auto e = single_error(b.text);
  INFO(b.text);
  INFO(e.message);
  CHECK(e.line == b.line);
  CHECK(e.column == b.column);
  CHECK(e.message.find(b.says) != std::string::npos);
}

TEST_CASE("policy: all mistakes of a file are reported at once, up to the limit",
          "[policy][errors]") {
  const auto r = policy::parse("rule a nope\nrule b block port=x\nfoo\n");
  REQUIRE(r.errors.size() == 4); // three bad lines and the missing default
  CHECK(r.errors[0].line == 1);
  CHECK(r.errors[1].line == 2);
  CHECK(r.errors[2].line == 3);
  CHECK(r.errors[3].message.find("no default line") != std::string::npos);

  std::string many;
  for (int i = 0; i < 200; ++i) many += "oops\n";
  CHECK(policy::parse(many).errors.size() == detour::cli::policy_limits{}.max_errors);
}

TEST_CASE("policy: the limits refuse oversized files, lines, rules and lists", "[policy][errors]") {
  detour::cli::policy_limits small;
  small.max_file_size = 64;
  small.max_line_length = 40;
  small.max_rules = 2;
  small.max_values = 3;
  CHECK(policy::parse(std::string(65, '#'), small).errors.at(0).message.find("larger than") !=
        std::string::npos);
  CHECK(policy::parse("default continue\n# " + std::string(39, 'x') + "\n", small)
            .errors.at(0)
            .line == 2);
  CHECK(policy::parse("default continue\nrule a block port=1,2,3,4\n", small)
            .errors.at(0)
            .message.find("more than 3 values") != std::string::npos);
  const auto r =
      policy::parse("default continue\nrule a block\nrule b block\nrule c block\n", small);
  REQUIRE_FALSE(r.ok());
  CHECK(r.errors.at(0).line == 4);
}

TEST_CASE("policy: a rule matching every task makes what follows it unused (a warning)",
          "[policy][warnings]") {
  auto r = policy::parse("rule all continue\nrule never block host=a.example\ndefault block\n");
  REQUIRE(r.ok());
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].line == 2);
  CHECK(r.warnings[0].message.find("never used") != std::string::npos);

  r = policy::parse("rule a block host=x.example\nrule all bypass\ndefault block\n");
  REQUIRE(r.ok());
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].line == 3);
  CHECK(r.warnings[0].message.find("the default is never used") != std::string::npos);
}

TEST_CASE("policy: a rule an earlier rule takes every task of is never used (a warning)",
          "[policy][warnings]") {
  const auto r = policy::parse(
      "rule mail   block    host=example.com,b.example.org protocol=smtp,imap\n"
      "rule mail2  continue host=example.com protocol=smtp\n" // within mail
      "rule corp   block    host=*.example.net\n"
      "rule one    continue host=x.example.net,*.y.example.net port=25\n" // within corp
      "rule lan    block    ip=10.0.0.0/8\n"
      "rule lan2   continue ip=10.1.0.0/16 port=25\n" // within lan
      "rule users  block    user=alice,bob port=1-1000\n"
      "rule users2 continue user=alice,carol port=25\n" // carol: not within
      "rule users3 continue user=bob port=25\n"         // within users
      "rule anyone block    user=* client=192.0.2.0/24\n"
      "rule nobody continue user=- client=192.0.2.7\n" // no username: not
      "default continue\n");
  REQUIRE(r.ok());
  std::vector<std::size_t> lines;
  for (const auto& w : r.warnings) {
    lines.push_back(w.line);
    CHECK(w.message.find("is never used") != std::string::npos);
  }
  CHECK(lines == std::vector<std::size_t>{2, 4, 6, 9});
  CHECK(r.warnings.at(0).message.find("rule 'mail' on line 1") != std::string::npos);
}

TEST_CASE("policy: describe() says in words what a rule matches and does", "[policy]") {
  const auto p = parse_ok(
      "rule r continue capture protocol=smtp,imap host=mx.example,*.corp.example ip=10.0.0.0/8 "
      "port=25,8000-8999 user=alice,* client=2001:db8::/32\n"
      "default block\n");
  CHECK(detour::cli::describe(p.rules()[0]) ==
        "protocol smtp|imap, host mx.example|*.corp.example, ip 10.0.0.0/8, port 25|8000-8999, "
        "user alice|* (any username), client 2001:db8::/32 -> continue, capture");
  CHECK(detour::cli::describe(p.fallback()) == "every task -> block");
}
