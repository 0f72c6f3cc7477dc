// Property checks for the fuzz harnesses. A failed check prints what failed and
// aborts, which libFuzzer records as a crash with the input that caused it (and
// the corpus replay of a normal build reports as a failed test).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace tokengate::fuzz {

[[noreturn]] inline void check_failed(const char* expr, const char* file, int line,
                                      std::string_view context) {
  std::fprintf(stderr, "%s:%d: property failed: %s\n", file, line, expr);
  if (!context.empty()) {
    // Printable rendering: the raw input may hold any byte.
    std::fputs("  input: \"", stderr);
    for (const char ch : context) {
      const auto c = static_cast<unsigned char>(ch);
      if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
        std::fputc(c, stderr);
      } else {
        std::fprintf(stderr, "\\x%02X", c);
      }
    }
    std::fputs("\"\n", stderr);
  }
  std::abort();
}

}  // namespace tokengate::fuzz

// FUZZ_CHECK(condition, input): `input` is a string_view shown when it fails.
#define FUZZ_CHECK(cond, input) \
  ((cond) ? static_cast<void>(0) : ::tokengate::fuzz::check_failed(#cond, __FILE__, __LINE__, (input)))
