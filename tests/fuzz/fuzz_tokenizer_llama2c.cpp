// Fuzzes the llama2.c tokenizer.bin loader (core/tokenizer/llama2c_tokenizer.cpp), then encodes
// and decodes with what it accepted.
#include "core/tokenizer/llama2c_tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  calq::fuzz::expect_only_calq_errors([&] {
    const calq::core::Llama2cTokenizer tokenizer("fuzz/tok512.bin",
                                                 calq::fuzz::as_text(data, size));
    calq::fuzz::exercise(tokenizer);
  });
  return 0;
}
