#include "calib/layerwise_runner.h"

#include <ATen/core/grad_mode.h>
#include <ATen/ATen.h>

#include <algorithm>

#include <fmt/format.h>

#include "calib/calibration_set.h"
#include "core/error.h"
#include "core/log.h"
#include "core/model/allocation_policy.h"
#include "core/model/model.h"
#include "core/progress.h"
#include "core/resident_memory.h"

namespace calq::calib {

LayerwiseRunner::LayerwiseRunner(core::Model& model, at::Tensor windows, RunnerOptions options)
    : model_(model), windows_(std::move(windows)), options_(options) {
  CALQ_ASSERT(windows_.dim() == 2, "calibration windows must be [nsamples, seqlen]");
  const at::Tensor ids = windows_.to(at::kCPU, at::kLong).contiguous();
  windows_hash_ = fnv1a64(ids.data_ptr(), static_cast<size_t>(ids.numel()) * sizeof(int64_t));
}

std::optional<std::string> LayerwiseRunner::cache_key(const LayerHandler& handler, int64_t layer,
                                                      int64_t step,
                                                      const std::vector<std::string>& subset,
                                                      const Requirements& needs) const {
  if (options_.cache.cache == nullptr) return std::nullopt;
  const std::optional<std::string> scope = handler.cache_scope(layer, step);
  if (!scope) return std::nullopt;
  // Batch size is part of the key: float32 sums over batches round differently, and a hit must
  // give the bytes a fresh collection would.
  std::string described = fmt::format("calq-stats-v1|{}|windows {:016x} {}x{}|batch {}|layer {} step {}|",
                                      options_.cache.context, windows_hash_, windows_.size(0),
                                      windows_.size(1), options_.batch_size, layer, step);
  if (options_.observe_all_experts) described += "all_experts|";  // older keys unchanged
  for (const std::string& name : subset) described += name + ",";
  for (const auto& [name, r] : needs) {
    described += fmt::format("|{}:{}{}{}{}", name, int(r.hessian), int(r.absmax), int(r.mean_abs),
                             int(r.inputs));
  }
  described += "|scope " + *scope;
  return fmt::format("L{}-S{}-{:016x}", layer, step, fnv1a64(described.data(), described.size()));
}

at::Tensor LayerwiseRunner::forward_layer(
    core::DecoderLayer& layer, const at::Tensor& inputs, const Requirements* needs,
    std::map<std::string, LinearStatsAccumulator>* accumulators) const {
  const int64_t n = inputs.size(0);
  const int64_t batch = std::max<int64_t>(1, options_.batch_size);
  core::ForwardContext ctx = model_.make_context(inputs.size(1));
  if (needs != nullptr && accumulators != nullptr && !accumulators->empty()) {
    ctx.observer = [accumulators](int64_t, std::string_view name, const at::Tensor& x) {
      const auto it = accumulators->find(std::string(name));
      if (it != accumulators->end()) it->second.add(x);
    };
    ctx.observe_all_experts = options_.observe_all_experts;
  }
  std::vector<at::Tensor> outputs;
  outputs.reserve(static_cast<size_t>((n + batch - 1) / batch));
  for (int64_t s = 0; s < n; s += batch) {
    outputs.push_back(layer.forward(inputs.narrow(0, s, std::min(batch, n - s)), ctx));
  }
  return at::cat(outputs, 0);
}

void LayerwiseRunner::run(LayerHandler& handler) {
  at::NoGradGuard no_grad;
  const auto device = at::Device(model_.device());
  at::Tensor inputs;
  if (options_.first_layer > 0) {
    CALQ_ASSERT(options_.first_inputs.defined(), "a resumed run needs the inputs of layer {}",
                options_.first_layer);
    inputs = options_.first_inputs.to(device);
    options_.first_inputs = at::Tensor();
  } else {
    // X_0: embeddings of every calibration window, kept resident for the whole loop.
    std::vector<at::Tensor> embedded;
    const int64_t n = windows_.size(0);
    const int64_t batch = std::max<int64_t>(1, options_.batch_size);
    for (int64_t s = 0; s < n; s += batch) {
      embedded.push_back(model_.embed(windows_.narrow(0, s, std::min(batch, n - s)).to(device)));
    }
    inputs = at::cat(embedded, 0);
    if (options_.release_layers) {
      model_.release_embeddings();  // a 7B table is 0.25 GB in float16; eval reads it again
      core::give_back_free_heap_pages();
    }
  }

  Progress progress("calibrate layers", model_.n_layers() - options_.first_layer,
                    options_.show_progress);
  for (int64_t i = options_.first_layer; i < model_.n_layers(); ++i) {
    core::DecoderLayer& layer = model_.layer(i);
    handler.begin_layer(layer, i);
    log::debug("layer {} loaded, resident {:.0f} MiB (peak {:.0f})", i, core::resident_mb(),
               core::peak_resident_mb());
    // AWQ-style handlers hand the next layer the float output: compute it before any change.
    at::Tensor float_outputs;
    if (!handler.propagate_quantized()) float_outputs = forward_layer(layer, inputs, nullptr, nullptr);

    const std::vector<std::vector<std::string>> schedule = handler.schedule(layer);
    for (size_t k = 0; k < schedule.size(); ++k) {
      const std::vector<std::string>& subset = schedule[k];
      const Requirements needs = handler.needs(layer, subset);
      std::map<std::string, LinearStatsAccumulator> accumulators;
      for (const auto& [name, request] : needs) {
        if (request.any()) accumulators.emplace(name, LinearStatsAccumulator(request));
      }
      std::map<std::string, LinearStats> stats;
      if (!accumulators.empty()) {
        const auto key = cache_key(handler, i, static_cast<int64_t>(k), subset, needs);
        if (key) {
          auto hit = options_.cache.cache->load(*key, fmt::format("layer {} step {}", i, k),
                                                model_.device());
          if (hit) stats = std::move(*hit);
        }
        if (stats.empty()) {
          forward_layer(layer, inputs, &needs, &accumulators);
          log::debug("layer {} step {}: forward done, resident {:.0f} MiB (peak {:.0f})", i, k,
                     core::resident_mb(), core::peak_resident_mb());
          for (auto& [name, acc] : accumulators) stats.emplace(name, acc.finish());
          // Before the cache keeps them: a poisoned entry would fail every later run.
          for (const auto& [name, s] : stats) require_finite(s, i, name);
          if (key) options_.cache.cache->store(*key, stats);
        }
        // The double sums are not needed once finished: a 7B down_proj's is 462 MiB.
        accumulators.clear();
      }
      // The forward's many sub-threshold temporaries stay in malloc's heap once freed; a
      // bounded-memory run hands them back before the passes allocate theirs.
      if (options_.release_layers) core::give_back_free_heap_pages();
      LayerStep step{layer, model_, i, static_cast<int64_t>(k), subset, stats, inputs,
                     [&layer, this](const at::Tensor& x) {
                       return layer.forward(x, model_.make_context(x.size(1)));
                     }};
      log::debug("layer {} step {}: statistics collected, resident {:.0f} MiB (peak {:.0f})", i, k,
                 core::resident_mb(), core::peak_resident_mb());
      handler.process(step);
      if (options_.release_layers) core::give_back_free_heap_pages();
      log::debug("layer {} step {}: processed, resident {:.0f} MiB (peak {:.0f})", i, k,
                 core::resident_mb(), core::peak_resident_mb());
    }
    handler.end_layer(layer, i);
    inputs = handler.propagate_quantized() ? forward_layer(layer, inputs, nullptr, nullptr)
                                           : float_outputs;
    log::debug("layer {}: next inputs computed, resident {:.0f} MiB (peak {:.0f})", i,
               core::resident_mb(), core::peak_resident_mb());
    handler.layer_done(layer, i, inputs);
    if (options_.release_layers) {
      model_.release(i);
      core::give_back_free_heap_pages();
    }
    log::debug("layer {} done, resident {:.0f} MiB (peak {:.0f})", i, core::resident_mb(),
               core::peak_resident_mb());
    progress.step();
  }
  progress.finish();
}

}  // namespace calq::calib
