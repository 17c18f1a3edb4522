// Fuzzes the HF tokenizer.json loader (core/tokenizer/bpe_tokenizer.cpp), then encodes and
// decodes with what it accepted. The path's directory does not exist, so no
// tokenizer_config.json is read beside it.
#include <string>

#include "core/tokenizer/bpe_tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  calq::fuzz::expect_only_calq_errors([&] {
    std::string unsupported;
    const auto tokenizer = calq::core::BpeTokenizer::from_tokenizer_json_text(
        calq::fuzz::as_text(data, size), "/nonexistent-calq-fuzz/tokenizer.json", &unsupported);
    if (tokenizer)
      calq::fuzz::exercise(*tokenizer);
  });
  return 0;
}
