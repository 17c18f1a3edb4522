#include "core/tokenizer/bpe_tokenizer.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <mutex>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/io/json_text.h"
#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/file_bytes.h"
#include "core/tokenizer/pair_merge.h"

namespace calq::core {
namespace {

using nlohmann::json;

// Bounds the per-word cache (GPT-2 text has ~10^5 distinct words per MB) so memory stays flat.
constexpr size_t kMaxCachedWords = size_t{1} << 17;
constexpr size_t kNumBytes = 256;
// Token ids index a table, so a corrupt id (2000000000) would allocate gigabytes before anything
// else could object; 2^22 is 16x the largest vocabularies in use (Gemma's 256K).
constexpr int64_t kMaxTokenId = (int64_t{1} << 22) - 1;

const json* member(const json& object, const char* key) {
  if (!object.is_object())
    return nullptr;
  const auto it = object.find(key);
  if (it == object.end() || it->is_null())
    return nullptr;
  return &*it;
}

json parse_json_text(std::string_view text, const std::string& path, std::string_view expected) {
  JsonReadOptions read;
  read.what = "file";
  read.expected = expected;
  return parse_json_bounded(text, path, read);
}

json parse_json_file(const std::string& path, std::string_view expected) {
  return parse_json_text(read_file_bytes(path), path, expected);
}

// HF writes special tokens either as "<s>" or as {"content": "<s>", ...}.
std::optional<std::string> token_content(const json& value) {
  if (value.is_string())
    return value.get<std::string>();
  if (const json* content = member(value, "content"); content && content->is_string()) {
    return content->get<std::string>();
  }
  return std::nullopt;
}

// Why tokenizer.json is not the byte-level BPE this class implements; empty when it is.
std::string unsupported_reason(const json& root, const json& model) {
  const std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE")
    return fmt::format("model type {}", quote_string(type));
  if (const json* v = member(model, "byte_fallback"); v && v->is_boolean() && v->get<bool>()) {
    return "BPE with byte_fallback (a SentencePiece-style BPE)";
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const json* v = member(model, key); v && v->is_string() && !v->get<std::string>().empty()) {
      return fmt::format("BPE with {} {}", key, quote_string(v->get<std::string>()));
    }
  }
  if (const json* v = member(model, "dropout"); v && v->is_number() && v->get<double>() != 0) {
    return "BPE dropout";
  }
  if (const json* normalizer = member(root, "normalizer")) {
    const json* inner = member(*normalizer, "normalizers");
    const bool empty_sequence = inner && inner->is_array() && inner->empty();
    if (!empty_sequence) {
      return fmt::format("normalizer {}", normalizer->value("type", std::string("?")));
    }
  }
  const json* pre = member(root, "pre_tokenizer");
  if (pre == nullptr)
    return "no pre_tokenizer (expected ByteLevel)";
  const std::string pre_type = pre->value("type", std::string("?"));
  if (pre_type == "Sequence") {
    const json* list = member(*pre, "pretokenizers");
    if (list && list->is_array() && list->size() == 1) {
      pre = &(*list)[0];
    } else {
      std::string types;
      if (list && list->is_array()) {
        for (const json& p : *list) {
          types += (types.empty() ? "" : ", ") + p.value("type", std::string("?"));
        }
      }
      return fmt::format("pre_tokenizer Sequence[{}]", types);
    }
  }
  if (pre->value("type", std::string("?")) != "ByteLevel") {
    return fmt::format("pre_tokenizer {}", pre->value("type", std::string("?")));
  }
  if (!pre->value("use_regex", true))
    return "ByteLevel pre_tokenizer without its regex";
  return "";
}

// The special token a post_processor puts first (TemplateProcessing, Roberta/BertProcessing).
std::optional<int32_t> leading_special_token(const json& post) {
  const std::string type = post.value("type", std::string());
  if (type == "TemplateProcessing") {
    const json* single = member(post, "single");
    if (!single || !single->is_array() || single->empty())
      return std::nullopt;
    const json* special = member((*single)[0], "SpecialToken");
    if (!special)
      return std::nullopt;
    const std::string name = special->value("id", std::string());
    const json* tokens = member(post, "special_tokens");
    const json* entry = tokens ? member(*tokens, name.c_str()) : nullptr;
    const json* ids = entry ? member(*entry, "ids") : nullptr;
    if (!ids || !ids->is_array() || ids->empty())
      return std::nullopt;
    return (*ids)[0].get<int32_t>();
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    const json* cls = member(post, "cls");
    if (!cls || !cls->is_array() || cls->size() != 2)
      return std::nullopt;
    return (*cls)[1].get<int32_t>();
  }
  if (type == "Sequence") {
    if (const json* list = member(post, "processors"); list && list->is_array()) {
      for (const json& p : *list) {
        if (std::optional<int32_t> id = leading_special_token(p))
          return id;
      }
    }
  }
  return std::nullopt;
}

}  // namespace

