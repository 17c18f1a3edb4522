// GPT-2's byte-level text handling for the BPE tokenizer: the bytes_to_unicode symbols that
// vocab.json / merges.txt are written in, and the pre-tokenizer regex, hand-written because
// std::regex has no \p{L}; the Unicode classes come from ICU.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace calq::core {

/// A vocab.json / merges.txt symbol string ("Ġthe") as the bytes it stands for (" the");
/// nullopt when it holds a character outside GPT-2's bytes_to_unicode map.
std::optional<std::string> byte_level_to_bytes(std::string_view symbols);

/// The vocab.json symbol (UTF-8) that stands for one byte: 0x20 -> "Ġ", 'a' -> "a".
std::string byte_to_byte_level(unsigned char byte);

/// GPT-2's pre-tokenizer split of `text` into words (views into `text`), the regex
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// with \s = Unicode White_Space (as the Rust regex of HF tokenizers and tiktoken). Malformed
/// UTF-8 bytes count as [^\s\p{L}\p{N}], so every byte lands in exactly one word.
std::vector<std::string_view> split_gpt2_words(std::string_view text);

}  // namespace calq::core
