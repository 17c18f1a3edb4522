// Chunked encoding (core/tokenizer/chunked_encoding.h) against whole-text encoding on real data,
// for each tokenizer kind in data/ (and the Llama-2 one when ../shared/data has it): the ids
// must be the same, bit for bit, or the perplexities that tests compare with transformers would
// move. Small chunks make hundreds of cuts per text, so every kind of split point the text
// offers is exercised.
#include "core/tokenizer/chunked_encoding.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "core/eval/perplexity.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/test_data.h"

namespace calq::core {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// How many cuts encode_prefix makes in `text` with chunks of `chunk_bytes`.
size_t count_cuts(const Tokenizer& tokenizer, std::string_view text, size_t chunk_bytes) {
  size_t cuts = 0;
  for (size_t begin = 0; begin + chunk_bytes < text.size(); ++cuts) {
    const size_t end = tokenizer.next_split_point(text, begin + chunk_bytes);
    if (end >= text.size())
      break;
    begin = end;
  }
  return cuts;
}

void check_chunked_matches_whole(const Tokenizer& tokenizer, const std::string& text) {
  INFO("tokenizer " << tokenizer.kind() << " at " << tokenizer.path());
  const Ids whole = tokenizer.encode(text, /*add_bos=*/true);
  for (const size_t chunk : {size_t{512}, size_t{4093}, size_t{1} << 16}) {
    INFO("chunk_bytes " << chunk);
    // Not vacuous: the text must actually be cut, many times with small chunks.
    CHECK(count_cuts(tokenizer, text, chunk) >= text.size() / chunk / 2);
    const Ids chunked = encode_prefix(tokenizer, text, true, /*min_tokens=*/0, chunk);
    REQUIRE(chunked.size() == whole.size());
    CHECK(chunked == whole);
    // A prefix: at least the tokens asked for, each the whole text's.
    const size_t wanted = whole.size() / 3;
    const Ids prefix = encode_prefix(tokenizer, text, true, wanted, chunk);
    REQUIRE(prefix.size() >= wanted);
    REQUIRE(prefix.size() <= whole.size());
    CHECK(std::equal(prefix.begin(), prefix.end(), whole.begin()));
  }
}

TEST_CASE("chunked encoding gives the whole text's ids: SentencePiece (sotu, Llama-2)",
          "[core][tokenizer][chunked][data]") {
  CALQ_REQUIRE_DATA(sotu, "sotu-llama-6L/tokenizer.model");
  CALQ_REQUIRE_EXTRA(llama2, "llama2-tokenizer/tokenizer.model");
  CALQ_REQUIRE_DATA(wiki, "wikitext-2/test.joined.txt");
  CALQ_REQUIRE_DATA(valid, "sotu-llama-6L/sotu_valid.txt");
  const std::string wikitext = read_text(wiki);
  check_chunked_matches_whole(*load_tokenizer(sotu.string()), read_text(valid));
  check_chunked_matches_whole(*load_tokenizer(llama2.string()), wikitext);
}

TEST_CASE("chunked encoding gives the whole text's ids: llama2.c (tok512)",
          "[core][tokenizer][chunked][data]") {
  CALQ_REQUIRE_DATA(tok, "stories260K/tok512.bin");
  CALQ_REQUIRE_DATA(stories, "stories260K/tinystories_valid_eval.txt");
  CALQ_REQUIRE_DATA(wiki, "wikitext-2/test.joined.txt");
  const auto tokenizer = load_tokenizer(tok.string());
  check_chunked_matches_whole(*tokenizer, read_text(stories));
  check_chunked_matches_whole(*tokenizer, read_text(wiki).substr(0, 300000));
}

TEST_CASE("chunked encoding gives the whole text's ids: GPT-2 byte-level BPE",
          "[core][tokenizer][chunked][data]") {
  CALQ_REQUIRE_DATA(gpt2, "gpt2-tokenizer");
  CALQ_REQUIRE_DATA(wiki, "wikitext-2/test.joined.txt");
  check_chunked_matches_whole(*load_tokenizer(gpt2.string()), read_text(wiki));
}

TEST_CASE("chunked encoding of an empty text is the BOS alone",
          "[core][tokenizer][chunked][data]") {
  CALQ_REQUIRE_DATA(tok, "stories260K/tok512.bin");
  const auto tokenizer = load_tokenizer(tok.string());
  CHECK(encode_prefix(*tokenizer, "", true, 0) == tokenizer->encode("", true));
}

TEST_CASE("perplexity_tokens keeps exactly the windows' tokens of the whole stream",
          "[core][eval][chunked][data]") {
  CALQ_REQUIRE_DATA(sotu, "sotu-llama-6L/tokenizer.model");
  CALQ_REQUIRE_DATA(valid, "sotu-llama-6L/sotu_valid.txt");
  const auto tokenizer = load_tokenizer(sotu.string());
  const std::string text = read_text(valid);
  const Ids whole = tokenizer->encode(text, true);
  PerplexityOptions options;
  options.seqlen = 512;
  options.max_windows = 3;
  const Ids windows = perplexity_tokens(*tokenizer, text, options);
  REQUIRE(windows.size() == 3 * 512);
  CHECK(std::equal(windows.begin(), windows.end(), whole.begin()));
  options.max_windows = 0;
  CHECK(perplexity_tokens(*tokenizer, text, options) == whole);
}

}  // namespace
}  // namespace calq::core
