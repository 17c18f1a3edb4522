#include "core/tokenizer/tokenizer.h"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/tokenizer/byte_level.h"
#include "core/tokenizer/llama2c_tokenizer.h"
#include "tests/support/test_data.h"
#include "tests/support/temp_dir.h"

namespace calq::core {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;
constexpr uint32_t kSeed = 1234;

using test::TempDir;

std::string file_in(const TempDir& dir, const std::string& name) {
  return (dir / name).string();
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

void append_i32(std::string& out, int32_t value) {
  char bytes[4];
  std::memcpy(bytes, &value, 4);  // the build machine is little-endian, as the format
  out.append(bytes, 4);
}

void append_f32(std::string& out, float value) {
  int32_t bits;
  std::memcpy(&bits, &value, 4);
  append_i32(out, bits);
}

// A llama2.c tokenizer.bin: <unk>, <s>, </s>, the 256 byte pieces, then `extra` (piece, score).
std::string llama2c_file(const std::vector<std::pair<std::string, float>>& extra) {
  std::vector<std::pair<std::string, float>> pieces = {
      {"<unk>", 0}, {"\n<s>\n", 0}, {"\n</s>\n", 0}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    pieces.emplace_back(name, 0.0f);
  }
  pieces.insert(pieces.end(), extra.begin(), extra.end());
  size_t max_length = 0;
  for (const auto& p : pieces)
    max_length = std::max(max_length, p.first.size());
  std::string out;
  append_i32(out, static_cast<int32_t>(max_length));
  for (const auto& [piece, score] : pieces) {
    append_f32(out, score);
    append_i32(out, static_cast<int32_t>(piece.size()));
    out += piece;
  }
  return out;
}

void append_varint(std::string& out, uint64_t value) {
  for (; value >= 0x80; value >>= 7)
    out.push_back(static_cast<char>(value | 0x80));
  out.push_back(static_cast<char>(value));
}

void append_field(std::string& out, uint32_t field, const std::string& bytes) {
  append_varint(out, field << 3 | 2);  // length-delimited
  append_varint(out, bytes.size());
  out += bytes;
}

void append_field(std::string& out, uint32_t field, uint64_t value) {
  append_varint(out, field << 3);  // varint
  append_varint(out, value);
}

// A SentencePiece BPE tokenizer.model (sentencepiece_model.proto) with byte fallback and an
// identity normalizer: <unk>, <s>, </s>, the 256 byte pieces, then `extra` (piece, score, type).
std::string sentencepiece_file(const std::vector<std::tuple<std::string, float, int>>& extra,
                               bool remove_extra_whitespaces) {
  std::vector<std::tuple<std::string, float, int>> pieces = {
      {"<unk>", 0, 2}, {"<s>", 0, 3}, {"</s>", 0, 3}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    pieces.emplace_back(name, 0.0f, 6);
  }
  pieces.insert(pieces.end(), extra.begin(), extra.end());
  std::string out;
  for (const auto& [text, score, type] : pieces) {
    std::string piece;
    append_field(piece, 1, text);
    append_varint(piece, 2 << 3 | 5);  // fixed32 score
    append_f32(piece, score);
    append_field(piece, 3, static_cast<uint64_t>(type));
    append_field(out, 1, piece);
  }
  std::string trainer;
  append_field(trainer, 3, uint64_t{2});   // model_type BPE
  append_field(trainer, 35, uint64_t{1});  // byte_fallback
  append_field(out, 2, trainer);
  std::string normalizer;
  append_field(normalizer, 1, std::string("identity"));
  append_field(normalizer, 4, uint64_t{remove_extra_whitespaces ? 1u : 0u});
  append_field(out, 3, normalizer);
  return out;
}

// run.c `encode`, transcribed literally (quadratic rescan after every merge), as the reference
// for the heap-based Llama2cTokenizer::encode.
Ids run_c_encode(const Llama2cTokenizer& tok, const std::string& text, bool bos) {
  std::map<std::string, int32_t> sorted_vocab;
  for (int32_t i = static_cast<int32_t>(tok.vocab_size()) - 1; i >= 0; --i) {
    sorted_vocab[tok.piece(i)] = i;  // the lowest id wins for repeated pieces
  }
  const auto str_lookup = [&](const std::string& s) {
    const auto it = sorted_vocab.find(s);
    return it == sorted_vocab.end() ? -1 : it->second;
  };
  Ids tokens;
  if (bos)
    tokens.push_back(1);
  if (!text.empty()) {
    const int32_t space = str_lookup(" ");
    tokens.push_back(space == -1 ? 3 + ' ' : space);
  }
  std::string buffer;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if ((c & 0xC0) != 0x80)
      buffer.clear();
    buffer.push_back(static_cast<char>(c));
    const bool next_continues =
        i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
    if (next_continues && buffer.size() < 4)
      continue;
    const int32_t id = str_lookup(buffer);
    if (id != -1) {
      tokens.push_back(id);
    } else {
      for (unsigned char b : buffer)
        tokens.push_back(b + 3);
    }
    buffer.clear();
  }
  while (true) {
    float best_score = -1e10f;
    int32_t best_id = -1;
    int best_index = -1;
    for (int i = 0; i + 1 < static_cast<int>(tokens.size()); ++i) {
      const int32_t id = str_lookup(tok.piece(tokens[i]) + tok.piece(tokens[i + 1]));
      if (id != -1 && tok.score(id) > best_score) {
        best_score = tok.score(id);
        best_id = id;
        best_index = i;
      }
    }
    if (best_index == -1)
      break;
    tokens[static_cast<size_t>(best_index)] = best_id;
    tokens.erase(tokens.begin() + best_index + 1);
  }
  return tokens;
}

std::string random_text(std::mt19937& rng,
                        const std::vector<std::string>& alphabet,
                        size_t max_parts) {
  std::uniform_int_distribution<size_t> n_parts(0, max_parts);
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  std::string text;
  for (size_t k = n_parts(rng); k > 0; --k)
    text += alphabet[pick(rng)];
  return text;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const calq::Error& e) {
    return e.what();
  }
  return "(no calq::Error thrown)";
}

}  // namespace

