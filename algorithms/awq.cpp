#include "algorithms/awq.h"

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "algorithms/owner_parallel.h"
#include "algorithms/targets.h"
#include "calib/layerwise_runner.h"
#include "calib/stats_cache.h"
#include "core/dist/communicator.h"
#include "core/error.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/options.h"
#include "core/recipe.h"

namespace calq::algorithms {
namespace {

using Clock = std::chrono::steady_clock;

const char* flavor_name(AwqFlavor flavor) {
  return flavor == AwqFlavor::LlmAwq ? "llm-awq" : "autoawq";
}

const char* duo_name(DuoScaling duo) {
  switch (duo) {
    case DuoScaling::Off:
      return "false";
    case DuoScaling::On:
      return "true";
    case DuoScaling::Both:
      return "both";
  }
  return "?";
}

const char* inspect_name(const ScaleGroup& group) {
  switch (group.inspect) {
    case Inspect::Attention:
      return "attention";
    case Inspect::Mlp:
      return "mlp";
    case Inspect::Linear:
      return "linear";
  }
  return "?";
}

/// duo_scaling is a bool or the string "both" (llm-compressor).
DuoScaling read_duo_scaling(const core::Options& options, DuoScaling fallback) {
  const std::string key = "duo_scaling";
  if (!options.has(key)) {
    options.get_bool(key, fallback == DuoScaling::On);  // records the default for report.json
    return fallback;
  }
  try {
    return options.get_bool(key, false) ? DuoScaling::On : DuoScaling::Off;
  } catch (const Error&) {
  }
  std::string value;
  try {
    value = options.get_string(key, "");
  } catch (const Error&) {
    options.fail(key, "expected true, false or both");
  }
  if (value != "both")
    options.fail(key, "\"{}\" is not supported; expected true, false or both", value);
  return DuoScaling::Both;
}

/// max_chunk_memory: bytes as a number, or a string with a K, M or G suffix (calib::
/// parse_byte_size, as --cache-limit). Default 1G, AutoAWQ's.
int64_t read_chunk_memory(const core::Options& options) {
  const std::string key = "max_chunk_memory";
  if (!options.has(key)) {
    options.get_string(key, "1G");  // records the default for report.json
    return kAwqDefaultChunkMemory;
  }
  std::optional<int64_t> bytes;
  try {
    bytes = options.get_int(key, 0);
  } catch (const Error&) {
  }
  if (bytes) {
    if (*bytes < 1)
      options.fail(key, "{} is not a size; expected a positive number of bytes or a size such as "
                   "512M or 2G", *bytes);
    return *bytes;
  }
  std::string text;
  try {
    text = options.get_string(key, "");
  } catch (const Error&) {
    options.fail(key, "expected a positive number of bytes or a size such as 512M or 2G");
  }
  try {
    return calib::parse_byte_size(text, key);
  } catch (const Error&) {
  }
  options.fail(key, "\"{}\" is not a size; expected a positive number of bytes with an optional "
               "K, M or G suffix (e.g. 512M, 2G)", text);
}

class AwqPass : public Pass {
 public:
  AwqPass(AwqOptions options, core::SchemeSection scheme, std::string where)
      : options_(options), scheme_(std::move(scheme)), where_(std::move(where)) {
    traits_.role = PassRole::Transform;
    // Scales of v→o and up→down span true-sequential subsets, and every group is searched on
    // the unmodified block (§4.3): the whole layer in one step, statistics from one float forward.
    traits_.schedule = PassSchedule::WholeLayer;
    traits_.propagation = options_.propagate_quantized ? Propagation::Quantized : Propagation::Float;
    traits_.reads.linear_inputs = true;  // every token's input of the scaled groups (run/memory_estimate.h)
    traits_.float_weight_formats = true;  // the factory refuses them with its own reason
  }
  const char* name() const override { return "awq"; }
  const PassTraits& traits() const override { return traits_; }

  /// Every linear the model has (its schema), with the overrides of its layer: per-tensor
  /// weights leave no per-channel scale for the search to move.
  void check_model(const core::Model& model) const override {
    for (int64_t i = 0; i < model.n_layers(); ++i) {
      for (const std::string& name : model.layer_schema(i).linear_names()) {
        const std::optional<LinearTarget> target = resolve_target(scheme_, name, i);
        if (target && target->spec.granularity == core::Granularity::PerTensor) {
          fail("{}: awq needs per-channel or per-group weights, but layers.{}.{} is quantized "
               "per tensor; expected scheme.weights.group_size -1 or > 0",
               where_, i, name);
        }
      }
    }
  }

  calib::StatRequest needs(const LinearTarget&) const override {
    calib::StatRequest request;
    request.mean_abs = true;  // x̄ of the group inputs
    request.inputs = true;    // the inspected modules' inputs and the clip search's
    return request;
  }

