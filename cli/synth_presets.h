// Named shapes for `calq synth --preset`: released models' dimensions, so a scale or memory test
// says "llama3-8b" instead of seven numbers. Flags given beside a preset override its values
// (--layers 2 for a short model of the full width).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace calq::cli {

struct SynthPreset {
  const char* name;    ///< --preset
  const char* family;  ///< a synth family (synth_families.h)
  int64_t hidden, intermediate, layers, heads, kv_heads;
  int64_t head_dim;  ///< 0: hidden / heads
  int64_t vocab;     ///< 0: the family's
  /// Mixture of experts (0 for a dense family): routed experts, experts per token, and each
  /// expert's intermediate size (0: intermediate, as Mixtral's config has it).
  int64_t experts = 0, top_k = 0, expert_intermediate = 0;
};

/// The preset named `name`, or nullptr.
const SynthPreset* find_synth_preset(std::string_view name);

/// "llama-7b, llama3-8b, ..." for messages and --help.
std::string synth_preset_list();

}  // namespace calq::cli