// ---- llama2.c ---------------------------------------------------------------------------------

TEST_CASE("llama2c tokenizer gives the published TinyStories token counts",
          "[core][tokenizer][data]") {
  CALQ_REQUIRE_DATA(tok_path, "stories260K/tok512.bin");
  CALQ_REQUIRE_DATA(eval_path, "stories260K/tinystories_valid_eval.txt");
  CALQ_REQUIRE_DATA(calib_path, "stories260K/tinystories_valid_calib.txt");
  const auto tok = load_tokenizer(tok_path.string());
  CHECK(tok->kind() == "llama2c");
  CHECK(tok->vocab_size() == 512);
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  // PROVENANCE.md: each file encoded whole, once, with BOS.
  const std::string eval_text = read_text(eval_path);
  const Ids eval_ids = tok->encode(eval_text, true);
  CHECK(eval_ids.size() == 193801);
  CHECK(eval_ids.front() == 1);
  CHECK(tok->decode(eval_ids) == eval_text);
  CHECK(tok->encode(read_text(calib_path), true).size() == 199217);
}

TEST_CASE("llama2c encode equals run.c's quadratic merge loop on random strings",
          "[core][tokenizer][data]") {
  CALQ_REQUIRE_DATA(tok_path, "stories260K/tok512.bin");
  const Llama2cTokenizer tok(tok_path.string());
  std::mt19937 rng(kSeed);
  // Pieces that merge in tok512 plus non-ASCII, 4-byte and malformed UTF-8 for the fallback.
  const std::vector<std::string> alphabet = {
      "a",     "e",        "t",  "h",    " ", "  ", "Once",
      " upon", "\n",       ".",  "Lily", "é", "東", "\xF0\x9F\x98\x80",
      "\x80",  "\xE6\x9D", "'s", "!"};
  for (int trial = 0; trial < 300; ++trial) {
    const std::string text = random_text(rng, alphabet, 24);
    const bool bos = trial % 2 == 0;
    INFO("text: \"" << text << "\" bos " << bos);
    REQUIRE(tok.encode(text, bos) == run_c_encode(tok, text, bos));
  }
}

