// Bounded JSON for files calq did not write (config.json, tokenizer.json, safetensors headers
// and indexes, quantization configs, reports read back): a nesting-depth limit while parsing and
// a bounded quote of any value for error messages. nlohmann's parser is iterative, but its
// dump() and comparisons recurse, so an unbounded depth (100 000 levels of "[") overflows the
// stack as soon as a message quotes the value (docs/robustness.md "Deep JSON").
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace calq::core {

/// Deepest nesting accepted. Real files stay far below it: HF tokenizer.json nests about 6
/// levels, config.json 3-4, a compressed-tensors quantization_config 5.
inline constexpr int kMaxJsonDepth = 64;

struct JsonReadOptions {
  std::string_view what = "file";      ///< "header", "index", ... used in the message
  std::string_view expected = "JSON";  ///< what a good file holds, after "; expected"
  bool reject_duplicate_keys = false;  ///< serde (the safetensors reference) refuses them
};

/// Parses `text` read from `path`; throws calq::Error naming `path` for invalid JSON, nesting
/// deeper than kMaxJsonDepth, or (when asked) a repeated key in any object.
nlohmann::json parse_json_bounded(std::string_view text, const std::string& path,
                                  const JsonReadOptions& options = {});

/// parse_json_bounded of a whole file (read_small_file: a regular file of bounded size).
nlohmann::json read_json_file(const std::string& path, const JsonReadOptions& options = {});

/// At most `max_chars` characters of `value` as compact JSON, ASCII-only (control and
/// non-ASCII bytes escaped, invalid UTF-8 replaced), "..." marking a cut. Never recurses deeper
/// than kMaxJsonDepth, never serialises more than it shows: safe on any value.
std::string quote_json(const nlohmann::json& value, std::size_t max_chars = 80);

/// A string from a file, JSON-quoted the same way (for names: tensor keys, tokens).
std::string quote_string(std::string_view text, std::size_t max_chars = 80);

}  // namespace calq::core
