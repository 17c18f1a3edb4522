#include "algorithms/owner_parallel.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/dist/communicator.h"
#include "core/error.h"
#include "core/model/model.h"

namespace calq::algorithms {
namespace {

using nlohmann::json;

/// The owner's JSON, on every rank: its length, then its bytes.
json broadcast_json(const json& mine, int owner, const std::string& step) {
  dist::Communicator& ranks = dist::Communicator::world();
  const std::string text = ranks.rank() == owner ? mine.dump() : std::string();
  at::Tensor length = at::full({1}, static_cast<int64_t>(text.size()), at::kLong);
  ranks.broadcast(length, owner, step + ": header size");
  at::Tensor bytes = at::zeros({length.item<int64_t>()}, at::kByte);
  if (ranks.rank() == owner) std::memcpy(bytes.data_ptr(), text.data(), text.size());
  ranks.broadcast(bytes, owner, step + ": header");
  return json::parse(std::string(static_cast<const char*>(bytes.data_ptr()),
                                 static_cast<size_t>(bytes.numel())));
}

json tensor_shape(const at::Tensor& t) {
  if (!t.defined()) return nullptr;
  return {{"sizes", t.sizes().vec()}, {"dtype", static_cast<int>(t.scalar_type())}};
}

/// `t` on every rank as the owner holds it (allocated from `shape` where it is not the owner).
void broadcast_tensor(at::Tensor& t, const json& shape, int owner, const std::string& step) {
  if (shape.is_null()) return;
  dist::Communicator& ranks = dist::Communicator::world();
  if (ranks.rank() != owner) {
    t = at::empty(shape.at("sizes").get<std::vector<int64_t>>(),
                  at::TensorOptions().dtype(static_cast<at::ScalarType>(shape.at("dtype").get<int>())));
  }
  ranks.broadcast(t, owner, step);
}

json report_json(const LinearReport& r) {
  return {{"figures", r.figures}, {"notes", r.notes}, {"flags", r.flags}};
}

LinearReport report_of(const json& j) {
  LinearReport r;
  r.figures = j.at("figures").get<std::map<std::string, double>>();
  r.notes = j.at("notes").get<std::map<std::string, std::string>>();
  r.flags = j.at("flags").get<std::map<std::string, bool>>();
  return r;
}

}  // namespace

std::vector<int> assign_owners_by_cost(const std::vector<double>& costs, int world) {
  std::vector<size_t> order(costs.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(static_cast<size_t>(world), 0.0);
  std::vector<int> owners(costs.size(), 0);
  for (size_t k : order) {
    const auto least = std::min_element(load.begin(), load.end());
    owners[k] = static_cast<int>(least - load.begin());
    *least += costs[k];
  }
  return owners;
}

std::vector<int> assign_owners(core::DecoderLayer& layer,
                               const std::vector<LinearTarget>& targets, int world) {
  std::vector<double> cost;
  for (const LinearTarget& t : targets) {
    const at::Tensor& w = layer.linear(t.name).weight;
    const double out = static_cast<double>(w.size(0));
    const double in = static_cast<double>(w.size(1));
    cost.push_back(in * in * out + in * in * in);
  }
  return assign_owners_by_cost(cost, world);
}

void share_owned_results(core::DecoderLayer& layer, const std::vector<LinearTarget>& targets,
                         const std::vector<int>& owners, std::map<std::string, LinearState>& states,
                         const std::string& pass_name, const std::string& step) {
  dist::Communicator& ranks = dist::Communicator::world();
  for (size_t k = 0; k < targets.size(); ++k) {
    const std::string& name = targets[k].name;
    const int owner = owners[k];
    const std::string where = fmt::format("{}: {} from rank {}", step, name, owner);
    LinearState& state = states[name];
    core::Linear& linear = layer.linear(name);
    json header;
    if (ranks.rank() == owner) {
      CALQ_ASSERT(!state.fp_quantized, "{}: float formats are not shared by owner", where);
      const auto report = state.reports.find(pass_name);
      header["report"] = report == state.reports.end() ? json(nullptr) : report_json(report->second);
      if (state.quantized) {
        const core::QuantizedTensor& q = *state.quantized;
        header["quantized"] = {{"bits", q.bits}, {"grid", static_cast<int>(q.grid)},
                               {"granularity", static_cast<int>(q.granularity)},
                               {"group_size", q.group_size},
                               {"scale_dtype", static_cast<int>(q.scale_dtype)},
                               {"codes", tensor_shape(q.codes)}, {"scales", tensor_shape(q.scales)},
                               {"zeros", tensor_shape(q.zeros)}, {"g_idx", tensor_shape(q.g_idx)}};
      } else {
        header["quantized"] = nullptr;
      }
    }
    header = broadcast_json(header, owner, where);
    // The dequantized weight, in place: every rank's linear is the owner's.
    at::Tensor weight = linear.weight;
    ranks.broadcast(weight, owner, where + ": weight");
    if (!header.at("quantized").is_null()) {
      const json& qh = header.at("quantized");
      core::QuantizedTensor q = ranks.rank() == owner ? *state.quantized : core::QuantizedTensor();
      broadcast_tensor(q.codes, qh.at("codes"), owner, where + ": codes");
      broadcast_tensor(q.scales, qh.at("scales"), owner, where + ": scales");
      broadcast_tensor(q.zeros, qh.at("zeros"), owner, where + ": zeros");
      broadcast_tensor(q.g_idx, qh.at("g_idx"), owner, where + ": g_idx");
      if (ranks.rank() != owner) {
        q.bits = qh.at("bits").get<int>();
        q.grid = static_cast<core::Grid>(qh.at("grid").get<int>());
        q.granularity = static_cast<core::Granularity>(qh.at("granularity").get<int>());
        q.group_size = qh.at("group_size").get<int64_t>();
        q.scale_dtype = static_cast<at::ScalarType>(qh.at("scale_dtype").get<int>());
        state.quantized = std::move(q);
      }
    }
    if (ranks.rank() != owner && !header.at("report").is_null())
      state.reports[pass_name] = report_of(header.at("report"));
    state.reports[pass_name].figures["owner_rank"] = owner;  // report.json: who quantized it
  }
}

}  // namespace calq::algorithms