TEST_CASE("llama2c merges the leftmost of equally scored pairs, as run.c", "[core][tokenizer]") {
  TempDir dir;
  // Many equal scores so that ties decide; "aa" and "ab" tie, "aab" beats both.
  const std::string path = file_in(dir, "tok270.bin");
  write_text(path, llama2c_file({{" ", -5},
                                 {"a", -5},
                                 {"b", -5},
                                 {"aa", 1},
                                 {"ab", 1},
                                 {"ba", 1},
                                 {"bb", 0},
                                 {"aab", 2},
                                 {" a", 1},
                                 {" b", 0},
                                 {"abab", 1}}));
  const Llama2cTokenizer tok(path, 270);
  const int32_t b = 261, ab = 263, space_a = 267;
  // " aab": " a", "aa" and "ab" all score 1. Leftmost first gives " a" then "ab"; taking "aa"
  // first (say, the lowest id) would go on to "aab" instead.
  CHECK(tok.encode("aab", false) == Ids{space_a, ab});
  CHECK(tok.encode("ab", true) == Ids{1, space_a, b});
  std::mt19937 rng(kSeed);
  for (int trial = 0; trial < 300; ++trial) {
    const std::string text = random_text(rng, {"a", "b", " ", "c"}, 16);
    INFO("text: \"" << text << "\"");
    REQUIRE(tok.encode(text, trial % 2 == 0) == run_c_encode(tok, text, trial % 2 == 0));
  }
}

TEST_CASE("llama2c decode drops the dummy space after BOS and turns byte pieces into bytes",
          "[core][tokenizer]") {
  TempDir dir;
  const std::string path = file_in(dir, "tok262.bin");
  write_text(path, llama2c_file({{" ", -1}, {"a", -1}, {" a", 0}}));
  const Llama2cTokenizer tok(path);
  const std::string text = "a\na\xE2\x80\x94";  // the em dash has no piece: three byte tokens
  CHECK(tok.decode(tok.encode(text, true)) == text);
  CHECK(tok.decode(tok.encode(text, false)) == " " + text);  // run.c strips only after BOS
  CHECK(tok.encode("", true) == Ids{1});
  CHECK(tok.encode("", false).empty());
  CHECK_THAT(error_of([&] {
               tok.decode({1, 999});
             }),
             Catch::Contains("token id 999 at position 1 is out of range; expected 0..261"));
}

TEST_CASE("llama2c tokenizer rejects truncated and foreign files with the file name",
          "[core][tokenizer]") {
  TempDir dir;
  const std::string full = llama2c_file({{" ", -1}, {"a", -2}});
  // Token 17's entry starts after the int32 header and 17 (score, length, piece) entries.
  size_t token17 = 4;
  for (int i = 0; i < 17; ++i) {
    int32_t length;
    std::memcpy(&length, full.data() + token17 + 4, 4);
    token17 += 8 + static_cast<size_t>(length);
  }
  const std::string path = file_in(dir, "tok261.bin");
  SECTION("cut inside an entry") {
    write_text(path, full.substr(0, token17 + 3));
    CHECK_THAT(error_of([&] { load_tokenizer(path); }),
               Catch::Contains("tok261.bin: truncated at token 17 of 261"));
  }
  SECTION("cut between entries") {
    write_text(path, full.substr(0, token17));
    CHECK_THAT(error_of([&] { load_tokenizer(path); }),
               Catch::Contains("tok261.bin: truncated at token 17 of 261"));
  }
  SECTION("no count in the name") {
    const std::string other = file_in(dir, "tokenizer.bin");
    write_text(other, full.substr(0, token17 + 10));
    CHECK_THAT(error_of([&] { load_tokenizer(other); }),
               Catch::Contains("tokenizer.bin: truncated at token 17;"));
  }
  SECTION("a model checkpoint instead of a tokenizer") {
    std::string model;
    for (int32_t v : {64, 172, 5, 8, 4, 512, 512})
      append_i32(model, v);
    for (int i = 0; i < 64; ++i)
      append_f32(model, 0.25f);
    write_text(path, model);
    CHECK_THAT(error_of([&] { load_tokenizer(path); }),
               Catch::Contains("not a llama2.c tokenizer.bin?"));
  }
  SECTION("no byte pieces") {
    std::string tiny;
    append_i32(tiny, 1);
    append_f32(tiny, 0);
    append_i32(tiny, 1);
    tiny += "x";
    const std::string other = file_in(dir, "tokenizer.bin");
    write_text(other, tiny);
    CHECK_THAT(error_of([&] { load_tokenizer(other); }),
               Catch::Contains("tokenizer.bin: 1 tokens; expected at least 259"));
  }
}

