// What every fuzz target shares: the input as text, and the contract under test — a parser may
// throw calq::Error (bad input, said in a sentence) and nothing else. Any other exception,
// crash, leak or sanitizer report is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/tokenizer/chunked_encoding.h"
#include "core/tokenizer/tokenizer.h"

namespace calq::fuzz {

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `parse`; a calq::Error is the expected way to refuse input and is swallowed.
template <typename Parse>
void expect_only_calq_errors(Parse&& parse) {
  try {
    parse();
  } catch (const calq::Error&) {
  }
}

// A tokenizer that loaded must also encode and decode without crashing: the loader's checks are
// what keep encode's table lookups in range.
inline void exercise(const core::Tokenizer& tokenizer) {
  constexpr std::string_view kText = "Hello, world!\n  \t<s> caf\xc3\xa9 \xe2\x98\x83 123 \xff";
  const std::vector<int32_t> ids = tokenizer.encode(kText, /*add_bos=*/true);
  (void)tokenizer.decode(ids);
  // Lazy evaluation tokenizes in chunks cut at the tokenizer's split points; with tiny chunks
  // (many cuts) the ids must still be exactly the whole text's (core/tokenizer/chunked_encoding.h).
  for (size_t chunk : {size_t{1}, size_t{7}}) {
    if (core::encode_prefix(tokenizer, kText, /*add_bos=*/true, 0, chunk) != ids) std::abort();
  }
  if (tokenizer.vocab_size() > 0)
    (void)tokenizer.decode({0, static_cast<int32_t>(tokenizer.vocab_size() - 1)});
}

}  // namespace calq::fuzz
