#include "core/tokenizer/tokenizer.h"

#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "core/io/small_file.h"
#include "core/tokenizer/bpe_tokenizer.h"
#include "core/tokenizer/llama2c_tokenizer.h"
#include "core/tokenizer/sentencepiece_tokenizer.h"

namespace calq::core {
namespace fs = std::filesystem;
namespace {

constexpr const char* kKnownKinds =
    "a llama2.c .bin, a SentencePiece .model, an HF tokenizer.json (byte-level BPE), a GPT-2 "
    "vocab.json (+ merges.txt) or a model directory holding one";

bool is_file(const fs::path& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

std::unique_ptr<Tokenizer> load_vocab_and_merges(const fs::path& vocab) {
  const fs::path merges = vocab.parent_path() / "merges.txt";
  CALQ_CHECK(is_file(merges), "{}: no merges.txt beside it; expected {}", vocab.string(),
             merges.string());
  return BpeTokenizer::from_vocab_and_merges(vocab.string(), merges.string());
}

std::unique_ptr<Tokenizer> load_from_directory(const fs::path& dir) {
  std::string json_rejected;
  if (const fs::path json = dir / "tokenizer.json"; is_file(json)) {
    std::string reason;
    if (auto tokenizer = BpeTokenizer::from_tokenizer_json(json.string(), &reason)) {
      return tokenizer;
    }
    json_rejected = " (tokenizer.json is there but has " + reason + ")";
  }
  if (const fs::path model = dir / "tokenizer.model"; is_file(model)) {
    return std::make_unique<SentencepieceTokenizer>(model.string());
  }
  if (const fs::path vocab = dir / "vocab.json"; is_file(vocab) && is_file(dir / "merges.txt")) {
    return load_vocab_and_merges(vocab);
  }
  fail(
      "{}: no tokenizer found{}; expected tokenizer.json (byte-level BPE), tokenizer.model or "
      "vocab.json + merges.txt in it",
      dir.string(), json_rejected);
}

}  // namespace

std::vector<int32_t> Tokenizer::encode_continuation(std::string_view /*text*/) const {
  throw InternalError(fmt::format("{}: tokenizer kind {} has split points but no "
                                  "encode_continuation",
                                  path(), kind()));
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  CALQ_CHECK(fs::exists(status), "{}: no such file or directory; expected {}", path, kKnownKinds);
  if (fs::is_directory(status))
    return load_from_directory(path);
  const std::string kind = describe_non_regular(path);  // a FIFO, /dev/zero...
  CALQ_CHECK(kind.empty(), "{}: {}; expected {}", path, kind, kKnownKinds);
  const fs::path file(path);
  const std::string extension = file.extension().string();
  if (extension == ".bin") {
    return std::make_unique<Llama2cTokenizer>(path,
                                              Llama2cTokenizer::n_tokens_from_file_name(path));
  }
  if (extension == ".model")
    return std::make_unique<SentencepieceTokenizer>(path);
  if (file.filename() == "vocab.json")
    return load_vocab_and_merges(file);
  if (extension == ".json") {
    std::string reason;
    if (auto tokenizer = BpeTokenizer::from_tokenizer_json(path, &reason))
      return tokenizer;
    fail(
        "{}: unsupported tokenizer: {}; expected a byte-level BPE tokenizer.json (model BPE, "
        "pre_tokenizer ByteLevel, no normalizer)",
        path, reason);
  }
  fail("{}: unknown tokenizer file type; expected {}", path, kKnownKinds);
}

void check_tokenizer_fits(const Tokenizer& tokenizer, int64_t model_vocab_size) {
  CALQ_CHECK(tokenizer.vocab_size() <= model_vocab_size,
             "{}: {} tokens but the model's embedding has {} rows", tokenizer.path(),
             tokenizer.vocab_size(), model_vocab_size);
}

}  // namespace calq::core
