// SPDX-License-Identifier: MIT
// tests/support/vectors.hpp: loads the annotated vectors of tests/vectors/ (written by
// tests/vectors/generate.py): hex files (.hex, one field per line) and escaped text files (.ws,
// C escapes, the file's own newlines not part of the data); and copies bytes into
// exactly-sized heap buffers, so that AddressSanitizer reports any read past the end.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace detour::test {

/// Bytes in a heap block of exactly their size (ASan catches a read of one byte more).
class exact_bytes {
public:
  exact_bytes() = default;
  explicit exact_bytes(std::span<const std::uint8_t> bytes)
      : data_(new std::uint8_t[bytes.empty() ? 1 : bytes.size()]), size_(bytes.size()) {
    std::copy(bytes.begin(), bytes.end(), data_.get());
  }
  std::span<const std::uint8_t> span() const noexcept { return {data_.get(), size_}; }
  operator std::span<const std::uint8_t>() const noexcept { return span(); }
  std::size_t size() const noexcept { return size_; }

private:
  std::unique_ptr<std::uint8_t[]> data_;
  std::size_t size_ = 0;
};

/// One annotated vector file.
struct vector_file {
  std::string name;                          ///< file name without ".hex"
  std::string title;                         ///< first comment line
  std::string expect;                        ///< "complete 97", "error bad_version 12"
  std::string detour;                        ///< "north", "south", "error tlv_bad_size 28" or ""
  std::map<std::string, std::string> fields; ///< "# field: name = value" lines
  std::vector<std::uint8_t> bytes;           ///< every byte of the file (header, then payload)
};

/// "\r\n\x41\\" to bytes.
inline void unescape_into(const std::string& line, std::vector<std::uint8_t>& out) {
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '\\' || i + 1 == line.size()) {
      out.push_back(static_cast<std::uint8_t>(line[i]));
      continue;
    }
    const char c = line[++i];
    if (c == 'r')
      out.push_back('\r');
    else if (c == 'n')
      out.push_back('\n');
    else if (c == 'x') {
      out.push_back(static_cast<std::uint8_t>(std::stoul(line.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else
      out.push_back(static_cast<std::uint8_t>(c));
  }
}

inline std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

inline vector_file load_vector(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  vector_file v;
  v.name = path.stem().string();
  const bool escaped_text = path.extension() == ".ws";
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    if (escaped_text && line.rfind("#", 0) != 0) {
      unescape_into(line, v.bytes);
      continue;
    }
    const auto hash = line.find('#');
    std::string comment = hash == std::string::npos ? "" : trim(line.substr(hash + 1));
    const std::string data = trim(line.substr(0, hash));
    if (data.empty() && !comment.empty()) {
      if (first)
        v.title = comment;
      else if (comment.rfind("expect:", 0) == 0)
        v.expect = trim(comment.substr(7));
      else if (comment.rfind("detour:", 0) == 0)
        v.detour = trim(comment.substr(7));
      else if (comment.rfind("field:", 0) == 0) {
        const std::string f = comment.substr(6);
        const auto eq = f.find('=');
        v.fields[trim(f.substr(0, eq))] = trim(f.substr(eq + 1));
      }
      first = false;
      continue;
    }
    std::istringstream hex(data);
    std::string token;
    while (hex >> token)
      v.bytes.push_back(static_cast<std::uint8_t>(std::stoul(token, nullptr, 16)));
  }
  return v;
}

/// Every vector under tests/vectors/<dir>, sorted by name.
inline std::vector<vector_file> load_vectors(const std::string& dir) {
  std::vector<vector_file> out;
  for (const auto& e :
       std::filesystem::directory_iterator(std::filesystem::path(DETOUR_TEST_VECTORS_DIR) / dir))
    if (e.path().extension() == ".hex" || e.path().extension() == ".ws")
      out.push_back(load_vector(e.path()));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  if (out.empty()) throw std::runtime_error("no vectors in " + dir);
  return out;
}

/// Splits "error bad_version 12" into words.
inline std::vector<std::string> words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

} // namespace detour::test