struct BpeTokenizer::State {
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };

  std::string path;
  std::vector<std::string> token_bytes;  // by id; an added token's content
  std::vector<bool> has_id;
  std::unordered_map<std::string, int32_t> ids;        // vocab token bytes -> id
  std::array<int32_t, kNumBytes> byte_ids{};           // -1 where the vocab lacks a byte
  std::unordered_map<uint64_t, Merge> merges;          // (left << 32 | right) -> merge
  std::vector<std::pair<std::string, int32_t>> added;  // matched verbatim before splitting
  bool add_prefix_space = false;
  bool ignore_merges = false;
  std::optional<int32_t> bos;
  std::optional<int32_t> eos;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  static uint64_t key(int32_t left, int32_t right) {
    return static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32 | static_cast<uint32_t>(right);
  }

  void set_id(int32_t id, std::string bytes, const std::string& source) {
    CALQ_CHECK(id >= 0 && id <= kMaxTokenId, "{}: token {} has id {}; expected an id in 0..{}",
               source, quote_string(bytes), id, kMaxTokenId);
    const auto index = static_cast<size_t>(id);
    if (index >= token_bytes.size()) {
      token_bytes.resize(index + 1);
      has_id.resize(index + 1, false);
    }
    token_bytes[index] = std::move(bytes);
    has_id[index] = true;
  }

  void add_vocab(const json& vocab, const std::string& source) {
    CALQ_CHECK(vocab.is_object(), "{}: vocab is not a JSON object; expected token -> id", source);
    ids.reserve(vocab.size());
    for (const auto& [token, value] : vocab.items()) {
      CALQ_CHECK(value.is_number_integer(), "{}: vocab entry {} has id {}; expected an integer",
                 source, quote_string(token), quote_json(value));
      // As int64 first: get<int32_t> would wrap 4294967296 to 0 and take it.
      const auto wide = value.get<int64_t>();
      CALQ_CHECK(wide >= 0 && wide <= kMaxTokenId,
                 "{}: vocab entry {} has id {}; expected an id in 0..{}", source,
                 quote_string(token), quote_json(value), kMaxTokenId);
      const auto id = static_cast<int32_t>(wide);
      std::optional<std::string> bytes = byte_level_to_bytes(token);
      if (!bytes) {
        // Special tokens such as "<|endoftext|>" may sit in the vocab in plain text.
        const bool is_added = std::any_of(added.begin(), added.end(),
                                          // (clang 14 cannot capture a structured binding)
                                          [&name = token](const auto& a) { return a.first == name; });
        CALQ_CHECK(is_added,
                   "{}: vocab entry {} (id {}) is not byte-level; expected GPT-2 "
                   "byte-to-unicode symbols",
                   source, quote_string(token), id);
        continue;
      }
      const auto [it, inserted] = ids.emplace(*bytes, id);
      CALQ_CHECK(inserted || it->second == id, "{}: vocab entry {} appears twice", source,
                 quote_string(token));
      set_id(id, std::move(*bytes), source);
    }
    byte_ids.fill(-1);
    for (size_t b = 0; b < kNumBytes; ++b) {
      if (const auto it = ids.find(std::string(1, static_cast<char>(b))); it != ids.end()) {
        byte_ids[b] = it->second;
      }
    }
  }

  // `where` and `index` place the merge in error messages: "line 7" of merges.txt, "merge 5" of
  // tokenizer.json.
  void add_merge(std::string_view left,
                 std::string_view right,
                 const std::string& source,
                 const char* where,
                 size_t index) {
    const std::optional<std::string> l = byte_level_to_bytes(left);
    const std::optional<std::string> r = byte_level_to_bytes(right);
    const auto l_it = l ? ids.find(*l) : ids.end();
    const auto r_it = r ? ids.find(*r) : ids.end();
    const auto m_it = l && r ? ids.find(*l + *r) : ids.end();
    CALQ_CHECK(l_it != ids.end() && r_it != ids.end() && m_it != ids.end(),
               "{}: {} {} {} uses or makes a token missing from the vocab; expected "
               "merges of vocab tokens",
               source, where, index, quote_string(std::string(left) + " " + std::string(right)));
    // A repeated merge keeps its first (best) rank, as HF tokenizers does.
    merges.emplace(key(l_it->second, r_it->second),
                   Merge{static_cast<int32_t>(merges.size()), m_it->second});
  }

  void add_added_token(std::string content, int32_t id, const std::string& source) {
    if (content.empty())
      return;
    added.emplace_back(content, id);
    set_id(id, std::move(content), source);
  }

  std::optional<int32_t> find_token(const std::string& content) const {
    for (const auto& [text, id] : added) {
      if (text == content)
        return id;
    }
    if (const auto it = ids.find(content); it != ids.end())
      return it->second;
    return std::nullopt;
  }

  // tokenizer_config.json next to the files: which BOS HF prepends and the EOS.
  void read_tokenizer_config(const std::filesystem::path& dir, bool bos_from_template) {
    const std::filesystem::path config_path = dir / "tokenizer_config.json";
    std::optional<std::string> eos_content;
    if (std::filesystem::exists(config_path)) {
      const json config = parse_json_file(config_path.string(), "a tokenizer_config.json object");
      const json* add_bos = member(config, "add_bos_token");
      const json* bos_token = member(config, "bos_token");
      if (!bos_from_template && add_bos && add_bos->is_boolean() && add_bos->get<bool>() &&
          bos_token) {
        if (std::optional<std::string> content = token_content(*bos_token)) {
          bos = find_token(*content);
        }
      }
      if (const json* eos_token = member(config, "eos_token"))
        eos_content = token_content(*eos_token);
      if (const json* prefix = member(config, "add_prefix_space"); prefix && prefix->is_boolean()) {
        add_prefix_space = add_prefix_space || prefix->get<bool>();
      }
    }
    eos = find_token(eos_content.value_or("<|endoftext|>"));
  }
};

