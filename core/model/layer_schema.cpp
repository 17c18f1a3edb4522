#include "core/model/layer_schema.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace calq::core {

const LinearSpec* LayerSchema::find_linear(std::string_view name) const {
  for (const LinearSpec& l : linears) {
    if (l.name == name) return &l;
  }
  return nullptr;
}

const LinearSpec& LayerSchema::linear(std::string_view name) const {
  const LinearSpec* l = find_linear(name);
  CALQ_CHECK(l != nullptr, "layer {}: no linear \"{}\"; expected one of {}", layer, name,
             fmt::join(linear_names(), ", "));
  return *l;
}

const NormSpec& LayerSchema::norm(std::string_view name) const {
  for (const NormSpec& n : norms) {
    if (n.name == name) return n;
  }
  fail("layer {}: no norm \"{}\"; expected one of {}", layer, name, fmt::join(norm_names(), ", "));
}

std::vector<std::string> LayerSchema::linear_names() const {
  std::vector<std::string> out;
  out.reserve(linears.size());
  for (const LinearSpec& l : linears) out.push_back(l.name);
  return out;
}

std::vector<std::string> LayerSchema::norm_names() const {
  std::vector<std::string> out;
  out.reserve(norms.size());
  for (const NormSpec& n : norms) out.push_back(n.name);
  return out;
}

std::vector<std::vector<std::string>> LayerSchema::sequential_steps() const {
  std::map<int, std::vector<std::string>> by_step;  // ordered by step, execution order inside
  for (const LinearSpec& l : linears) by_step[l.sequential_step].push_back(l.name);
  std::vector<std::vector<std::string>> out;
  for (auto& entry : by_step) out.push_back(std::move(entry.second));
  return out;
}

std::vector<ScalingPair> LayerSchema::norm_fed_pairs() const {
  std::vector<ScalingPair> out;
  for (const ScalingPair& p : scaling) {
    if (p.prev_is_norm() && p.refused.empty()) out.push_back(p);
  }
  return out;
}

bool is_attention_input(LinearRole role) {
  return role == LinearRole::Query || role == LinearRole::Key || role == LinearRole::Value ||
         role == LinearRole::QueryKeyValue;
}

bool is_router(LinearRole role) { return role == LinearRole::Router; }

std::string expert_linear_name(int64_t expert, std::string_view part) {
  return fmt::format("mlp.experts.{}.{}", expert, part);
}

// mit-han-lab/llm-awq awq/quantize/auto_clip.py and casper-hansen/AutoAWQ awq/quantize/
// quantizer.py (_search_best_clip) skip names containing "q_", "k_", "query", "key" or "Wqkv"
// (MPT's fused qkv): a fused qkv is skipped like q and k. (AutoAWQ's name test misses Phi-3's
// "qkv_proj" by spelling only; the reason, q·kᵀ, is the same.)
bool feeds_attention_scores(LinearRole role) {
  return role == LinearRole::Query || role == LinearRole::Key ||
         role == LinearRole::QueryKeyValue;
}

const char* norm_form_name(NormForm form) {
  switch (form) {
    case NormForm::Rms: return "rmsnorm";
    case NormForm::RmsOnePlus: return "rmsnorm (1 + w)";
    case NormForm::Layer: return "layernorm";
  }
  return "?";
}

}  // namespace calq::core
