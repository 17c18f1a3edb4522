// Fuzzes the output-path rules as a property (tests/fuzz/output_path_property.h says which).
#include "tests/fuzz/output_path_property.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  calq::fuzz::check_output_path_property(data, size);
  return 0;
}
