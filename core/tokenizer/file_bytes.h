// Whole-file reads for the tokenizer loaders, which all parse small files in memory and must
// name the file in every error.
#pragma once

#include <string>

#include "core/io/small_file.h"

namespace calq::core {

inline std::string read_file_bytes(const std::string& path) {
  return read_small_file(path, "a readable tokenizer file");
}

}  // namespace calq::core
