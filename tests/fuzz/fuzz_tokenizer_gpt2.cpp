// Fuzzes the GPT-2 vocab.json + merges.txt loader (core/tokenizer/bpe_tokenizer.cpp's
// from_vocab_and_merges_text), then encodes and decodes with what it accepted.
//
// One input holds both files: vocab.json's bytes, one NUL byte, merges.txt's bytes. Without a NUL
// the whole input is vocab.json and merges.txt is empty. (JSON text cannot hold a raw NUL, so the
// first one always ends the vocab.) The paths' directory does not exist, so no
// tokenizer_config.json is read beside them.
#include <string_view>

#include "core/tokenizer/bpe_tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input = calq::fuzz::as_text(data, size);
  const size_t nul = input.find('\0');
  const std::string_view vocab = input.substr(0, nul);
  const std::string_view merges =
      nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);
  calq::fuzz::expect_only_calq_errors([&] {
    const auto tokenizer = calq::core::BpeTokenizer::from_vocab_and_merges_text(
        vocab, merges, "/nonexistent-calq-fuzz/vocab.json", "/nonexistent-calq-fuzz/merges.txt");
    calq::fuzz::exercise(*tokenizer);
  });
  return 0;
}