  void apply(PassStep& step) override {
    calib::LayerStep& s = step.step;
    std::vector<std::string> targeted;
    std::map<std::string, core::QuantSpec> specs;
    for (const LinearTarget& target : step.targets) {
      targeted.push_back(target.name);
      specs[target.name] = target.spec;
    }
    const auto start = Clock::now();
    BlockGroups blocks = awq_scale_groups(s.model.layer_schema(s.layer_index), s.layer, targeted);
    // An expert no calibration token reached has no inputs to search on (docs/moe.md): its
    // up → down pair is left unscaled and said so.
    std::vector<ScaleGroup> searchable;
    for (ScaleGroup& group : blocks.groups) {
      const auto it = s.stats.find(group.linears.front());
      if (it != s.stats.end() && it->second.n_tokens == 0) {
        blocks.skipped.push_back({group.describe(), group.linears,
                                  "no calibration token was routed to this expert"});
        continue;
      }
      searchable.push_back(std::move(group));
    }
    blocks.groups = std::move(searchable);
    const std::vector<GroupScales> chosen =
        search_block_scales(s.layer, s.model, blocks.groups, s.stats, specs, options_.search);
    const double search_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    for (const GroupScales& g : chosen) {
      apply_group_scales(s.layer, g.group, g.scales);
      // rescale_inputs replaces the statistics' tensors (never writes into them, so inputs that
      // several linears share stay intact); an object two names share is rescaled once.
      std::set<const calib::LinearStats*> rescaled;
      for (const auto& name : g.group.linears) {
        const auto it = s.stats.find(name);
        if (it != s.stats.end() && rescaled.insert(&it->second).second)
          calib::rescale_inputs(it->second, g.scales);
        report_scales(step.linears[name].reports["awq"], g);
      }
      log::debug("layer {} awq {}: ratio {:.2f}{} loss {:.6g} (first candidate {:.6g})",
                 s.layer_index, g.group.describe(), g.best.ratio, g.best.duo ? " duo" : "", g.loss,
                 g.loss_first);
    }
    for (const SkippedGroup& skipped : blocks.skipped) {
      for (const auto& name : skipped.linears) {
        if (specs.count(name) == 0)
          continue;
        step.linears[name].reports["awq"].notes["skipped_group"] =
            fmt::format("{}: {}", skipped.group, skipped.reason);
      }
    }
    if (options_.clip)
      clip_layer(step);
    for (const LinearTarget& target : step.targets) {
      LinearReport& report = step.linears[target.name].reports["awq"];
      report.notes["flavor"] = flavor_name(options_.search.flavor);
      report.notes["duo_scaling"] = duo_name(options_.search.duo_scaling);
      report.figures["layer_search_seconds"] = search_seconds;
    }
  }

 private:
  static void report_scales(LinearReport& report, const GroupScales& g) {
    report.notes["group"] = g.group.describe();
    report.notes["inspect"] =
        g.group.inspect == Inspect::Linear ? g.group.inspected_linear : inspect_name(g.group);
    report.figures["ratio"] = g.best.ratio;
    report.figures["duo"] = g.best.duo ? 1.0 : 0.0;
    report.figures["loss"] = g.loss;
    report.figures["loss_first_candidate"] = g.loss_first;
    report.figures["scale_min"] = g.scales.min().item<double>();
    report.figures["scale_max"] = g.scales.max().item<double>();
    report.figures["search_chunk_windows"] = static_cast<double>(g.chunk_windows);
    report.figures["search_chunks"] = static_cast<double>(g.n_chunks);
  }

