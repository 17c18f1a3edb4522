// Fuzzes parse_safetensors_index (core/io/safetensors.cpp): model.safetensors.index.json text.
#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  calq::fuzz::expect_only_calq_errors([&] {
    calq::core::parse_safetensors_index(calq::fuzz::as_text(data, size),
                                        "fuzz/model.safetensors.index.json");
  });
  return 0;
}
