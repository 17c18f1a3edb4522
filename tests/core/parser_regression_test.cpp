// The fuzz targets' inputs replayed through the ordinary suite: every seed in tests/fuzz/corpus
// and every input that once crashed a parser (tests/fuzz/regressions/<target>/) must either parse
// or be refused with a calq::Error — any other exception fails here, a crash fails the run, and
// under scripts/test_sanitized.sh so does any memory error. (No bare CHECK here: the tensor
// headers bring glog's CHECK macro, which aborts instead of reporting.) The cases below the replay pin the
// message each crash now gives.
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/io/safetensors.h"
#include "core/model/model_config.h"
#include "core/recipe.h"
#include "core/tokenizer/bpe_tokenizer.h"
#include "core/tokenizer/llama2c_tokenizer.h"
#include "core/tokenizer/sentencepiece_tokenizer.h"
#include "tests/fuzz/output_path_property.h"

namespace {

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using Catch::Matchers::Equals;

const fs::path kFuzzDir = fs::path(CALQ_SOURCE_DIR) / "tests" / "fuzz";

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void encode_decode(const calq::core::Tokenizer& tokenizer) {
  const std::vector<int32_t> ids = tokenizer.encode("Hello, world!\n caf\xc3\xa9 <s> 123", true);
  (void)tokenizer.decode(ids);
}

// The same entry points the fuzz targets (tests/fuzz/fuzz_*.cpp) call, by target name.
using Parser = std::function<void(const std::string& bytes)>;
const std::map<std::string, Parser>& parsers() {
  using namespace calq::core;
  static const std::map<std::string, Parser> table = {
      {"fuzz_safetensors_header",
       [](const std::string& b) {
         parse_safetensors_header(reinterpret_cast<const uint8_t*>(b.data()), b.size(),
                                  "replay.safetensors");
       }},
      {"fuzz_safetensors_index",
       [](const std::string& b) { parse_safetensors_index(b, "replay/index.json"); }},
      {"fuzz_model_config", [](const std::string& b) { parse_hf_config(b, "replay/config.json"); }},
      {"fuzz_recipe", [](const std::string& b) { parse_recipe(b, "/replay/recipe.yaml"); }},
      {"fuzz_tokenizer_llama2c",
       [](const std::string& b) { encode_decode(Llama2cTokenizer("replay/tok.bin", b)); }},
      {"fuzz_tokenizer_json",
       [](const std::string& b) {
         std::string unsupported;
         if (auto t = BpeTokenizer::from_tokenizer_json_text(
                 b, "/nonexistent-calq-replay/tokenizer.json", &unsupported))
           encode_decode(*t);
       }},
      {"fuzz_tokenizer_gpt2",
       [](const std::string& b) {
         // vocab.json, a NUL, merges.txt (as tests/fuzz/fuzz_tokenizer_gpt2.cpp splits them).
         const size_t nul = b.find('\0');
         const std::string merges = nul == std::string::npos ? "" : b.substr(nul + 1);
         encode_decode(*BpeTokenizer::from_vocab_and_merges_text(
             std::string_view(b).substr(0, nul), merges, "/nonexistent-calq-replay/vocab.json",
             "/nonexistent-calq-replay/merges.txt"));
       }},
      {"fuzz_output_path",  // a property over a sandbox, not a parser: aborts on a violation
       [](const std::string& b) {
         calq::fuzz::check_output_path_property(reinterpret_cast<const uint8_t*>(b.data()),
                                                b.size());
       }},
      {"fuzz_tokenizer_sentencepiece",
       [](const std::string& b) {
         encode_decode(SentencepieceTokenizer("replay/tokenizer.model", b));
       }},
  };
  return table;
}

// Runs `parser` on `bytes`; "" when it parsed, the message when it refused with calq::Error.
std::string outcome(const Parser& parser, const std::string& bytes) {
  try {
    parser(bytes);
  } catch (const calq::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("fuzz seeds and past crashes parse or are refused with a calq::Error",
          "[core][fuzz]") {
  size_t replayed = 0;
  for (const char* set : {"corpus", "regressions"}) {
    const fs::path root = kFuzzDir / set;
    if (!fs::exists(root))
      continue;
    for (const auto& dir : fs::directory_iterator(root)) {
      const std::string target = dir.path().filename().string();
      const auto parser = parsers().find(target);
      INFO(dir.path());
      REQUIRE(parser != parsers().end());  // a folder per fuzz target, named as the target
      for (const auto& file : fs::directory_iterator(dir.path())) {
        INFO(file.path());
        CHECK_NOTHROW(outcome(parser->second, read_bytes(file.path())));
        ++replayed;
      }
    }
  }
  REQUIRE(replayed >= 30);  // the seeds are there (tests/fuzz/corpus)
}

TEST_CASE("the hand-made fuzz seeds are valid files", "[core][fuzz]") {
  // Seeds that parse lead the fuzzer past the first check; keep them valid. (The tiny
  // tokenizer.json seeds load but cannot encode the probe text: they lack byte symbols.)
  for (const char* seed : {"fuzz_safetensors_header/tiny_f32.safetensors",
                           "fuzz_safetensors_header/mixed_dtypes.safetensors",
                           "fuzz_safetensors_index/index.json", "fuzz_model_config/llama.json",
                           "fuzz_recipe/extras.yaml", "fuzz_tokenizer_llama2c/tok512.bin",
                           "fuzz_tokenizer_json/gpt2_bytes.json",
                           "fuzz_tokenizer_gpt2/gpt2_512.bin",
                           "fuzz_tokenizer_gpt2/gpt2_300_crlf.bin",
                           "fuzz_tokenizer_sentencepiece/tiny_bpe.model"}) {
    INFO(seed);
    const fs::path path = kFuzzDir / "corpus" / seed;
    const std::string target = fs::path(seed).parent_path().string();
    CHECK_THAT(outcome(parsers().at(target), read_bytes(path)), Equals(""));
  }
}

TEST_CASE("a recipe with bytes that are not UTF-8 is refused naming the key", "[core][fuzz]") {
  // Found by fuzz_recipe: nlohmann threw type_error 316 from inside an error message's dump.
  const auto& parse = parsers().at("fuzz_recipe");
  CHECK_THAT(outcome(parse, "model:\n  path: m\xd1x\n"),
             Contains("/replay/recipe.yaml: model.path: byte 0xD1 at offset 1 is not UTF-8"));
  CHECK_THAT(outcome(parse, "model: {path: m}\n\xff: 1\n"),
             Contains("<key>: byte 0xFF at offset 0 is not UTF-8"));
  CHECK_THAT(outcome(parse, "model: {path: m}\n"), Equals(""));
}

TEST_CASE("a BPE vocab id too large for the id table is refused before allocating",
          "[core][fuzz]") {
  // Found by reading the loader while adding fuzz_tokenizer_gpt2: an id of 2000000000 sized the
  // id -> token table to 2*10^9 strings (std::bad_alloc, or an out-of-memory under the fuzzer),
  // and get<int32_t> wrapped 4294967297 to 1.
  CHECK_THAT(outcome(parsers().at("fuzz_tokenizer_json"),
                     read_bytes(kFuzzDir / "regressions/fuzz_tokenizer_json/huge_vocab_id.json")),
             Contains("tokenizer.json: vocab entry \"a\" has id 2000000000; expected an id in "
                      "0..4194303"));
  const auto& gpt2 = parsers().at("fuzz_tokenizer_gpt2");
  CHECK_THAT(
      outcome(gpt2, read_bytes(kFuzzDir / "regressions/fuzz_tokenizer_gpt2/huge_vocab_id.bin")),
      Contains("vocab.json: vocab entry \"a\" has id 2000000000; expected an id in 0..4194303"));
  CHECK_THAT(outcome(gpt2, std::string("{\"a\":0,\"b\":4294967297}\0a b\n", 27)),
             Contains("vocab.json: vocab entry \"b\" has id 4294967297; expected an id in "
                      "0..4194303"));
  // The largest id loads (the probe text then needs byte tokens this vocab lacks).
  CHECK_THAT(outcome(gpt2, std::string("{\"a\":0,\"b\":1,\"ab\":4194303}\0a b\n", 31)),
             Contains("byte 0x48 has no token"));
}

TEST_CASE("JSON nested 70 000 levels deep is refused at depth 64 in every JSON reader",
          "[core][fuzz]") {
  // Found by a hostile-input campaign (issue #18): quoting the bad value with nlohmann's
  // recursive dump() overflowed the stack (SIGSEGV) at 65 000 levels; at 20 000-50 000 levels
  // the messages were 40-100 KB lines.
  const struct {
    const char* target;
    const char* file;
    const char* message;
  } cases[] = {
      {"fuzz_safetensors_header", "deep_shape.safetensors",
       "replay.safetensors: the header nests deeper than 64 levels"},
      {"fuzz_safetensors_index", "deep_weight_map.json",
       "replay/index.json: the index nests deeper than 64 levels"},
      {"fuzz_model_config", "deep_hidden_size.json",
       "replay/config.json: the config nests deeper than 64 levels"},
      {"fuzz_tokenizer_json", "deep_vocab.json",
       "tokenizer.json: the file nests deeper than 64 levels"},
  };
  for (const auto& c : cases) {
    INFO(c.file);
    const std::string message = outcome(
        parsers().at(c.target), read_bytes(kFuzzDir / "regressions" / c.target / c.file));
    CHECK_THAT(message, Contains(c.message));
    CHECK(message.size() < 300);
  }
  // 64 levels still parse as far as the reader goes: the shape is refused for its contents.
  const std::string at_limit = std::string(63, '[') + std::string(63, ']');
  CHECK_THAT(outcome(parsers().at("fuzz_model_config"),
                     "{\"model_type\":\"llama\",\"vocab_size\":32,\"hidden_size\":" + at_limit + "}"),
             Contains("field \"hidden_size\" is [[[[[["));
}

TEST_CASE("a YAML alias bomb and deep YAML are refused in bounded memory", "[core][fuzz]") {
  // Found by the same campaign: nine levels of nine aliases (885 bytes) expanded to 9^9 values,
  // 12.4 GB resident before the kernel killed calq.
  const auto& parse = parsers().at("fuzz_recipe");
  CHECK_THAT(outcome(parse, read_bytes(kFuzzDir / "regressions/fuzz_recipe/alias_bomb.yaml")),
             Contains("expands to more than 100000 values"));
  CHECK_THAT(outcome(parse, read_bytes(kFuzzDir / "regressions/fuzz_recipe/deep_flow.yaml")),
             Contains("nests deeper than"));
  // Anchors used as recipes use them still work.
  CHECK_THAT(outcome(parse, "model: {path: m}\n"
                            "eval: {perplexity: [&e {data: t.txt, seqlen: 64}, *e]}\n"),
             Equals(""));
}

TEST_CASE("an added token id beyond 2^64 is refused, not converted from a double",
          "[core][fuzz]") {
  // Found by fuzz_tokenizer_json with the JSON dictionary (issue #18): nlohmann parses
  // 26018446744073709551616 as a double, and get<int32_t> of it was undefined behaviour.
  CHECK_THAT(outcome(parsers().at("fuzz_tokenizer_json"),
                     read_bytes(kFuzzDir /
                                "regressions/fuzz_tokenizer_json/added_token_id_beyond_uint64.json")),
             Contains("tokenizer.json: added token {\"content\":\"<|endoftext|>\",\"id\":2.6"));
}
