#include "core/tokenizer/chunked_encoding.h"

#include <algorithm>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"

namespace calq::core {

std::vector<int32_t> encode_prefix(const Tokenizer& tokenizer, std::string_view text, bool add_bos,
                                   size_t min_tokens, size_t chunk_bytes) {
  CALQ_ASSERT(chunk_bytes > 0, "encode_prefix: chunk_bytes must be positive");
  std::vector<int32_t> tokens;
  size_t begin = 0;
  while (begin < text.size() && (min_tokens == 0 || tokens.size() < min_tokens)) {
    const size_t want = std::min(text.size(), begin + chunk_bytes);
    const size_t end = want == text.size() ? want : tokenizer.next_split_point(text, want);
    CALQ_ASSERT(end > begin && end <= text.size(), "encode_prefix: split point {} after {}", end,
                begin);
    const std::string_view chunk = text.substr(begin, end - begin);
    const std::vector<int32_t> ids =
        begin == 0 ? tokenizer.encode(chunk, add_bos) : tokenizer.encode_continuation(chunk);
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    begin = end;
  }
  if (text.empty())  // encode("") may still hold the BOS
    tokens = tokenizer.encode(text, add_bos);
  return tokens;
}

}  // namespace calq::core
