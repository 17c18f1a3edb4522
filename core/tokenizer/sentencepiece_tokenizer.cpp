#include "core/tokenizer/sentencepiece_tokenizer.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <optional>
#include <queue>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "core/error.h"
#include "core/io/json_text.h"
#include "core/tokenizer/file_bytes.h"
#include "core/tokenizer/sentencepiece_model.h"
#include "core/tokenizer/utf8.h"

namespace calq::core {
namespace {

using PieceType = SentencepieceModel::PieceType;

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581, SentencePiece's "▁"
constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// string_util::OneCharLen: the UTF-8 length announced by a lead byte.
size_t one_char_length(char lead) {
  static constexpr std::array<uint8_t, 16> kLengths = {1, 1, 1, 1, 1, 1, 1, 1,
                                                       1, 1, 1, 1, 2, 2, 3, 4};
  return kLengths[static_cast<unsigned char>(lead) >> 4];
}

std::string byte_piece(unsigned char byte) {
  return fmt::format("<0x{:02X}>", byte);
}

// PieceToByte: "<0x41>" -> 'A'.
std::optional<char> byte_piece_value(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>')
    return std::nullopt;
  int value = 0;
  for (const char c : piece.substr(3, 2)) {
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (digit < 0)
      return std::nullopt;
    value = value * 16 + digit;
  }
  return static_cast<char>(value);
}

}  // namespace

// The vocabulary with SentencePiece's two lookup tables (model_interface.cc InitializePieces):
// merges may only produce normal, user-defined or unused pieces; control, unknown and byte pieces
// are found by PieceToId but never built by merging.
struct SentencepieceTokenizer::Vocab {
  SentencepieceModel model;
  std::unordered_map<std::string_view, int32_t> mergeable;  // views into model.pieces
  std::unordered_map<std::string_view, int32_t> reserved;
  std::vector<std::string_view> user_defined;
  int32_t unk_id = -1;
  std::array<int32_t, 256> byte_ids{};

  PieceType type(int32_t id) const { return model.pieces[static_cast<size_t>(id)].type; }

  // ModelInterface::PieceToId: unknown strings map to <unk>.
  int32_t piece_to_id(std::string_view piece) const {
    if (const auto it = reserved.find(piece); it != reserved.end())
      return it->second;
    if (const auto it = mergeable.find(piece); it != mergeable.end())
      return it->second;
    return unk_id;
  }

  // PrefixMatcher::PrefixMatch: the longest user-defined symbol at `pos`, else one character.
  size_t prefix_match(std::string_view text, size_t pos, bool* found) const {
    size_t longest = 0;
    for (std::string_view symbol : user_defined) {
      if (symbol.size() > longest && text.compare(pos, symbol.size(), symbol) == 0) {
        longest = symbol.size();
      }
    }
    *found = longest > 0;
    if (longest > 0)
      return longest;
    return std::min(text.size() - pos, one_char_length(text[pos]));
  }

  // Normalizer::NormalizePrefix for the identity rule: one code point, a malformed byte
  // becoming U+FFFD.
  std::pair<std::string_view, size_t> normalize_prefix(std::string_view text, size_t pos) const {
    bool found = false;
    if (!user_defined.empty()) {
      const size_t length = prefix_match(text, pos, &found);
      if (found)
        return {text.substr(pos, length), length};
    }
    const Utf8Char c = decode_utf8(text, pos);
    if (!c.valid)
      return {kReplacementChar, 1};
    return {text.substr(pos, c.length), c.length};
  }

  std::vector<std::pair<std::string_view, int32_t>> encode_bpe(std::string_view normalized) const;

  // Words start at each "▁" that follows another character. When no mergeable piece holds a "▁"
  // right after a character other than "▁" (Llama-2 and sotu: "▁▁▁▁" yes, "a▁" no), no merge
  // joins two words, so they encode independently and repeat words come from the cache: the
  // whole-text merge loop takes seconds per MB.
  bool independent_words = false;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<std::pair<uint32_t, int32_t>>> cache;

  void encode_words(std::string_view normalized,
                    std::vector<std::pair<std::string_view, int32_t>>& out) const;

