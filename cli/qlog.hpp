// SPDX-License-Identifier: MIT
// cli/qlog.hpp: qlog files, one per QUIC connection, for `detour serve --qlog DIR` and
// `detour probe --qlog DIR`. ngtcp2 writes the records (qlog 0.3, JSON-SEQ: every packet sent
// and received with its frames, congestion and RTT updates, the transport parameters); we only
// give them a file. qvis and other qlog viewers read them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>

namespace detour::cli {

/// Makes |dir| ready for qlog files before any connection needs one: creates it when missing,
/// checks that a file can be created in it, and raises the soft limit on open files to the
/// hard one (every open connection keeps its file open). Throws std::runtime_error saying what
/// is wrong, so that a bad --qlog stops the command at once rather than failing per connection.
void prepare_qlog_dir(const std::string& dir);

/// The file name of a connection's qlog: its connection ID in hex, then ".sqlog". The first
/// eight digits are the `conn` field of serve's log lines.
std::string qlog_file_name(std::span<const std::uint8_t> connection_id);

/// Connections whose qlog could not be made or ended early, counted where no log is at hand
/// (`detour probe` reports them once, at the end).
struct qlog_trouble {
  std::uint64_t connections = 0;
  std::string first_error;
  void note(std::string error) {
    if (connections++ == 0) first_error = std::move(error);
  }
};

/// One connection's qlog. ngtcp2 calls its qlog_write callback with each record and, from
/// ngtcp2_conn_del, once more with NGTCP2_QLOG_WRITE_FLAG_FIN: pass that on as |last|.
class qlog_file {
public:
  qlog_file() = default;
  ~qlog_file() { close(); }
  qlog_file(const qlog_file&) = delete;
  qlog_file& operator=(const qlog_file&) = delete;

  /// Creates |dir|/|name| (an existing file is not overwritten). Returns an empty string, or
  /// what went wrong.
  std::string open(const std::string& dir, const std::string& name);
  /// Appends a record; |last| also closes the file. After a failed write (a full disk, say)
  /// nothing more is written, since a qlog with a hole would mislead: the file ends early,
  /// perhaps inside a record, and complete() turns false.
  void write(const void* data, std::size_t length, bool last) noexcept;
  bool is_open() const noexcept { return file_ != nullptr; }
  /// False once a write or the final flush failed.
  bool complete() const noexcept { return !failed_; }
  /// The file open() made, or tried to.
  const std::string& path() const noexcept { return path_; }

private:
  void close() noexcept;

  std::FILE* file_ = nullptr;
  bool failed_ = false;
  std::string path_;
};

} // namespace detour::cli
