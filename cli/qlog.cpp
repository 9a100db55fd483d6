// SPDX-License-Identifier: MIT
// cli/qlog.cpp: see qlog.hpp.
#include "qlog.hpp"

#include "hex_dump.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace detour::cli {

void prepare_qlog_dir(const std::string& dir) {
  if (dir.empty()) throw std::runtime_error("--qlog wants a directory");
  std::error_code ec;
  if (std::filesystem::exists(dir, ec) && !std::filesystem::is_directory(dir, ec))
    throw std::runtime_error("--qlog " + dir + ": exists and is not a directory");
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("--qlog " + dir + ": cannot create it: " + ec.message());
  if (!std::filesystem::is_directory(dir, ec))
    throw std::runtime_error("--qlog " + dir + ": not a directory");

  // A file made and removed again: a directory we may not write to fails here, not at the
  // first connection.
  const std::string probe = (std::filesystem::path(dir) / ".detour-qlog-check").string();
  std::FILE* f = std::fopen(probe.c_str(), "w");
  if (!f) {
    throw std::runtime_error("--qlog " + dir +
                             ": cannot create files in it: " + std::strerror(errno));
  }
  std::fclose(f);
  std::remove(probe.c_str());

  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files); // best effort: opening a file later says if it fails
  }
}

std::string qlog_file_name(std::span<const std::uint8_t> connection_id) {
  return hex_bytes(connection_id) + ".sqlog";
}

std::string qlog_file::open(const std::string& dir, const std::string& name) {
  close();
  failed_ = false;
  path_ = (std::filesystem::path(dir) / name).string();
  // Owner only: a qlog holds the connection's stateless reset tokens, with which anyone who
  // reads them could end the connection.
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return path_ + ": " + std::strerror(errno);
  file_ = ::fdopen(fd, "w");
  if (!file_) {
    const int error = errno;
    ::close(fd);
    return path_ + ": " + std::strerror(error);
  }
  return {};
}

void qlog_file::write(const void* data, std::size_t length, bool last) noexcept {
  if (!file_) return;
  if (!failed_ && length > 0 && std::fwrite(data, 1, length, file_) != length) failed_ = true;
  if (last) close();
}

void qlog_file::close() noexcept {
  if (!file_) return;
  if (std::fclose(file_) != 0) failed_ = true;
  file_ = nullptr;
}

} // namespace detour::cli
