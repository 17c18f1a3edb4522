// Encoding a large text a chunk at a time, cut at the tokenizer's split points (tokenizer.h),
// so that the result is exactly the whole text's encoding while the tokenizer's working memory
// stays that of one chunk, and a caller that needs only the first N tokens (an evaluation of a
// few windows) tokenizes only about as much text as they take. Used by `calq eval` and
// `calq run`'s eval section.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace calq::core {

class Tokenizer;

/// Text bytes per chunk: large enough that cutting costs nothing, small enough that a
/// tokenizer's per-byte scratch (the llama2.c merge heap: ~100 bytes per byte) stays small.
constexpr size_t kEncodeChunkBytes = size_t{1} << 20;

/// The first tokens of tokenizer.encode(text, add_bos): at least `min_tokens` of them when the
/// text has that many, all of them when `min_tokens` is 0. Chunks end at the first split point
/// at or after `chunk_bytes` past their start (a text without split points is one chunk).
std::vector<int32_t> encode_prefix(const Tokenizer& tokenizer, std::string_view text, bool add_bos,
                                   size_t min_tokens, size_t chunk_bytes = kEncodeChunkBytes);

}  // namespace calq::core
