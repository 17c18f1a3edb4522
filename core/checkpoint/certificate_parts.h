// The parts of the checkpoint certificate (certificate.h), one file per concern:
// certificate_config.cpp (quantization_config against each format's schema),
// certificate_coverage.cpp (the family's layer schema against the tensors, ignore lists,
// lm_head, scale dtypes and values) and certificate_loaders.cpp (what loads where, with the
// rule's source). Internal to core/checkpoint.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/checkpoint/certificate.h"
#include "core/checkpoint/packed_layout.h"

namespace calq::core {

class WeightSource;
struct ModelConfig;

/// Appends one line per field of `qc` (config.json["quantization_config"], read from `file`)
/// that the schema of its quant_method refuses: missing required fields, wrong types, values
/// outside what the format defines, unknown compressed-tensors format or status strings, a
/// missing or malformed compressed-tensors version.
void check_config_schema(const nlohmann::json& qc,
                         const std::string& file,
                         std::vector<std::string>& failures);

/// One decoder linear of the family schema as the checkpoint stores it.
struct StoredLinear {
  std::string prefix;  ///< "model.layers.3.mlp.down_proj"
  std::string where;   ///< "layer 3 mlp.down" (experts: "layer 1 mlp.experts.2.up")
  int64_t out = 0, in = 0;
  bool expert = false;
  bool router = false;
  bool packed = false;  ///< its packed tensors are present
};

/// What coverage found: the linears (in schema order) and lm_head.
struct Coverage {
  std::vector<StoredLinear> linears;
  bool lm_head_packed = false;
  int64_t hidden = 0;  ///< config.json hidden_size
};

/// Holds every decoder linear and expert of the family schema (config.json via calq's family
/// table) against the tensors of `source`, and the ignore / modules_to_not_convert /
/// modules_in_block_to_quantize / lm_head declarations of `qc` (null for float checkpoints)
/// against what is packed. Fills the certificate's counters and failures.
Coverage check_coverage(const ModelConfig& config,
                        const WeightSource& source,
                        const std::optional<PackedLayout>& layout,
                        const nlohmann::json& qc,
                        const std::string& file,
                        Certificate& cert);

/// Per packed linear: group_size dividing in_features, scale dtypes (float16 for GPTQ and AWQ,
/// a float dtype for compressed-tensors), every scale finite and positive.
void check_scales(const PackedLayout& layout,
                  const WeightSource& source,
                  const Coverage& coverage,
                  const std::string& file,
                  Certificate& cert);

/// Which loaders take the checkpoint and through which kernel (vLLM's rules, cited per rule).
std::vector<LoaderVerdict> loader_verdicts(const std::optional<PackedLayout>& layout,
                                           const Coverage& coverage,
                                           bool passed);

}  // namespace calq::core
