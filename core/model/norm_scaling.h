// Rescaling a norm's output channel by channel, whatever form its gain takes. SmoothQuant and AWQ
// fold 1/s into the norm before the linears it feeds (their inputs' columns take s); calq
// outliers folds a factor in. Multiplying γ is right for γ ⊙ x̂ (+ β) but not for Gemma's
// (1 + γ) ⊙ x̂, where it is 1 + γ that must scale: dividing γ there gave llm-compressor's
// gibberish Gemma 3 AWQ models (vllm-project/llm-compressor#2102).
#pragma once

#include "core/model/model.h"

namespace calq::core {

/// y ↦ y / s per channel: γ /= s (and β /= s); with NormForm::RmsOnePlus, γ ↦ (1 + γ) / s − 1.
/// `s` is [hidden], positive.
void divide_norm_output(Norm& norm, const at::Tensor& s);
/// y ↦ y · f per channel, the same way.
void multiply_norm_output(Norm& norm, const at::Tensor& f);

}  // namespace calq::core