// ---- SentencePiece ----------------------------------------------------------------------------

TEST_CASE("sentencepiece tokenizer matches Llama-2's ids and round-trips",
          "[core][tokenizer][data]") {
  CALQ_REQUIRE_EXTRA(model_path, "llama2-tokenizer/tokenizer.model");
  const auto tok = load_tokenizer(model_path.string());
  CHECK(tok->kind() == "sentencepiece");
  CHECK(tok->vocab_size() == 32000);
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  // python3-sentencepiece 0.1.97 (PROVENANCE.md).
  CHECK(tok->encode("Once upon a time", false) == Ids{9038, 2501, 263, 931});
  CHECK(tok->encode("Once upon a time", true) == Ids{1, 9038, 2501, 263, 931});
  for (const std::string text :
       {"Once upon a time", "naïve café — 東京 😀", "line one\nline two", "tabs\tand 123,456.78"}) {
    INFO(text);
    CHECK(tok->decode(tok->encode(text, true)) == text);
  }
  CHECK_THAT(error_of([&] { tok->decode({32000}); }), Catch::Contains("out of range"));
}

TEST_CASE("sentencepiece tokenizer reproduces transformers' counts for sotu and wikitext",
          "[core][tokenizer][data]") {
  CALQ_REQUIRE_DATA(model_dir, "sotu-llama-6L");
  CALQ_REQUIRE_DATA(sotu_path, "sotu-llama-6L/sotu_valid.txt");
  CALQ_REQUIRE_DATA(wiki_path, "wikitext-2/test.joined.txt");
  const auto tok = load_tokenizer(model_dir.string());  // finds tokenizer.model
  REQUIRE(tok->kind() == "sentencepiece");
  CHECK(tok->vocab_size() == 4096);
  // PROVENANCE.md: transformers' counts, each text read as is and encoded whole with one BOS
  // (libsentencepiece 0.1.97 gives the same ids).
  CHECK(tok->encode(read_text(sotu_path), true).size() == 250960);
  CHECK(tok->encode(read_text(wiki_path), true).size() == 471737);
}

TEST_CASE("sentencepiece merges, resegments unused pieces and falls back to bytes as sp 0.1.97",
          "[core][tokenizer]") {
  TempDir dir;
  const std::string space = "\xE2\x96\x81";  // "▁"
  // "ab" is UNUSED (type 5): it may merge on the way to "▁ab" but never stands alone. "a▁"
  // joins two words, so this model takes the whole-text merge loop rather than the word cache.
  const std::vector<std::tuple<std::string, float, int>> extra = {
      {space, -10, 1},      {"a", -10, 1},       {"b", -10, 1},      {"ab", 5, 5},
      {space + "ab", 4, 1}, {"a" + space, 3, 1}, {space + "a", 2, 1}};
  const bool remove_extra_whitespaces = GENERATE(true, false);
  const std::string path = file_in(dir, "tokenizer.model");
  write_text(path, sentencepiece_file(extra, remove_extra_whitespaces));
  const auto tok = load_tokenizer(path);
  REQUIRE(tok->kind() == "sentencepiece");
  CHECK(tok->vocab_size() == 266);
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  // Expected ids and decodes from libsentencepiece 0.1.97 (Debian) on the same file.
  CHECK(tok->encode("ab ab a", true) == Ids{1, 263, 263, 265});
  CHECK(tok->encode("a a", false) == Ids{259, 264, 260});
  CHECK(tok->encode("abb", false) == Ids{263, 261});
  CHECK(tok->encode("xab", false) == Ids{259, 123, 260, 261});  // x: <0x78>; "ab" split back
  CHECK(tok->encode("", false).empty());
  CHECK(tok->decode({259, 123, 260, 261}) == "xab");
  if (remove_extra_whitespaces) {
    CHECK(tok->encode("  a  b ", false) == Ids{259, 264, 261});
    CHECK(tok->encode(" ", false).empty());
    CHECK(tok->decode({259, 264, 261}) == "a b");
  } else {
    CHECK(tok->encode("  a  b ", false) == Ids{259, 259, 259, 264, 259, 261, 259});
    CHECK(tok->encode(" ", false) == Ids{259, 259});
    CHECK(tok->decode({259, 259, 259, 264, 259, 261, 259}) == "  a  b ");
  }
}

