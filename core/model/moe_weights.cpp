#include "core/model/moe_weights.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"

namespace calq::core {
namespace {

/// Where a per-expert tensor comes from: the fused tensor, the expert, and the row range.
struct Slice {
  std::string fused;
  int64_t expert = 0;
  int64_t row_begin = 0, rows = 0;  ///< rows of fused[expert] (gate_up: gate first, then up)
};

class FusedExpertsSource final : public WeightSource {
 public:
  FusedExpertsSource(std::shared_ptr<WeightSource> base, std::map<std::string, Slice> slices)
      : base_(std::move(base)), slices_(std::move(slices)) {
    for (const auto& [name, slice] : slices_) hidden_.push_back(slice.fused);
    std::sort(hidden_.begin(), hidden_.end());
    hidden_.erase(std::unique(hidden_.begin(), hidden_.end()), hidden_.end());
  }
  const std::string& path() const override { return base_->path(); }
  bool contains(const std::string& name) const override {
    return slices_.count(name) != 0 || (base_->contains(name) && !is_hidden(name));
  }
  std::vector<std::string> names() const override {
    std::vector<std::string> out;
    for (const std::string& n : base_->names())
      if (!is_hidden(n)) out.push_back(n);
    for (const auto& [name, slice] : slices_) out.push_back(name);
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<int64_t> shape(const std::string& name) const override {
    const auto it = slices_.find(name);
    if (it == slices_.end()) return base_->shape(name);
    const std::vector<int64_t> fused = base_->shape(it->second.fused);
    return {it->second.rows, fused.at(2)};
  }
  c10::ScalarType dtype(const std::string& name) const override {
    const auto it = slices_.find(name);
    return base_->dtype(it == slices_.end() ? name : it->second.fused);
  }
  at::Tensor load(const std::string& name) const override {
    const auto it = slices_.find(name);
    if (it == slices_.end()) return base_->load(name);
    const Slice& s = it->second;
    // One expert's rows, copied so the tensor owns its bytes (not the whole fused tensor's).
    return base_->load(s.fused).select(0, s.expert).narrow(0, s.row_begin, s.rows).clone();
  }
  std::optional<ActQuantSpec> input_quant(const std::string& prefix) const override {
    return base_->input_quant(prefix);
  }

 private:
  bool is_hidden(const std::string& name) const {
    return std::binary_search(hidden_.begin(), hidden_.end(), name);
  }
  std::shared_ptr<WeightSource> base_;
  std::map<std::string, Slice> slices_;
  std::vector<std::string> hidden_;
};

}  // namespace

std::shared_ptr<WeightSource> split_fused_experts(std::shared_ptr<WeightSource> base,
                                                  const ModelConfig& c) {
  const MoeConfig& m = c.moe;
  if (m.n_experts == 0) return base;
  std::map<std::string, Slice> slices;
  for (int64_t i = 0; i < c.n_layers; ++i) {
    if (!m.sparse(i)) continue;
    const std::string experts =
        fmt::format("{}model.layers.{}.{}.{}", c.weight_prefix, i, m.layout.block, m.layout.experts);
    const std::string gate_up = experts + ".gate_up_proj", down = experts + ".down_proj";
    if (!base->contains(gate_up) && !base->contains(down)) continue;
    const int64_t E = m.n_experts, I = m.expert_intermediate, H = c.hidden_size;
    for (const auto& [name, want] : {std::pair{gate_up, std::vector<int64_t>{E, 2 * I, H}},
                                     std::pair{down, std::vector<int64_t>{E, H, I}}}) {
      CALQ_CHECK(base->contains(name), "{}: tensor \"{}\" is missing beside the other fused "
                 "expert tensor; expected both gate_up_proj and down_proj", base->path(), name);
      const std::vector<int64_t> got = base->shape(name);
      CALQ_CHECK(got == want, "{}: tensor \"{}\" has shape [{}]; expected [{}] (experts, rows, "
                 "columns)", base->path(), name, fmt::join(got, ", "), fmt::join(want, ", "));
    }
    for (int64_t e = 0; e < E; ++e) {
      const std::string ep = fmt::format("{}.{}.", experts, e);
      slices[ep + m.layout.gate + ".weight"] = {gate_up, e, 0, I};
      slices[ep + m.layout.up + ".weight"] = {gate_up, e, I, I};
      // down_proj[e] is [H, I]: every row.
      slices[ep + m.layout.down + ".weight"] = {down, e, 0, H};
    }
  }
  if (slices.empty()) return base;
  return std::make_shared<FusedExpertsSource>(std::move(base), std::move(slices));
}

}  // namespace calq::core