BpeTokenizer::BpeTokenizer(std::unique_ptr<State> state) : state_(std::move(state)) {}
BpeTokenizer::~BpeTokenizer() = default;

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_tokenizer_json(const std::string& path,
                                                                std::string* unsupported) {
  return from_tokenizer_json_text(read_file_bytes(path), path, unsupported);
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_tokenizer_json_text(std::string_view text,
                                                                     const std::string& path,
                                                                     std::string* unsupported) {
  constexpr std::string_view kExpected = "an HF tokenizer.json";
  const json root = parse_json_text(text, path, kExpected);
  auto state = std::make_unique<State>();
  state->path = path;
  try {
    const json* model = member(root, "model");
    CALQ_CHECK(model && model->is_object(), "{}: no \"model\" object; expected {}", path,
               kExpected);
    if (std::string reason = unsupported_reason(root, *model); !reason.empty()) {
      if (unsupported)
        *unsupported = std::move(reason);
      return nullptr;
    }
    if (const json* added = member(root, "added_tokens")) {
      CALQ_CHECK(added->is_array(), "{}: added_tokens is not an array; expected {}", path,
                 kExpected);
      for (const json& token : *added) {
        const json* id = member(token, "id");
        const json* content = member(token, "content");
        // Checked before get<int32_t>: a huge id parses as a double, and converting that to an
        // int is undefined behaviour (found by fuzz_tokenizer_json).
        CALQ_CHECK(content && content->is_string() && id && id->is_number_integer() &&
                       id->get<int64_t>() >= 0 && id->get<int64_t>() <= kMaxTokenId,
                   "{}: added token {}: expected {{\"id\": 0..{}, \"content\": \"...\"}}", path,
                   quote_json(token), kMaxTokenId);
        state->add_added_token(content->get<std::string>(), static_cast<int32_t>(id->get<int64_t>()),
                               path);
      }
    }
    const json* vocab = member(*model, "vocab");
    CALQ_CHECK(vocab, "{}: model has no vocab; expected {}", path, kExpected);
    state->add_vocab(*vocab, path);
    const json* merges = member(*model, "merges");
    CALQ_CHECK(merges && merges->is_array(), "{}: model has no merges array; expected {}", path,
               kExpected);
    size_t line = 0;
    for (const json& merge : *merges) {
      // tokenizers < 0.20 writes "a b"; newer versions write ["a", "b"].
      if (merge.is_string()) {
        const std::string text = merge.get<std::string>();
        const size_t space = text.find(' ');
        CALQ_CHECK(space != std::string::npos && text.find(' ', space + 1) == std::string::npos,
                   "{}: merge {} {} is not two symbols; expected \"a b\"", path, line,
                   quote_string(text));
        state->add_merge(std::string_view(text).substr(0, space),
                         std::string_view(text).substr(space + 1), path, "merge", line);
      } else {
        CALQ_CHECK(merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
                       merge[1].is_string(),
                   "{}: merge {} is {}; expected \"a b\" or [\"a\", \"b\"]", path, line,
                   quote_json(merge));
        state->add_merge(merge[0].get<std::string>(), merge[1].get<std::string>(), path, "merge",
                         line);
      }
      ++line;
    }
    state->ignore_merges = model->value("ignore_merges", false);
    const json* pre = member(root, "pre_tokenizer");
    if (pre->value("type", std::string()) == "Sequence")
      pre = &pre->at("pretokenizers")[0];
    state->add_prefix_space = pre->value("add_prefix_space", false);
    const json* post = member(root, "post_processor");
    state->bos = post ? leading_special_token(*post) : std::nullopt;
  } catch (const json::exception& e) {
    fail("{}: unexpected structure ({}); expected {}", path, e.what(), kExpected);
  }
  state->read_tokenizer_config(std::filesystem::path(path).parent_path(), state->bos.has_value());
  return std::unique_ptr<BpeTokenizer>(new BpeTokenizer(std::move(state)));
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_vocab_and_merges(const std::string& vocab_path,
                                                                  const std::string& merges_path) {
  return from_vocab_and_merges_text(read_file_bytes(vocab_path), read_file_bytes(merges_path),
                                    vocab_path, merges_path);
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::from_vocab_and_merges_text(
    std::string_view vocab_text,
    std::string_view merges_text,
    const std::string& vocab_path,
    const std::string& merges_path) {
  const json vocab = parse_json_text(vocab_text, vocab_path, "a GPT-2 vocab.json (token -> id)");
  auto state = std::make_unique<State>();
  state->path = vocab_path;
  // GPT2Tokenizer treats its <|endoftext|> as special text.
  if (const json* eot = member(vocab, "<|endoftext|>"); eot && eot->is_number_integer()) {
    state->added.emplace_back("<|endoftext|>", eot->get<int32_t>());
  }
  state->add_vocab(vocab, vocab_path);
  size_t line_no = 0;
  for (size_t pos = 0; pos < merges_text.size();) {
    size_t end = merges_text.find('\n', pos);
    if (end == std::string_view::npos)
      end = merges_text.size();
    std::string_view line = merges_text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.substr(0, 8) == "#version"))
      continue;
    const size_t space = line.find(' ');
    CALQ_CHECK(space != std::string_view::npos && line.find(' ', space + 1) == std::string::npos,
               "{}: line {} {} is not a merge; expected two symbols separated by one space",
               merges_path, line_no, quote_string(line));
    state->add_merge(line.substr(0, space), line.substr(space + 1), merges_path, "line", line_no);
  }
  state->read_tokenizer_config(std::filesystem::path(vocab_path).parent_path(), false);
  return std::unique_ptr<BpeTokenizer>(new BpeTokenizer(std::move(state)));
}

int64_t BpeTokenizer::vocab_size() const {
  return static_cast<int64_t>(state_->token_bytes.size());
}
std::optional<int32_t> BpeTokenizer::bos_id() const {
  return state_->bos;
}
std::optional<int32_t> BpeTokenizer::eos_id() const {
  return state_->eos;
}
const std::string& BpeTokenizer::path() const {
  return state_->path;
}

std::vector<int32_t> BpeTokenizer::encode_word(std::string_view word) const {
  const State& s = *state_;
  std::string key(word);
  {
    std::lock_guard<std::mutex> lock(s.cache_mutex);
    if (const auto it = s.cache.find(key); it != s.cache.end())
      return it->second;
  }
  std::vector<int32_t> tokens;
  const auto whole = s.ignore_merges ? s.ids.find(key) : s.ids.end();
  if (whole != s.ids.end()) {
    tokens.push_back(whole->second);
  } else {
    tokens.reserve(word.size());
    for (const unsigned char byte : word) {
      const int32_t id = s.byte_ids[byte];
      CALQ_CHECK(id >= 0, "{}: byte 0x{:02X} has no token; expected all 256 byte-level symbols",
                 s.path, byte);
      tokens.push_back(id);
    }
    merge_adjacent_pairs(tokens, [&](int32_t left, int32_t right) -> std::optional<PairMerge> {
      const auto it = s.merges.find(State::key(left, right));
      if (it == s.merges.end())
        return std::nullopt;
      return PairMerge{-static_cast<double>(it->second.rank), it->second.merged_id};
    });
  }
  std::lock_guard<std::mutex> lock(s.cache_mutex);
  if (s.cache.size() >= kMaxCachedWords)
    s.cache.clear();
  s.cache.emplace(std::move(key), tokens);
  return tokens;
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool add_bos) const {
  const State& s = *state_;
  std::vector<int32_t> ids;
  if (add_bos && s.bos)
    ids.push_back(*s.bos);
  std::string prefixed;
  const auto encode_segment = [&](std::string_view segment) {
    if (segment.empty())
      return;
    if (s.add_prefix_space && segment.front() != ' ') {
      prefixed.assign(" ").append(segment);
      segment = prefixed;
    }
    for (const std::string_view word : split_gpt2_words(segment)) {
      const std::vector<int32_t> word_ids = encode_word(word);
      ids.insert(ids.end(), word_ids.begin(), word_ids.end());
    }
  };
  // Added tokens ("<|endoftext|>") are cut out of the raw text first, leftmost then longest, as
  // HF tokenizers does; next_at caches each one's next occurrence.
  std::vector<size_t> next_at;
  next_at.reserve(s.added.size());
  for (const auto& added : s.added)
    next_at.push_back(text.find(added.first));
  size_t pos = 0;
  while (pos < text.size()) {
    size_t best_at = std::string_view::npos;
    size_t best = 0;
    for (size_t k = 0; k < s.added.size(); ++k) {
      if (next_at[k] != std::string_view::npos && next_at[k] < pos) {
        next_at[k] = text.find(s.added[k].first, pos);
      }
      const size_t at = next_at[k];
      if (at < best_at || (at == best_at && at != std::string_view::npos &&
                           s.added[k].first.size() > s.added[best].first.size())) {
        best_at = at;
        best = k;
      }
    }
    if (best_at == std::string_view::npos) {
      encode_segment(text.substr(pos));
      break;
    }
    encode_segment(text.substr(pos, best_at - pos));
    ids.push_back(s.added[best].second);
    pos = best_at + s.added[best].first.size();
  }
  return ids;
}

std::vector<int32_t> BpeTokenizer::encode_continuation(std::string_view text) const {
  // A split point is followed by a space, so add_prefix_space adds nothing there.
  return encode(text, /*add_bos=*/false);
}

size_t BpeTokenizer::next_split_point(std::string_view text, size_t from) const {
  // Left of the cut an ASCII letter: its letter run (or contraction: 's ends in a letter) ends
  // at the space, whatever follows. At the cut " ?\p{L}+" takes the space and the letters after
  // it, whatever precedes. So the word sequence is the two sides' joined, and words encode alone.
  const auto is_letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  for (size_t b = std::max<size_t>(from, 1); b + 1 < text.size(); ++b) {
    if (text[b] != ' ' || !is_letter(text[b - 1]) || !is_letter(text[b + 1]))
      continue;
    // Added tokens are cut out before the regex: none may span the cut.
    const std::string_view around = text.substr(b - 1, 2);
    const bool in_added = std::any_of(state_->added.begin(), state_->added.end(),
                                      [&](const auto& added) {
                                        return added.first.find(around) != std::string::npos;
                                      });
    if (!in_added)
      return b;
  }
  return text.size();
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  const State& s = *state_;
  std::string text;
  for (size_t k = 0; k < ids.size(); ++k) {
    const int32_t id = ids[k];
    CALQ_CHECK(id >= 0 && static_cast<size_t>(id) < s.token_bytes.size() &&
                   s.has_id[static_cast<size_t>(id)],
               "{}: token id {} at position {} is not in the vocabulary; expected 0..{}", s.path,
               id, k, s.token_bytes.size() - 1);
    text += s.token_bytes[static_cast<size_t>(id)];
  }
  return text;
}

}  // namespace calq::core