// ---- byte-level BPE ---------------------------------------------------------------------------

TEST_CASE("GPT-2 pre-tokenizer splits as its regex", "[core][tokenizer]") {
  using Words = std::vector<std::string_view>;
  CHECK(split_gpt2_words("Hello world") == Words{"Hello", " world"});
  CHECK(split_gpt2_words("It's   a  test\n\n  ok") ==
        Words{"It", "'s", "  ", " a", " ", " test", "\n\n ", " ok"});
  CHECK(split_gpt2_words(" \t\nfoo  ") == Words{" \t", "\n", "foo", "  "});
  CHECK(split_gpt2_words("東京123abc!? 'll'x") ==
        Words{"東京", "123", "abc", "!?", " '", "ll", "'", "x"});
  CHECK(split_gpt2_words("they'll ½ Ⅻ") == Words{"they", "'ll", " ½", " Ⅻ"});
  CHECK(split_gpt2_words("\xFF\xFEz") == Words{"\xFF\xFE", "z"});
  CHECK(split_gpt2_words("").empty());
}

TEST_CASE("byte-level BPE gives GPT-2's ids and round-trips", "[core][tokenizer][data]") {
  CALQ_REQUIRE_DATA(gpt2_dir, "gpt2-tokenizer");
  const auto tok = load_tokenizer(gpt2_dir.string());  // vocab.json + merges.txt
  CHECK(tok->kind() == "bpe");
  CHECK(tok->vocab_size() == 50257);
  CHECK_FALSE(tok->bos_id().has_value());  // HF prepends nothing for GPT-2
  CHECK(tok->eos_id() == 50256);
  // Expected ids from js-tiktoken 1.0.21, getEncoding("gpt2") (same regex, ranks and merging).
  const std::vector<std::pair<std::string, Ids>> cases = {
      {"Hello world", {15496, 995}},
      {" the", {262}},
      {"\n", {198}},
      {" Hello, world! 123", {18435, 11, 995, 0, 17031}},
      {"naïve café — 東京", {2616, 38776, 40304, 851, 10545, 251, 109, 12859, 105}},
      {"It's   a  test\n\n  ok 3.14159 ...!!",
       {1026, 338, 220, 220, 257, 220, 1332, 628, 220, 12876, 513, 13, 1415, 19707, 2644, 3228}},
      {"Ελληνικά κείμενο, Привет мир! 😀👍🏽",
       {138,   243,   39377, 39377, 138,   115,   26180, 29945, 43000, 138,
        105,   7377,  118,   30950, 138,   107,   34703, 30950, 26180, 26517,
        11,    12466, 253,   21169, 18849, 38857, 16843, 20375, 12466, 120,
        18849, 21169, 0,     30325, 222,   41840, 235,   8582,  237,   121}},
  };
  for (const auto& [text, ids] : cases) {
    INFO(text);
    CHECK(tok->encode(text, true) == ids);
    CHECK(tok->decode(ids) == text);
  }
  CHECK(tok->encode("a<|endoftext|>b", false) == Ids{64, 50256, 65});
  for (const std::string text :
       {"", " ", "  leading and trailing  ", "tab\there\r\n",
        "emoji 🏳️‍🌈 and CJK 日本語のテキスト", "bad utf-8 \xC3\x28 \xFF"}) {
    INFO(text);
    CHECK(tok->decode(tok->encode(text, false)) == text);
  }
}

