// Fuzzes parse_safetensors_header (core/io/safetensors.cpp) on whole files in memory, and checks
// what an accepted header promises: every tensor's bytes lie inside the file.
#include <cstdlib>

#include "core/io/safetensors.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  calq::fuzz::expect_only_calq_errors([&] {
    const calq::core::SafetensorsHeader header =
        calq::core::parse_safetensors_header(data, size, "fuzz.safetensors");
    for (const auto& [name, info] : header.tensors) {
      if (info.begin > info.end || header.data_start + info.end > size)
        std::abort();  // accepted a range outside the file: load() would read out of bounds
    }
  });
  return 0;
}