  /// §4.4 on every clipped linear. With several ranks each linear's search runs on one owner
  /// (by cost out·in, algorithms/owner_parallel.h), which broadcasts the chosen bounds and its
  /// figures; every rank then clamps its own copy, so all hold the same weights.
  void clip_layer(PassStep& step) const {
    calib::LayerStep& s = step.step;
    const core::LayerSchema& schema = s.model.layer_schema(s.layer_index);
    std::vector<const LinearTarget*> clipped;
    std::vector<double> costs;
    for (const LinearTarget& target : step.targets) {
      if (awq_skips_clip(schema.linear(target.name).role))
        continue;
      const auto it = s.stats.find(target.name);
      CALQ_ASSERT(it != s.stats.end(), "awq: no inputs collected for {}", target.name);
      if (it->second.n_tokens == 0) {  // an expert no token was routed to: nothing to clip on
        step.linears[target.name].reports["awq"].notes["clip"] = "skipped: no calibration tokens";
        continue;
      }
      CALQ_ASSERT(it->second.inputs.defined(), "awq: no inputs collected for {}", target.name);
      clipped.push_back(&target);
      costs.push_back(static_cast<double>(s.layer.linear(target.name).weight.numel()));
    }
    dist::Communicator& ranks = dist::Communicator::world();
    const std::vector<int> owners = assign_owners_by_cost(costs, ranks.size());
    for (size_t k = 0; k < clipped.size(); ++k) {
      const LinearTarget& target = *clipped[k];
      at::Tensor& weight = s.layer.linear(target.name).weight;
      // The owner's figures: shrink mean, min, tokens, row batch, token chunk, seconds, groups.
      at::Tensor figures = at::zeros({7}, at::kDouble);
      at::Tensor max_val;
      if (owners[k] == ranks.rank()) {
        const auto start = Clock::now();
        const ClipResult clip = awq_clip_search(weight, s.stats.at(target.name).inputs,
                                                target.spec, options_.clip_options);
        max_val = clip.max_val.contiguous();
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        figures = at::tensor({clip.shrink.mean().item<double>(), clip.shrink.min().item<double>(),
                              static_cast<double>(clip.n_tokens),
                              static_cast<double>(clip.row_batch),
                              static_cast<double>(clip.token_chunk), seconds,
                              static_cast<double>(max_val.size(1))},
                             at::kDouble);
      }
      const std::string where = fmt::format("layer {} awq clip {} from rank {}", s.layer_index,
                                            target.name, owners[k]);
      ranks.broadcast(figures, owners[k], where + ": figures");
      const auto f = figures.accessor<double, 1>();
      if (!max_val.defined())
        max_val = at::empty({weight.size(0), static_cast<int64_t>(f[6])}, at::kFloat);
      ranks.broadcast(max_val, owners[k], where + ": bounds");
      apply_clip(weight, max_val, target.spec);
      LinearReport& report = step.linears[target.name].reports["awq"];
      report.figures["clip_shrink_mean"] = f[0];
      report.figures["clip_shrink_min"] = f[1];
      report.figures["clip_tokens"] = f[2];
      report.figures["clip_row_batch"] = f[3];
      report.figures["clip_token_chunk"] = f[4];
      report.figures["clip_seconds"] = f[5];
      if (ranks.distributed())
        report.figures["clip_owner_rank"] = owners[k];
      log::debug("layer {} awq clip {}: shrink mean {:.4f} min {:.2f}", s.layer_index, target.name,
                 f[0], f[1]);
    }
  }

  AwqOptions options_;
  core::SchemeSection scheme_;
  std::string where_;
  PassTraits traits_;
};

/// AWQ searches scales for the integer group quantizer that follows; refuse any other format.
void check_format(const core::Options& options, const core::SchemeSection& scheme) {
  if (scheme.weights.format != core::WeightFormat::Int) {
    options.fail("",
                 "awq searches scales for an integer grid, but scheme.weights.format is {}; "
                 "expected format: int",
                 core::weight_format_name(scheme.weights.format));
  }
}

}  // namespace

std::unique_ptr<Pass> make_awq(const core::Options& options, const core::SchemeSection& scheme) {
  AwqOptions o;
  const std::string flavor = options.get_string_in("flavor", "llm-awq", {"llm-awq", "autoawq"});
  o.search.flavor = flavor == "autoawq" ? AwqFlavor::AutoAwq : AwqFlavor::LlmAwq;
  o.search.n_grid = static_cast<int>(options.get_int_in_range("n_grid", 20, 1, 1000));
  o.search.duo_scaling = read_duo_scaling(
      options, o.search.flavor == AwqFlavor::AutoAwq ? DuoScaling::On : DuoScaling::Off);
  if (o.search.flavor == AwqFlavor::LlmAwq && o.search.duo_scaling != DuoScaling::Off) {
    options.fail("duo_scaling", "{} needs flavor: autoawq (llm-awq has no duo scaling)",
                 duo_name(o.search.duo_scaling));
  }
  if (o.search.duo_scaling == DuoScaling::Both && o.search.n_grid < 2) {
    options.fail("n_grid",
                 "{} with duo_scaling: both leaves no candidate (half the grid for "
                 "each formula); expected at least 2",
                 o.search.n_grid);
  }
  o.clip = options.get_bool("clip", true);
  o.clip_options.max_shrink = options.get_double_in_range("max_shrink", 0.5, 0.0, 1.0);
  o.clip_options.grid = static_cast<int>(options.get_int_in_range("clip_grid", 20, 1, 1000));
  o.clip_options.n_tokens = options.get_int_at_least("clip_tokens", 512, 1);
  if (o.clip && static_cast<int>(o.clip_options.max_shrink * o.clip_options.grid) < 1) {
    options.fail("max_shrink",
                 "{} x clip_grid {} gives no clip candidate; expected max_shrink "
                 "* clip_grid >= 1",
                 o.clip_options.max_shrink, o.clip_options.grid);
  }
  o.search.max_chunk_memory = read_chunk_memory(options);
  o.clip_options.max_chunk_memory = o.search.max_chunk_memory;
  o.propagate_quantized =
      options.get_string_in("propagate", "float", {"float", "quantized"}) == "quantized";
  options.finish();
  check_format(options, scheme);
  return std::make_unique<AwqPass>(o, scheme, options.where());
}

}  // namespace calq::algorithms
