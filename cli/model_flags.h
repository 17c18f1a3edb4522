// The flags that say which model a command reads — --model, --tokenizer, --adapter, --device,
// --dtype — declared once for `calq eval` and `calq generate`, and turned into core::LoadOptions.
#pragma once

#include <string>

namespace CLI {
class App;
}
namespace calq::core {
struct LoadOptions;
}

namespace calq::cli {

struct ModelFlags {
  std::string model;
  std::string tokenizer;
  std::string adapter;
  std::string device = "cpu";
  std::string dtype = "float32";

  /// Adds the five options to `cmd`; --model is required and described by `model_help`.
  void add_to(CLI::App& cmd, const std::string& model_help);
  /// What load_model needs for these flags; throws "--dtype: unknown value ..." for a bad dtype.
  core::LoadOptions load_options() const;
};

}  // namespace calq::cli