TEST_CASE("GPT-2 as tokenizer.json encodes as its vocab.json + merges.txt",
          "[core][tokenizer][data]") {
  CALQ_REQUIRE_DATA(gpt2_dir, "gpt2-tokenizer");
  // HF's gpt2 tokenizer.json: the same vocab and merges ("a b" strings), no normalizer.
  std::string merges_json;
  {
    std::ifstream merges(gpt2_dir / "merges.txt");
    std::string line;
    while (std::getline(merges, line)) {
      if (line.empty() || line.rfind("#version", 0) == 0)
        continue;
      std::string escaped;
      for (char c : line) {
        if (c == '"' || c == '\\')
          escaped += '\\';
        escaped += c;
      }
      merges_json += (merges_json.empty() ? "\"" : ", \"") + escaped + "\"";
    }
  }
  TempDir dir;
  write_text(file_in(dir, "tokenizer.json"),
             R"({"version": "1.0", "normalizer": null,
                 "added_tokens": [{"id": 50256, "content": "<|endoftext|>", "special": true}],
                 "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                                   "trim_offsets": true, "use_regex": true},
                 "post_processor": {"type": "ByteLevel", "add_prefix_space": true,
                                    "trim_offsets": false, "use_regex": true},
                 "model": {"type": "BPE", "dropout": null, "unk_token": null,
                           "continuing_subword_prefix": "", "end_of_word_suffix": "",
                           "fuse_unk": false, "byte_fallback": false, "vocab": )" +
                 read_text(gpt2_dir / "vocab.json") + R"(, "merges": [)" + merges_json + "]}}");
  const auto from_json = load_tokenizer(file_in(dir, "tokenizer.json"));
  const auto from_pair = load_tokenizer((gpt2_dir / "vocab.json").string());
  CHECK(from_json->vocab_size() == 50257);
  CHECK_FALSE(from_json->bos_id().has_value());
  CHECK(from_json->eos_id() == 50256);
  for (const std::string text : {"Hello world", " Hello, world! 123", "naïve café — 東京",
                                 "It's   a  test\n\n  ok<|endoftext|>"}) {
    INFO(text);
    CHECK(from_json->encode(text, true) == from_pair->encode(text, true));
  }
}

TEST_CASE("byte-level BPE loads a tokenizer.json written by the test", "[core][tokenizer]") {
  TempDir dir;
  // "Ġ" is the byte-level symbol for the space byte.
  const bool array_merges = GENERATE(false, true);
  const std::string merges =
      array_merges ? R"([["a", "b"], ["Ġ", "ab"], ["c", "c"]])" : R"(["a b", "Ġ ab", "c c"])";
  write_text(file_in(dir, "tokenizer.json"), R"({
    "version": "1.0",
    "added_tokens": [{"id": 8, "content": "<s>", "special": true, "single_word": false,
                      "lstrip": false, "rstrip": false, "normalized": false}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                      "use_regex": true},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [8],
                                                               "tokens": ["<s>"]}}},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "dropout": null, "unk_token": null,
              "continuing_subword_prefix": null, "end_of_word_suffix": null,
              "fuse_unk": false, "byte_fallback": false,
              "vocab": {"a": 0, "b": 1, "c": 2, "Ġ": 3, "ab": 4, "Ġab": 5, "cc": 6, "Ċ": 7},
              "merges": )" + merges + "}}");
  const auto tok = load_tokenizer(dir.path().string());
  CHECK(tok->kind() == "bpe");
  CHECK(tok->vocab_size() == 9);
  CHECK(tok->bos_id() == 8);
  CHECK(tok->encode("ab ab<s>ccc\n", true) == Ids{8, 4, 5, 8, 6, 2, 7});
  CHECK(tok->decode({8, 4, 5, 8, 6, 2, 7}) == "<s>ab ab<s>ccc\n");
  CHECK_THAT(error_of([&] { tok->encode("x", false); }), Catch::Contains("byte 0x78 has no token"));
}