  // Split points (next_split_point): no user-defined symbols (they match across characters).
  bool splittable = false;
  std::array<bool, 128> ascii_piece{};    // the character's normalized form is a mergeable piece
  std::vector<bool> ascii_pair_in_piece;  // [128 * a + b]: a mergeable piece holds a's and b's
                                          // normalized forms side by side
  void find_split_pairs();
};

namespace {

// The ASCII character a normalized unit at `pos` of a piece stands for ("▁" for ' ' when
// whitespace is escaped), and the unit's length; -1 for any other unit.
std::pair<int, size_t> ascii_unit(std::string_view piece, size_t pos, bool escape) {
  if (escape && piece.compare(pos, kSpaceSymbol.size(), kSpaceSymbol) == 0)
    return {' ', kSpaceSymbol.size()};
  const auto c = static_cast<unsigned char>(piece[pos]);
  const size_t length = std::min(piece.size() - pos, one_char_length(piece[pos]));
  if (c >= 128 || (escape && c == ' '))  // an escaped text holds no raw ' '
    return {-1, length};
  return {c, 1};
}

}  // namespace

void SentencepieceTokenizer::Vocab::find_split_pairs() {
  splittable = user_defined.empty();
  if (!splittable)
    return;
  ascii_pair_in_piece.assign(128 * 128, false);
  const bool escape = model.escape_whitespaces;
  for (const auto& [piece, id] : mergeable) {
    int prev = -1;
    for (size_t pos = 0; pos < piece.size();) {
      const auto [unit, length] = ascii_unit(piece, pos, escape);
      if (prev >= 0 && unit >= 0)
        ascii_pair_in_piece[static_cast<size_t>(128 * prev + unit)] = true;
      if (pos == 0 && length == piece.size() && unit >= 0 && piece_to_id(piece) == id)
        ascii_piece[static_cast<size_t>(unit)] = true;
      prev = unit;
      pos += length;
    }
  }
}

SentencepieceTokenizer::SentencepieceTokenizer(const std::string& path)
    : SentencepieceTokenizer(path, read_file_bytes(path)) {}

SentencepieceTokenizer::SentencepieceTokenizer(const std::string& path, std::string_view bytes)
    : path_(path) {
  auto vocab = std::make_unique<Vocab>();
  SentencepieceModel& model = vocab->model;
  model = parse_sentencepiece_model(bytes, path);
  CALQ_CHECK(model.model_type == SentencepieceModel::ModelType::kBpe,
             "{}: SentencePiece model type {} is not supported; expected BPE (2), as Llama and "
             "Mistral tokenizers",
             path, static_cast<int>(model.model_type));
  CALQ_CHECK(model.precompiled_charsmap.empty(),
             "{}: SentencePiece normalizer {} (a precompiled character map) is not "
             "supported; expected the identity normalizer",
             path, quote_string(model.normalizer_name));
  CALQ_CHECK(!model.treat_whitespace_as_suffix,
             "{}: treat_whitespace_as_suffix is not supported; expected a prefix \"▁\"", path);
  for (size_t i = 0; i < model.pieces.size(); ++i) {
    const auto& piece = model.pieces[i];
    const auto id = static_cast<int32_t>(i);
    const bool mergeable = piece.type == PieceType::kNormal ||
                           piece.type == PieceType::kUserDefined ||
                           piece.type == PieceType::kUnused;
    const bool inserted =
        (mergeable ? vocab->mergeable : vocab->reserved).emplace(piece.text, id).second;
    CALQ_CHECK(inserted, "{}: piece {} (id {}) appears twice; expected unique pieces", path,
               quote_string(piece.text), id);
    if (piece.type == PieceType::kUserDefined)
      vocab->user_defined.push_back(piece.text);
    if (piece.type == PieceType::kUnknown) {
      CALQ_CHECK(vocab->unk_id < 0, "{}: two unknown pieces (ids {} and {}); expected one", path,
                 vocab->unk_id, id);
      vocab->unk_id = id;
    }
  }
  CALQ_CHECK(vocab->unk_id >= 0, "{}: no unknown piece; expected one such as <unk>", path);
  vocab->independent_words =
      model.escape_whitespaces &&
      std::none_of(vocab->mergeable.begin(), vocab->mergeable.end(), [](const auto& entry) {
        const std::string_view text = entry.first;
        for (size_t i = text.find(kSpaceSymbol, 1); i != std::string_view::npos;
             i = text.find(kSpaceSymbol, i + 1)) {
          if (i < kSpaceSymbol.size() ||
              text.compare(i - kSpaceSymbol.size(), kSpaceSymbol.size(), kSpaceSymbol) != 0) {
            return true;
          }
        }
        return false;
      });
  for (int b = 0; b < 256; ++b) {
    vocab->byte_ids[static_cast<size_t>(b)] =
        vocab->piece_to_id(byte_piece(static_cast<unsigned char>(b)));
  }
  // SentencePieceProcessor::bos_id / eos_id: the named piece, if it is a control piece.
  const auto control_id = [&](const std::string& piece) -> std::optional<int32_t> {
    const int32_t id = vocab->piece_to_id(piece);
    if (vocab->type(id) != PieceType::kControl)
      return std::nullopt;
    return id;
  };
  bos_id_ = control_id(model.bos_piece);
  eos_id_ = control_id(model.eos_piece);
  vocab->find_split_pairs();
  vocab_ = std::move(vocab);
}

SentencepieceTokenizer::~SentencepieceTokenizer() = default;

int64_t SentencepieceTokenizer::vocab_size() const {
  return static_cast<int64_t>(vocab_->model.pieces.size());
}

// normalizer.cc Normalizer::Normalize without the offsets.
std::string SentencepieceTokenizer::normalize(std::string_view text) const {
  return normalize(text, vocab_->model.add_dummy_prefix);
}

std::string SentencepieceTokenizer::normalize(std::string_view text, bool dummy_prefix) const {
  return normalize(text, dummy_prefix, vocab_->model.remove_extra_whitespaces);
}

std::string SentencepieceTokenizer::normalize(std::string_view text, bool dummy_prefix,
                                              bool remove_extra_whitespaces) const {
  const SentencepieceModel& spec = vocab_->model;
  const bool collapse = remove_extra_whitespaces;
  std::string out;
  size_t pos = 0;
  if (collapse) {
    while (pos < text.size()) {
      const auto [piece, length] = vocab_->normalize_prefix(text, pos);
      if (piece != " ")
        break;
      pos += length;
    }
  }
  if (pos == text.size())
    return out;
  out.reserve((text.size() - pos) * 3 / 2 + 3);
  const std::string_view space = spec.escape_whitespaces ? kSpaceSymbol : " ";
  if (dummy_prefix)
    out += space;
  bool is_prev_space = collapse;
  while (pos < text.size()) {
    auto [piece, length] = vocab_->normalize_prefix(text, pos);
    while (is_prev_space && !piece.empty() && piece.front() == ' ')
      piece.remove_prefix(1);
    if (!piece.empty()) {
      for (const char c : piece) {
        if (c == ' ') {
          out += space;
        } else {
          out += c;
        }
      }
      is_prev_space = piece.back() == ' ';
    }
    pos += length;
    if (!collapse)
      is_prev_space = false;
  }
  if (collapse) {
    while (out.size() >= space.size() &&
           out.compare(out.size() - space.size(), space.size(), space) == 0) {
      out.resize(out.size() - space.size());
    }
  }
  return out;
}

// bpe_model.cc Model::Encode: merge the adjacent pair whose joined piece scores highest (leftmost
// on ties) until none joins into a mergeable piece, then split pieces of type UNUSED back into
// the pieces they were merged from. Returns (piece, id) with pieces viewing `normalized`.
std::vector<std::pair<std::string_view, int32_t>> SentencepieceTokenizer::Vocab::encode_bpe(
    std::string_view normalized) const {
  struct Symbol {
    int prev;
    int next;
    bool freeze;  // user-defined symbols never merge
    std::string_view piece;
  };
  struct Pair {
    float score;
    int left;
    int right;
    size_t size;
  };
  const auto worse = [](const Pair& a, const Pair& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < normalized.size();) {
    Symbol s{};
    const size_t length = prefix_match(normalized, pos, &s.freeze);
    s.piece = normalized.substr(pos, length);
    s.prev = static_cast<int>(symbols.size()) - 1;
    pos += length;
    s.next = pos < normalized.size() ? static_cast<int>(symbols.size()) + 1 : -1;
    symbols.push_back(s);
  }
  std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> agenda(worse);
  std::unordered_map<std::string_view, std::pair<std::string_view, std::string_view>> rev_merge;
  const auto maybe_add_pair = [&](int left, int right) {
    if (left == -1 || right == -1 || symbols[left].freeze || symbols[right].freeze)
      return;
    const std::string_view piece(symbols[left].piece.data(),
                                 symbols[left].piece.size() + symbols[right].piece.size());
    const auto it = mergeable.find(piece);
    if (it == mergeable.end())
      return;
    agenda.push({model.pieces[static_cast<size_t>(it->second)].score, left, right, piece.size()});
    if (type(it->second) == PieceType::kUnused) {
      rev_merge[piece] = {symbols[left].piece, symbols[right].piece};
    }
  };
  for (size_t i = 1; i < symbols.size(); ++i) {
    maybe_add_pair(static_cast<int>(i) - 1, static_cast<int>(i));
  }
  while (!agenda.empty()) {
    const Pair top = agenda.top();
    agenda.pop();
    Symbol& left = symbols[top.left];
    Symbol& right = symbols[top.right];
    // Stale: one side was merged away or grew since the pair was queued.
    if (left.piece.empty() || right.piece.empty() ||
        left.piece.size() + right.piece.size() != top.size) {
      continue;
    }
    left.piece = std::string_view(left.piece.data(), top.size);
    left.next = right.next;
    if (right.next >= 0)
      symbols[right.next].prev = top.left;
    right.piece = std::string_view();
    maybe_add_pair(left.prev, top.left);
    maybe_add_pair(top.left, left.next);
  }
  std::vector<std::pair<std::string_view, int32_t>> out;
  out.reserve(symbols.size());
  const auto resegment = [&](const auto& self, std::string_view piece) -> void {
    const int32_t id = piece_to_id(piece);
    const auto it = type(id) == PieceType::kUnused ? rev_merge.find(piece) : rev_merge.end();
    if (it == rev_merge.end()) {
      out.emplace_back(piece, id);
      return;
    }
    self(self, it->second.first);
    self(self, it->second.second);
  };
  for (int i = symbols.empty() ? -1 : 0; i != -1; i = symbols[i].next) {
    resegment(resegment, symbols[i].piece);
  }
  return out;
}

void SentencepieceTokenizer::Vocab::encode_words(
    std::string_view normalized, std::vector<std::pair<std::string_view, int32_t>>& out) const {
  constexpr size_t kMaxCachedWords = size_t{1} << 17;  // bounds memory on huge texts
  const size_t n_space = kSpaceSymbol.size();
  size_t start = 0;
  while (start < normalized.size()) {
    size_t end = normalized.find(kSpaceSymbol, start + 1);
    // (end >= start + n_space: a continuation's text need not start with "▁".)
    while (end != std::string_view::npos && end >= start + n_space &&
           normalized.compare(end - n_space, n_space, kSpaceSymbol) == 0) {
      end = normalized.find(kSpaceSymbol, end + 1);
    }
    if (end == std::string_view::npos)
      end = normalized.size();
    const std::string_view word = normalized.substr(start, end - start);
    std::string key(word);
    std::vector<std::pair<uint32_t, int32_t>> pieces;
    bool cached = false;
    {
      std::lock_guard<std::mutex> lock(cache_mutex);
      if (const auto it = cache.find(key); it != cache.end()) {
        pieces = it->second;
        cached = true;
      }
    }
    if (!cached) {
      for (const auto& [piece, id] : encode_bpe(word)) {
        pieces.emplace_back(static_cast<uint32_t>(piece.size()), id);
      }
      std::lock_guard<std::mutex> lock(cache_mutex);
      if (cache.size() >= kMaxCachedWords)
        cache.clear();
      cache.emplace(std::move(key), pieces);
    }
    size_t offset = start;
    for (const auto& [length, id] : pieces) {
      out.emplace_back(normalized.substr(offset, length), id);
      offset += length;
    }
    start = end;
  }
}

std::vector<int32_t> SentencepieceTokenizer::encode(std::string_view text, bool add_bos) const {
  return encode_normalized(normalize(text), add_bos);
}

std::vector<int32_t> SentencepieceTokenizer::encode_as_transformers(std::string_view text,
                                                                    bool add_bos) const {
  // tokenizers' Metaspace(prepend_scheme "first") prepends "▁" only where the text does not
  // already start with one (a leading space becomes it).
  const bool starts_with_space = text.rfind(' ', 0) == 0 || text.rfind(kSpaceSymbol, 0) == 0;
  return encode_normalized(normalize(text, vocab_->model.add_dummy_prefix && !starts_with_space,
                                     /*remove_extra_whitespaces=*/false), add_bos);
}

std::vector<int32_t> SentencepieceTokenizer::encode_continuation(std::string_view text) const {
  return encode_normalized(normalize(text, /*dummy_prefix=*/false), /*add_bos=*/false);
}

size_t SentencepieceTokenizer::next_split_point(std::string_view text, size_t from) const {
  const Vocab& v = *vocab_;
  if (!v.splittable)
    return text.size();
  // Each character normalizes on its own, so the normalized text is the two sides' joined; with
  // remove_extra_whitespaces only spaces depend on their neighbours (leading, repeated and
  // trailing ones go), so a cut needs a non-space on either side. The
  // symbol left of the cut ends with the left character's piece in every state of the merge
  // loop, the right one starts with the right character's: a merge across the cut would make a
  // mergeable piece holding the two side by side, and none does. Neither side's edge is <unk>,
  // so no run of unknown pieces spans the cut either.
  for (size_t b = std::max<size_t>(from, 1); b < text.size(); ++b) {
    const auto left = static_cast<unsigned char>(text[b - 1]);
    const auto right = static_cast<unsigned char>(text[b]);
    if (v.model.remove_extra_whitespaces && (left == ' ' || right == ' '))
      continue;
    if (left < 128 && right < 128 && v.ascii_piece[left] && v.ascii_piece[right] &&
        !v.ascii_pair_in_piece[128 * left + right]) {
      return b;
    }
  }
  return text.size();
}

std::vector<int32_t> SentencepieceTokenizer::encode_normalized(const std::string& normalized,
                                                               bool add_bos) const {
  std::vector<int32_t> ids;
  ids.reserve(normalized.size() / 3 + 2);
  if (add_bos && bos_id_)
    ids.push_back(*bos_id_);
  // SentencePieceProcessor::PopulateSentencePieceText: an unknown piece becomes its bytes with
  // byte fallback; without it, a run of unknown pieces becomes one <unk>.
  bool prev_unknown = false;
  std::vector<std::pair<std::string_view, int32_t>> pieces;
  if (vocab_->independent_words) {
    vocab_->encode_words(normalized, pieces);
  } else {
    pieces = vocab_->encode_bpe(normalized);
  }
  for (const auto& [piece, id] : pieces) {
    const bool unknown = vocab_->type(id) == PieceType::kUnknown;
    if (unknown && vocab_->model.byte_fallback) {
      for (const unsigned char byte : piece)
        ids.push_back(vocab_->byte_ids[byte]);
    } else if (!(unknown && prev_unknown)) {
      ids.push_back(id);
    }
    prev_unknown = unknown;
  }
  return ids;
}

// SentencePieceProcessor::Decode: control pieces vanish, "▁" reads as a space, byte pieces join
// into UTF-8 (U+FFFD per malformed byte), and the leading "▁" that the dummy prefix added goes.
std::string SentencepieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  const SentencepieceModel& model = vocab_->model;
  std::string text;
  std::string bytes;
  const auto flush_bytes = [&] {
    for (size_t pos = 0; pos < bytes.size();) {
      const Utf8Char c = decode_utf8(bytes, pos);
      text.append(c.valid ? bytes.substr(pos, c.length) : std::string(kReplacementChar));
      pos += c.length;
    }
    bytes.clear();
  };
  bool is_bos_ws = true;
  bool bos_ws_seen = false;
  for (size_t k = 0; k < ids.size(); ++k) {
    const int32_t id = ids[k];
    CALQ_CHECK(id >= 0 && static_cast<size_t>(id) < model.pieces.size(),
               "{}: token id {} at position {} is out of range; expected 0..{}", path_, id, k,
               model.pieces.size() - 1);
    std::string_view piece = model.pieces[static_cast<size_t>(id)].text;
    const PieceType type = vocab_->type(id);
    if (type == PieceType::kByte) {
      const std::optional<char> byte = byte_piece_value(piece);
      CALQ_CHECK(byte.has_value(), "{}: byte piece {} is {}; expected <0x00>..<0xFF>", path_,
                 id, quote_string(piece));
      bytes.push_back(*byte);
      continue;
    }
    flush_bytes();
    if (bos_ws_seen || !text.empty())
      is_bos_ws = false;
    bos_ws_seen = false;
    if (type == PieceType::kControl)
      continue;
    if (type == PieceType::kUnknown) {
      text += model.unk_surface;
      continue;
    }
    if (is_bos_ws && (model.add_dummy_prefix || model.remove_extra_whitespaces) &&
        piece.substr(0, kSpaceSymbol.size()) == kSpaceSymbol) {
      piece.remove_prefix(kSpaceSymbol.size());
      // With extra whitespace removed there can be no second leading "▁" to keep.
      bos_ws_seen = !model.remove_extra_whitespaces;
    }
    for (size_t pos = 0; pos < piece.size();) {
      if (piece.compare(pos, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
        text += ' ';
        pos += kSpaceSymbol.size();
      } else {
        text += piece[pos++];
      }
    }
  }
  flush_bytes();
  return text;
}

}  // namespace calq::core
