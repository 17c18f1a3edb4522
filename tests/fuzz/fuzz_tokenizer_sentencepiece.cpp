// Fuzzes the SentencePiece tokenizer.model loader (core/tokenizer/sentencepiece_model.cpp's
// protobuf reader and sentencepiece_tokenizer.cpp's checks), then encodes and decodes with what
// it accepted.
#include "core/tokenizer/sentencepiece_tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  calq::fuzz::expect_only_calq_errors([&] {
    const calq::core::SentencepieceTokenizer tokenizer("fuzz/tokenizer.model",
                                                       calq::fuzz::as_text(data, size));
    calq::fuzz::exercise(tokenizer);
  });
  return 0;
}
