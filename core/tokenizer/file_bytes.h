// Whole-file reads for the tokenizer loaders, which all parse small files (< 20 MB) in memory and
// must name the file in every error.
#pragma once

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "core/error.h"

namespace calq::core {

inline std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CALQ_CHECK(in.good(), "{}: cannot open ({}); expected a readable tokenizer file", path,
             std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CALQ_CHECK(!in.bad(), "{}: read error ({})", path, std::strerror(errno));
  return bytes;
}

}  // namespace calq::core
