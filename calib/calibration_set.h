// Calibration windows (docs/algorithms.md §10.2): the whole calibration text tokenized once (one
// BOS), then `nsamples` windows of `seqlen` tokens at offsets drawn by calq's own seeded RNG in
// [0, tokens − seqlen − 1] (as GPTQ's randint), or replayed from an offsets file. The hash of the
// windows goes into report.json so two runs can prove they saw the same data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "core/hash.h"

namespace calq::core {
class Tokenizer;
}

namespace calq::calib {

struct CalibrationOptions {
  std::string data;          ///< text file (read as is)
  int64_t nsamples = 128;
  int64_t seqlen = 2048;
  uint64_t seed = 0;
  std::string offsets_path;  ///< optional: one token offset per line (replaces the RNG)
  // The activations the layerwise runner will hold for these windows (check_calibration_memory).
  int64_t hidden_size = 0;       ///< the model's width; 0 = unknown, no memory check
  int64_t activation_bytes = 4;  ///< bytes per activation element (the compute dtype's)
  double max_memory_gb = 32.0;   ///< calibration.max_memory_gb
  /// calibration.offload: ram refuses activations over the budget; auto and disk (false here)
  /// put them in a scratch file instead (calib/activation_store.h).
  bool in_memory_only = true;
};

struct CalibrationSet {
  std::string dataset;           ///< file stem of the text
  std::string path;
  int64_t stream_tokens = 0;     ///< tokens of the whole text (BOS included)
  std::vector<int64_t> offsets;  ///< start of each window in the token stream
  at::Tensor windows;            ///< [nsamples, seqlen] int64 token ids (CPU)
  uint64_t hash = 0;             ///< FNV-1a 64 over the windows' token ids
  uint64_t seed = 0;
  bool replayed = false;         ///< offsets came from a file
};

/// Throws before anything is tokenized or allocated when the calibration activations the
/// layerwise runner keeps resident — a layer's inputs and outputs, 2 × nsamples × seqlen × hidden
/// elements of the compute dtype — exceed options.max_memory_gb; the message gives the numbers
/// and the knob. make_calibration_set calls it first.
void check_calibration_memory(const CalibrationOptions& options);

CalibrationSet make_calibration_set(const core::Tokenizer& tokenizer,
                                    const CalibrationOptions& options);

/// FNV-1a 64 over raw bytes (core/hash.h): stable across platforms and runs; reports, cache keys.
using core::fnv1a64;

}  // namespace calq::calib
