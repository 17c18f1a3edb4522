#include "core/eval/generation.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include "core/error.h"
#include "core/model/kv_cache.h"
#include "core/model/model.h"
#include "core/tokenizer/tokenizer.h"

namespace calq::core {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// Bytes at the end of `text` that may still change as tokens follow: an unfinished UTF-8
/// sequence, or the U+FFFD a decoder writes in place of one (SentencePiece byte pieces).
size_t unsettled_tail(const std::string& text) {
  constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  size_t end = text.size();
  while (end >= kReplacement.size() &&
         std::string_view(text).substr(end - kReplacement.size(), kReplacement.size()) ==
             kReplacement)
    end -= kReplacement.size();
  // The last character's lead byte: complete if the bytes after it are as many as it announces.
  size_t lead = end;
  while (lead > 0 && end - lead < 4 && (static_cast<unsigned char>(text[lead - 1]) & 0xC0) == 0x80)
    --lead;
  if (lead > 0) {
    const auto b = static_cast<unsigned char>(text[lead - 1]);
    const size_t need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1;
    if (end - (lead - 1) < need) end = lead - 1;
  }
  return text.size() - end;
}

/// Turns the growing token list into text pieces: decodes prompt + new tokens after each token
/// and hands on what extends the text already handed on. Decoding the whole list (not the new
/// token alone) keeps what tokenizers do across tokens: SentencePiece's dropped dummy-prefix
/// space, byte pieces joined into one character.
class PieceStream {
 public:
  PieceStream(const Tokenizer& tokenizer, const std::vector<int32_t>& prompt_ids,
              const PieceSink& sink)
      : tokenizer_(tokenizer), ids_(prompt_ids), sink_(sink) {
    emitted_ = tokenizer_.decode(ids_).size();
  }

  void push(int32_t id) {
    ids_.push_back(id);
    flush(/*final=*/false);
  }

  void finish() { flush(/*final=*/true); }

  const std::string& text() const { return text_; }

 private:
  void flush(bool final) {
    const std::string full = tokenizer_.decode(ids_);
    const size_t settled = final ? full.size() : full.size() - unsettled_tail(full);
    if (settled <= emitted_) return;
    const std::string piece = full.substr(emitted_, settled - emitted_);
    emitted_ = settled;
    text_ += piece;
    if (sink_) sink_(piece);
  }

  const Tokenizer& tokenizer_;
  std::vector<int32_t> ids_;
  const PieceSink& sink_;
  size_t emitted_ = 0;
  std::string text_;
};

at::Tensor ids_tensor(const std::vector<int32_t>& ids, const Model& model) {
  std::vector<int64_t> wide(ids.begin(), ids.end());
  return at::tensor(wide, at::TensorOptions().dtype(at::kLong))
      .view({1, static_cast<int64_t>(wide.size())})
      .to(at::Device(model.device()));
}

}  // namespace

const char* stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::Eos: return "eos";
    case StopReason::MaxNewTokens: return "max_new_tokens";
    case StopReason::MaxContext: return "max_context";
  }
  return "?";
}

std::vector<int32_t> default_stop_ids(const Model& model) {
  std::vector<int32_t> ids;
  const auto add = [&](std::optional<int32_t> id) {
    if (id && std::find(ids.begin(), ids.end(), *id) == ids.end()) ids.push_back(*id);
  };
  if (const Tokenizer* t = model.tokenizer()) {
    add(t->eos_id());
    if (t->kind() == "llama2c") add(t->bos_id());  // run.c: BOS delimits sequences
  }
  add(model.config().eos_token_id);
  return ids;
}

GenerateResult generate(Model& model, std::string_view prompt, const GenerateOptions& options,
                        const PieceSink& sink) {
  const Tokenizer* tokenizer = model.tokenizer();
  CALQ_CHECK(tokenizer != nullptr,
             "{}: no tokenizer found beside the model; expected --tokenizer PATH", model.path());
  const std::vector<int32_t> ids = tokenizer->encode(prompt, /*add_bos=*/true);
  CALQ_CHECK(!ids.empty(),
             "--prompt is empty and {} has no BOS token to start from; expected some text",
             tokenizer->path());
  return generate_ids(model, ids, options, sink);
}

GenerateResult generate_ids(Model& model, const std::vector<int32_t>& prompt_ids,
                            const GenerateOptions& options, const PieceSink& sink) {
  CALQ_ASSERT(!prompt_ids.empty(), "generate_ids: an empty prompt");
  CALQ_CHECK(options.max_new_tokens >= 0, "--max-new-tokens {}: negative; expected 0 or more",
             options.max_new_tokens);
  const int64_t context = model.config().max_positions;
  const auto n_prompt = static_cast<int64_t>(prompt_ids.size());
  CALQ_CHECK(context <= 0 || n_prompt < context,
             "--prompt: {} tokens leave no room in the model's context of {} positions "
             "(max_position_embeddings); expected a shorter prompt",
             n_prompt, context);
  Sampler sampler(options.sampling);
  const std::vector<int32_t> stop_ids =
      options.stop_ids.empty() ? default_stop_ids(model) : options.stop_ids;

  GenerateResult r;
  r.prompt_ids = prompt_ids;
  at::NoGradGuard no_grad;
  Clock::time_point start = Clock::now();
  for (int64_t i = 0; i < model.n_layers(); ++i) model.layer(i);  // load before timing
  r.load_seconds = seconds_since(start);

  std::optional<PieceStream> stream;
  if (model.tokenizer() != nullptr) stream.emplace(*model.tokenizer(), prompt_ids, sink);
  KvCache cache(model.n_layers());
  const int64_t budget = context > 0 ? std::min(options.max_new_tokens, context - n_prompt)
                                     : options.max_new_tokens;
  cache.reserve(n_prompt + budget);

  r.stop = StopReason::MaxNewTokens;
  if (options.max_new_tokens == 0) return r;
  start = Clock::now();
  int64_t next = sampler.next(model.forward_cached(ids_tensor(prompt_ids, model), cache)[0]);
  r.prefill_seconds = seconds_since(start);
  start = Clock::now();
  while (true) {
    if (std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end()) {
      r.stop = StopReason::Eos;
      break;
    }
    r.new_ids.push_back(static_cast<int32_t>(next));
    if (stream) stream->push(static_cast<int32_t>(next));
    if (static_cast<int64_t>(r.new_ids.size()) >= options.max_new_tokens) break;
    if (static_cast<int64_t>(r.new_ids.size()) >= budget) {
      r.stop = StopReason::MaxContext;
      break;
    }
    next = sampler.next(
        model.forward_cached(ids_tensor({static_cast<int32_t>(next)}, model), cache)[0]);
    ++r.decode_steps;
  }
  r.decode_seconds = seconds_since(start);
  if (stream) {
    stream->finish();
    r.text = stream->text();
  }
  return r;
}

}  // namespace calq::core
