// Fuzzes parse_hf_config (core/model/model_config.cpp): an HF config.json.
#include "core/model/model_config.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  calq::fuzz::expect_only_calq_errors([&] {
    calq::core::parse_hf_config(calq::fuzz::as_text(data, size), "fuzz/config.json");
  });
  return 0;
}
