// Whole-file reads of the small text files calq parses in memory (config.json, tokenizers,
// indexes, adapter configs, reports). The path must name a regular file (not a directory, FIFO
// or device, which would block or never end) no larger than a stated bound, and every error
// names it (docs/robustness.md "Files that are not files").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace calq::core {

/// Files larger than this are refused before any byte is read; the largest real ones
/// (tokenizer.json of a 256k vocabulary) are about 35 MB.
inline constexpr std::uint64_t kMaxSmallFileBytes = std::uint64_t{1} << 30;

/// The bytes of `path`; throws calq::Error "<path>: <problem>; expected <expected>" when it is
/// missing, unreadable, not a regular file or larger than `max_bytes`.
std::string read_small_file(const std::string& path, std::string_view expected,
                            std::uint64_t max_bytes = kMaxSmallFileBytes);

/// The words for what `path` is when it is not a regular file ("a directory", "a FIFO",
/// "a character device", "missing"), or an empty string for a regular file.
std::string describe_non_regular(const std::string& path);

}  // namespace calq::core
