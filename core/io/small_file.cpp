#include "core/io/small_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace calq::core {

namespace fs = std::filesystem;

std::string describe_non_regular(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);  // follows symlinks: /dev/zero links too
  switch (status.type()) {
    case fs::file_type::regular: return "";
    case fs::file_type::not_found: return ec && ec != std::errc::no_such_file_or_directory
                                              ? "unreadable (" + ec.message() + ")"
                                              : "missing";
    case fs::file_type::directory: return "a directory";
    case fs::file_type::fifo: return "a FIFO";
    case fs::file_type::character: return "a character device";
    case fs::file_type::block: return "a block device";
    case fs::file_type::socket: return "a socket";
    default: return ec ? "unreadable (" + ec.message() + ")" : "not a regular file";
  }
}

std::string read_small_file(const std::string& path, std::string_view expected,
                            std::uint64_t max_bytes) {
  const std::string kind = describe_non_regular(path);
  CALQ_CHECK(kind.empty(), "{}: {}; expected {} (a regular file)", path, kind, expected);
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(path, ec);
  CALQ_CHECK(!ec, "{}: cannot stat ({}); expected {}", path, ec.message(), expected);
  CALQ_CHECK(size <= max_bytes, "{}: {} bytes; expected {} of at most {} bytes", path, size,
             expected, max_bytes);
  std::ifstream in(path, std::ios::binary);
  CALQ_CHECK(in.good(), "{}: cannot open ({}); expected {}", path, std::strerror(errno),
             expected);
  std::string bytes;
  bytes.reserve(static_cast<std::size_t>(size));
  bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  CALQ_CHECK(!in.bad(), "{}: read error ({}); expected {}", path, std::strerror(errno), expected);
  CALQ_CHECK(bytes.size() <= max_bytes, "{}: grew past {} bytes while read; expected {}", path,
             max_bytes, expected);
  return bytes;
}

}  // namespace calq::core
