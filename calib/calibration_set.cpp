#include "calib/calibration_set.h"

#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "calib/seeded_rng.h"
#include "core/error.h"
#include "core/eval/eval_text.h"
#include "core/io/small_file.h"
#include "core/tokenizer/chunked_encoding.h"
#include "core/tokenizer/tokenizer.h"

namespace calq::calib {
namespace {

std::vector<int64_t> read_offsets(const std::string& path) {
  const std::string kind = core::describe_non_regular(path);  // a FIFO would block the open
  CALQ_CHECK(kind.empty(), "{}: the calibration offsets file is {}; expected a regular file", path,
             kind);
  std::ifstream in(path);
  CALQ_CHECK(in.good(), "{}: cannot open the calibration offsets file", path);
  std::vector<int64_t> offsets;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    std::istringstream fields(line);
    int64_t value = -1;
    std::string rest;
    CALQ_CHECK((fields >> value) && !(fields >> rest) && value >= 0,
               "{}:{}: \"{}\" is not a token offset; expected one non-negative integer per line",
               path, line_no, line);
    offsets.push_back(value);
  }
  return offsets;
}

}  // namespace

void check_calibration_memory(const CalibrationOptions& options) {
  if (options.hidden_size <= 0 || !options.in_memory_only)
    return;
  // In double: a hostile nsamples × seqlen must not overflow on its way to being refused.
  constexpr double kCopies = 2;  // a layer's inputs and its outputs
  const double elements = static_cast<double>(options.nsamples) *
                          static_cast<double>(options.seqlen) *
                          static_cast<double>(options.hidden_size);
  const double gb = kCopies * elements * static_cast<double>(options.activation_bytes) / 1e9;
  CALQ_CHECK(gb <= options.max_memory_gb,
             "calibration: nsamples × seqlen × hidden = {} × {} × {} activations ({} copies of "
             "{} bytes each) need {:.3g} GB, over calibration.max_memory_gb = {:g}; expected "
             "fewer or shorter windows, a larger budget (recipe key calibration.max_memory_gb "
             "or --set calibration.max_memory_gb={:.0f}), or calibration.offload: auto or disk",
             options.nsamples, options.seqlen, options.hidden_size, kCopies,
             options.activation_bytes, gb, options.max_memory_gb, std::ceil(gb));
}

CalibrationSet make_calibration_set(const core::Tokenizer& tokenizer,
                                    const CalibrationOptions& options) {
  CALQ_CHECK(options.nsamples > 0, "calibration.nsamples: {} must be positive", options.nsamples);
  CALQ_CHECK(options.seqlen > 1, "calibration.seqlen: {} must be at least 2", options.seqlen);
  check_calibration_memory(options);
  const core::EvalText text = core::read_eval_text(options.data);
  // Offsets are drawn over the whole stream, so all of it is needed; chunked, the tokenizer's
  // working memory stays one chunk's (the ids are the whole-text encoding's).
  const std::vector<int32_t> stream = core::encode_prefix(tokenizer, text.text, /*add_bos=*/true,
                                                          /*min_tokens=*/0);
  const auto n_tokens = static_cast<int64_t>(stream.size());

  CalibrationSet set;
  set.dataset = text.dataset;
  set.path = options.data;
  set.stream_tokens = n_tokens;
  set.seed = options.seed;
  // nsamples·seqlen beyond the text means windows would have to repeat: refuse rather than
  // calibrate on duplicated data without saying so.
  CALQ_CHECK(options.nsamples * options.seqlen <= n_tokens - 1,
             "{}: calibration.nsamples × calibration.seqlen = {} × {} = {} tokens exceeds the {} "
             "tokens of the text; expected a longer text or fewer/shorter windows",
             options.data, options.nsamples, options.seqlen, options.nsamples * options.seqlen,
             n_tokens);

  if (!options.offsets_path.empty()) {
    set.offsets = read_offsets(options.offsets_path);
    set.replayed = true;
    CALQ_CHECK(static_cast<int64_t>(set.offsets.size()) == options.nsamples,
               "{}: {} offsets but calibration.nsamples is {}; expected one offset per window",
               options.offsets_path, set.offsets.size(), options.nsamples);
    for (size_t i = 0; i < set.offsets.size(); ++i) {
      CALQ_CHECK(set.offsets[i] + options.seqlen <= n_tokens,
                 "{}: offset {} (window {}) + seqlen {} runs past the {} tokens of {}",
                 options.offsets_path, set.offsets[i], i, options.seqlen, n_tokens, options.data);
    }
  } else {
    SeededRng rng(options.seed);
    set.offsets.reserve(static_cast<size_t>(options.nsamples));
    for (int64_t i = 0; i < options.nsamples; ++i) {
      set.offsets.push_back(rng.uniform_int(0, n_tokens - options.seqlen - 1));
    }
  }

  set.windows = at::empty({options.nsamples, options.seqlen}, at::kLong);
  auto* out = set.windows.data_ptr<int64_t>();
  for (int64_t i = 0; i < options.nsamples; ++i) {
    const int64_t start = set.offsets[static_cast<size_t>(i)];
    for (int64_t t = 0; t < options.seqlen; ++t) out[i * options.seqlen + t] = stream[start + t];
  }
  set.hash = fnv1a64(out, static_cast<size_t>(set.windows.numel()) * sizeof(int64_t));
  return set;
}

}  // namespace calq::calib