TEST_CASE("directory loading falls back from an unsupported tokenizer.json", "[core][tokenizer]") {
  TempDir dir;
  write_text(file_in(dir, "tokenizer.json"),
             R"({"normalizer": null, "pre_tokenizer": {"type": "Metaspace"},
                 "model": {"type": "Unigram", "vocab": [["<unk>", 0.0]]}})");
  CHECK_THAT(error_of([&] { load_tokenizer(dir.path().string()); }),
             Catch::Contains(dir.path().string() + ": no tokenizer found (tokenizer.json is "
                                                   "there but has model type \"Unigram\")") &&
                 Catch::Contains("expected tokenizer.json (byte-level BPE), tokenizer.model or "
                                 "vocab.json + merges.txt"));
  CHECK_THAT(error_of([&] { load_tokenizer(file_in(dir, "tokenizer.json")); }),
             Catch::Contains("unsupported tokenizer: model type \"Unigram\""));
  // With no tokenizer.model either, vocab.json + merges.txt is the last resort.
  write_text(file_in(dir, "vocab.json"), R"({"a": 0, "b": 1, "ab": 2})");
  write_text(file_in(dir, "merges.txt"), "#version: 0.2\na b\n");
  const auto tok = load_tokenizer(dir.path().string());
  CHECK(tok->kind() == "bpe");
  CHECK(tok->encode("abba", false) == Ids{2, 1, 0});
}

TEST_CASE("load_tokenizer names the file for missing, unknown and corrupt inputs",
          "[core][tokenizer]") {
  TempDir dir;
  CHECK_THAT(error_of([&] { load_tokenizer(file_in(dir, "nope.model")); }),
             Catch::Contains("nope.model: no such file or directory"));
  write_text(file_in(dir, "notes.txt"), "hello");
  CHECK_THAT(error_of([&] { load_tokenizer(file_in(dir, "notes.txt")); }),
             Catch::Contains("notes.txt: unknown tokenizer file type"));
  write_text(file_in(dir, "broken.model"), "this is not a protobuf");
  CHECK_THAT(error_of([&] { load_tokenizer(file_in(dir, "broken.model")); }),
             Catch::Contains("broken.model: not a SentencePiece model"));
  write_text(file_in(dir, "tokenizer.json"), "{\"model\": ");
  CHECK_THAT(error_of([&] { load_tokenizer(file_in(dir, "tokenizer.json")); }),
             Catch::Contains("tokenizer.json: the file is not valid JSON"));
  write_text(file_in(dir, "vocab.json"), R"({"a": 0})");
  CHECK_THAT(error_of([&] { load_tokenizer(file_in(dir, "vocab.json")); }),
             Catch::Contains("vocab.json: no merges.txt beside it"));
  write_text(file_in(dir, "merges.txt"), "#version: 0.2\na b\n");
  CHECK_THAT(error_of([&] { load_tokenizer(file_in(dir, "vocab.json")); }),
             Catch::Contains("merges.txt: line 2 \"a b\" uses or makes a token missing"));
  const TempDir empty;
  CHECK_THAT(error_of([&] { load_tokenizer(empty.path().string()); }),
             Catch::Contains(empty.path().string() + ": no tokenizer found; expected"));
}

TEST_CASE("check_tokenizer_fits rejects a tokenizer larger than the embedding",
          "[core][tokenizer]") {
  TempDir dir;
  const std::string path = file_in(dir, "tok261.bin");
  write_text(path, llama2c_file({{" ", -1}, {"a", -2}}));
  const auto tok = load_tokenizer(path);
  CHECK_NOTHROW(check_tokenizer_fits(*tok, 261));
  CHECK_NOTHROW(check_tokenizer_fits(*tok, 512));  // a smaller tokenizer is fine
  CHECK(error_of([&] { check_tokenizer_fits(*tok, 100); }) ==
        path + ": 261 tokens but the model's embedding has 100 rows");
}

}  // namespace calq::core
