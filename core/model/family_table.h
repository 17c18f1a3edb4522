// The one family table: every HF architecture calq runs, by config.json model_type, with the
// function that reads its config.json fields and the one that builds its model. read_hf_config
// and load_model both go through it, so a new family is its own file plus one row here
// (docs/howto-add-family.md).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "core/model/model_config.h"

namespace calq::core {

class Model;
class WeightSource;
struct LoadOptions;
struct LayerSchema;

class ConfigFields;

struct FamilyRow {
  const char* model_type;
  /// Fills the family's fields of `c` from config.json `j` (read from `path`).
  void (*parse)(const std::string& path, const nlohmann::json& j, const ConfigFields& f,
                ModelConfig& c);
  std::unique_ptr<Model> (*build)(ModelConfig, std::shared_ptr<const WeightSource>,
                                  const LoadOptions&);
  /// Layer i described as data (layer_schema.h), as the family's model builds it over
  /// `weights` (whose tensor names may pick the prefix: OPT's "model.decoder." or "decoder."),
  /// without loading a tensor: `calq verify` holds a checkpoint against it.
  LayerSchema (*schema)(const ModelConfig&, const WeightSource&, int64_t);
};

/// The row of `model_type`, or nullptr.
const FamilyRow* find_family(std::string_view model_type);

/// "llama, mistral, qwen2, ..." for messages.
std::string family_type_list();

}  // namespace calq::core
