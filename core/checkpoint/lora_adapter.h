// Low-rank additions (LoRC, docs/algorithms.md §7.3) as a PEFT LoRA adapter directory:
// adapter_config.json (peft_type LORA, r = lora_alpha = rank, so scaling 1) and
// adapter_model.safetensors with base_model.model.<module>.lora_A.weight [r, in] and .lora_B.weight
// [out, r], the names PEFT's get_peft_model_state_dict saves (adapter name dropped). Reading checks
// the config, names and shapes against the model and attaches the factors to its linears.
#pragma once

#include <cstdint>
#include <string>

namespace calq::core {

class Model;

struct AdapterResult {
  std::string path;
  int64_t rank = 0;
  int64_t linears = 0;  ///< linears that carry factors
  int64_t bytes = 0;    ///< tensor bytes
  std::string json() const;  ///< report.json "adapter"
};

/// True when any linear of the model carries low-rank factors.
bool has_low_rank(Model& model);

/// Writes every linear's factors (in the dtype they were rounded to) under `dir`, atomically: a
/// temporary directory beside it, renamed at the end. `base_model` goes into
/// base_model_name_or_path. Throws calq::Error when no linear has factors, a linear has no
/// checkpoint name, or the ranks differ.
AdapterResult write_lora_adapter(Model& model, const std::string& dir, const std::string& base_model);

/// Reads the adapter at `dir` and attaches its factors (lora_B scaled by lora_alpha / r) to the
/// model's linears, converted to the compute dtype and device. Errors name the file, the tensor
/// and what was expected (unknown module, missing lora_A/lora_B, shape mismatch, unsupported
/// options such as fan_in_fan_out, DoRA or biases).
AdapterResult load_lora_adapter(Model& model, const std::string& dir);

}  // namespace calq::core
