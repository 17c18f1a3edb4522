#include "cli/model_flags.h"

#include <CLI/CLI.hpp>

#include "core/error.h"
#include "core/model/model.h"

namespace calq::cli {

void ModelFlags::add_to(CLI::App& cmd, const std::string& model_help) {
  cmd.add_option("--model", model, model_help)->required();
  cmd.add_option("--tokenizer", tokenizer, "Tokenizer file (default: the one beside the model)");
  cmd.add_option("--adapter", adapter,
                 "PEFT LoRA adapter directory to apply (e.g. a LoRC run's <save.path>/lorc_adapter)");
  cmd.add_option("--device", device, "cpu | cuda")->capture_default_str();
  cmd.add_option("--dtype", dtype, "Compute dtype: float32 | float16 | bfloat16")
      ->capture_default_str();
}

core::LoadOptions ModelFlags::load_options() const {
  core::LoadOptions load;
  load.path = model;
  load.tokenizer_path = tokenizer;
  load.device = device;
  if (dtype == "float32") {
    load.compute_dtype = c10::ScalarType::Float;
  } else if (dtype == "float16") {
    load.compute_dtype = c10::ScalarType::Half;
  } else if (dtype == "bfloat16") {
    load.compute_dtype = c10::ScalarType::BFloat16;
  } else {
    fail("--dtype: unknown value \"{}\"; expected float32, float16 or bfloat16", dtype);
  }
  return load;
}

}  // namespace calq::cli
