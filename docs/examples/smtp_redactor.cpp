// SPDX-License-Identifier: MIT
// docs/examples/smtp_redactor.cpp: a custom detour server in one source file. It is
// `detour serve` (every option: --policy, --audit, --capture, --metrics, certificates, signals)
// plus an inspection hook (detour/io/inspect.hpp) that masks payment card numbers in the
// messages of SMTP tasks (RFC 5321 DATA) before they reach the mail server, a typical data loss
// prevention rule. Built by CMake as `smtp-redactor`; docs/library.md explains the hook.
#include "hook.hpp" // detour::cli::run_serve, serve_extensions, make_task_hook

#include <detour/io/inspect.hpp>
#include <detour/request.hpp>
#include <detour/session.hpp>

#include <fmt/core.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace {

using detour::io::chunk;
using detour::io::verdict;

// Card numbers: 13 to 19 digits, maybe grouped by single spaces or dashes, whose Luhn check
// digit is right (ISO/IEC 7812). All digits but the last four become 'X', so the message keeps
// its length and the number its shape: "4111 1111 1111 1111" -> "XXXX XXXX XXXX 1111".
constexpr std::size_t min_digits = 13;
constexpr std::size_t max_digits = 19;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Masks `run` (digits and single separators, starting and ending with a digit) when it is a
// card number; returns whether it was.
bool mask_if_card_number(std::string& run) {
  std::size_t digits = 0;
  int sum = 0;
  for (std::size_t i = run.size(); i-- > 0;) {
    if (!is_digit(run[i])) continue;
    int d = run[i] - '0';
    if (digits % 2 == 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
    ++digits;
  }
  if (digits < min_digits || digits > max_digits || sum % 10 != 0) return false;
  std::size_t seen = 0;
  for (char& c : run)
    if (is_digit(c) && ++seen <= digits - 4) c = 'X';
  return true;
}

// The inspector: the library's contract (one copy per relay direction, so its state is per
// direction; the counter is shared by all tasks, and atomic: with --workers, relays run on
// several threads at once). It streams: outside a message every byte goes
// on at once; inside one only a run of digits that may still grow into a card number waits, at
// most ~40 bytes and only until the next other byte, so no exchange ever waits on it.
struct card_redactor {
  std::atomic<std::uint64_t>* masked = nullptr;
  std::string out{};       // what this call forwards (valid until the next call)
  std::string run{};       // digits (and separators) held back while they may be a card number
  std::string head{};      // the first bytes of the current line: "DATA\r\n"? ".\r\n"?
  bool in_message = false; // after the client's DATA line, until the "." line
  bool long_run = false;   // inside a digit run already too long for a card number

  verdict operator()(const chunk<detour::task_request>& c) {
    // Only the client's side of SMTP tasks: everything else passes untouched (zero copy).
    if (!c.task || c.task->request.protocol != detour::protocol_kind::smtp ||
        c.side != detour::stream_kind::north)
      return verdict::pass();
    out.clear();
    for (const std::uint8_t byte : c.bytes) take(static_cast<char>(byte));
    if (c.last) flush_run();
    return verdict::replace({reinterpret_cast<const std::uint8_t*>(out.data()), out.size()});
  }

  void take(char b) {
    if (in_message && !long_run &&
        (is_digit(b) || ((b == ' ' || b == '-') && !run.empty() && is_digit(run.back())))) {
      run += b;
      if (std::count_if(run.begin(), run.end(), is_digit) > static_cast<long>(max_digits)) {
        long_run = true; // more digits than any card number: not one
        out += run;
        run.clear();
      }
    } else {
      if (!is_digit(b) && b != ' ' && b != '-') long_run = false;
      flush_run();
      out += b;
    }
    if (head.size() < 6) head += b;
    if (b != '\n') return;
    // A line ended: DATA starts a message (RFC 5321 §4.1.1.4), a lone "." ends it.
    if (!in_message && (head == "DATA\r\n" || head == "data\r\n")) {
      in_message = true;
    } else if (in_message && head == ".\r\n") {
      in_message = false;
    }
    head.clear();
  }

  void flush_run() {
    if (run.empty()) return;
    // A trailing separator belongs to what follows, not to the number.
    std::string tail;
    while (!run.empty() && !is_digit(run.back())) {
      tail.insert(tail.begin(), run.back());
      run.pop_back();
    }
    if (mask_if_card_number(run)) masked->fetch_add(1, std::memory_order_relaxed);
    out += run;
    out += tail;
    run.clear();
  }
};

} // namespace

int main(int argc, char** argv) {
  std::atomic<std::uint64_t> masked{0};
  detour::cli::serve_extensions extensions;
  extensions.name = "smtp-redactor";
  extensions.hook = detour::cli::make_task_hook(card_redactor{&masked});
  const int status = detour::cli::run_serve(
      {argv + 1, static_cast<std::size_t>(argc > 0 ? argc - 1 : 0)}, extensions);
  fmt::print(stderr, "smtp-redactor: {} card number(s) masked\n", masked.load());
  return status;
}
