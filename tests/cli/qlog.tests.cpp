// SPDX-License-Identifier: MIT
// qlog files (cli/qlog.hpp): the directory check, file names, records written and closed, and a
// write that fails part way.
#include "qlog.hpp"

#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_string.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>

using Catch::Matchers::ContainsSubstring;
using detour::cli::prepare_qlog_dir;
using detour::cli::qlog_file;
using detour::cli::qlog_file_name;

namespace {

// A fresh directory, removed with its contents at the end of the test.
struct temp_dir {
  std::filesystem::path path;
  temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "detour-qlog-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::string contents(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

} // namespace

TEST_CASE("qlog file names are the connection ID in lower-case hex") {
  const std::array<std::uint8_t, 5> id{0x00, 0xf2, 0x27, 0x96, 0xab};
  CHECK(qlog_file_name(id) == "00f22796ab.sqlog");
  CHECK(qlog_file_name({}) == ".sqlog");
}

TEST_CASE("prepare_qlog_dir creates missing folders and refuses what cannot hold files") {
  temp_dir t;
  const auto nested = t.path / "a" / "b";
  REQUIRE_NOTHROW(prepare_qlog_dir(nested.string()));
  CHECK(std::filesystem::is_directory(nested));
  // Its check file is gone again.
  CHECK(std::filesystem::is_empty(nested));
  // Twice is fine: an existing directory is used as it is.
  CHECK_NOTHROW(prepare_qlog_dir(nested.string()));

  const auto file = t.path / "plain";
  std::ofstream(file) << "x";
  CHECK_THROWS_WITH(prepare_qlog_dir(file.string()), ContainsSubstring("is not a directory"));
  CHECK_THROWS_WITH(prepare_qlog_dir((file / "sub").string()),
                    ContainsSubstring("--qlog") && ContainsSubstring("cannot create it"));
  CHECK_THROWS_WITH(prepare_qlog_dir(""), ContainsSubstring("wants a directory"));
  // /proc refuses new folders even to root.
  CHECK_THROWS_WITH(prepare_qlog_dir("/proc/detour-qlog-test"), ContainsSubstring("--qlog"));
}

TEST_CASE("prepare_qlog_dir raises the open file limit to the hard one") {
  temp_dir t;
  rlimit before{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &before) == 0);
  // Linux never grants an unlimited soft limit on open files (nr_open caps it).
  if (before.rlim_max == RLIM_INFINITY) SKIP("the hard limit on open files is unlimited");
  if (before.rlim_cur == before.rlim_max) {
    // Lower it first (a process may always lower its soft limit) so the raise shows.
    rlimit lower = before;
    lower.rlim_cur = before.rlim_max > 512 ? 512 : before.rlim_max;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lower) == 0);
  }
  prepare_qlog_dir(t.path.string());
  rlimit after{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &after) == 0);
  CHECK(after.rlim_cur == after.rlim_max);
}

TEST_CASE("a qlog file gets every record and is closed by the last") {
  temp_dir t;
  qlog_file q;
  CHECK_FALSE(q.is_open());
  REQUIRE(q.open(t.path.string(), "conn.sqlog").empty());
  CHECK(q.is_open());
  CHECK(q.path() == (t.path / "conn.sqlog").string());
  const std::string a = "\x1e{\"qlog_format\":\"JSON-SEQ\"}\n";
  const std::string b = "\x1e{\"time\":0,\"name\":\"transport:packet_sent\"}\n";
  q.write(a.data(), a.size(), false);
  q.write(b.data(), b.size(), false);
  // ngtcp2's last call carries no bytes, only the flag.
  const std::uint8_t none = 0;
  q.write(&none, 0, true);
  CHECK_FALSE(q.is_open());
  CHECK(q.complete());
  CHECK(contents(t.path / "conn.sqlog") == a + b);
  // Readable by its owner only (it holds stateless reset tokens).
  CHECK(std::filesystem::status(t.path / "conn.sqlog").permissions() ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
  // Writes after the end go nowhere.
  q.write(a.data(), a.size(), false);
  CHECK(contents(t.path / "conn.sqlog") == a + b);
}

TEST_CASE("a qlog file never replaces an existing file") {
  temp_dir t;
  std::ofstream(t.path / "taken.sqlog") << "keep";
  qlog_file q;
  const std::string error = q.open(t.path.string(), "taken.sqlog");
  CHECK_THAT(error, ContainsSubstring("taken.sqlog") && ContainsSubstring("exists"));
  CHECK_FALSE(q.is_open());
  CHECK(contents(t.path / "taken.sqlog") == "keep");
}

TEST_CASE("a qlog file whose write fails stops writing and says it is incomplete") {
  temp_dir t;
  // In a child process: a file size limit (RLIMIT_FSIZE) makes writes past 4 KiB fail with
  // EFBIG, as a full disk would, without touching this process's limits.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::signal(SIGXFSZ, SIG_IGN);
    const rlimit small{4096, 4096};
    if (::setrlimit(RLIMIT_FSIZE, &small) != 0) ::_exit(10);
    qlog_file q;
    if (!q.open(t.path.string(), "big.sqlog").empty()) ::_exit(11);
    const std::string record = "\x1e" + std::string(999, 'r') + "\n";
    for (int i = 0; i < 20; ++i) q.write(record.data(), record.size(), false);
    q.write(record.data(), 0, true);
    if (q.is_open()) ::_exit(12);
    // The failure shows at the latest once the file is closed (stdio may hold the bytes).
    ::_exit(q.complete() ? 13 : 0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // Nothing past the limit; the file holds what fit.
  CHECK(std::filesystem::file_size(t.path / "big.sqlog") <= 4096);
}
