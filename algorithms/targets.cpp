#include "algorithms/targets.h"

#include <algorithm>
#include <set>

#include "core/error.h"
#include "core/recipe.h"

namespace calq::algorithms {

bool glob_match(const std::string& pattern, const std::string& name) {
  // Iterative matcher with single-star backtracking: linear in practice, no regex engine.
  size_t p = 0, n = 0, star = std::string::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (star != std::string::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

namespace {

core::Grid grid_for(core::QuantGrid grid, bool sym) {
  switch (grid) {
    case core::QuantGrid::Gptq: return core::resolve_grid("gptq", sym);
    case core::QuantGrid::Ct: return core::resolve_grid("ct", sym);
    case core::QuantGrid::Awq: return core::resolve_grid("awq", sym);
    case core::QuantGrid::Absmax: return core::resolve_grid("absmax", sym);
  }
  CALQ_ASSERT(false, "unhandled grid");
}

at::ScalarType scale_type(core::ScaleDtype dtype) {
  switch (dtype) {
    case core::ScaleDtype::Float16: return at::kHalf;
    case core::ScaleDtype::Float32: return at::kFloat;
    case core::ScaleDtype::BFloat16: return at::kBFloat16;
  }
  return at::kFloat;
}

std::optional<core::FpFormat> fp_format_of(core::WeightFormat format) {
  switch (format) {
    case core::WeightFormat::Int: return std::nullopt;
    case core::WeightFormat::Fp8E4M3: return core::FpFormat::E4M3;
    case core::WeightFormat::Fp8E5M2: return core::FpFormat::E5M2;
    case core::WeightFormat::Fp4E2M1: return core::FpFormat::E2M1;
    case core::WeightFormat::Nf4: return core::FpFormat::NF4;
  }
  return std::nullopt;
}

}  // namespace

std::optional<LinearTarget> resolve_target(const core::SchemeSection& scheme,
                                           const std::string& linear, int64_t layer) {
  bool targeted = false;
  for (const std::string& pattern : scheme.targets) targeted = targeted || glob_match(pattern, linear);
  if (!targeted) return std::nullopt;
  int bits = scheme.weights.bits;
  int64_t group_size = scheme.weights.group_size;
  bool sym = scheme.weights.sym;
  const std::string qualified = "layers." + std::to_string(layer) + "." + linear;
  const std::optional<core::FpFormat> fp = fp_format_of(scheme.weights.format);  // bits fixed
  for (const core::WeightOverride& o : scheme.overrides) {
    const bool per_layer = o.pattern.rfind("layers.", 0) == 0;
    if (per_layer ? (layer < 0 || !glob_match(o.pattern, qualified)) : !glob_match(o.pattern, linear))
      continue;
    if (o.bits) bits = *o.bits;
    if (o.group_size) group_size = *o.group_size;
    if (o.sym) sym = *o.sym;
  }
  LinearTarget target;
  target.name = linear;
  // FP formats are sign-magnitude: the symmetric absmax spec carries their bits, group size and
  // scale dtype (grid and sym do not apply to them).
  target.spec = core::weight_spec(bits, fp ? core::Grid::Absmax : grid_for(scheme.weights.grid, sym),
                                  group_size);
  target.spec.scale_dtype = scale_type(scheme.weights.scale_dtype);
  core::validate(target.spec);
  target.fp = fp;
  target.pow2_scales = scheme.weights.scale == core::WeightScale::Pow2;
  return target;
}

std::vector<NormFedGroup> norm_fed_groups(const core::LayerSchema& schema) {
  std::vector<NormFedGroup> groups;
  for (const core::ScalingPair& pair : schema.norm_fed_pairs())
    groups.push_back({pair.prev_op, pair.linears});
  return groups;
}

}  // namespace calq::algorithms
